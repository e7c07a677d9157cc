"""``torch.optim.NAdam``."""
from __future__ import annotations

import math

import jax.numpy as jnp

from ._common import as_float, check_rules, one_minus_pow, scalar_dtype
from .adam import FLAGS_DOC, AdamFamily

#: torch keeps ``mu_product`` as a float32 tensor (its scalar dtype under the default dtype).
MU_PRODUCT_DTYPE = jnp.float32


class NAdam(AdamFamily):
    """torch's NAdam: Nesterov momentum in Adam with the momentum schedule
    ``mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))``.

    Arguments:
      params: ``None`` or torch's list of parameter groups (see :class:`Optimizer`).
      lr, betas, eps, weight_decay, momentum_decay, decoupled_weight_decay, maximize: as in
        ``torch.optim.NAdam``; state ``exp_avg``, ``exp_avg_sq`` and ``mu_product`` (a 0-d
        float32 leaf per parameter, the product of the ``mu_t``, multiplied in float32 as torch's
        tensor is).
      {flags}
    """

    slots = ("exp_avg", "exp_avg_sq", "mu_product")

    def __init__(self, params=None, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                         momentum_decay=momentum_decay,
                         decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                         foreach=foreach, capturable=capturable, differentiable=differentiable)

    def _check(self, hyper, where):
        super()._check(hyper, where)
        check_rules(type(self).__name__, hyper, where, {"momentum_decay": ">= 0"})

    def init_slot(self, name, param, group):
        """``mu_product`` starts at 1 (0-d float32), the moments at zeros."""
        if name == "mu_product":
            return jnp.ones((), MU_PRODUCT_DTYPE)
        return jnp.zeros_like(param)

    def step_leaf(self, grad, param, slots, hyper, step):
        """torch's ``_single_tensor_nadam`` for one parameter (see :meth:`Optimizer.step_leaf`)."""
        static, dtype, sdt = hyper.static, param.dtype, scalar_dtype(hyper)
        beta1, beta2 = hyper["betas"]
        lr, eps = hyper["lr"], static["eps"]
        if static["maximize"]:
            grad = -grad
        bias_correction2 = one_minus_pow(beta2, step, sdt)
        grad, param = self.decay(grad, param, hyper)
        # 0.96 ** (t * momentum_decay) with the log taken in Python
        decay_log = static["momentum_decay"] * math.log(0.96)
        t = as_float(step, sdt)
        mu = beta1 * (1.0 - 0.5 * jnp.exp(t * decay_log))
        mu_next = beta1 * (1.0 - 0.5 * jnp.exp((t + 1) * decay_log))
        mu_product = slots["mu_product"] * mu.astype(MU_PRODUCT_DTYPE)   # torch: float32 tensor
        exp_avg, exp_avg_sq = self.moments(grad, slots, beta1, beta2)
        denom = jnp.sqrt(exp_avg_sq / bias_correction2.astype(dtype)) + eps
        product = mu_product.astype(sdt)            # torch: mu_product.item(), a Python double
        mu_product_next = product * mu_next
        param = param + (-lr * (1.0 - mu) / (1.0 - product)).astype(dtype) * grad / denom
        param = param + ((-lr * mu_next) / (1.0 - mu_product_next)).astype(dtype) * exp_avg / denom
        return param, dict(exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, mu_product=mu_product)


NAdam.__doc__ = NAdam.__doc__.format(flags=FLAGS_DOC)
