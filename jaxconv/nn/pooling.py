"""Pooling modules: torch's constructor signatures, attributes and repr; the math is functional."""
from __future__ import annotations

from ..functional import _args, pooling as F
from .module import Module, with_dims


class _MaxPoolNd(Module):
    """Max pooling over ``_n`` spatial dimensions (``torch.nn.MaxPool{1,2,3}d``).

    **Arguments:**

    - ``kernel_size``: int or tuple, each >= 1.
    - ``stride``: int or tuple; ``None`` means ``kernel_size``.
    - ``padding``: implicit -inf padding, at most ``kernel_size // 2``.
    - ``dilation``: spacing between window elements.
    - ``return_indices``: also return torch's flat argmax indices.
    - ``ceil_mode``: round the output size up (windows starting in the right padding are dropped).

    Attributes keep the arguments as given (``stride`` defaults to ``kernel_size``), so the
    repr reads as torch's.
    """

    _n: int

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False):
        _args.pool_args(self._n, kernel_size, stride, padding, dilation, type(self).__name__)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")

    def __call__(self, x):
        return getattr(F, f"max_pool{self._n}d")(x, self.kernel_size, self.stride, self.padding,
                                                 self.dilation, self.ceil_mode, self.return_indices)


def _single(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class _AvgPoolNd(Module):
    """Average pooling over ``_n`` spatial dimensions (``torch.nn.AvgPool{1,2,3}d``).

    **Arguments:**

    - ``kernel_size``, ``stride`` (default ``kernel_size``), ``padding`` (zeros, at most
      ``kernel_size // 2``), ``ceil_mode``: as for the max pooling modules.
    - ``count_include_pad``: count the zero padding in the divisor.
    - ``divisor_override``: (2d and 3d only) a fixed divisor.

    As in torch, ``AvgPool1d`` stores its sizes as 1-tuples; 2d/3d keep them as given.
    """

    _n: int

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None):
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
        args = (x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)
        if self._n == 1:
            return F.avg_pool1d(*args)
        return getattr(F, f"avg_pool{self._n}d")(*args, self.divisor_override)


class _AvgPool1d(_AvgPoolNd):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
        self._setup(kernel_size, stride, padding, ceil_mode, count_include_pad, None)


class _AdaptiveAvgPoolNd(Module):
    """Adaptive average pooling to ``output_size`` (``torch.nn.AdaptiveAvgPool{1,2,3}d``).

    **Arguments:**

    - ``output_size``: int or tuple; in 2d/3d ``None`` entries keep the input size. Bins
      ``[floor(i*in/out), ceil((i+1)*in/out))`` may overlap.
    """

    _n: int

    def __init__(self, output_size):
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def __call__(self, x):
        return getattr(F, f"adaptive_avg_pool{self._n}d")(x, self.output_size)


class _AdaptiveMaxPoolNd(Module):
    """Adaptive max pooling to ``output_size`` (``torch.nn.AdaptiveMaxPool{1,2,3}d``).

    **Arguments:**

    - ``output_size``: int or tuple; in 2d/3d ``None`` entries keep the input size.
    - ``return_indices``: also return torch's flat argmax indices.
    """

    _n: int

    def __init__(self, output_size, return_indices: bool = False):
        self.output_size = output_size
        self.return_indices = return_indices

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def __call__(self, x):
        return getattr(F, f"adaptive_max_pool{self._n}d")(x, self.output_size, self.return_indices)


class _LPPoolNd(Module):
    """Power-average pooling (``torch.nn.LPPool{1,2,3}d``): ``(sum of x**p) ** (1/p)`` per window.

    **Arguments:**

    - ``norm_type``: ``p`` (non-zero; ``inf`` is max pooling of ``|x|``).
    - ``kernel_size``, ``stride`` (``None`` means ``kernel_size``), ``ceil_mode``.
    """

    _n: int

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode: bool = False):
        _args.pool_args(self._n, kernel_size, stride, 0, 1, type(self).__name__)
        self.norm_type = norm_type
        self.kernel_size, self.stride = kernel_size, stride
        self.ceil_mode = ceil_mode

    def extra_repr(self) -> str:
        return (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, ceil_mode={self.ceil_mode}")

    def __call__(self, x):
        return getattr(F, f"lp_pool{self._n}d")(x, self.norm_type, self.kernel_size, self.stride,
                                                self.ceil_mode)


MaxPool1d, MaxPool2d, MaxPool3d = with_dims(_MaxPoolNd, "MaxPool", __name__)
(AvgPool1d,) = with_dims(_AvgPool1d, "AvgPool", __name__, dims=(1,), doc=_AvgPoolNd.__doc__)
AvgPool2d, AvgPool3d = with_dims(_AvgPoolNd, "AvgPool", __name__, dims=(2, 3))
AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d = with_dims(_AdaptiveAvgPoolNd, "AdaptiveAvgPool", __name__)
AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d = with_dims(_AdaptiveMaxPoolNd, "AdaptiveMaxPool", __name__)
LPPool1d, LPPool2d, LPPool3d = with_dims(_LPPoolNd, "LPPool", __name__)
