"""Reductions: ``sum``, ``mean``, ``amax``, ``max`` (three forms), ``var``/``std``, ``logsumexp``, ...

``dim`` is ``None`` (all dims; an empty tuple too, as in torch), an int or a tuple of
ints where torch takes a tuple (``sum``, ``mean``, ``amax``, ``amin``, ``var``, ``std``,
``logsumexp``, ``norm``, ``all``, ``any``), and a single int where torch takes only one
(``prod``, ``max``/``min``, ``argmax``/``argmin``, ``cumsum``/``cumprod``). Integer and bool
sums and products accumulate in int64 (jax's int32 unless x64 is on), as torch's do.
"""
from __future__ import annotations

import builtins
import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import _parse


class ValuesIndices(NamedTuple):
    """``(values, indices)`` of ``max``/``min`` along a dim, as torch's ``return_types``."""
    values: Any
    indices: Any


def _one_dim(dim, input, fn: str) -> int:
    if not _parse.is_int(dim):
        raise TypeError(f"{fn}: dim must be a single int, got dim={dim!r}")
    return _parse.dim_index(dim, jnp.ndim(input), fn)


def _keep(out, input, keepdim: bool, d):
    """``out`` reduced over dim ``d`` of ``input`` (``None``: all), with size-1 dims kept if asked."""
    if not keepdim:
        return out
    return jnp.reshape(out, (1,) * jnp.ndim(input)) if d is None else jnp.expand_dims(out, d)


def sum(input, dim=None, keepdim: bool = False, *, dtype=None):
    """Sum over ``dim`` (``torch.sum``); integer/bool input gives int64 unless ``dtype`` is given."""
    dims = _parse.reduce_dims(dim, jnp.ndim(input), "sum")
    return jnp.sum(input, axis=dims, keepdims=keepdim, dtype=_parse.integer_accumulator(input, dtype))


def mean(input, dim=None, keepdim: bool = False, *, dtype=None):
    """Mean over ``dim`` (``torch.mean``); a floating input (or ``dtype``) is required."""
    x = jnp.asarray(input) if dtype is None else jnp.asarray(input).astype(dtype)
    if not _parse.is_floating(x):
        raise TypeError(f"mean: could not infer output dtype; input dtype must be floating point or "
                        f"complex, got {x.dtype} (pass dtype=)")
    return jnp.mean(x, axis=_parse.reduce_dims(dim, x.ndim, "mean"), keepdims=keepdim)


def prod(input, dim=None, keepdim: bool = False, *, dtype=None):
    """Product over one ``dim`` or all elements (``torch.prod``); integer/bool input gives int64."""
    d = None if dim is None else _one_dim(dim, input, "prod")
    return jnp.prod(input, axis=d, keepdims=keepdim, dtype=_parse.integer_accumulator(input, dtype))


def _amax_amin(input, dim, keepdim, fn, op):
    dims = _parse.reduce_dims(dim, jnp.ndim(input), fn)
    if jnp.size(input) == 0 and dims is None:
        raise ValueError(f"{fn}: expected the reduction dim to be specified for an empty input, "
                         f"got input of shape {tuple(jnp.shape(input))}")
    return op(input, axis=dims, keepdims=keepdim)


def amax(input, dim=None, keepdim: bool = False):
    """Maximum over ``dim`` (``torch.amax``); the gradient splits evenly between ties."""
    return _amax_amin(input, dim, keepdim, "amax", jnp.max)


def amin(input, dim=None, keepdim: bool = False):
    """Minimum over ``dim`` (``torch.amin``); the gradient splits evenly between ties."""
    return _amax_amin(input, dim, keepdim, "amin", jnp.min)


def _max_min(input, dim, keepdim, other, fn, reduce, arg, binary):
    if other is not None or hasattr(dim, "shape"):
        if other is None:
            other, dim = dim, None
        if dim is not None:
            raise TypeError(f"{fn}: pass either dim or other, got dim={dim!r} and an other tensor")
        return binary(input, other)
    if dim is None:
        if keepdim:
            raise TypeError(f"{fn}: keepdim needs dim, got keepdim={keepdim!r} without dim")
        if jnp.size(input) == 0:
            raise ValueError(f"{fn}: expected a non-empty input (or a dim), got input of shape "
                             f"{tuple(jnp.shape(input))}")
        return reduce(input)
    d = _one_dim(dim, input, fn)
    if jnp.ndim(input) == 0:
        return ValuesIndices(input, jnp.zeros((), _parse.long_dtype()))
    values = reduce(input, axis=d, keepdims=keepdim)
    indices = arg(input, axis=d, keepdims=keepdim).astype(_parse.long_dtype())
    return ValuesIndices(values, indices)


def max(input, dim=None, keepdim: bool = False, *, other=None):
    """torch's three ``max``: ``max(x)`` the largest element; ``max(x, dim, keepdim=False)`` a
    ``(values, indices)`` named tuple (first index among ties); ``max(x, other)`` = ``maximum``."""
    return _max_min(input, dim, keepdim, other, "max", jnp.max, jnp.argmax, jnp.maximum)


def min(input, dim=None, keepdim: bool = False, *, other=None):
    """torch's three ``min``, as :func:`max`."""
    return _max_min(input, dim, keepdim, other, "min", jnp.min, jnp.argmin, jnp.minimum)


def _arg(input, dim, keepdim, fn, op):
    if dim is None:
        return _keep(op(jnp.ravel(input)), input, keepdim, None).astype(_parse.long_dtype())
    d = _one_dim(dim, input, fn)
    if jnp.ndim(input) == 0:
        return jnp.zeros((), _parse.long_dtype())
    return op(input, axis=d, keepdims=keepdim).astype(_parse.long_dtype())


def argmax(input, dim=None, keepdim: bool = False):
    """Index of the largest element along ``dim``, or in the flattened input (``torch.argmax``)."""
    return _arg(input, dim, keepdim, "argmax", jnp.argmax)


def argmin(input, dim=None, keepdim: bool = False):
    """Index of the smallest element along ``dim``, or in the flattened input (``torch.argmin``)."""
    return _arg(input, dim, keepdim, "argmin", jnp.argmin)


def _correction(dim, unbiased, correction, fn):
    if isinstance(dim, bool):  # torch's var(input, unbiased)
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise TypeError(f"{fn}: pass unbiased or correction, not both, got unbiased={unbiased!r} "
                        f"and correction={correction!r}")
    if correction is None:
        correction = 0 if unbiased is False else 1
    return dim, correction


def var(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    """Variance over ``dim``: ``sum((x - mean)^2) / max(0, N - correction)`` (``torch.var``).

    ``correction`` defaults to 1 (Bessel's); the legacy ``unbiased`` (``True`` = 1,
    ``False`` = 0) may be given instead, also as ``var(x, unbiased)`` and ``var(x, dim, unbiased)``.
    """
    return _var(input, dim, unbiased, keepdim, correction, "var")


def _var(input, dim, unbiased, keepdim, correction, fn):
    dim, correction = _correction(dim, unbiased, correction, fn)
    x = _parse.to_float(input)
    dims = _parse.reduce_dims(dim, x.ndim, fn)
    n = x.size if dims is None else math.prod(x.shape[d] for d in dims)
    centred = x - jnp.mean(x, axis=dims, keepdims=True)
    squares = jnp.sum(jnp.real(centred * jnp.conj(centred)), axis=dims, keepdims=keepdim)
    if n - correction <= 0:
        warnings.warn(f"{fn}: degrees of freedom is <= 0 (correction={correction} for {n} elements "
                      "per output); the result is inf or nan, as in torch", stacklevel=2)
    return squares / builtins.max(0, n - correction)


def std(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    """``sqrt(var(...))`` (``torch.std``); arguments as :func:`var`."""
    return jnp.sqrt(_var(input, dim, unbiased, keepdim, correction, "std"))


def logsumexp(input, dim, keepdim: bool = False):
    """``log(sum(exp(x)))`` over ``dim`` (int or tuple), computed stably (``torch.logsumexp``)."""
    x = _parse.to_float(input)
    dims = _parse.reduce_dims(dim, x.ndim, "logsumexp")
    if dims is None:
        raise ValueError(f"logsumexp: dim must name at least one dim, got dim={dim!r}")
    return jax.nn.logsumexp(x, axis=dims, keepdims=keepdim)


def cumsum(input, dim: int, *, dtype=None):
    """Cumulative sum along ``dim`` (``torch.cumsum``); integer/bool input gives int64."""
    d = _one_dim(dim, input, "cumsum")
    x = jnp.reshape(input, (1,)) if jnp.ndim(input) == 0 else input
    return jnp.reshape(jnp.cumsum(x, axis=d, dtype=_parse.integer_accumulator(input, dtype)), jnp.shape(input))


def cumprod(input, dim: int, *, dtype=None):
    """Cumulative product along ``dim`` (``torch.cumprod``); integer/bool input gives int64."""
    d = _one_dim(dim, input, "cumprod")
    x = jnp.reshape(input, (1,)) if jnp.ndim(input) == 0 else input
    return jnp.reshape(jnp.cumprod(x, axis=d, dtype=_parse.integer_accumulator(input, dtype)), jnp.shape(input))


def norm(input, p="fro", dim=None, keepdim: bool = False, dtype=None):
    """Vector norm over ``dim`` (``torch.norm``): ``p`` a number, ``inf``, ``-inf`` or ``'fro'``
    (= 2, over all given dims). The nuclear norm (``'nuc'``) is not supported."""
    if p == "fro" or p is None:
        p = 2
    if isinstance(p, str) or not _parse.is_number(p):
        raise ValueError(f"norm: p must be a number, inf, -inf or 'fro', got p={p!r}")
    x = jnp.abs(_parse.to_float(input if dtype is None else jnp.asarray(input).astype(dtype)))
    dims = _parse.reduce_dims(dim, x.ndim, "norm")
    if p == float("inf"):
        return jnp.max(x, axis=dims, keepdims=keepdim)
    if p == float("-inf"):
        return jnp.min(x, axis=dims, keepdims=keepdim)
    if p == 0:
        return jnp.sum((x != 0).astype(x.dtype), axis=dims, keepdims=keepdim)
    if p == 2:
        return jnp.sqrt(jnp.sum(x * x, axis=dims, keepdims=keepdim))
    return jnp.sum(x ** p, axis=dims, keepdims=keepdim) ** (1.0 / p)


def all(input, dim=None, keepdim: bool = False):
    """Whether every element over ``dim`` is nonzero (``torch.all``)."""
    return jnp.all(input, axis=_parse.reduce_dims(dim, jnp.ndim(input), "all"), keepdims=keepdim)


def any(input, dim=None, keepdim: bool = False):
    """Whether some element over ``dim`` is nonzero (``torch.any``)."""
    return jnp.any(input, axis=_parse.reduce_dims(dim, jnp.ndim(input), "any"), keepdims=keepdim)
