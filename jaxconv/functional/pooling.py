"""Pooling with torch.nn.functional's names, signatures and semantics.

Max pooling follows torch's CPU kernel exactly: each window is scanned in row-major order
and an element replaces the running maximum when it is larger or NaN, so ties go to the
first element, NaN propagates (the last NaN wins), and the gradient flows to that one
element. For windows of up to ``_FOLD_TAPS`` taps this scan is written out as strided
slices (fast on every backend, and ``jax.grad`` through its ``where`` chain sends the
gradient exactly where torch sends it); larger windows use a variadic
``lax.reduce_window`` over (key, tie-break) pairs that orders elements the same way.
Indices are torch's: positions in the flattened, unpadded spatial plane of each (n, c).
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _args

_FOLD_TAPS = 32
"""Max pooling windows with at most this many taps use the unrolled scan."""


def _index_dtype():
    return jax.dtypes.canonicalize_dtype(jnp.int64)


def _lowest(dtype):
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating):
        return -np.inf
    if jnp.issubdtype(dtype, jnp.integer):
        return np.iinfo(dtype).min
    raise TypeError(f"max pooling needs a float or integer input, got dtype {dtype}")


def _finish(y, unbatched):
    return y[0] if unbatched else y


def _plane_strides(size):
    """Row-major strides of the flattened spatial plane."""
    return tuple(int(np.prod(size[i + 1:])) for i in range(len(size)))


def _pad_to_windows(x, size, out, k, s, p, d, value):
    """Pad (or crop) the spatial dims so that exactly ``out`` windows fit, ``p`` before each."""
    hi = [(o - 1) * si + di * (ki - 1) + 1 - i - pi for i, o, ki, si, pi, di in zip(size, out, k, s, p, d)]
    config = [(0, 0, 0)] * 2 + [(pi, h, 0) for pi, h in zip(p, hi)]
    return lax.pad(x, jnp.asarray(value, x.dtype), config)


def _window_origins(out, s, p, strides):
    """Flat index (unpadded plane) of each window's first tap, shape ``out``; may be negative."""
    grids = np.meshgrid(*[np.arange(o) * si - pi for o, si, pi in zip(out, s, p)], indexing="ij")
    return sum(g * st for g, st in zip(grids, strides)) if grids else np.zeros(())


def _first_valid_taps(out, size, s, p, d):
    """Per dimension, the tap number of each window's first tap inside the input."""
    taps = []
    for o, i, si, pi, di in zip(out, size, s, p, d):
        start = np.arange(o) * si - pi
        taps.append(np.where(start < 0, (-start + di - 1) // di, 0))
    return taps


def _max_pool_scan(xp, size, out, k, s, p, d, with_indices):
    """torch's scan, tap by tap in row-major order: ``take = v > best or isnan(v)``.

    torch starts each window at ``best = -inf`` with its argmax on the first tap inside the
    input; here that tap is always taken, so a window of -inf values still reports (and
    sends its gradient to) the first element, as torch's does.
    """
    lead = xp.shape[:2]
    strides = _plane_strides(size)
    best = jnp.full(lead + tuple(out), _lowest(xp.dtype), xp.dtype)
    first = _first_valid_taps(out, size, s, p, d)
    idx = None
    if with_indices:
        origins = jnp.asarray(_window_origins(out, s, p, strides), _index_dtype())
        idx = jnp.zeros(best.shape, _index_dtype())
    floating = jnp.issubdtype(xp.dtype, jnp.floating)
    for tap in itertools.product(*[range(ki) for ki in k]):
        start = [j * di for j, di in zip(tap, d)]
        v = lax.slice(xp, (0, 0, *start),
                      (*lead, *[st + (o - 1) * si + 1 for st, o, si in zip(start, out, s)]),
                      (1, 1, *s))
        take = (v > best) | jnp.isnan(v) if floating else v > best
        forced = functools.reduce(np.logical_and.outer, [f == j for f, j in zip(first, tap)])
        if forced.any():
            take = take | jnp.asarray(forced)
        best = jnp.where(take, v, best)
        if with_indices:
            offset = sum(j * di * st for j, di, st in zip(tap, d, strides))
            idx = jnp.where(take, origins + offset, idx)
    return best, idx


def _max_pool_reduce(x, size, out, k, s, p, d):
    """Large windows: variadic reduce_window over (key, tie-break), then gather the values.

    Keys order elements as torch's scan does: NaN (as +inf) above everything, larger
    values first; the tie-break prefers the smaller index for numbers and the larger one
    for NaN (encoded ``-(i+1)``). Padding carries the lowest key and the largest tie-break.
    """
    lead = x.shape[:2]
    plane = int(np.prod(size))
    itype = _index_dtype()
    index = jnp.broadcast_to(jnp.arange(plane, dtype=itype).reshape(size), x.shape)
    floating = jnp.issubdtype(x.dtype, jnp.floating)
    xs = lax.stop_gradient(x)
    if floating:
        nan = jnp.isnan(xs)
        key, tie = jnp.where(nan, jnp.inf, xs), jnp.where(nan, -index - 1, index)
    else:
        key, tie = xs, index
    hi = [(o - 1) * si + di * (ki - 1) + 1 - i - pi for i, o, ki, si, pi, di in zip(size, out, k, s, p, d)]
    pads = [(0, 0)] * 2 + [(pi, max(h, 0)) for pi, h in zip(p, hi)]

    def pick(a, b):
        (ka, ta), (kb, tb) = a, b
        take = (kb > ka) | ((kb == ka) & (tb < ta))
        return jnp.where(take, kb, ka), jnp.where(take, tb, ta)

    _, tie = lax.reduce_window(
        (key, tie), (jnp.asarray(_lowest(x.dtype), x.dtype), jnp.asarray(jnp.iinfo(itype).max, itype)),
        pick, (1, 1, *k), (1, 1, *s), pads, window_dilation=(1, 1, *d))
    tie = tie[(slice(None), slice(None), *[slice(0, o) for o in out])]
    idx = jnp.where(tie < 0, -tie - 1, tie)
    flat = idx.reshape(*lead, int(np.prod(idx.shape[2:])))  # not -1: ambiguous when N = 0
    values = jnp.take_along_axis(x.reshape(*lead, plane), flat, axis=-1)
    return values.reshape(idx.shape), idx


def _max_poolnd(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, *, n, fn):
    x, unbatched = _args.check_input(x, n, fn)
    k, s, p, d = _args.pool_args(n, kernel_size, stride, padding, dilation, fn)
    size = tuple(x.shape[2:])
    out = _args.pool_output_size(size, k, s, p, d, ceil_mode)
    _args.check_pool_output(size, out, fn)
    if int(np.prod(k)) <= _FOLD_TAPS:
        xp = _pad_to_windows(x, size, out, k, s, p, d, _lowest(x.dtype))
        y, idx = _max_pool_scan(xp, size, out, k, s, p, d, return_indices)
    else:
        y, idx = _max_pool_reduce(x, size, out, k, s, p, d)
    if return_indices:
        return _finish(y, unbatched), _finish(idx, unbatched)
    return _finish(y, unbatched)


def _avg_divisor(size, out, k, s, p, ceil_mode, count_include_pad, divisor_override):
    """torch's divisor per output position (separable product over dimensions)."""
    if divisor_override is not None:
        return divisor_override
    per_dim = []
    for i, o, ki, si, pi in zip(size, out, k, s, p):
        start = np.arange(o) * si - pi
        end = np.minimum(start + ki, i + pi)  # the part beyond the padded input never counts
        if not count_include_pad:
            end, start = np.minimum(end, i), np.maximum(start, 0)
        per_dim.append(end - start)
    grids = np.meshgrid(*per_dim, indexing="ij")
    return np.prod(np.stack(grids), axis=0)


def _avg_poolnd(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                *, n, fn):
    x, unbatched = _args.check_input(x, n, fn)
    k, s, p, d = _args.pool_args(n, kernel_size, stride, padding, 1, fn)
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, int):
            raise TypeError(f"{fn}: divisor_override must be an int or None, got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError(f"{fn}: divisor must be not zero, got divisor_override=0")
    size = tuple(x.shape[2:])
    out = _args.pool_output_size(size, k, s, p, d, ceil_mode)
    _args.check_pool_output(size, out, fn)
    xp = _pad_to_windows(x, size, out, k, s, p, d, 0)
    total = lax.reduce_window(xp, np.zeros((), x.dtype), lax.add, (1, 1, *k), (1, 1, *s), "VALID")
    divisor = _avg_divisor(size, out, k, s, p, ceil_mode, count_include_pad, divisor_override)
    divisor = jnp.asarray(divisor, x.dtype)
    if jnp.issubdtype(x.dtype, jnp.integer):
        y = lax.div(total, jnp.broadcast_to(divisor, total.shape))  # truncates, as torch does
    else:
        y = total / divisor
    return _finish(y, unbatched)


def _bins(length, out):
    """torch's adaptive bins: start = floor(i*in/out), end = ceil((i+1)*in/out)."""
    i = np.arange(out)
    return (i * length) // out, -((-(i + 1) * length) // out)


def _gather_bins(v, axis, length, out, fill):
    """Arrange axis ``axis`` of ``v`` as ``(out, K)`` bins; slots past a bin's end hold ``fill``."""
    if out > 0 and length % out == 0:
        return v.reshape(*v.shape[:axis], out, length // out, *v.shape[axis + 1:])
    start, end = _bins(length, out)
    width = int((end - start).max(initial=1))
    pos = start[:, None] + np.arange(width)[None, :]
    valid = pos < end[:, None]
    g = jnp.take(v, jnp.asarray(np.minimum(pos, length - 1).reshape(-1)), axis=axis)
    g = g.reshape(*v.shape[:axis], out, width, *v.shape[axis + 1:])
    mask = jnp.asarray(valid.reshape((1,) * axis + valid.shape + (1,) * (v.ndim - axis - 1)))
    return jnp.where(mask, g, jnp.asarray(fill, g.dtype))


def _adaptive_input(x, output_size, n, fn):
    x, unbatched = _args.check_input(x, n, fn)
    if n == 1 and isinstance(output_size, (tuple, list)) and any(o is None for o in output_size):
        raise TypeError(f"{fn}: output_size must be an int or a tuple of 1 int, got {output_size!r}")
    size = tuple(x.shape[2:])
    return x, unbatched, size, _args.adaptive_output_size(output_size, size, fn)


def _adaptive_avg_poolnd(x, output_size, *, n, fn):
    x, unbatched, size, out = _adaptive_input(x, output_size, n, fn)
    total, count = x, np.ones((), np.int64)
    for axis, (length, o) in enumerate(zip(size, out), start=2):
        total = _gather_bins(total, axis, length, o, 0).sum(axis=axis + 1)
        start, end = _bins(length, o)
        count = np.multiply.outer(count, end - start)
    return _finish(total / jnp.asarray(count, x.dtype), unbatched)


def _adaptive_max_poolnd(x, output_size, return_indices, *, n, fn):
    x, unbatched, size, out = _adaptive_input(x, output_size, n, fn)
    _lowest(x.dtype)  # float or integer input only
    lead, plane, itype = x.shape[:2], int(np.prod(size)), _index_dtype()
    xs = lax.stop_gradient(x)
    index = jnp.broadcast_to(jnp.arange(plane, dtype=itype).reshape(size), x.shape)
    if jnp.issubdtype(x.dtype, jnp.floating):
        nan = jnp.isnan(xs)
        key, tie = jnp.where(nan, jnp.inf, xs), jnp.where(nan, -index - 1, index)
    else:
        key, tie = xs, index

    def pick(a, b):
        (ka, ta), (kb, tb) = a, b
        take = (kb > ka) | ((kb == ka) & (tb < ta))
        return jnp.where(take, kb, ka), jnp.where(take, tb, ta)

    # The maximum under a total order is separable: reduce one dimension at a time.
    init = (jnp.asarray(_lowest(x.dtype), x.dtype), jnp.asarray(jnp.iinfo(itype).max, itype))
    for axis, (length, o) in enumerate(zip(size, out), start=2):
        key = _gather_bins(key, axis, length, o, init[0])
        tie = _gather_bins(tie, axis, length, o, init[1])
        key, tie = lax.reduce((key, tie), init, pick, (axis + 1,))
    idx = jnp.where(tie < 0, -tie - 1, tie)
    flat = idx.reshape(*lead, int(np.prod(idx.shape[2:])))  # not -1: ambiguous when N = 0
    y = jnp.take_along_axis(x.reshape(*lead, plane), flat, axis=-1).reshape(idx.shape)
    if return_indices:
        return _finish(y, unbatched), _finish(idx, unbatched)
    return _finish(y, unbatched)


def _lp_poolnd(x, norm_type, kernel_size, stride, ceil_mode, *, n, fn):
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float)):
        raise TypeError(f"{fn}: norm_type must be a number, got norm_type={norm_type!r}")
    if norm_type == 0:
        raise ValueError(f"{fn}: norm_type must be non-zero (the result is a 1/norm_type power), got 0")
    if norm_type == float("inf"):
        return _max_poolnd(jnp.abs(x), kernel_size, stride, 0, 1, ceil_mode, False, n=n, fn=fn)
    if norm_type == -float("inf"):
        return -_max_poolnd(-jnp.abs(x), kernel_size, stride, 0, 1, ceil_mode, False, n=n, fn=fn)
    k = _args.positive(_args.ntuple(kernel_size, n, "kernel_size"), "kernel_size")
    powered = x ** norm_type
    out = _avg_poolnd(powered, kernel_size, stride, 0, ceil_mode, True, None, n=n, fn=fn)
    # torch: (sign(out) * relu(|out|)) * prod(k), then the 1/p power (NaN for negative sums).
    return (jnp.sign(out) * jax.nn.relu(jnp.abs(out)) * int(np.prod(k))) ** (1.0 / norm_type)


_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}

_MAX_DOC = """Applies {n}D max pooling (``torch.nn.functional.max_pool{n}d``).

    **Arguments:**

    - ``input``: ``(N, C, {s})`` or unbatched ``(C, {s})``.
    - ``kernel_size``: int or {n}-tuple, each >= 1.
    - ``stride``: int or {n}-tuple; ``None`` means ``kernel_size``.
    - ``padding``: implicit -inf padding on both sides, at most ``kernel_size // 2``.
    - ``dilation``: spacing between window elements.
    - ``ceil_mode``: round the output size up; a window that would start in the right
      padding is dropped.
    - ``return_indices``: also return the argmax as flat indices into each unpadded
      ``({s})`` plane (torch's convention, for ``max_unpool``).

    Ties go to the first element in row-major window order; NaN propagates. The gradient
    flows to the selected element only, as in torch.
    """

_AVG_DOC = """Applies {n}D average pooling (``torch.nn.functional.avg_pool{n}d``).

    **Arguments:**

    - ``input``: ``(N, C, {s})`` or unbatched ``(C, {s})``.
    - ``kernel_size``, ``stride`` (default ``kernel_size``), ``padding`` (zeros, at most
      ``kernel_size // 2``), ``ceil_mode``: as for ``max_pool{n}d``.
    - ``count_include_pad``: divide by the window size including zero padding (but not the
      part of a ``ceil_mode`` window beyond the padded input); ``False`` counts only input
      elements.{extra}

    Integer inputs give the truncated quotient, as in torch.
    """

_DIVISOR = "\n    - ``divisor_override``: if given (non-zero), the divisor of every window."

_ADAPTIVE_AVG_DOC = """Applies {n}D adaptive average pooling (``torch.nn.functional.adaptive_avg_pool{n}d``).

    **Arguments:**

    - ``input``: ``(N, C, {s})`` or unbatched ``(C, {s})``.
    - ``output_size``: int or {n}-tuple{none}. Output position ``i`` of a dimension of
      size ``in`` averages the bin ``[floor(i*in/out), ceil((i+1)*in/out))``; bins may overlap.
    """

_ADAPTIVE_MAX_DOC = """Applies {n}D adaptive max pooling (``torch.nn.functional.adaptive_max_pool{n}d``).

    **Arguments:**

    - ``input``: ``(N, C, {s})`` or unbatched ``(C, {s})``.
    - ``output_size``: int or {n}-tuple{none}; bins as for ``adaptive_avg_pool{n}d``.
    - ``return_indices``: also return flat argmax indices into each ``({s})`` plane.

    Ties, NaN and gradients as for ``max_pool{n}d``.
    """

_LP_DOC = """Applies {n}D power-average pooling (``torch.nn.functional.lp_pool{n}d``).

    **Arguments:**

    - ``input``: ``(N, C, {s})`` or unbatched ``(C, {s})``.
    - ``norm_type``: ``p``; the output is ``(sum over the window of x**p) ** (1/p)``;
      ``inf`` is max pooling of ``|x|``.
    - ``kernel_size``, ``stride`` (default ``kernel_size``), ``ceil_mode``: as for
      ``avg_pool{n}d`` (no padding).

    As torch computes it: ``avg_pool(x**p) * prod(kernel_size)``, so a ``ceil_mode``
    window cut at the edge is rescaled, and a negative sum gives NaN for fractional ``1/p``.
    """


def _make(n: int):
    s = _SPATIAL[n]
    none = "" if n == 1 else "; ``None`` entries keep the input size"

    def max_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                 return_indices=False):
        return _max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode,
                           return_indices, n=n, fn=f"max_pool{n}d")

    if n == 1:
        def avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True):
            return _avg_poolnd(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                               None, n=n, fn="avg_pool1d")
    else:
        def avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True, divisor_override=None):
            return _avg_poolnd(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                               divisor_override, n=n, fn=f"avg_pool{n}d")

    def adaptive_avg_pool(input, output_size):
        return _adaptive_avg_poolnd(input, output_size, n=n, fn=f"adaptive_avg_pool{n}d")

    def adaptive_max_pool(input, output_size, return_indices=False):
        return _adaptive_max_poolnd(input, output_size, return_indices, n=n,
                                    fn=f"adaptive_max_pool{n}d")

    def lp_pool(input, norm_type, kernel_size, stride=None, ceil_mode=False):
        return _lp_poolnd(input, norm_type, kernel_size, stride, ceil_mode, n=n, fn=f"lp_pool{n}d")

    fns = ((max_pool, "max_pool", _MAX_DOC), (avg_pool, "avg_pool", _AVG_DOC),
           (adaptive_avg_pool, "adaptive_avg_pool", _ADAPTIVE_AVG_DOC),
           (adaptive_max_pool, "adaptive_max_pool", _ADAPTIVE_MAX_DOC), (lp_pool, "lp_pool", _LP_DOC))
    for f, name, doc in fns:
        f.__name__ = f.__qualname__ = f"{name}{n}d"
        f.__doc__ = doc.format(n=n, s=s, none=none, extra="" if n == 1 else _DIVISOR)
    return tuple(f for f, _, _ in fns)


max_pool1d, avg_pool1d, adaptive_avg_pool1d, adaptive_max_pool1d, lp_pool1d = _make(1)
max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d, lp_pool2d = _make(2)
max_pool3d, avg_pool3d, adaptive_avg_pool3d, adaptive_max_pool3d, lp_pool3d = _make(3)
