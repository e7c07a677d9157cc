"""What torch's optimizers share beyond the base: argument rules and torch's scalar math.

Precision. torch's single-tensor kernels compute per-step scalars (bias corrections
``1 - beta**step``, ``lr / bias_correction``, RAdam's ``rho_t``) in Python double and hand them
to tensor ops, which round them to the parameter's dtype. Here the step is traced, so those
scalars are computed in the state's float dtype (float32 unless x64), accurately: ``1 - beta**t``
as ``-expm1(t * log(beta))`` with ``log(beta)`` taken in Python, never as a float32 ``1 - 0.999**t``
(which loses four digits to cancellation). Constants of static hyperparameters (``1 - beta2``)
stay Python floats, computed in float64 and rounded once where they meet an array.
"""
from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import jax
import jax.numpy as jnp

#: torch's range checks: the rule's text -> the predicate (false for NaN, as torch's ``0.0 <= v``).
_RULES = {
    ">= 0": lambda v: 0.0 <= v,
    "in [0, 1)": lambda v: 0.0 <= v < 1.0,
    "in [0, 1]": lambda v: 0.0 <= v <= 1.0,
}


def check_rules(owner: str, hyper, where: str, rules: dict[str, str]) -> None:
    """Raise torch's ValueError where a hyperparameter breaks its rule, naming argument, rule and
    value. ``rules`` maps a name (``'eps'``, or ``'betas[0]'`` for an element) to a key of
    :data:`_RULES`."""
    for key, rule in rules.items():
        if "[" in key:
            base, index = key[:-1].split("[")
            value = hyper[base][int(index)]
        else:
            value = hyper[key]
        if not _RULES[rule](value):
            raise ValueError(f"{owner}: {key}{where} must be {rule}, got {value!r}")


def check_betas_are_floats(owner: str, betas, where: str) -> None:
    """torch's Adam/AdamW rule: both betas Python floats (``(0, 0.999)`` is refused there)."""
    if not all(isinstance(b, float) for b in betas):
        raise ValueError(f"{owner}: betas{where} must both be floats, as torch's Adam requires, "
                         f"got {tuple(betas)!r}; write 0.0 for 0")


def scalar_dtype(hyper):
    """The float dtype of the state's per-step scalars (the dtype of the scheduled ``lr``)."""
    return hyper["lr"].dtype


def as_float(step, dtype):
    """The step count as a float of ``dtype``."""
    return jnp.asarray(step).astype(dtype)


def log_of(beta, dtype):
    """``log(beta)``: in Python for a Python float (rounded once), in ``dtype`` for an array."""
    if isinstance(beta, (int, float)):
        return math.log(beta) if beta > 0 else -math.inf
    return jnp.log(beta.astype(dtype))


def one_minus_pow(beta, step, dtype):
    """``1 - beta**step`` (torch's bias correction) without cancellation, in ``dtype``."""
    return -jnp.expm1(as_float(step, dtype) * log_of(beta, dtype))


def lerp(start, end, weight):
    """torch's CPU ``start.lerp_(end, weight)``: ``start + w * (end - start)`` for ``|w| < 0.5``,
    else ``end + (w - 1) * (end - start)``, with the weight rounded to the tensors' dtype first."""
    w = jnp.asarray(weight, start.dtype)
    diff = end - start
    if isinstance(weight, (int, float)):
        return start + w * diff if abs(weight) < 0.5 else end + (w - 1) * diff
    return jnp.where(jnp.abs(w) < 0.5, start + w * diff, end + (w - 1) * diff)


def decay_decoupled(param, lr, weight_decay):
    """torch's decoupled weight decay ``param.mul_(1 - lr * weight_decay)``."""
    return param * (1 - lr * weight_decay).astype(param.dtype)


# --------------------------------------------------------------------------------- RAdam's rho_t
def _bernoulli_coefficients(count: int) -> list[float]:
    """Taylor coefficients of ``f(u) = 1 - u / expm1(u)`` = ``u/2 - sum B_2k u^2k / (2k)!``."""
    b = [Fraction(1)]                            # Bernoulli numbers by their recurrence
    for m in range(1, 2 * count + 1):
        b.append(-sum(math.comb(m + 1, k) * b[k] for k in range(m)) / (m + 1))
    coeffs = [0.0, 0.5]
    for n in range(2, 2 * count + 1):
        coeffs.append(float(-b[n] / math.factorial(n)))
    return coeffs


#: f's series through u**14: truncation below 1e-17 relative for u <= 0.5.
_F_SERIES = _bernoulli_coefficients(7)
_F_SERIES_MAX = 0.5


def _one_minus_u_over_expm1(u):
    """``1 - u / expm1(u)`` for ``u > 0``, accurate to the dtype's rounding (a series where the
    direct formula cancels)."""
    small = jnp.minimum(u, _F_SERIES_MAX)
    series = jnp.zeros_like(u)
    for c in reversed(_F_SERIES):
        series = series * small + c
    return jnp.where(u <= _F_SERIES_MAX, series, 1 - u / jnp.expm1(u))


def radam_rho(beta2: float, step, dtype):
    """``(rho_t, rho_inf)`` of RAdam, ``rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)``.

    ``rho_inf = 2 / (1 - beta2) - 1`` is ~2000 and ``rho_t`` a few units in the first steps, so
    the direct formula cancels. With ``L = -log(beta2)`` and ``u = t L``,
    ``rho_t = (2/(1 - beta2) - 2/L - 1) + (2/L) (1 - u/expm1(u))``: the first term is a constant
    (computed in 50 digits, rounded once), the second has no cancellation."""
    rho_inf = 2 / (1 - beta2) - 1
    if beta2 == 0:  # beta2**t = 0 for every t >= 1
        return jnp.ones((), dtype), rho_inf
    with localcontext() as ctx:
        ctx.prec = 50
        b = Decimal(beta2)
        minus_log = -b.ln()
        constant = float(2 / (1 - b) - 2 / minus_log - 1)
        scale = float(2 / minus_log)
    u = as_float(step, dtype) * float(minus_log)
    return constant + scale * _one_minus_u_over_expm1(u), rho_inf


def is_scheduled(hyper, key: str) -> bool:
    """Whether a scheduler moves ``key`` (its value is then a traced array)."""
    return key in getattr(hyper, "scheduled", ()) or isinstance(hyper.get(key), jax.Array)
