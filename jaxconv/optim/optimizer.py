"""The base of torch's optimizers as optax transformations: groups, state, scheduling.

A torch optimizer here is an object with optax's ``init`` / ``update`` (extra arguments
accepted, so ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and ``optax.chain`` take it). A
subclass writes torch's per-parameter update once, in :meth:`Optimizer.step_leaf`, in torch's
order; this base owns what every optimizer shares:

* **parameter groups**, selected by torch parameter names (``layer1.0.conv1.weight``), each with
  its own hyperparameters, as torch's ``param_groups``;
* **the state**, :class:`OptimizerState`, holding torch's per-parameter state under torch's
  names (``momentum_buffer``, ``exp_avg``, ...), so it converts to and from
  ``torch_optimizer.state_dict()`` by name;
* **scheduling**: the hyperparameters a scheduler moves (``lr`` always, a cycled momentum or
  ``beta1`` where one is attached) live in the state as per-group arrays; the others stay Python
  floats, so constants such as ``1 - beta2`` are computed in float64 and rounded once, as torch
  does. The scheduler steps after each update, as torch's ``scheduler.step()`` after
  ``optimizer.step()``.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ._lr_compose import ChainedRule
from ._lr_rules import INITIAL_LR, LR


class OptimizerState(NamedTuple):
    """An optimizer's state: torch's per-parameter state by name, per-group steps and schedule.

    Attributes:
      step: ``(G,)`` int32, updates taken by each of the ``G`` groups (torch's per-parameter
        ``step``; every parameter of a group steps together).
      hyper: per-group hyperparameters a scheduler moves, name -> ``(G,)`` array: ``lr`` and
        ``initial_lr`` always, ``momentum`` / ``beta1`` when a scheduler cycles them.
      slots: torch's per-parameter state, torch's name -> a tree shaped like the parameters
        (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ...).
      schedule: the attached scheduler's own state (``()`` without one).
    """

    step: jax.Array
    hyper: dict[str, jax.Array]
    slots: dict[str, Any]
    schedule: Any


class Hyper(dict):
    """A group's hyperparameters for one update; ``.static`` holds the constructor's Python
    values, on which torch's branches (``if momentum != 0``) are decided, and ``.scheduled`` the
    names a scheduler moves (``'lr'``, ``'momentum'``, ``'betas'``), whose values are arrays."""

    static: dict[str, Any]
    scheduled: frozenset[str]


def _is_state(x) -> bool:
    return isinstance(x, OptimizerState)


def find_state(opt_state) -> OptimizerState:
    """The one :class:`OptimizerState` in an optax state: itself, inside an ``optax.chain``'s
    state, or in ``nnx.Optimizer.opt_state`` (its arrays then wrapped in nnx variables)."""
    found = [x for x in jax.tree_util.tree_leaves(opt_state, is_leaf=_is_state) if _is_state(x)]
    if len(found) != 1:
        raise TypeError(f"expected one jaxconv.optim OptimizerState inside the optimizer state, "
                        f"found {len(found)} (in a {type(opt_state).__name__})")
    return found[0]


def replace_state(opt_state, new: OptimizerState):
    """``opt_state`` with its :class:`OptimizerState` replaced by ``new``."""
    leaves, treedef = jax.tree_util.tree_flatten(opt_state, is_leaf=_is_state)
    return treedef.unflatten([new if _is_state(x) else x for x in leaves])


def _key_name(key) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def param_name(path) -> str:
    """The torch name of a parameter from its pytree path (``nnx.Variable``'s ``value`` dropped)."""
    names = [_key_name(k) for k in path]
    if names and names[-1] == "value" and type(path[-1]).__name__ == "GetAttrKey":
        names = names[:-1]
    return ".".join(names)


def named_leaves(tree) -> list[tuple[str, Any]]:
    """``(torch name, leaf)`` for every array of a parameter tree, in the tree's order."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(param_name(path), leaf) for path, leaf in leaves]


def _matches(selector, name: str, leaf) -> bool:
    if callable(selector):
        return bool(selector(name, leaf))
    if isinstance(selector, str):
        raise TypeError(f"a parameter group's 'params' must be a list of torch parameter names or a "
                        f"predicate (name, param) -> bool, got the string {selector!r}; wrap one "
                        f"name in a list")
    return name in selector


def _entry(values: jax.Array, i: int) -> jax.Array:
    """Entry ``i`` of a per-group array, by one slice (eager indexing costs ~1 ms a call)."""
    return jax.lax.index_in_dim(values, i, keepdims=False)


class Optimizer(optax.GradientTransformationExtraArgs):
    """A torch optimizer as an optax transformation (``init`` / ``update``).

    It is an ``optax.GradientTransformationExtraArgs``, so ``optax.chain`` passes extra
    arguments (``value=loss`` for ``ReduceLROnPlateau``) through to it.

    Arguments:
      params: ``None`` (one group holding every parameter), or torch's list of group dicts. A
        group's ``'params'`` is a list of torch parameter names (``'fc.bias'``) or a predicate
        ``(name, param) -> bool``; its other keys override the defaults for that group. Every
        parameter must fall into exactly one group, as in torch.
      **defaults: the optimizer's hyperparameters (torch's constructor arguments).
    """

    #: torch's per-parameter state names this optimizer keeps, in torch's order.
    slots: tuple[str, ...] = ()
    #: the hyperparameter a momentum-cycling scheduler moves (``'momentum'`` or ``'beta1'``).
    momentum_key: str | None = None

    def __new__(cls, *args, **kwargs):
        # optax unpacks a transformation as the tuple (init, update): its two fields call this
        # object's methods, through a cell so that copies (with_scheduler) call their own.
        del args, kwargs
        cell = []
        self = super().__new__(cls, lambda *a, **k: cell[0].init(*a, **k),
                               lambda *a, **k: cell[0].update(*a, **k))
        cell.append(self)
        return self

    def __getnewargs__(self):
        return ()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({args})"

    def __init__(self, params=None, **defaults):
        self.defaults = dict(defaults)
        self._check(self.defaults, "")
        self.groups = self._groups(params)
        self.scheduler = None

    # ----------------------------------------------------------------- construction
    def _check(self, hyper: Mapping[str, Any], where: str) -> None:
        """Validate hyperparameters with torch's rules; ``where`` names the group in messages.

        torch's implementation flags: ``foreach`` and ``fused`` pick a kernel, not a result, and
        are accepted and ignored (``fused`` and ``foreach`` both true is refused, as torch does);
        ``differentiable=True`` is refused."""
        name = type(self).__name__
        lr = hyper.get(LR, 0.0)
        if isinstance(lr, (int, float)) and lr < 0:
            raise ValueError(f"{name}: lr{where} must be >= 0, got {lr}")
        if hyper.get("differentiable"):
            raise ValueError(f"{name}: differentiable{where}=True (torch's autograd through "
                             f"optimizer.step) has no translation; the update here is plain jnp, "
                             f"which jax.grad differentiates without it: pass differentiable=False")
        if hyper.get("fused") and hyper.get("foreach"):
            raise ValueError(f"{name}: fused{where} and foreach cannot both be True (torch refuses "
                             f"it), got fused={hyper['fused']}, foreach={hyper['foreach']}")

    def _groups(self, params) -> list[dict[str, Any]]:
        if params is None:
            return [dict(self.defaults, params=lambda name, leaf: True)]
        if not isinstance(params, Sequence) or not all(isinstance(g, Mapping) for g in params):
            raise TypeError(f"{type(self).__name__}: params must be None or a list of group dicts "
                            f"with a 'params' entry, got {type(params).__name__}")
        groups = []
        for i, group in enumerate(params):
            if "params" not in group:
                raise ValueError(f"{type(self).__name__}: parameter group {i} has no 'params' entry")
            unknown = sorted(set(group) - set(self.defaults) - {"params"})
            if unknown:
                raise ValueError(f"{type(self).__name__}: parameter group {i} sets {unknown}, which "
                                 f"is not an argument of {type(self).__name__} "
                                 f"(one of {sorted(self.defaults)})")
            merged = dict(self.defaults, **group)
            self._check(merged, f" of parameter group {i}")
            groups.append(merged)
        return groups

    def group_index(self, params) -> list[int]:
        """The group of every leaf of ``params``, in leaf order; raises unless exactly one matches,
        or for a complex-valued leaf (torch updates its real view; not translated)."""
        index = []
        for name, leaf in named_leaves(params):
            if jnp.iscomplexobj(leaf):
                raise ValueError(f"{type(self).__name__}: parameter {name!r} is complex "
                                 f"({leaf.dtype}); torch's optimizers update complex parameters "
                                 f"through their real view, which is not translated: optimize "
                                 f"the real and imaginary parts as real parameters")
            hits = [i for i, g in enumerate(self.groups) if _matches(g["params"], name, leaf)]
            if len(hits) != 1:
                rule = "no parameter group" if not hits else f"parameter groups {hits}"
                raise ValueError(f"{type(self).__name__}: parameter {name!r} is selected by {rule}; "
                                 f"every parameter must be in exactly one group, as in torch")
            index.append(hits[0])
        return index

    def with_scheduler(self, scheduler) -> Optimizer:
        """A copy of this optimizer whose hyperparameters follow ``scheduler`` (a rule from
        :mod:`jaxconv.optim.lr_scheduler`); a second scheduler chains after the first, as two
        torch schedulers stepped on one optimizer."""
        out = copy.copy(self)
        if self.scheduler is not None:
            scheduler = ChainedRule([self.scheduler, scheduler])
        out.scheduler = scheduler
        return out

    # ----------------------------------------------------------------- optax protocol
    def scheduled_keys(self) -> tuple[str, ...]:
        """The hyperparameters carried in the state as per-group arrays."""
        keys = [LR, INITIAL_LR]
        if self.scheduler is not None and getattr(self.scheduler, "cycles_momentum", False):
            if self.momentum_key is None:
                raise ValueError(f"{type(self).__name__} has no momentum or beta1 for "
                                 f"cycle_momentum=True to cycle; pass cycle_momentum=False")
            keys.append(self.momentum_key)
        return tuple(keys)

    def _initial_hyper(self) -> dict[str, jax.Array]:
        hyper = {}
        for key in self.scheduled_keys():
            source = LR if key == INITIAL_LR else key
            hyper[key] = jnp.asarray([float(self._hyper_value(g, source)) for g in self.groups],
                                     dtype=jnp.result_type(float))
        return hyper

    @staticmethod
    def _hyper_value(group, key):
        return group["betas"][0] if key == "beta1" else group[key]

    def init(self, params) -> OptimizerState:
        """The state before the first update: torch's freshly built optimizer (and scheduler)."""
        groups = self.group_index(params)
        leaves, treedef = jax.tree_util.tree_flatten(params)
        slots = {}
        for name in self.slot_names():
            made = [self.init_slot(name, leaf, self.groups[g]) for leaf, g in zip(leaves, groups)]
            slots[name] = jax.tree_util.tree_unflatten(treedef, made)
        hyper, schedule = self._initial_hyper(), ()
        if self.scheduler is not None:
            schedule, hyper = self.scheduler.init(hyper, self.momentum_key)
        return OptimizerState(jnp.zeros(len(self.groups), jnp.int32), hyper, slots, schedule)

    def update(self, updates, state: OptimizerState, params=None, *, value=None, **extra):
        """One ``optimizer.step()`` (then ``scheduler.step()``) on the gradients ``updates``.

        Arguments:
          updates: the gradients, a tree shaped like the parameters.
          state: the :class:`OptimizerState` from :meth:`init` or the last update.
          params: the parameters (required: torch's updates read them for weight decay).
          value: the loss, for ``ReduceLROnPlateau``; ignored otherwise.

        Returns:
          ``(updates, state)``: the additive parameter updates and the new state.
        """
        del extra
        if params is None:
            raise ValueError(f"{type(self).__name__}.update needs params (weight decay and torch's "
                             f"update read them); nnx.Optimizer passes them")
        groups = self.group_index(updates)
        step = state.step + 1
        grads, treedef = jax.tree_util.tree_flatten(updates)
        leaves = treedef.flatten_up_to(params)
        slots = {k: treedef.flatten_up_to(v) for k, v in state.slots.items()}
        hypers = [self._group_hyper(g, state.hyper, i) for i, g in enumerate(self.groups)]
        steps = [_entry(step, i) for i in range(len(self.groups))]
        out, new_slots = [], {k: [] for k in slots}
        for j, (grad, param, g) in enumerate(zip(grads, leaves, groups)):
            mine = {k: v[j] for k, v in slots.items()}
            new_param, mine = self.step_leaf(grad, param, mine, hypers[g], steps[g])
            out.append((new_param - param).astype(param.dtype) if new_param is not None else None)
            for k, column in new_slots.items():
                column.append(mine[k])
        new_state = OptimizerState(step, state.hyper,
                                   {k: treedef.unflatten(v) for k, v in new_slots.items()},
                                   state.schedule)
        if self.scheduler is not None:
            schedule, hyper = self.scheduler.step(state.schedule, state.hyper, value)
            new_state = new_state._replace(hyper=hyper, schedule=schedule)
        return treedef.unflatten(out), new_state

    def _group_hyper(self, group, hyper, i) -> Hyper:
        """One group's hyperparameters for an update: Python floats, scheduled ones as arrays."""
        static = {k: v for k, v in group.items() if k != "params"}
        merged = Hyper(static)
        merged.static = static
        for key, values in hyper.items():
            if key == "beta1":
                merged["betas"] = (_entry(values, i), static["betas"][1])
            else:
                merged[key] = _entry(values, i)
        merged.scheduled = frozenset("betas" if k == "beta1" else k for k in hyper)
        return merged

    # ----------------------------------------------------------------- per optimizer
    def slot_names(self) -> tuple[str, ...]:
        """The per-parameter state kept: the names of :attr:`slots` some group uses."""
        return tuple(n for n in self.slots if any(self.uses_slot(n, g) for g in self.groups))

    def uses_slot(self, name: str, group) -> bool:
        """Whether torch keeps per-parameter state ``name`` for a group (e.g. a momentum buffer
        only with momentum); a slot some group uses is kept for every parameter."""
        return True

    def init_slot(self, name: str, param, group) -> jax.Array:
        """torch's initial value of per-parameter state ``name`` (zeros unless overridden)."""
        return jnp.zeros_like(param)

    def step_leaf(self, grad, param, slots: dict, hyper: dict, step):
        """torch's update of one parameter, in torch's order.

        Arguments:
          grad: the parameter's gradient.
          param: the parameter before the update.
          slots: its per-parameter state by torch's name.
          hyper: its group's hyperparameters, a :class:`Hyper` (``lr`` and a cycled momentum or
            ``beta1`` are scalar arrays, the rest Python floats; branch on ``hyper.static``).
          step: the group's step count after this update's increment (1 on the first update).

        Returns:
          ``(new_param, new_slots)``.
        """
        raise NotImplementedError
