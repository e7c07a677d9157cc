"""Prove that a ported training recipe follows torch's, step by step: :func:`compare_training`.

Four runs of the same recipe go side by side, each on its own copy (the caller's models,
optimizer and scheduler are left untouched):

* ``torch32``: torch's recipe as given (float32);
* ``torch64``: the same recipe deep-copied to float64 (model, loss, optimizer state; the scheduler
  with it);
* ``jax``: the jaxconv model with the jaxconv optimizer, free-running from the same start;
* per step, the float64 *reference* of that one step taken from ``torch32``'s exact state.

**Resuming.** Where torch's recipe has already stepped (trained, or loaded a checkpoint), the
jaxconv side starts from the same point: from the ``nnx.Optimizer`` given (loaded with
:func:`~equivalence.training.load_training_checkpoint`), or, given the bare optimizer, from
torch's optimizer state and scheduler position moved in as
:func:`~equivalence.training.load_optimizer_state` moves them (the fixed hyperparameters must
match). The ``start`` checks hold the models' parameters and buffers, each group's step count and
every optimizer slot to torch's before the first step; a fresh torch recipe starts jaxconv from
``init``, so the scheduler's construction is checked too.

**The local check** (each step ``t``): jaxconv starts from ``torch32``'s exact state before the
step (parameters, buffers, optimizer state, learning rate) on the same batch, so a failure is
located in one stage of one step:

1. ``loss`` and ``grad``: jaxconv's loss and gradient of every parameter; ``buffer``: the
   train-mode BatchNorm statistics after the forward; 2. ``clip`` (with ``max_grad_norm``):
   jaxconv's ``clip_grad_norm`` of torch's gradients, the total norm and every clipped
   gradient; 3. ``update``: jaxconv's update of torch's clipped gradients from torch's optimizer
   state, every optimizer slot (``momentum_buffer``, ``exp_avg``, ...) and every parameter.
   Each elementwise:

       |jax - torch32| <= c max(E, |torch32 - ref64|) + FLOOR_ULPS eps |torch32|

   ``E`` is the running error bound of jaxconv's own code for that step
   (:mod:`equivalence.tolerance.running`): each op's rounding carried to first order through
   its jaxpr. For the update that is the formula's rounding in its terms' magnitudes (SGD:
   ``eps (|p| + lr |buf|)`` plus the buffer's ``eps (momentum |buf| + |g + wd p|)`` carried on;
   Adam: the terms of ``m / (sqrt(v) / bc2 + eps)``), so no per-optimizer model is written by
   hand; for the gradients it sees cancellation (a conv bias before a BatchNorm, whose exact
   gradient is 0). ``ref64`` is the same stage of torch in float64 on the same float32 inputs
   (its forward and backward from torch's state; its ``clip_grad_norm_`` of torch's gradients;
   its ``optimizer.step()`` on torch's clipped gradients from torch's optimizer state), so
   ``|torch32 - ref64|`` is torch's own rounding there. jaxconv is within ``E`` of the exact
   result and torch within ``|torch32 - ref64|``, so the two are within the sum of each other;
   ``c`` (:data:`~equivalence.tolerance.C`) covers the sum. ``FLOOR_ULPS`` ulps of the value
   are always allowed (one rounded op each side).
4. ``schedule``: jaxconv's learning rate (and a cycled momentum or ``beta1``) per group
   before the step against torch's, to ``c eps(dtype) (k + t + 1) S``: ``k + t + 1`` scheduler
   steps (``k`` those torch took before a resumed run), each rounding a few times in the
   hyperparameters' dtype relative to ``S``, the largest value its formulas combine (the
   current one, the group's ``initial_lr``, OneCycleLR's ``max_lr`` and ``min_lr``, the
   momentum bounds): torch's own ``end + (start - end) w`` rounds to ulps of ``max_lr``.

**The trajectory** (each step): after ``t + 1`` steps every parameter, buffer and optimizer slot
of the free-running jaxconv run against ``torch32``'s, norm-wise per tensor, and the loss:

    ||jax - torch32|| <= c max(||R||, ||torch32 - torch64||) + FLOOR_ULPS eps ||torch32||

``torch32 - torch64`` is how far rounding alone moves torch's run from its float64 twin: the
model's dynamics amplifying every step's rounding, measured. ``R`` is the rounding each step's
local check allows, carried through the optimizer's own recursion: every step, jaxconv's update
runs once more under the running error bound with that step's gradient rounding
(``max(E, |torch32 - ref64|)`` of the gradient, and of the clipping) and the ``R`` carried so
far in the parameters and slots as input errors; a buffer's ``R`` adds up its local roundings.
``R`` matters where torch's own float32 value is mostly rounding, so one float64 sample of it
says little: a parameter whose exact gradient is zero (a conv bias right before a BatchNorm)
walks on rounding noise in both runs, and the momentum buffer sums that noise over the steps.
A wrong recipe moves jaxconv much further than either.

**The loss's trajectory** is a function of the parameters, so its allowance follows from theirs
(to first order, Cauchy-Schwarz per tensor): the loss at step ``t`` is computed from the
parameters after step ``t - 1``, each within ``A_p`` (its trajectory bound then;
``FLOOR_ULPS`` ulps of its norm before the first step) of ``torch32``'s, so

    |L(jax params) - L(torch32 params)| <= sum_p ||dL/dp|| A_p

with ``dL/dp`` torch's gradient at that step; on top, each side rounds its own forward, by
``|torch32 - ref64|`` for torch (the local ``loss`` check's float64 sample; ``c`` covers
jaxconv's as in the trajectory formula). The loss's ``R`` is
``sum_p ||dL/dp|| A_p / c + |torch32 - ref64|`` in the trajectory formula above. (The running
bound ``E`` of the whole forward is left out here: worst case over every layer it can be
vacuous, ``> 1`` for the residual CNN's loss, and the local ``loss`` check already holds
jaxconv's forward to it.) One float64 sample ``|loss32 - loss64|`` alone is no bound: it can be
far smaller than what the parameters' own (passing) divergence moves the loss.

**Parameters torch does not update** (frozen, or in no group of its optimizer:
:func:`~equivalence.training.frozen_names`) are neither differentiated nor updated on the jaxconv
side, as ``nnx.Optimizer(..., wrt=trainable(...))`` leaves them. A parameter in a group that gets
no gradient (unused in the forward) is refused: torch skips it (no step, no state, no weight
decay), a jaxconv optimizer given its zero gradient would decay it.

**Dropout and stochastic depth**: every run uses torch's masks. The float32 run records each
dropout-like module's draw (the generator's state and the kept elements), the float64 runs draw
again from the same states (the same elements kept, scaled in float64) and the jaxconv module of
the same name applies the same keep mask with its own scaling (:mod:`._masks`). Random numbers
drawn outside such a module (``F.dropout`` in a ``forward``) are refused.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv.optim import Optimizer
from jaxconv.optim.optimizer import named_leaves

from .. import tolerance as tol_mod
from .._torch import require_torch, to_numpy
from ..compare import _pinned_precision
from ..tolerance import running
from ._bounds import (
    elementwise,
    loss_trajectory,
    normwise,
    own_rounding,
    schedule_checks,
    start_allowance,
)
from ._jax_side import JaxSide, flat, with_running
from ._masks import jax_masks
from ._torch_runs import Recipe, grad_norm, reference_step, torch_step
from .optimizer import frozen_names
from .state import state_from_torch
from .training_report import TRAJECTORY, Check, StepRow, TrainingReport


# ------------------------------------------------------------------------------- the entry point
def _batches(batches, steps):
    if not isinstance(batches, Sequence) or not batches:
        raise ValueError(f"compare_training: batches must be a non-empty sequence of (input, target) "
                         f"pairs, got {type(batches).__name__}")
    for i, b in enumerate(batches):
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise ValueError(f"compare_training: batches[{i}] must be an (input, target) pair, got "
                             f"{type(b).__name__}{f' of length {len(b)}' if hasattr(b, '__len__') else ''}")
    steps = len(batches) if steps is None else steps
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"compare_training: steps must be a positive int, got {steps!r}")
    return [tuple(to_numpy(a) for a in batches[t % len(batches)]) for t in range(steps)]


def _jax_optimizer(jax_optimizer):
    """``(tx, its state to start from or None)`` from a jaxconv optimizer or an ``nnx.Optimizer``
    over one (loaded with :func:`~equivalence.training.load_training_checkpoint`, ...)."""
    from flax import nnx

    state = None
    if isinstance(jax_optimizer, nnx.Optimizer):
        from jaxconv.optim.optimizer import find_state

        state = find_state(nnx.as_pure(jax_optimizer.opt_state))
        jax_optimizer = jax_optimizer.tx
    if not isinstance(jax_optimizer, Optimizer):
        raise TypeError(f"compare_training: jax_optimizer must be a jaxconv.optim optimizer (its "
                        f"state is checked slot by slot against torch's) or an nnx.Optimizer over "
                        f"one, got {type(jax_optimizer).__name__}")
    return jax_optimizer, state


def _resume(tx, t32: Recipe, index_names, torch_class, init):
    """torch's optimizer state and scheduler position in jaxconv's layout, as
    :func:`~equivalence.training.load_optimizer_state` moves them (``strict``: the fixed
    hyperparameters must be ``tx``'s)."""
    return state_from_torch(tx, init, t32.optimizer.state_dict(), index_names,
                            None if t32.scheduler is None else t32.scheduler.state_dict(), torch_class)


def _refuse_unused(index_names, frozen, grads: dict, t: int) -> None:
    """Raise naming an optimized parameter torch left without a gradient (unused in the forward):
    torch's optimizer skips it (no step, no state, no weight decay), while jaxconv's, given every
    parameter's gradient (zeros for an unused one), would update it."""
    unused = [n for names in index_names for n in names if n not in grads and n not in frozen]
    if unused:
        raise ValueError(f"compare_training: at step {t} torch left {len(unused)} parameter(s) of "
                         f"torch_optimizer without a gradient (unused in the forward): "
                         f"{', '.join(map(repr, unused[:4]))}{', ...' if len(unused) > 4 else ''}; "
                         f"torch's optimizer skips them (no weight decay, no state), a jaxconv "
                         f"optimizer would update them with a zero gradient; leave them out of "
                         f"torch_optimizer, or use them")


def compare_training(torch_model, jax_model, torch_optimizer, jax_optimizer, batches, loss, *,
                     steps=None, scheduler=None, max_grad_norm=None, c: float = tol_mod.C
                     ) -> TrainingReport:
    """Train a torch recipe and its jaxconv port side by side and check every step.

    **Arguments:**

    - ``torch_model``, ``jax_model``: the torch module and its jaxconv twin with the same
      weights (:func:`equivalence.translate`, or :func:`equivalence.load_state_dict`). Both train
      in train mode (BatchNorm statistics included), each on a copy.
    - ``torch_optimizer``: a ``torch.optim`` optimizer over ``torch_model``'s parameters (fresh,
      or carrying state: the jaxconv side starts from it).
    - ``jax_optimizer``: its :mod:`jaxconv.optim` twin (with the scheduler attached, as
      ``translate_optimizer(..., scheduler=)`` gives it), started from torch's state where torch
      has stepped; or an ``nnx.Optimizer`` over it whose state the jaxconv side starts from (a
      resumed run, loaded with :func:`~equivalence.training.load_training_checkpoint`).
    - ``batches``: a sequence of ``(input, target)`` arrays or tensors; step ``t`` takes
      ``batches[t % len(batches)]``.
    - ``loss``: a torch loss module (``CrossEntropyLoss(label_smoothing=0.1)``, ...), translated
      with :func:`equivalence.translate` for the jaxconv side.
    - ``steps``: the number of steps (default ``len(batches)``).
    - ``scheduler``: the torch scheduler on ``torch_optimizer``, stepped once per step.
    - ``max_grad_norm``: clip both sides' gradients, torch with ``clip_grad_norm_``, jaxconv with
      :func:`jaxconv.nn.utils.clip_grad_norm`.
    - ``c``: the policy constant.

    Returns a :class:`~equivalence.training.training_report.TrainingReport`; the bounds are the
    module docstring's.
    """
    torch = require_torch("equivalence.compare_training")
    tx, given_state = _jax_optimizer(jax_optimizer)
    if not isinstance(loss, torch.nn.Module):
        raise TypeError(f"compare_training: loss must be a torch loss module, got {type(loss).__name__}")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"compare_training: max_grad_norm must be > 0 or None, got {max_grad_norm!r}")
    data = _batches(batches, steps)
    start = time.perf_counter()
    given = Recipe(torch_model, torch_optimizer, scheduler, loss)
    t32, t64, scratch = given.copy(torch), given.copy(torch, True), given.copy(torch, True)
    index_names = t32.index_names()
    offset = t32.position()
    with _pinned_precision(torch) as precision, torch.random.fork_rng(devices=[]), running.shared_programs():
        t32.model.eval()
        with torch.no_grad():
            example = t32.model(torch.as_tensor(data[0][0]))
        t32.model.train()
        from ..translator import translate

        jax_loss = translate(loss, example.detach(), torch.as_tensor(data[0][1]))
        resume = None if offset is None else functools.partial(
            _resume, tx, t32, index_names, type(torch_optimizer))
        frozen = frozen_names(t32.optimizer, t32.model)
        side = JaxSide(jax_model, jax_loss, tx, max_grad_norm,
                       given_state if given_state is not None else resume, frozen)
        rows, checks = [], _start(side, t32, index_names, type(torch_optimizer), c)
        allowed = start_allowance(t32.params())   # each parameter's trajectory bound so far
        for t, (x, y) in enumerate(data):
            lr_jax = {k: np.asarray(v) for k, v in side.opt_state.hyper.items()}
            rec = torch_step(torch, t32, x, y, max_grad_norm)
            _refuse_unused(index_names, frozen, rec.grads, t)
            ref = reference_step(torch, scratch, rec, x, y, max_grad_norm)
            loss64 = t64.forward_backward(torch, x, y, rec.draws)
            t64.clip(torch, max_grad_norm)
            t64.optimizer.step()
            t64.step_scheduler()
            loss_jax = side.step(x, y, jax_masks(rec.draws))
            local, loss_rounding = _local(side, rec, ref, t, x, y, index_names, type(torch_optimizer),
                                          max_grad_norm, c)
            local += schedule_checks(t, lr_jax, rec.hyper, c, (offset or 0) + t + 1)
            traj = [loss_trajectory(t, loss_jax, rec.loss, loss64, loss_rounding, rec.grads, allowed, c)]
            traj += _trajectory(side, t32, t64, t, c)
            allowed.update({ch.name: ch.bound for ch in traj if ch.quantity == "param"})
            checks += local + traj
            worst = lambda cs: max(cs, key=lambda k: k.ratio, default=None)  # noqa: E731
            rows.append(StepRow(t, float(rec.loss), float(loss_jax), [float(h["lr"]) for h in rec.hyper],
                                grad_norm(rec.grads), worst(local), worst(traj)))
    meta = {"torch_type": type(torch_model).__name__, "jax_type": type(jax_model).__name__,
            "optimizer": type(jax_optimizer).__name__,
            "scheduler": None if scheduler is None else type(scheduler).__name__,
            "loss": type(loss).__name__, "max_grad_norm": max_grad_norm, "precision": precision,
            "resumed_at": offset, "seconds": round(time.perf_counter() - start, 3)}
    return TrainingReport(rows, checks, meta, c)


def _local(side: JaxSide, rec, ref, t, x, y, index_names, torch_class, max_grad_norm, c) -> list:
    """The local checks of step ``t`` (module docstring, 1-3), from one run of jaxconv's code
    under the running error bound, and the loss's float64 sample of its rounding ``|t32 - ref64|``."""
    flat_params = {n: jnp.asarray(rec.params[n]) for n, _ in named_leaves(side.params)}
    zeros = {n: np.zeros_like(v) for n, v in flat_params.items()}
    state = state_from_torch(side.tx, side.tx.init(flat_params)._replace(schedule=side.opt_state.schedule),
                             rec.state_dict, index_names, torch_class=torch_class, strict=False)
    out, errs = with_running(side.running_forward, side.at(side.params, rec.params),
                              side.at(side.rest, {**rec.params, **rec.buffers}), x, y,
                              jax_masks(rec.draws))
    upd, upd_errs = with_running(side.running_update, flat({**zeros, **rec.grads}, flat_params),
                                  flat({**zeros, **rec.clipped}, flat_params), state, flat_params,
                                  jnp.asarray(rec.loss))
    out.update(upd)
    errs = {**(errs or {}), **(upd_errs or {})}

    def err(*keys):
        try:
            return functools.reduce(lambda tree, k: tree[k], keys, errs)
        except KeyError:
            return None
    checks = [elementwise(t, "loss", "(loss)", "loss", out["loss"], rec.loss, ref.loss, err("loss"), c)]
    e_grads, e_rest = dict(named_leaves(err("grads"))), dict(named_leaves(err("rest")))
    rounding = {}   # each gradient's and buffer's rounding estimate this step, max(E, |t32 - ref64|)
    for name, g in named_leaves(out["grads"]):
        if name in rec.grads:
            checks.append(elementwise(t, "grad", name, "grad", g, rec.grads[name], ref.grads[name],
                                      e_grads.get(name), c))
            rounding[name] = own_rounding(rec.grads[name], ref.grads[name], e_grads.get(name))
    for name, b in named_leaves(out["rest"]):
        if name in rec.after_buffers:
            checks.append(elementwise(t, "buffer", name, name.rsplit(".", 1)[-1], b,
                                      rec.after_buffers[name], ref.buffers[name], e_rest.get(name), c))
            _accumulate(side, (name, name.rsplit(".", 1)[-1]),
                        own_rounding(rec.after_buffers[name], ref.buffers[name], e_rest.get(name)))
    if max_grad_norm is not None:
        checks.append(elementwise(t, "clip", "(all)", "total_norm", out["norm"],
                                  np.asarray(rec.total_norm, np.float32), ref.total_norm, err("norm"), c))
        for name, v in out["clipped"].items():
            if name in rec.clipped:
                checks.append(elementwise(t, "clip", name, "grad", v, rec.clipped[name],
                                          ref.clipped[name], err("clipped", name), c))
                rounding[name] = rounding.get(name, 0) + own_rounding(
                    rec.clipped[name], ref.clipped[name], err("clipped", name))
    for slot, tree in out["slots"].items():  # slots first: torch computes them first
        for name, v in tree.items():
            if name in rec.after_slots.get(slot, {}):
                checks.append(elementwise(t, "update", name, slot, v, rec.after_slots[slot][name],
                                          ref.slots[slot][name], err("slots", slot, name), c))
    for name, v in out["params"].items():
        checks.append(elementwise(t, "update", name, "param", v, rec.after_params[name],
                                  ref.params[name], err("params", name), c))
    _carry(side, state, rec, flat_params, zeros, rounding)
    return checks, own_rounding(rec.loss, ref.loss, None)


def _accumulate(side: JaxSide, key, rounding) -> None:
    side.carried[key] = rounding if key not in side.carried else side.carried[key] + rounding


def _carry(side: JaxSide, state, rec, flat_params, zeros, rounding) -> None:
    """Carry the free run's rounding through one update (module docstring, the trajectory):
    jaxconv's update, run under the running error bound with this step's gradient rounding and
    the rounding carried so far in the parameters and slots as input errors."""
    names = sorted(flat_params)
    state_errors = []
    for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]:
        keys = [str(getattr(k, "name", getattr(k, "key", k))) for k in path]
        state_errors.append(side.carried.get((keys[2], keys[1])) if keys[0] == "slots" else None)
    errors = ([None] * len(names) + [rounding.get(n) for n in names] + state_errors
              + [side.carried.get((n, "param")) for n in names] + [None])
    try:
        _, (params, slots) = side.running_carry(
            flat({**zeros, **rec.grads}, flat_params), flat({**zeros, **rec.clipped}, flat_params),
            state, flat_params, jnp.asarray(rec.loss), errors=errors)
    except running.Unsupported:
        return
    side.carried.update({(n, "param"): np.asarray(e) for n, e in params.items()})
    side.carried.update({(n, k): np.asarray(e) for k, tree in slots.items() for n, e in tree.items()})


def _start(side: JaxSide, t32: Recipe, index_names, torch_class, c) -> list:
    """The two sides before training: every parameter and buffer as torch's (to rounding); the
    optimizer's step counts and per-parameter state as torch's (its learning rates are step 0's
    ``schedule`` check)."""
    theirs = {**t32.params(), **t32.buffers()}
    checks = [elementwise(0, "start", name, "value", v, theirs[name], theirs[name], None, c)
              for name, v in named_leaves(side.params) + named_leaves(side.rest) if name in theirs]
    state = side.opt_state
    want = state_from_torch(side.tx, state, t32.optimizer.state_dict(), index_names,
                            torch_class=torch_class, strict=False)
    counted = bool(t32.optimizer.state or state.slots)   # else torch keeps no step (plain SGD)
    for g, (ours, theirs_) in enumerate(zip(np.asarray(state.step), np.asarray(want.step))):
        if counted:
            err = abs(int(ours) - int(theirs_))
            checks.append(Check(0, "start", f"group {g}", "step", err, 0.5, err / 0.5))
    slots = t32.slots()
    for slot, tree in state.slots.items():
        for name, v in named_leaves(tree):
            if name in slots.get(slot, {}):
                t = slots[slot][name]
                checks.append(elementwise(0, "start", name, slot, v, t, t, None, c))
    return checks


def _trajectory(side: JaxSide, t32: Recipe, t64: Recipe, t, c) -> list:
    """Every parameter, buffer and optimizer slot of the free runs after step ``t``."""
    checks = []
    p32, p64, b32, b64 = t32.params(), t64.params(), t32.buffers(), t64.buffers()
    for name, v in named_leaves(side.params):
        checks.append(normwise(t, TRAJECTORY, name, "param", v, p32[name], p64[name], c,
                               side.carried.get((name, "param"))))
    for name, v in named_leaves(side.rest):
        if name in b32:
            quantity = name.rsplit(".", 1)[-1]
            checks.append(normwise(t, TRAJECTORY, name, quantity, v, b32[name], b64[name], c,
                                   side.carried.get((name, quantity))))
    s32, s64 = t32.slots(), t64.slots()
    for slot, tree in side.opt_state.slots.items():
        for name, v in named_leaves(tree):
            if name in s32.get(slot, {}):
                checks.append(normwise(t, TRAJECTORY, name, slot, v, s32[slot][name], s64[slot][name], c,
                                       side.carried.get((name, slot))))
    return checks
