"""Ops on arrays sharded over ``Explicit`` mesh axes: the output shardings JAX cannot infer.

With ``Explicit`` axes (``jax.make_mesh``'s default in JAX 0.10) a sharding is part of an
array's type, and each op needs a rule for its output's. JAX has none (``ShardingTypeError``)
for a reshape that splits or merges more than one axis, even when the batch axis it keeps is
the only sharded one, and it refuses ``select`` / ``concatenate`` / a scan carry between an
array created inside an op (``jnp.full``, ``jnp.zeros``: replicated) and a batch-sharded one.
The helpers here give those shardings where they follow from the inputs' and do nothing
otherwise: with no mesh, on ``Auto`` axes (which are not part of the type), or when nothing is
sharded, they emit the same program as the plain op, so values stay bit-identical.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P


class ShardingError(ValueError):
    """An op's input is sharded over ``Explicit`` mesh axes in a way the op cannot keep."""


def explicit_spec(x):
    """``x``'s partition spec over ``Explicit`` mesh axes, or ``None`` when none shards it."""
    spec = getattr(getattr(jax.typeof(x), "sharding", None), "spec", None)
    if spec is None or all(p is None for p in spec):
        return None
    return tuple(spec) + (None,) * (jnp.ndim(x) - len(spec))


def _size(p):
    """Number of shards of one spec entry (an axis name, a tuple of them, or ``None``)."""
    mesh = jax.sharding.get_abstract_mesh()
    names = () if p is None else (p,) if isinstance(p, str) else tuple(p)
    return math.prod(mesh.shape[n] for n in names)


def _groups(old, new):
    """Runs of axes ``(old[i:j], new[k:l])`` with equal products, the finest such split."""
    i = k = 0
    while i < len(old) or k < len(new):
        j, l, a, b = i, k, 1, 1
        while True:
            if a <= b and j < len(old) and (a < b or j == i or old[j] == 1):
                a *= old[j]
                j += 1
            elif l < len(new) and (b < a or l == k or new[l] == 1):
                b *= new[l]
                l += 1
            else:
                break
        yield (i, j), (k, l)
        i, k = j, l


def reshape_spec(spec, old, new):
    """The spec of ``reshape(x, new)`` for ``x`` of shape ``old`` and spec ``spec``, where it
    needs no data movement: within each group of axes with equal products only the most
    major axis is sharded, and the group's most major new axis splits into as many shards
    (so each shard is a contiguous block before and after). ``None`` otherwise."""
    out = []
    for (i, j), (k, l) in _groups(tuple(old), tuple(new)):
        sharded = [a for a in range(i, j) if spec[a] is not None]
        if not sharded:
            out += [None] * (l - k)
            continue
        major = next((a for a in range(i, j) if old[a] != 1), i)
        if sharded != [major] or k == l or new[k] % _size(spec[major]):
            return None
        out += [spec[major]] + [None] * (l - k - 1)
    return P(*out)


def reshape(x, shape):
    """``jnp.reshape(x, shape)``, given the output sharding where JAX cannot infer it (see
    :func:`reshape_spec`): e.g. ``(N, C, H, W) -> (N, C, H/2, 2, W/2, 2)`` with ``N`` sharded.
    Otherwise the plain reshape (and JAX's error where it needs one)."""
    shape = tuple(int(s) for s in shape)
    spec = explicit_spec(x)
    if spec is None or jnp.shape(x) == shape:
        return jnp.reshape(x, shape)
    out = reshape_spec(spec, jnp.shape(x), shape)
    return jnp.reshape(x, shape, out_sharding=out)


def lead_like(y, x, n=1, start=0):
    """``y`` with the sharding of ``x``'s axes ``start .. start + n`` on its own first ``n`` (the
    rest replicated): for arrays made inside an op (``jnp.full``, ``jnp.zeros``, a scan's
    initial carry) that meet a batch-sharded ``x`` in a ``select``, ``concatenate`` or scan."""
    spec = explicit_spec(x)
    if spec is None:
        return y
    want = P(*spec[start:start + n], *[None] * (jnp.ndim(y) - n))
    if explicit_spec(y) == tuple(want):
        return y
    return jax.sharding.reshard(y, want)


def take(table, index):
    """``table[index]`` for a 1-D ``table`` (class weights): sharded as ``index`` (a sharded
    batch's targets), which JAX asks to be told."""
    if explicit_spec(index) is None:
        return table[index]
    return table.at[index].get(out_sharding=jax.typeof(index).sharding)
