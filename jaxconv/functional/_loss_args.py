"""Argument rules of the loss functions: reductions, class-index targets, weights, values.

torch's deprecated ``size_average`` / ``reduce`` override ``reduction`` (``legacy_get_string``:
both default to ``True``; ``reduce=False`` is ``'none'``, else ``size_average=False`` is
``'sum'``, else ``'mean'``) with torch's warning. Value checks (a target class out of range,
a probability outside [0, 1]) need concrete values: they run eagerly and are skipped under a
trace (``jit``, ``grad``, ``vmap``), where each loss instead gives NaN for the offending
element (see :func:`concrete`). Imported into ``_args``, the one home of argument rules.
"""
from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ._args import is_int

REDUCTIONS = ("none", "mean", "sum")


def legacy_reduction(size_average, reduce) -> str:
    """torch's ``_Reduction.legacy_get_string``, with its warning."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    out = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn("size_average and reduce args will be deprecated, please use "
                  f"reduction='{out}' instead.", UserWarning, stacklevel=4)
    return out


def reduction(fn: str, reduction, size_average=None, reduce=None, extra: tuple = (),
              alias: bool = True) -> str:
    """The reduction a loss applies: the legacy arguments when given, else ``reduction``.

    ``extra`` names reductions beyond torch's three (``'batchmean'``); ``alias`` accepts
    torch's deprecated ``'elementwise_mean'`` (with its warning) as ``'mean'``, as the losses
    that read ``reduction`` in C++ do (those checking it in Python refuse it).
    """
    if size_average is not None or reduce is not None:
        return legacy_reduction(size_average, reduce)
    if alias and reduction == "elementwise_mean":
        warnings.warn("reduction='elementwise_mean' is deprecated. Please use reduction='mean' "
                      "instead.", UserWarning, stacklevel=3)
        return "mean"
    allowed = REDUCTIONS + tuple(extra)
    if not isinstance(reduction, str) or reduction not in allowed:
        raise ValueError(f"{fn}: reduction must be one of {', '.join(map(repr, allowed))}, got "
                         f"reduction={reduction!r}")
    return reduction


def reduce_loss(loss, reduction: str):
    """``'none'``: ``loss``; ``'sum'``: its sum; ``'mean'``: its mean (NaN when empty, as torch)."""
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "mean":
        return jnp.mean(loss) if loss.size else jnp.full((), jnp.nan, loss.dtype)
    return loss


def concrete(x):
    """``x`` as a numpy array, or ``None`` where it is traced (``jit``, ``grad``, ``vmap``):
    the values value checks read. Python scalars and sequences come back as arrays."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def shape_of(x) -> tuple:
    return tuple(getattr(x, "shape", ()))


def check_floating_input(fn: str, name: str, x):
    """Raise ``TypeError`` unless ``x`` is a floating array (torch's kernels are not
    implemented for integer inputs)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{fn}: expected a floating-point {name}, got {name} of dtype "
                        f"{dtype if dtype is not None else type(x).__name__}")


def check_index_target(fn: str, target, name: str = "target"):
    """A class-index target: any integer dtype (int64 as torch, int32, uint8, ...), no bool."""
    dtype = getattr(target, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{fn}: {name} must hold class indices of an integer dtype, got {name} "
                        f"of dtype {dtype if dtype is not None else type(target).__name__}")


def check_class_range(fn: str, target, num_classes: int, ignore_index=None, low: int = 0,
                      name: str = "target"):
    """Raise ``IndexError`` (torch's type) where a concrete ``target`` value is outside
    ``[low, num_classes)`` and is not ``ignore_index``. Traced targets are not checked."""
    values = concrete(target)
    if values is None or values.size == 0:
        return
    bad = (values < low) | (values >= num_classes)
    if ignore_index is not None:
        bad &= values != ignore_index
    if bad.any():
        raise IndexError(
            f"{fn}: {name} values must be class indices in [{low}, {num_classes - 1}]"
            + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
            + f", got {name} value {values[bad].flat[0]}")


def check_class_weight(fn: str, weight, num_classes: int, input=None):
    """``weight`` (one per class): ``num_classes`` elements (torch reads any shape of that size)
    and, where given, ``input``'s dtype. Returns it flat, or ``None``."""
    if weight is None:
        return None
    size = math.prod(shape_of(weight))
    if size != num_classes:
        raise ValueError(f"{fn}: weight must hold one value per class ({num_classes}), got "
                         f"weight of shape {shape_of(weight)}")
    if input is not None and jnp.dtype(weight.dtype) != jnp.dtype(input.dtype):
        raise TypeError(f"{fn}: input ({input.dtype}) and weight ({weight.dtype}) must have the "
                        "same dtype")
    return jnp.asarray(weight).reshape(num_classes)


def check_same_shape(fn: str, a, b, a_name="input", b_name="target", message=""):
    if shape_of(a) != shape_of(b):
        raise ValueError(f"{fn}: {b_name} must have the shape of {a_name} {shape_of(a)}, got "
                         f"{b_name} of shape {shape_of(b)}" + message)


def broadcast_shape(fn: str, *named) -> tuple:
    """The broadcast shape of ``(name, array)`` pairs, with an error naming them and their shapes."""
    shapes = [shape_of(a) for _, a in named]
    try:
        return tuple(jnp.broadcast_shapes(*shapes))
    except ValueError:
        listed = ", ".join(f"{n} {s}" for (n, _), s in zip(named, shapes))
        raise ValueError(f"{fn}: the shapes must broadcast together, got {listed}") from None


def warn_broadcast(fn: str, input, target):
    """torch's warning when a regression target's shape differs from the input's."""
    if shape_of(input) != shape_of(target):
        warnings.warn(
            f"{fn}: Using a target size ({shape_of(target)}) that is different to the input size "
            f"({shape_of(input)}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.", UserWarning, stacklevel=3)


def check_positive(fn: str, name: str, value, strict: bool = True):
    if strict and not value > 0:
        raise ValueError(f"{fn}: {name} must be greater than 0, got {name}={value}")
    if not strict and not value >= 0:
        raise ValueError(f"{fn}: {name} must be non-negative, got {name}={value}")


def lengths(fn: str, name: str, value, batch: int | None):
    """CTC ``input_lengths`` / ``target_lengths``: an integer array or a sequence of ints, of
    shape ``(batch,)`` (``()`` or one element for unbatched input, ``batch`` ``None``)."""
    if isinstance(value, (list, tuple)) or is_int(value):
        if not all(is_int(v) for v in np.ravel(np.asarray(value, dtype=object))):
            raise TypeError(f"{fn}: {name} must be integers, got {name}={value!r}")
        value = jnp.asarray(value)
    dtype = getattr(value, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{fn}: {name} must be an integer array or a sequence of ints, got "
                        f"{name} of dtype {dtype if dtype is not None else type(value).__name__}")
    want = 1 if batch is None else batch
    if value.size != want or (batch is not None and value.ndim != 1) or value.ndim > 1:
        raise ValueError(f"{fn}: {name} must be of size batch_size ({want}), got {name} of shape "
                         f"{tuple(value.shape)}")
    return jnp.reshape(value, (want,))
