"""Nested values (tuples, lists, dicts, ``None``) of arrays and tensors, walked with ``jax.tree_util``.

Leaf order is ``jax.tree_util``'s: a dict's values in sorted-key order, so torch's and jaxconv's
outputs pair up by key. Every mapping (``OrderedDict``, a Hugging Face ``ModelOutput``) is read
as a plain dict, so that order does not depend on its class; a ``ModelOutput`` as a
:class:`Fields`, a dict that also answers by position and attribute as torch's does (module
code reads ``outputs[0]`` and ``outputs.hidden_states``). torch tensors are not pytrees;
they are leaves here.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ._torch import to_numpy


class Fields(dict):
    """A ``ModelOutput`` as a dict of its fields that are set, in field order, read also by
    position (``[0]``) or attribute (``None`` for a field not set), as torch's is; a pytree
    flattened as a dict is (values in sorted-key order)."""

    def __init__(self, items=(), names=()):
        super().__init__(items)
        self.__dict__["names"] = tuple(names)

    def __getitem__(self, key):
        return tuple(self.values())[key] if isinstance(key, (int, slice)) else super().__getitem__(key)

    def __getattr__(self, name):
        if name in self.__dict__.get("names", ()):
            return self.get(name)
        raise AttributeError(f"{name!r} is not a field of this output")

    def to_tuple(self):
        return tuple(self.values())


def _flatten_fields(f):
    keys = sorted(f)
    return [dict.__getitem__(f, k) for k in keys], (tuple(f), tuple(keys), f.names)


def _unflatten_fields(aux, values):
    order, keys, names = aux
    by_key = dict(zip(keys, values))
    return Fields(((k, by_key[k]) for k in order), names)


jax.tree_util.register_pytree_node(Fields, _flatten_fields, _unflatten_fields)


def plain(value):
    """``value`` with every mapping made a plain ``dict``, a ``ModelOutput`` (a mapping that is
    a dataclass) a :class:`Fields` (lists, tuples, NamedTuples kept)."""
    if isinstance(value, Mapping):
        items = ((k, plain(v)) for k, v in value.items())
        if dataclasses.is_dataclass(value):
            return Fields(items, [f.name for f in dataclasses.fields(value)])
        return dict(items)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(plain(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(plain(v) for v in value)
    return value


def arrays(value) -> list:
    """The numpy and jax array leaves of a nested value, in order."""
    return [a for a in jax.tree_util.tree_leaves(plain(value)) if isinstance(a, (np.ndarray, jax.Array))]


def first_array(value):
    """The first array leaf of a nested value, or ``None``: the *main* output of a call."""
    leaves = arrays(value)
    return leaves[0] if leaves else None


def is_floating(a) -> bool:
    """Whether an array (numpy, jax or torch) holds floating-point values."""
    dtype = a.dtype
    return bool(dtype.is_floating_point) if hasattr(dtype, "is_floating_point") else jnp.issubdtype(dtype, jnp.inexact)


def floating_arrays(value) -> list:
    """The floating array leaves of a nested value, in order: the outputs a gradient flows
    back from (an LSTM's ``out``, ``h_n`` and ``c_n``; not pooling indices)."""
    return [a for a in arrays(value) if is_floating(a)]


def to_device(a) -> jax.Array:
    """``jnp.asarray(a)``; a numpy array through ``jax.device_put`` (the same dtype rules), a plain
    copy, where ``jnp.asarray`` runs a compiled copy per array: 5-10x slower for ViT-B/16's
    activations (90 arrays of 0.6-2.4 MB: 33-250 ms against 7-34 ms, 2-core VM)."""
    return jax.device_put(a) if isinstance(a, np.ndarray) else jnp.asarray(a)


def to_jax(value, fn=None):
    """``value`` with every numpy array ``a`` replaced by ``to_device(fn(a))`` (``fn``: identity)."""
    return jax.tree_util.tree_map(
        lambda a: to_device(a if fn is None else fn(a)) if isinstance(a, np.ndarray) else a, value)


def torch_to_numpy(value, torch):
    """``value`` with every torch tensor replaced by its numpy copy (:func:`to_numpy`); other leaves stay."""
    def is_tensor(v):
        return isinstance(v, torch.Tensor)

    return jax.tree_util.tree_map(lambda v: to_numpy(v) if is_tensor(v) else v,
                                  plain(value), is_leaf=is_tensor)


def floating_tensors(value, torch) -> list:
    """The floating torch tensors of a nested value, in the order of :func:`floating_arrays`."""
    leaves = jax.tree_util.tree_leaves(plain(value), is_leaf=lambda v: isinstance(v, torch.Tensor))
    return [v for v in leaves if isinstance(v, torch.Tensor) and v.is_floating_point()]


def first_tensor(value, torch):
    """The first torch tensor of a nested value (the order of :func:`first_array`)."""
    for leaf in jax.tree_util.tree_leaves(plain(value), is_leaf=lambda v: isinstance(v, torch.Tensor)):
        if isinstance(leaf, torch.Tensor):
            return leaf
    raise TypeError(f"the torch module's output has no tensor: {type(value).__name__}")
