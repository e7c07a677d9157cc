"""Nested values (tuples, lists, dicts, ``None``) of arrays and tensors, walked with ``jax.tree_util``.

Leaf order is ``jax.tree_util``'s: a dict's values in sorted-key order, so torch's and jaxconv's
outputs pair up by key. Every mapping (``OrderedDict``, a Hugging Face ``ModelOutput``) is read
as a plain dict, so that order does not depend on its class. torch tensors are not pytrees;
they are leaves here.
"""
from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ._torch import to_numpy


def plain(value):
    """``value`` with every mapping made a plain ``dict`` (lists, tuples, NamedTuples kept)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
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


def to_jax(value, fn=None):
    """``value`` with every numpy array ``a`` replaced by ``jnp.asarray(fn(a))`` (``fn``: identity)."""
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a if fn is None else fn(a)) if isinstance(a, np.ndarray) else a, value)


def torch_to_numpy(value, torch):
    """``value`` with every torch tensor replaced by its numpy copy (:func:`to_numpy`); other leaves stay."""
    def is_tensor(v):
        return isinstance(v, torch.Tensor)

    return jax.tree_util.tree_map(lambda v: to_numpy(v) if is_tensor(v) else v,
                                  plain(value), is_leaf=is_tensor)


def first_tensor(value, torch):
    """The first torch tensor of a nested value (the order of :func:`first_array`)."""
    for leaf in jax.tree_util.tree_leaves(plain(value), is_leaf=lambda v: isinstance(v, torch.Tensor)):
        if isinstance(leaf, torch.Tensor):
            return leaf
    raise TypeError(f"the torch module's output has no tensor: {type(value).__name__}")
