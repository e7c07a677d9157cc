"""Resampling and rearrangement modules: torch's constructor signatures and reprs, no parameters."""
from __future__ import annotations

from ..functional.rearrange import channel_shuffle, fold, pixel_shuffle, pixel_unshuffle, unfold
from ..functional.resize import interpolate
from .module import Module


class Upsample(Module):
    """Resamples ``(N, C, *spatial)`` input with ``interpolate`` (``torch.nn.Upsample``).

    **Arguments:**

    - ``size``: output spatial size, an int or a tuple.
    - ``scale_factor``: a number or a tuple; stored as float(s), and a falsy number means
      ``None``, as in torch.
    - ``mode``: any ``interpolate`` mode (default ``'nearest'``).
    - ``align_corners``: for the linear and cubic modes.
    - ``recompute_scale_factor``: as for ``interpolate``.
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                 recompute_scale_factor=None):
        self.size = size
        if isinstance(scale_factor, tuple):
            self.scale_factor = tuple(float(s) for s in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor else None
        self.mode = mode
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def __call__(self, input):
        """Resizes ``input`` to ``size`` or by ``scale_factor`` in ``mode`` (``F.interpolate``).

        **Arguments:** ``input``: ``(N, C, W)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)`` (no
        unbatched form, as in torch).

        **Returns:** ``(N, C, *size)``, or each spatial size times ``scale_factor``, rounded
        down.
        """
        return interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                             recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self) -> str:
        if self.scale_factor is not None:
            info = f"scale_factor={self.scale_factor!r}"
        else:
            info = f"size={self.size!r}"
        return info + f", mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """2D nearest-neighbour upsampling (``torch.nn.UpsamplingNearest2d``): ``Upsample`` with ``mode='nearest'``.

    **Arguments:**

    - ``size``: output ``(H, W)``, an int or a pair.
    - ``scale_factor``: a number or a pair.
    """

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """2D bilinear upsampling with ``align_corners=True`` (``torch.nn.UpsamplingBilinear2d``).

    **Arguments:**

    - ``size``: output ``(H, W)``, an int or a pair.
    - ``scale_factor``: a number or a pair.
    """

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)


class PixelShuffle(Module):
    """``(*, C * r**2, H, W) -> (*, C, H * r, W * r)`` (``torch.nn.PixelShuffle``).

    **Arguments:**

    - ``upscale_factor``: ``r``, a positive int.
    """

    def __init__(self, upscale_factor: int):
        self.upscale_factor = upscale_factor

    def __call__(self, input):
        """Moves channels into space (depth to space), ``r = upscale_factor``.

        **Arguments:** ``input``: ``(*, C * r**2, H, W)``, any leading dims (none included).

        **Returns:** ``(*, C, H * r, W * r)``.
        """
        return pixel_shuffle(input, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """``(*, C, H * r, W * r) -> (*, C * r**2, H, W)`` (``torch.nn.PixelUnshuffle``).

    **Arguments:**

    - ``downscale_factor``: ``r``, a positive int.
    """

    def __init__(self, downscale_factor: int):
        self.downscale_factor = downscale_factor

    def __call__(self, input):
        """Moves space into channels (space to depth), ``r = downscale_factor``.

        **Arguments:** ``input``: ``(*, C, H * r, W * r)``, any leading dims (none included).

        **Returns:** ``(*, C * r**2, H, W)``.
        """
        return pixel_unshuffle(input, self.downscale_factor)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"


class ChannelShuffle(Module):
    """Interleaves the channels of ``groups`` groups (``torch.nn.ChannelShuffle``).

    **Arguments:**

    - ``groups``: a positive int dividing the channel count.
    """

    def __init__(self, groups: int):
        self.groups = groups

    def __call__(self, input):
        """Interleaves the channels of ``groups`` groups (ShuffleNet).

        **Arguments:** ``input``: ``(N, C, *)``, at least 3 dims, ``C`` divisible by ``groups``.

        **Returns:** the shape of ``input``; channel ``g * (C / groups) + i`` moves to
        ``i * groups + g``.
        """
        return channel_shuffle(input, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class Unfold(Module):
    """Extracts sliding blocks, ``(N, C, H, W) -> (N, C * kh * kw, L)`` (``torch.nn.Unfold``).

    **Arguments:**

    - ``kernel_size``, ``dilation``, ``padding``, ``stride``: as for ``functional.unfold``,
      stored as given.
    """

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride

    def __call__(self, input):
        """Extracts every sliding block of ``input`` as a column (im2col).

        **Arguments:** ``input``: ``(N, C, H, W)`` or unbatched ``(C, H, W)``.

        **Returns:** ``(N, C * prod(kernel_size), L)`` (or unbatched), ``L`` the number of
        blocks: the product of the block counts ``F.conv_output_size`` gives for ``(H, W)``.
        """
        return unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding},"
                f" stride={self.stride}")


class Fold(Module):
    """Sums sliding blocks into an image, ``(N, C * kh * kw, L) -> (N, C, H, W)`` (``torch.nn.Fold``).

    **Arguments:**

    - ``output_size``: ``(H, W)``, int or pair.
    - ``kernel_size``, ``dilation``, ``padding``, ``stride``: as for ``functional.fold``,
      stored as given.
    """

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        self.output_size, self.kernel_size = output_size, kernel_size
        self.dilation, self.padding, self.stride = dilation, padding, stride

    def __call__(self, input):
        """Sums columns back into an image (col2im), the inverse layout of ``Unfold``.

        **Arguments:** ``input``: ``(N, C * prod(kernel_size), L)`` or unbatched, ``L`` the
        number of blocks that ``output_size`` and the other arguments give.

        **Returns:** ``(N, C, *output_size)`` (or unbatched); overlapping values add up.
        """
        return fold(input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, padding={self.padding}, stride={self.stride}")
