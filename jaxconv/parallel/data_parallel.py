"""torch's DistributedDataParallel step on a ``jax.sharding`` mesh.

Under plain ``jax.jit`` with the batch sharded over devices, XLA computes what one process would
on the global batch: a BatchNorm's statistics are the global batch's (torch's SyncBatchNorm).
DDP differs, and a port that should train as it did in torch needs DDP's semantics:

- each replica runs the forward and the loss on its own shard of the batch, so a BatchNorm
  normalises with the replica's statistics;
- the gradients are averaged over the replicas (DDP's all-reduce divided by the world size);
- the optimizer updates the replicated parameters, identically everywhere;
- the buffers of replica 0 survive (``broadcast_buffers=True`` copies rank 0's buffers to every
  rank before each forward, so the running statistics evolve on rank 0's shards).

:func:`data_parallel_step` writes that as one ``jax.shard_map`` over the mesh's replica axis
inside one ``nnx.jit``. ``SyncBatchNorm`` layers inside it average their statistics over the
replicas instead (:mod:`jaxconv._replica`).
"""
from __future__ import annotations

import math

import jax
import optax
from flax import nnx
from jax import lax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from .._replica import replica_axis


def replica_count(mesh, axis) -> int:
    """The number of replicas along ``axis`` (a mesh axis name or a tuple of names)."""
    names = (axis,) if isinstance(axis, str) else tuple(axis)
    missing = [a for a in names if a not in mesh.shape]
    if missing:
        raise ValueError(f"axis: {missing[0]!r} is not an axis of the mesh, whose axes are "
                         f"{tuple(mesh.shape)}")
    return math.prod(mesh.shape[a] for a in names)


def check_batch(tree, replicas: int, name: str) -> None:
    """Every array in ``tree`` has a leading (batch) size divisible by ``replicas``."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = getattr(leaf, "shape", ())
        where = name + jax.tree_util.keystr(path)
        if not shape:
            raise ValueError(f"{where}: a data-parallel batch needs a leading batch dimension, "
                             f"got a scalar")
        if shape[0] % replicas:
            raise ValueError(
                f"{where}: the batch size {shape[0]} is not divisible by the {replicas} replicas "
                f"(each replica takes an equal shard, as torch's DistributedSampler with "
                f"drop_last=True gives; drop or pad the last {shape[0] % replicas} examples)")


def data_parallel_step(loss_fn, mesh, axis="data"):
    """A jitted training step with torch ``DistributedDataParallel``'s semantics.

    **Arguments:**

    - ``loss_fn``: ``loss_fn(model, x, y) -> scalar``, the loss of one replica's shard (a mean
      over the shard, as in torch).
    - ``mesh``: a ``jax.sharding.Mesh`` over every device taking part (all processes').
    - ``axis``: the mesh axis (or tuple of axes) whose devices are the replicas.

    **Returns:** ``step(model, optimizer, x, y) -> loss``. ``x`` and ``y`` are pytrees of arrays
    whose leading dimension is the global batch, sharded over ``axis`` (from one process, a numpy
    or jax array is split for you; from several, build them with
    :func:`jaxconv.parallel.shard_batch`). ``optimizer`` is an ``nnx.Optimizer`` over ``model``;
    its ``wrt`` filter selects the parameters that get gradients. The step updates ``model`` and
    ``optimizer`` in place and returns the mean of the replicas' losses. The parameters may be
    replicated (:func:`jaxconv.parallel.replicate`) or sharded (:func:`jaxconv.parallel.fsdp`): each
    replica computes with the whole parameters, and the update keeps their sharding.
    """
    replicas = replica_count(mesh, axis)
    explicit = any(t == AxisType.Explicit for t in mesh.axis_types)
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P(axis))

    def replica(graphdef, params, rest, x, y):
        def loss_of(params, rest):
            model = nnx.merge(graphdef, params, rest, copy=True)
            loss = loss_fn(model, x, y)
            return loss, nnx.state(model, nnx.Not(nnx.Param))

        with replica_axis(axis):
            (loss, rest), grads = jax.value_and_grad(loss_of, has_aux=True)(params, rest)
        grads = lax.pmean(grads, axis)
        # each replica's buffers, stacked: the caller keeps replica 0's (DDP's broadcast)
        return lax.pmean(loss, axis), grads, jax.tree.map(lambda v: v[None], rest)

    @nnx.jit
    def step(model, optimizer, x, y):
        check_batch(x, replicas, "x")
        check_batch(y, replicas, "y")
        graphdef, params, rest = nnx.split(model, getattr(optimizer, "wrt", nnx.Param), ...)
        mapped = jax.shard_map(
            lambda p, r, x, y: replica(graphdef, p, r, x, y), mesh=mesh,
            in_specs=(P(), P(), P(axis), P(axis)), out_specs=(P(), P(), P(axis)),
            check_vma=False)  # the collectives are written out: pmean'd gradients and loss
        if explicit:  # shard_map's operands must then be laid out as its in_specs say
            params, rest = jax.reshard(params, replicated), jax.reshard(rest, replicated)
            x, y = jax.reshard(x, split), jax.reshard(y, split)
        loss, grads, stacked = mapped(params, rest, x, y)
        if explicit:
            stacked = jax.reshard(stacked, replicated)
        nnx.update(model, jax.tree.map(lambda v: v[0], stacked))
        if isinstance(optimizer.tx, optax.GradientTransformationExtraArgs):
            optimizer.update(model, grads, value=loss)  # ReduceLROnPlateau reads the loss
        else:
            optimizer.update(model, grads)
        return loss

    return step


def shard_batch(batch, mesh, axis="data"):
    """A global batch sharded over ``axis`` from each process's own examples.

    **Arguments:** ``batch``: a pytree of arrays, this process's part of the global batch (its
    leading dimension; a ``DistributedSampler``'s share), in process order; ``mesh``, ``axis``:
    as for :func:`data_parallel_step`. In one process, ``batch`` is the whole batch.

    **Returns:** the pytree of global ``jax.Array`` s, leading dimension the sum over processes.
    """
    sharding = NamedSharding(mesh, P(axis))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
