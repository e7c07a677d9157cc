"""torch's learning-rate schedulers as jit-safe rules: the base and the step-count schedules.

A rule is one torch ``LRScheduler`` with its state taken out: ``init(hyper, momentum_key)`` is the
constructor (including torch's ``_initial_step``), ``step(state, hyper, value)`` one
``scheduler.step()``. ``hyper`` is the optimizer's per-group ``(G,)`` arrays (``lr``,
``initial_lr``, a cycled ``momentum`` / ``beta1``), playing torch's ``param_groups``; the rule's
state is a dict keyed by torch's attribute names (``last_epoch``, ``base_lrs``, ``T_cur``, ...).
Every rule follows torch's chainable ``get_lr`` (it multiplies the group's *current* lr), so
chained, sequential and stacked schedulers compose as torch's do.

Precision. Each ratio is written so that float32 does not cancel: the cosine's
``(1 + cos a) / (1 + cos b)`` as ``cos^2(a/2) / cos^2(b/2)`` with each ``cos(x/2)`` evaluated as
``sin`` of an exact integer distance to its zero (argument in ``[0, pi/2]``, where ``sin`` is
relatively accurate); PolynomialLR's ``(T - e) / (T - e + 1)`` from integers; LinearLR's ratio as
a quotient of two sums of non-negative terms. Constants are Python doubles rounded once.

The float32 bound. Let ``u = 2**-24`` (float32's unit roundoff, ``eps32 / 2``). A recursive rule
sets ``lr_k = r_k * lr_{k-1}`` (or ``eta + r_k (lr_{k-1} - eta)``), ``r_k`` computed from exact
integers and once-rounded constants in at most ``m`` float32 operations, each exact to ``u``
(``sin``/``cos``/``exp``/``log`` to one ulp, ``2u``). So ``fl(r_k) = r_k (1 + d_k)``,
``|d_k| <= m u``, and the product ``fl(r_k) * lr_{k-1}`` adds one rounding; by induction the
relative error after ``n`` steps is at most ``(1 + (m + 1) u)**n - 1 <= 1.01 n (m + 1) u`` while
``n (m + 1) u <= 0.01``. Counting: the cosine ratio has the most, ``m = 19`` (argument 2u, sin 2u
-> each ``cos(x/2)`` within 4u; their quotient 9u; squared 19u), so every recursive rule stays
within ``|lr_n - lr_n^torch| <= 20 n u |lr_n| = 10 n eps32 |lr_n|``: relative to the lr itself,
which torch's ``1 + cos`` form would break near ``T_max`` (its error there is ``~u (2T/pi)**2``
relative). With ``eta_min`` the recursion runs on ``lr - eta_min`` and the subtraction and
addition round relative to ``eta_min`` (at most ``2 u eta_min`` a step, damped by ratios <= 1):
add ``10 n eps32 eta_min``. Non-recursive rules (Lambda, CosineAnnealingWarmRestarts, Cyclic,
OneCycle) stay within a few ``u`` of their largest term at every step. The exception: past
``T_max`` the cosine rises again from ``lr = eta_min``, and the float32 rounding of
``eta_min + x`` there is multiplied by up to ``(2 T_max / pi)**2`` (torch's float64 does the
same, harmlessly). In float64 (``jax_enable_x64``) the same count gives ``~1e-13``
relative over hundreds of steps, the size of torch's own rounding.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

#: Per-group keys every optimizer state carries: the learning rate used by the next update, and
#: the one the group started with (torch's ``initial_lr``, which schedulers read as ``base_lrs``).
LR, INITIAL_LR = "lr", "initial_lr"

State = dict[str, Any]
Hyper = dict[str, jax.Array]

#: Errors a Python (non-jnp) user function raises when called on a traced step count.
_TRACE_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
                 jax.errors.TracerIntegerConversionError, jax.errors.TracerArrayConversionError,
                 TypeError)


def _int(value, arg: str, rule: str, minimum: int = 0) -> int:
    """A Python int ``>= minimum`` from ``value`` (an int, or a float with an integer value)."""
    ok = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not ok or value < minimum:
        raise ValueError(f"{rule}: {arg} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def per_group(value, arg: str, rule: str, groups: int, cast=float) -> list:
    """torch's ``_format_param``: one value per parameter group (a list must have ``groups``)."""
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(f"{rule}: {arg} has {len(value)} values, but the optimizer has "
                             f"{groups} parameter groups; give one per group or a single value")
        return [cast(v) for v in value]
    return [cast(value)] * groups


def call_traced(fn: Callable, x, what: str, dtype) -> jax.Array:
    """``fn(x)`` on a traced step, with a clear error when ``fn`` is not jnp-traceable."""
    if jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer):    # int64 under x64, as torch's int
        x = jnp.asarray(x).astype(jax.dtypes.canonicalize_dtype(jnp.int64))
    try:
        out = fn(x)
    except _TRACE_ERRORS as err:
        raise TypeError(f"{what} is called with the step count as a jax array (traced under jit), "
                        f"so it must be written with jnp operations (jnp.minimum, jnp.where, "
                        f"jnp.cos), not Python's min/if/math; calling it failed with "
                        f"{type(err).__name__}: {str(err).splitlines()[0]}") from err
    return jnp.asarray(out).astype(dtype)


def with_lr(hyper: Hyper, lr) -> Hyper:
    """``hyper`` with a new ``lr``, kept in the state's dtype (as torch's param_group['lr'])."""
    return dict(hyper, **{LR: jnp.asarray(lr).astype(hyper[LR].dtype)})


def sin2(k, period: int) -> jax.Array:
    """``sin(pi k / (2 period))**2`` for integer ``k``, accurate near its zeros: the argument is
    reduced to ``[0, pi/2]`` with integer arithmetic (``sin^2`` has period ``2 period`` in ``k``
    and is symmetric about ``period``)."""
    m = jnp.mod(k, 2 * period)
    r = jnp.minimum(m, 2 * period - m)
    return jnp.sin(r * (math.pi / (2 * period))) ** 2


class Rule:
    """The base of scheduler rules: torch's ``LRScheduler`` (``last_epoch``, ``base_lrs``).

    Subclasses write :meth:`get_lr` (torch's chainable form) and, where torch has one,
    :meth:`start_lr` (torch's ``_get_closed_form_lr`` at epoch 0, what ``SequentialLR`` uses at a
    milestone).
    """

    #: torch's class name, for messages.
    name = "LRScheduler"
    #: whether the rule moves ``momentum`` / ``beta1`` (OneCycleLR, CyclicLR).
    cycles_momentum = False
    #: whether the constructor sets ``initial_lr`` (all but ReduceLROnPlateau).
    sets_initial_lr = True
    #: whether SequentialLR may switch to it at a milestone (torch's ``_update_lr(0)`` works).
    restartable = True

    def init(self, hyper: Hyper, momentum_key: str | None = None) -> tuple[State, Hyper]:
        """torch's constructor on a fresh optimizer, including its initial ``step()``."""
        return self._init(hyper, momentum_key, fresh=True)

    def _init(self, hyper, momentum_key, fresh):
        """``fresh``: no scheduler set ``initial_lr`` yet (torch's ``setdefault`` then takes lr)."""
        state, hyper = self.setup(hyper, momentum_key, fresh)
        return self.initial_step(state, hyper)

    def setup(self, hyper, momentum_key, fresh) -> tuple[State, Hyper]:
        """The constructor before ``_initial_step``: ``initial_lr`` and ``base_lrs``."""
        if fresh:
            hyper = dict(hyper, **{INITIAL_LR: hyper[LR]})
        return {"last_epoch": jnp.asarray(-1, jnp.int32), "base_lrs": hyper[INITIAL_LR]}, hyper

    def initial_step(self, state, hyper):
        """torch's ``_initial_step``: a ``step()`` with ``_is_initial`` set."""
        return self._advance(state, hyper, initial=True)

    def step(self, state: State, hyper: Hyper, value=None) -> tuple[State, Hyper]:
        """One ``scheduler.step()``; ``value`` is ReduceLROnPlateau's metric (ignored here)."""
        return self._advance(state, hyper, initial=False)

    def _advance(self, state, hyper, initial):
        state = dict(state, last_epoch=state["last_epoch"] + 1)
        return state, self.get_lr(state, hyper, initial)

    def restart(self, state, hyper):
        """SequentialLR at a milestone: torch's ``_update_lr(0)`` (epoch 0, closed form if any)."""
        state = dict(state, last_epoch=jnp.zeros_like(state["last_epoch"]))
        lr = self.start_lr(state, hyper)
        return state, (self.get_lr(state, hyper, False) if lr is None else with_lr(hyper, lr))

    def undo(self, state):
        """SequentialLR's ``recursive_undo``: ``last_epoch -= 1``."""
        return dict(state, last_epoch=state["last_epoch"] - 1)

    def get_lr(self, state, hyper, initial: bool) -> Hyper:
        """torch's ``get_lr`` at ``state['last_epoch']``: the new hyperparameters."""
        raise NotImplementedError

    def start_lr(self, state, hyper):
        """torch's ``_get_closed_form_lr`` at epoch 0, or ``None`` where torch has none."""
        return

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class LambdaRule(Rule):
    """``LambdaLR``: ``lr = base_lr * lr_lambda(last_epoch)`` (one callable, or one per group)."""

    name = "LambdaLR"

    def __init__(self, lr_lambda):
        self.lr_lambda = lr_lambda
        for fn in (lr_lambda if isinstance(lr_lambda, (list, tuple)) else [lr_lambda]):
            if not callable(fn):
                raise TypeError(f"{self.name}: lr_lambda must be a function of the step (or a "
                                f"list of them, one per group), got {type(fn).__name__}")

    def factors(self, epoch, hyper):
        """Each group's ``lr_lambda(epoch)``, a ``(G,)`` array."""
        groups, dtype = hyper[LR].shape[0], hyper[LR].dtype
        fns = self.lr_lambda
        if isinstance(fns, (list, tuple)):
            if len(fns) != groups:
                raise ValueError(f"{self.name}: expected {groups} lr_lambdas (one per parameter "
                                 f"group), got {len(fns)}")
        else:
            fns = [fns] * groups
        what = f"{self.name}'s lr_lambda"
        return jnp.stack([call_traced(fn, epoch, what, dtype).reshape(()) for fn in fns])

    def get_lr(self, state, hyper, initial):
        return with_lr(hyper, state["base_lrs"] * self.factors(state["last_epoch"], hyper))


class MultiplicativeRule(LambdaRule):
    """``MultiplicativeLR``: ``lr *= lr_lambda(last_epoch)`` at each step after the first."""

    name = "MultiplicativeLR"

    def get_lr(self, state, hyper, initial):
        if initial:
            return hyper
        return with_lr(hyper, hyper[LR] * self.factors(state["last_epoch"], hyper))


class StepRule(Rule):
    """``StepLR``: ``lr *= gamma`` every ``step_size`` steps."""

    name = "StepLR"

    def __init__(self, step_size: int, gamma: float = 0.1):
        self.step_size = _int(step_size, "step_size", self.name, 1)
        self.gamma = float(gamma)

    def get_lr(self, state, hyper, initial):
        e = state["last_epoch"]
        decay = (e != 0) & (e % self.step_size == 0)
        return with_lr(hyper, jnp.where(decay, hyper[LR] * self.gamma, hyper[LR]))

    def start_lr(self, state, hyper):
        return state["base_lrs"] * self.gamma ** (0 // self.step_size)


class MultiStepRule(Rule):
    """``MultiStepLR``: ``lr *= gamma ** (times last_epoch is in milestones)``."""

    name = "MultiStepLR"

    def __init__(self, milestones, gamma: float = 0.1):
        self.milestones = Counter(_int(m, "milestones", self.name, -2**31) for m in milestones)
        self.gamma = float(gamma)

    def get_lr(self, state, hyper, initial):
        e, factor = state["last_epoch"], jnp.ones_like(hyper[LR])
        for milestone, count in self.milestones.items():
            factor = jnp.where(e == milestone, self.gamma ** count, factor)
        return with_lr(hyper, hyper[LR] * factor)

    def start_lr(self, state, hyper):
        return state["base_lrs"] * self.gamma ** bisect_right(sorted(self.milestones.elements()), 0)


class ConstantRule(Rule):
    """``ConstantLR``: ``lr *= factor`` at construction, ``lr /= factor`` at ``total_iters``."""

    name = "ConstantLR"

    def __init__(self, factor: float = 1.0 / 3, total_iters: int = 5):
        if not 0 < factor <= 1:
            raise ValueError(f"{self.name}: factor must be in (0, 1] (torch checks [0, 1] and then "
                             f"divides by it at total_iters), got {factor}")
        self.factor, self.total_iters = float(factor), _int(total_iters, "total_iters", self.name)

    def get_lr(self, state, hyper, initial):
        e, lr = state["last_epoch"], hyper[LR]
        out = jnp.where(e == self.total_iters, lr * (1.0 / self.factor), lr)
        return with_lr(hyper, jnp.where(e == 0, lr * self.factor, out))

    def start_lr(self, state, hyper):
        return state["base_lrs"] * (self.factor + (0 >= self.total_iters) * (1 - self.factor))


class LinearRule(Rule):
    """``LinearLR``: the factor moves linearly from ``start_factor`` to ``end_factor``."""

    name = "LinearLR"

    def __init__(self, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5):
        if not 0 < start_factor <= 1:
            raise ValueError(f"{self.name}: start_factor must be in (0, 1], got {start_factor}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"{self.name}: end_factor must be in [0, 1], got {end_factor}")
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
        self.total_iters = _int(total_iters, "total_iters", self.name, 1)

    def get_lr(self, state, hyper, initial):
        e, lr, T = state["last_epoch"], hyper[LR], self.total_iters
        s, f = self.start_factor, self.end_factor
        # torch: 1 + (f - s) / (T s + (e - 1)(f - s)) = g(e) / g(e - 1), g(e) = (T - e) s + e f:
        # both sums of non-negative terms for 0 <= e <= T, so float32 does not cancel.
        num = (T - e).astype(lr.dtype) * s + e.astype(lr.dtype) * f
        den = (T - e + 1).astype(lr.dtype) * s + (e - 1).astype(lr.dtype) * f
        out = jnp.where(initial | (e > T), lr, lr * (num / jnp.where(den == 0, 1, den)))
        return with_lr(hyper, jnp.where(e == 0, lr * s, out))

    def start_lr(self, state, hyper):
        return state["base_lrs"] * self.start_factor


class ExponentialRule(Rule):
    """``ExponentialLR``: ``lr *= gamma`` every step."""

    name = "ExponentialLR"

    def __init__(self, gamma: float):
        self.gamma = float(gamma)

    def get_lr(self, state, hyper, initial):
        return hyper if initial else with_lr(hyper, hyper[LR] * self.gamma)

    def start_lr(self, state, hyper):
        return state["base_lrs"] * self.gamma ** 0


class PolynomialRule(Rule):
    """``PolynomialLR``: ``lr *= ((T - e) / (T - e + 1)) ** power`` until ``total_iters``."""

    name = "PolynomialLR"

    def __init__(self, total_iters: int = 5, power: float = 1.0):
        self.total_iters = _int(total_iters, "total_iters", self.name, 1)
        self.power = float(power)

    def get_lr(self, state, hyper, initial):
        e, lr = state["last_epoch"], hyper[LR]
        if initial:
            return hyper
        ratio = (self.total_iters - e).astype(lr.dtype) / (self.total_iters - e + 1).astype(lr.dtype)
        if self.power.is_integer() and 0 <= self.power <= 64:
            factor = jax.lax.integer_pow(ratio, int(self.power))
        else:
            factor = jnp.power(jnp.maximum(ratio, 0), self.power)
        return with_lr(hyper, jnp.where(e > self.total_iters, lr, lr * factor))

    def start_lr(self, state, hyper):
        return state["base_lrs"] * (1.0 - min(self.total_iters, 0) / self.total_iters) ** self.power


class CosineAnnealingRule(Rule):
    """``CosineAnnealingLR``: torch's recursive cosine, ``(lr - eta_min)`` times
    ``(1 + cos(pi e / T)) / (1 + cos(pi (e - 1) / T))``; past ``T_max`` it rises again."""

    name = "CosineAnnealingLR"

    def __init__(self, T_max: int, eta_min: float = 0.0):
        self.T_max = _int(T_max, "T_max", self.name, 1)
        self.eta_min = float(eta_min)

    def get_lr(self, state, hyper, initial):
        if initial:
            return hyper
        e, lr, base, T, eta = state["last_epoch"], hyper[LR], state["base_lrs"], self.T_max, self.eta_min
        # (1 + cos(pi k / T)) / 2 = cos^2(pi k / 2T) = sin^2(pi (T - k) / 2T)
        num, den = sin2(T - e, T), sin2(T - e + 1, T)
        after_zero = (e - 1 - T) % (2 * T) == 0           # torch: den == 0, additive branch
        rising = lr + (base - eta) * ((1 - math.cos(math.pi / T)) / 2)   # torch's constant
        ratio = (num / jnp.where(after_zero, 1, den)).astype(lr.dtype)
        return with_lr(hyper, jnp.where(after_zero, rising, ratio * (lr - eta) + eta))

    def start_lr(self, state, hyper):
        return self.eta_min + (state["base_lrs"] - self.eta_min) * (1 + math.cos(0.0)) / 2


class CosineAnnealingWarmRestartsRule(Rule):
    """``CosineAnnealingWarmRestarts``: a cosine from ``base_lr`` over ``T_i`` steps, restarted
    with ``T_i *= T_mult`` (state ``T_cur``, ``T_i`` as torch's)."""

    name = "CosineAnnealingWarmRestarts"

    def __init__(self, T_0: int, T_mult: int = 1, eta_min: float = 0.0):
        if not isinstance(T_0, int) or T_0 <= 0:
            raise ValueError(f"{self.name}: T_0 must be a positive integer, got {T_0!r}")
        if not isinstance(T_mult, int) or T_mult < 1:
            raise ValueError(f"{self.name}: T_mult must be an integer >= 1, got {T_mult!r}")
        if isinstance(eta_min, bool) or not isinstance(eta_min, (int, float)):
            raise TypeError(f"{self.name}: eta_min must be a float, got {eta_min!r}")
        self.T_0, self.T_mult, self.eta_min = T_0, T_mult, float(eta_min)

    def setup(self, hyper, momentum_key, fresh):
        state, hyper = super().setup(hyper, momentum_key, fresh)
        return dict(state, T_cur=jnp.asarray(-1, jnp.int32), T_i=jnp.asarray(self.T_0, jnp.int32)), hyper

    def _advance(self, state, hyper, initial):
        first = state["last_epoch"] < 0                     # torch: epoch = 0 -> T_cur = 0
        t_cur, t_i = state["T_cur"] + 1, state["T_i"]
        wrap = t_cur >= t_i
        t_cur, t_i = jnp.where(wrap, t_cur % t_i, t_cur), jnp.where(wrap, t_i * self.T_mult, t_i)
        state = dict(state, last_epoch=jnp.where(first, 0, state["last_epoch"] + 1),
                     T_cur=jnp.where(first, 0, t_cur), T_i=jnp.where(first, self.T_0, t_i))
        return state, self.get_lr(state, hyper, initial)

    def get_lr(self, state, hyper, initial):
        t_cur, t_i, eta = state["T_cur"], state["T_i"], self.eta_min
        # (1 + cos(pi t / T)) / 2 = sin^2(pi (T - t) / 2T), argument reduced to [0, pi/2]
        dtype = hyper[LR].dtype
        c2 = jnp.sin((t_i - t_cur).astype(dtype) * (math.pi / 2) / t_i.astype(dtype)) ** 2
        return with_lr(hyper, eta + (state["base_lrs"] - eta) * c2)

