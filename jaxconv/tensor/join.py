"""Joining and splitting: ``cat``, ``stack``, ``chunk``, ``split``, ``unbind``, ``narrow``.

Splits return tuples, as torch does. ``chunk`` follows torch's rule, not numpy's
``array_split``: every piece has ``ceil(n / chunks)`` elements but the last, so fewer than
``chunks`` pieces may come back (``chunk`` of 5 into 4 gives sizes 2, 2, 1).
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from . import _parse


def _tensors(tensors, fn: str) -> list:
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{fn}: expected a non-empty list of tensors, got {tensors!r}")
    return [jnp.asarray(x) for x in tensors]


def cat(tensors, dim: int = 0):
    """Join ``tensors`` along an existing dim (``torch.cat``), with type promotion.

    As in torch, 1-D empty tensors (shape ``(0,)``) are skipped whatever the others' shapes.
    """
    tensors = _tensors(tensors, "cat")
    kept = [x for x in tensors if x.shape != (0,)] or tensors[:1]
    dtype = jnp.result_type(*tensors)
    ref = kept[0]
    if ref.ndim == 0:
        raise ValueError("cat: zero-dimensional tensor (at position 0) cannot be concatenated")
    d = _parse.dim_index(dim, ref.ndim, "cat")
    for i, x in enumerate(kept):
        if x.ndim != ref.ndim:
            raise ValueError(f"cat: tensors must have the same number of dimensions: got {ref.ndim} "
                             f"and {x.ndim} (tensor number {i})")
        bad = [j for j in range(ref.ndim) if j != d and x.shape[j] != ref.shape[j]]
        if bad:
            raise ValueError(f"cat: sizes of tensors must match except in dimension {d}: expected size "
                             f"{ref.shape[bad[0]]} but got size {x.shape[bad[0]]} for tensor number {i} "
                             f"at dimension {bad[0]}")
    return jnp.concatenate([x.astype(dtype) for x in kept], axis=d)


concat = concatenate = cat


def stack(tensors, dim: int = 0):
    """Join equally shaped ``tensors`` along a new dim ``dim`` in ``[-ndim-1, ndim]`` (``torch.stack``)."""
    tensors = _tensors(tensors, "stack")
    for i, x in enumerate(tensors):
        if x.shape != tensors[0].shape:
            raise ValueError(f"stack: expects each tensor to be equal size, but got "
                             f"{list(tensors[0].shape)} at entry 0 and {list(x.shape)} at entry {i}")
    d = _parse.dim_index(dim, tensors[0].ndim + 1, "stack")
    dtype = jnp.result_type(*tensors)
    return jnp.stack([x.astype(dtype) for x in tensors], axis=d)


def _pieces(input, sizes, d):
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return tuple(lax.slice_in_dim(input, s, s + n, axis=d) for s, n in zip(starts, sizes))


def _dim_of(input, dim, fn):
    if jnp.ndim(input) == 0:
        raise ValueError(f"{fn}: dimension specified as dim={dim} but the tensor has no dimensions")
    return _parse.dim_index(dim, jnp.ndim(input), fn)


def chunk(input, chunks: int, dim: int = 0):
    """Split into pieces of ``ceil(n / chunks)`` along ``dim``, the last smaller (``torch.chunk``);
    may return fewer than ``chunks`` pieces; an empty dim gives ``chunks`` empty pieces."""
    if not _parse.is_int(chunks):
        raise TypeError(f"chunk: chunks must be an int, got chunks={chunks!r}")
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be greater than 0, got chunks={chunks}")
    d = _dim_of(input, dim, "chunk")
    n = input.shape[d]
    if n == 0:
        return _pieces(input, [0] * chunks, d)
    return split(input, -(-n // chunks), d)


def split(tensor, split_size_or_sections, dim: int = 0):
    """Split along ``dim`` into pieces of an int size (the last smaller), or of the listed
    sizes, which must sum to the dim's length (``torch.split``)."""
    d = _dim_of(tensor, dim, "split")
    n = tensor.shape[d]
    arg = split_size_or_sections
    if _parse.is_int(arg):
        if arg < 0:
            raise ValueError(f"split: split_size must be non-negative, got split_size={arg}")
        if arg == 0:
            if n:
                raise ValueError(f"split: split_size can only be 0 if the dimension size is 0, "
                                 f"got split_size=0 for dimension size {n}")
            return (tensor,)
        sizes = [arg] * (n // arg) + ([n % arg] if n % arg else [])
        return _pieces(tensor, sizes or [0], d)
    sizes = list(_parse.sizes((arg,), "split", "split_size_or_sections"))
    if any(s < 0 for s in sizes) or sum(sizes) != n:
        raise ValueError(f"split: split sizes must be non-negative and sum exactly to {n} (the input's "
                         f"size at dimension {d}), got split_size_or_sections={sizes}")
    return _pieces(tensor, sizes, d)


def tensor_split(input, indices_or_sections=None, dim: int = 0, *, indices=None, sections=None):
    """Split along ``dim`` into ``n`` near-equal pieces (the first ``size % n`` one longer), or
    at the listed indices, as Python slices ``[:i0], [i0:i1], ..., [ik:]`` (``torch.tensor_split``;
    ``indices=`` / ``sections=`` are its keyword forms)."""
    d = _dim_of(input, dim, "tensor_split")
    n = input.shape[d]
    given = [a for a in (indices_or_sections, indices, sections) if a is not None]
    if len(given) != 1:
        raise TypeError("tensor_split: give exactly one of indices_or_sections, indices and sections")
    arg = given[0]
    if _parse.is_int(arg):
        if arg <= 0:
            raise ValueError(f"tensor_split: number of sections must be larger than 0, got {arg}")
        sizes = [n // arg + (i < n % arg) for i in range(arg)]
        return _pieces(input, sizes, d)
    bounds = [None, *(int(i) for i in arg), None]
    index = [slice(None)] * jnp.ndim(input)
    pieces = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        index[d] = slice(a, b)
        pieces.append(input[tuple(index)])
    return tuple(pieces)


def unbind(input, dim: int = 0):
    """The slices along ``dim``, that dim removed, as a tuple (``torch.unbind``)."""
    d = _dim_of(input, dim, "unbind")
    return tuple(jnp.squeeze(p, d) for p in _pieces(input, [1] * input.shape[d], d))


def narrow(input, dim: int, start: int, length: int):
    """``length`` elements of dim ``dim`` from ``start`` (negative counts from the end) (``torch.narrow``)."""
    d = _dim_of(input, dim, "narrow")
    n = input.shape[d]
    if not (_parse.is_int(start) and -n <= start <= n):
        raise ValueError(f"narrow: start out of range (expected to be in range of [{-n}, {n}], "
                         f"but got start={start!r})")
    if not _parse.is_int(length) or length < 0:
        raise ValueError(f"narrow: length must be a non-negative int, got length={length!r}")
    start = start % n if start < 0 else start
    if start + length > n:
        raise ValueError(f"narrow: start ({start}) + length ({length}) exceeds dimension size ({n})")
    return lax.slice_in_dim(input, start, start + length, axis=d)
