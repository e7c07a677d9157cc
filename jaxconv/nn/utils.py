"""Gradient clipping with torch's formulas (``torch.nn.utils.clip_grad``), functional and as optax
transformations.

torch clips ``p.grad`` in place; here the gradients are a pytree (any tree ``nnx.grad`` or
``jax.grad`` returns; ``None`` leaves are skipped as torch skips parameters without a gradient)
and the clipped tree is returned. The arithmetic is torch's, step by step:

* the total norm is the ``norm_type``-norm of the per-tensor norms (``torch.linalg.vector_norm``
  of each gradient, each in its own dtype, stacked, then normed again), not the norm of the
  flattened concatenation;
* ``clip_coef = max_norm / (total_norm + 1e-6)``, evaluated as torch's ``Tensor.__rtruediv__``
  does, ``reciprocal(total_norm + 1e-6) * max_norm`` (two roundings), clamped at ``1.0`` and
  multiplied into every gradient even when it is ``1.0`` (so a gradient below the threshold is
  scaled by exactly ``1.0``; a NaN norm makes every gradient NaN, as in torch).

``error_if_nonfinite=True``: eagerly (a concrete norm) the ``RuntimeError`` is torch's, raised
before anything is returned. Under ``jax.jit`` / ``nnx.jit`` the norm is a traced value and
Python cannot branch on it, so the check runs as a host callback (``jax.debug.callback``): the
call then fails at run time with a ``jax.errors.JaxRuntimeError`` whose message carries torch's
text. The check costs one device-to-host transfer per call, as torch's does (its
``if torch.logical_or(...)`` synchronises).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ..functional.distance import vector_norm

__all__ = ["ClipGradNorm", "ClipGradValue", "clip_grad_norm", "clip_grad_value",
           "clip_grads_with_norm", "get_total_norm"]


def _norm_type(norm_type) -> float:
    try:
        return float(norm_type)
    except (TypeError, ValueError):
        raise ValueError(f"norm_type must be a number or 'inf', got {norm_type!r}") from None


def _leaves(grads) -> list:
    return [g for g in jax.tree_util.tree_leaves(grads) if g is not None]


def _leaf_norm(g, p: float):
    """``torch.linalg.vector_norm(g, p)``: accumulated in at least float32, returned in ``g``'s
    dtype, as torch's reduction over a half / bfloat16 tensor."""
    g = jnp.asarray(g)
    acc = jnp.promote_types(g.dtype, jnp.float32)
    return vector_norm(g.astype(acc).reshape(-1), p, 0).astype(g.dtype)


@functools.partial(jax.jit, static_argnums=1)
def _total_norm(leaves, p: float):
    """The norm of the per-leaf norms, one compiled program per tree (eagerly too)."""
    return vector_norm(jnp.stack([_leaf_norm(g, p) for g in leaves]), p, 0)


@jax.jit
def _scale(grads, max_norm, total_norm):
    # torch: `max_norm / (total_norm + 1e-6)` is Tensor.__rtruediv__, i.e. reciprocal() * max_norm
    coef = jnp.minimum(jnp.reciprocal(total_norm + 1e-6) * max_norm, 1.0)
    return jax.tree_util.tree_map(lambda g: (g * coef).astype(g.dtype), grads)


def _nonfinite_message(norm_type: float) -> str:
    return (f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
            "so it cannot be clipped. To disable this error and scale the gradients by the "
            "non-finite norm anyway, set `error_if_nonfinite=False`")


def _check_finite(total_norm, norm_type: float) -> None:
    """Raise torch's error on a non-finite norm: now when concrete, at run time under jit."""
    def check(value):
        if not math.isfinite(float(value)):
            raise RuntimeError(_nonfinite_message(norm_type))

    try:
        value = float(total_norm)
    except jax.errors.ConcretizationTypeError:
        jax.debug.callback(check, total_norm)
    else:
        check(value)


def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None):
    """The norm of the per-leaf norms of ``tensors`` (``torch.nn.utils.get_total_norm``).

    **Arguments:**

    - ``tensors``: an array or a pytree of arrays (``None`` leaves skipped).
    - ``norm_type``: the ``p`` of the p-norm, ``inf`` / ``'inf'`` for the max-norm (``0``,
      ``-inf`` and fractional ``p`` as ``torch.linalg.vector_norm`` defines them).
    - ``error_if_nonfinite``: raise torch's ``RuntimeError`` when the norm is NaN or infinite
      (under jit: at run time, see the module docstring).
    - ``foreach``: accepted for torch's signature; XLA fuses the per-leaf norms either way.

    **Returns:** a 0-d array in the promoted dtype of the leaves; ``0.0`` for no leaves.
    """
    del foreach
    p = _norm_type(norm_type)
    leaves = _leaves(tensors)
    if not leaves:
        return jnp.asarray(0.0, jnp.float32)
    total = _total_norm(leaves, p)
    if error_if_nonfinite:
        _check_finite(total, p)
    return total


def clip_grads_with_norm(grads, max_norm: float, total_norm, foreach: bool | None = None):
    """Scale ``grads`` by ``min(max_norm / (total_norm + 1e-6), 1)`` (torch's
    ``clip_grads_with_norm_``, returning the scaled tree instead of writing ``p.grad``).

    **Arguments:**

    - ``grads``: a pytree of gradients (``None`` leaves kept as ``None``).
    - ``max_norm``: the largest total norm left unscaled.
    - ``total_norm``: a precomputed norm, e.g. from :func:`get_total_norm`.
    - ``foreach``: accepted for torch's signature; ignored.

    **Returns:** the scaled tree; each leaf keeps its dtype (scaled in the promoted dtype of the
    leaf and the coefficient, then rounded once, as torch's in-place multiply does).
    """
    del foreach
    grads = jax.tree_util.tree_map(jnp.asarray, grads)
    return _scale(grads, float(max_norm), jnp.asarray(total_norm))


def clip_grad_norm(grads, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: bool | None = None):
    """Clip the gradients' total norm to ``max_norm`` (``torch.nn.utils.clip_grad_norm_``).

    **Arguments:**

    - ``grads``: a pytree of gradients (what ``nnx.grad`` returns), or one array.
    - ``max_norm``: the largest total norm left unscaled.
    - ``norm_type``: the ``p`` of the p-norm (``inf`` / ``'inf'`` for the max-norm).
    - ``error_if_nonfinite``: raise torch's ``RuntimeError`` on a NaN or infinite total norm;
      eagerly it raises before returning, under jit the call fails at run time with a
      ``jax.errors.JaxRuntimeError`` carrying torch's message (module docstring).
    - ``foreach``: accepted for torch's signature; ignored.

    **Returns:** ``(clipped_grads, total_norm)``: the tree scaled by
    ``min(max_norm / (total_norm + 1e-6), 1)`` and the norm before clipping, which torch returns.

    >>> import jax.numpy as jnp
    >>> grads = {"w": jnp.array([3.0, 4.0])}
    >>> clipped, norm = clip_grad_norm(grads, max_norm=1.0)
    >>> float(norm), [round(float(v), 4) for v in clipped["w"]]
    (5.0, [0.6, 0.8])
    """
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    if not _leaves(grads):
        return grads, total
    return clip_grads_with_norm(grads, max_norm, total), total


def clip_grad_value(grads, clip_value: float, foreach: bool | None = None):
    """Clamp every gradient to ``[-clip_value, clip_value]`` (``torch.nn.utils.clip_grad_value_``).

    **Arguments:** ``grads``: a pytree of gradients; ``clip_value``: the bound (a Python number,
    as torch converts it with ``float``); ``foreach``: accepted for torch's signature.

    **Returns:** the clamped tree (NaN stays NaN, as torch's ``clamp``).
    """
    del foreach
    return _clamp(jax.tree_util.tree_map(jnp.asarray, grads), float(clip_value))


@jax.jit
def _clamp(grads, clip_value):
    return jax.tree_util.tree_map(
        lambda g: jnp.minimum(jnp.maximum(g, -clip_value), clip_value).astype(g.dtype), grads)


class ClipGradNorm:
    """:func:`clip_grad_norm` as a stateless optax transformation, to chain before an optimizer.

    ``optax.chain(ClipGradNorm(1.0), jaxconv.optim.SGD(lr=0.1))`` is torch's
    ``clip_grad_norm_(model.parameters(), 1.0); optimizer.step()``; it works in
    ``nnx.Optimizer(model, tx, wrt=nnx.Param)``; ``value=loss`` reaches a chained
    ``ReduceLROnPlateau``.

    **Arguments:** ``max_norm``, ``norm_type``, ``error_if_nonfinite``: as :func:`clip_grad_norm`.
    """

    def __init__(self, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False):
        self.max_norm, self.norm_type = float(max_norm), _norm_type(norm_type)
        self.error_if_nonfinite = bool(error_if_nonfinite)

    def __repr__(self) -> str:
        return (f"ClipGradNorm(max_norm={self.max_norm}, norm_type={self.norm_type}, "
                f"error_if_nonfinite={self.error_if_nonfinite})")

    def init(self, params) -> optax.EmptyState:
        """No state."""
        del params
        return optax.EmptyState()

    def update(self, updates, state, params=None, **extra) -> tuple[Any, optax.EmptyState]:
        """The gradients ``updates`` clipped to ``max_norm``; ``params`` and extras are unused."""
        del params, extra
        clipped, _ = clip_grad_norm(updates, self.max_norm, self.norm_type,
                                    self.error_if_nonfinite)
        return clipped, state


class ClipGradValue:
    """:func:`clip_grad_value` as a stateless optax transformation (``optax.chain`` it before an
    optimizer, as :class:`ClipGradNorm`).

    **Arguments:** ``clip_value``: the bound of ``[-clip_value, clip_value]``.
    """

    def __init__(self, clip_value: float):
        self.clip_value = float(clip_value)

    def __repr__(self) -> str:
        return f"ClipGradValue(clip_value={self.clip_value})"

    def init(self, params) -> optax.EmptyState:
        """No state."""
        del params
        return optax.EmptyState()

    def update(self, updates, state, params=None, **extra) -> tuple[Any, optax.EmptyState]:
        """The gradients ``updates`` clamped to ``[-clip_value, clip_value]``."""
        del params, extra
        return clip_grad_value(updates, self.clip_value), state
