"""Resizing: ``interpolate`` with torch's modes, index rules and precision.

``interpolate`` is separable in every mode: each spatial axis is resampled on its own by a
gather (nearest modes) or by a dense ``(out, in)`` weight matrix (linear, cubic, area and the
antialiased filters) applied with ``dot_general``. The matrices are built once per configuration in
numpy, following torch's CPU kernels step by step, in the precision torch uses for them:

- scale: ``(in - 1) / (out - 1)`` with ``align_corners`` (0 when ``out == 1``); otherwise
  ``1 / scale_factor`` where a scale factor reaches the kernel (given, and
  ``recompute_scale_factor`` not true), else ``in / out``.
- nearest: ``src = min(floor(dst * scale), in - 1)`` in float32, with the shortcuts of torch's
  2D kernel for ``out == in`` (copy) and ``out == 2 * in`` (``dst // 2``); nearest-exact:
  ``min(floor((dst + 0.5) * scale), in - 1)``.
- linear: ``src = scale * (dst + 0.5) - 0.5`` clamped at 0 (``scale * dst`` with
  ``align_corners``); neighbours ``floor(src)`` and the next one (or itself at the border),
  weights ``1 - l, l``; ``out == in`` copies.
- cubic: the same source coordinate without the clamp, four taps ``floor(src) - 1 .. + 2``
  clamped into the input (replicated border), Keys' kernel with ``A = -0.75``.
- area: adaptive average pooling, bins ``[floor(i * in / out), ceil((i + 1) * in / out))``.
- antialias (and lanczos): a filter centred at ``scale * (dst + 0.5)``, its support widened by
  ``scale`` when downsampling (``scale >= 1``) and its argument divided by ``scale``, cut to the
  input and normalised to sum 1; triangle for bilinear, Keys' cubic with ``A = -0.5`` for
  bicubic, Lanczos-3 for lanczos.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _args

MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area", "lanczos")
_MODE_RANK = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5, "lanczos": 4}
_NO_ALIGN = ("nearest", "area", "nearest-exact")


def _per_dim(value, spatial, name: str) -> tuple:
    """``value`` with one entry per spatial dimension: a list or tuple of that length, or a scalar."""
    if not isinstance(value, (list, tuple)):
        return (value,) * len(spatial)
    if len(value) != len(spatial):
        raise ValueError(
            f"interpolate: {name} must have one entry per spatial dimension: the input has "
            f"spatial shape {list(spatial)}, got {name}={value!r}"
        )
    return tuple(value)


def _resolve_sizes(shape, size, scale_factor, mode, recompute_scale_factor):
    """Output sizes and the scale factors that reach the kernel (torch's Python front end)."""
    spatial = tuple(shape[2:])
    n = len(spatial)
    if size is not None and scale_factor is not None:
        raise ValueError(
            f"interpolate: only one of size or scale_factor should be defined, got size={size!r} "
            f"and scale_factor={scale_factor!r}"
        )
    scales = None
    if size is not None:
        out = _per_dim(size, spatial, "size")
        if not all(_args.is_int(v) for v in out):
            raise TypeError(f"interpolate: size must be an int or a tuple of ints, got size={size!r}")
        out = tuple(int(v) for v in out)
    elif scale_factor is not None:
        scales = _per_dim(scale_factor, spatial, "scale_factor")
        if not all(_args.is_number(s) for s in scales):
            raise TypeError(
                f"interpolate: scale_factor must be a number or a tuple of numbers, got "
                f"scale_factor={scale_factor!r}"
            )
        scales = tuple(float(s) for s in scales)
        # int() truncates like torch's sym_int / static_cast<int64_t>.
        out = tuple(int(i * s) for i, s in zip(spatial, scales))
    else:
        raise ValueError("interpolate: either size or scale_factor should be defined, got neither")
    if recompute_scale_factor and size is not None:
        raise ValueError(
            "interpolate: recompute_scale_factor is not meaningful with an explicit size, got "
            f"size={size!r} and recompute_scale_factor={recompute_scale_factor!r}"
        )
    if mode == "area" or recompute_scale_factor:
        scales = None
    if scales is None:
        scales = (None,) * n
    if mode == "area":
        bad = any(o < 0 for o in out)
    else:
        bad = any(o <= 0 for o in out) or any(i <= 0 for i in spatial)
    if bad:
        raise ValueError(
            f"interpolate: input and output sizes should be greater than 0, but got input "
            f"spatial shape {spatial} and output size {out}"
        )
    return out, scales


# ----------------------------------------------------------------------------- index rules


def _opmath(dtype) -> type:
    """The dtype torch computes coordinates and weights in (its ``opmath_type``)."""
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def _scale(in_size, out_size, align_corners, scale, ft):
    """torch's ``area_pixel_compute_scale`` in the float type ``ft``."""
    if align_corners:
        return ft(in_size - 1) / ft(out_size - 1) if out_size > 1 else ft(0)
    if scale is not None and scale > 0:
        return ft(1.0 / scale)
    return ft(in_size) / ft(out_size)


def _source(scale, out_size, align_corners, cubic, ft):
    """torch's ``area_pixel_compute_source_index`` for every output index."""
    dst = np.arange(out_size).astype(ft)
    if align_corners:
        return scale * dst
    src = scale * (dst + ft(0.5)) - ft(0.5)
    return src if cubic else np.where(src < 0, ft(0), src)


def _floor_lambda(src, in_size, ft):
    """torch's ``guard_index_and_lambda``: ``floorf`` of the coordinate, the fraction in [0, 1]."""
    idx = np.minimum(np.floor(src.astype(np.float32)).astype(np.int64), in_size - 1)
    lam = np.clip(src - idx.astype(ft), ft(0), ft(1))
    return idx, lam


@functools.lru_cache(maxsize=512)
def _nearest_index(in_size, out_size, scale, exact, shortcuts):
    """Source index of every output index (cached, read-only)."""
    dst = np.arange(out_size)
    if shortcuts and out_size == in_size:
        idx = dst
    elif shortcuts and out_size == 2 * in_size:
        idx = dst >> 1
    else:
        s = (np.float32(1.0 / scale) if scale is not None and scale > 0
             else np.float32(in_size) / np.float32(out_size))
        if exact:  # (dst + 0.5) * scale in double, then floorf
            src = np.floor(((dst + 0.5) * np.float64(s)).astype(np.float32))
        else:
            src = np.floor(dst.astype(np.float32) * s)
        idx = np.minimum(src.astype(np.int64), in_size - 1)
    idx.setflags(write=False)
    return idx


def _cubic(x, a):
    """Keys' cubic convolution kernel on ``|x|``."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0 * x))


def _triangle(x):
    x = np.abs(x)
    return np.where(x < 1, 1 - x, 0 * x)


def _lanczos3(x):
    x = np.abs(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        px = np.pi * x
        v = np.where(x == 0, 1.0, 3 * np.sin(px) * np.sin(px / 3) / (px * px))
    return np.where(x < 3, v, 0.0).astype(x.dtype)


_AA_FILTERS = {  # mode -> (interpolation size, filter)
    "bilinear": (2, _triangle),
    "bicubic": (4, lambda x: _cubic(x, x.dtype.type(-0.5))),
    "lanczos": (6, _lanczos3),
}


@functools.lru_cache(maxsize=512)
def _matrix(mode, in_size, out_size, align_corners, scale, antialias, ft):
    """The ``(out, in)`` resampling matrix of one axis, in float type ``ft`` (cached, read-only)."""
    w = _build_matrix(mode, in_size, out_size, align_corners, scale, antialias, ft)
    w.setflags(write=False)
    return w


def _build_matrix(mode, in_size, out_size, align_corners, scale, antialias, ft):
    w = np.zeros((out_size, in_size), ft)
    rows = np.arange(out_size)
    if mode == "area":
        for i, (lo, hi) in enumerate(zip(*_args.adaptive_bins(in_size, out_size))):
            w[i, lo:hi] = ft(1) / ft(hi - lo)
        return w
    s = _scale(in_size, out_size, align_corners, scale, ft)
    if antialias:
        interp_size, filt = _AA_FILTERS[mode]
        support = ft(interp_size * 0.5) * s if s >= 1 else ft(interp_size * 0.5)
        max_size = int(math.ceil(support)) * 2 + 1
        invscale = ft(1) / s if s >= 1 else ft(1)
        for i in range(out_size):
            center = s * ft(i + 0.5)
            xmin = max(int(center - support + 0.5), 0)
            xsize = min(max(min(int(center + support + 0.5), in_size) - xmin, 0), max_size)
            j = np.arange(xmin, xmin + xsize)
            wt = filt((j.astype(ft) - center + ft(0.5)) * invscale).astype(ft)
            total = wt.sum(dtype=ft)
            if total != 0:
                wt = wt / total
            w[i, xmin:xmin + xsize] = wt
        return w
    if mode == "bicubic":
        src = _source(s, out_size, align_corners, True, ft)
        idx, t = _floor_lambda(src, in_size, ft)
        a = ft(-0.75)
        coeffs = (_cubic(t + ft(1), a), _cubic(t, a), _cubic(ft(1) - t, a), _cubic(ft(2) - t, a))
        for k, c in enumerate(coeffs):
            np.add.at(w, (rows, np.clip(idx + k - 1, 0, in_size - 1)), c.astype(ft))
        return w
    # linear, bilinear, trilinear
    if out_size == in_size:
        return np.eye(in_size, dtype=ft)
    src = _source(s, out_size, align_corners, False, ft)
    idx0, lam1 = _floor_lambda(src, in_size, ft)
    idx1 = idx0 + (idx0 < in_size - 1)
    np.add.at(w, (rows, idx0), ft(1) - lam1)
    np.add.at(w, (rows, idx1), lam1)
    return w


@functools.partial(jax.jit, static_argnums=0)
def _resample(kinds, x, *operands):
    """Resample axis ``2 + k`` by ``operands[k]``: a gather (``kinds[k] == 'take'``) or an
    ``(out, in)`` matrix (``'mat'``). One jitted call, so that eager use compiles once."""
    dtype = x.dtype
    if "mat" in kinds and jnp.finfo(dtype).bits < 32:
        x = x.astype(jnp.float32)  # torch accumulates half and bfloat16 in float32
    for k, (kind, op) in enumerate(zip(kinds, operands)):
        axis = k + 2
        if kind == "take":
            x = jnp.take(x, op, axis=axis)
        else:
            y = lax.dot_general(x, op.astype(x.dtype), (((axis,), (1,)), ((), ())),
                                precision=lax.Precision.HIGHEST)
            x = jnp.moveaxis(y, -1, axis)
    return x.astype(dtype)


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False):
    """Resamples ``input`` as ``torch.nn.functional.interpolate``.

    The input is ``(N, C, *spatial)`` with 1, 2 or 3 spatial dimensions (like torch, no
    unbatched form: the rank says how many dimensions are spatial).

    **Arguments:**

    - ``input``: a ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)`` array.
    - ``size``: output spatial size, an int or a tuple with one int per spatial dimension.
    - ``scale_factor``: a number or a tuple of numbers; the output size is
      ``floor(in * scale_factor)``. Exactly one of ``size`` and ``scale_factor`` is given.
    - ``mode``: ``'nearest'``, ``'nearest-exact'``, ``'linear'`` (3D input), ``'bilinear'``,
      ``'bicubic'`` (4D), ``'trilinear'`` (5D), ``'area'`` (adaptive average pooling) or
      ``'lanczos'`` (4D, needs ``antialias=True``).
    - ``align_corners``: for the linear and cubic modes, map the corner pixels' centres onto
      each other (``None`` means ``False``); must stay ``None`` for the other modes.
    - ``recompute_scale_factor``: with ``scale_factor``, compute the output size and then
      interpolate with the scale ``in / out`` instead of ``1 / scale_factor``.
    - ``antialias``: for ``'bilinear'``/``'bicubic'`` on 4D input, widen the filter when
      downsampling (torch's, and Pillow's, antialiased resize).
    """
    if mode not in MODES:
        raise ValueError(f"interpolate: mode must be one of {MODES}, got mode={mode!r}")
    if mode in _NO_ALIGN:
        if align_corners is not None:
            raise ValueError(
                "interpolate: align_corners can only be set with the interpolating modes linear | "
                f"bilinear | bicubic | trilinear, got align_corners={align_corners!r} with mode={mode!r}"
            )
    elif align_corners is None:
        align_corners = False
    ndim = getattr(input, "ndim", None)
    if ndim not in (3, 4, 5):
        raise ValueError(
            f"interpolate: expected a 3D, 4D or 5D (N, C, *spatial) input, got input of shape "
            f"{tuple(getattr(input, 'shape', ()))}"
        )
    out_sizes, scales = _resolve_sizes(input.shape, size, scale_factor, mode, recompute_scale_factor)
    if antialias and not (mode in _AA_FILTERS and ndim == 4):
        raise ValueError(
            "interpolate: antialias=True is restricted to the modes bilinear, bicubic and lanczos "
            f"with a 4D input, got mode={mode!r} and an input of shape {tuple(input.shape)}"
        )
    if mode in _MODE_RANK and ndim != _MODE_RANK[mode]:
        raise ValueError(
            f"interpolate: mode={mode!r} needs a {_MODE_RANK[mode]}D input, got input of shape "
            f"{tuple(input.shape)}"
        )
    if mode == "lanczos":
        if align_corners:
            raise ValueError("interpolate: mode='lanczos' does not support align_corners=True")
        if not antialias:
            raise ValueError("interpolate: mode='lanczos' requires antialias=True")
    x = jnp.asarray(input)
    if mode in ("nearest", "nearest-exact"):
        # torch's 2D nearest kernel (only) copies for out == in and halves for out == 2 * in.
        ops = [_nearest_index(i, o, s, mode == "nearest-exact", mode == "nearest" and ndim == 4)
               for i, o, s in zip(x.shape[2:], out_sizes, scales)]
        return _resample(("take",) * len(ops), x, *ops)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"interpolate: mode={mode!r} needs a floating-point input, got dtype {x.dtype}")
    ft = _opmath(x.dtype)
    ops = [_matrix(mode, i, o, bool(align_corners), s, bool(antialias), ft)
           for i, o, s in zip(x.shape[2:], out_sizes, scales)]
    return _resample(("mat",) * len(ops), x, *ops)
