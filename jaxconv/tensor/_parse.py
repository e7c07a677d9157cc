"""Argument parsing shared by the tensor functions: torch's two call forms, dims, dtypes.

The dim-range rule itself lives in ``functional/_args`` (``dim_index``/``dim_indices``);
this file only adds the parsing that torch's Tensor methods need on top of it.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..functional import _args
from ..functional._args import dim_index, dim_indices, is_int, is_number  # noqa: F401  (re-used here)


def sizes(args: tuple, fn: str, name: str) -> tuple[int, ...]:
    """torch's ``f(x, 2, 3)`` / ``f(x, (2, 3))`` forms: varargs ints or one sequence, as ints."""
    if len(args) == 1 and isinstance(args[0], Sequence) and not isinstance(args[0], str):
        args = tuple(args[0])
    if not all(is_int(v) for v in args):
        raise TypeError(f"{fn}: {name} must be ints or one tuple of ints, got {name}={args!r}")
    return tuple(int(v) for v in args)


def one_form(args: tuple, kw, fn: str, name: str) -> tuple[int, ...]:
    """Varargs ``args`` or the keyword ``name=kw`` (not both), parsed by :func:`sizes`."""
    if kw is not None:
        if args:
            raise TypeError(f"{fn}: {name} given both positionally and as a keyword, got {args!r} and {kw!r}")
        args = (kw,)
    return sizes(args, fn, name)


def reduce_dims(dim, ndim: int, fn: str) -> tuple[int, ...] | None:
    """A reduction's ``dim``: ``None`` or an empty sequence reduces all (``None``), else checked dims."""
    if dim is None or (isinstance(dim, Sequence) and len(dim) == 0):
        return None
    return dim_indices(dim, ndim, fn)


def is_floating(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def to_float(x):
    """torch's unary float ops on integer or bool input compute in the default dtype, float32."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.float32)


def long_dtype():
    """torch's int64, as jax has it (int32 unless x64 is enabled)."""
    return jax.dtypes.canonicalize_dtype(jnp.int64)


def canonical(dtype):
    """``dtype`` as jax has it: int64/float64 become int32/float32 unless x64 is on (no warning)."""
    return None if dtype is None else jax.dtypes.canonicalize_dtype(dtype)


def integer_accumulator(x, dtype):
    """torch's sum/prod/cumsum dtype: ``dtype`` if given, else int64 for integer or bool input."""
    if dtype is not None:
        return dtype
    return None if jnp.issubdtype(jnp.result_type(x), jnp.inexact) else long_dtype()


def as_dtype(value):
    """A dtype from a jnp/numpy dtype or scalar type, or ``None`` if ``value`` is not one."""
    if isinstance(value, str) or value is None:
        return None
    if isinstance(value, np.dtype):
        return value
    if isinstance(value, type):
        try:
            return np.dtype(value)
        except TypeError:
            return None
    return None


check_same_dtype = _args.check_same_dtype
