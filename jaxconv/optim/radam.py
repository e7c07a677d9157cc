"""``torch.optim.RAdam``."""
from __future__ import annotations

import jax.numpy as jnp

from ._common import one_minus_pow, radam_rho, scalar_dtype
from .adam import FLAGS_DOC, AdamFamily


class RAdam(AdamFamily):
    """torch's RAdam: Adam whose adaptive step is rectified by ``rect(rho_t)`` once ``rho_t > 5``
    and plain bias-corrected momentum before.

    ``rho_t`` is computed without torch's float cancellation (see
    :func:`jaxconv.optim._common.radam_rho`), so float32 state agrees with torch's double.

    Arguments:
      params: ``None`` or torch's list of parameter groups (see :class:`Optimizer`).
      lr, betas, eps, weight_decay, decoupled_weight_decay, maximize: as in
        ``torch.optim.RAdam``; state ``exp_avg``, ``exp_avg_sq``.
      {flags}
    """

    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, params=None, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, decoupled_weight_decay: bool = False,
                 *, foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                         maximize=maximize, foreach=foreach, capturable=capturable,
                         decoupled_weight_decay=decoupled_weight_decay,
                         differentiable=differentiable)

    def step_leaf(self, grad, param, slots, hyper, step):
        """torch's ``_single_tensor_radam`` for one parameter (see :meth:`Optimizer.step_leaf`)."""
        static, dtype, sdt = hyper.static, param.dtype, scalar_dtype(hyper)
        beta1, beta2 = hyper["betas"]
        lr = hyper["lr"].astype(dtype)
        if static["maximize"]:
            grad = -grad
        grad, param = self.decay(grad, param, hyper)
        exp_avg, exp_avg_sq = self.moments(grad, slots, beta1, beta2)
        bias_correction1 = one_minus_pow(beta1, step, sdt)
        bias_correction2 = one_minus_pow(beta2, step, sdt)
        corrected = exp_avg / bias_correction1.astype(dtype)
        rho_t, rho_inf = radam_rho(beta2, step, sdt)
        # torch computes rect only where rho_t > 5; clamp so the unused branch stays finite
        rho = jnp.maximum(rho_t, 5.0)
        rect = jnp.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        adaptive_lr = jnp.sqrt(bias_correction2).astype(dtype) / (jnp.sqrt(exp_avg_sq) + static["eps"])
        rectified = param + -1.0 * (corrected * lr * adaptive_lr * rect.astype(dtype))
        plain = param + -1.0 * (corrected * lr)
        return jnp.where(rho_t > 5.0, rectified, plain), dict(exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)


RAdam.__doc__ = RAdam.__doc__.format(flags=FLAGS_DOC)
