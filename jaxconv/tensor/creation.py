"""Creation and conversion: ``arange``, ``eye``, ``meshgrid``, ``zeros``/``ones``/``full``,
``*_like``, ``new_*``, ``tensor``, ``to``, ``type_as``.

``dtype`` is a jnp/numpy dtype; torch's defaults are kept: float32 for floats (torch's
default dtype), int64 for Python ints (jax's int32 unless x64 is on), bool for bools.
``device=`` and similar placement arguments are accepted and ignored.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from . import _parse


def _scalar_dtype(value):
    """torch's dtype for a Python scalar fill value."""
    if isinstance(value, (bool, np.bool_)):
        return jnp.bool_
    if _parse.is_int(value):
        return _parse.long_dtype()
    if isinstance(value, complex):
        return jnp.complex64
    if hasattr(value, "dtype"):
        return value.dtype
    return jnp.float32


def _number(value, fn: str, name: str):
    if hasattr(value, "item") and jnp.ndim(value) == 0:
        value = value.item()
    if not _parse.is_number(value):
        raise TypeError(f"{fn}: {name} must be a number, got {name}={value!r}")
    return value


def arange(start, end=None, step=1, *, dtype=None, **placement):
    """``[start, end)`` in steps of ``step`` (``torch.arange``; ``arange(end)`` starts at 0).

    The dtype is float32 if any argument is a float, else int64, unless ``dtype`` is given;
    for an integer dtype the arguments are truncated to ints first, as in torch (int64 counts
    the elements from the truncated values, other dtypes from the given ones). Float values
    are ``start + i * step`` rounded once from float64; torch's vectorised CPU kernel adds
    ``step`` in the output dtype within each SIMD chunk, so its float32 values can differ
    from these by an ulp (it depends on the CPU's vector width).
    """
    if end is None:
        start, end = 0, start
    start, end, step = (_number(v, "arange", n) for v, n in ((start, "start"), (end, "end"), (step, "step")))
    ints = all(_parse.is_int(v) for v in (start, end, step))
    if dtype is None:
        dtype = jnp.int64 if ints else jnp.float32
    n = math.ceil((end - start) / step) if step else 0  # torch's size, from the values as given
    if not jnp.issubdtype(dtype, jnp.inexact):  # torch casts the arguments first, truncating
        start, end, step = int(start), int(end), int(step)
        if np.dtype(dtype) == np.int64:  # ... and only int64 sizes from the cast values
            n = -((start - end) // step) if step else 0
    if step == 0:
        raise ValueError("arange: step must be nonzero, got step=0")
    if (step > 0 and end < start) or (step < 0 and end > start):
        raise ValueError(f"arange: upper bound and lower bound inconsistent with step sign, got "
                         f"start={start}, end={end}, step={step}")
    if _parse.is_int(start) and _parse.is_int(step):
        values = start + np.arange(n, dtype=np.int64) * step
    else:
        values = start + np.arange(n, dtype=np.float64) * step
    return jnp.asarray(values, _parse.canonical(dtype))


def _fill(args, kw, fill, dtype, fn):
    shape = _parse.one_form(args, kw.pop("size", None), fn, "size")
    for k in kw:
        if k not in ("device", "requires_grad", "layout", "pin_memory", "memory_format"):
            raise TypeError(f"{fn}: unexpected keyword argument {k!r}")
    if any(s < 0 for s in shape):
        raise ValueError(f"{fn}: trying to create a tensor with a negative dimension, got size={list(shape)}")
    return jnp.full(shape, fill, _parse.canonical(dtype))


def zeros(*size, dtype=None, **kw):
    """Zeros of shape ``size`` (``zeros(2, 3)``, ``zeros((2, 3))``), float32 by default (``torch.zeros``)."""
    return _fill(size, kw, 0, dtype or jnp.float32, "zeros")


def ones(*size, dtype=None, **kw):
    """Ones of shape ``size``, float32 by default (``torch.ones``)."""
    return _fill(size, kw, 1, dtype or jnp.float32, "ones")


empty = zeros


def full(size, fill_value, *, dtype=None, **kw):
    """``fill_value`` everywhere, in its torch dtype (bool, int64, float32) unless ``dtype`` is
    given (``torch.full``)."""
    return _fill((size,), kw, fill_value, dtype or _scalar_dtype(fill_value), "full")


def eye(n, m=None, *, dtype=None, **placement):
    """The ``n x m`` identity (``m = n`` by default), float32 unless ``dtype`` is given
    (``torch.eye``)."""
    for name, v in (("n", n), ("m", m)):
        if v is not None and (not _parse.is_int(v) or v < 0):
            raise ValueError(f"eye: {name} must be an integer >= 0, got {name}={v!r}")
    return jnp.eye(n, n if m is None else m, dtype=_parse.canonical(dtype or jnp.float32))


def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids of 1D ``tensors`` (``torch.meshgrid``): ``indexing='ij'`` (torch's
    default) puts the first tensor along dimension 0, ``'xy'`` along dimension 1."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got indexing={indexing!r}")
    for i, x in enumerate(tensors):
        if jnp.ndim(x) > 1:
            raise ValueError(f"meshgrid: expects 0D or 1D tensors, got tensors[{i}] of shape {jnp.shape(x)}")
    dtypes = sorted({str(jnp.result_type(x)) for x in tensors})
    if len(dtypes) > 1:
        raise ValueError(f"meshgrid: expects all tensors to have the same dtype, got {dtypes}")
    return tuple(jnp.meshgrid(*(jnp.ravel(jnp.asarray(x)) for x in tensors), indexing=indexing))


def zeros_like(input, *, dtype=None, **placement):
    """Zeros of ``input``'s shape and dtype (``torch.zeros_like``)."""
    return jnp.zeros_like(input, dtype=dtype)


def ones_like(input, *, dtype=None, **placement):
    """Ones of ``input``'s shape and dtype (``torch.ones_like``)."""
    return jnp.ones_like(input, dtype=dtype)


empty_like = zeros_like


def full_like(input, fill_value, *, dtype=None, **placement):
    """``fill_value`` in ``input``'s shape and dtype (``torch.full_like``)."""
    return jnp.full_like(input, fill_value, dtype=dtype)


def new_zeros(input, *size, dtype=None, **kw):
    """Zeros of shape ``size`` in ``input``'s dtype (``Tensor.new_zeros``)."""
    return _fill(size, kw, 0, dtype or jnp.result_type(input), "new_zeros")


def new_ones(input, *size, dtype=None, **kw):
    """Ones of shape ``size`` in ``input``'s dtype (``Tensor.new_ones``)."""
    return _fill(size, kw, 1, dtype or jnp.result_type(input), "new_ones")


new_empty = new_zeros


def new_full(input, size, fill_value, *, dtype=None, **kw):
    """``fill_value`` in shape ``size`` and ``input``'s dtype (``Tensor.new_full``)."""
    return _fill((size,), kw, fill_value, dtype or jnp.result_type(input), "new_full")


def tensor(data, *, dtype=None, **placement):
    """An array from ``data`` (``torch.tensor``): Python floats give float32, ints int64;
    numpy and jax arrays keep their dtype."""
    if hasattr(data, "dtype"):
        return jnp.asarray(data, dtype)
    arr = np.asarray(data)
    if dtype is None:
        dtype = {"f": jnp.float32, "c": jnp.complex64}.get(arr.dtype.kind, arr.dtype)
    return jnp.asarray(arr, dtype)


def new_tensor(input, data, *, dtype=None, **placement):
    """``tensor(data)`` in ``input``'s dtype (``Tensor.new_tensor``)."""
    return jnp.asarray(data, dtype or jnp.result_type(input))


def to(input, *args, dtype=None, **placement):
    """``Tensor.to``: cast to the first dtype among ``args``/``dtype=``, or to the dtype of an
    array argument (``x.to(other)``); devices (strings, or ``None`` as torch accepts it: a
    translated ``x.to(y.device)``) and ``non_blocking``/``copy`` are ignored."""
    target = dtype
    for a in args:
        if target is not None:
            break
        if hasattr(a, "dtype") and hasattr(a, "shape"):
            target = a.dtype
        elif _parse.as_dtype(a) is not None:
            target = _parse.as_dtype(a)
        elif not isinstance(a, str) and a is not None:
            raise TypeError(f"to: expected a dtype, an array or a device string, got {a!r}")
    return jnp.asarray(input) if target is None else jnp.asarray(input).astype(_parse.canonical(target))


def type_as(input, other):
    """``input`` cast to ``other``'s dtype (``Tensor.type_as``)."""
    return jnp.asarray(input).astype(jnp.result_type(other))
