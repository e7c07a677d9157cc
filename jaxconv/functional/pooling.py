"""Max, average and power-average pooling with torch.nn.functional's names, signatures and semantics.

Max pooling follows torch's CPU kernel exactly: each window is scanned in row-major order
and an element replaces the running maximum when it is larger or NaN, so ties go to the
first element, NaN propagates (the last NaN wins), and the gradient flows to that one
element. For windows of up to ``_FOLD_TAPS`` taps this scan is written out as strided
slices (fast on every backend, and ``jax.grad`` through its ``where`` chain sends the
gradient exactly where torch sends it); larger windows use a variadic
``lax.reduce_window`` over (key, tie-break) pairs that orders elements the same way.
Indices are torch's: positions in the flattened, unpadded spatial plane of each (n, c).
Reductions over windows drop the taps that lie outside the input for every window
(:func:`_window_runs`), so a kernel larger than the input costs no more than the input.
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._autocast import cast
from . import _args
from ._sharding import lead_like, reshape

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
    best = lead_like(jnp.full(lead + tuple(out), _lowest(xp.dtype), xp.dtype), xp, 2)
    first = _first_valid_taps(out, size, s, p, d)
    idx = None
    if with_indices:
        origins = jnp.asarray(_window_origins(out, s, p, strides), _index_dtype())
        idx = lead_like(jnp.zeros(best.shape, _index_dtype()), xp, 2)
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


def _max_order(x):
    """torch's scan order as a total order for reductions: ``(key, tie)`` and their identity.

    Keys order elements as torch's scan does: NaN (as +inf) above everything, larger
    values first; the tie-break is the flat index in the spatial plane, preferring the
    smaller one for numbers and the larger one for NaN (encoded ``-(i+1)``). The identity
    (for padding and empty slots) is the lowest key with the largest tie-break. Reduce with
    :func:`_pick_max` and read the result back with :func:`_gather_max`.
    """
    size, itype = x.shape[2:], _index_dtype()
    index = lead_like(jnp.broadcast_to(jnp.arange(int(np.prod(size)), dtype=itype).reshape(size), x.shape), x, 2)
    xs = lax.stop_gradient(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        nan = jnp.isnan(xs)
        key, tie = jnp.where(nan, jnp.inf, xs), jnp.where(nan, -index - 1, index)
    else:
        key, tie = xs, index
    init = (jnp.asarray(_lowest(x.dtype), x.dtype), jnp.asarray(jnp.iinfo(itype).max, itype))
    return key, tie, init


def _pick_max(a, b):
    """The reducer of :func:`_max_order` pairs: the larger key, on equal keys the smaller tie."""
    (ka, ta), (kb, tb) = a, b
    take = (kb > ka) | ((kb == ka) & (tb < ta))
    return jnp.where(take, kb, ka), jnp.where(take, tb, ta)


def _gather_max(x, tie):
    """The values of ``x`` (batched, unpadded) and torch's flat indices for reduced ``tie``s."""
    lead, plane = x.shape[:2], int(np.prod(x.shape[2:]))
    idx = jnp.where(tie < 0, -tie - 1, tie)
    flat = reshape(idx, (*lead, int(np.prod(idx.shape[2:]))))  # not -1: ambiguous when N = 0
    values = jnp.take_along_axis(reshape(x, (*lead, plane)), flat, axis=-1)
    return reshape(values, idx.shape), idx


def _max_pool_reduce(x, size, out, k, s, p, d):
    """Large windows: variadic reduce_window over :func:`_max_order` pairs, then gather."""
    key, tie, init = _max_order(x)

    def block(runs):
        pads = [(0, 0, 0)] * 2 + [(lo, hi, 0) for _, lo, hi, _ in runs]
        _, t = lax.reduce_window((lax.pad(key, init[0], pads), lax.pad(tie, init[1], pads)), init,
                                 _pick_max, (1, 1, *[r[3] for r in runs]), (1, 1, *s), "VALID",
                                 window_dilation=(1, 1, *d))
        return t

    return _gather_max(x, _tiled(_window_runs(size, out, k, s, p, d), block))


_RUN_EXTENT = 3
"""One reduce_window serves consecutive windows while their padded extent is at most this
many inputs (per dimension)."""


def _clipped_run(i, k, s, p, d, j0, j1):
    """Windows ``j0 .. j1-1`` of one dimension without the taps none of them has in the input.

    Returns ``(count, lo, hi, taps)``: pad ``lo`` before and ``hi`` after the input (negative
    crops), then ``taps`` taps at stride ``s`` and dilation ``d`` give exactly these windows,
    each with the input elements of the full kernel. The first ``c`` taps lie left of the
    input for the last window, hence for all; taps from ``e`` on lie right of it for the first.
    """
    first, last = j0 * s - p, (j1 - 1) * s - p
    c = max(0, -(last // d))
    e = min(k, -((first - i) // d))
    taps, lo = max(e - c, 1), -(first + c * d)
    return j1 - j0, lo, (j1 - 1 - j0) * s + d * (taps - 1) + 1 - lo - i, taps


def _window_runs(size, out, k, s, p, d):
    """Per dimension, the windows as consecutive :func:`_clipped_run` runs.

    Clipping bounds memory by the input, not the kernel: ``ceil_mode`` with a kernel larger
    than the input (Hugging Face EfficientNet's ``AvgPool2d(1280, ceil_mode=True)`` over a
    2x2 map) pads nothing. A run grows while its extent ``lo + in + hi`` stays within
    ``_RUN_EXTENT`` inputs, which only large padding with a large stride exceeds; a run of
    one window spans at most the input.
    """
    runs = []
    for i, o, ki, si, pi, di in zip(size, out, k, s, p, d):
        run, dim, j0 = functools.partial(_clipped_run, i, ki, si, pi, di), [], 0
        while j0 < o:
            j1 = j0 + 1
            while j1 < o and sum(run(j0, j1 + 1)[1:3]) + i <= _RUN_EXTENT * i:
                j1 += 1
            dim.append(run(j0, j1))
            j0 = j1
        runs.append(dim)
    return runs


def _tiled(runs, block, chosen=()):
    """``block(runs)`` for every combination of one run per dimension, concatenated in place."""
    if len(chosen) == len(runs):
        return block(chosen)
    parts = [_tiled(runs, block, chosen + (run,)) for run in runs[len(chosen)]]
    return parts[0] if len(parts) == 1 else lax.concatenate(parts, 2 + len(chosen))


def _max_poolnd(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, *, n, fn):
    x, unbatched = _args.check_input(cast(fn, x)[0], n, fn)
    k, s, p, d = _args.pool_args(n, kernel_size, stride, padding, dilation, fn)
    size = tuple(x.shape[2:])
    out = _args.pool_output_size(size, k, s, p, d, ceil_mode)
    _args.check_pool_output(size, out, fn)
    if int(np.prod(k)) <= _FOLD_TAPS:
        pads = [(0, 0, 0)] * 2 + [(lo, hi, 0) for lo, hi in _args.pool_padding(size, out, k, s, p, d)]
        xp = lax.pad(x, jnp.asarray(_lowest(x.dtype), x.dtype), pads)  # exactly `out` windows
        y, idx = _max_pool_scan(xp, size, out, k, s, p, d, return_indices)
    else:
        y, idx = _max_pool_reduce(x, size, out, k, s, p, d)
    if return_indices:
        return _finish(y, unbatched), _finish(idx, unbatched)
    return _finish(y, unbatched)


def _avg_divisor(size, out, k, s, p, count_include_pad, divisor_override):
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
    x, unbatched = _args.check_input(cast(fn, x)[0], n, fn)
    k, s, p, d = _args.pool_args(n, kernel_size, stride, padding, 1, fn)
    if divisor_override is not None:
        if not _args.is_int(divisor_override):
            raise TypeError(f"{fn}: divisor_override must be an int or None, got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError(f"{fn}: divisor must be not zero, got divisor_override=0")
    size = tuple(x.shape[2:])
    if n == 3 and any(i < ki for i, ki in zip(size, k)):  # torch's 3-d rule, not 1-d's or 2-d's
        raise ValueError(f"{fn}: the input of spatial size {size} is smaller than kernel_size={k} "
                         "(3-d average pooling needs the kernel to fit the unpadded input)")
    out = _args.pool_output_size(size, k, s, p, d, ceil_mode)
    _args.check_pool_output(size, out, fn)
    acc = _args.opmath(x.dtype)  # float16/bfloat16 windows sum in float32 and round once
    wide = x.astype(acc)

    def block(runs):
        xp = lax.pad(wide, np.zeros((), acc), [(0, 0, 0)] * 2 + [(lo, hi, 0) for _, lo, hi, _ in runs])
        return lax.reduce_window(xp, np.zeros((), acc), lax.add, (1, 1, *[r[3] for r in runs]),
                                 (1, 1, *s), "VALID")

    total = _tiled(_window_runs(size, out, k, s, p, d), block)
    divisor = _avg_divisor(size, out, k, s, p, count_include_pad, divisor_override)
    divisor = jnp.asarray(divisor, acc)
    if jnp.issubdtype(x.dtype, jnp.integer):
        y = lax.div(total, jnp.broadcast_to(divisor, total.shape))  # truncates, as torch does
    else:
        y = total / divisor
    return _finish(y.astype(x.dtype), unbatched)


def _lp_poolnd(x, norm_type, kernel_size, stride, ceil_mode, *, n, fn):
    if not _args.is_number(norm_type):
        raise TypeError(f"{fn}: norm_type must be a number, got norm_type={norm_type!r}")
    if norm_type == 0:
        raise ValueError(f"{fn}: norm_type must be non-zero (the result is a 1/norm_type power), got 0")
    if norm_type == float("inf"):
        return _max_poolnd(jnp.abs(x), kernel_size, stride, 0, 1, ceil_mode, False, n=n, fn=fn)
    if norm_type == -float("inf"):
        return -_max_poolnd(-jnp.abs(x), kernel_size, stride, 0, 1, ceil_mode, False, n=n, fn=fn)
    k = _args.positive(_args.ntuple(kernel_size, n, "kernel_size"), "kernel_size")
    # The result has the dtype of torch's inner avg_pool (float32 for 3-d under autocast);
    # float16/bfloat16 are computed in float32 and rounded once.
    dtype = cast(f"avg_pool{n}d", x)[0].dtype
    powered = x.astype(_args.opmath(dtype)) ** norm_type
    out = _avg_poolnd(powered, kernel_size, stride, 0, ceil_mode, True, None, n=n, fn=fn)
    # torch: (sign(out) * relu(|out|)) * prod(k), then the 1/p power (NaN for negative sums).
    out = (jnp.sign(out) * jax.nn.relu(jnp.abs(out)) * int(np.prod(k))) ** (1.0 / norm_type)
    return out.astype(dtype)


_MAX_ARGS = """

    **Arguments:**

    - ``input``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``.
    - ``kernel_size``: int or tuple (one entry per spatial dimension), each >= 1.
    - ``stride``: int or tuple; ``None`` means ``kernel_size``.
    - ``padding``: implicit -inf padding on both sides, at most ``kernel_size // 2``.
    - ``dilation``: spacing between window elements.
    - ``ceil_mode``: round the output size up; a window that would start in the right
      padding is dropped.
    - ``return_indices``: also return the argmax as flat indices into each unpadded
      spatial plane (torch's convention, for ``max_unpool``).

    Ties go to the first element in row-major window order; NaN propagates. The gradient
    flows to the selected element only, as in torch.
    """

_AVG_ARGS = """

    **Arguments:**

    - ``input``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``.
    - ``kernel_size``, ``stride`` (default ``kernel_size``), ``padding`` (zeros, at most
      ``kernel_size // 2``), ``ceil_mode``: as for ``max_pool{1,2,3}d``.
    - ``count_include_pad``: divide by the window size including zero padding (but not the
      part of a ``ceil_mode`` window beyond the padded input); ``False`` counts only input
      elements.
    - ``divisor_override`` (2d and 3d only): if given (non-zero), the divisor of every window.

    Integer inputs give the truncated quotient, as in torch.
    """

_LP_ARGS = """

    **Arguments:**

    - ``input``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``.
    - ``norm_type``: ``p``; the output is ``(sum over the window of x**p) ** (1/p)``;
      ``inf`` is max pooling of ``|x|``.
    - ``kernel_size``, ``stride`` (default ``kernel_size``), ``ceil_mode``: as for
      ``avg_pool{1,2,3}d`` (no padding).

    As torch computes it: ``avg_pool(x**p) * prod(kernel_size)``, so a ``ceil_mode``
    window cut at the edge is rescaled, and a negative sum gives NaN for fractional ``1/p``.
    """


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """1D max pooling over ``(N, C, L)`` or ``(C, L)`` (``torch.nn.functional.max_pool1d``)."""
    return _max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                       n=1, fn="max_pool1d")


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2D max pooling over ``(N, C, H, W)`` or ``(C, H, W)`` (``torch.nn.functional.max_pool2d``)."""
    return _max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                       n=2, fn="max_pool2d")


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """3D max pooling over ``(N, C, D, H, W)`` or ``(C, D, H, W)``
    (``torch.nn.functional.max_pool3d``)."""
    return _max_poolnd(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                       n=3, fn="max_pool3d")


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """1D average pooling over ``(N, C, L)`` or ``(C, L)`` (``torch.nn.functional.avg_pool1d``)."""
    return _avg_poolnd(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None,
                       n=1, fn="avg_pool1d")


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2D average pooling over ``(N, C, H, W)`` or ``(C, H, W)``
    (``torch.nn.functional.avg_pool2d``)."""
    return _avg_poolnd(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                       divisor_override, n=2, fn="avg_pool2d")


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """3D average pooling over ``(N, C, D, H, W)`` or ``(C, D, H, W)``
    (``torch.nn.functional.avg_pool3d``)."""
    return _avg_poolnd(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                       divisor_override, n=3, fn="avg_pool3d")


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """1D power-average pooling over ``(N, C, L)`` or ``(C, L)``
    (``torch.nn.functional.lp_pool1d``)."""
    return _lp_poolnd(input, norm_type, kernel_size, stride, ceil_mode, n=1, fn="lp_pool1d")


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """2D power-average pooling over ``(N, C, H, W)`` or ``(C, H, W)``
    (``torch.nn.functional.lp_pool2d``)."""
    return _lp_poolnd(input, norm_type, kernel_size, stride, ceil_mode, n=2, fn="lp_pool2d")


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """3D power-average pooling over ``(N, C, D, H, W)`` or ``(C, D, H, W)``
    (``torch.nn.functional.lp_pool3d``)."""
    return _lp_poolnd(input, norm_type, kernel_size, stride, ceil_mode, n=3, fn="lp_pool3d")


_args.share_doc(_MAX_ARGS, max_pool1d, max_pool2d, max_pool3d)
_args.share_doc(_AVG_ARGS, avg_pool1d, avg_pool2d, avg_pool3d)
_args.share_doc(_LP_ARGS, lp_pool1d, lp_pool2d, lp_pool3d)
