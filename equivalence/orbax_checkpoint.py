"""Orbax checkpoints of a jaxconv model and its optimizer, written by N processes, read by M.

A checkpoint directory is an ``orbax.checkpoint.CheckpointManager`` root: each saved step is a
subdirectory ``<step>/`` holding the items

- ``model``: the parameters and buffers under their torch names (``layer1.0.conv1.weight``,
  ``bn1.running_var``), those of :func:`equivalence.state_dict`;
- ``optimizer`` (when one is saved): the ``nnx.Optimizer``'s state, its update count ``step``
  and its ``opt_state`` (for :mod:`jaxconv.optim`: per-group steps, scheduled hyperparameters,
  torch's slots ``exp_avg`` ... by parameter name, the scheduler's state; for optax
  transformations their own states), as ``nnx.to_pure_dict`` gives it.

Orbax writes each array from the processes that hold its shards and reads into any sharding, so
the restoring job may have another number of processes and devices: every array is read straight
onto the sharding of the live target's variable. With several processes, every process calls
:func:`save_checkpoint` and :func:`restore_checkpoint`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from numbers import Integral

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.optim.optimizer import named_leaves

from .state_dict import StateDictError, named_variables

MODEL, OPTIMIZER = "model", "optimizer"


class CheckpointMismatchError(StateDictError):
    """A checkpoint does not fit the model or optimizer it is restored into; nothing was changed.

    ``item`` is ``'model'`` or ``'optimizer'``; ``missing_keys``, ``unexpected_keys`` and
    ``mismatched`` (``name -> (checkpoint shape, target shape)``) as in
    :class:`~equivalence.StateDictError`; the message's first line names the first mismatch.
    """

    def __init__(self, message, item, missing_keys=(), unexpected_keys=(), mismatched=None):
        super().__init__(message, missing_keys, unexpected_keys, mismatched)
        self.item = item


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


def _manager(directory, *, create: bool):
    ocp = _ocp()
    path = os.path.abspath(os.fspath(directory))
    if not create and not os.path.isdir(path):
        raise FileNotFoundError(f"no Orbax checkpoint in {os.fspath(directory)!r}: not a directory")
    # Synchronous: save_checkpoint returns with the step committed, as torch.save does.
    options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False, create=create)
    return ocp.CheckpointManager(path, options=options, item_handlers={
        MODEL: ocp.StandardCheckpointHandler(), OPTIMIZER: ocp.StandardCheckpointHandler()})


def _check_targets(model, optimizer, caller: str) -> None:
    if not isinstance(model, nnx.Module):
        raise TypeError(f"{caller}: model must be an nnx.Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, nnx.Optimizer):
        raise TypeError(f"{caller}: optimizer must be an nnx.Optimizer or None, "
                        f"got {type(optimizer).__name__}")


def _model_tree(model) -> dict:
    """``{torch name: array}``, the model's parameters and buffers."""
    return {name: var.get_value() for name, var in named_variables(model)}


def _optimizer_state(optimizer) -> nnx.State:
    """The optimizer's own variables (its update count and ``opt_state``), not the model's."""
    return nnx.state(optimizer, nnx.optimizer.OptState)


def save_checkpoint(directory, model, optimizer=None, step: int | None = None, *,
                    metadata: Mapping | None = None) -> int:
    """Write ``model`` (and ``optimizer``) as step ``step`` of the Orbax checkpoint ``directory``.

    Returns when the step is committed. Every array is written by the processes holding it, so
    a replicated, FSDP-sharded or multi-process model is saved as it lies; with several
    processes, every process must call this.

    **Arguments:**

    - ``directory``: the checkpoint root (created if needed); the step goes to ``<directory>/<step>``.
    - ``model``: the ``nnx.Module``; its parameters and buffers (:func:`equivalence.state_dict`'s).
    - ``optimizer``: an ``nnx.Optimizer`` (over :mod:`jaxconv.optim` or any optax
      transformation), or ``None`` for the model alone.
    - ``step``: the step number, an int >= 0. ``None``: the optimizer's update count
      (``optimizer.step``), or 0 without an optimizer. An existing step is never overwritten.
    - ``metadata``: JSON-serialisable entries kept with the step (``{'epoch': 7}``), read back
      with :func:`checkpoint_metadata`.

    **Returns:** the step written.
    """
    _check_targets(model, optimizer, "save_checkpoint")
    if step is None:
        step = 0 if optimizer is None else int(optimizer.step.get_value())
    if isinstance(step, bool) or not isinstance(step, Integral) or step < 0:
        raise ValueError(f"save_checkpoint: step must be an int >= 0 or None, got {step!r}")
    ocp = _ocp()
    trees = {MODEL: _model_tree(model)}
    if optimizer is not None:
        trees[OPTIMIZER] = nnx.to_pure_dict(_optimizer_state(optimizer))
    items = {k: ocp.args.StandardSave(jax.tree.map(_savable, v)) for k, v in trees.items()}
    manager = _manager(directory, create=True)
    try:
        if int(step) in manager.all_steps():
            raise FileExistsError(f"save_checkpoint: step {int(step)} already exists in "
                                  f"{os.fspath(directory)!r}; pass another step= or remove it")
        manager.save(int(step), args=ocp.args.Composite(**items),
                     custom_metadata=dict(metadata or {}), force=True)
        manager.wait_until_finished()
    finally:
        manager.close()
    return int(step)


def _existing_step(manager, directory, step):
    steps = manager.all_steps()
    if not steps:
        raise FileNotFoundError(f"no Orbax checkpoint in {os.fspath(directory)!r}")
    if step is None:
        return manager.latest_step()
    if step not in steps:
        raise FileNotFoundError(f"{os.fspath(directory)!r} has no step {step}; "
                                f"its steps are {sorted(steps)}")
    return step


def checkpoint_metadata(directory, step: int | None = None) -> dict:
    """The ``metadata`` saved with ``step`` (default: the latest) of the checkpoint ``directory``."""
    manager = _manager(directory, create=False)
    try:
        step = _existing_step(manager, directory, step)
        return dict(manager.metadata(step).custom_metadata or {})
    finally:
        manager.close()


def _sharding(leaf):
    """Where a live leaf lies; an abstract one (``nnx.eval_shape``) on this process's device."""
    sharding = getattr(leaf, "sharding", None)
    return sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


def _process_local(leaf) -> bool:
    """An array each of several processes holds whole (an optimizer's per-group learning rates
    and counts beside a sharded model): to Orbax a host value, written from process 0 as numpy."""
    return (jax.process_count() > 1 and isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct))
            and _sharding(leaf).is_fully_addressable)


def _uncommitted(leaf) -> bool:
    """A live array JAX may move to any device (built without a placement, as an optimizer's
    per-group learning rates are): restored so, or a jitted step over a mesh would refuse it."""
    return isinstance(leaf, jax.Array) and not leaf.committed


def _savable(leaf):
    return np.asarray(leaf) if _process_local(leaf) else leaf


def _abstract(leaf):
    """The restore target of one live leaf: its shape, dtype and sharding (a process-local
    array as numpy, placed by :func:`_placed`)."""
    if _process_local(leaf) or _uncommitted(leaf):
        return np.empty(leaf.shape, leaf.dtype)
    if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=_sharding(leaf))
    return leaf


def _placed(value, target):
    """A restored value on its target's sharding (numpy values of process-local arrays), or
    uncommitted where the target was."""
    if isinstance(value, np.ndarray) and isinstance(target, (jax.Array, jax.ShapeDtypeStruct)):
        value = value.astype(target.dtype, copy=False)
        return jnp.asarray(value) if _uncommitted(target) else jax.device_put(value, _sharding(target))
    return value


def _shape(meta) -> tuple[int, ...]:
    return tuple(int(d) for d in getattr(meta, "shape", None) or ())


def _listed(names: list, most: int = 8) -> str:
    more = f", ... ({len(names) - most} more)" if len(names) > most else ""
    return ", ".join(map(repr, names[:most])) + more


def _check_fit(item: str, saved, target: list, what: str, where: str) -> None:
    """Raise :class:`CheckpointMismatchError` unless the saved tree has the target's names and
    shapes; the first mismatch in the target's order leads the message."""
    saved = {name: _shape(meta) for name, meta in named_leaves(saved)}
    names = [name for name, _ in target]
    missing = [n for n in names if n not in saved]
    unexpected = [n for n in saved if n not in set(names)]
    mismatched = {n: (saved[n], tuple(leaf.shape)) for n, leaf in target
                  if n in saved and saved[n] != tuple(leaf.shape)}
    if not (missing or unexpected or mismatched):
        return
    lines = [f"size mismatch for {n}: shape {a} in the checkpoint, {b} in the {item}"
             for n, (a, b) in mismatched.items()]
    if unexpected:
        lines.insert(0, f"unexpected key(s) in the checkpoint: {_listed(unexpected)}")
    if missing:
        lines.insert(0, f"missing key(s) in the checkpoint: {_listed(missing)}")
    first = next((n for n in names if n in missing or n in mismatched), None)
    if first is None:
        first_line = f"first mismatch: {unexpected[0]!r} is in the checkpoint, not in the {item}"
    elif first in mismatched:
        a, b = mismatched[first]
        first_line = f"first mismatch: {first!r} has shape {a} in the checkpoint, {b} in the {item}"
    else:
        first_line = f"first mismatch: {first!r} of the {item} is not in the checkpoint"
    raise CheckpointMismatchError(
        f"the {item} state in {where} does not fit the {what}; nothing was restored. "
        f"{first_line}\n\t" + "\n\t".join(lines), item, missing, unexpected, mismatched)


def restore_checkpoint(directory, model, optimizer=None, *, step: int | None = None) -> int:
    """Read step ``step`` of the Orbax checkpoint ``directory`` into ``model`` (and ``optimizer``).

    Every array is read onto the sharding of the variable it replaces (one device, replicated,
    FSDP-sharded, over this job's processes), whatever the number of processes and devices that
    wrote it; dtypes are the target's (a float32 checkpoint restores into a bfloat16 model as
    bfloat16). Names and shapes are checked against the checkpoint's metadata first: a model or
    optimizer of another structure raises :class:`CheckpointMismatchError` naming the first
    mismatching key (the model's by torch name, the optimizer's by its state path such as
    ``opt_state.slots.exp_avg.fc.weight``) and both shapes, and nothing is changed; nor is
    anything changed when reading fails. A checkpoint saved with an optimizer restores into a
    model alone (the optimizer's state is then not read). With several processes, every process
    must call this.

    **Arguments:**

    - ``directory``: the checkpoint root written by :func:`save_checkpoint`.
    - ``model``: the ``nnx.Module`` to restore into (in place); it may be abstract
      (``nnx.eval_shape``), its arrays then placed on this process's first device.
    - ``optimizer``: the ``nnx.Optimizer`` to restore into (in place), or ``None``.
    - ``step``: the step to read; ``None``: the latest.

    **Returns:** the step restored, to resume the loop from.
    """
    _check_targets(model, optimizer, "restore_checkpoint")
    ocp = _ocp()
    manager = _manager(directory, create=False)
    try:
        step = _existing_step(manager, directory, step)
        where = f"{os.fspath(directory)!r} step {step}"
        saved = manager.item_metadata(step)
        variables = list(named_variables(model))
        targets = {MODEL: {name: var.get_value() for name, var in variables}}
        opt_state = None
        if optimizer is not None:
            opt_state = _optimizer_state(optimizer)
            targets[OPTIMIZER] = nnx.to_pure_dict(opt_state)
        for item, tree in targets.items():
            what = type(model).__name__ if item == MODEL else f"{type(optimizer).__name__} state"
            meta = saved[item] if item in saved else None
            if meta is None:
                raise CheckpointMismatchError(
                    f"{where} holds no {item} state (saved without {item}=); nothing was restored",
                    item)
            ordered = list(tree.items()) if item == MODEL else named_leaves(tree)  # torch's order
            _check_fit(item, getattr(meta, "tree", meta), ordered, what, where)
        restored = manager.restore(step, args=ocp.args.Composite(**{
            item: ocp.args.StandardRestore(jax.tree.map(_abstract, tree))
            for item, tree in targets.items()}))
    finally:
        manager.close()
    # Everything is read: only now is anything written.
    values = restored[MODEL]
    for name, var in variables:
        var.set_value(_placed(values[name], targets[MODEL][name]))
    if optimizer is not None:
        by_name = dict(named_leaves(restored[OPTIMIZER]))
        tree = targets[OPTIMIZER]
        leaves = [_placed(by_name[name], leaf) for name, leaf in named_leaves(tree)]
        nnx.replace_by_pure_dict(opt_state, jax.tree.unflatten(jax.tree.structure(tree), leaves))
        nnx.update(optimizer, opt_state)
    return int(step)
