"""Pooling modules: torch's constructor signatures, attributes and repr; the math is functional."""
from __future__ import annotations

from ..functional import _args
from ..functional.adaptive_pooling import _adaptive_avg_poolnd, _adaptive_max_poolnd
from ..functional.pooling import _avg_poolnd, _lp_poolnd, _max_poolnd
from .module import Module


class _MaxPoolNd(Module):
    """The max pooling modules ``MaxPool1d``, ``MaxPool2d``, ``MaxPool3d``.

    Attributes keep the arguments as given (``stride`` defaults to ``kernel_size``), so the
    repr reads as torch's.
    """

    _n: int

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False):
        """Builds a ``MaxPool{1,2,3}d`` with torch's arguments.

        **Arguments:**

        - ``kernel_size``: int or tuple, each >= 1.
        - ``stride``: int or tuple; ``None`` means ``kernel_size``.
        - ``padding``: implicit -inf padding, at most ``kernel_size // 2``.
        - ``dilation``: spacing between window elements.
        - ``return_indices``: also return torch's flat argmax indices.
        - ``ceil_mode``: round the output size up (windows starting in the right padding are
          dropped).
        """
        _args.pool_args(self._n, kernel_size, stride, padding, dilation, type(self).__name__)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")

    def __call__(self, x):
        """The maximum of each ``kernel_size`` window of ``x``.

        **Arguments:** ``x``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``, ``*spatial``
        ``(L,)``, ``(H, W)`` or ``(D, H, W)``.

        **Returns:** ``(N, C, *spatial_out)`` (or unbatched), each size
        ``floor((in + 2*padding - dilation*(k - 1) - 1) / stride) + 1``, rounded up with
        ``ceil_mode`` (``F.pool_output_size``); with ``return_indices`` the tuple
        ``(output, indices)``, ``indices`` of the same shape: the flat indices into each input
        plane ``*spatial`` (torch's, for ``max_unpool``), int64 (int32 unless JAX's x64 is on).
        """
        return _max_poolnd(x, self.kernel_size, self.stride, self.padding, self.dilation,
                           self.ceil_mode, self.return_indices, n=self._n, fn=f"max_pool{self._n}d")


def _single(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class _AvgPoolNd(Module):
    """The average pooling modules ``AvgPool1d``, ``AvgPool2d``, ``AvgPool3d``.

    As in torch, ``AvgPool1d`` stores its sizes as 1-tuples; 2d/3d keep them as given.
    """

    _n: int

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None):
        """Builds an ``AvgPool{2,3}d`` with torch's arguments (``AvgPool1d`` has no ``divisor_override``).

        **Arguments:**

        - ``kernel_size``, ``stride`` (default ``kernel_size``), ``padding`` (zeros, at most
          ``kernel_size // 2``), ``ceil_mode``: as for the max pooling modules.
        - ``count_include_pad``: count the zero padding in the divisor.
        - ``divisor_override``: a fixed divisor.
        """
        self._setup(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)

    def _setup(self, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        _args.pool_args(self._n, kernel_size, stride, padding, 1, type(self).__name__)
        stride = stride if stride is not None else kernel_size
        if self._n == 1:
            kernel_size, stride, padding = _single(kernel_size), _single(stride), _single(padding)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        if self._n > 1:
            self.divisor_override = divisor_override

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def __call__(self, x):
        """The mean of each ``kernel_size`` window of ``x``.

        **Arguments:** ``x``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``, ``*spatial``
        ``(L,)``, ``(H, W)`` or ``(D, H, W)``.

        **Returns:** ``(N, C, *spatial_out)`` (or unbatched), each size
        ``floor((in + 2*padding - k) / stride) + 1``, rounded up with ``ceil_mode``
        (``F.pool_output_size``): each window's sum divided by ``divisor_override`` or its size
        (padding included with ``count_include_pad``).
        """
        n = self._n
        return _avg_poolnd(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                           self.count_include_pad, None if n == 1 else self.divisor_override,
                           n=n, fn=f"avg_pool{n}d")


class _AdaptiveAvgPoolNd(Module):
    """The adaptive average pooling modules ``AdaptiveAvgPool1d``, ``2d``, ``3d``."""

    _n: int

    def __init__(self, output_size):
        """Builds an ``AdaptiveAvgPool{1,2,3}d`` with torch's arguments.

        **Arguments:**

        - ``output_size``: int or tuple; in 2d/3d ``None`` entries keep the input size. Bins
          ``[floor(i*in/out), ceil((i+1)*in/out))`` may overlap.
        """
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def __call__(self, x):
        """The mean of each of torch's ``output_size`` bins of ``x`` (the bins may overlap).

        **Arguments:** ``x``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``, ``*spatial``
        ``(L,)``, ``(H, W)`` or ``(D, H, W)``.

        **Returns:** ``(N, C, *output_size)`` (or unbatched); a ``None`` entry of ``output_size``
        keeps the input's size.
        """
        return _adaptive_avg_poolnd(x, self.output_size, n=self._n, fn=f"adaptive_avg_pool{self._n}d")


class _AdaptiveMaxPoolNd(Module):
    """The adaptive max pooling modules ``AdaptiveMaxPool1d``, ``2d``, ``3d``."""

    _n: int

    def __init__(self, output_size, return_indices: bool = False):
        """Builds an ``AdaptiveMaxPool{1,2,3}d`` with torch's arguments.

        **Arguments:**

        - ``output_size``: int or tuple; in 2d/3d ``None`` entries keep the input size.
        - ``return_indices``: also return torch's flat argmax indices.
        """
        self.output_size = output_size
        self.return_indices = return_indices

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def __call__(self, x):
        """The maximum of each of torch's ``output_size`` bins of ``x``.

        **Arguments:** ``x``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``, ``*spatial``
        ``(L,)``, ``(H, W)`` or ``(D, H, W)``.

        **Returns:** ``(N, C, *output_size)`` (or unbatched; a ``None`` entry keeps the input's
        size); with ``return_indices`` the tuple ``(output, indices)``, ``indices`` of the same
        shape: the flat indices into each input plane ``*spatial`` (torch's, for ``max_unpool``),
        int64 (int32 unless JAX's x64 is on).
        """
        return _adaptive_max_poolnd(x, self.output_size, self.return_indices, n=self._n,
                                    fn=f"adaptive_max_pool{self._n}d")


class _LPPoolNd(Module):
    """The power-average pooling modules ``LPPool1d``, ``2d``, ``3d``: ``(sum of x**p) ** (1/p)``
    per window."""

    _n: int

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode: bool = False):
        """Builds an ``LPPool{1,2,3}d`` with torch's arguments.

        **Arguments:**

        - ``norm_type``: ``p`` (non-zero; ``inf`` is max pooling of ``|x|``).
        - ``kernel_size``, ``stride`` (``None`` means ``kernel_size``), ``ceil_mode``.
        """
        _args.pool_args(self._n, kernel_size, stride, 0, 1, type(self).__name__)
        self.norm_type = norm_type
        self.kernel_size, self.stride = kernel_size, stride
        self.ceil_mode = ceil_mode

    def extra_repr(self) -> str:
        return (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, ceil_mode={self.ceil_mode}")

    def __call__(self, x):
        """``(sum of x ** norm_type over each window) ** (1 / norm_type)``.

        **Arguments:** ``x``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``, ``*spatial``
        ``(L,)``, ``(H, W)`` or ``(D, H, W)``.

        **Returns:** ``(N, C, *spatial_out)`` (or unbatched), each size
        ``floor((in - k) / stride) + 1``, rounded up with ``ceil_mode`` (``F.pool_output_size``).
        """
        return _lp_poolnd(x, self.norm_type, self.kernel_size, self.stride, self.ceil_mode,
                          n=self._n, fn=f"lp_pool{self._n}d")


class MaxPool1d(_MaxPoolNd):
    """1D max pooling of ``(N, C, L)`` or ``(C, L)`` (``torch.nn.MaxPool1d``)."""

    _n = 1


class MaxPool2d(_MaxPoolNd):
    """2D max pooling of ``(N, C, H, W)`` or ``(C, H, W)`` (``torch.nn.MaxPool2d``)."""

    _n = 2


class MaxPool3d(_MaxPoolNd):
    """3D max pooling of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` (``torch.nn.MaxPool3d``)."""

    _n = 3


class AvgPool1d(_AvgPoolNd):
    """1D average pooling of ``(N, C, L)`` or ``(C, L)`` (``torch.nn.AvgPool1d``)."""

    _n = 1

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
        """Builds an ``AvgPool1d``: the arguments of ``AvgPool2d`` but ``divisor_override``."""
        self._setup(kernel_size, stride, padding, ceil_mode, count_include_pad, None)


class AvgPool2d(_AvgPoolNd):
    """2D average pooling of ``(N, C, H, W)`` or ``(C, H, W)`` (``torch.nn.AvgPool2d``)."""

    _n = 2


class AvgPool3d(_AvgPoolNd):
    """3D average pooling of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` (``torch.nn.AvgPool3d``)."""

    _n = 3


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """1D adaptive average pooling of ``(N, C, L)`` or ``(C, L)``
    (``torch.nn.AdaptiveAvgPool1d``)."""

    _n = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """2D adaptive average pooling of ``(N, C, H, W)`` or ``(C, H, W)``
    (``torch.nn.AdaptiveAvgPool2d``)."""

    _n = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """3D adaptive average pooling of ``(N, C, D, H, W)`` or ``(C, D, H, W)``
    (``torch.nn.AdaptiveAvgPool3d``)."""

    _n = 3


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """1D adaptive max pooling of ``(N, C, L)`` or ``(C, L)`` (``torch.nn.AdaptiveMaxPool1d``)."""

    _n = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """2D adaptive max pooling of ``(N, C, H, W)`` or ``(C, H, W)``
    (``torch.nn.AdaptiveMaxPool2d``)."""

    _n = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """3D adaptive max pooling of ``(N, C, D, H, W)`` or ``(C, D, H, W)``
    (``torch.nn.AdaptiveMaxPool3d``)."""

    _n = 3


class LPPool1d(_LPPoolNd):
    """1D power-average pooling of ``(N, C, L)`` or ``(C, L)`` (``torch.nn.LPPool1d``)."""

    _n = 1


class LPPool2d(_LPPoolNd):
    """2D power-average pooling of ``(N, C, H, W)`` or ``(C, H, W)`` (``torch.nn.LPPool2d``)."""

    _n = 2


class LPPool3d(_LPPoolNd):
    """3D power-average pooling of ``(N, C, D, H, W)`` or ``(C, D, H, W)``
    (``torch.nn.LPPool3d``)."""

    _n = 3
