"""Resampling and rearrangement: ``interpolate``, pixel/channel shuffles, ``unfold``/``fold``.

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


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


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
        if isinstance(size, (list, tuple)):
            if len(size) != n:
                raise ValueError(
                    f"interpolate: size must have one entry per spatial dimension: the input has "
                    f"spatial shape {list(spatial)}, got size={size!r}"
                )
            if not all(_is_int(v) for v in size):
                raise TypeError(f"interpolate: size must be an int or a tuple of ints, got size={size!r}")
            out = tuple(int(v) for v in size)
        elif _is_int(size):
            out = (int(size),) * n
        else:
            raise TypeError(f"interpolate: size must be an int or a tuple of ints, got size={size!r}")
    elif scale_factor is not None:
        if isinstance(scale_factor, (list, tuple)):
            if len(scale_factor) != n:
                raise ValueError(
                    f"interpolate: scale_factor must have one entry per spatial dimension: the "
                    f"input has spatial shape {list(spatial)}, got scale_factor={scale_factor!r}"
                )
            scales = tuple(scale_factor)
        else:
            scales = (scale_factor,) * n
        if not all(_is_number(s) for s in scales):
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
        for i in range(out_size):
            lo = (i * in_size) // out_size
            hi = -(-((i + 1) * in_size) // out_size)
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


# ----------------------------------------------------------------------------- rearrangement


def _positive_int(value, name: str, fn: str) -> int:
    if not _is_int(value):
        raise TypeError(f"{fn}: {name} must be an int, got {name}={value!r}")
    if value <= 0:
        raise ValueError(f"{fn} expects a positive {name}, got {name}={value}")
    return int(value)


def pixel_shuffle(input, upscale_factor: int):
    """Rearranges ``(*, C * r**2, H, W)`` into ``(*, C, H * r, W * r)`` as ``torch.nn.functional.pixel_shuffle``.

    **Arguments:**

    - ``input``: an array with at least 3 dimensions; any leading dimensions are batch.
    - ``upscale_factor``: ``r``, a positive int; the channel count must be divisible by ``r**2``.
    """
    r = _positive_int(upscale_factor, "upscale_factor", "pixel_shuffle")
    if input.ndim < 3:
        raise ValueError(f"pixel_shuffle expects input to have at least 3 dimensions, got shape {tuple(input.shape)}")
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise ValueError(
            f"pixel_shuffle: the channel dimension input.shape[-3]={c} must be divisible by "
            f"upscale_factor**2={r * r}"
        )
    n = len(lead)
    x = jnp.reshape(input, (*lead, c // (r * r), r, r, h, w))
    x = jnp.transpose(x, (*range(n), n, n + 3, n + 1, n + 4, n + 2))
    return jnp.reshape(x, (*lead, c // (r * r), h * r, w * r))


def pixel_unshuffle(input, downscale_factor: int):
    """Rearranges ``(*, C, H * r, W * r)`` into ``(*, C * r**2, H, W)`` as ``torch.nn.functional.pixel_unshuffle``.

    **Arguments:**

    - ``input``: an array with at least 3 dimensions; any leading dimensions are batch.
    - ``downscale_factor``: ``r``, a positive int dividing both height and width.
    """
    r = _positive_int(downscale_factor, "downscale_factor", "pixel_unshuffle")
    if input.ndim < 3:
        raise ValueError(f"pixel_unshuffle expects input to have at least 3 dimensions, got shape {tuple(input.shape)}")
    *lead, c, h, w = input.shape
    for name, v, d in (("height", h, -2), ("width", w, -1)):
        if v % r:
            raise ValueError(
                f"pixel_unshuffle: the {name} input.shape[{d}]={v} must be divisible by "
                f"downscale_factor={r}"
            )
    n = len(lead)
    x = jnp.reshape(input, (*lead, c, h // r, r, w // r, r))
    x = jnp.transpose(x, (*range(n), n, n + 2, n + 4, n + 1, n + 3))
    return jnp.reshape(x, (*lead, c * r * r, h // r, w // r))


def channel_shuffle(input, groups: int):
    """Interleaves the channels of ``groups`` groups, as ``torch.nn.functional.channel_shuffle``.

    ``(N, g * k, *s)`` is viewed as ``(N, g, k, *s)``, transposed to ``(N, k, g, *s)`` and
    flattened back (ShuffleNet).

    **Arguments:**

    - ``input``: ``(N, C, *spatial)`` with at least 3 dimensions.
    - ``groups``: a positive int dividing ``C``.
    """
    g = _positive_int(groups, "groups", "channel_shuffle")
    if input.ndim < 3:
        raise ValueError(f"channel_shuffle expects input with more than 2 dimensions, got shape {tuple(input.shape)}")
    n, c, *s = input.shape
    if c % g:
        raise ValueError(f"channel_shuffle: the number of channels (={c}) must be divisible by groups (={g})")
    x = jnp.reshape(input, (n, g, c // g, *s))
    return jnp.reshape(jnp.swapaxes(x, 1, 2), input.shape)


def _fold_args(kernel_size, dilation, padding, stride):
    """torch's ``_pair`` expansion and im2col checks: kernel, dilation, stride >= 1, padding >= 0."""
    k = _args.positive(_args.ntuple(kernel_size, 2, "kernel_size"), "kernel_size")
    d = _args.positive(_args.ntuple(dilation, 2, "dilation"), "dilation")
    s = _args.positive(_args.ntuple(stride, 2, "stride"), "stride")
    p = _args.ntuple(padding, 2, "padding")
    _args.conv_padding(p, k, s, d)  # raises on negative padding
    return k, d, p, s


def _block_index(k, d, s, nb):
    """Static ``(rows, cols)`` index arrays of shape ``(kh, 1, oh, 1)`` / ``(1, kw, 1, ow)``:
    padded-input position of kernel offset ``(i, j)`` in block ``(bh, bw)``."""
    rows = (np.arange(k[0]) * d[0])[:, None, None, None] + (np.arange(nb[0]) * s[0])[None, None, :, None]
    cols = (np.arange(k[1]) * d[1])[None, :, None, None] + (np.arange(nb[1]) * s[1])[None, None, None, :]
    return rows, cols


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _im2col(x, k, d, p, s, nb):
    x = jnp.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    rows, cols = _block_index(k, d, s, nb)
    n, c = x.shape[:2]
    return x[:, :, rows, cols].reshape(n, c * k[0] * k[1], nb[0] * nb[1])  # one gather


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _col2im(x, out_hw, k, d, p, s, nb):
    n, ck, _ = x.shape
    blocks = jnp.reshape(x, (n, ck // (k[0] * k[1]), k[0], k[1], nb[0], nb[1]))
    rows, cols = _block_index(k, d, s, nb)
    out = jnp.zeros((*blocks.shape[:2], out_hw[0] + 2 * p[0], out_hw[1] + 2 * p[1]), x.dtype)
    out = out.at[:, :, rows, cols].add(blocks)  # one scatter-add: overlaps sum
    return out[:, :, p[0]:p[0] + out_hw[0], p[1]:p[1] + out_hw[1]]


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """Extracts sliding blocks (im2col), as ``torch.nn.functional.unfold``.

    ``(N, C, H, W)`` becomes ``(N, C * kh * kw, L)``: row ``c * kh * kw + i * kw + j`` holds
    kernel offset ``(i, j)`` of channel ``c``; the ``L`` blocks run row-major.

    **Arguments:**

    - ``input``: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
    - ``kernel_size``, ``dilation``, ``stride``: int or pair, > 0.
    - ``padding``: int or pair, >= 0, zeros on both sides.
    """
    k, d, p, s = _fold_args(kernel_size, dilation, padding, stride)
    x, unbatched = _args.check_input(input, 2, "unfold")
    if any(v == 0 for v in x.shape[1:]):
        raise ValueError(f"unfold expects non-zero channel and spatial dimensions, got shape {tuple(input.shape)}")
    nb = _args.conv_output_size(x.shape[2:], k, s, p, d)  # blocks per dimension
    if any(b < 1 for b in nb):
        raise ValueError(
            f"unfold: given input with spatial size {tuple(x.shape[2:])}, kernel_size={k}, "
            f"dilation={d}, padding={p}, the array of sliding blocks has shape {nb}, but its "
            "components must be at least one"
        )
    out = _im2col(x, k, d, p, s, nb)
    return out[0] if unbatched else out


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Sums sliding blocks back into an image (col2im), as ``torch.nn.functional.fold``.

    The inverse layout of ``unfold``; overlapping entries add up.

    **Arguments:**

    - ``input``: ``(N, C * kh * kw, L)`` or unbatched ``(C * kh * kw, L)``, where ``L`` is the
      number of blocks that ``output_size`` and the other arguments give.
    - ``output_size``: spatial ``(H, W)`` of the output, int or pair.
    - ``kernel_size``, ``dilation``, ``stride``: int or pair, > 0.
    - ``padding``: int or pair, >= 0: the blocks cover the padded image, the padding is dropped.
    """
    out_hw = _args.ntuple(output_size, 2, "output_size")
    k, d, p, s = _fold_args(kernel_size, dilation, padding, stride)
    ndim = getattr(input, "ndim", None)
    if ndim not in (2, 3) or any(v == 0 for v in input.shape[ndim - 2:]):
        raise ValueError(
            "fold expects a 2D (unbatched) or 3D (batched) input with non-zero dimensions "
            f"(batch may be 0), got shape {tuple(getattr(input, 'shape', ()))}"
        )
    unbatched = ndim == 2
    x = input[None] if unbatched else input
    n, ck, length = x.shape
    kk = k[0] * k[1]
    if ck % kk:
        raise ValueError(
            f"fold: input.shape[{ndim - 2}]={ck} must be divisible by the product of kernel_size={k}"
        )
    nb = _args.conv_output_size(out_hw, k, s, p, d)  # blocks per dimension
    if any(b < 1 for b in nb) or nb[0] * nb[1] != length:
        raise ValueError(
            f"fold: given output_size={out_hw}, kernel_size={k}, dilation={d}, padding={p}, "
            f"stride={s}, the number of sliding blocks is {nb[0]} * {nb[1]} = {nb[0] * nb[1]} "
            f"(each must be >= 1), but got input.shape[{ndim - 1}]={length}"
        )
    out = _col2im(x, out_hw, k, d, p, s, nb)
    return out[0] if unbatched else out
