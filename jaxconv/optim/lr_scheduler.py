"""``torch.optim.lr_scheduler`` for jaxconv's optimizers.

Each torch scheduler is a constructor with torch's name and arguments that takes a jaxconv
optimizer first and returns the optimizer with the schedule attached (``optimizer.with_scheduler``):

    tx = SGD(params=None, lr=0.1, momentum=0.9)
    tx = SequentialLR(tx, [LinearLR(tx, start_factor=0.1, total_iters=5),
                           CosineAnnealingLR(tx, T_max=95)], milestones=[5])

``tx.update`` then steps the scheduler after every update, as torch's ``optimizer.step();
scheduler.step()``: the lr used by the ``k``-th update (0-based) is torch's group lr after ``k``
``scheduler.step()`` calls, per parameter group, including what constructing the scheduler does to
the starting lr. Attaching a second scheduler to an already scheduled optimizer stacks them, as two
torch schedulers stepped on one optimizer. ``ReduceLROnPlateau`` reads the metric from
``optimizer.update(model, grads, value=loss)``.

The rules behind the constructors (``StepRule``, ``CosineAnnealingRule``, ...) are plain objects
with ``init`` / ``step`` on per-group arrays, jit-safe: the step count is traced, so user
callables (``LambdaLR``'s ``lr_lambda``, ``CyclicLR``'s ``scale_fn``) receive a jax array and must
be written with jnp operations (``lambda e: jnp.minimum(1.0, (e + 1) / 10)``, not ``min``).

Precision: the lrs live in the optimizer state's float dtype. With ``jax_enable_x64`` they equal
torch's float64 values to rounding; in float32 the recursive (chainable) forms accumulate at most
``10 * n * eps32`` relative to the lr itself after ``n`` steps (derivation and the ``eta_min``
term in :mod:`jaxconv.optim._lr_rules`).
"""
from __future__ import annotations

import copy

import jax

from ._lr_compose import (
    ChainedRule,
    ReduceLROnPlateauRule,
    SequentialRule,
    check_sequence,
)
from ._lr_cycles import CyclicRule, OneCycleRule
from ._lr_rules import (
    ConstantRule,
    CosineAnnealingRule,
    CosineAnnealingWarmRestartsRule,
    ExponentialRule,
    LambdaRule,
    LinearRule,
    MultiplicativeRule,
    MultiStepRule,
    PolynomialRule,
    Rule,
    StepRule,
    per_group,
)
from .optimizer import LR, Optimizer, find_state

__all__ = [
    "ChainedRule", "ChainedScheduler", "ConstantLR", "ConstantRule", "CosineAnnealingLR",
    "CosineAnnealingRule", "CosineAnnealingWarmRestarts", "CosineAnnealingWarmRestartsRule",
    "CyclicLR", "CyclicRule", "ExponentialLR", "ExponentialRule", "LambdaLR", "LambdaRule",
    "LinearLR", "LinearRule", "MultiStepLR", "MultiStepRule", "MultiplicativeLR",
    "MultiplicativeRule", "OneCycleLR", "OneCycleRule", "PolynomialLR", "PolynomialRule",
    "ReduceLROnPlateau", "ReduceLROnPlateauRule", "Rule", "SequentialLR", "SequentialRule",
    "StepLR", "StepRule", "get_last_lr",
]


def _attach(optimizer, rule: Rule, last_epoch: int = -1) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{rule.name}: optimizer must be a jaxconv.optim optimizer (SGD, AdamW, "
                        f"...), got {type(optimizer).__name__}")
    if last_epoch != -1:
        raise ValueError(f"{rule.name}: last_epoch must be -1 (a fresh scheduler), got "
                         f"{last_epoch}; to resume a torch run, load its scheduler state with "
                         f"equivalence's load_optimizer_state")
    return optimizer.with_scheduler(rule)


def _check_lists(optimizer, rule: str, cast=float, **lists) -> None:
    """Per-group arguments given as lists must have one value per group (torch's rule)."""
    if isinstance(optimizer, Optimizer):
        for arg, value in lists.items():
            per_group(value, arg, rule, len(optimizer.groups), cast)


def _check_cycle_momentum(optimizer, rule: str, cycle_momentum: bool) -> None:
    if not cycle_momentum or not isinstance(optimizer, Optimizer):
        return
    if optimizer.momentum_key is None:
        raise ValueError(f"{rule}: {type(optimizer).__name__} has no momentum or beta1 for "
                         f"cycle_momentum=True to cycle; pass cycle_momentum=False")


def LambdaLR(optimizer, lr_lambda, last_epoch: int = -1) -> Optimizer:
    """torch's ``LambdaLR``: ``lr = initial_lr * lr_lambda(step)`` (jnp-traceable callables)."""
    if isinstance(lr_lambda, (list, tuple)):
        _check_lists(optimizer, "LambdaLR", lambda f: f, lr_lambda=lr_lambda)
    return _attach(optimizer, LambdaRule(lr_lambda), last_epoch)


def MultiplicativeLR(optimizer, lr_lambda, last_epoch: int = -1) -> Optimizer:
    """torch's ``MultiplicativeLR``: ``lr *= lr_lambda(step)`` (jnp-traceable callables)."""
    if isinstance(lr_lambda, (list, tuple)):
        _check_lists(optimizer, "MultiplicativeLR", lambda f: f, lr_lambda=lr_lambda)
    return _attach(optimizer, MultiplicativeRule(lr_lambda), last_epoch)


def StepLR(optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> Optimizer:
    """torch's ``StepLR``: ``lr *= gamma`` every ``step_size`` steps."""
    return _attach(optimizer, StepRule(step_size, gamma), last_epoch)


def MultiStepLR(optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1) -> Optimizer:
    """torch's ``MultiStepLR``: ``lr *= gamma`` at each milestone."""
    return _attach(optimizer, MultiStepRule(milestones, gamma), last_epoch)


def ConstantLR(optimizer, factor: float = 1.0 / 3, total_iters: int = 5,
               last_epoch: int = -1) -> Optimizer:
    """torch's ``ConstantLR``: ``lr * factor`` for the first ``total_iters`` steps."""
    return _attach(optimizer, ConstantRule(factor, total_iters), last_epoch)


def LinearLR(optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
             total_iters: int = 5, last_epoch: int = -1) -> Optimizer:
    """torch's ``LinearLR``: the lr factor goes linearly from ``start_factor`` to ``end_factor``."""
    return _attach(optimizer, LinearRule(start_factor, end_factor, total_iters), last_epoch)


def ExponentialLR(optimizer, gamma: float, last_epoch: int = -1) -> Optimizer:
    """torch's ``ExponentialLR``: ``lr *= gamma`` every step."""
    return _attach(optimizer, ExponentialRule(gamma), last_epoch)


def PolynomialLR(optimizer, total_iters: int = 5, power: float = 1.0,
                 last_epoch: int = -1) -> Optimizer:
    """torch's ``PolynomialLR``: polynomial decay to 0 over ``total_iters`` steps."""
    return _attach(optimizer, PolynomialRule(total_iters, power), last_epoch)


def CosineAnnealingLR(optimizer, T_max: int, eta_min: float = 0.0,
                      last_epoch: int = -1) -> Optimizer:
    """torch's ``CosineAnnealingLR`` (its recursive form, so it composes as torch's does)."""
    return _attach(optimizer, CosineAnnealingRule(T_max, eta_min), last_epoch)


def CosineAnnealingWarmRestarts(optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                                last_epoch: int = -1) -> Optimizer:
    """torch's ``CosineAnnealingWarmRestarts`` (SGDR)."""
    return _attach(optimizer, CosineAnnealingWarmRestartsRule(T_0, T_mult, eta_min), last_epoch)


def CyclicLR(optimizer, base_lr, max_lr, step_size_up: int = 2000,
             step_size_down: int | None = None, mode: str = "triangular", gamma: float = 1.0,
             scale_fn=None, scale_mode: str = "cycle", cycle_momentum: bool = True,
             base_momentum=0.8, max_momentum=0.9, last_epoch: int = -1) -> Optimizer:
    """torch's ``CyclicLR``, cycling momentum (or Adam's beta1) inversely when ``cycle_momentum``;
    ``scale_fn`` must be jnp-traceable."""
    _check_lists(optimizer, "CyclicLR", base_lr=base_lr, max_lr=max_lr,
                 base_momentum=base_momentum, max_momentum=max_momentum)
    _check_cycle_momentum(optimizer, "CyclicLR", cycle_momentum)
    rule = CyclicRule(base_lr, max_lr, step_size_up, step_size_down, mode, gamma, scale_fn,
                      scale_mode, cycle_momentum, base_momentum, max_momentum)
    return _attach(optimizer, rule, last_epoch)


def OneCycleLR(optimizer, max_lr, total_steps: int | None = None, epochs: int | None = None,
               steps_per_epoch: int | None = None, pct_start: float = 0.3,
               anneal_strategy: str = "cos", cycle_momentum: bool = True, base_momentum=0.85,
               max_momentum=0.95, div_factor: float = 25.0, final_div_factor: float = 1e4,
               three_phase: bool = False, last_epoch: int = -1) -> Optimizer:
    """torch's ``OneCycleLR`` (the 1cycle policy), with momentum / beta1 cycling."""
    rule = OneCycleRule(max_lr, total_steps, epochs, steps_per_epoch, pct_start, anneal_strategy,
                        cycle_momentum, base_momentum, max_momentum, div_factor, final_div_factor,
                        three_phase)
    _check_lists(optimizer, "OneCycleLR", max_lr=max_lr, base_momentum=base_momentum,
                 max_momentum=max_momentum)
    _check_cycle_momentum(optimizer, "OneCycleLR", cycle_momentum)
    return _attach(optimizer, rule, last_epoch)


def ReduceLROnPlateau(optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                      threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                      min_lr=0.0, eps: float = 1e-8) -> Optimizer:
    """torch's ``ReduceLROnPlateau``; the metric comes from ``update(..., value=loss)``."""
    _check_lists(optimizer, "ReduceLROnPlateau", min_lr=min_lr)
    rule = ReduceLROnPlateauRule(mode, factor, patience, threshold, threshold_mode, cooldown,
                                 min_lr, eps)
    return _attach(optimizer, rule)


def _rules_of(optimizer, schedulers, who: str) -> list[Rule]:
    """The rule each scheduled optimizer added to ``optimizer`` (built on it, e.g.
    ``LinearLR(optimizer, ...)``), in order."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{who}: optimizer must be a jaxconv.optim optimizer, got "
                        f"{type(optimizer).__name__}")
    rules = []
    for i, s in enumerate(schedulers):
        if not isinstance(s, Optimizer) or s.scheduler is None:
            raise TypeError(f"{who}: schedulers[{i}] must be an optimizer with a scheduler "
                            f"attached (e.g. CosineAnnealingLR(optimizer, T_max=...)), got "
                            f"{type(s).__name__}")
        if s.groups is not optimizer.groups:
            raise ValueError(f"{who}: schedulers[{i}] was built on another optimizer; build every "
                             f"scheduler on the same one, as torch requires")
        rule, prefix = s.scheduler, optimizer.scheduler
        if prefix is not None:
            if not (isinstance(rule, ChainedRule) and len(rule.rules) == 2 and rule.rules[0] is prefix):
                raise ValueError(f"{who}: schedulers[{i}] must be one scheduler built on the given "
                                 f"optimizer, got {rule!r}")
            rule = rule.rules[1]
        rules.append(rule)
    return check_sequence(rules, "schedulers", who)


def SequentialLR(optimizer, schedulers, milestones, last_epoch: int = -1) -> Optimizer:
    """torch's ``SequentialLR``: ``schedulers`` (each built on ``optimizer``) take turns at
    ``milestones``."""
    rules = _rules_of(optimizer, schedulers, "SequentialLR")
    return _attach(optimizer, SequentialRule(rules, milestones), last_epoch)


def ChainedScheduler(schedulers, optimizer=None) -> Optimizer:
    """torch's ``ChainedScheduler``: every scheduler (each built on the same optimizer) steps
    in turn."""
    schedulers = list(schedulers)
    if not schedulers:
        raise ValueError("ChainedScheduler: schedulers must hold at least one scheduler, got none")
    if optimizer is None:
        optimizer = copy.copy(schedulers[0])
        firsts = {id(s.scheduler.rules[0]) if isinstance(s.scheduler, ChainedRule)
                  and len(s.scheduler.rules) == 2 else None for s in schedulers
                  if isinstance(s, Optimizer)}
        shared = len(schedulers) > 1 and len(firsts) == 1 and None not in firsts
        optimizer.scheduler = schedulers[0].scheduler.rules[0] if shared else None
    rules = _rules_of(optimizer, schedulers, "ChainedScheduler")
    return _attach(optimizer, ChainedRule(rules))


def get_last_lr(opt_state) -> list[float]:
    """torch's ``scheduler.get_last_lr()``: the lr of every parameter group for the next update.

    Arguments:
      opt_state: an :class:`~jaxconv.optim.OptimizerState`, a tree holding one (an
        ``optax.chain`` state), or ``nnx.Optimizer.opt_state``.

    Returns:
      One Python float per parameter group (outside jit; inside, read ``state.hyper['lr']``).
    """
    lr = jax.tree_util.tree_leaves(find_state(opt_state).hyper[LR])[0]   # unwraps nnx's OptArray
    return [float(v) for v in jax.device_get(lr)]
