"""Dtype rules of the functional layer, as torch (2.13, CPU) applies them.

Mismatches raise ``TypeError`` naming the arguments and their dtypes (torch raises
``RuntimeError``). Imported into ``_args``, the one home of argument rules.
"""
from __future__ import annotations

import numpy as np


def _dtype(x) -> str:
    return str(getattr(x, "dtype", type(x).__name__))


def check_same_dtype(fn: str, input, **others):
    """torch's "... should be the same": every given array in ``others`` has ``input``'s dtype.

    ``None`` entries (an absent bias) are skipped. Raises ``TypeError`` naming the first
    argument whose dtype differs, and both dtypes (pointing a float16/bfloat16 and float32 mix
    to ``jaxconv.autocast``).
    """
    for name, v in others.items():
        if v is not None and _dtype(v) != _dtype(input):
            mixed = {_dtype(input), _dtype(v)} in ({"bfloat16", "float32"}, {"float16", "float32"})
            raise TypeError(
                f"{fn}: input ({_dtype(input)}) and {name} ({_dtype(v)}) must have the same dtype"
                + (" (for mixed precision, run it under jaxconv.autocast)" if mixed else "")
            )


def _kind(dtype) -> int:
    """Order of dtype kinds for a same-kind cast: bool < integer < floating < complex."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 0
    if np.issubdtype(dtype, np.integer):
        return 1
    if np.issubdtype(dtype, np.complexfloating):
        return 3
    return 2  # float16/32/64 and ml_dtypes' bfloat16


def check_transpose_bias_dtype(fn: str, n: int, input, bias):
    """torch (CPU)'s dtype rule for a transposed conv's bias.

    ``conv_transpose1d``/``2d`` on a float16, bfloat16, float64 or integer input add the
    bias in place with type promotion, so any bias that casts to the input's dtype within
    its kind (bool < integer < floating < complex) is accepted and the sum is cast back;
    float32 and complex inputs (oneDNN and the complex path) and every ``conv_transpose3d``
    need the input's dtype exactly. So do float16 and bfloat16 inputs here: torch refuses
    another bias dtype for them where oneDNN takes the half types (CPUs with AVX512-FP16) and
    accepts it elsewhere; jaxconv refuses it everywhere, as on the newer CPUs.
    """
    if bias is None or _dtype(bias) == _dtype(input):
        return
    strict = n == 3 or _dtype(input) in ("float16", "bfloat16", "float32", "complex64", "complex128")
    if strict or _kind(bias.dtype) > _kind(input.dtype):
        raise TypeError(
            f"{fn}: input ({_dtype(input)}) and bias ({_dtype(bias)}) must have the same dtype"
            + ("" if strict else " (or a bias dtype that casts to the input's)")
        )


REDUCED_FLOATS = ("float16", "bfloat16")
NORM_INPUT_DTYPES = REDUCED_FLOATS + ("float32", "float64")


def opmath(dtype):
    """The dtype torch's CPU kernels compute and accumulate a ``dtype`` op in (its ``opmath_type``):
    float32 for float16 and bfloat16, ``dtype`` itself otherwise. Results are rounded to
    ``dtype`` once, at the end."""
    return np.dtype(np.float32) if str(np.dtype(dtype)) in REDUCED_FLOATS else np.dtype(dtype)


def accumulator(dtype):
    """``preferred_element_type`` for a ``lax`` conv or dot of ``dtype`` operands: float32 for
    float16/bfloat16 (torch's accumulator), ``None`` (the operands' dtype) otherwise."""
    acc = opmath(dtype)
    return None if acc == np.dtype(dtype) else acc


def in_opmath(fn, x, *args, **kwargs):
    """``fn(x, ...)`` computed in :func:`opmath` of ``x``'s dtype and rounded back once, as torch's
    elementwise and reduction kernels do for float16/bfloat16 (no-op for other dtypes)."""
    acc = opmath(x.dtype)
    if acc == np.dtype(x.dtype):
        return fn(x, *args, **kwargs)
    return fn(x.astype(acc), *args, **kwargs).astype(x.dtype)


def check_norm_dtypes(fn: str, input, **params):
    """torch's dtype rule for batch/instance/group/layer norm: a floating input, and the
    given ``params`` (weight, bias, running statistics) all of the input's dtype or, for a
    float16/bfloat16 input, all float32 (mixed precision). Raises ``TypeError``."""
    if _dtype(input) not in NORM_INPUT_DTYPES:
        raise TypeError(
            f"{fn}: expected a float16, bfloat16, float32 or float64 input, got input of "
            f"dtype {_dtype(input)}"
        )
    given = {k: _dtype(v) for k, v in params.items() if v is not None}
    if all(d == _dtype(input) for d in given.values()):
        return
    if _dtype(input) in REDUCED_FLOATS:
        if all(d == "float32" for d in given.values()):
            return
        kinds = ", ".join(f"{k} ({d})" for k, d in given.items())
        raise TypeError(
            f"{fn}: with a {_dtype(input)} input, weight, bias and running statistics must all "
            f"have the input's dtype or all be float32 (mixed precision), got {kinds}"
        )
    name, d = next((k, d) for k, d in given.items() if d != _dtype(input))
    raise TypeError(f"{fn}: input ({_dtype(input)}) and {name} ({d}) must have the same dtype")


def check_floating(fn: str, name: str, x, complex_ok: bool = False):
    """Raise ``TypeError`` unless ``x`` is a floating (or, with ``complex_ok``, complex) array."""
    k = _kind(x.dtype)
    if k < 2 or (k == 3 and not complex_ok):
        kinds = "floating-point or complex" if complex_ok else "floating-point"
        raise TypeError(f"{fn}: expected a {kinds} {name}, got {name} of dtype {_dtype(x)}")


def check_instance_norm_dtypes(fn: str, input, weight, bias, running_mean, running_var):
    """torch (CPU)'s dtype rule for ``instance_norm``, looser than batch norm's on the running
    statistics, which it casts: weight and bias as in ``check_norm_dtypes``; the statistics
    any floating dtypes, except that a ``running_mean`` of the parameters' dtype (weight's,
    else the input's) needs a ``running_var`` of that dtype, and a float32 bias without a
    weight on a float16/bfloat16 input takes no statistics. (torch also takes integer or
    complex statistics, truncating or dropping the imaginary part: refused here.)"""
    check_norm_dtypes(fn, input, weight=weight, bias=bias)
    if running_mean is None or running_var is None:
        return
    for name, v in (("running_mean", running_mean), ("running_var", running_var)):
        check_floating(fn, name, v)
    if weight is None and bias is not None and _dtype(bias) != _dtype(input):
        raise TypeError(
            f"{fn}: a {_dtype(input)} input with a {_dtype(bias)} bias and no weight takes no "
            f"running statistics (torch refuses any dtype), got running_mean "
            f"({_dtype(running_mean)}) and running_var ({_dtype(running_var)})"
        )
    params = _dtype(weight if weight is not None else input)
    if _dtype(running_mean) == params and _dtype(running_var) != params:
        raise TypeError(
            f"{fn}: running_mean ({params}) and running_var ({_dtype(running_var)}) must have "
            f"the same dtype when running_mean has the parameters' dtype"
        )
