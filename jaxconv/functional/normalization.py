"""Normalization with torch.nn.functional's names, signatures and semantics.

Everything here is pure. Where torch updates running statistics in place
(``batch_norm`` and ``instance_norm`` in training mode with running stats given), the
function instead RETURNS ``(output, new_running_mean, new_running_var)``; in every other
case it returns the output alone, as torch does. The modules in ``jaxconv.nn`` write the
new statistics back into their ``nnx.BatchStat`` buffers.

Statistics are computed in at least float32 (torch's "opmath" type) and the output is
cast back to the input's dtype. Variances used for normalising are biased (divide by the
count ``n``); running variances are updated with the unbiased estimate ``var * n / (n - 1)``.

Dtypes follow torch: weight, bias and running statistics share the input's dtype or, for a
float16/bfloat16 input, are all float32 (mixed precision); anything else is a ``TypeError``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _args
from ._normalize import affine as _affine
from ._normalize import normalize as _normalize
from ._sharding import reshape


def _compute_dtype(x):
    return jnp.promote_types(x.dtype, jnp.float32)


def _per_channel(v, ndim: int, dtype):
    """A ``(C,)`` vector shaped ``(1, C, 1, ...)`` to broadcast over ``(N, C, *spatial)``."""
    return jnp.asarray(v, dtype).reshape((1, -1) + (1,) * (ndim - 2))


def _check_vector(v, name: str, size: int):
    if v is not None and math.prod(v.shape) != size:
        raise ValueError(f"{name} should contain {size} elements not {math.prod(v.shape)}")


def _shaped(weight, bias, shape_fn):
    """``weight`` and ``bias`` (either may be ``None``) through ``shape_fn``."""
    return tuple(None if v is None else shape_fn(v) for v in (weight, bias))


def _check_momentum(momentum, fn: str):
    if momentum is None:
        raise TypeError(
            f"{fn}: momentum must be a float, got None (a module with momentum=None passes "
            "1/num_batches_tracked, the cumulative-average factor)"
        )


def _update(running, stat, momentum):
    """``(1 - momentum) * running + momentum * stat`` in the running buffer's dtype."""
    if running is None:
        return None
    dtype = running.dtype
    m = jnp.asarray(momentum, dtype)
    return ((1 - m) * running + m * lax.stop_gradient(stat).astype(dtype)).astype(dtype)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, *, axis_name=None):
    """Batch normalization over ``(N, C, *spatial)``, per channel ``C`` (torch's ``F.batch_norm``).

    In training mode the batch statistics (mean and biased variance over every axis but
    ``C``) normalise the input; otherwise ``running_mean`` / ``running_var`` do.

    **Arguments:**

    - ``input``: ``(N, C, *spatial)``, at least 2D.
    - ``running_mean``, ``running_var``: ``(C,)`` or ``None``. Required when not training.
    - ``weight``, ``bias``: optional ``(C,)`` affine parameters.
    - ``training``: use batch statistics (and update the running ones).
    - ``momentum``: factor of the running-stat update, a float (or a traced scalar such
      as ``1 / num_batches_tracked`` for a cumulative average); ``None`` is refused.
    - ``eps``: added to the variance.
    - ``axis_name``: (jaxconv) a mapped axis name (or tuple) of ``jax.shard_map`` / ``vmap``
      whose replicas each hold an equal shard of the batch: in training the statistics are those
      of all the shards together, torch's ``SyncBatchNorm`` (the running variance's unbiased
      correction counts every replica's values).

    **Returns:** the output, or, when ``training`` and running statistics are given,
    ``(output, new_running_mean, new_running_var)`` where
    ``new_running_mean = (1 - momentum) * running_mean + momentum * mean`` and the new
    variance uses the UNBIASED batch variance. This replaces torch's in-place update.
    An empty batch (no values per channel) gives an empty output and leaves the running
    statistics as they are; exactly one value per channel is refused, as in torch.
    """
    if getattr(input, "ndim", 0) < 2:
        raise ValueError(
            f"batch_norm expects input of shape (N, C, *), got input of shape "
            f"{tuple(getattr(input, 'shape', ()))}"
        )
    c = input.shape[1]
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        _check_vector(v, name, c)
    if training:
        _check_momentum(momentum, "batch_norm")
        n = input.shape[0] * math.prod(input.shape[2:])  # values per channel
        if axis_name is not None:
            n *= lax.axis_size(axis_name)
        if n == 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, got input size "
                f"{tuple(input.shape)}"
            )
    elif running_mean is None or running_var is None:
        raise ValueError(
            "batch_norm: running_mean and running_var must be defined in evaluation mode "
            "(training=False), got None"
        )
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            "batch_norm: running_mean and running_var must either both be None or neither be "
            f"None, got running_mean={'None' if running_mean is None else 'an array'} and "
            f"running_var={'None' if running_var is None else 'an array'}"
        )
    _args.check_norm_dtypes("batch_norm", input, weight=weight, bias=bias,
                            running_mean=running_mean, running_var=running_var)
    dtype = _compute_dtype(input)
    x = input.astype(dtype)
    ndim = x.ndim

    def shape(v):
        return _per_channel(v, ndim, dtype)

    if training:
        # over replicas: the mean of equal shards' means, then of their squared deviations from it
        y, mean, var = _normalize(x, *_shaped(weight, bias, shape), (0,) + tuple(range(2, ndim)),
                                  eps, axis_name)
        mean, var = mean.reshape(c), var.reshape(c)
    else:
        mean, var = running_mean.astype(dtype), running_var.astype(dtype)
        y = _affine((x - shape(mean)) * lax.rsqrt(shape(var) + eps), weight, bias, shape)
    y = y.astype(input.dtype)
    if not training or (running_mean is None and running_var is None):
        return y
    if n == 0:  # an empty batch: torch leaves the running statistics as they are
        return y, running_mean, running_var
    unbiased = var * (n / (n - 1))
    return y, _update(running_mean, mean, momentum), _update(running_var, unbiased, momentum)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Instance normalization: each ``(n, c)`` slice over its spatial axes (``F.instance_norm``).

    **Arguments:**

    - ``input``: ``(N, C, *spatial)``.
    - ``running_mean``, ``running_var``: optional ``(C,)`` running statistics.
    - ``weight``, ``bias``: optional ``(C,)`` affine parameters.
    - ``use_input_stats``: normalise with each instance's statistics; when ``False`` the
      running statistics are used (and must be given).
    - ``momentum``, ``eps``: as in ``batch_norm``.

    **Returns:** the output, or ``(output, new_running_mean, new_running_var)`` when
    ``use_input_stats`` and running statistics are given. As in torch, the update uses
    the batch average of the per-instance means and unbiased variances. As in torch, an
    empty batch (N = 0) makes the new statistics NaN and refuses ``weight``/``bias``; an
    empty spatial extent keeps them.
    """
    if getattr(input, "ndim", 0) < 2:
        raise ValueError(
            f"instance_norm expects input of shape (N, C, *), got input of shape "
            f"{tuple(getattr(input, 'shape', ()))}"
        )
    c = input.shape[1]
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        _check_vector(v, name, c)
    s = math.prod(input.shape[2:])
    if use_input_stats:
        _check_momentum(momentum, "instance_norm")
        if s == 1:
            raise ValueError(
                "Expected more than 1 spatial element when training, got input size "
                f"{tuple(input.shape)}"
            )
    elif running_mean is None or running_var is None:
        raise ValueError(
            "Expected running_mean and running_var to be defined when use_input_stats is false"
        )
    if (running_mean is None) != (running_var is None):
        raise ValueError("instance_norm: running_mean and running_var must either both be None "
                         "or neither be None")
    _args.check_instance_norm_dtypes("instance_norm", input, weight, bias, running_mean, running_var)
    if input.shape[0] == 0 and (weight is not None or bias is not None):
        raise ValueError(  # torch fails too (an IndexError in its repeat of weight/bias)
            f"instance_norm: an empty batch (N=0, input of shape {tuple(input.shape)}) cannot "
            "take weight or bias, as in torch"
        )
    # torch casts running statistics of another dtype to the parameters' (weight's, else
    # the input's) dtype, uses and updates them there, and casts the update back.
    stats_dtype = (weight if weight is not None else input).dtype
    stats = [None if v is None else v.astype(stats_dtype) for v in (running_mean, running_var)]
    dtype = _compute_dtype(input)
    x = input.astype(dtype)
    ndim = x.ndim

    def shape(v):
        return _per_channel(v, ndim, dtype)

    if use_input_stats:
        y, mean, var = _normalize(x, *_shaped(weight, bias, shape), tuple(range(2, ndim)), eps, None)
    else:
        y = _affine((x - shape(stats[0])) * lax.rsqrt(shape(stats[1]) + eps), weight, bias, shape)
    y = y.astype(input.dtype)
    if not use_input_stats or (running_mean is None and running_var is None):
        return y
    if s == 0 and input.shape[0]:  # nothing to average: torch keeps the statistics
        return y, running_mean, running_var
    # With N = 0 the batch average is NaN, and so are the new statistics, as in torch.
    mean_c = jnp.mean(mean.reshape(mean.shape[:2]), 0)
    var_c = jnp.mean(var.reshape(var.shape[:2]), 0) * (s / (s - 1))
    new = [_update(v, stat, momentum).astype(r.dtype)
           for v, stat, r in zip(stats, (mean_c, var_c), (running_mean, running_var))]
    return y, *new


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
    """Group normalization (``F.group_norm``): channels split into ``num_groups`` groups, each
    normalised over its channels and the spatial axes, per sample.

    **Arguments:**

    - ``input``: ``(N, C, *)``, at least 2D; ``C`` divisible by ``num_groups``.
    - ``num_groups``: number of groups.
    - ``weight``, ``bias``: optional ``(C,)`` per-channel affine parameters.
    - ``eps``: added to the variance.
    """
    ndim = getattr(input, "ndim", 0)
    if ndim < 2:
        raise ValueError(
            f"Expected at least 2 dimensions for input tensor but received {ndim}"
        )
    n, c = input.shape[:2]
    num_groups = _args.check_num_groups(num_groups, c, input.shape)
    for name, v in (("weight", weight), ("bias", bias)):
        if v is not None and (v.ndim != 1 or v.shape[0] != c):
            raise ValueError(
                f"Expected {name} to be a vector of size equal to the number of channels in "
                f"input, but got {name} of shape {list(v.shape)} and input of shape {list(input.shape)}"
            )
    _args.check_norm_dtypes("group_norm", input, weight=weight, bias=bias)
    dtype = _compute_dtype(input)
    x = reshape(input.astype(dtype), (n, num_groups, math.prod(input.shape[1:]) // num_groups))
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    y = reshape((x - mean) * lax.rsqrt(var + eps), input.shape)
    return _affine(y, weight, bias, lambda v: _per_channel(v, ndim, dtype)).astype(input.dtype)


def _normalized_shape(normalized_shape, fn: str) -> tuple[int, ...]:
    if isinstance(normalized_shape, Sequence) and not isinstance(normalized_shape, str) and all(
        _args.is_int(v) for v in normalized_shape
    ):
        return tuple(int(v) for v in normalized_shape)
    raise TypeError(
        f"{fn}: normalized_shape must be a tuple or list of ints, got {normalized_shape!r}"
    )


def _check_trailing(input, shape: tuple[int, ...], weight, bias):
    if tuple(input.shape[input.ndim - len(shape):]) != shape or input.ndim < len(shape):
        raise ValueError(
            f"Given normalized_shape={list(shape)}, expected input with shape "
            f"[*, {', '.join(map(str, shape))}], but got input of size {list(input.shape)}"
        )
    for name, v in (("weight", weight), ("bias", bias)):
        if v is not None and tuple(v.shape) != shape:
            raise ValueError(
                f"Expected {name} to be of same shape as normalized_shape, but got {name} of "
                f"shape {list(v.shape)} and normalized_shape = {list(shape)}"
            )


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Layer normalization over the trailing ``normalized_shape`` axes (``F.layer_norm``).

    **Arguments:**

    - ``input``: ``(*, *normalized_shape)``.
    - ``normalized_shape``: tuple or list of the trailing sizes (an int is refused, as torch does).
    - ``weight``, ``bias``: optional elementwise affine parameters of ``normalized_shape``.
    - ``eps``: added to the (biased) variance.
    """
    shape = _normalized_shape(normalized_shape, "layer_norm")
    _check_trailing(input, shape, weight, bias)
    _args.check_norm_dtypes("layer_norm", input, weight=weight, bias=bias)
    dtype = _compute_dtype(input)
    x = input.astype(dtype)
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    mean = jnp.mean(x, axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axes, keepdims=True)
    y = (x - mean) * lax.rsqrt(var + eps)
    return _affine(y, weight, bias, lambda v: v.astype(dtype)).astype(input.dtype)


def rms_norm(input, normalized_shape, weight=None, eps: float | None = None):
    """Root-mean-square normalization over the trailing axes (``F.rms_norm``):
    ``x / sqrt(mean(x**2) + eps) * weight``.

    **Arguments:**

    - ``input``: ``(*, *normalized_shape)``.
    - ``normalized_shape``: tuple or list of the trailing sizes.
    - ``weight``: optional elementwise scale of ``normalized_shape``.
    - ``eps``: ``None`` means the machine epsilon of the computation dtype (as torch).
    """
    shape = _normalized_shape(normalized_shape, "rms_norm")
    _check_trailing(input, shape, weight, None)
    _args.check_floating("rms_norm", "input", input, complex_ok=True)
    dtype = _compute_dtype(input)
    if eps is None:
        eps = float(jnp.finfo(dtype).eps)
    x = input.astype(dtype)
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    y = x * lax.rsqrt(jnp.mean(jnp.square(x), axes, keepdims=True) + eps)
    # torch takes a weight of any dtype: the product promotes, then casts to the input's dtype.
    return _affine(y, weight, None, lambda v: v).astype(input.dtype)


def local_response_norm(input, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    """Local response normalization across channels (``F.local_response_norm``).

    ``out = x / (k + alpha / size * S) ** beta`` where ``S`` sums ``x**2`` over a channel
    window of ``size`` that spans ``size // 2`` channels before and ``(size - 1) // 2``
    after, zero-padded at the ends (torch's average pool with padding counted).

    **Arguments:**

    - ``input``: ``(N, C, *)``, at least 3D.
    - ``size``: channels in the window.
    - ``alpha``, ``beta``, ``k``: as in the formula.
    """
    ndim = getattr(input, "ndim", 0)
    if ndim < 3:
        raise ValueError(f"Expected 3D or higher dimensionality input (got {ndim} dimensions)")
    if not _args.is_int(size) or size < 1:
        raise ValueError(f"local_response_norm: size must be a positive integer, got size={size!r}")
    if input.size == 0:
        return input
    dtype = _compute_dtype(input)
    x = input.astype(dtype)
    sq = jnp.square(x)
    pads = [(0, 0, 0)] * ndim
    pads[1] = (size // 2, (size - 1) // 2, 0)
    sq = lax.pad(sq, np.zeros((), dtype), pads)
    window = (1, size) + (1,) * (ndim - 2)
    total = lax.reduce_window(sq, np.zeros((), dtype), lax.add, window, (1,) * ndim, "VALID")
    div = (total / size * alpha + k) ** beta
    return (x / div).astype(input.dtype)
