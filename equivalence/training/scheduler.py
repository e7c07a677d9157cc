"""A torch learning-rate scheduler -> its :mod:`jaxconv.optim.lr_scheduler` rule, and its position.

The rule is built with the constructor of torch's name in :mod:`jaxconv.optim.lr_scheduler`
(``StepLR(optimizer, step_size, gamma)`` returns the optimizer with the rule attached), its
arguments read back from the torch scheduler: by default the attributes named as the
constructor's arguments; :data:`ARGUMENTS` holds the schedulers that keep them otherwise.

The position: a rule's state after torch's ``last_epoch`` steps is the state its ``step`` reaches
from ``init`` in as many steps (the schedules are functions of the step count), then the state's
fields named as torch's (``best``, ``num_bad_epochs``, ``cooldown_counter``, ``last_epoch``) are
set from torch's ``state_dict()``, and the learning rates are torch's current ones exactly.
``ReduceLROnPlateau``'s position depends on the metrics seen and is taken from those fields only.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from .errors import RecipeError


def _lambdas(s):
    fns = list(s.lr_lambdas)
    if any(f is None for f in fns):
        raise RecipeError(f"{type(s).__name__}: lr_lambda must be a function to translate")
    return {"lr_lambda": fns[0] if len(set(map(id, fns))) == 1 else fns}


def _one(values):
    values = list(values)
    return values[0] if len(set(values)) == 1 else values


def _cyclic(s):
    up = round(s.total_size * s.step_ratio)
    return {"base_lr": _one(s.base_lrs), "max_lr": _one(s.max_lrs), "step_size_up": up,
            "step_size_down": round(s.total_size) - up, "mode": s.mode, "gamma": s.gamma,
            "scale_fn": s._scale_fn_custom, "scale_mode": s.scale_mode,
            "cycle_momentum": s.cycle_momentum,
            **({"base_momentum": _one(s.base_momentums), "max_momentum": _one(s.max_momentums)}
               if s.cycle_momentum else {})}


def _one_cycle(s):
    groups = s.optimizer.param_groups
    g = groups[0]
    phases = s._schedule_phases
    out = {"max_lr": _one(x["max_lr"] for x in groups), "total_steps": s.total_steps,
           "pct_start": (phases[0]["end_step"] + 1) / s.total_steps,
           "anneal_strategy": s._anneal_func_type, "cycle_momentum": s.cycle_momentum,
           "div_factor": g["max_lr"] / g["initial_lr"], "final_div_factor": g["initial_lr"] / g["min_lr"],
           "three_phase": len(phases) == 3}
    if s.cycle_momentum:
        out.update(base_momentum=_one(x["base_momentum"] for x in groups),
                   max_momentum=_one(x["max_momentum"] for x in groups))
    return out


def _plateau(s):
    return {"mode": s.mode, "factor": s.factor, "patience": s.patience, "threshold": s.threshold,
            "threshold_mode": s.threshold_mode, "cooldown": s.cooldown, "min_lr": _one(s.min_lrs),
            "eps": s.eps}


#: torch scheduler class name -> its constructor arguments read from an instance, where the
#: attributes are not named as the arguments.
ARGUMENTS: dict[str, Callable] = {
    "LambdaLR": _lambdas,
    "MultiplicativeLR": _lambdas,
    "MultiStepLR": lambda s: {"milestones": sorted(s.milestones.elements()), "gamma": s.gamma},
    "CyclicLR": _cyclic,
    "OneCycleLR": _one_cycle,
    "ReduceLROnPlateau": _plateau,
}
#: Schedulers composed of others, translated child by child.
COMPOSITE = ("SequentialLR", "ChainedScheduler")
_SKIP = ("self", "optimizer", "last_epoch", "verbose")


def _constructor(scheduler):
    try:
        from jaxconv.optim import lr_scheduler
    except ImportError:
        lr_scheduler = None
    name = type(scheduler).__name__
    made = getattr(lr_scheduler, name, None) if lr_scheduler is not None else None
    if made is None:
        raise RecipeError(f"torch scheduler {type(scheduler).__module__}.{name} has no jaxconv "
                          f"translation (jaxconv.optim.lr_scheduler has no {name})")
    return made


def scheduler_arguments(scheduler) -> dict:
    """The constructor arguments of a torch scheduler, read back from the instance."""
    import inspect

    name = type(scheduler).__name__
    if name in ARGUMENTS:
        return ARGUMENTS[name](scheduler)
    out = {}
    for arg in inspect.signature(type(scheduler).__init__).parameters:
        if arg in _SKIP:
            continue
        if not hasattr(scheduler, arg):
            raise RecipeError(f"torch scheduler {name}: cannot read its argument {arg!r} back "
                              f"(add it to equivalence.training.scheduler.ARGUMENTS)")
        out[arg] = getattr(scheduler, arg)
    return out


def translate_scheduler(scheduler, optimizer):
    """``optimizer`` (a :mod:`jaxconv.optim` optimizer) with torch ``scheduler``'s rule attached,
    as from its construction (step 0).

    Arguments:
      scheduler: a torch ``LRScheduler`` or ``ReduceLROnPlateau`` (``SequentialLR`` and
        ``ChainedScheduler`` are translated child by child).
      optimizer: the translated optimizer it schedules.

    Raises:
      RecipeError: the scheduler (or a child of it) has no translation.
    """
    name = type(scheduler).__name__
    make = _constructor(scheduler)
    if name == "SequentialLR":
        children = [translate_scheduler(s, optimizer) for s in scheduler._schedulers]
        return make(optimizer, children, list(scheduler._milestones))
    if name == "ChainedScheduler":
        children = [translate_scheduler(s, optimizer) for s in scheduler._schedulers]
        return make(children, optimizer)
    return make(optimizer, **scheduler_arguments(scheduler))


# ------------------------------------------------------------------------ the position
def _fields(state):
    """``name -> value`` of a rule state's named fields (a NamedTuple or a dict), else ``{}``."""
    if isinstance(state, Mapping):
        return dict(state)
    if hasattr(state, "_asdict"):
        return state._asdict()
    return {}


def _with_fields(state, values: Mapping):
    if isinstance(state, Mapping):
        return type(state)({**state, **values})
    return state._replace(**values)


def _named_from_torch(state, torch_state: Mapping):
    """``state`` with the fields torch's ``state_dict`` also names set from it."""
    own = _fields(state)
    new = {}
    for key, old in own.items():
        if key in torch_state and not isinstance(torch_state[key], (Mapping, list, tuple, str)):
            value = torch_state[key]
            if value is None:
                continue
            new[key] = jnp.asarray(value, jnp.asarray(old).dtype).reshape(np.shape(old))
    return _with_fields(state, new) if new else state


def schedule_from_torch(tx, old, scheduler_state: Mapping, hyper):
    """``(schedule state, hyper)`` at the torch scheduler's position (its ``state_dict()``).

    ``hyper`` holds the optimizer's current per-group values from torch's groups, which stay.
    """
    rule = tx.scheduler
    steps = int(scheduler_state.get("last_epoch", 0))
    start = dict(hyper, lr=hyper["initial_lr"])
    carry = rule.init(start, tx.momentum_key)
    if "best" not in scheduler_state and steps > 0:  # plateau: the metrics' history is not kept
        carry = jax.lax.fori_loop(0, steps, lambda _, c: rule.step(*c), carry)
    state = carry[0]
    state = _named_from_torch(state, scheduler_state)
    if jax.tree_util.tree_structure(state) != jax.tree_util.tree_structure(old.schedule):
        raise RecipeError(f"the torch scheduler's state does not fit the jaxconv "
                          f"{type(rule).__name__}'s")
    return state, hyper
