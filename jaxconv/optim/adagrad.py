"""``torch.optim.Adagrad`` and ``torch.optim.Adadelta``."""
from __future__ import annotations

import jax.numpy as jnp

from ._common import as_float, check_rules, scalar_dtype
from .adam import FLAGS_DOC
from .optimizer import Optimizer


class Adagrad(Optimizer):
    """torch's Adagrad: the learning rate decays as ``lr / (1 + (step - 1) * lr_decay)``; the
    accumulated ``sum`` of squared gradients starts at ``initial_accumulator_value`` (the
    constructor's, for every group, as in torch).

    Arguments:
      params: ``None`` or torch's list of parameter groups (see :class:`Optimizer`).
      lr, lr_decay, weight_decay, initial_accumulator_value, eps, maximize: as in
        ``torch.optim.Adagrad``; state ``sum``.
      {flags}
    """

    slots = ("sum",)
    rules = {"lr": ">= 0", "lr_decay": ">= 0", "weight_decay": ">= 0",
             "initial_accumulator_value": ">= 0", "eps": ">= 0"}

    def __init__(self, params=None, lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None):
        super().__init__(params, lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                         maximize=maximize, differentiable=differentiable, fused=fused)

    def _check(self, hyper, where):
        super()._check(hyper, where)
        check_rules(type(self).__name__, hyper, where, self.rules)

    def init_slot(self, name, param, group):
        """``sum`` starts at the constructor's ``initial_accumulator_value``: torch fills every
        group's state with it in ``__init__``, whatever a group sets."""
        return jnp.full_like(param, self.defaults["initial_accumulator_value"])

    def step_leaf(self, grad, param, slots, hyper, step):
        """torch's ``_single_tensor_adagrad`` for one parameter (see :meth:`Optimizer.step_leaf`)."""
        static, dtype = hyper.static, param.dtype
        if static["maximize"]:
            grad = -grad
        if static["weight_decay"] != 0:
            grad = grad + static["weight_decay"] * param
        clr = hyper["lr"] / (1 + (as_float(step, scalar_dtype(hyper)) - 1) * static["lr_decay"])
        state_sum = slots["sum"] + grad * grad
        std = jnp.sqrt(state_sum) + static["eps"]
        return param + (-clr).astype(dtype) * grad / std, dict(slots, sum=state_sum)


class Adadelta(Optimizer):
    """torch's Adadelta: ``eps`` inside both square roots; ``lr`` (1.0 by default) scales the
    delta.

    Arguments:
      params: ``None`` or torch's list of parameter groups (see :class:`Optimizer`).
      lr, rho, eps, weight_decay, maximize: as in ``torch.optim.Adadelta``; state
        ``square_avg``, ``acc_delta``.
      {flags}
    """

    slots = ("square_avg", "acc_delta")
    rules = {"lr": ">= 0", "rho": "in [0, 1]", "eps": ">= 0", "weight_decay": ">= 0"}

    def __init__(self, params=None, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach: bool | None = None, *,
                 capturable: bool = False, maximize: bool = False, differentiable: bool = False):
        super().__init__(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                         maximize=maximize, capturable=capturable, foreach=foreach,
                         differentiable=differentiable)

    def _check(self, hyper, where):
        super()._check(hyper, where)
        check_rules(type(self).__name__, hyper, where, self.rules)

    def step_leaf(self, grad, param, slots, hyper, step):
        """torch's ``_single_tensor_adadelta`` for one parameter (see :meth:`Optimizer.step_leaf`)."""
        static, dtype = hyper.static, param.dtype
        rho, eps = static["rho"], static["eps"]
        if static["maximize"]:
            grad = -grad
        if static["weight_decay"] != 0:
            grad = grad + static["weight_decay"] * param
        square_avg = slots["square_avg"] * rho + (1 - rho) * grad * grad
        std = jnp.sqrt(square_avg + eps)
        delta = jnp.sqrt(slots["acc_delta"] + eps) / std * grad
        acc_delta = slots["acc_delta"] * rho + (1 - rho) * delta * delta
        new = param + -hyper["lr"].astype(dtype) * delta
        return new, dict(slots, square_avg=square_avg, acc_delta=acc_delta)


Adagrad.__doc__ = Adagrad.__doc__.format(flags=FLAGS_DOC)
Adadelta.__doc__ = Adadelta.__doc__.format(flags=FLAGS_DOC)
