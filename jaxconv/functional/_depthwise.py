r"""The depthwise conv as a JAX primitive: shifted multiply-adds with every rule given.

``depthwise_p`` computes ``y[n, c, p] = sum_k w[c, k] * xpad[n, c, s*p + d*k]`` on
``x (N, C, *spatial)`` and ``w (C, *kernel)``. It is bilinear in ``(x, w)``, so, as for
``lax.conv_general_dilated`` (``jax/_src/lax/convolution.py``), each rule is a small function:

* lowering: one strided slice of the padded input per kernel tap, scaled per channel and
  summed, which XLA fuses into one loop over the output (on XLA:CPU 30-150x faster than the
  same conv through ``feature_group_count``);
* JVP: ``depthwise(dx, w) + depthwise(x, dw)`` (``ad.defbilinear``), so ``jax.jvp``,
  ``jacfwd`` and ``hessian`` work, and forward mode costs two more depthwise convs;
* transpose: the input and weight gradients written as shifted slices and one variadic
  reduction (:func:`_input_grad`, :func:`_weight_grad`). JAX's automatic transpose of the
  slices gives k*k bounds-checked pads in one loop, 20-40x slower on XLA:CPU; these are the
  rules the earlier ``custom_vjp`` had, so reverse mode runs the same code;
* batching: a batch axis of ``x`` joins ``N``, a batch axis of ``w`` joins ``C``.

Every rule takes ``x`` as ``(N, C, *spatial)`` or, with ``channels_last=True`` (what
:func:`jaxconv.channels_last` binds), ``(N, *spatial, C)``: the same slices along other axes.

A primitive rather than ``custom_jvp`` + ``custom_vjp``: one function cannot carry both, and
``jax.custom_derivatives.linear_call`` (a linear function with a given transpose) has no
batching rule and no derivative in its residual (nonlinear) arguments, which ``hessian`` needs.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from . import _args, _sharding
from ._sharding import reshape


def depthwise_conv(x, w, stride, pads, dilation, channels_last=False):
    """``depthwise_p`` on ``x (N, C, *spatial)`` (``(N, *spatial, C)`` if ``channels_last``) and
    ``w (C, *kernel)`` of one float dtype."""
    return depthwise_p.bind(x, w, stride=tuple(stride), pads=tuple(map(tuple, pads)),
                            dilation=tuple(dilation), channels_last=bool(channels_last))


# ------------------------------------------------------------------------------ layouts
class _Layout:
    """Where the channel axis is: ``(N, C, *spatial)`` or, ``channels_last``, ``(N, *spatial, C)``.
    ``lead`` / ``trail`` are the axes before / after the spatial ones."""

    def __init__(self, channels_last):
        self.last = channels_last

    def split(self, shape):
        """``(lead, spatial, trail)`` of a shape."""
        shape = tuple(shape)
        return (shape[:1], shape[1:-1], shape[-1:]) if self.last else (shape[:2], shape[2:], ())

    def spatial(self, shape):
        return self.split(shape)[1]

    def shape(self, like, mid):
        """``like``'s lead and trail axes around ``mid``."""
        lead, _, trail = self.split(like)
        return (*lead, *mid, *trail)

    def pad(self, like, spatial_cfg):
        lead, _, trail = self.split(like)
        return [(0, 0, 0)] * len(lead) + list(spatial_cfg) + [(0, 0, 0)] * len(trail)

    def per_channel(self, w, taps):
        """``w[:, taps]`` shaped to broadcast along the channel axis."""
        c = w[(slice(None), *taps)]
        return c if self.last else c.reshape((w.shape[0],) + (1,) * (w.ndim - 1))


# ------------------------------------------------------------------------------ shared pieces
def _taps(kernel, stride, dilation):
    """Per kernel tap ``k`` (``itertools.product`` order): phase ``r`` and row offset ``q`` with
    ``d*k = s*q + r``, per dimension."""
    for taps in itertools.product(*(range(k) for k in kernel)):
        qr = [divmod(t * d, s) for t, d, s in zip(taps, dilation, stride)]
        yield taps, tuple(r for _, r in qr), tuple(q for q, _ in qr)


def _phase_rows(spatial, kernel, stride, pads, dilation, out):
    """Rows ``M`` per phase: enough for every tap read and for the whole (padded-before) input."""
    return [max(o + d * (k - 1) // s, -(-(lo + size) // s))
            for size, (lo, _), k, d, s, o in zip(spatial, pads, kernel, dilation, stride, out)]


def _phase_split(lay, x, pads, stride, rows):
    """``x`` padded (``lo`` before, zeros up to ``s*M`` after) with its spatial axes as
    ``(*s, *M)``: ``[r, m] = xpad[s*m + r]``, materialised once (``optimization_barrier``) so
    that the fused loop over the taps reads contiguous slices without bounds checks."""
    n = len(stride)
    spatial = lay.spatial(x.shape)
    cfg = lay.pad(x.shape, ((lo, s * m - lo - size, 0)
                            for size, (lo, _), s, m in zip(spatial, pads, stride, rows)))
    xp = lax.pad(x, jnp.zeros((), x.dtype), cfg)
    xp = reshape(xp, lay.shape(x.shape, itertools.chain.from_iterable(zip(rows, stride))))
    a = len(lay.split(x.shape)[0])
    perm = [*range(a), *(a + 1 + 2 * i for i in range(n)), *(a + 2 * i for i in range(n)),
            *range(a + 2 * n, xp.ndim)]
    xp = jnp.transpose(xp, perm)
    if all(c == (0, 0, 0) for c in cfg) and all(s == 1 for s in stride):
        return xp
    return lax.optimization_barrier(xp)


def _phase_slice(lay, xph, r, start, size):
    """``xph[r, start : start + size]`` on the spatial axes, as ``size``."""
    lead, _, trail = lay.split(xph.shape)
    piece = lax.slice(xph, (*(0,) * len(lead), *r, *start, *(0,) * len(trail)),
                      (*lead, *(i + 1 for i in r), *(a + b for a, b in zip(start, size)), *trail))
    return reshape(piece, (*lead, *size, *trail))


def _out_size(spatial, kernel, stride, pads, dilation):
    return _args.window_count(spatial, pads, kernel, stride, dilation)


# ------------------------------------------------------------------------------ value
def _depthwise(x, w, *, stride, pads, dilation, channels_last):
    # With d*k = s*q + r: y[p] = sum_k w[k] * xpad[s*p + d*k] = sum_k w[k] * xph[r][p + q].
    lay = _Layout(channels_last)
    kernel, spatial = w.shape[1:], lay.spatial(x.shape)
    out = _out_size(spatial, kernel, stride, pads, dilation)
    xph = _phase_split(lay, x, pads, stride, _phase_rows(spatial, kernel, stride, pads, dilation, out))
    total = None
    for taps, r, q in _taps(kernel, stride, dilation):
        term = _phase_slice(lay, xph, r, q, out) * lay.per_channel(w, taps)
        total = term if total is None else total + term
    return total


def _abstract_eval(x, w, *, stride, pads, dilation, channels_last):
    lay = _Layout(channels_last)
    out = _out_size(lay.spatial(x.shape), w.shape[1:], stride, pads, dilation)
    return jax.core.ShapedArray(lay.shape(x.shape, out), jnp.result_type(x.dtype, w.dtype),
                                sharding=_sharding_rule(lay, x))


def _sharding_rule(lay, x):
    """The output is sharded as ``x`` (``Explicit`` mesh axes): each output row reads only its
    own sample and channel, so ``N`` and ``C`` keep their shards; the spatial axes, whose
    windows cross shard boundaries, must not be sharded."""
    spec = tuple(x.sharding.spec) + (None,) * (x.ndim - len(x.sharding.spec))
    lead, mid, _ = lay.split(spec)
    if any(p is not None for p in mid):
        raise _sharding.ShardingError(
            f"depthwise conv (groups == in_channels): the spatial axes of the input must not be "
            f"sharded (a window reads across their shards), got the input sharded as {x.str_short()}; "
            "shard the batch or channel axis, or reshard the input first")
    return x.sharding.update(spec=lay.shape(spec, (None,) * len(mid)))


# ------------------------------------------------------------------------------ transposes
def _input_grad(lay, gy, w, x_shape, stride, pads, dilation):
    """``gx`` per phase ``r`` of the padded input: ``gxph[r][m] = sum_{k: r_k = r} w[k] *
    gy[m - q_k]`` (zero outside ``gy``), stride-1 shifted slices of ``gy`` padded by ``qmax``
    before, then the phases interleaved back and the padding dropped."""
    n = w.ndim - 1
    kernel, out, spatial = w.shape[1:], lay.spatial(gy.shape), lay.spatial(x_shape)
    rows = _phase_rows(spatial, kernel, stride, pads, dilation, out)
    qmax = [d * (k - 1) // s for k, d, s in zip(kernel, dilation, stride)]
    cfg = lay.pad(gy.shape, ((qm, m - o, 0) for qm, m, o in zip(qmax, rows, out)))
    gyp = lax.optimization_barrier(lax.pad(gy, jnp.zeros((), gy.dtype), cfg))
    gyp = reshape(gyp, lay.shape(gyp.shape, (*(1,) * n, *lay.spatial(gyp.shape))))
    phases = {}
    for taps, r, q in _taps(kernel, stride, dilation):
        start = [qm - qq for qm, qq in zip(qmax, q)]
        term = _phase_slice(lay, gyp, (0,) * n, start, rows) * lay.per_channel(w, taps)
        phases[r] = term if r not in phases else phases[r] + term
    zeros = _sharding.lead_like(jnp.zeros(lay.shape(gy.shape, rows), gy.dtype), gy)
    a = len(lay.split(gy.shape)[0])
    gxph = jnp.stack([phases.get(r, zeros) for r in itertools.product(*map(range, stride))], a)
    # (*s, *M) -> (M1, s1, M2, s2, ...) -> (*(s*M)) on the spatial axes, then drop the padding
    gxph = reshape(gxph, lay.shape(gy.shape, (*stride, *rows)))
    perm = [*range(a), *(ax for i in range(n) for ax in (a + n + i, a + i)), *range(a + 2 * n, gxph.ndim)]
    gxp = reshape(jnp.transpose(gxph, perm), lay.shape(gy.shape, (s * m for s, m in zip(stride, rows))))
    lead, _, trail = lay.split(gxp.shape)
    keep = (*(slice(None),) * len(lead), *(slice(lo, lo + size) for (lo, _), size in zip(pads, spatial)),
            *(slice(None),) * len(trail))
    return gxp[keep]


def _weight_grad(lay, gy, x, w_shape, stride, pads, dilation):
    """``gw[c, k] = sum_{n,p} gy[n, c, p] * xph[n, c, r_k, p + q_k]``: every tap in one variadic
    reduction that reads the input and ``gy`` once."""
    kernel, out, spatial = w_shape[1:], lay.spatial(gy.shape), lay.spatial(x.shape)
    xph = _phase_split(lay, x, pads, stride, _phase_rows(spatial, kernel, stride, pads, dilation, out))
    prods = [_phase_slice(lay, xph, r, q, out) * gy for _, r, q in _taps(kernel, stride, dilation)]
    zero = jnp.zeros((), gy.dtype)
    channel = gy.ndim - 1 if lay.last else 1
    sums = lax.reduce(prods, [zero] * len(prods), lambda a, b: [u + v for u, v in zip(a, b)],
                      tuple(i for i in range(gy.ndim) if i != channel))
    return jnp.stack(sums, -1).reshape(w_shape)


def _transpose_x(gy, x, w, *, stride, pads, dilation, channels_last):
    return _input_grad(_Layout(channels_last), gy, w, x.aval.shape, stride, pads, dilation)


def _transpose_w(gy, x, w, *, stride, pads, dilation, channels_last):
    return _weight_grad(_Layout(channels_last), gy, x, w.aval.shape, stride, pads, dilation)


# ------------------------------------------------------------------------------ batching
def _batch(args, dims, *, stride, pads, dilation, channels_last):
    """A batch axis of ``x`` alone joins ``N``; with a batched ``w`` it joins ``C`` (each batch
    entry's channels read their own weights), the output's batch axis then just before ``C``."""
    x, w = args
    bx, bw = dims
    params = dict(stride=stride, pads=pads, dilation=dilation, channels_last=channels_last)
    if bw is None:
        x = jnp.moveaxis(x, bx, 0)
        b, nb = x.shape[:2]
        y = depthwise_p.bind(x.reshape(b * nb, *x.shape[2:]), w, **params)
        return y.reshape(b, nb, *y.shape[1:]), 0
    w = jnp.moveaxis(w, bw, 0)
    b = w.shape[0]
    w = w.reshape(-1, *w.shape[2:])
    x = jnp.broadcast_to(x, (b, *x.shape)) if bx is None else jnp.moveaxis(x, bx, 0)
    if channels_last:
        x = jnp.moveaxis(x, 0, -2)  # (N, *spatial, B, C)
        y = depthwise_p.bind(x.reshape(*x.shape[:-2], -1), w, **params)
        return y.reshape(*y.shape[:-1], b, -1), y.ndim - 1
    x = jnp.moveaxis(x, 0, 1)  # (N, B, C, *spatial)
    y = depthwise_p.bind(x.reshape(x.shape[0], -1, *x.shape[3:]), w, **params)
    return y.reshape(y.shape[0], b, -1, *y.shape[2:]), 1


depthwise_p = Primitive("jaxconv_depthwise")
depthwise_p.def_impl(jax.jit(_depthwise, static_argnames=("stride", "pads", "dilation", "channels_last")))
depthwise_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(depthwise_p, mlir.lower_fun(_depthwise, multiple_results=False))
ad.defbilinear(depthwise_p, _transpose_x, _transpose_w)
batching.primitive_batchers[depthwise_p] = _batch
