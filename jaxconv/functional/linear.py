"""``linear``, ``flatten``/``unflatten`` and dropout, with torch's semantics.

Dropout needs randomness: the functions take a ``key`` (keyword-only), required when
``training`` and ``0 < p``. Kept elements are scaled by ``1 / (1 - p)`` computed in the
input's dtype, then multiplied, as torch does; ``p = 1`` gives zeros.
"""
from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp

from .._autocast import cast
from . import _args
from .conv import DEFAULT_PRECISION


def product(a, b, precision=DEFAULT_PRECISION):
    """``a @ b`` accumulated in the accumulator of the operands' dtype (float32 for
    float16/bfloat16, :func:`~._dtypes.accumulator`), not yet rounded to it."""
    return jnp.matmul(a, b, precision=precision, preferred_element_type=_args.accumulator(a.dtype))


def linear(input, weight, bias=None, *, precision=DEFAULT_PRECISION):
    """``x @ weight.T + bias`` over the last axis (``F.linear``).

    **Arguments:**

    - ``input``: ``(*, in_features)``.
    - ``weight``: ``(out_features, in_features)`` (torch's layout), or ``(in_features,)``,
      which drops the last axis.
    - ``bias``: optional, broadcastable to ``(out_features,)``.
    - ``precision``: ``lax.Precision`` of the matmul; full float32 precision by default.

    float16/bfloat16 products accumulate in float32 with the bias and round once (torch's CPU
    ``addmm``); under :func:`jaxconv.autocast` the operands are cast first.
    """
    input, weight, bias = cast("linear", input, weight, bias)
    if weight.ndim not in (1, 2):
        raise ValueError(f"linear: weight must be 1D or 2D, got weight of shape {tuple(weight.shape)}")
    if input.ndim < 1 or input.shape[-1] != weight.shape[-1]:
        rows = math.prod(input.shape[:-1]) if input.ndim else 1
        raise ValueError(
            f"linear: mat1 and mat2 shapes cannot be multiplied ({rows}x"
            f"{input.shape[-1] if input.ndim else 0} and {weight.shape[-1]}x"
            f"{weight.shape[0] if weight.ndim == 2 else 1}): input's last dimension must equal "
            f"in_features of weight {tuple(weight.shape)}"
        )
    _args.check_same_dtype("linear", input, weight=weight, bias=bias)
    y = product(input, weight.T, precision)
    if bias is not None:
        try:
            jnp.broadcast_shapes(bias.shape, y.shape)
        except ValueError:
            raise ValueError(
                f"linear: bias of shape {tuple(bias.shape)} does not broadcast to the output "
                f"shape {tuple(y.shape)}"
            ) from None
        y = y + bias
    return y.astype(input.dtype)


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    """Merge dims ``start_dim..end_dim`` into one (``torch.flatten``); a 0-D input gives 1-D."""
    if input.ndim == 0:
        _args.dim_index(start_dim, 0, "flatten", "start_dim")
        _args.dim_index(end_dim, 0, "flatten", "end_dim")
        return input.reshape(1)
    s = _args.dim_index(start_dim, input.ndim, "flatten", "start_dim")
    e = _args.dim_index(end_dim, input.ndim, "flatten", "end_dim")
    if s > e:
        raise ValueError(
            f"flatten: start_dim cannot come after end_dim, got start_dim={start_dim}, end_dim={end_dim}"
        )
    return input.reshape(input.shape[:s] + (math.prod(input.shape[s:e + 1]),) + input.shape[e + 1:])


def unflatten(input, dim: int, sizes):
    """Split dim ``dim`` into ``sizes`` (``torch.unflatten``); one entry may be ``-1``."""
    sizes = tuple(sizes)
    d = _args.dim_index(dim, input.ndim, "unflatten")
    n = input.shape[d]
    known = math.prod(v for v in sizes if v != -1)
    if sum(v == -1 for v in sizes) > 1:
        raise ValueError(f"unflatten: only one dimension can be inferred, got sizes {list(sizes)}")
    if (-1 in sizes and (known == 0 or n % known)) or (-1 not in sizes and known != n):
        raise ValueError(
            f"unflatten: Provided sizes {list(sizes)} don't multiply up to the size of dim {dim} "
            f"({n}) in the input tensor"
        )
    sizes = tuple(n // known if v == -1 else v for v in sizes)
    return input.reshape(input.shape[:d] + sizes + input.shape[d + 1:])


def _check_p(p):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _given_mask(mask, input, fn):
    """A given keep mask (replaying another run's draw) as booleans; its shape must broadcast
    to the input's."""
    mask = jnp.asarray(mask)
    try:
        fits = jnp.broadcast_shapes(mask.shape, input.shape) == input.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{fn}: mask must broadcast to the input's shape {input.shape}, got "
                         f"shape {mask.shape}")
    return mask.astype(bool)


def _keep(input, p, key, mask_shape, fn, mask):
    """The keep mask: ``mask`` when given, else drawn from ``key`` with probability ``1 - p``."""
    if mask is not None:
        return _given_mask(mask, input, fn)
    if key is None:
        raise ValueError(f"{fn}: a key is required when training with p > 0 (pass key=...)")
    return jax.random.bernoulli(key, 1.0 - p, mask_shape)


def _masked(input, p, key, mask_shape, fn, mask=None):
    keep = _keep(input, p, key, mask_shape, fn, mask)
    if p == 1.0:
        return jnp.zeros_like(input)
    scale = jnp.asarray(1, input.dtype) / jnp.asarray(1.0 - p, input.dtype)
    return jnp.where(keep, input * scale, jnp.zeros((), input.dtype))


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False, *, key=None,
            mask=None):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)`` (``F.dropout``).

    **Arguments:**

    - ``p``: drop probability in ``[0, 1]``.
    - ``training``: identity when ``False``.
    - ``inplace``: accepted and ignored.
    - ``key``: a ``jax.random`` key, required when ``training`` and ``p > 0``.
    - ``mask``: instead of ``key``, the keep mask to apply (``True`` = kept; its shape
      broadcasts to the input's): another run's draw replayed (``equivalence.compare_training``
      replays torch's). The same for ``dropout1d/2d/3d`` and ``stochastic_depth``.
    """
    _check_p(p)
    if not training or p == 0:
        return input
    return _masked(input, p, key, input.shape, "dropout", mask)


def stochastic_depth(input, p: float, mode: str = "row", training: bool = True,
                     scale: bool = True, *, key=None, mask=None):
    """Drop whole samples (``mode='row'``) or the whole batch (``'batch'``) with probability ``p``.

    torchvision's ``ops.stochastic_depth`` and, with ``scale=scale_by_keep``, timm's
    ``drop_path``: survivors are divided by ``1 - p`` when ``scale`` (and ``p < 1``).

    **Arguments:**

    - ``p``: drop probability in ``[0, 1]``; ``mode``: ``'row'`` or ``'batch'``.
    - ``training``: identity when ``False``; ``key``: required when training with ``p > 0``.
    - ``mask``: instead of ``key``, the keep mask (as :func:`dropout`'s).
    """
    _check_p(p)
    if mode not in ("row", "batch"):
        raise ValueError(f"stochastic_depth: mode has to be either 'batch' or 'row', but got {mode!r}")
    if not training or p == 0:
        return input
    shape = (input.shape[0],) + (1,) * (input.ndim - 1) if mode == "row" else (1,) * input.ndim
    noise = _keep(input, p, key, shape, "stochastic_depth", mask).astype(input.dtype)
    if scale and p < 1:
        noise = noise / jnp.asarray(1.0 - p, input.dtype)
    return input * noise


def _feature_dropout(input, p, training, key, fn, mask=None):
    if input.ndim < 2:
        raise ValueError(f"{fn}: feature dropout needs at least 2 dimensions, got input of shape {input.shape}")
    if not training or p == 0:
        return input
    return _masked(input, p, key, input.shape[:2] + (1,) * (input.ndim - 2), fn, mask)


def _deprecated_rank(fn: str, ndim: int, n: int):
    warnings.warn(
        f"{fn}: Received a {ndim}-D input to {fn}, which is deprecated and will result in an "
        f"error in a future release. To retain the behavior and silence this warning, please "
        f"use dropout instead. Note that {fn} exists to provide channel-wise dropout on inputs "
        f"with {n} spatial dimensions, a channel dimension, and an optional batch dimension "
        f"(i.e. {n + 1}D or {n + 2}D inputs).", stacklevel=3)


def dropout1d(input, p: float = 0.5, training: bool = True, inplace: bool = False, *, key=None,
              mask=None):
    """Zero whole channels of ``(N, C, L)`` or unbatched ``(C, L)`` input (``F.dropout1d``);
    arguments as ``dropout``."""
    _check_p(p)
    if input.ndim not in (2, 3):
        raise ValueError(
            f"dropout1d: Expected 2D or 3D input, but received a {input.ndim}D input. Note that "
            "dropout1d exists to provide channel-wise dropout on inputs with 1 spatial dimension, "
            "a channel dimension, and an optional batch dimension (i.e. 2D or 3D inputs)."
        )
    if input.ndim == 2:
        return _feature_dropout(input[None], p, training, key, "dropout1d",
                                None if mask is None else jnp.asarray(mask)[None])[0]
    return _feature_dropout(input, p, training, key, "dropout1d", mask)


def dropout2d(input, p: float = 0.5, training: bool = True, inplace: bool = False, *, key=None,
              mask=None):
    """Zero whole channels of ``(N, C, H, W)`` input (``F.dropout2d``); arguments as ``dropout``.

    As in torch, a 3-D input is read as ``(N, C, L)`` (with torch's warning), not as an
    unbatched ``(C, H, W)``; other ranks warn and drop ``(dim 0, dim 1)`` slices.
    """
    _check_p(p)
    if input.ndim not in (3, 4):
        _deprecated_rank("dropout2d", input.ndim, 2)
    if input.ndim == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D "
            "dropout behavior is desired - input is interpreted as shape (N, C, L), where C is "
            "the channel dim. This behavior will change in a future release to interpret the "
            "input as one without a batch dimension, i.e. shape (C, H, W). To maintain the 1D "
            "channel-wise dropout behavior, please switch to using dropout1d instead.", stacklevel=2)
    return _feature_dropout(input, p, training, key, "dropout2d", mask)


def dropout3d(input, p: float = 0.5, training: bool = True, inplace: bool = False, *, key=None,
              mask=None):
    """Zero whole channels of ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)`` input
    (``F.dropout3d``); arguments as ``dropout``."""
    _check_p(p)
    if input.ndim not in (4, 5):
        _deprecated_rank("dropout3d", input.ndim, 3)
    if input.ndim != 5:
        return _feature_dropout(input[None], p, training, key, "dropout3d",
                                None if mask is None else jnp.asarray(mask)[None])[0]
    return _feature_dropout(input, p, training, key, "dropout3d", mask)
