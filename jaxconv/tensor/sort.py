"""Sorting: ``sort``, ``argsort``, ``topk``.

Sorts are stable here, ``descending`` ones too (equal elements keep their order), which is
what torch promises for ``stable=True``; for ``stable=False`` torch leaves the order of equal
elements unspecified. NaN sorts as the largest value, as in torch.
"""
from __future__ import annotations

import jax.numpy as jnp

from . import _parse
from .reduce import ValuesIndices


def argsort(input, dim: int = -1, descending: bool = False, *, stable: bool = False):
    """The indices that sort ``input`` along ``dim`` (``torch.argsort``), int64."""
    x = jnp.asarray(input)
    if x.ndim == 0:
        return jnp.zeros((), _parse.long_dtype())
    d = _parse.dim_index(dim, x.ndim, "argsort")
    return jnp.argsort(x, axis=d, stable=True, descending=descending).astype(_parse.long_dtype())


def sort(input, dim: int = -1, descending: bool = False, *, stable: bool = False):
    """``(values, indices)`` of ``input`` sorted along ``dim`` (``torch.sort``)."""
    x = jnp.asarray(input)
    indices = argsort(x, dim, descending)
    if x.ndim == 0:
        return ValuesIndices(x, indices)
    return ValuesIndices(jnp.take_along_axis(x, indices, axis=_parse.dim_index(dim, x.ndim, "sort")), indices)


def topk(input, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """``(values, indices)`` of the ``k`` largest (``largest=False``: smallest) elements along
    ``dim``, in sorted order (``torch.topk``); among equal elements the first comes first."""
    x = jnp.asarray(input)
    size = x.shape[_parse.dim_index(dim, x.ndim, "topk")] if x.ndim else 1
    if not _parse.is_int(k) or not 0 <= k <= size:
        raise ValueError(f"topk: k must be an int in [0, {size}] (the size of dim {dim}), got k={k!r}")
    values, indices = sort(x, dim, descending=largest)
    if x.ndim == 0:
        return ValuesIndices(values, indices)
    d = _parse.dim_index(dim, x.ndim, "topk")
    keep = tuple(slice(0, k) if i == d else slice(None) for i in range(x.ndim))
    return ValuesIndices(values[keep], indices[keep])
