"""Whole training checkpoints: model, optimizer, scheduler and epoch in one ``.pt``, both ways.

torchvision's reference scripts save ``{'model', 'optimizer', 'lr_scheduler', 'epoch', 'args'}``;
timm's ``{'epoch', 'arch', 'state_dict', 'optimizer', 'version', 'args', ...}``; the PyTorch
tutorial's ``{'epoch', 'model_state_dict', 'optimizer_state_dict', 'loss'}``. The model's weights
are found and loaded as :func:`equivalence.load_state_dict` does; the optimizer's state (which
holds no parameter names) is matched through the translated optimizer's groups, each a list of
torch names in torch's order.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from .. import io
from .._torch import require_torch, to_torch
from ..state_dict import load_state_dict, state_dict
from .state import (OptimizerStateError, _assign, _resolve, find_state, index_names,
                    scheduler_state_dict, state_from_torch, state_to_torch)

#: Keys under which training scripts save the optimizer's and the scheduler's state_dict.
OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "opt")
SCHEDULER_KEYS = ("lr_scheduler", "scheduler", "lr_scheduler_state_dict", "scheduler_state_dict")


def find_entry(checkpoint: Mapping, keys, what: str, path):
    """``(key, value)`` of the first of ``keys`` in ``checkpoint``; a clear error naming them and
    what it holds when none is there."""
    for key in keys:
        if key in checkpoint:
            return key, checkpoint[key]
    where = f" {path!r}" if path else ""
    raise io.CheckpointError(f"the training checkpoint{where} has no {what} under any of {list(keys)}; "
                             f"it holds {sorted(map(str, checkpoint))}", path)


def _model_names(jax_model, torch_model):
    """Torch's parameter order and a name -> parameter lookup, for groups chosen by predicate."""
    if torch_model is not None:
        params = dict(torch_model.named_parameters())
        return list(params), params.get
    from flax import nnx

    from ..state_dict import named_variables

    params = {n: v.get_value() for n, v in named_variables(jax_model) if isinstance(v, nnx.Param)}
    return list(params), params.get


def load_training_checkpoint(source, jax_model, optimizer=None, *, torch_model=None, tx=None,
                             strict: bool = True) -> dict:
    """Load a torch training checkpoint into a jaxconv model and optimizer in one call.

    The model's weights and buffers load as with :func:`equivalence.load_state_dict`; the
    optimizer's state (momentum buffers, moments, step counts, learning rates) and the
    scheduler's position load as with :func:`load_optimizer_state`. torch's optimizer state
    names no parameter: index ``i`` is the ``i``-th parameter over the groups, which the
    optimizer's groups give when they are lists of torch names (as :func:`translate_optimizer`
    makes them), else ``torch_model``'s (or the translated ``jax_model``'s) parameter order.
    Everything is checked before anything is written: on any error, model and optimizer are
    left as they were.

    Arguments:
      source: a ``.pt`` / ``.pth`` path (read with ``torch.load(weights_only=True)``; a
        checkpoint holding pickled objects, such as torchvision's ``args``, must be loaded by
        the caller with ``weights_only=False``, if trusted, and passed as a dict) or the dict.
      jax_model: the ``nnx.Module`` to load the weights into.
      optimizer: an ``nnx.Optimizer`` over ``jax_model`` (its ``tx`` the translated optimizer;
        with a scheduler attached when the checkpoint has one), or ``None`` for the model only.
      torch_model: optional; the parameter order for groups selected by a predicate.
      tx: the jaxconv optimizer where ``optimizer.tx`` chains it with other transformations.
      strict: as in :func:`equivalence.load_state_dict`.

    Returns:
      The checkpoint's other entries (``{'epoch': 7, ...}``), to resume the loop from.
    """
    path = None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        checkpoint = io._torch_load(path)
    else:
        checkpoint = source
    if not isinstance(checkpoint, Mapping):
        raise io.CheckpointError(f"a training checkpoint is a dict, got {type(checkpoint).__name__}", path)
    weights = io.unwrap(checkpoint)
    used = {k for k, v in checkpoint.items() if v is weights}
    assign = None
    if optimizer is not None:
        okey, torch_state = find_entry(checkpoint, OPTIMIZER_KEYS, "optimizer state_dict", path)
        used.add(okey)
        skey = next((k for k in SCHEDULER_KEYS if k in checkpoint), None)
        used.add(skey)  # a scheduler state with no scheduler attached is refused, as a missing one
        tx, opt_state = _resolve(optimizer, tx)
        names, leaf_of = _model_names(jax_model, torch_model)
        try:
            new = state_from_torch(tx, find_state(opt_state), torch_state,
                                   index_names(tx, names, leaf_of),
                                   checkpoint.get(skey))
        except OptimizerStateError as err:
            where = f" in {path!r}" if path else ""
            raise OptimizerStateError(f"optimizer state{where}: {err}") from None

        def assign():
            _assign(optimizer, opt_state, new)
    load_state_dict(jax_model, weights, strict=strict)  # raises before writing anything
    if assign is not None:
        assign()
    return {k: v for k, v in checkpoint.items() if k not in used}


def save_training_checkpoint(path, jax_model, optimizer, *, torch_model=None, tx=None,
                             torch_scheduler=None, **extra) -> None:
    """Write ``{'model', 'optimizer', 'lr_scheduler', 'epoch', ...}`` as torchvision's scripts
    do, for torch (``model.load_state_dict(c['model'])``, ``optimizer.load_state_dict(
    c['optimizer'])``) or :func:`load_training_checkpoint` to resume from.

    Arguments:
      path: the ``.pt`` file to write.
      jax_model: the ``nnx.Module``; its :func:`equivalence.state_dict` is ``'model'``.
      optimizer: the ``nnx.Optimizer``; :func:`optimizer_state_dict` is ``'optimizer'``.
      torch_model: optional; the parameter order for groups selected by a predicate.
      tx: the jaxconv optimizer where ``optimizer.tx`` chains it.
      torch_scheduler: where a scheduler is attached, a torch scheduler of the same kind (its
        ``state_dict()`` gives torch's keys; see :func:`scheduler_state_dict`).
      **extra: further entries (``epoch=7``), saved as given.
    """
    torch = require_torch(f"writing the training checkpoint {os.fspath(path)!r}")
    tx, opt_state = _resolve(optimizer, tx)
    names, leaf_of = _model_names(jax_model, torch_model)
    state = find_state(opt_state)
    checkpoint = {"model": {k: to_torch(v) for k, v in state_dict(jax_model).items()},
                  "optimizer": state_to_torch(tx, state, index_names(tx, names, leaf_of))}
    if tx.scheduler is not None:
        if torch_scheduler is None:
            raise TypeError("save_training_checkpoint: the optimizer has a scheduler; pass "
                            "torch_scheduler= (a torch scheduler of the same kind) for torch's format")

        checkpoint["lr_scheduler"] = scheduler_state_dict(optimizer, torch_scheduler, tx=tx)
    checkpoint.update(extra)
    torch.save(checkpoint, os.fspath(path))
