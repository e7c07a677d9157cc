"""Conv and ConvTranspose modules: torch's constructor signatures, parameter names and layouts."""
from __future__ import annotations

from flax import nnx

from .. import _rng
from ..functional import _args, conv as F
from ..functional.padding import pad_pairs
from . import init
from .module import Module


class _ConvNd(Module):
    """Shared parsing, parameters and repr of the conv modules (torch's ``_ConvNd``)."""

    _n: int
    _transposed = False

    def _setup(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
               groups, bias, padding_mode, dtype, rngs, precision, output_padding=0):
        n, name = self._n, type(self).__name__
        self.precision = precision
        groups = _args.check_groups(groups, in_channels, out_channels)
        in_channels, out_channels = int(in_channels), int(out_channels)
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
        if self.precision != F.DEFAULT_PRECISION:
            s += f", precision={self.precision}"
        return s

    def _bias(self):
        return None if self.bias is None else self.bias[...]


class _Conv(_ConvNd):
    """The convolution modules ``Conv1d``, ``Conv2d``, ``Conv3d``: ``__init__`` and ``__call__``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 dtype=None, *, precision=F.DEFAULT_PRECISION, rngs=None):
        """Builds a ``Conv{1,2,3}d`` with torch's arguments.

        **Arguments:**

        - ``in_channels``, ``out_channels``: channel counts, each divisible by ``groups``.
        - ``kernel_size``, ``stride``, ``dilation``: int or tuple.
        - ``padding``: int, tuple, ``'same'`` or ``'valid'``.
        - ``groups``: grouped conv; ``groups == in_channels`` is depthwise.
        - ``bias``: learn a ``(out_channels,)`` bias.
        - ``padding_mode``: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
        - ``dtype``: parameter dtype (float32 when ``None``).
        - ``precision``: the ``lax.Precision`` of the convolution; full float32 by default
          (``lax.Precision.DEFAULT`` lets GPUs and TPUs use faster, reduced-precision passes).
        - ``rngs``: ``nnx.Rngs`` (its ``params`` stream) or a key; ``None`` draws from the
          stream seeded by ``jaxconv.manual_seed``.

        Parameters: ``weight`` ``(out_channels, in_channels/groups, *kernel_size)`` and ``bias``,
        initialised as torch does (kaiming-uniform, ``a=sqrt(5)``).
        """
        self._setup(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                    bias, padding_mode, dtype, rngs, precision)

    def __call__(self, x):
        """Convolves ``x`` with ``weight`` and adds ``bias``.

        **Arguments:** ``x``: ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``, with
        ``C_in = in_channels`` and ``*spatial`` ``(L,)``, ``(H, W)`` or ``(D, H, W)``.

        **Returns:** ``(N, C_out, *spatial_out)`` (or unbatched ``(C_out, *spatial_out)``),
        ``C_out = out_channels``, each output size
        ``floor((in + 2*padding - dilation*(k - 1) - 1) / stride) + 1`` (``F.conv_output_size``,
        which also resolves ``'same'`` / ``'valid'``).
        """
        n, padding = self._n, self.padding
        if self.padding_mode != "zeros":
            _args.check_input(x, n, type(self).__name__)
            x, padding = pad_pairs(x, self._pairs, self.padding_mode), 0
        return F._convnd(x, self.weight[...], self._bias(), self.stride, padding, self.dilation,
                         self.groups, n=n, precision=self.precision, fn=f"conv{n}d")


class _ConvTranspose(_ConvNd):
    """The transposed convolution modules ``ConvTranspose1d``, ``ConvTranspose2d``, ``ConvTranspose3d``.

    ``__call__(x, output_size=None)``: ``output_size`` (spatial sizes, or the full output
    shape) picks the output padding that reaches it, as in torch.
    """

    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", dtype=None, *, precision=F.DEFAULT_PRECISION, rngs=None):
        """Builds a ``ConvTranspose{1,2,3}d`` with torch's arguments.

        **Arguments:** as the conv modules, plus ``output_padding`` (extra size on the high side,
        smaller than stride or dilation); ``padding`` is an int or tuple and ``padding_mode``
        must be ``'zeros'``. Note torch's argument order: ``groups``, ``bias`` then ``dilation``.

        Parameters: ``weight`` in torch's layout ``(in_channels, out_channels/groups, *kernel_size)``
        and ``bias`` ``(out_channels,)``; torch's init takes ``fan_in = out_channels/groups * prod(k)``.
        """
        self._setup(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                    bias, padding_mode, dtype, rngs, precision, output_padding)

    def __call__(self, x, output_size=None):
        """Applies the transposed convolution of ``x``.

        **Arguments:**

        - ``x``: ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``,
          ``C_in = in_channels``.
        - ``output_size``: ``None`` (use ``output_padding``), or the wanted output sizes: the
          spatial ones, or the full output shape as torch takes it. It picks the output padding
          that reaches them; valid sizes run from the ``output_padding=0`` size to that plus
          ``stride - 1``.

        **Returns:** ``(N, C_out, *spatial_out)`` (or unbatched), ``C_out = out_channels``, each
        size ``(in - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``
        (``F.conv_transpose_output_size``), or ``output_size``.
        """
        output_padding = self.output_padding
        if output_size is not None:
            x_checked, _ = _args.check_input(x, self._n, type(self).__name__)
            output_padding = _args.output_padding_for_size(
                output_size, x.ndim, x_checked.shape[2:], self.kernel_size, self.stride,
                self.padding, self.dilation, type(self).__name__)
        n = self._n
        return F._conv_transposend(x, self.weight[...], self._bias(), self.stride, self.padding,
                                   output_padding, self.groups, self.dilation, n=n,
                                   precision=self.precision, fn=f"conv_transpose{n}d")


class Conv1d(_Conv):
    """1D convolution of ``(N, C_in, L)`` or ``(C_in, L)`` input (``torch.nn.Conv1d``)."""

    _n = 1


class Conv2d(_Conv):
    """2D convolution of ``(N, C_in, H, W)`` or ``(C_in, H, W)`` input (``torch.nn.Conv2d``)."""

    _n = 2


class Conv3d(_Conv):
    """3D convolution of ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)`` input (``torch.nn.Conv3d``)."""

    _n = 3


class ConvTranspose1d(_ConvTranspose):
    """1D transposed convolution of ``(N, C_in, L)`` or ``(C_in, L)`` input
    (``torch.nn.ConvTranspose1d``)."""

    _n = 1


class ConvTranspose2d(_ConvTranspose):
    """2D transposed convolution of ``(N, C_in, H, W)`` or ``(C_in, H, W)`` input
    (``torch.nn.ConvTranspose2d``)."""

    _n = 2


class ConvTranspose3d(_ConvTranspose):
    """3D transposed convolution of ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)`` input
    (``torch.nn.ConvTranspose3d``)."""

    _n = 3
