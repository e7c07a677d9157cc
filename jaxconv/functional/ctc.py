"""``ctc_loss`` with torch.nn.functional's signature and semantics, as a ``lax.scan`` in log space.

The forward variables ``alpha`` run over the blank-extended target ``l'`` (length ``2S + 1``)
as torch's CPU kernel runs them: ``alpha_t(s) = lp_t(l'_s) + log(alpha_{t-1}(s) +
alpha_{t-1}(s-1) + [l'_s != l'_{s-2}] alpha_{t-1}(s-2))``, and the loss is
``-log(alpha_{T-1}(2S) + alpha_{T-1}(2S-1))`` at each sample's own input length ``T``.

The gradient is torch's own formula, not the derivative of that expression: for
``t < input_length``, ``grad[t, c] = exp(lp[t, c]) - exp(log(sum_{s: l'_s = c} alpha_t(s)
beta_t(s)) + nll - lp[t, c])``, 0 for later steps. It is the true derivative plus
``exp(lp)``, which the ``log_softmax`` that produces ``log_probs`` cancels (its gradient sums
to zero over classes), so through a ``log_softmax`` both agree; on raw ``log_probs`` jaxconv
gives torch's numbers. With ``zero_infinity`` an infinite loss (an impossible alignment:
the input too short for the target) and its gradient become 0.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from .._autocast import cast
from . import _args
from . import _loss_args as L
from ._sharding import lead_like


def _logsumexp3(a, b, c):
    """torch's ``log(exp(a-m) + exp(b-m) + exp(c-m)) + m`` with ``m = 0`` when all are -inf."""
    m = jnp.maximum(jnp.maximum(a, b), c)
    m = jnp.where(m == -jnp.inf, jnp.zeros((), m.dtype), m)
    return jnp.log(jnp.exp(a - m) + jnp.exp(b - m) + jnp.exp(c - m)) + m


def _shift(x, k):
    """``x[..., s - k]`` along the last axis (``k > 0``: from the left; ``k < 0``: from the
    right), -inf where that falls outside."""
    pad = jnp.full(x.shape[:-1] + (abs(k),), -jnp.inf, x.dtype)
    return jnp.concatenate([pad, x[..., :-k]], -1) if k > 0 else jnp.concatenate([x[..., -k:], pad], -1)


def _alphas(lp_ext, skip, target_lengths):
    """``alpha`` for every step, ``(T, N, 2S + 1)``."""
    neg = jnp.full(lp_ext.shape[1:], -jnp.inf, lp_ext.dtype)
    s = jnp.arange(lp_ext.shape[-1])
    first = jnp.where((s == 0) | ((s == 1) & (target_lengths[:, None] > 0)), lp_ext[0], neg)

    def step(prev, lp_t):
        new = _logsumexp3(prev, _shift(prev, 1), jnp.where(skip, _shift(prev, 2), -jnp.inf)) + lp_t
        return new, new

    _, rest = lax.scan(step, first, lp_ext[1:])
    return jnp.concatenate([first[None], rest], 0)


def _betas(lp_ext, skip, input_lengths, target_lengths):
    """``beta`` for every step, ``(T, N, 2S + 1)``; -inf from each sample's input length on."""
    steps, _, width = lp_ext.shape
    s = jnp.arange(width)
    end = 2 * target_lengths[:, None]
    last = (s == end) | ((s == end - 1) & (target_lengths[:, None] > 0))
    skip_back = _shift(skip.astype(lp_ext.dtype), -2) > 0     # l'_{s+2} != l'_s

    def step(nxt, inputs):
        t, lp_t = inputs
        rec = _logsumexp3(nxt, _shift(nxt, -1), jnp.where(skip_back, _shift(nxt, -2), -jnp.inf)) + lp_t
        at_end = (t == input_lengths - 1)[:, None]
        before = (t < input_lengths - 1)[:, None]
        new = jnp.where(at_end, jnp.where(last, lp_t, -jnp.inf), jnp.where(before, rec, -jnp.inf))
        return new, new

    init = jnp.full(lp_ext.shape[1:], -jnp.inf, lp_ext.dtype)
    _, out = lax.scan(step, init, (jnp.arange(steps), lp_ext), reverse=True)
    return out


def _nll_from_alphas(alphas, input_lengths, target_lengths):
    batch = jnp.arange(alphas.shape[1])
    at_end = alphas[jnp.maximum(input_lengths - 1, 0), batch]               # (N, 2S + 1)
    l1 = jnp.take_along_axis(at_end, (2 * target_lengths)[:, None], -1)[:, 0]
    l2 = jnp.take_along_axis(at_end, jnp.maximum(2 * target_lengths - 1, 0)[:, None], -1)[:, 0]
    l2 = jnp.where(target_lengths > 0, l2, -jnp.inf)
    m = jnp.maximum(l1, l2)
    m = jnp.where(m == -jnp.inf, jnp.zeros((), m.dtype), m)
    nll = -(jnp.log(jnp.exp(l1 - m) + jnp.exp(l2 - m)) + m)
    return jnp.where(input_lengths == 0, jnp.where(target_lengths == 0, 0.0, jnp.inf).astype(nll.dtype), nll)


def _forward(log_probs, ext, skip, input_lengths, target_lengths, zero_infinity):
    """(loss, the extended-target log-probabilities, alphas, the raw negative log likelihood)."""
    index = jnp.broadcast_to(ext[None], (log_probs.shape[0],) + ext.shape)
    lp_ext = jnp.take_along_axis(log_probs, index, -1)                      # (T, N, 2S + 1)
    alphas = _alphas(lp_ext, skip, target_lengths)
    nll = _nll_from_alphas(alphas, input_lengths, target_lengths)
    out = jnp.where(jnp.isinf(nll), jnp.zeros((), nll.dtype), nll) if zero_infinity else nll
    return out, lp_ext, alphas, nll


@functools.partial(jax.custom_jvp, nondiff_argnums=(5,))
def _ctc_nll(log_probs, ext, skip, input_lengths, target_lengths, zero_infinity):
    return _forward(log_probs, ext, skip, input_lengths, target_lengths, zero_infinity)[0]


@_ctc_nll.defjvp
def _ctc_jvp(zero_infinity, primals, tangents):
    """The loss's tangent ``sum_{t,c} G[t, n, c] dlog_probs[t, n, c]`` with torch's gradient
    ``G`` (:func:`_ctc_grad`): linear in the tangent, so reverse mode transposes it into
    ``G * g``, and ``jax.jvp`` works as well."""
    log_probs, ext, skip, input_lengths, target_lengths = primals
    out, lp_ext, alphas, nll = _forward(log_probs, ext, skip, input_lengths, target_lengths,
                                        zero_infinity)
    grad = _ctc_grad(zero_infinity, log_probs, ext, skip, input_lengths, target_lengths, lp_ext,
                     alphas, nll)
    return out, jnp.sum(grad * tangents[0], axis=(0, 2))


def _ctc_grad(zero_infinity, log_probs, ext, skip, input_lengths, target_lengths, lp_ext, alphas, nll):
    """torch's gradient of each sample's loss with respect to ``log_probs``, ``(T, N, C)``."""
    betas = _betas(lp_ext, skip, input_lengths, target_lengths)
    ab = alphas + betas                                                     # (T, N, 2S + 1)
    m = jnp.max(ab, axis=-1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, jnp.zeros((), m.dtype))
    onehot = (ext[..., None] == jnp.arange(log_probs.shape[-1])).astype(ab.dtype)  # (N, 2S+1, C)
    collected = jnp.einsum("tns,nsc->tnc", jnp.exp(ab - m), onehot,
                           precision=lax.Precision.HIGHEST)
    log_collected = jnp.log(collected) + m
    grad = jnp.exp(log_probs) - jnp.exp(log_collected + nll[None, :, None] - log_probs)
    live = jnp.arange(log_probs.shape[0])[:, None] < input_lengths[None, :]
    if zero_infinity:
        live = live & ~jnp.isinf(nll)[None, :]
    return jnp.where(live[..., None], grad, jnp.zeros((), grad.dtype))
# Jitted so that eager calls reuse the compiled scans (a scan run eagerly compiles its body,
# a new closure, on every call); under an outer trace it is inlined as usual.
_ctc_nll_jit = jax.jit(_ctc_nll, static_argnums=(5,))


def _targets(fn, targets, target_lengths, batch, unbatched):
    """Padded ``(N, S)`` labels from padded or concatenated targets (checked where concrete)."""
    L.check_index_target(fn, targets, "targets")
    if unbatched:
        if targets.ndim != 1:
            raise ValueError(f"{fn}: for unbatched log_probs (T, C), targets must be 1-D (S,), got "
                             f"targets of shape {tuple(targets.shape)}")
        targets = targets[None]
    lengths = L.concrete(target_lengths)
    if targets.ndim == 2:
        if targets.shape[0] != batch:
            raise ValueError(f"{fn}: padded targets must be (N, S) with N = {batch}, got targets "
                             f"of shape {tuple(targets.shape)}")
        if lengths is not None and lengths.size and lengths.max() > targets.shape[1]:
            raise ValueError(f"{fn}: padded targets (N, S) need S >= max(target_lengths) = "
                             f"{lengths.max()}, got targets of shape {tuple(targets.shape)}")
        return targets, targets.shape[1]
    if targets.ndim != 1:
        raise ValueError(f"{fn}: targets must be padded (N, S) or concatenated (sum(target_lengths),), "
                         f"got targets of shape {tuple(targets.shape)}")
    if lengths is not None and int(lengths.sum()) != targets.shape[0]:
        raise ValueError(f"{fn}: concatenated targets must have sum(target_lengths) = "
                         f"{int(lengths.sum())} elements, got targets of shape {tuple(targets.shape)}")
    width = int(lengths.max()) if lengths is not None and lengths.size else targets.shape[0]
    offsets = jnp.cumsum(target_lengths) - target_lengths
    index = jnp.clip(offsets[:, None] + jnp.arange(width), 0, max(targets.shape[0] - 1, 0))
    padded = jnp.asarray(targets)[index] if targets.shape[0] else jnp.zeros((batch, width), targets.dtype)
    return padded, width


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank: int = 0,
             reduction: str = "mean", zero_infinity: bool = False):
    """Connectionist Temporal Classification loss (``F.ctc_loss``).

    **Arguments:**

    - ``log_probs``: ``(T, N, C)`` or unbatched ``(T, C)`` log-probabilities (usually a
      ``log_softmax`` over ``C``, blank included).
    - ``targets``: padded ``(N, S)`` or concatenated ``(sum(target_lengths),)`` class indices
      (``(S,)`` when unbatched), any integer dtype, blank excluded.
    - ``input_lengths``, ``target_lengths``: ``(N,)`` (``()`` unbatched) integer arrays or
      sequences of ints; ``0 <= input_lengths <= T``, ``target_lengths >= 0``.
    - ``blank``: the blank class, in ``[0, C)``.
    - ``reduction``: ``'none'`` (``(N,)``), ``'sum'``, or ``'mean'``: each loss divided by its
      target length (at least 1), then averaged over the batch.
    - ``zero_infinity``: replace infinite losses (and their gradients) by 0.

    Lengths and target values are checked when concrete (torch does not check target values);
    under a trace a bad length or target gives NaN for that sample.
    """
    fn = "ctc_loss"
    reduction = L.reduction(fn, reduction)
    (log_probs,) = cast(fn, log_probs)
    L.check_floating_input(fn, "log_probs", log_probs)
    if log_probs.ndim not in (2, 3):
        raise ValueError(f"{fn}: log_probs must be (T, N, C) or unbatched (T, C), got log_probs of "
                         f"shape {tuple(log_probs.shape)}")
    if log_probs.size == 0:
        raise ValueError(f"{fn}: log_probs must not be empty (an empty batch or no steps or "
                         f"classes), got log_probs of shape {tuple(log_probs.shape)}")
    unbatched = log_probs.ndim == 2
    steps, num_classes = log_probs.shape[0], log_probs.shape[-1]
    batch = 1 if unbatched else log_probs.shape[1]
    if not (_args.is_int(blank) and 0 <= blank < num_classes):
        raise ValueError(f"{fn}: blank must be in label range [0, {num_classes - 1}], got blank={blank!r}")
    input_lengths = L.lengths(fn, "input_lengths", input_lengths, None if unbatched else batch)
    target_lengths = L.lengths(fn, "target_lengths", target_lengths, None if unbatched else batch)
    for name, value, low, high in (("input_lengths", input_lengths, 0, steps),
                                   ("target_lengths", target_lengths, 0, None)):
        values = L.concrete(value)
        if values is not None and values.size and (
                values.min() < low or (high is not None and values.max() > high)):
            rule = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise ValueError(f"{fn}: {name} must be {rule}, got {name}={values.tolist()}")
    labels, width = _targets(fn, targets, target_lengths, batch, unbatched)
    used = jnp.arange(width)[None, :] < target_lengths[:, None]
    L.check_class_range(fn, jnp.where(used, labels, 0), num_classes, name="targets")
    acc = _args.opmath(log_probs.dtype)
    lp = log_probs.astype(acc)
    lp = lp[:, None] if unbatched else lp
    s = jnp.arange(2 * width + 1)
    padded = jnp.concatenate([labels, lead_like(jnp.zeros((batch, 1), labels.dtype), labels)], -1)  # never empty
    label_index = lead_like(jnp.broadcast_to(jnp.maximum(s - 1, 0) // 2, (batch, s.size)), labels)
    label_at = jnp.take_along_axis(padded, label_index, -1)
    ext = jnp.where(s % 2 == 0, blank, label_at).astype(jnp.int32)        # (N, 2S + 1)
    bad = jnp.any(used & ((labels < 0) | (labels >= num_classes)), -1)
    bad |= (input_lengths < 0) | (input_lengths > steps) | (target_lengths < 0) | (target_lengths > width)
    ext = jnp.clip(ext, 0, num_classes - 1)
    skip = (s % 2 == 1) & (s >= 2) & (ext != jnp.concatenate([ext[:, :2], ext[:, :-2]], -1))
    il = jnp.clip(input_lengths, 0, steps).astype(jnp.int32)
    tl = jnp.clip(target_lengths, 0, width).astype(jnp.int32)
    nll = _ctc_nll_jit(lp, ext, skip, il, tl, bool(zero_infinity))
    nll = jnp.where(bad, jnp.full((), jnp.nan, acc), nll)
    if reduction == "mean":
        out = jnp.mean(nll / jnp.maximum(target_lengths, 1).astype(acc))
    elif reduction == "sum":
        out = jnp.sum(nll)
    else:
        out = nll[0] if unbatched else nll
    return out.astype(log_probs.dtype)
