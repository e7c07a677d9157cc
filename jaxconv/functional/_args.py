"""The one home of argument rules shared by the functional layer and the modules.

Every int->tuple expansion, padding resolution, output-shape formula and validation
with torch's conditions lives here, so that a rule is written once and the messages
name the argument, the rule and the value.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def is_int(value) -> bool:
    """torch's int arguments: a Python or numpy integer, but not a ``bool``.

    torch reads sizes, strides and counts through ``__index__``, so ``np.int64(3)`` works
    wherever ``3`` does; ``True`` is refused (its parsers reject bool for int and int-list
    arguments).
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def share_doc(text: str, *objs) -> None:
    """Append the argument docs ``text`` shared by ``objs`` (``conv1d``, ``conv2d``, ...) to each.

    Every function keeps its own one-line docstring, the one editors show; ``help()`` shows
    it followed by the shared arguments. (Nothing to append under ``python -OO``.)
    """
    for obj in objs:
        if obj.__doc__ is not None:
            obj.__doc__ += text


def is_number(value) -> bool:
    """A Python or numpy int or float, but not a ``bool`` (scale factors, ``norm_type``)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def dim_index(dim, ndim: int, fn: str, name: str = "dim") -> int:
    """Check a dim against torch's range ``[-rank, rank - 1]`` (rank = ``max(ndim, 1)``, so a
    0-D tensor takes 0 and -1) and return it wrapped to ``[0, rank)``."""
    if not is_int(dim):
        raise TypeError(f"{fn}: {name} must be an int, got {name}={dim!r}")
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        raise ValueError(
            f"{fn}: Dimension out of range (expected to be in range of [{-rank}, {rank - 1}], "
            f"but got {name}={dim})"
        )
    return int(dim) % rank


def dim_indices(dims, ndim: int, fn: str, name: str = "dim") -> tuple[int, ...]:
    """An int or a sequence of dims, each checked by :func:`dim_index`, with no repeats."""
    seq = tuple(dims) if isinstance(dims, Sequence) and not isinstance(dims, str) else (dims,)
    out = tuple(dim_index(d, ndim, fn, name) for d in seq)
    for i, d in enumerate(out):
        if d in out[:i]:
            raise ValueError(f"{fn}: dim {d} appears multiple times in the list of dims, got {name}={dims!r}")
    return out


def ntuple(value, n: int, name: str) -> tuple[int, ...]:
    """Expand an int to an ``n``-tuple, or check that a sequence has ``n`` ints (torch's ``_ntuple``).

    The entries come back as Python ints (see :func:`is_int` for what counts as one).
    """
    if is_int(value):
        return (int(value),) * n
    if isinstance(value, Sequence) and not isinstance(value, str):
        out = tuple(value)
        if len(out) == 1 and n > 1:
            out = out * n
        if len(out) != n or not all(is_int(v) for v in out):
            raise ValueError(
                f"{name} must be an int or a tuple of {n} ints to match the {n} spatial "
                f"dimensions, got {name}={value!r}"
            )
        return tuple(int(v) for v in out)
    raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")


def positive(values: tuple[int, ...], name: str) -> tuple[int, ...]:
    """Check every entry is >= 1 (stride, dilation, kernel_size)."""
    if any(v < 1 for v in values):
        raise ValueError(f"{name} must be >= 1 in every dimension, got {name}={values}")
    return values


def check_groups(groups, in_channels: int | None = None, out_channels: int | None = None) -> int:
    """Check ``groups`` is a positive int dividing the channel counts given (non-negative ints)."""
    if not is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got groups={groups!r}")
    for name, c in (("in_channels", in_channels), ("out_channels", out_channels)):
        if c is not None and (not is_int(c) or c < 0):
            raise ValueError(f"{name} must be a non-negative integer, got {name}={c!r}")
        if c is not None and c % groups:
            raise ValueError(f"{name} (={c}) must be divisible by groups (={groups})")
    return int(groups)


def check_num_groups(num_groups, num_channels: int, input_shape=None) -> int:
    """Check GroupNorm's ``num_groups`` is a positive int dividing ``num_channels``.

    With torch's two messages: the module's at construction (no ``input_shape``) and the
    functional's at call time (``input_shape`` given).
    """
    if not is_int(num_groups) or num_groups < 1:
        raise ValueError(f"num_groups must be a positive integer, got num_groups={num_groups!r}")
    if num_channels % num_groups:
        if input_shape is None:
            raise ValueError(
                f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        raise ValueError(
            "Expected number of channels in input to be divisible by num_groups, but got "
            f"input of shape {list(input_shape)} and num_groups={num_groups}"
        )
    return int(num_groups)


def dimension_numbers(n: int) -> tuple[str, str, str]:
    """Channels-last ``lax.conv_general_dilated`` layouts for ``n`` spatial dims: NHWC, HWIO, NHWC."""
    spatial = "DHW"[-n:]
    return (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")


def check_padding_mode(padding_mode: str) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"padding_mode must be one of {PADDING_MODES}, got padding_mode={padding_mode!r}"
        )
    return padding_mode


def conv_padding(padding, kernel_size, stride, dilation) -> tuple[tuple[int, int], ...]:
    """Resolve conv ``padding`` (int, tuple, ``'same'``, ``'valid'``) to ``(lo, hi)`` pairs.

    ``'same'`` pads ``d*(k-1)`` in total per dimension, ``total // 2`` before and the rest
    after (so an even kernel gets the extra element after, as torch does); it needs stride 1.
    """
    n = len(kernel_size)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding != "same":
            raise ValueError(
                f"padding must be an int, a tuple of {n} ints, 'same' or 'valid', got padding={padding!r}"
            )
        if any(s != 1 for s in stride):
            raise ValueError(
                f"padding='same' is not supported for strided convolutions, got stride={stride}"
            )
        totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    pads = ntuple(padding, n, "padding")
    if any(p < 0 for p in pads):
        raise ValueError(f"padding must be non-negative, got padding={pads}")
    return tuple((p, p) for p in pads)


def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1) -> tuple[int, ...]:
    """Spatial output size of a convolution (torch's formula; ``padding`` may be 'same'/'valid').

    ``out = floor((in + lo + hi - d*(k-1) - 1) / s) + 1`` per dimension.
    """
    size = tuple(size) if isinstance(size, Sequence) else (size,)
    n = len(size)
    k = positive(ntuple(kernel_size, n, "kernel_size"), "kernel_size")
    s = positive(ntuple(stride, n, "stride"), "stride")
    d = positive(ntuple(dilation, n, "dilation"), "dilation")
    return window_count(size, conv_padding(padding, k, s, d), k, s, d)


def window_count(size, pads, kernel, stride, dilation) -> tuple[int, ...]:
    """How many windows of the dilated kernel fit the padded input, on parsed arguments.

    ``out = floor((in + lo + hi - d*(k-1) - 1) / s) + 1`` per dimension (``pads`` as
    ``(lo, hi)`` pairs): the output size of a convolution.
    """
    return tuple(
        (i + lo + hi - di * (ki - 1) - 1) // si + 1
        for i, (lo, hi), ki, si, di in zip(size, pads, kernel, stride, dilation)
    )


def conv_transpose_output_size(
    size, kernel_size, stride=1, padding=0, output_padding=0, dilation=1
) -> tuple[int, ...]:
    """Spatial output size of a transposed convolution.

    ``out = (in - 1)*s - 2p + d*(k-1) + output_padding + 1`` per dimension.
    """
    size = tuple(size) if isinstance(size, Sequence) else (size,)
    n = len(size)
    k = positive(ntuple(kernel_size, n, "kernel_size"), "kernel_size")
    s = positive(ntuple(stride, n, "stride"), "stride")
    d = positive(ntuple(dilation, n, "dilation"), "dilation")
    p = ntuple(padding, n, "padding")
    op = ntuple(output_padding, n, "output_padding")
    return tuple(
        (i - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
        for i, ki, si, pi, oi, di in zip(size, k, s, p, op, d)
    )


def pool_output_size(
    size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
) -> tuple[int, ...]:
    """Spatial output size of max/avg pooling, torch's rule included.

    With ``ceil_mode`` the division rounds up, but a last window that would start in the
    right padding (at or past ``in + p``) is dropped. ``stride`` defaults to ``kernel_size``.
    """
    size = tuple(size) if isinstance(size, Sequence) else (size,)
    n = len(size)
    k = positive(ntuple(kernel_size, n, "kernel_size"), "kernel_size")
    s = pool_stride(stride, k)
    p = ntuple(padding, n, "padding")
    d = positive(ntuple(dilation, n, "dilation"), "dilation")
    out = []
    for i, ki, si, pi, di in zip(size, k, s, p, d):
        span = i + 2 * pi - di * (ki - 1) - 1
        o = (-(-span // si) if ceil_mode else span // si) + 1
        if ceil_mode and (o - 1) * si >= i + pi:
            o -= 1
        out.append(o)
    return tuple(out)


def pool_stride(stride, kernel_size: tuple[int, ...]) -> tuple[int, ...]:
    """A pooling ``stride``: ``None`` (or empty) means ``kernel_size``, else ints >= 1."""
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return kernel_size
    return positive(ntuple(stride, len(kernel_size), "stride"), "stride")


def pool_padding(size, out, kernel, stride, padding, dilation) -> list[tuple[int, int]]:
    """The ``(lo, hi)`` pads that make exactly ``out`` windows span the input.

    ``lo = p``; ``hi = (out-1)*s + d*(k-1) + 1 - in - p``, which is negative (a crop) where
    the last window ends before the right padding does. Only max pooling's unrolled scan (a
    few taps) pads this far; wider windows are clipped to the input (``pooling._window_runs``).
    """
    return [(p, (o - 1) * s + d * (k - 1) + 1 - i - p)
            for i, o, k, s, p, d in zip(size, out, kernel, stride, padding, dilation)]


def adaptive_bins(length: int, out: int):
    """torch's adaptive bins of a dimension: ``[floor(i*in/out), ceil((i+1)*in/out))``, as
    ``(start, end)`` arrays (adaptive pooling and ``interpolate(mode='area')``)."""
    i = np.arange(out)
    return (i * length) // out, -((-(i + 1) * length) // out)


def check_input(x, n: int, fn: str, channels: int | None = None, what: str = "channels"):
    """Check ``x`` is ``(N, C, *s)`` or unbatched ``(C, *s)`` with ``n`` spatial dims.

    Returns ``(x_batched, was_unbatched)``.
    """
    ndim = getattr(x, "ndim", None)
    if ndim not in (n + 1, n + 2):
        shape = getattr(x, "shape", None)
        raise ValueError(
            f"Expected {n + 1}D (unbatched) or {n + 2}D (batched) input to {fn}, "
            f"but got input of shape {tuple(shape) if shape is not None else type(x).__name__}"
        )
    unbatched = ndim == n + 1
    if unbatched:
        x = x[None]
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{fn} expected input with {channels} {what} (dim {0 if unbatched else 1}), "
            f"but got input of shape {tuple(x.shape[1:] if unbatched else x.shape)}"
        )
    return x, unbatched


def check_bias(bias, out_channels: int, weight_shape):
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(
            f"Given weight of shape {tuple(weight_shape)}, expected bias to be 1-dimensional "
            f"with {out_channels} elements, but got bias of shape {tuple(bias.shape)}"
        )


def check_output_padding(output_padding, stride, dilation):
    if any(o >= s and o >= d for o, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            "output_padding must be smaller than either stride or dilation, got "
            f"output_padding={output_padding}, stride={stride}, dilation={dilation}"
        )
    if any(o < 0 for o in output_padding):
        raise ValueError(f"output_padding must be non-negative, got output_padding={output_padding}")


def output_padding_for_size(
    output_size, input_ndim, input_size, kernel_size, stride, padding, dilation, name="ConvTranspose"
) -> tuple[int, ...]:
    """The ``output_padding`` that makes a transposed conv produce ``output_size`` (torch's rule).

    ``output_size`` holds the spatial sizes or, as in torch, a full output shape of
    ``input_ndim`` entries. Valid sizes range from ``min = (in-1)*s - 2p + d*(k-1) + 1`` to
    ``min + s - 1``.
    """
    n = len(kernel_size)
    output_size = tuple(int(v) for v in output_size)
    if len(output_size) not in (n, input_ndim):
        raise ValueError(
            f"{name}: for {input_ndim}D input, output_size must have {n} or {input_ndim} "
            f"elements, got output_size={output_size}"
        )
    output_size = output_size[-n:]
    lo = conv_transpose_output_size(input_size, kernel_size, stride, padding, 0, dilation)
    hi = tuple(m + s - 1 for m, s in zip(lo, stride))
    if any(not (a <= o <= b) for o, a, b in zip(output_size, lo, hi)):
        raise ValueError(
            f"{name}: requested an output size of {output_size}, but valid sizes range from "
            f"{lo} to {hi} (for an input of spatial size {tuple(input_size)})"
        )
    return tuple(o - a for o, a in zip(output_size, lo))


def check_spatial(padded: tuple[int, ...], effective_kernel: tuple[int, ...], fn: str):
    """Raise where the (dilated) kernel is larger than the padded input, as torch does."""
    if any(k > p for k, p in zip(effective_kernel, padded)):
        raise ValueError(
            f"{fn}: the padded input size per channel {padded} is smaller than the dilated "
            f"kernel size {effective_kernel}; the kernel can't be greater than the padded input"
        )


def pool_args(n: int, kernel_size, stride, padding, dilation, fn: str):
    """Parse max/avg pooling arguments as torch checks them: ``(k, s, p, d)`` tuples.

    ``stride`` ``None`` (or empty) means ``kernel_size``; kernel, stride and dilation must be
    >= 1; padding must be >= 0 and at most half the kernel size (``p <= k // 2``), so that
    every window holds at least one input element.
    """
    k = positive(ntuple(kernel_size, n, "kernel_size"), "kernel_size")
    s = pool_stride(stride, k)
    p = ntuple(padding, n, "padding")
    d = positive(ntuple(dilation, n, "dilation"), "dilation")
    if any(v < 0 for v in p):
        raise ValueError(f"{fn}: padding must be non-negative, got padding={p}")
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise ValueError(
            f"{fn}: pad should be at most half of kernel size (padding <= kernel_size // 2), "
            f"got padding={p} for kernel_size={k}"
        )
    return k, s, p, d


def check_pool_output(size, out, fn: str):
    """Raise torch's 'Output size is too small' where a pooling output would be empty."""
    if any(s < 1 for s in size):
        raise ValueError(f"{fn}: expected a non-empty input, got spatial size {tuple(size)}")
    if any(o < 1 for o in out):
        raise ValueError(
            f"{fn}: given input of spatial size {tuple(size)}, the calculated output size "
            f"{tuple(out)} is too small: Output size is too small"
        )


def adaptive_output_size(output_size, size, fn: str) -> tuple[int, ...]:
    """Resolve an adaptive pooling ``output_size`` (int, or tuple with ``None`` = keep the input size)."""
    n = len(size)
    if isinstance(output_size, Sequence) and not isinstance(output_size, str):
        out = tuple(output_size)
        if len(out) == 1 and n > 1:
            out = out * n
        if len(out) != n:
            raise ValueError(
                f"{fn}: output_size must be an int or a tuple of {n} ints (or None), got "
                f"output_size={output_size!r}"
            )
        out = tuple(s if o is None else o for o, s in zip(out, size))
    else:
        out = (output_size,) * n
    if not all(is_int(o) for o in out):
        raise TypeError(
            f"{fn}: output_size must be an int or a tuple of {n} ints (None keeps the input "
            f"size), got output_size={output_size!r}"
        )
    if any(o < 0 for o in out):
        raise ValueError(f"{fn}: elements of output_size must be >= 0, got output_size={out}")
    if any(s < 1 for s in size):
        raise ValueError(f"{fn}: expected a non-empty input, got spatial size {tuple(size)}")
    return tuple(int(o) for o in out)


# The dtype rules (torch's "... should be the same", mixed-precision norms) and the recurrent
# layers' rules live in their own files to keep this one short; they are part of this namespace.
from ._dtypes import (NORM_INPUT_DTYPES, REDUCED_FLOATS, accumulator,  # noqa: E402,F401
                      check_floating, check_instance_norm_dtypes, check_norm_dtypes,
                      check_same_dtype, check_transpose_bias_dtype, in_opmath, opmath)
from ._rnn_args import (GATES, MODES, check_cell, check_nonlinearity,  # noqa: E402,F401
                        check_rnn_config, rnn_layers)
