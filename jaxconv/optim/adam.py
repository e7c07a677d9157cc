"""``torch.optim.Adam`` and ``torch.optim.AdamW``, and the base of torch's Adam family."""
from __future__ import annotations

import jax.numpy as jnp

from ._common import (
    check_betas_are_floats,
    check_rules,
    decay_decoupled,
    lerp,
    one_minus_pow,
    scalar_dtype,
)
from .optimizer import Optimizer

#: torch's implementation flags, as every optimizer's docstring states them.
FLAGS_DOC = """foreach, fused, capturable (those torch's class takes): accepted and ignored: they
        choose torch's kernel, not the math. Measured on CPU against torch's single-tensor
        kernel (Adam, AdamW, Adagrad, SGD, 10 steps): ``foreach`` is bitwise equal, ``fused``
        differs by float rounding only (a few ulp). differentiable: ``True`` is refused (see
        :meth:`Optimizer._check`)."""


class AdamFamily(Optimizer):
    """What torch's Adam-like optimizers share: ``betas``, whose ``beta1`` a momentum-cycling
    scheduler (``OneCycleLR``, ``CyclicLR``) moves, and torch's common range checks."""

    momentum_key = "beta1"
    rules = {"lr": ">= 0", "eps": ">= 0", "betas[0]": "in [0, 1)", "betas[1]": "in [0, 1)",
             "weight_decay": ">= 0"}

    def _check(self, hyper, where):
        super()._check(hyper, where)
        check_rules(type(self).__name__, hyper, where, self.rules)

    @staticmethod
    def decay(grad, param, hyper):
        """torch's weight decay: decoupled (``param *= 1 - lr * wd``) or coupled into the
        gradient (``grad += wd * param``). Returns ``(grad, param)``."""
        static = hyper.static
        wd = static["weight_decay"]
        if wd != 0:
            if static.get("decoupled_weight_decay"):
                param = decay_decoupled(param, hyper["lr"], wd)
            else:
                grad = grad + wd * param
        return grad, param

    @staticmethod
    def moments(grad, slots, beta1, beta2):
        """torch's ``exp_avg.lerp_(grad, 1 - beta1)`` and
        ``exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)``."""
        exp_avg = lerp(slots["exp_avg"], grad, 1 - beta1)
        exp_avg_sq = slots["exp_avg_sq"] * beta2 + (1 - beta2) * grad * grad
        return exp_avg, exp_avg_sq


class Adam(AdamFamily):
    """torch's Adam: weight decay coupled into the gradient (an L2 penalty) unless
    ``decoupled_weight_decay=True`` (then it is :class:`AdamW`).

    Arguments:
      params: ``None`` or torch's list of parameter groups (see :class:`Optimizer`).
      lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay: as in
        ``torch.optim.Adam``; state ``exp_avg``, ``exp_avg_sq`` and, with ``amsgrad``,
        ``max_exp_avg_sq``.
      {flags}

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxconv.optim import Adam
      >>> tx = Adam(lr=0.1)
      >>> params = {{"w": jnp.ones(2)}}
      >>> updates, state = tx.update({{"w": jnp.array([1.0, -2.0])}}, tx.init(params), params)
      >>> print(updates["w"])  # the first Adam step is -lr * sign(grad)
      [-0.1  0.1]
    """

    slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params=None, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=decoupled_weight_decay)

    def _check(self, hyper, where):
        super()._check(hyper, where)
        check_betas_are_floats(type(self).__name__, hyper["betas"], where)

    def uses_slot(self, name, group):
        """``max_exp_avg_sq`` only for an ``amsgrad`` group."""
        return name != "max_exp_avg_sq" or bool(group["amsgrad"])

    def step_leaf(self, grad, param, slots, hyper, step):
        """torch's ``_single_tensor_adam`` for one parameter (see :meth:`Optimizer.step_leaf`)."""
        static, dtype, sdt = hyper.static, param.dtype, scalar_dtype(hyper)
        beta1, beta2 = hyper["betas"]
        if static["maximize"]:
            grad = -grad
        grad, param = self.decay(grad, param, hyper)
        exp_avg, exp_avg_sq = self.moments(grad, slots, beta1, beta2)
        slots = dict(slots, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
        step_size = hyper["lr"] / one_minus_pow(beta1, step, sdt)
        bias_correction2_sqrt = jnp.sqrt(one_minus_pow(beta2, step, sdt)).astype(dtype)
        if static["amsgrad"]:
            slots["max_exp_avg_sq"] = jnp.maximum(slots["max_exp_avg_sq"], exp_avg_sq)
            denom = jnp.sqrt(slots["max_exp_avg_sq"]) / bias_correction2_sqrt + static["eps"]
        else:
            denom = jnp.sqrt(exp_avg_sq) / bias_correction2_sqrt + static["eps"]
        return param + (-step_size).astype(dtype) * exp_avg / denom, slots


class AdamW(Adam):
    """torch's AdamW: :class:`Adam` with decoupled weight decay (``param *= 1 - lr * wd`` before
    the moments), ``weight_decay=1e-2`` by default.

    Arguments:
      params: ``None`` or torch's list of parameter groups (see :class:`Optimizer`).
      lr, betas, eps, weight_decay, amsgrad, maximize: as in ``torch.optim.AdamW``.
      {flags}
    """

    def __init__(self, params=None, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True)


Adam.__doc__ = Adam.__doc__.format(flags=FLAGS_DOC)
AdamW.__doc__ = AdamW.__doc__.format(flags=FLAGS_DOC)
