"""Conv and ConvTranspose modules: torch's constructor signatures, parameter names and layouts."""
from __future__ import annotations

from flax import nnx

from .. import _rng
from ..functional import _args, conv as F
from ..functional.padding import pad_pairs
from . import init
from .module import Module, with_dims


class _ConvNd(Module):
    """Shared parsing, parameters and repr of the conv modules (torch's ``_ConvNd``)."""

    _n: int
    _transposed = False

    def _setup(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
               groups, bias, padding_mode, dtype, rngs, output_padding=0):
        n, name = self._n, type(self).__name__
        _args.check_groups(groups, in_channels, out_channels)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _args.positive(_args.ntuple(kernel_size, n, "kernel_size"), "kernel_size")
        self.stride = _args.positive(_args.ntuple(stride, n, "stride"), "stride")
        self.dilation = _args.positive(_args.ntuple(dilation, n, "dilation"), "dilation")
        self.padding_mode = _args.check_padding_mode(padding_mode)
        if self._transposed:
            if padding_mode != "zeros":
                raise ValueError(f'Only padding_mode="zeros" is supported for {name}, got {padding_mode!r}')
            if isinstance(padding, str):
                raise ValueError(f"{name}: padding must be an int or a tuple of {n} ints, got {padding!r}")
            self.output_padding = _args.ntuple(output_padding, n, "output_padding")
            _args.check_output_padding(self.output_padding, self.stride, self.dilation)
            shape = (in_channels, out_channels // groups, *self.kernel_size)
        else:
            shape = (out_channels, in_channels // groups, *self.kernel_size)
        # Resolve now so that bad padding raises at construction, as in torch.
        self._pairs = _args.conv_padding(padding, self.kernel_size, self.stride, self.dilation)
        self.padding = padding if isinstance(padding, str) else _args.ntuple(padding, n, "padding")
        weight, b = init.torch_default(_rng.key_from(rngs), shape, out_channels if bias else None, dtype)
        self.weight = nnx.Param(weight)
        self.bias = nnx.Param(b) if bias else None

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        n = self._n
        if self.padding != (0,) * n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self._transposed and self.output_padding != (0,) * n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s

    def _bias(self):
        return None if self.bias is None else self.bias[...]


class _Conv(_ConvNd):
    """A convolution over ``_n`` spatial dimensions (``torch.nn.Conv{1,2,3}d``).

    **Arguments:**

    - ``in_channels``, ``out_channels``: channel counts, each divisible by ``groups``.
    - ``kernel_size``, ``stride``, ``dilation``: int or tuple.
    - ``padding``: int, tuple, ``'same'`` or ``'valid'``.
    - ``groups``: grouped conv; ``groups == in_channels`` is depthwise.
    - ``bias``: learn a ``(out_channels,)`` bias.
    - ``padding_mode``: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
    - ``dtype``: parameter dtype (float32 when ``None``).
    - ``rngs``: ``nnx.Rngs`` (its ``params`` stream) or a key; ``None`` draws from the
      stream seeded by ``jaxconv.manual_seed``.

    Parameters: ``weight`` ``(out_channels, in_channels/groups, *kernel_size)`` and ``bias``,
    initialised as torch does (kaiming-uniform, ``a=sqrt(5)``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 dtype=None, *, rngs=None):
        self._setup(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                    bias, padding_mode, dtype, rngs)

    def __call__(self, x):
        fn = getattr(F, f"conv{self._n}d")
        if self.padding_mode == "zeros":
            return fn(x, self.weight[...], self._bias(), self.stride, self.padding, self.dilation, self.groups)
        _args.check_input(x, self._n, type(self).__name__)
        x = pad_pairs(x, self._pairs, self.padding_mode)
        return fn(x, self.weight[...], self._bias(), self.stride, 0, self.dilation, self.groups)


class _ConvTranspose(_ConvNd):
    """A transposed convolution over ``_n`` spatial dimensions (``torch.nn.ConvTranspose{1,2,3}d``).

    **Arguments:** as the conv modules, plus ``output_padding`` (extra size on the high side,
    smaller than stride or dilation); ``padding`` is an int or tuple and ``padding_mode``
    must be ``'zeros'``. Note torch's argument order: ``groups``, ``bias`` then ``dilation``.

    Parameters: ``weight`` in torch's layout ``(in_channels, out_channels/groups, *kernel_size)``
    and ``bias`` ``(out_channels,)``; torch's init takes ``fan_in = out_channels/groups * prod(k)``.

    ``__call__(x, output_size=None)``: ``output_size`` (spatial sizes, or the full output
    shape) picks the output padding that reaches it, as in torch.
    """

    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", dtype=None, *, rngs=None):
        self._setup(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                    bias, padding_mode, dtype, rngs, output_padding)

    def __call__(self, x, output_size=None):
        output_padding = self.output_padding
        if output_size is not None:
            x_checked, _ = _args.check_input(x, self._n, type(self).__name__)
            output_padding = _args.output_padding_for_size(
                output_size, x.ndim, x_checked.shape[2:], self.kernel_size, self.stride,
                self.padding, self.dilation, type(self).__name__)
        fn = getattr(F, f"conv_transpose{self._n}d")
        return fn(x, self.weight[...], self._bias(), self.stride, self.padding, output_padding,
                  self.groups, self.dilation)


Conv1d, Conv2d, Conv3d = with_dims(_Conv, "Conv", __name__)
ConvTranspose1d, ConvTranspose2d, ConvTranspose3d = with_dims(_ConvTranspose, "ConvTranspose", __name__)
