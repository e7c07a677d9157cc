"""Regression losses with torch.nn.functional's names, signatures and semantics.

``mse_loss``, ``l1_loss``, ``smooth_l1_loss`` and ``huber_loss`` broadcast the target
against the input (with torch's warning when their shapes differ). Their gradients are
torch's at the kinks: ``l1``'s is ``sign(d)`` (0 at ``d = 0``); smooth-L1 and Huber use the
quadratic branch strictly inside ``|d| < beta`` (``delta``), where both branches' slopes meet.
torch 2.13's optional elementwise ``weight`` of ``mse_loss`` / ``l1_loss`` makes ``'mean'``
the weighted average (divided by the summed weights); ``huber_loss``'s ``'mean'`` stays the
plain mean of the weighted losses. float16/bfloat16 inputs compute in float32 and round once.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from .._autocast import cast
from . import _args
from . import _loss_args as L


def _abs(d):
    """``|d|`` whose gradient is ``sign(d)`` (0 at 0, as torch's), not jax's 1 at 0."""
    return d * lax.stop_gradient(jnp.sign(d))


def _pointwise(fn, input, target, size_average, reduce, reduction, weight, autocast=True):
    """(reduction, input, target, weight, compute dtype, result dtype) of an elementwise loss:
    torch's order of warning, legacy reduction, broadcast and weight checks."""
    L.warn_broadcast(fn, input, target)
    if size_average is not None or reduce is not None:
        reduction = L.legacy_reduction(size_average, reduce)
    if autocast:
        input, target = cast(fn, input, target)
    L.check_floating_input(fn, "input", input)
    L.broadcast_shape(fn, ("input", input), ("target", target))
    if weight is None:
        reduction = L.reduction(fn, reduction)
    else:
        if L.shape_of(weight) != L.shape_of(input):
            raise ValueError(f"{fn}: weight must have the input's shape {L.shape_of(input)} "
                             f"(Weights and input must have the same size), got weight of shape "
                             f"{L.shape_of(weight)}")
        reduction = L.reduction(fn, reduction, alias=False)
    dtypes = [input.dtype, target.dtype] + ([weight.dtype] if weight is not None else [])
    dtype = jnp.result_type(*dtypes)
    return reduction, input, target, weight, _args.opmath(dtype), dtype


def _weighted(loss, weight, reduction, mean_by_weight=True):
    if weight is None:
        return L.reduce_loss(loss, reduction)
    loss = loss * weight.astype(loss.dtype)
    if reduction == "mean" and mean_by_weight:
        return jnp.sum(loss) / jnp.sum(weight.astype(loss.dtype))
    return L.reduce_loss(loss, reduction)


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
             weight=None):
    """Mean squared error, optionally weighted (``F.mse_loss``).

    **Arguments:**

    - ``input``: any shape; ``target`` broadcasts against it (torch warns if the shapes differ).
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.
    - ``weight``: optional, of the input's shape, multiplying each squared error; ``'mean'``
      then divides by ``weight.sum()``.
    """
    fn = "mse_loss"
    reduction, input, target, weight, acc, dtype = _pointwise(
        fn, input, target, size_average, reduce, reduction, weight, autocast=weight is None)
    d = input.astype(acc) - target.astype(acc)
    return _weighted(d * d, weight, reduction).astype(dtype)


def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
            weight=None):
    """Mean absolute error, optionally weighted (``F.l1_loss``); gradient ``sign(d)``, 0 at 0.

    **Arguments:**

    - ``input``: any shape; ``target`` broadcasts against it (torch warns if the shapes differ).
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.
    - ``weight``: optional, of the input's shape, multiplying each absolute error; ``'mean'``
      then divides by ``weight.sum()``.
    """
    fn = "l1_loss"
    reduction, input, target, weight, acc, dtype = _pointwise(
        fn, input, target, size_average, reduce, reduction, weight, autocast=weight is None)
    return _weighted(_abs(input.astype(acc) - target.astype(acc)), weight, reduction).astype(dtype)


def _smooth_l1(d, beta):
    z = _abs(d)
    return jnp.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0):
    """Smooth L1: ``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (``F.smooth_l1_loss``).

    **Arguments:**

    - ``input``: any shape; ``target`` broadcasts against it (torch warns if the shapes differ).
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.
    - ``beta``: the threshold, >= 0; ``beta = 0`` is the L1 loss.
    """
    fn = "smooth_l1_loss"
    reduction, input, target, _, acc, dtype = _pointwise(
        fn, input, target, size_average, reduce, reduction, None)
    L.check_positive(fn, "beta", beta, strict=False)
    d = input.astype(acc) - target.astype(acc)
    loss = _abs(d) if beta == 0 else _smooth_l1(d, beta)
    return L.reduce_loss(loss, reduction).astype(dtype)


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0, weight=None):
    """Huber: ``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)`` (``F.huber_loss``).

    **Arguments:**

    - ``input``: any shape; ``target`` broadcasts against it (torch warns if the shapes differ).
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.
    - ``delta``: the threshold, > 0.
    - ``weight``: optional, of the input's shape, multiplying each loss; ``'mean'`` stays the
      plain mean of the weighted losses (as torch's).
    """
    fn = "huber_loss"
    reduction, input, target, weight, acc, dtype = _pointwise(
        fn, input, target, None, None, reduction, weight)
    L.check_positive(fn, "delta", delta)
    z = _abs(input.astype(acc) - target.astype(acc))
    loss = jnp.where(z < delta, 0.5 * z * z, delta * (z - 0.5 * delta))
    return _weighted(loss, weight, reduction, mean_by_weight=False).astype(dtype)


def poisson_nll_loss(input, target, log_input: bool = True, full: bool = False,
                     size_average=None, eps: float = 1e-8, reduce=None, reduction: str = "mean"):
    """Poisson negative log likelihood (``F.poisson_nll_loss``).

    **Arguments:**

    - ``input``: the expectation (its log with ``log_input``), any shape.
    - ``target``: Poisson samples, broadcastable against the input.
    - ``log_input``: the loss is ``exp(x) - t x``; otherwise ``x - t log(x + eps)``.
    - ``full``: add the Stirling term ``t log t - t + 0.5 log(2 pi t)`` where ``t > 1``.
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``eps``: keeps ``log`` finite at ``x = 0`` when ``log_input`` is ``False``.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.
    """
    fn = "poisson_nll_loss"
    reduction = L.reduction(fn, reduction, size_average, reduce, alias=False)
    input, target = cast(fn, input, target)
    L.check_floating_input(fn, "input", input)
    L.broadcast_shape(fn, ("input", input), ("target", target))
    dtype = jnp.result_type(input.dtype, target.dtype)
    acc = _args.opmath(dtype)
    x, t = input.astype(acc), target.astype(acc)
    loss = jnp.exp(x) - t * x if log_input else x - t * jnp.log(x + eps)
    if full:
        stirling = t * jnp.log(t) - t + 0.5 * jnp.log(2 * math.pi * t)
        loss = loss + jnp.where(t <= 1, jnp.zeros((), acc), stirling)
    return L.reduce_loss(loss, reduction).astype(dtype)


def _gaussian_var(fn, input, var):
    """torch's rules for ``var``: a number, the input's shape, the input's shape without its last
    dim (one variance per row), or the input's rank with one mismatched dim of size 1."""
    if _args.is_number(var):
        if var < 0:
            raise ValueError(f"{fn}: var must be non-negative (var has negative entry/entries), "
                             f"got var={var}")
        return jnp.full(input.shape, var, input.dtype)
    values = L.concrete(var)
    if values is not None and _any_negative(values):
        raise ValueError(f"{fn}: var must be non-negative (var has negative entry/entries), got "
                         f"a var value {values[values < 0].flat[0]}")
    shape, vshape = tuple(input.shape), L.shape_of(var)
    if vshape == shape:
        return var
    if shape[:-1] == vshape:
        return var[..., None]
    if len(shape) == len(vshape) and sum(v for s, v in zip(shape, vshape) if s != v) == 1:
        return var
    raise ValueError(f"{fn}: var must have the input's shape {shape}, that shape without its "
                     f"last dim, or one dim of size 1 where they differ (var is of incorrect "
                     f"size), got var of shape {vshape}")


def _any_negative(values) -> bool:
    return bool(values.size) and bool((values < 0).any())


def gaussian_nll_loss(input, target, var, full: bool = False, eps: float = 1e-6,
                      reduction: str = "mean"):
    """Gaussian negative log likelihood ``0.5 (log v + (x - t)^2 / v)`` (``F.gaussian_nll_loss``).

    **Arguments:**

    - ``input``: the expectations, any shape; ``target`` broadcasts against it.
    - ``var``: non-negative variances: a number, the input's shape, its shape without the last
      dim, or its shape with one dim of size 1 (broadcast there).
    - ``full``: add the constant ``0.5 log(2 pi)``.
    - ``eps``: variances are clamped to at least ``eps``; as in torch the clamp passes the
      gradient straight through to ``var``.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.

    A negative ``var`` raises when concrete; under a trace it gives NaN.
    """
    fn = "gaussian_nll_loss"
    L.check_floating_input(fn, "input", input)
    var = _gaussian_var(fn, input, var)
    reduction = L.reduction(fn, reduction, alias=False)
    dtype = jnp.result_type(input.dtype, target.dtype, var.dtype)
    acc = _args.opmath(dtype)
    x, t, v = input.astype(acc), target.astype(acc), var.astype(acc)
    clamped = lax.stop_gradient(jnp.maximum(v, eps)) + (v - lax.stop_gradient(v))
    loss = 0.5 * (jnp.log(clamped) + (x - t) ** 2 / clamped)
    loss = jnp.where(v < 0, jnp.full((), jnp.nan, acc), loss)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return L.reduce_loss(loss, reduction).astype(dtype)
