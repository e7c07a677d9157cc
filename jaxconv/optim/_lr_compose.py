"""Compositions of scheduler rules (``ChainedScheduler``, ``SequentialLR``) and
``ReduceLROnPlateau``, the rule driven by a metric instead of the step."""
from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ._lr_rules import INITIAL_LR, LR, Rule, _int, per_group, with_lr


def check_sequence(rules: Sequence[Rule], arg: str, rule: str) -> tuple[Rule, ...]:
    """``rules`` as a tuple of rules, refusing ReduceLROnPlateau (its step needs the metric)."""
    rules = tuple(rules)
    if not rules:
        raise ValueError(f"{rule}: {arg} must hold at least one scheduler, got none")
    for i, r in enumerate(rules):
        if not isinstance(r, Rule):
            raise TypeError(f"{rule}: {arg}[{i}] must be a scheduler rule, got {type(r).__name__}")
        if not r.sets_initial_lr:
            raise ValueError(f"{rule} does not support ReduceLROnPlateau (its step needs the "
                             f"metric), got one at {arg}[{i}]; attach it to the optimizer after")
    return rules


class ChainedRule(Rule):
    """Several rules stepped one after the other on the same hyperparameters: torch's
    ``ChainedScheduler``, and what two schedulers attached to one optimizer do (each built, then
    each stepped, in order). The state is the tuple of the rules' states."""

    name = "ChainedScheduler"
    restartable = False          # torch: ChainedScheduler has no get_lr for _update_lr(0)

    def __init__(self, rules):
        self.rules = tuple(rules)
        if not self.rules:
            raise ValueError(f"{self.name}: rules must hold at least one scheduler, got none")
        for i, r in enumerate(self.rules):
            if not isinstance(r, Rule):
                raise TypeError(f"{self.name}: rules[{i}] must be a scheduler rule, got "
                                f"{type(r).__name__}")

    @property
    def cycles_momentum(self):
        return any(r.cycles_momentum for r in self.rules)

    @property
    def sets_initial_lr(self):
        return any(r.sets_initial_lr for r in self.rules)

    def _init(self, hyper, momentum_key, fresh):
        states = []
        for r in self.rules:                 # torch: each constructed on the optimizer in turn
            state, hyper = r._init(hyper, momentum_key, fresh)
            fresh = fresh and not r.sets_initial_lr
            states.append(state)
        return tuple(states), hyper

    def initial_step(self, state, hyper):
        """torch's ``_initial_step`` of a ChainedScheduler is a plain ``step()`` of each."""
        return self.step(state, hyper)

    def step(self, state, hyper, value=None):
        states = []
        for r, s in zip(self.rules, state):
            s, hyper = r.step(s, hyper, value)
            states.append(s)
        return tuple(states), hyper

    def undo(self, state):
        return tuple(r.undo(s) for r, s in zip(self.rules, state))


class SequentialRule(Rule):
    """torch's ``SequentialLR``: ``rules[i]`` steps between ``milestones[i-1]`` and
    ``milestones[i]``; at a milestone the next rule restarts at its epoch 0 (torch's
    ``_update_lr(0)``: its closed form where torch has one). Construction builds every rule in
    turn, resets ``lr`` to ``initial_lr``, undoes their initial steps and redoes the first's."""

    name = "SequentialLR"
    restartable = False          # torch: SequentialLR has no get_lr for _update_lr(0)

    def __init__(self, rules, milestones):
        self.rules = check_sequence(rules, "schedulers", self.name)
        self.milestones = [_int(m, "milestones", self.name, -2**31) for m in milestones]
        if len(self.milestones) != len(self.rules) - 1:
            raise ValueError(f"{self.name}: milestones must have one entry fewer than schedulers "
                             f"({len(self.rules)} schedulers), got {len(self.milestones)} "
                             f"milestones {self.milestones}")
        if self.milestones != sorted(self.milestones):
            raise ValueError(f"{self.name}: milestones must be non-decreasing, got {self.milestones}")
        for i, r in enumerate(self.rules[1:], 1):
            if not r.restartable:
                raise ValueError(f"{self.name}: schedulers[{i}] is a {r.name}, which torch cannot "
                                 f"restart at a milestone (its _update_lr(0) raises "
                                 f"NotImplementedError); only single schedulers can follow one")

    @property
    def cycles_momentum(self):
        return any(r.cycles_momentum for r in self.rules)

    def _init(self, hyper, momentum_key, fresh):
        states = []
        for r in self.rules:
            state, hyper = r._init(hyper, momentum_key, fresh)
            fresh = False
            states.append(state)
        hyper = dict(hyper, **{LR: hyper[INITIAL_LR]})
        states = [r.undo(s) for r, s in zip(self.rules, states)]
        idx = bisect_right(self.milestones, 0)
        states[idx], hyper = self.rules[idx].initial_step(states[idx], hyper)
        return {"last_epoch": jnp.asarray(0, jnp.int32), "schedulers": tuple(states)}, hyper

    def initial_step(self, state, hyper):
        """torch's ``_initial_step`` of a SequentialLR is its own ``step()``."""
        return self.step(state, hyper)

    def undo(self, state):
        states = tuple(r.undo(s) for r, s in zip(self.rules, state["schedulers"]))
        return dict(state, schedulers=states)

    def step(self, state, hyper, value=None):
        e = state["last_epoch"] + 1
        idx = sum((e >= m).astype(jnp.int32) for m in self.milestones) if self.milestones else 0
        at_milestone = jnp.zeros((), bool)
        for i, m in enumerate(self.milestones):
            at_milestone = at_milestone | ((idx == i + 1) & (e == m))

        def branch(i, restart):
            def run(operand):
                states, hyper = operand
                rule = self.rules[i]
                s, hyper = rule.restart(states[i], hyper) if restart else rule.step(states[i], hyper)
                return states[:i] + (s,) + states[i + 1:], hyper
            return run

        branches = [branch(i, restart and i > 0) for i in range(len(self.rules))
                    for restart in (False, True)]
        index = 2 * jnp.asarray(idx, jnp.int32) + at_milestone.astype(jnp.int32)
        states, hyper = jax.lax.switch(index, branches, (state["schedulers"], hyper))
        return {"last_epoch": e, "schedulers": states}, hyper


class ReduceLROnPlateauRule(Rule):
    """torch's ``ReduceLROnPlateau``: ``lr = max(lr * factor, min_lr)`` when the metric (passed as
    ``value`` to ``step``, i.e. ``optimizer.update(..., value=loss)``) has not improved for more
    than ``patience`` steps; then ``cooldown`` steps ignore bad ones. State by torch's names:
    ``best``, ``num_bad_epochs``, ``cooldown_counter``, ``last_epoch``, ``min_lrs``."""

    name = "ReduceLROnPlateau"
    sets_initial_lr = False      # torch's constructor does not call LRScheduler.__init__
    restartable = False

    def __init__(self, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr=0.0, eps: float = 1e-8):
        if factor >= 1.0:
            raise ValueError(f"{self.name}: factor must be < 1.0, got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"{self.name}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{self.name}: threshold_mode must be 'rel' or 'abs', got "
                             f"{threshold_mode!r}")
        self.mode, self.factor, self.threshold, self.threshold_mode = mode, float(factor), \
            float(threshold), threshold_mode
        self.patience = _int(patience, "patience", self.name)
        self.cooldown = _int(cooldown, "cooldown", self.name)
        self.min_lr, self.eps = min_lr, float(eps)

    def _init(self, hyper, momentum_key, fresh):
        dtype = hyper[LR].dtype
        min_lrs = per_group(self.min_lr, "min_lr", self.name, hyper[LR].shape[0])
        zero = jnp.asarray(0, jnp.int32)
        worse = math.inf if self.mode == "min" else -math.inf
        return {"last_epoch": zero, "best": jnp.asarray(worse, dtype), "num_bad_epochs": zero,
                "cooldown_counter": zero, "min_lrs": jnp.asarray(min_lrs, dtype)}, hyper

    def _is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, state, hyper, value=None):
        if value is None:
            raise ValueError(f"{self.name} needs the metric at every step: call "
                             f"optimizer.update(model, grads, value=loss) (or "
                             f"tx.update(grads, state, params, value=loss)); got value=None")
        dtype = hyper[LR].dtype
        current = jnp.asarray(value).astype(dtype)
        if current.size != 1:
            raise ValueError(f"{self.name}: value must be a scalar metric, got shape {current.shape}")
        current = current.reshape(())
        better = self._is_better(current, state["best"])
        best = jnp.where(better, current, state["best"])
        bad = jnp.where(better, 0, state["num_bad_epochs"] + 1)
        cooling = state["cooldown_counter"] > 0
        counter = jnp.where(cooling, state["cooldown_counter"] - 1, state["cooldown_counter"])
        bad = jnp.where(cooling, 0, bad)
        reduce = bad > self.patience
        old = hyper[LR]
        new = jnp.maximum(old * self.factor, state["min_lrs"])
        lr = jnp.where(reduce & (old - new > self.eps), new, old)
        state = dict(state, last_epoch=state["last_epoch"] + 1, best=best,
                     num_bad_epochs=jnp.where(reduce, 0, bad),
                     cooldown_counter=jnp.where(reduce, self.cooldown, counter))
        return state, with_lr(hyper, lr)
