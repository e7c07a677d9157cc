"""``torch.optim.SGD``."""
from __future__ import annotations

import jax.numpy as jnp

from .optimizer import Optimizer


class SGD(Optimizer):
    """torch's SGD: weight decay into the gradient, then momentum with dampening, then nesterov.

    Arguments:
      params: ``None`` or torch's list of parameter groups (see :class:`Optimizer`).
      lr, momentum, dampening, weight_decay, nesterov, maximize: as in ``torch.optim.SGD``. The
        momentum buffer starts as the first gradient, as torch's does.
      foreach, fused: accepted and ignored (see :meth:`Optimizer._check`); differentiable: refused.
    """

    slots = ("momentum_buffer",)
    momentum_key = "momentum"

    def __init__(self, params=None, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                         foreach=foreach, differentiable=differentiable, fused=fused)

    def uses_slot(self, name, group):
        """The momentum buffer, for a group with momentum (or a scheduler cycling it)."""
        return group["momentum"] != 0 or "momentum" in self.scheduled_keys()

    def _check(self, hyper, where):
        super()._check(hyper, where)
        for key in ("momentum", "weight_decay"):
            if hyper[key] < 0:
                raise ValueError(f"SGD: {key}{where} must be >= 0, got {hyper[key]}")
        if hyper["nesterov"] and (hyper["momentum"] <= 0 or hyper["dampening"] != 0):
            raise ValueError(f"SGD: nesterov{where} requires momentum > 0 and dampening == 0, got "
                             f"momentum={hyper['momentum']}, dampening={hyper['dampening']}")

    def step_leaf(self, grad, param, slots, hyper, step):
        """torch's ``_single_tensor_sgd`` for one parameter (see :meth:`Optimizer.step_leaf`)."""
        static = hyper.static
        if static["maximize"]:
            grad = -grad
        if static["weight_decay"] != 0:
            grad = grad + static["weight_decay"] * param
        if static["momentum"] != 0 or "momentum" in hyper.scheduled:
            buf = slots["momentum_buffer"]
            buf = jnp.where(step == 1, grad, buf * hyper["momentum"] + (1 - hyper["dampening"]) * grad)
            slots = dict(slots, momentum_buffer=buf)
            grad = grad + hyper["momentum"] * buf if static["nesterov"] else buf
        return param - hyper["lr"].astype(param.dtype) * grad, slots
