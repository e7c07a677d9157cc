"""Rearrangement: pixel and channel shuffles, ``unfold`` / ``fold`` (im2col / col2im).

Pure reshapes and transposes, or one static gather (``unfold``) and one scatter-add
(``fold``) whose index arrays are built in numpy from torch's block layout.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import _args
from ._sharding import lead_like, reshape


def _positive_int(value, name: str, fn: str) -> int:
    if not _args.is_int(value):
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
    x = reshape(input, (*lead, c // (r * r), r, r, h, w))
    x = jnp.transpose(x, (*range(n), n, n + 3, n + 1, n + 4, n + 2))
    return reshape(x, (*lead, c // (r * r), h * r, w * r))


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
    x = reshape(input, (*lead, c, h // r, r, w // r, r))
    x = jnp.transpose(x, (*range(n), n, n + 2, n + 4, n + 1, n + 3))
    return reshape(x, (*lead, c * r * r, h // r, w // r))


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
    x = reshape(input, (n, g, c // g, *s))
    return reshape(jnp.swapaxes(x, 1, 2), input.shape)


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
    return reshape(x[:, :, rows, cols], (n, c * k[0] * k[1], nb[0] * nb[1]))  # one gather


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _col2im(x, out_hw, k, d, p, s, nb):
    n, ck, _ = x.shape
    blocks = reshape(x, (n, ck // (k[0] * k[1]), k[0], k[1], nb[0], nb[1]))
    rows, cols = _block_index(k, d, s, nb)
    out = lead_like(jnp.zeros((*blocks.shape[:2], out_hw[0] + 2 * p[0], out_hw[1] + 2 * p[1]), x.dtype), x)
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
