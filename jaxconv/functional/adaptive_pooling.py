"""Adaptive average and max pooling with torch.nn.functional's names, signatures and semantics.

Output position ``i`` of a dimension of size ``in`` pools the bin
``[floor(i*in/out), ceil((i+1)*in/out))``; bins may overlap. Both poolings are separable
and reduce one spatial dimension at a time: each is arranged as ``(out, K)`` bins (a reshape
when ``out`` divides ``in``, else one gather with the slots past a bin's end filled with the
reduction's identity). Max pooling orders elements as ``max_pool`` does (ties to the first,
NaN propagates) and returns torch's flat indices.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from .._autocast import cast
from . import _args
from .pooling import _finish, _gather_max, _max_order, _pick_max


def _gather_bins(v, axis, length, out, fill):
    """Arrange axis ``axis`` of ``v`` as ``(out, K)`` bins; slots past a bin's end hold ``fill``."""
    if out > 0 and length % out == 0:
        return v.reshape(*v.shape[:axis], out, length // out, *v.shape[axis + 1:])
    start, end = _args.adaptive_bins(length, out)
    width = int((end - start).max(initial=1))
    pos = start[:, None] + np.arange(width)[None, :]
    valid = pos < end[:, None]
    g = jnp.take(v, jnp.asarray(np.minimum(pos, length - 1).reshape(-1)), axis=axis)
    g = g.reshape(*v.shape[:axis], out, width, *v.shape[axis + 1:])
    mask = jnp.asarray(valid.reshape((1,) * axis + valid.shape + (1,) * (v.ndim - axis - 1)))
    return jnp.where(mask, g, jnp.asarray(fill, g.dtype))


def _adaptive_input(x, output_size, n, fn):
    x, unbatched = _args.check_input(cast(fn, x)[0], n, fn)
    if n == 1 and isinstance(output_size, (tuple, list)) and any(o is None for o in output_size):
        raise TypeError(f"{fn}: output_size must be an int or a tuple of 1 int, got {output_size!r}")
    size = tuple(x.shape[2:])
    return x, unbatched, size, _args.adaptive_output_size(output_size, size, fn)


def _adaptive_avg_poolnd(x, output_size, *, n, fn):
    x, unbatched, size, out = _adaptive_input(x, output_size, n, fn)
    total, count = x.astype(_args.opmath(x.dtype)), np.ones((), np.int64)  # float32 sums
    for axis, (length, o) in enumerate(zip(size, out), start=2):
        total = _gather_bins(total, axis, length, o, 0).sum(axis=axis + 1)
        start, end = _args.adaptive_bins(length, o)
        count = np.multiply.outer(count, end - start)
    return _finish((total / jnp.asarray(count, total.dtype)).astype(x.dtype), unbatched)


def _adaptive_max_poolnd(x, output_size, return_indices, *, n, fn):
    x, unbatched, size, out = _adaptive_input(x, output_size, n, fn)
    key, tie, init = _max_order(x)  # (raises for a non-numeric input)
    # The maximum under a total order is separable: reduce one dimension at a time.
    for axis, (length, o) in enumerate(zip(size, out), start=2):
        key = _gather_bins(key, axis, length, o, init[0])
        tie = _gather_bins(tie, axis, length, o, init[1])
        key, tie = lax.reduce((key, tie), init, _pick_max, (axis + 1,))
    y, idx = _gather_max(x, tie)
    if return_indices:
        return _finish(y, unbatched), _finish(idx, unbatched)
    return _finish(y, unbatched)


_AVG_ARGS = """

    **Arguments:**

    - ``input``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``.
    - ``output_size``: int or tuple (one entry per spatial dimension); in 2d and 3d ``None``
      entries keep the input size. Output position ``i`` of a dimension of size ``in``
      averages the bin ``[floor(i*in/out), ceil((i+1)*in/out))``; bins may overlap.
    """

_MAX_ARGS = """

    **Arguments:**

    - ``input``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``.
    - ``output_size``: int or tuple; in 2d and 3d ``None`` entries keep the input size; bins
      as for ``adaptive_avg_pool{1,2,3}d``.
    - ``return_indices``: also return flat argmax indices into each spatial plane.

    Ties, NaN and gradients as for ``max_pool{1,2,3}d``.
    """


def adaptive_avg_pool1d(input, output_size):
    """1D adaptive average pooling of ``(N, C, L)`` or ``(C, L)``
    (``torch.nn.functional.adaptive_avg_pool1d``)."""
    return _adaptive_avg_poolnd(input, output_size, n=1, fn="adaptive_avg_pool1d")


def adaptive_avg_pool2d(input, output_size):
    """2D adaptive average pooling of ``(N, C, H, W)`` or ``(C, H, W)``
    (``torch.nn.functional.adaptive_avg_pool2d``)."""
    return _adaptive_avg_poolnd(input, output_size, n=2, fn="adaptive_avg_pool2d")


def adaptive_avg_pool3d(input, output_size):
    """3D adaptive average pooling of ``(N, C, D, H, W)`` or ``(C, D, H, W)``
    (``torch.nn.functional.adaptive_avg_pool3d``)."""
    return _adaptive_avg_poolnd(input, output_size, n=3, fn="adaptive_avg_pool3d")


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """1D adaptive max pooling of ``(N, C, L)`` or ``(C, L)``
    (``torch.nn.functional.adaptive_max_pool1d``)."""
    return _adaptive_max_poolnd(input, output_size, return_indices, n=1, fn="adaptive_max_pool1d")


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """2D adaptive max pooling of ``(N, C, H, W)`` or ``(C, H, W)``
    (``torch.nn.functional.adaptive_max_pool2d``)."""
    return _adaptive_max_poolnd(input, output_size, return_indices, n=2, fn="adaptive_max_pool2d")


def adaptive_max_pool3d(input, output_size, return_indices=False):
    """3D adaptive max pooling of ``(N, C, D, H, W)`` or ``(C, D, H, W)``
    (``torch.nn.functional.adaptive_max_pool3d``)."""
    return _adaptive_max_poolnd(input, output_size, return_indices, n=3, fn="adaptive_max_pool3d")


_args.share_doc(_AVG_ARGS, adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d)
_args.share_doc(_MAX_ARGS, adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d)
