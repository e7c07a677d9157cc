"""``torch.optim.RMSprop``."""
from __future__ import annotations

import jax.numpy as jnp

from ._common import check_rules, is_scheduled, lerp
from .adam import FLAGS_DOC
from .optimizer import Optimizer


class RMSprop(Optimizer):
    """torch's RMSprop: ``eps`` added outside the square root (optax's ``rmsprop`` adds it inside
    by default), ``centered`` subtracting the squared mean gradient, momentum on ``grad / avg``.

    Arguments:
      params: ``None`` or torch's list of parameter groups (see :class:`Optimizer`).
      lr, alpha, eps, weight_decay, momentum, centered, maximize: as in ``torch.optim.RMSprop``;
        state ``square_avg``, ``momentum_buffer`` (with momentum, or a scheduler cycling it) and
        ``grad_avg`` (centered).
      {flags}
    """

    slots = ("square_avg", "momentum_buffer", "grad_avg")
    momentum_key = "momentum"
    rules = {"lr": ">= 0", "eps": ">= 0", "momentum": ">= 0", "weight_decay": ">= 0",
             "alpha": ">= 0"}

    def __init__(self, params=None, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered, capturable=capturable,
                         foreach=foreach, maximize=maximize, differentiable=differentiable)

    def _check(self, hyper, where):
        super()._check(hyper, where)
        check_rules(type(self).__name__, hyper, where, self.rules)

    def uses_slot(self, name, group):
        """``momentum_buffer`` with momentum (or a scheduler moving it), ``grad_avg`` centered."""
        if name == "momentum_buffer":
            return group["momentum"] > 0 or "momentum" in self.scheduled_keys()
        if name == "grad_avg":
            return bool(group["centered"])
        return True

    def step_leaf(self, grad, param, slots, hyper, step):
        """torch's ``_single_tensor_rmsprop`` for one parameter (see :meth:`Optimizer.step_leaf`)."""
        static, dtype = hyper.static, param.dtype
        lr, alpha = hyper["lr"].astype(dtype), static["alpha"]
        if static["maximize"]:
            grad = -grad
        if static["weight_decay"] != 0:
            grad = grad + static["weight_decay"] * param
        square_avg = slots["square_avg"] * alpha + (1 - alpha) * grad * grad
        slots = dict(slots, square_avg=square_avg)
        if static["centered"]:
            slots["grad_avg"] = lerp(slots["grad_avg"], grad, 1 - alpha)
            avg = jnp.sqrt(square_avg + -1 * slots["grad_avg"] * slots["grad_avg"])
        else:
            avg = jnp.sqrt(square_avg)
        avg = avg + static["eps"]
        if is_scheduled(hyper, "momentum"):
            # torch branches on the scheduled value each step (`if momentum > 0`)
            momentum = hyper["momentum"].astype(dtype)
            buf = jnp.where(momentum > 0, slots["momentum_buffer"] * momentum + grad / avg,
                            slots["momentum_buffer"])
            slots["momentum_buffer"] = buf
            return jnp.where(momentum > 0, param + -lr * buf, param + -lr * grad / avg), slots
        if static["momentum"] > 0:
            buf = slots["momentum_buffer"] * static["momentum"] + grad / avg
            slots["momentum_buffer"] = buf
            return param + -lr * buf, slots
        return param + -lr * grad / avg, slots


RMSprop.__doc__ = RMSprop.__doc__.format(flags=FLAGS_DOC)
