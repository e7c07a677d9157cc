"""torch's cyclic schedulers as rules: ``CyclicLR`` and ``OneCycleLR``, momentum/beta1 included.

Both compute the lr afresh from the step (not recursively), so float32 errors do not accumulate:
a few ``u * max_lr`` at every step (see :mod:`._lr_rules`). Phase boundaries are decided on
integers (``floor`` of torch's float ``end_step`` taken in Python), so the branch taken at a
boundary is torch's.
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from ._lr_rules import INITIAL_LR, LR, Rule, _int, call_traced, per_group, with_lr


def _momentum_key(hyper) -> str:
    return "beta1" if "beta1" in hyper else "momentum"


def _groups(hyper) -> int:
    return hyper[LR].shape[0]


class CyclicRule(Rule):
    """``CyclicLR``: the lr cycles between ``base_lr`` and ``max_lr`` (momentum the other way).

    ``scale_fn`` (if given) is called on the cycle number or the step count as an integer jax
    array (traced under jit): write it with jnp operations.
    """

    name = "CyclicLR"

    def __init__(self, base_lr, max_lr, step_size_up: int = 2000, step_size_down: int | None = None,
                 mode: str = "triangular", gamma: float = 1.0, scale_fn=None,
                 scale_mode: str = "cycle", cycle_momentum: bool = True,
                 base_momentum=0.8, max_momentum=0.9):
        self.up = _int(step_size_up, "step_size_up", self.name, 1)
        self.down = self.up if step_size_down is None else _int(step_size_down, "step_size_down",
                                                                 self.name)
        if scale_fn is None:
            if mode not in ("triangular", "triangular2", "exp_range"):
                raise ValueError(f"{self.name}: mode must be 'triangular', 'triangular2' or "
                                 f"'exp_range' when scale_fn is None, got {mode!r}")
            scale_mode = "iterations" if mode == "exp_range" else "cycle"
        elif not callable(scale_fn):
            raise TypeError(f"{self.name}: scale_fn must be a function, got {type(scale_fn).__name__}")
        if scale_mode not in ("cycle", "iterations"):
            raise ValueError(f"{self.name}: scale_mode must be 'cycle' or 'iterations', got "
                             f"{scale_mode!r}")
        self.base_lr, self.max_lr, self.mode, self.gamma = base_lr, max_lr, mode, float(gamma)
        self.scale_fn, self.scale_mode = scale_fn, scale_mode
        self.cycles_momentum = bool(cycle_momentum)
        self.base_momentum, self.max_momentum = base_momentum, max_momentum

    def setup(self, hyper, momentum_key, fresh):
        g, dtype = _groups(hyper), hyper[LR].dtype
        arr = lambda arg, v: jnp.asarray(per_group(v, arg, self.name, g), dtype)
        base_lrs = arr("base_lr", self.base_lr)
        extra = {"max_lrs": arr("max_lr", self.max_lr)}
        hyper = dict(hyper, **{LR: base_lrs})
        if self.cycles_momentum:
            extra["base_momentums"] = arr("base_momentum", self.base_momentum)
            extra["max_momentums"] = arr("max_momentum", self.max_momentum)
            hyper[momentum_key] = extra["max_momentums"]
        state, hyper = super().setup(hyper, momentum_key, fresh)
        return dict(state, base_lrs=base_lrs, **extra), hyper

    def _scale(self, x, dtype):
        if self.scale_fn is not None:
            return call_traced(self.scale_fn, x, f"{self.name}'s scale_fn", dtype)
        if self.mode == "triangular":
            return jnp.ones((), dtype)
        if self.mode == "triangular2":
            return jnp.ldexp(jnp.ones((), dtype), -(x - 1))         # 1 / 2**(cycle - 1), exact
        return jnp.power(jnp.asarray(self.gamma, dtype), x.astype(dtype))

    def get_lr(self, state, hyper, initial):
        e, dtype = state["last_epoch"], hyper[LR].dtype
        size = self.up + self.down
        cycle, m = 1 + e // size, e % size                 # torch: floor(1 + e/size), x = m/size
        falling = (size - m).astype(dtype) / max(self.down, 1)
        scale_factor = jnp.where(m <= self.up, m.astype(dtype) / self.up, falling)
        scale = self._scale(cycle if self.scale_mode == "cycle" else e, dtype)
        base = state["base_lrs"]
        hyper = with_lr(hyper, base + (state["max_lrs"] - base) * scale_factor * scale)
        if self.cycles_momentum:
            top = state["max_momentums"]
            momentum = top - (top - state["base_momentums"]) * scale_factor * scale
            hyper[_momentum_key(hyper)] = momentum.astype(dtype)
        return hyper


class OneCycleRule(Rule):
    """``OneCycleLR``: warm up from ``max_lr / div_factor`` to ``max_lr``, anneal to
    ``initial_lr / final_div_factor`` (three phases with ``three_phase``); momentum/beta1 cycles
    between ``max_momentum`` and ``base_momentum``. Stepping past ``total_steps`` (torch raises)
    gives a NaN lr, since a jitted step cannot raise."""

    name = "OneCycleLR"

    def __init__(self, max_lr, total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True, base_momentum=0.85,
                 max_momentum=0.95, div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False):
        rule = self.name
        if total_steps is not None:
            if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
                raise ValueError(f"{rule}: total_steps must be a positive integer, got {total_steps!r}")
        elif epochs is not None and steps_per_epoch is not None:
            for arg, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
                if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                    raise ValueError(f"{rule}: {arg} must be a positive integer, got {v!r}")
            total_steps = epochs * steps_per_epoch
        else:
            raise ValueError(f"{rule}: give total_steps, or both epochs and steps_per_epoch; got "
                             f"total_steps={total_steps}, epochs={epochs}, "
                             f"steps_per_epoch={steps_per_epoch}")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"{rule}: pct_start must be a float in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{rule}: anneal_strategy must be 'cos' or 'linear', got "
                             f"{anneal_strategy!r}")
        self.total_steps, self.max_lr, self.anneal_strategy = total_steps, max_lr, anneal_strategy
        self.cycles_momentum = bool(cycle_momentum)
        self.base_momentum, self.max_momentum = base_momentum, max_momentum
        self.div_factor, self.final_div_factor = float(div_factor), float(final_div_factor)
        self.three_phase = bool(three_phase)
        # torch's phases: (end_step, start lr, end lr, start momentum, end momentum)
        if three_phase:
            self.phases = [
                (float(pct_start * total_steps) - 1, INITIAL_LR, "max_lr", "max_momentum", "base_momentum"),
                (float(2 * pct_start * total_steps) - 2, "max_lr", INITIAL_LR, "base_momentum", "max_momentum"),
                (total_steps - 1, INITIAL_LR, "min_lr", "max_momentum", "max_momentum")]
        else:
            self.phases = [
                (float(pct_start * total_steps) - 1, INITIAL_LR, "max_lr", "max_momentum", "base_momentum"),
                (total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]

    def setup(self, hyper, momentum_key, fresh):
        g, dtype = _groups(hyper), hyper[LR].dtype
        max_lrs = per_group(self.max_lr, "max_lr", self.name, g)
        initial = [m / self.div_factor for m in max_lrs]
        extra = {"max_lr": jnp.asarray(max_lrs, dtype),
                 "min_lr": jnp.asarray([i / self.final_div_factor for i in initial], dtype)}
        hyper = dict(hyper, **{INITIAL_LR: jnp.asarray(initial, dtype)})
        if self.cycles_momentum:
            for key in ("max_momentum", "base_momentum"):
                extra[key] = jnp.asarray(per_group(getattr(self, key), key, self.name, g), dtype)
            hyper[momentum_key] = extra["max_momentum"]
        state, hyper = super().setup(hyper, momentum_key, fresh=False)   # initial_lr is set
        return dict(state, **extra), hyper

    def _anneal(self, start, end, e, lo: float, hi: float, dtype):
        """torch's ``_annealing_cos`` / ``_annealing_linear`` at ``pct = (e - lo) / (hi - lo)``."""
        length = hi - lo
        if length == 0:                                    # torch: ZeroDivisionError
            return jnp.full_like(start, jnp.nan)
        # e - lo and hi - e from an integer part (exact) and a Python fraction (one rounding)
        since = (e - math.floor(lo)).astype(dtype) - (lo - math.floor(lo))
        until = (math.floor(hi) - e).astype(dtype) + (hi - math.floor(hi))
        # torch's ``end + (start - end) * w`` as ``start * w + end * (1 - w)``: both terms >= 0,
        # so the result is within a few ulps of itself, not of max(start, end) (OneCycleLR's
        # first lr is max_lr / 25: the cancelling form misses it by ulps of max_lr)
        pct, rest = since / length, until / length
        if self.anneal_strategy == "linear":
            return start * rest + end * pct
        # (cos(pi pct) + 1) / 2 = cos^2(pi pct / 2) = sin^2(pi (1 - pct) / 2), its complement
        # sin^2(pi pct / 2) = cos^2(pi (1 - pct) / 2): each from the smaller angle, no cancellation
        near = pct <= 0.5
        a, b = pct * (math.pi / 2), rest * (math.pi / 2)
        w = jnp.where(near, jnp.cos(a) ** 2, jnp.sin(b) ** 2)
        w_rest = jnp.where(near, jnp.sin(a) ** 2, jnp.cos(b) ** 2)
        return start * w + end * w_rest

    def get_lr(self, state, hyper, initial):
        e, dtype = state["last_epoch"], hyper[LR].dtype
        values = dict(state, **{INITIAL_LR: hyper[INITIAL_LR]})
        lr = momentum = None
        starts = [0.0] + [p[0] for p in self.phases[:-1]]
        for i in reversed(range(len(self.phases))):      # the first phase with e <= end_step wins
            end_step, lr0, lr1, m0, m1 = self.phases[i]
            phase_lr = self._anneal(values[lr0], values[lr1], e, starts[i], end_step, dtype)
            take = e <= math.floor(end_step) if i < len(self.phases) - 1 else True
            lr = phase_lr if lr is None else jnp.where(take, phase_lr, lr)
            if self.cycles_momentum:
                phase_m = self._anneal(values[m0], values[m1], e, starts[i], end_step, dtype)
                momentum = phase_m if momentum is None else jnp.where(take, phase_m, momentum)
        hyper = with_lr(hyper, jnp.where(e > self.total_steps, jnp.nan, lr))
        if self.cycles_momentum:
            hyper[_momentum_key(hyper)] = momentum.astype(dtype)
        return hyper
