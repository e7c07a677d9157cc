"""Normalisation by batch statistics with a closed-form derivative (``batch_norm`` and
``instance_norm`` in training mode).

``normalize`` is a ``jax.custom_jvp``: its rule is torch's ``batch_norm_backward`` in forward
form, linear in the tangents, so that JAX transposes it into the VJP (and ``jax.jvp``,
``jacfwd``, ``hessian`` and :func:`jaxconv.channels_last`, which rebuilds ``custom_jvp`` calls
over channels-last operands, keep working). Left to itself, JAX differentiates the two-pass
variance ``mean((x - mean)**2)`` op by op.

MEASURED (issue 25 item 4; ResNet-18 training step, batch 8, 224x224, 2-core VM at load
4-5, jaxconv's default channels-last plan; ``benchmarks/README.md``, "Compile time"):

- optimized HLO, entry instructions: 601 (op by op) -> 461 (this rule; Flax NNX 519);
  YNNPACK reduction calls 139 -> 79 (Flax 98), elementwise loop fusions 303 -> 223 (Flax 261).
  Writing the rule with the affine outside it gave 521 / 119 / 243: the two sums of the
  backward then differ from the bias and weight gradients' and are not shared.
- lower+compile, median of 4 interleaved rounds, in 3 runs: 5.65 -> 4.76 s, 6.59 -> 5.77 s and
  5.38 -> 4.41 s (Flax 4.27, 4.93 and 3.43 s: 1.32x -> 1.11x, 1.34x -> 1.17x, 1.57x -> 1.28x);
  faster in 11 of the 12 paired rounds.
- run time of the step: the same within the noise (medians 1728 / 1728, 1868 / 1919 and
  1802 / 1603 ms, ranges 1200-2600 ms). The BatchNorm layer alone (value and VJP, 21 interleaved rounds) is
  faster: 4.84 -> 3.00 ms at (8, 64, 56, 56), 1.39 -> 0.89 ms at (8, 256, 14, 14), 68.6 ->
  38.3 ms at (8, 64, 112, 112).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def affine(y, weight, bias, shape_fn):
    """``y * shape_fn(weight) + shape_fn(bias)``, each term left out where it is ``None``."""
    if weight is not None:
        y = y * shape_fn(weight)
    if bias is not None:
        y = y + shape_fn(bias)
    return y


def _mean(v, axes, axis_name):
    """``mean(v)`` over ``axes`` kept as size-1 axes (a reshape, whose transpose is one too, not
    ``keepdims``' broadcast, which transposes to a sum over size-1 axes), and over the replicas
    of ``axis_name`` (equal shards) when given."""
    m = jnp.mean(v, axes)
    if axis_name is not None:
        m = lax.pmean(m, axis_name)
    return m.reshape(tuple(1 if a in axes else s for a, s in enumerate(v.shape)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5))
def normalize(x, weight, bias, axes, eps, axis_name):
    """``(y, mean, var)``: ``y = (x - mean) * rsqrt(var + eps) * weight + bias`` with the mean
    and the biased two-pass variance ``mean((x - mean)**2)`` (torch's accuracy when the mean is
    large against the spread) over ``axes``, kept as size-1 axes; with ``axis_name`` the
    statistics are those of every replica's equal shard together. ``weight`` and ``bias`` are
    shaped to broadcast against ``x``, or ``None``."""
    mean = _mean(x, axes, axis_name)
    xc = x - mean
    var = _mean(jnp.square(xc), axes, axis_name)
    return affine(xc * lax.rsqrt(var + eps), weight, bias, lambda v: v), mean, var


@normalize.defjvp
def _normalize_jvp(axes, eps, axis_name, primals, tangents):
    """The closed form, with ``xhat = (x - mean) * rstd`` and ``scale = weight * rstd``:
    ``dy = scale * (dx - mean(dx) - xhat * mean(dx * xhat)) + xhat * dweight + dbias``,
    ``dmean = mean(dx)``, ``dvar = 2 * mean(dx * (x - mean))`` (means over the replicas too).

    The two mean terms are written as per-channel values broadcast against ``dx``
    (``-scale * mean(dx)`` and ``xhat * (-scale * mean(dx * xhat))``), the forms of ``dbias``
    and ``xhat * dweight``: transposed, they are the same sums, ``sum(g)`` and
    ``sum(xhat * g)``, which XLA computes once for both. The primal outputs come from
    ``normalize`` itself, so that higher derivatives use this rule again."""
    (x, weight, bias), (dx, dweight, dbias) = primals, tangents
    xhat, mean, var = normalize(x, None, None, axes, eps, axis_name)
    rstd = lax.rsqrt(var + eps)
    scale = rstd if weight is None else rstd * weight
    dmean = _mean(dx, axes, axis_name)
    proj = _mean(dx * xhat, axes, axis_name)
    dy = scale * dx + -scale * dmean + xhat * (-scale * proj)
    if weight is not None:
        dy = dy + xhat * dweight
    if bias is not None:
        dy = dy + dbias
    return (affine(xhat, weight, bias, lambda v: v), mean, var), (dy, dmean, 2 * proj / rstd)
