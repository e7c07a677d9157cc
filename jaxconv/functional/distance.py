"""``pairwise_distance`` (``F.pairwise_distance``) and the vector norm behind it, with torch's
gradients: at a zero vector the 2-norm's gradient is 0 (not NaN), the 1-norm's is ``sign``
(0 at 0), the inf-norm shares its gradient among tied maxima, the 0-"norm" has none."""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from . import _args


def _norm_value(x, p, axis, keepdims):
    a = jnp.abs(x)
    if p == math.inf:
        return jnp.max(a, axis, keepdims=keepdims)
    if p == -math.inf:
        return jnp.min(a, axis, keepdims=keepdims)
    if p == 0:
        return jnp.sum(x != 0, axis, keepdims=keepdims).astype(x.dtype)
    if p == 1:
        return jnp.sum(a, axis, keepdims=keepdims)
    if p == 2:
        return jnp.sqrt(jnp.sum(x * x, axis, keepdims=keepdims))
    return jnp.sum(a ** p, axis, keepdims=keepdims) ** (1.0 / p)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def vector_norm(x, p, axis: int, keepdims: bool = False):
    """The ``p``-norm of ``x`` over ``axis`` (``torch.linalg.vector_norm``), torch's gradient."""
    return _norm_value(x, p, axis, keepdims)


@vector_norm.defjvp
def _vector_norm_jvp(p, axis, keepdims, primals, tangents):
    """torch's ``norm_backward``: the scale each element's tangent is multiplied by."""
    (x,), (dx,) = primals, tangents
    n = _norm_value(x, p, axis, True)
    zero = jnp.zeros((), x.dtype)
    a = jnp.abs(x)
    if p == 0:
        scale = jnp.zeros_like(x)
    elif p == 1:
        scale = jnp.sign(x)
    elif p == 2:
        scale = jnp.where(n == 0, zero, x / jnp.where(n == 0, 1, n))
    elif math.isinf(p):
        ties = (a == n).astype(x.dtype)
        scale = jnp.sign(x) * ties / jnp.sum(ties, axis, keepdims=True)
    else:
        inv = jnp.where(n == 0, zero, 1 / jnp.where(n == 0, 1, n) ** (p - 1))
        if p < 1:
            scale = jnp.sign(x) * jnp.where(x == 0, zero, a ** (p - 1)) * n ** (1 - p)
        elif p < 2:
            scale = jnp.sign(x) * a ** (p - 1) * inv
        else:
            scale = x * a ** (p - 2) * inv
    return vector_norm(x, p, axis, keepdims), jnp.sum(scale * dx, axis, keepdims=keepdims)


def pairwise_distance(x1, x2, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False):
    """The ``p``-norm of ``x1 - x2 + eps`` over the last dim (``F.pairwise_distance``).

    **Arguments:**

    - ``x1``, ``x2``: broadcastable arrays; the distance is over the last dim of the larger rank.
    - ``p``: the norm degree (``inf`` and ``0`` included).
    - ``eps``: added to the difference (so the 2-norm of equal vectors is not 0).
    - ``keepdim``: keep the reduced dim with size 1.
    """
    _args.check_floating("pairwise_distance", "x1", x1)
    diff = x1 - x2 + eps
    if diff.ndim == 0:
        return _args.in_opmath(vector_norm, diff[None], p, 0, False)
    return _args.in_opmath(vector_norm, diff, p, diff.ndim - 1, keepdim)

