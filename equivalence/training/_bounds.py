"""The bounds of :func:`~equivalence.training.compare_training`'s checks (derivations in
:mod:`equivalence.training.compare`), each returning a :class:`~.training_report.Check`."""
from __future__ import annotations

import numpy as np

from .. import tolerance as tol_mod
from .state import torch_hyper
from .training_report import FLOOR_ULPS, TRAJECTORY, Check


def _diff(a, e):
    """``|a - e|`` in float64, NaN/inf at the same places as agreement, on one side as inf."""
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    same = (np.isnan(a) & np.isnan(e)) | (np.isinf(a) & (a == e))
    with np.errstate(invalid="ignore"):
        d = np.where(same, 0.0, np.abs(a - e))
    return np.where(np.isnan(d), np.inf, d)


def _eps(x) -> float:
    return tol_mod.eps(np.asarray(x).dtype)


def own_rounding(t32, t64, running) -> np.ndarray:
    """A value's rounding estimate in one stage: ``max(E, |t32 - t64|)`` elementwise."""
    own = _diff(t32, t64) if np.shape(t64) == np.shape(t32) else np.zeros(np.shape(t32))
    return own if running is None else np.maximum(own, np.asarray(running, np.float64))


def normwise(step, stage, name, quantity, jax_value, t32, t64, c, carried=None) -> Check:
    """``||jax - t32|| <= c max(||R||, ||t32 - t64||) + FLOOR_ULPS eps ||t32||`` (``R``: the
    rounding the free run carries, or ``None``; integers: exact)."""
    t32 = np.asarray(t32)
    if np.shape(jax_value) != t32.shape:
        return Check(step, stage, name, quantity, float("inf"), float("nan"), float("inf"),
                     f"shape {np.shape(jax_value)} != torch's {t32.shape}")
    err = float(np.linalg.norm(_diff(jax_value, t32)))
    if not np.issubdtype(t32.dtype, np.inexact):
        return Check(step, stage, name, quantity, err, 0.5, err / 0.5)
    drift = float(np.linalg.norm(_diff(t32, t64)))
    own = 0.0 if carried is None else float(np.linalg.norm(np.nan_to_num(np.asarray(carried, np.float64))))
    bound = float(c * max(drift, own) + FLOOR_ULPS * _eps(t32) * np.linalg.norm(np.nan_to_num(t32.astype(np.float64)))
                  + np.finfo(np.float32).tiny)
    return Check(step, stage, name, quantity, err, bound, 0.0 if err == 0 else err / bound)


def start_allowance(params: dict) -> dict:
    """Each parameter's allowance before the first step, :data:`FLOOR_ULPS` ulps of its norm (the
    ``start`` check holds jaxconv's parameters to torch's to that)."""
    return {n: FLOOR_ULPS * _eps(p) * float(np.linalg.norm(np.asarray(p, np.float64))) for n, p in params.items()}


def loss_trajectory(step, jax_loss, t32, t64, own, grads: dict, allowed: dict, c) -> Check:
    """The free runs' loss at ``step``: :func:`normwise` with the rounding it carries taken from
    what the parameters' trajectories allow (first order, Cauchy-Schwarz per tensor):
    ``R = sum_p ||dL/dp|| A_p / c + own``, ``dL/dp`` torch's gradient at this step (``grads``),
    ``A_p`` the parameter's trajectory bound after the previous step (``allowed``, by torch
    name; :func:`start_allowance` before the first) and ``own`` this step's local rounding of
    the loss (its float64 sample ``|torch32 - ref64|``)."""
    carried = float(np.sum(own)) + sum(
        float(np.linalg.norm(np.nan_to_num(np.asarray(g, np.float64)))) * allowed[name] / c
        for name, g in grads.items() if name in allowed)
    return normwise(step, TRAJECTORY, "(loss)", "loss", jax_loss, t32, t64, c, np.float64(carried))


def elementwise(step, stage, name, quantity, jax_value, t32, t64, running, c) -> Check:
    """``|jax - t32| <= c max(E, |t32 - t64|) + FLOOR_ULPS eps |t32|`` elementwise (``E``: the
    running error bound of jaxconv's code, or ``None``)."""
    t32 = np.asarray(t32)
    tol = c * own_rounding(t32, t64, running) + FLOOR_ULPS * _eps(t32) * np.abs(t32.astype(np.float64)) + np.finfo(np.float32).tiny
    if not np.issubdtype(t32.dtype, np.inexact):
        tol = 0.5     # integers (a BatchNorm's counter) agree exactly
    e = tol_mod.errors(jax_value, t32, tol)
    return Check(step, stage, name, quantity, float(e["err_at"]), float(e["tol"]), float(e["ratio"]), e["note"])


#: The values a scheduler's formulas combine with the current one, per scheduled key (torch's
#: group entries): each step rounds relative to the largest, not to the current value (OneCycleLR
#: starts at max_lr / 25, computed from max_lr).
SCHEDULE_SCALES = {"lr": ("initial_lr", "max_lr", "min_lr"),
                   "momentum": ("base_momentum", "max_momentum"),
                   "beta1": ("base_momentum", "max_momentum")}


def schedule_checks(step, hyper_jax, groups, c, scheduler_steps=None) -> list:
    """The scheduled hyperparameters (``lr``, a cycled ``momentum`` / ``beta1``) per group,
    to ``c eps scheduler_steps`` (default ``step + 1``) relative to the largest value the
    schedule combines (:data:`SCHEDULE_SCALES`)."""
    scheduler_steps = step + 1 if scheduler_steps is None else scheduler_steps
    out = []
    for key, values in hyper_jax.items():
        if key == "initial_lr":
            continue
        values = np.asarray(values)
        for g, group in enumerate(groups):
            want = torch_hyper(group, key)
            scale = max([abs(want)] + [abs(float(group[k])) for k in SCHEDULE_SCALES.get(key, ())
                                       if isinstance(group.get(k), (int, float))])
            bound = float(c * _eps(values) * scheduler_steps * scale + np.finfo(np.float64).tiny)
            err = abs(float(values[g]) - want)
            out.append(Check(step, "schedule", f"group {g}", key, err, bound, err / bound))
    return out
