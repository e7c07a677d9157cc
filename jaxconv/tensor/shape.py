"""View and shape functions: ``reshape``/``view``, ``permute``, ``squeeze``, ``expand``, ...

Where torch accepts both ``x.reshape(2, 3)`` and ``x.reshape((2, 3))`` so does each function
here (``reshape(x, 2, 3)``, ``reshape(x, (2, 3))``). Views and copies are the same thing
on immutable arrays: ``contiguous``, ``clone`` and ``detach`` return their input.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..functional.linear import flatten, unflatten  # noqa: F401  (one home; exported here)
from . import _parse


def size(input, dim=None):
    """The shape as a tuple of ints, or the size of dim ``dim`` (``Tensor.size``)."""
    if dim is None:
        return tuple(int(s) for s in jnp.shape(input))
    if jnp.ndim(input) == 0:
        raise ValueError(f"size: dimension specified as dim={dim!r} but the tensor has no dimensions")
    return int(jnp.shape(input)[_parse.dim_index(dim, jnp.ndim(input), "size")])


def numel(input) -> int:
    """Number of elements (``Tensor.numel``)."""
    return math.prod(jnp.shape(input))


def dim(input) -> int:
    """Number of dimensions (``Tensor.dim``)."""
    return jnp.ndim(input)


def _infer(shape: tuple[int, ...], n: int, fn: str) -> tuple[int, ...]:
    """Resolve torch's one ``-1`` in a target shape against ``n`` elements."""
    if sum(s == -1 for s in shape) > 1:
        raise ValueError(f"{fn}: only one dimension can be inferred (one -1), got shape {list(shape)}")
    if any(s < -1 for s in shape):
        raise ValueError(f"{fn}: invalid shape dimension, sizes must be >= -1, got shape {list(shape)}")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape and known and n % known == 0:
        shape = tuple(n // known if s == -1 else s for s in shape)
    if -1 in shape or math.prod(shape) != n:
        raise ValueError(f"{fn}: shape {list(shape)} is invalid for input of size {n}")
    return shape


def reshape(input, *shape, **kw):
    """``input`` with a new shape of the same number of elements; one size may be ``-1``
    (``torch.reshape``); ``reshape(x, 2, 3)``, ``reshape(x, (2, 3))`` or ``shape=(2, 3)``."""
    shape = _parse.one_form(shape, kw.pop("shape", None), "reshape", "shape")
    _no_kw(kw, "reshape")
    return jnp.reshape(input, _infer(shape, numel(input), "reshape"))


def view(input, *size, **kw):
    """``Tensor.view``: as ``reshape`` (every array is contiguous here); ``size=`` keyword.

    ``view(dtype)`` (a bit reinterpretation) is not supported.
    """
    if len(size) == 1 and _parse.as_dtype(size[0]) is not None:
        raise TypeError("view: view(dtype) (reinterpreting bits) is not supported, got "
                        f"dtype {size[0]!r}; use to() to convert values")
    shape = _parse.one_form(size, kw.pop("size", None), "view", "size")
    _no_kw(kw, "view")
    return jnp.reshape(input, _infer(shape, numel(input), "view"))


def _no_kw(kw: dict, fn: str):
    if kw:
        raise TypeError(f"{fn}: unexpected keyword arguments {sorted(kw)}")


def permute(input, *dims, **kw):
    """Reorder the dims (``torch.permute``): ``permute(x, 0, 2, 1)`` or ``permute(x, (0, 2, 1))``."""
    dims = _parse.one_form(dims, kw.pop("dims", None), "permute", "dims")
    _no_kw(kw, "permute")
    ndim = jnp.ndim(input)
    if len(dims) != ndim:
        raise ValueError(f"permute: dims must have one entry per dimension of the input "
                         f"(input.dim() = {ndim}), got dims={dims}")
    wrapped = tuple(_parse.dim_index(d, ndim, "permute", "dims") for d in dims)
    if len(set(wrapped)) != len(wrapped):
        raise ValueError(f"permute: duplicate dims are not allowed, got dims={dims}")
    return jnp.transpose(input, wrapped) if ndim else input


def transpose(input, dim0: int, dim1: int):
    """Swap dims ``dim0`` and ``dim1`` (``torch.transpose``)."""
    ndim = jnp.ndim(input)
    a = _parse.dim_index(dim0, ndim, "transpose", "dim0")
    b = _parse.dim_index(dim1, ndim, "transpose", "dim1")
    return jnp.swapaxes(input, a, b) if ndim else input


swapaxes = swapdims = transpose


def t(input):
    """Transpose a tensor of at most 2 dims (``torch.t``); 0-D and 1-D come back as they are."""
    if jnp.ndim(input) > 2:
        raise ValueError(f"t: expects a tensor with <= 2 dimensions, but got input of shape "
                         f"{tuple(jnp.shape(input))}")
    return jnp.transpose(input)


def movedim(input, source, destination):
    """Move dims ``source`` to positions ``destination`` (``torch.movedim``; ints or tuples)."""
    ndim = jnp.ndim(input)
    src = _parse.dim_indices(source, ndim, "movedim", "source")
    dst = _parse.dim_indices(destination, ndim, "movedim", "destination")
    if len(src) != len(dst):
        raise ValueError(f"movedim: source and destination must have the same number of dims, "
                         f"got source={source!r} and destination={destination!r}")
    return jnp.moveaxis(input, src, dst) if ndim else input


def squeeze(input, dim=None):
    """Drop size-1 dims: all of them, or those of ``dim`` (int or tuple) (``torch.squeeze``).

    As in torch, naming a dim whose size is not 1 is not an error: that dim is kept.
    """
    shape = jnp.shape(input)
    if dim is None:
        return jnp.reshape(input, tuple(s for s in shape if s != 1))
    dims = _parse.dim_indices(dim, len(shape), "squeeze")
    return jnp.reshape(input, tuple(s for i, s in enumerate(shape) if not (i in dims and s == 1)))


def unsqueeze(input, dim: int):
    """Insert a size-1 dim at ``dim``, in ``[-ndim-1, ndim]`` (``torch.unsqueeze``)."""
    ndim = jnp.ndim(input)
    d = _parse.dim_index(dim, ndim + 1, "unsqueeze")
    return jnp.expand_dims(input, d)


def expand(input, *sizes, **kw):
    """Broadcast to ``sizes`` (``Tensor.expand``): ``-1`` keeps a size; new dims go in front
    (and may not be ``-1``); only size-1 dims can grow."""
    target = _parse.one_form(sizes, kw.pop("size", None), "expand", "size")
    _no_kw(kw, "expand")
    shape = jnp.shape(input)
    lead = len(target) - len(shape)
    if lead < 0:
        raise ValueError(f"expand: the number of sizes provided ({len(target)}) must be greater or "
                         f"equal to the number of dimensions in the tensor ({len(shape)}), got size={target}")
    out = []
    for i, s in enumerate(target):
        if i < lead:
            if s < 0:
                raise ValueError(f"expand: the expanded size {s} is not allowed in a leading, "
                                 f"non-existing dimension {i}, got size={target}")
            out.append(s)
            continue
        have = shape[i - lead]
        if s == -1:
            out.append(have)
        elif have == s or have == 1:
            out.append(s)
        else:
            raise ValueError(f"expand: the expanded size of the tensor ({s}) must match the existing "
                             f"size ({have}) at non-singleton dimension {i}, got size={target} for "
                             f"input of shape {tuple(shape)}")
    return jnp.broadcast_to(input, tuple(out))


def expand_as(input, other):
    """``expand(input, other.shape)`` (``Tensor.expand_as``)."""
    return expand(input, tuple(jnp.shape(other)))


def broadcast_to(input, size):
    """``expand(input, size)`` (``torch.broadcast_to``)."""
    return expand(input, tuple(size))


def repeat(input, *sizes, **kw):
    """Tile ``input`` ``sizes[i]`` times along each dim (``Tensor.repeat``); more sizes than
    dims add leading dims, fewer is an error."""
    reps = _parse.one_form(sizes, kw.pop("repeats", None), "repeat", "repeats")
    _no_kw(kw, "repeat")
    if len(reps) < jnp.ndim(input):
        raise ValueError(f"repeat: number of dimensions of repeat dims ({len(reps)}) can not be "
                         f"smaller than number of dimensions of tensor ({jnp.ndim(input)}), got repeats={reps}")
    if any(r < 0 for r in reps):
        raise ValueError(f"repeat: repeats can not be negative, got repeats={reps}")
    return jnp.tile(input, reps)


def tile(input, *dims, **kw):
    """``torch.tile``: as ``repeat``, but fewer ``dims`` than dimensions are padded with 1s in front."""
    reps = _parse.one_form(dims, kw.pop("dims", None), "tile", "dims")
    _no_kw(kw, "tile")
    reps = (1,) * (jnp.ndim(input) - len(reps)) + reps
    return repeat(input, reps)


def repeat_interleave(input, repeats, dim=None, *, output_size=None):
    """Repeat each element ``repeats`` times along ``dim``, or over the flattened input when
    ``dim`` is ``None`` (``torch.repeat_interleave``); ``repeats`` an int or a 1-D array."""
    if dim is None:
        input, d = jnp.ravel(input), 0
    else:
        d = _parse.dim_index(dim, jnp.ndim(input), "repeat_interleave")
    if _parse.is_int(repeats) and repeats < 0:
        raise ValueError(f"repeat_interleave: repeats can not be negative, got repeats={repeats}")
    return jnp.repeat(input, repeats, axis=d, total_repeat_length=output_size)


def contiguous(input, memory_format=None):
    """The input itself: jax arrays have no strides (``Tensor.contiguous``)."""
    return input


def clone(input, *, memory_format=None):
    """The input itself: jax arrays are immutable (``torch.clone``)."""
    return input


def detach(input):
    """``input`` with gradients stopped (``Tensor.detach``)."""
    return jax.lax.stop_gradient(input)
