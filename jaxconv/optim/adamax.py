"""``torch.optim.Adamax``."""
from __future__ import annotations

import jax.numpy as jnp

from ._common import lerp, one_minus_pow, scalar_dtype
from .adam import FLAGS_DOC, AdamFamily


class Adamax(AdamFamily):
    """torch's Adamax: Adam with the infinity norm, ``exp_inf = max(beta2 * exp_inf, |grad| + eps)``.

    Arguments:
      params: ``None`` or torch's list of parameter groups (see :class:`Optimizer`).
      lr, betas, eps, weight_decay, maximize: as in ``torch.optim.Adamax``; state ``exp_avg``,
        ``exp_inf``.
      {flags}
    """

    slots = ("exp_avg", "exp_inf")

    def __init__(self, params=None, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, capturable: bool = False):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                         foreach=foreach, maximize=maximize, differentiable=differentiable,
                         capturable=capturable)

    def step_leaf(self, grad, param, slots, hyper, step):
        """torch's ``_single_tensor_adamax`` for one parameter (see :meth:`Optimizer.step_leaf`)."""
        static, dtype = hyper.static, param.dtype
        beta1, beta2 = hyper["betas"]
        if static["maximize"]:
            grad = -grad
        grad, param = self.decay(grad, param, hyper)
        exp_avg = lerp(slots["exp_avg"], grad, 1 - beta1)
        exp_inf = jnp.maximum(slots["exp_inf"] * beta2, jnp.abs(grad) + static["eps"])
        clr = hyper["lr"] / one_minus_pow(beta1, step, scalar_dtype(hyper))
        return param + (-clr).astype(dtype) * exp_avg / exp_inf, dict(exp_avg=exp_avg, exp_inf=exp_inf)


Adamax.__doc__ = Adamax.__doc__.format(flags=FLAGS_DOC)
