"""Placing a model's state on a mesh: replicated, or sharded parameter by parameter (FSDP).

Both work in one process and across several: every process calls them with the same model
(built from the same seed or checkpoint), and each places its devices' parts. An
``nnx.Optimizer`` built afterwards takes its state's placement from the parameters (optax and
jaxconv.optim create their slots with ``zeros_like``), so its moments are sharded the same way.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from .data_parallel import replica_count


def place(x, sharding):
    """``x`` (any jax or numpy array, PRNG keys included) as a global array on ``sharding``."""
    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
        data = place(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    if sharding.is_fully_addressable or not getattr(x, "is_fully_addressable", True):
        return jax.device_put(x, sharding)  # within this process, or between global shardings
    # a process-local value onto devices of several processes: each process gives its devices'
    # parts of the value they all hold
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def fsdp_spec(shape, replicas: int, axis) -> P:
    """The partition of one parameter: its largest dimension divisible by ``replicas`` split over
    ``axis`` (the first of equal sizes), or replicated (``P()``) when none is."""
    dims = [d for d in sorted(range(len(shape)), key=lambda d: -shape[d])
            if shape[d] >= replicas and shape[d] % replicas == 0]
    if not dims or replicas == 1:
        return P()
    spec = [None] * len(shape)
    spec[dims[0]] = axis
    return P(*spec)


def _place_state(model, sharding_of):
    """Every variable of ``model`` placed on ``sharding_of(variable)``; returns ``model``."""
    variables, treedef = jax.tree.flatten(nnx.state(model),
                                          is_leaf=lambda v: isinstance(v, nnx.Variable))
    placed = [v.replace(place(v[...], sharding_of(v))) for v in variables]
    nnx.update(model, jax.tree.unflatten(treedef, placed))
    return model


def replicate(model, mesh):
    """``model`` with every parameter and buffer replicated on all of ``mesh``'s devices.

    **Arguments:** ``model``: an ``nnx.Module``, changed in place; ``mesh``: a
    ``jax.sharding.Mesh``. **Returns:** ``model``.
    """
    replicated = NamedSharding(mesh, P())
    return _place_state(model, lambda _: replicated)


def fsdp(model, mesh, axis="data"):
    """``model`` with each parameter sharded over ``axis`` along its largest divisible dimension.

    Fully sharded data parallel: every device keeps ``1/replicas`` of each parameter (and, once an
    optimizer is built on the model, of its moments); a parameter with no dimension divisible by
    the number of replicas, and every buffer, is replicated. Within
    :func:`jaxconv.parallel.data_parallel_step` (or any ``jax.jit``) XLA gathers the parameters
    where they are used, so training computes what the replicated model does.

    **Arguments:** ``model``: an ``nnx.Module``, changed in place; ``mesh``: a
    ``jax.sharding.Mesh``; ``axis``: the mesh axis (or tuple of axes) to shard over.
    **Returns:** ``model``.
    """
    replicas = replica_count(mesh, axis)

    def sharding_of(v):
        spec = fsdp_spec(v.shape, replicas, axis) if isinstance(v, nnx.Param) else P()
        return NamedSharding(mesh, spec)

    return _place_state(model, sharding_of)
