"""Convolutions with torch.nn.functional's names, signatures and semantics.

Inputs and weights use torch's layouts: input ``(N, C, *spatial)`` or unbatched
``(C, *spatial)``; conv weight ``(out, in/groups, *k)``; transposed-conv weight
``(in, out/groups, *k)``. Internally the computation runs channels-last (NHWC / HWIO
dimension numbers), which XLA's CPU and GPU backends prefer; the transposes around each
conv cancel between consecutive layers inside ``jax.jit``.

float16 and bfloat16 convolutions accumulate in float32 (``preferred_element_type``), add the
bias in float32 and round once, as torch's CPU kernels do; under :func:`jaxconv.autocast` their
inputs are cast first, as ``torch.autocast`` casts them.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .._autocast import cast
from . import _args, _lowering

DEFAULT_PRECISION = lax.Precision.HIGHEST
"""float32 convolutions run at full float32 precision unless the caller passes ``precision``."""


def _channels_last(x):
    return jnp.moveaxis(x, 1, -1)


def _channels_first(x):
    return jnp.moveaxis(x, -1, 1)


def _finish(y_nhwc, bias, unbatched, dtype):
    """Add the bias at the accumulator's (or a wider bias's) precision, round once to ``dtype``."""
    if bias is not None:
        y_nhwc = y_nhwc + bias
    y = _channels_first(y_nhwc.astype(dtype))
    return y[0] if unbatched else y


def _finish_nchw(y, bias, unbatched, dtype):
    if bias is not None:
        y = y + bias.reshape((-1,) + (1,) * (y.ndim - 2))
    y = y.astype(dtype)
    return y[0] if unbatched else y


def _check_weight(weight, n: int, fn: str):
    if getattr(weight, "ndim", None) != n + 2:
        raise ValueError(
            f"{fn} expects a {n + 2}D weight, got weight of shape {tuple(getattr(weight, 'shape', ()))}"
        )


def _check_weight_groups(weight, groups, fn: str, which: str):
    """``groups`` is a positive int dividing dim 0 of the weight (its ``which`` channels)."""
    _args.check_groups(groups)
    if weight.shape[0] % groups:
        raise ValueError(
            f"{fn}: weight's {which} channels (={weight.shape[0]}, dim 0 of weight "
            f"{tuple(weight.shape)}) must be divisible by groups (={groups})"
        )


def _convnd(x, weight, bias, stride, padding, dilation, groups, *, n, precision, fn):
    x, weight, bias = cast(fn, x, weight, bias)
    _check_weight(weight, n, fn)
    stride = _args.positive(_args.ntuple(stride, n, "stride"), "stride")
    dilation = _args.positive(_args.ntuple(dilation, n, "dilation"), "dilation")
    _check_weight_groups(weight, groups, fn, "out")
    out_channels, in_per_group, *kernel = weight.shape
    x, unbatched = _args.check_input(x, n, fn, in_per_group * groups,
                                     f"channels (groups={groups} x weight dim 1 = {in_per_group})")
    pads = _args.conv_padding(padding, kernel, stride, dilation)
    _args.check_spatial(
        tuple(s + lo + hi for s, (lo, hi) in zip(x.shape[2:], pads)),
        tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation)),
        fn,
    )
    _args.check_bias(bias, out_channels, weight.shape)
    _args.check_same_dtype(fn, x, weight=weight, bias=bias)
    dtype, acc = x.dtype, _args.accumulator(x.dtype)
    lowering = _lowering.pick_conv(x.shape, weight.shape, pads, groups, dtype)
    if lowering == "depthwise":
        return _finish_nchw(_lowering.depthwise(x, weight, stride, pads, dilation), bias, unbatched, dtype)
    if lowering == "pointwise":
        return _finish_nchw(_lowering.pointwise(x, weight, stride, precision, acc), bias, unbatched, dtype)
    rhs = jnp.moveaxis(weight, (0, 1), (-1, -2))  # (out, in/g, *k) -> (*k, in/g, out)
    if lowering in ("nhwc", "taps"):  # same value; faster (see _lowering.conv_nhwc, conv_taps)
        conv = _lowering.conv_nhwc if lowering == "nhwc" else _lowering.conv_taps
        y = conv(_channels_last(x), rhs, stride, pads, dilation, precision, acc)
        return _finish(y, bias, unbatched, dtype)
    y = lax.conv_general_dilated(
        _channels_last(x), rhs,
        window_strides=stride, padding=pads, rhs_dilation=dilation,
        dimension_numbers=_args.dimension_numbers(n), feature_group_count=groups,
        precision=precision, preferred_element_type=acc,
    )
    return _finish(y, bias, unbatched, dtype)


def _conv_transposend(x, weight, bias, stride, padding, output_padding, groups, dilation,
                      *, n, precision, fn):
    r"""Transposed convolution as a forward ``conv_general_dilated``.

    A transposed conv is the gradient of a conv with respect to its input: input element
    ``i`` scatters ``x[i] * w[k]`` to output ``o = i*s - p + k*d``. Gathering instead, per
    output ``o``, over the input dilated by ``s`` (``s-1`` zeros between elements), gives a
    plain conv with

    * ``lhs_dilation = s`` and ``rhs_dilation = d``;
    * the kernel flipped in every spatial dimension, and its in/out roles swapped within
      each group: torch's ``(in, out/g, *k)`` becomes HWIO ``(*k, in/g, out)``;
    * padding ``d*(k-1) - p`` before and ``d*(k-1) - p + output_padding`` after (negative
      values crop, which XLA supports).

    The output size is then ``(in-1)*s - 2p + d*(k-1) + output_padding + 1``.
    """
    x, weight, bias = cast(fn, x, weight, bias)
    _check_weight(weight, n, fn)
    stride = _args.positive(_args.ntuple(stride, n, "stride"), "stride")
    dilation = _args.positive(_args.ntuple(dilation, n, "dilation"), "dilation")
    if isinstance(padding, str):
        raise TypeError(f"{fn}: padding must be an int or a tuple of {n} ints, got padding={padding!r}")
    padding = _args.ntuple(padding, n, "padding")
    if any(p < 0 for p in padding):
        raise ValueError(f"{fn}: padding must be non-negative, got padding={padding}")
    output_padding = _args.ntuple(output_padding, n, "output_padding")
    _args.check_output_padding(output_padding, stride, dilation)
    _check_weight_groups(weight, groups, fn, "in")
    in_channels, out_per_group, *kernel = weight.shape
    x, unbatched = _args.check_input(x, n, fn, in_channels, "channels (dim 0 of the transposed-conv weight)")
    out_size = _args.conv_transpose_output_size(
        x.shape[2:], kernel, stride, padding, output_padding, dilation)
    if any(o < 1 for o in out_size):
        raise ValueError(
            f"{fn}: input of spatial size {tuple(x.shape[2:])} gives output size {out_size}, "
            "which is too small (every output size must be >= 1)"
        )
    out_channels = out_per_group * groups
    _args.check_bias(bias, out_channels, weight.shape)
    _args.check_same_dtype(fn, x, weight=weight)
    _args.check_transpose_bias_dtype(fn, n, x, bias)
    dtype, acc = x.dtype, _args.accumulator(x.dtype)
    if _lowering.pick_conv_transpose(stride, dilation, groups) == "phase":
        y = _lowering.conv_transpose_phase(x, weight, stride, padding, out_size, precision, acc)
        return _finish_nchw(y, bias, unbatched, dtype)
    k_axes = tuple(range(2, n + 2))
    w = jnp.flip(weight, k_axes).reshape(groups, in_channels // groups, out_per_group, *kernel)
    w = jnp.moveaxis(w, (0, 1, 2), (-2, -3, -1))  # -> (*k, in/g, g, out/g)
    rhs = w.reshape(*kernel, in_channels // groups, out_channels)
    pads = [
        (d * (k - 1) - p, d * (k - 1) - p + op)
        for k, d, p, op in zip(kernel, dilation, padding, output_padding)
    ]
    y = lax.conv_general_dilated(
        _channels_last(x), rhs,
        window_strides=(1,) * n, padding=pads, lhs_dilation=stride, rhs_dilation=dilation,
        dimension_numbers=_args.dimension_numbers(n), feature_group_count=groups,
        precision=precision, preferred_element_type=acc,
    )
    return _finish(y, bias, unbatched, dtype)


_CONV_ARGS = """

    **Arguments:**

    - ``input``: ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``.
    - ``weight``: ``(C_out, C_in/groups, *kernel_size)``.
    - ``bias``: optional ``(C_out,)``.
    - ``stride``, ``dilation``: int or tuple (one entry per spatial dimension), each >= 1.
    - ``padding``: int, tuple, ``'valid'`` (none) or ``'same'`` (output size = input
      size; stride must be 1; an odd total pad puts the extra element after).
    - ``groups``: splits channels into groups; ``groups == C_in`` is depthwise.
    - ``precision``: ``lax.Precision`` for the conv; full float32 by default.

    **Returns:** ``(N, C_out, *out)`` (unbatched in, unbatched out), ``out`` as
    ``conv_output_size`` gives it.
    """

_CONV_T_ARGS = """

    **Arguments:**

    - ``input``: ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``.
    - ``weight``: torch's layout ``(C_in, C_out/groups, *kernel_size)``.
    - ``bias``: optional ``(C_out,)``.
    - ``stride``, ``dilation``: int or tuple (one entry per spatial dimension), each >= 1.
    - ``padding``: int or tuple: ``padding`` elements are cut from both sides of the full
      transposed output, which shrinks by ``2*padding``.
    - ``output_padding``: extra size added on the high side of each dimension; must be
      smaller than stride or dilation.
    - ``groups``, ``precision``: as for ``conv{1,2,3}d``.

    **Returns:** ``(N, C_out, *out)`` with ``out = (in-1)*stride - 2*padding +
    dilation*(k-1) + output_padding + 1``.
    """


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           precision=DEFAULT_PRECISION):
    """1D convolution of ``(N, C_in, L)`` or ``(C_in, L)`` by ``(C_out, C_in/groups, k)``
    (``torch.nn.functional.conv1d``)."""
    return _convnd(input, weight, bias, stride, padding, dilation, groups,
                   n=1, precision=precision, fn="conv1d")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           precision=DEFAULT_PRECISION):
    """2D convolution of ``(N, C_in, H, W)`` or ``(C_in, H, W)`` by ``(C_out, C_in/groups, kH, kW)``
    (``torch.nn.functional.conv2d``)."""
    return _convnd(input, weight, bias, stride, padding, dilation, groups,
                   n=2, precision=precision, fn="conv2d")


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           precision=DEFAULT_PRECISION):
    """3D convolution of ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)`` by
    ``(C_out, C_in/groups, kD, kH, kW)`` (``torch.nn.functional.conv3d``)."""
    return _convnd(input, weight, bias, stride, padding, dilation, groups,
                   n=3, precision=precision, fn="conv3d")


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1, *, precision=DEFAULT_PRECISION):
    """1D transposed convolution of ``(N, C_in, L)`` or ``(C_in, L)`` by ``(C_in, C_out/groups, k)``
    (``torch.nn.functional.conv_transpose1d``)."""
    return _conv_transposend(input, weight, bias, stride, padding, output_padding, groups,
                             dilation, n=1, precision=precision, fn="conv_transpose1d")


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1, *, precision=DEFAULT_PRECISION):
    """2D transposed convolution of ``(N, C_in, H, W)`` or ``(C_in, H, W)`` by
    ``(C_in, C_out/groups, kH, kW)`` (``torch.nn.functional.conv_transpose2d``)."""
    return _conv_transposend(input, weight, bias, stride, padding, output_padding, groups,
                             dilation, n=2, precision=precision, fn="conv_transpose2d")


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1, *, precision=DEFAULT_PRECISION):
    """3D transposed convolution of ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)`` by
    ``(C_in, C_out/groups, kD, kH, kW)`` (``torch.nn.functional.conv_transpose3d``)."""
    return _conv_transposend(input, weight, bias, stride, padding, output_padding, groups,
                             dilation, n=3, precision=precision, fn="conv_transpose3d")


_args.share_doc(_CONV_ARGS, conv1d, conv2d, conv3d)
_args.share_doc(_CONV_T_ARGS, conv_transpose1d, conv_transpose2d, conv_transpose3d)
