"""Selection and masking: ``gather``, ``index_select``, ``where``, ``masked_fill``, ``flip``,
``roll``, ``tril``/``triu``.

torch checks index values at run time (out of bounds, negative); a jitted function cannot,
so index values are not checked here: out-of-bounds gathers follow jax's indexing rules.
Shapes and dtypes are checked where torch checks them.
"""
from __future__ import annotations

import jax.numpy as jnp

from . import _parse


def _int_index(index, fn: str):
    index = jnp.asarray(index)
    if not jnp.issubdtype(index.dtype, jnp.integer):
        raise TypeError(f"{fn}: expected an int32 or int64 index, got index of dtype {index.dtype}")
    return index


def gather(input, dim: int, index, *, sparse_grad: bool = False):
    """``out[i][j] = input[index[i][j]][j]`` for ``dim=0`` and so on (``torch.gather``).

    ``index`` has ``input``'s number of dims and, apart from ``dim``, sizes no larger than
    ``input``'s; the output has ``index``'s shape.
    """
    index = _int_index(index, "gather")
    ndim = jnp.ndim(input)
    d = _parse.dim_index(dim, ndim, "gather")
    if index.ndim != max(ndim, 1) and not (ndim == 0 and index.ndim == 0):
        raise ValueError(f"gather: index must have the same number of dimensions as input "
                         f"({ndim}), got index of shape {tuple(index.shape)}")
    if ndim == 0:
        return jnp.reshape(input, index.shape)
    too_big = [i for i in range(ndim) if i != d and index.shape[i] > input.shape[i]]
    if too_big:
        raise ValueError(f"gather: index of shape {tuple(index.shape)} must be no larger than input "
                         f"of shape {tuple(input.shape)} apart from dimension {d} (at dimension {too_big[0]})")
    cropped = input[tuple(slice(None) if i == d else slice(0, index.shape[i]) for i in range(ndim))]
    return jnp.take_along_axis(cropped, index, axis=d)


def index_select(input, dim: int, index):
    """The entries ``index`` (a 1-D or 0-D int array) along ``dim`` (``torch.index_select``)."""
    index = _int_index(index, "index_select")
    if index.ndim > 1:
        raise ValueError(f"index_select: index is supposed to be a vector, got index of shape {tuple(index.shape)}")
    d = _parse.dim_index(dim, jnp.ndim(input), "index_select")
    if jnp.ndim(input) == 0:
        return jnp.reshape(input, index.shape)
    return jnp.take(input, jnp.reshape(index, (-1,)), axis=d)


def _scalar_operand(value, other):
    """torch's dtype for a Python scalar operand of ``where`` when the other is one too."""
    if isinstance(value, bool) or hasattr(value, "dtype") or hasattr(other, "dtype"):
        return value
    return jnp.asarray(value, jnp.float32 if isinstance(value, float) or isinstance(other, float)
                       else _parse.long_dtype())


def where(condition, input, other):
    """``input`` where ``condition`` (a bool array) holds, else ``other`` (``torch.where``).

    Operands broadcast and promote; two Python scalars give float32 (or int64), as in torch.
    The one-argument ``where(condition)`` (``nonzero``) has a data-dependent shape and is not
    provided.
    """
    condition = jnp.asarray(condition)
    if condition.dtype != jnp.bool_:
        raise TypeError(f"where: expected condition to be a bool tensor, got dtype {condition.dtype}")
    return jnp.where(condition, _scalar_operand(input, other), _scalar_operand(other, input))


def masked_fill(input, mask, value):
    """``input`` with ``value`` (a scalar or a 0-D array, cast to ``input``'s dtype) where the
    bool ``mask`` holds (``torch.masked_fill``); input and mask broadcast."""
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"masked_fill: only supports boolean masks, got mask of dtype {mask.dtype}")
    if jnp.ndim(value) != 0:
        raise ValueError(f"masked_fill: only supports a 0-dimensional value, got value of shape "
                         f"{tuple(jnp.shape(value))}")
    input = jnp.asarray(input)
    return jnp.where(mask, jnp.asarray(value).astype(input.dtype), input)


def flip(input, *dims, **kw):
    """Reverse the order along ``dims`` (``torch.flip``): ``flip(x, (0, 1))`` or ``flip(x, 0, 1)``."""
    dims = _parse.one_form(dims, kw.pop("dims", None), "flip", "dims")
    if kw:
        raise TypeError(f"flip: unexpected keyword arguments {sorted(kw)}")
    axes = _parse.dim_indices(dims, jnp.ndim(input), "flip", "dims")
    return jnp.flip(input, axes) if jnp.ndim(input) and axes else input


def roll(input, shifts, dims=None):
    """Roll elements by ``shifts`` along ``dims`` (ints or tuples of equal length), or over the
    flattened input when ``dims`` is ``None`` (``torch.roll``)."""
    shifts_t = _parse.sizes((shifts,), "roll", "shifts")
    if dims is None:
        if len(shifts_t) != 1:
            raise ValueError(f"roll: shifts and dimensions must align, got shifts={shifts!r} and dims=None")
        return jnp.reshape(jnp.roll(jnp.ravel(input), shifts_t[0]), jnp.shape(input))
    dims_t = tuple(_parse.dim_index(d, jnp.ndim(input), "roll", "dims")
                   for d in _parse.sizes((dims,), "roll", "dims"))
    if len(shifts_t) != len(dims_t):
        raise ValueError(f"roll: shifts and dimensions must align, got shifts={shifts!r} and dims={dims!r}")
    return jnp.roll(input, shifts_t, dims_t) if jnp.ndim(input) else input


def _matrix(input, fn: str):
    if jnp.ndim(input) < 2:
        raise ValueError(f"{fn}: input tensor must have at least 2 dimensions, got input of shape "
                         f"{tuple(jnp.shape(input))}")


def tril(input, diagonal: int = 0):
    """Zero the elements above ``diagonal`` of the last two dims (``torch.tril``)."""
    _matrix(input, "tril")
    return jnp.tril(input, diagonal)


def triu(input, diagonal: int = 0):
    """Zero the elements below ``diagonal`` of the last two dims (``torch.triu``)."""
    _matrix(input, "triu")
    return jnp.triu(input, diagonal)
