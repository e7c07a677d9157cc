"""torch's optimizer state <-> a jaxconv optimizer's :class:`~jaxconv.optim.OptimizerState`.

torch's ``optimizer.state_dict()`` keys per-parameter state by the parameter's index in group
order and names no parameter; jaxconv keeps the same state by torch's slot names in trees shaped
like the parameters. The bridge is the list of torch names of each group's parameters (from the
torch model, or from the translated optimizer's groups), so a live torch optimizer and one read
from a checkpoint go through the same conversion, :func:`state_from_torch`.

A new state is built whole and checked before anything is assigned: a state that does not fit
raises :class:`OptimizerStateError` naming the parameter (or group) and leaves the optimizer as
it was.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv.optim import Optimizer, OptimizerState
from jaxconv.optim.optimizer import (INITIAL_LR, LR, _matches, find_state, named_leaves,
                                     replace_state)

from .._torch import require_torch, to_numpy, to_torch
from .errors import OptimizerStateError, RecipeError
from .optimizer import IGNORED, OPTIMIZERS, group_names, hyperparameters, jaxconv_class


# ------------------------------------------------------------------------ finding the state
def _resolve(optimizer, tx):
    """``(tx, pure optax state)`` from an ``nnx.Optimizer`` or an optax state plus ``tx``."""
    from flax import nnx

    if isinstance(optimizer, nnx.Optimizer):
        tx = optimizer.tx if tx is None else tx
        state = nnx.as_pure(optimizer.opt_state)
    else:
        state = optimizer
    if not isinstance(tx, Optimizer):
        raise TypeError(f"tx must be the jaxconv.optim optimizer (an nnx.Optimizer's .tx, or tx= "
                        f"where it is chained with other transformations), got {type(tx).__name__}")
    return tx, state


def _assign(optimizer, opt_state, new: OptimizerState):
    """Put ``new`` in place: into an ``nnx.Optimizer`` in place, else return the new optax state."""
    from flax import nnx

    whole = replace_state(opt_state, new)
    if isinstance(optimizer, nnx.Optimizer):
        nnx.update(optimizer.opt_state, nnx.state(whole, graph=optimizer.graph))
    return whole


# ------------------------------------------------------------------------ torch -> jaxconv
def _leaves(tx: Optimizer, old: OptimizerState):
    """``[(name, group, {slot: old leaf})]`` for every parameter the state holds (empty when the
    optimizer keeps no per-parameter state)."""
    if not old.slots:
        return []
    slots = list(old.slots)
    trees = {k: named_leaves(old.slots[k]) for k in slots}
    groups = tx.group_index(old.slots[slots[0]])
    return [(name, g, {k: trees[k][j][1] for k in slots})
            for j, ((name, _), g) in enumerate(zip(trees[slots[0]], groups))]


def _check_hyper(tx: Optimizer, groups: Sequence[Mapping], torch_class) -> None:
    """The state's fixed hyperparameters must be the optimizer's: torch's ``load_state_dict``
    takes them from the state, a jaxconv optimizer has them built in. Scheduled ones (``lr``, a
    cycled momentum or ``beta1``) move with the state and are not compared."""
    if len(groups) != len(tx.groups):
        raise OptimizerStateError(f"the torch optimizer state has {len(groups)} parameter groups, "
                                  f"the jaxconv {type(tx).__name__} {len(tx.groups)}")
    scheduled = set(tx.scheduled_keys())
    for g, (theirs, ours) in enumerate(zip(groups, tx.groups)):
        try:
            values = hyperparameters(torch_class, theirs, start=False)
        except RecipeError as err:
            raise OptimizerStateError(f"group {g} of the torch optimizer state: {err}") from None
        for key, value in values.items():
            mine = ours.get(key)
            if key == LR or key in scheduled or key in IGNORED:
                continue
            if key == "betas" and "beta1" in scheduled:
                value, mine = value[1:], tuple(mine)[1:]
            if mine != value:
                raise OptimizerStateError(
                    f"group {g}: the torch optimizer state has {key}={value!r}, the jaxconv "
                    f"{type(tx).__name__} {key}={mine!r}; translate the torch optimizer again "
                    f"(translate_optimizer) to take its hyperparameters")


def _group_steps(tx, groups, entries, index_names, held) -> list[int]:
    """Each group's step: torch's per-parameter ``step`` (equal within a group), or, for
    optimizers without one (SGD), 1 where the group has state and 0 where not."""
    steps = []
    for g, names in enumerate(index_names):
        seen = {n: entries[n] for n in names if entries.get(n)}
        missing = [n for n in names if n in held and n not in seen]
        if seen and missing:
            raise OptimizerStateError(f"parameter {missing[0]!r} has no state in the torch optimizer "
                                      f"while others of group {g} do ({next(iter(seen))!r})")
        counts = {n: float(to_numpy(e["step"])) for n, e in seen.items() if "step" in e}
        if len(set(counts.values())) > 1:
            (a, x), (b, y) = sorted(counts.items(), key=lambda kv: kv[1])[::len(counts) - 1]
            raise OptimizerStateError(f"group {g} mixes step counts: {a!r} at {x:g}, {b!r} at {y:g}; "
                                      f"jaxconv steps a group's parameters together")
        steps.append(int(next(iter(counts.values()))) if counts else int(bool(seen)))
    return steps


def state_from_torch(tx: Optimizer, old: OptimizerState, torch_state: Mapping,
                     index_names: Sequence[Sequence[str]], scheduler_state=None,
                     torch_class=None, *, strict: bool = True) -> OptimizerState:
    """A new :class:`OptimizerState` holding torch's optimizer state.

    Arguments:
      tx: the jaxconv optimizer.
      old: its current state (gives the trees' shapes and dtypes; not modified).
      torch_state: ``torch_optimizer.state_dict()`` (live or read from a checkpoint).
      index_names: the torch names of each group's parameters in group order (index ``i`` of
        ``torch_state['state']`` is the ``i``-th name over all groups).
      scheduler_state: the torch scheduler's ``state_dict()``, where ``tx`` has a scheduler.
      torch_class: the torch optimizer class, to read its group keys (default: ``tx``'s).
      strict: check that the fixed hyperparameters are ``tx``'s and move the scheduler's
        position. ``False`` (the proof, which checks both itself): neither; the scheduled
        hyperparameters are torch's and the schedule stays ``old``'s.

    Raises:
      OptimizerStateError: naming the parameter or group that does not fit.
    """
    groups = list(torch_state["param_groups"])
    torch_class = torch_class or torch_optimizer_class(tx)
    if strict:
        _check_hyper(tx, groups, torch_class)
    flat = [n for names in index_names for n in names]
    for g, (group, names) in enumerate(zip(groups, index_names)):
        if len(group["params"]) != len(names):
            raise OptimizerStateError(f"group {g} of the torch optimizer state holds "
                                      f"{len(group['params'])} parameters, the model's group "
                                      f"{len(names)}: it belongs to another model")
    by_index = dict(enumerate(flat))
    entries = {}
    for index, entry in torch_state["state"].items():
        if index not in by_index:
            raise OptimizerStateError(f"the torch optimizer state holds parameter index {index}, "
                                      f"beyond the {len(flat)} parameters of its groups")
        entries[by_index[index]] = {k: v for k, v in entry.items() if v is not None}
    leaves = _leaves(tx, old)
    torch_group = {n: g for g, names in enumerate(index_names) for n in names}
    held = {name for name, _, _ in leaves}
    for name, g, _ in leaves:
        if name not in torch_group:
            raise OptimizerStateError(f"parameter {name!r} is in no group of the torch optimizer: "
                                      f"the state belongs to another model")
        if torch_group[name] != g:
            raise OptimizerStateError(f"parameter {name!r} is in group {torch_group[name]} of the "
                                      f"torch optimizer but group {g} of the jaxconv one")
    for name, entry in entries.items():
        extra = sorted(set(entry) - set(old.slots) - {"step"})
        if extra:
            raise OptimizerStateError(f"the torch state of parameter {name!r} holds {extra}, which "
                                      f"jaxconv's {type(tx).__name__} does not keep ({list(old.slots)})")
        if name not in held and old.slots:
            raise OptimizerStateError(f"the torch optimizer holds state for {name!r}, which the "
                                      f"jaxconv optimizer does not update")
    steps = _group_steps(tx, groups, entries, index_names, held)

    columns = {k: [] for k in old.slots}
    for name, g, olds in leaves:
        for k, leaf in olds.items():
            if steps[g] == 0:  # torch has not stepped this group: a fresh slot
                value = tx.init_slot(k, jnp.zeros(np.shape(leaf), leaf.dtype), tx.groups[g])
            else:
                if k not in entries[name]:
                    raise OptimizerStateError(f"the torch state of parameter {name!r} has no {k!r}")
                value = entries[name][k]
                if tuple(value.shape) != tuple(np.shape(leaf)):
                    raise OptimizerStateError(
                        f"{k} of parameter {name!r} has shape {tuple(value.shape)} in the torch "
                        f"optimizer state, {tuple(np.shape(leaf))} in the jaxconv one")
                value = to_numpy(value).astype(leaf.dtype)
            columns[k].append(jnp.asarray(value, leaf.dtype))
    slots = {k: jax.tree_util.tree_structure(old.slots[k]).unflatten(v) for k, v in columns.items()}

    hyper = {}
    for key, array in old.hyper.items():
        values = [torch_hyper(group, key) for group in groups]
        hyper[key] = jnp.asarray(values, array.dtype)
    schedule = old.schedule
    if not strict:
        pass
    elif tx.scheduler is not None:
        if scheduler_state is None:
            raise OptimizerStateError(f"the jaxconv {type(tx).__name__} has a scheduler: pass the "
                                      f"torch scheduler (or its state_dict) to move its position")
        from .scheduler import schedule_from_torch

        schedule, hyper = schedule_from_torch(tx, old, scheduler_state, hyper)
    elif scheduler_state is not None:
        raise OptimizerStateError(f"a torch scheduler was given, but the jaxconv "
                                  f"{type(tx).__name__} has none: translate_optimizer(..., "
                                  f"scheduler=) attaches it")
    return OptimizerState(jnp.asarray(steps, old.step.dtype), hyper, slots, schedule)


def torch_hyper(group: Mapping, key: str) -> float:
    """A scheduled hyperparameter's current value in a torch group."""
    if key == INITIAL_LR:
        return float(group.get(INITIAL_LR, group[LR]))
    if key == "beta1":
        return float(group["betas"][0])
    return float(group[key])


def load_optimizer_state(optimizer, torch_optimizer, torch_model, scheduler=None, *, tx=None):
    """Move ``torch_optimizer``'s state (and ``scheduler``'s position) into a jaxconv optimizer.

    Moves torch's per-parameter state (momentum buffers, ``exp_avg``, ``exp_avg_sq``,
    ``max_exp_avg_sq``, ``mu_product``, ...), each group's step count and current
    hyperparameters (``lr``, ``initial_lr``; a cycled momentum or ``beta1``) and the scheduler's
    state, so training continues where torch stopped. The whole new state is built and checked
    first: a state that does not fit raises :class:`OptimizerStateError` naming the parameter,
    and the optimizer is left as it was.

    Arguments:
      optimizer: an ``nnx.Optimizer`` whose ``tx`` is a :mod:`jaxconv.optim` optimizer (such as
        :func:`translate_optimizer`'s), updated in place; or an optax state holding an
        :class:`~jaxconv.optim.OptimizerState` (``tx.init(params)``, or a chain's), with ``tx=``.
      torch_optimizer: the ``torch.optim.Optimizer`` (of the same class and groups).
      torch_model: the torch module whose parameters it holds (gives their names).
      scheduler: the torch scheduler stepping ``torch_optimizer``, where ``tx`` has one.
      tx: the jaxconv optimizer, where ``optimizer.tx`` is a chain around it or ``optimizer`` is
        a state.

    Returns:
      The new optax state (also put into ``optimizer`` when it is an ``nnx.Optimizer``).
    """
    tx, opt_state = _resolve(optimizer, tx)
    try:
        names = group_names(torch_optimizer, torch_model)
    except RecipeError as err:
        raise OptimizerStateError(str(err)) from None
    cls, _ = jaxconv_class(torch_optimizer)
    if type(tx) is not cls:
        raise OptimizerStateError(f"the torch optimizer is a {type(torch_optimizer).__name__}, the "
                                  f"jaxconv one a {type(tx).__name__}")
    new = state_from_torch(tx, find_state(opt_state), torch_optimizer.state_dict(), names,
                           None if scheduler is None else scheduler.state_dict(),
                           type(torch_optimizer))
    return _assign(optimizer, opt_state, new)


# ------------------------------------------------------------------------ jaxconv -> torch
def torch_optimizer_class(tx: Optimizer):
    """The ``torch.optim`` class a jaxconv optimizer translates."""
    torch = require_torch("converting an optimizer state to torch's format")
    for torch_name, spec in OPTIMIZERS.items():
        if spec.name == type(tx).__name__ and hasattr(torch.optim, torch_name):
            return getattr(torch.optim, torch_name)
    raise RecipeError(f"jaxconv.optim.{type(tx).__name__} has no torch.optim counterpart in "
                      f"equivalence.training.OPTIMIZERS")


def _torch_template(tx: Optimizer, group: Mapping):
    """A one-parameter torch optimizer with ``group``'s hyperparameters, stepped once: its group
    gives torch's keys and defaults, its state torch's per-parameter keys and ``step`` dtype."""
    torch = require_torch("converting an optimizer state to torch's format")
    cls = torch_optimizer_class(tx)
    rename = {v: k for k, v in OPTIMIZERS[cls.__name__].rename.items()}
    kwargs = {rename.get(k, k): v for k, v in group.items() if k != "params"}
    kwargs = {k: v for k, v in kwargs.items() if k not in OPTIMIZERS[cls.__name__].implied}
    p = torch.nn.Parameter(torch.zeros(1))
    p.grad = torch.zeros(1)
    template = cls([p], **kwargs)
    template.step()
    return template.param_groups[0], template.state[p]


def index_names(tx: Optimizer, torch_names: Sequence[str], leaf_of=None) -> list[list[str]]:
    """The torch names of each of ``tx``'s groups in torch's group order: a group's list of names
    as it is, a predicate's (or ``params=None``'s) selection in ``torch_names`` order."""
    out = []
    for group in tx.groups:
        selector = group["params"]
        if not callable(selector) and not isinstance(selector, str):
            out.append(list(selector))
        else:
            out.append([n for n in torch_names
                        if _matches(selector, n, None if leaf_of is None else leaf_of(n))])
    return out


def state_to_torch(tx: Optimizer, state: OptimizerState, names: Sequence[Sequence[str]]) -> dict:
    """``state`` in torch's ``optimizer.state_dict()`` format (see :func:`optimizer_state_dict`)."""
    torch = require_torch("converting an optimizer state to torch's format")
    values = {k: dict(named_leaves(tree)) for k, tree in state.slots.items()}
    held = set(next(iter(values.values()))) if values else set()
    param_groups, torch_state, index = [], {}, 0
    for g, (group, listed) in enumerate(zip(tx.groups, names)):
        static = {k: v for k, v in group.items() if k != "params"}
        template, per_param = _torch_template(tx, static)
        out = {k: v for k, v in template.items() if k != "params"}
        for key, array in state.hyper.items():
            value = float(np.asarray(array[g]))
            if key == "beta1":
                out["betas"] = (value, out["betas"][1])
            elif key != INITIAL_LR or tx.scheduler is not None:
                out[key] = value
        step = int(np.asarray(state.step[g]))
        out["params"] = list(range(index, index + len(listed)))
        for name in listed:
            if step == 0 or not per_param or (values and name not in held):
                index += 1
                continue
            entry = {}
            for key, like in per_param.items():
                if key == "step":
                    entry[key] = torch.tensor(float(step), dtype=like.dtype)
                elif key in values:
                    entry[key] = to_torch(np.array(values[key][name]))
                else:
                    raise RecipeError(f"torch's {type(tx).__name__} keeps {key!r} per parameter, "
                                      f"jaxconv's keeps {list(state.slots)}")
            torch_state[index] = entry
            index += 1
        param_groups.append(out)
    return {"state": torch_state, "param_groups": param_groups}


def optimizer_state_dict(optimizer, torch_model=None, *, tx=None) -> dict:
    """A jaxconv optimizer's state in torch's ``optimizer.state_dict()`` format.

    ``state`` is keyed by each parameter's index in group order (torch names from the
    optimizer's groups, or ``torch_model.named_parameters()`` order for a group selected by a
    predicate), with torch's per-parameter keys and dtypes (``step`` a float32 0-d tensor);
    ``param_groups`` has every key torch's optimizer of that class has, with the current
    learning rate (and ``initial_lr`` where a scheduler is attached). A torch optimizer built
    with the same groups accepts it with ``load_state_dict`` and continues where jaxconv stopped.

    Arguments:
      optimizer: an ``nnx.Optimizer`` (or an optax state holding an ``OptimizerState``, with ``tx=``).
      torch_model: the torch module (its ``named_parameters()`` order); needed only where a group is selected by a predicate or holds every parameter.
      tx: the jaxconv optimizer, where ``optimizer`` does not carry it.
    """
    tx, opt_state = _resolve(optimizer, tx)
    if torch_model is None and any(callable(g["params"]) for g in tx.groups):
        raise TypeError("optimizer_state_dict needs torch_model: a group of the jaxconv optimizer "
                        "selects its parameters by a predicate, and torch's order is the model's")
    params = dict(torch_model.named_parameters()) if torch_model is not None else {}
    return state_to_torch(tx, find_state(opt_state), index_names(tx, list(params), params.get))


def scheduler_state_dict(optimizer, torch_scheduler, *, tx=None) -> dict:
    """The jaxconv scheduler's position in ``torch_scheduler.state_dict()``'s format.

    ``torch_scheduler`` (built on a torch optimizer with the same groups) gives torch's keys and
    constant entries; its position (``last_epoch``, ``_step_count``, ``_last_lr``, ``base_lrs``
    and ``ReduceLROnPlateau``'s ``best``, ``num_bad_epochs``, ``cooldown_counter``) is jaxconv's.
    """
    from .scheduler import _fields

    tx, opt_state = _resolve(optimizer, tx)
    state = find_state(opt_state)
    out = dict(torch_scheduler.state_dict())
    for key, value in _fields(state.schedule).items():
        if key in out and not isinstance(out[key], (Mapping, list, tuple, str)):
            out[key] = type(out[key])(np.asarray(value)) if out[key] is not None else value
    lrs = [float(x) for x in np.asarray(state.hyper["lr"])]
    out["_last_lr"] = lrs
    if "base_lrs" in out:
        out["base_lrs"] = [float(x) for x in np.asarray(state.hyper["initial_lr"])]
    if "_step_count" in out and "last_epoch" in out:
        out["_step_count"] = int(out["last_epoch"]) + 1
    return out
