"""The torch side of :func:`~equivalence.training.compare_training`: the float32 run, its float64
twin, and the float64 reference of one step taken from the float32 run's exact state.

Every run works on a deep copy of the user's model, optimizer, scheduler and loss, copied
together so the copies refer to each other as the originals do; the originals are never touched.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import numpy as np

from .._torch import to_numpy, to_torch
from ._masks import draws


def _cast_state(optimizer, dtype) -> None:
    """Cast the floating per-parameter state of a torch optimizer to ``dtype`` (``step`` stays)."""
    for state in optimizer.state.values():
        for k, v in state.items():
            if k != "step" and hasattr(v, "is_floating_point") and v.is_floating_point():
                state[k] = v.to(dtype)


@dataclass
class Recipe:
    """A torch training recipe: model, optimizer, scheduler (or ``None``) and loss module."""

    model: object
    optimizer: object
    scheduler: object
    loss: object
    draws: list = field(default_factory=list)   # the last forward's dropout draws (._masks.Draw)

    def copy(self, torch, float64: bool = False) -> Recipe:
        """A deep copy (in float64 with ``float64``), in train mode."""
        model, optimizer, scheduler, loss = copy.deepcopy(
            (self.model, self.optimizer, self.scheduler, self.loss))
        if float64:
            model.double()      # in place: the optimizer's parameters stay the same objects
            loss.double()
            _cast_state(optimizer, torch.float64)
        return Recipe(model.train(), optimizer, scheduler, loss.train())

    @property
    def dtype(self):
        return next(p.dtype for p in self.model.parameters())

    def params(self) -> dict:
        """The parameters by torch name, numpy copies."""
        return {n: to_numpy(p) for n, p in self.model.named_parameters()}

    def buffers(self) -> dict:
        """The buffers by torch name, numpy copies."""
        return {n: to_numpy(b) for n, b in self.model.named_buffers()}

    def position(self):
        """How many steps the recipe has taken (its scheduler's ``last_epoch``; 1 for an optimizer
        with state and no scheduler), or ``None`` when it has not stepped."""
        scheduler = self.scheduler
        schedulers = [] if scheduler is None else [scheduler, *getattr(scheduler, "_schedulers", [])]
        epochs = [int(getattr(s, "last_epoch", 0) or 0) for s in schedulers]
        if max(epochs, default=0) > 0:
            return max(epochs)
        return 1 if self.optimizer.state else None

    def index_names(self) -> list:
        """Each optimizer group's parameter names, in group order (raises for a parameter that
        is not the model's)."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        out = []
        for g, group in enumerate(self.optimizer.param_groups):
            missing = [i for i, p in enumerate(group["params"]) if id(p) not in names]
            if missing:
                raise ValueError(f"compare_training: torch_optimizer's parameter group {g} holds "
                                 f"parameters (index {missing[0]}) that are not torch_model's")
            out.append([names[id(p)] for p in group["params"]])
        return out

    def hyper(self) -> list:
        """Each parameter group's hyperparameters (``params`` left out)."""
        return [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]

    def slots(self) -> dict:
        """The optimizer's per-parameter state, ``{slot: {torch name: array}}``."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        out: dict = {}
        for p, state in self.optimizer.state.items():
            for k, v in state.items():
                if v is not None and k != "step" and hasattr(v, "shape"):
                    out.setdefault(k, {})[names[id(p)]] = to_numpy(v)
        return out

    def _grads(self) -> dict:
        return {n: to_numpy(p.grad) for n, p in self.model.named_parameters() if p.grad is not None}

    def _set_grads(self, torch, grads: dict) -> None:
        for n, p in self.model.named_parameters():
            p.grad = None if n not in grads else to_torch(grads[n]).to(p.dtype)

    def forward_backward(self, torch, x, y, replay=None) -> np.ndarray:
        """Zero the gradients, run the loss on ``(x, y)`` and backpropagate; the loss (0-d, in
        the model's dtype). The dropout-like modules' draws are recorded into ``self.draws``, or
        ``replay``'s (a recorded list) replayed (:mod:`._masks`)."""
        self.optimizer.zero_grad(set_to_none=True)
        x = to_torch(np.asarray(x))
        if x.is_floating_point():
            x = x.to(self.dtype)
        y = to_torch(np.asarray(y))
        if y.is_floating_point():
            y = y.to(self.dtype)
        with draws(torch, self.model, replay) as self.draws:
            loss = self.loss(self.model(x), y)
        loss.backward()
        return to_numpy(loss.detach())

    def step_scheduler(self) -> None:
        """``scheduler.step()`` (torch's warning that the copied optimizer's ``step`` is not the
        one the scheduler wrapped is silenced: it is called first, as torch wants)."""
        if self.scheduler is not None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Seems like `optimizer.step\\(\\)` has been overridden")
                self.scheduler.step()

    def clip(self, torch, max_grad_norm):
        """``clip_grad_norm_`` on the current gradients (``None`` without ``max_grad_norm``)."""
        if max_grad_norm is None:
            return None
        return float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_grad_norm))


@dataclass
class TorchStep:
    """One step of the float32 run: its state before, what it computed, its state after.

    ``slots``: the optimizer's per-parameter state ``{slot: {name: array}}``; ``state_dict``:
    ``optimizer.state_dict()`` before the step (a deep copy)."""

    params: dict
    buffers: dict
    hyper: list
    state_dict: dict
    scheduler_state: dict | None
    loss: np.ndarray = None
    grads: dict = field(default_factory=dict)
    total_norm: float | None = None
    clipped: dict = field(default_factory=dict)
    after_params: dict = field(default_factory=dict)
    after_buffers: dict = field(default_factory=dict)
    after_slots: dict = field(default_factory=dict)
    draws: list = field(default_factory=list)


def grad_norm(grads: dict) -> float:
    """The 2-norm of all gradients together (float64)."""
    return float(np.sqrt(sum(float(np.sum(np.asarray(g, np.float64) ** 2)) for g in grads.values())))


def torch_step(torch, recipe: Recipe, x, y, max_grad_norm) -> TorchStep:
    """One training step of ``recipe`` (forward, loss, backward, clipping, ``optimizer.step()``,
    ``scheduler.step()``), recorded."""
    rec = TorchStep(recipe.params(), recipe.buffers(), recipe.hyper(),
                    copy.deepcopy(recipe.optimizer.state_dict()),
                    None if recipe.scheduler is None else copy.deepcopy(recipe.scheduler.state_dict()))
    rec.loss = recipe.forward_backward(torch, x, y)
    rec.draws = recipe.draws
    rec.grads = recipe._grads()
    rec.total_norm = recipe.clip(torch, max_grad_norm)
    rec.clipped = recipe._grads()
    rec.after_buffers = recipe.buffers()
    recipe.optimizer.step()
    recipe.step_scheduler()
    rec.after_params = recipe.params()
    rec.after_slots = recipe.slots()
    return rec


@dataclass
class Reference:
    """The float64 reference of one step from the float32 run's state: the loss, gradients and
    buffers of a float64 forward and backward; the clipping of torch's float32 gradients; the
    optimizer step on torch's clipped float32 gradients (each in float64)."""

    loss: np.ndarray
    grads: dict
    buffers: dict
    total_norm: float | None
    clipped: dict
    params: dict
    slots: dict


def reference_step(torch, scratch: Recipe, rec: TorchStep, x, y, max_grad_norm) -> Reference:
    """:class:`Reference` of step ``rec`` computed by ``scratch`` (a float64 copy of the recipe,
    loaded here with ``rec``'s state before the step; its scheduler is not stepped)."""
    with torch.no_grad():
        for n, p in scratch.model.named_parameters():
            p.copy_(to_torch(rec.params[n]))
        for n, b in scratch.model.named_buffers():
            b.copy_(to_torch(rec.buffers[n]))
    scratch.optimizer.load_state_dict(copy.deepcopy(rec.state_dict))  # cast to float64 by torch
    loss = scratch.forward_backward(torch, x, y, rec.draws)
    grads, buffers = scratch._grads(), scratch.buffers()
    scratch._set_grads(torch, rec.grads)
    total_norm = scratch.clip(torch, max_grad_norm)
    clipped = scratch._grads()
    scratch._set_grads(torch, rec.clipped)
    scratch.optimizer.step()
    return Reference(loss, grads, buffers, total_norm, clipped, scratch.params(), scratch.slots())
