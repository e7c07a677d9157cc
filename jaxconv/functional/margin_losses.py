"""Margin, ranking and embedding losses with torch.nn.functional's names, signatures and semantics.

Hinges follow torch's kernels at the kink: ``clamp_min(z, 0)`` (hinge embedding, margin
ranking, cosine embedding, triplet) passes the gradient at ``z = 0``; the multi-class margins
(``multi_margin_loss``, ``multilabel_margin_loss``) count a term only where ``z > 0``.
Class-index targets take any integer dtype; one out of range raises when concrete and
gives NaN under a trace. float16/bfloat16 inputs compute in float32 and round once.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._autocast import cast
from . import _args
from . import _loss_args as L
from .distance import pairwise_distance

_COS_EPS = float(np.float32(1e-12))  # torch's EPSILON, a float constant


def _clamp_min0(z):
    """torch's ``clamp_min(z, 0)``: NaN propagates; the gradient passes where ``z >= 0``."""
    return jnp.where(z < 0, jnp.zeros((), z.dtype), z)


def _positive_part(z):
    """``z`` where ``z > 0``, else 0 (and no gradient): the multi-class margin kernels' test."""
    return jnp.where(z > 0, z, jnp.zeros((), z.dtype))


def _compute_dtype(*arrays):
    dtype = jnp.result_type(*[a.dtype for a in arrays])
    return _args.opmath(dtype), dtype


def soft_margin_loss(input, target, size_average=None, reduce=None, reduction: str = "mean"):
    """Two-class logistic loss ``log(1 + exp(-y x))`` (``F.soft_margin_loss``).

    **Arguments:**

    - ``input``: any shape; ``target`` (usually +-1) broadcasts against it.
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.

    Computed as torch computes it, ``log1p(exp(-y x))``: ``inf`` where ``-y x`` overflows.
    """
    fn = "soft_margin_loss"
    reduction = L.reduction(fn, reduction, size_average, reduce)
    input, target = cast(fn, input, target)
    L.check_floating_input(fn, "input", input)
    L.broadcast_shape(fn, ("input", input), ("target", target))
    acc, dtype = _compute_dtype(input, target)
    loss = jnp.log1p(jnp.exp(-input.astype(acc) * target.astype(acc)))
    return L.reduce_loss(loss, reduction).astype(dtype)


def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None,
                                reduction: str = "mean"):
    """Multi-label one-versus-all logistic loss, averaged over the classes of the last dim
    (``F.multilabel_soft_margin_loss``).

    **Arguments:**

    - ``input``: ``(..., C)`` logits; ``target`` broadcasts against it (values in [0, 1]).
    - ``weight``: optional, broadcastable (``(C,)`` per class), multiplying each term.
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'`` (one loss per row, the shape without ``C``), ``'mean'``, ``'sum'``.
    """
    fn = "multilabel_soft_margin_loss"
    reduction = L.reduction(fn, reduction, size_average, reduce, alias=False)
    L.check_floating_input(fn, "input", input)
    named = [("input", input), ("target", target)] + ([("weight", weight)] if weight is not None else [])
    L.broadcast_shape(fn, *named)
    acc, dtype = _compute_dtype(*[a for _, a in named])
    x, t = input.astype(acc), target.astype(acc)
    loss = -(t * jax.nn.log_sigmoid(x) + (1 - t) * jax.nn.log_sigmoid(-x))
    if weight is not None:
        loss = loss * weight.astype(acc)
    loss = jnp.sum(loss, axis=-1) / input.shape[-1]
    return L.reduce_loss(loss, reduction).astype(dtype)


def _check_matrix(fn: str, input):
    if input.ndim not in (1, 2) or input.shape[-1] == 0:
        raise ValueError(f"{fn}: input must be a non-empty vector (C,) or a matrix (N, C) (N may "
                         f"be 0), got input of shape {tuple(input.shape)}")


def multilabel_margin_loss(input, target, size_average=None, reduce=None,
                           reduction: str = "mean"):
    """Multi-class multi-label hinge loss (``F.multilabel_margin_loss``).

    **Arguments:**

    - ``input``: ``(C,)`` or ``(N, C)`` scores.
    - ``target``: class indices of the input's shape: each row lists its target classes,
      ended by the first -1 (the rest is not read, but must be in [-1, C)).
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.

    Per row: ``sum_j sum_{i not a target} max(0, 1 - x[y_j] + x[i]) / C`` (a repeated target
    counts twice, as in torch).
    """
    fn = "multilabel_margin_loss"
    reduction = L.reduction(fn, reduction, size_average, reduce)
    (input,) = cast(fn, input)
    L.check_floating_input(fn, "input", input)
    _check_matrix(fn, input)
    L.check_index_target(fn, target)
    L.check_same_shape(fn, input, target)
    num_classes = input.shape[-1]
    L.check_class_range(fn, target, num_classes, low=-1)
    acc = _args.opmath(input.dtype)
    x = input.astype(acc).reshape(-1, num_classes)
    y = target.reshape(-1, num_classes)
    listed = jnp.cumprod(y >= 0, axis=-1).astype(bool)                      # (N, J) before the first -1
    index = jnp.where(listed, y, 0).astype(jnp.int32)
    in_range = jnp.all(~listed | (y < num_classes), axis=-1)
    is_target = jnp.any(listed[..., None] & (index[..., None] == jnp.arange(num_classes)), axis=1)
    x_target = jnp.take_along_axis(x, index, axis=-1)                      # (N, J)
    z = _positive_part(1 - x_target[..., :, None] + x[:, None, :])         # (N, J, C)
    z = jnp.where(listed[..., None] & ~is_target[:, None, :], z, jnp.zeros((), acc))
    loss = jnp.sum(z, axis=(1, 2)) / num_classes
    loss = jnp.where(in_range, loss, jnp.full((), jnp.nan, acc))
    loss = loss.reshape(input.shape[:-1])
    return L.reduce_loss(loss, reduction).astype(input.dtype)


def multi_margin_loss(input, target, p: int = 1, margin: float = 1.0, weight=None,
                      size_average=None, reduce=None, reduction: str = "mean"):
    """Multi-class hinge loss (``F.multi_margin_loss``).

    **Arguments:**

    - ``input``: ``(C,)`` or ``(N, C)`` scores.
    - ``target``: class indices ``(N,)`` (``()`` or ``(1,)`` for a ``(C,)`` input).
    - ``p``: 1 or 2, the power of each hinge.
    - ``margin``: the margin.
    - ``weight``: optional 1-D ``(C,)`` class weights (of the input's dtype), scaling a row's
      terms by its target's weight.
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.

    Per row: ``sum_{i != y} w[y] max(0, margin - x[y] + x[i])^p / C``.
    """
    fn = "multi_margin_loss"
    reduction = L.reduction(fn, reduction, size_average, reduce)
    if p not in (1, 2):
        raise ValueError(f"{fn}: p must be 1 or 2 (only p == 1 and p == 2 supported), got p={p!r}")
    if weight is not None and weight.ndim != 1:
        raise ValueError(f"{fn}: weight must be one-dimensional, got weight of shape "
                         f"{tuple(weight.shape)}")
    input, weight = cast(fn, input, weight)
    L.check_floating_input(fn, "input", input)
    _check_matrix(fn, input)
    L.check_index_target(fn, target)
    batch = input.shape[0] if input.ndim == 2 else 1
    if target.size != batch or target.ndim > 1 or (input.ndim == 2 and target.ndim != 1):
        raise ValueError(f"{fn}: target must be 1-D with one class index per sample, size "
                         f"{batch}, got target of shape {tuple(target.shape)}")
    num_classes = input.shape[-1]
    weight = L.check_class_weight(fn, weight, num_classes, input)
    L.check_class_range(fn, target, num_classes)
    acc = _args.opmath(input.dtype)
    x = input.astype(acc).reshape(batch, num_classes)
    y = target.reshape(batch)
    valid = (y >= 0) & (y < num_classes)
    index = jnp.where(valid, y, 0).astype(jnp.int32)
    x_target = jnp.take_along_axis(x, index[:, None], axis=-1)
    z = _positive_part(margin - x_target + x)
    h = z if p == 1 else z * z
    if weight is not None:
        h = h * weight.astype(acc)[index][:, None]
    h = jnp.where(jnp.arange(num_classes) == index[:, None], jnp.zeros((), acc), h)
    loss = jnp.where(valid, jnp.sum(h, axis=-1) / num_classes, jnp.full((), jnp.nan, acc))
    loss = loss.reshape(target.shape)
    return L.reduce_loss(loss, reduction).astype(input.dtype)


def margin_ranking_loss(input1, input2, target, margin: float = 0, size_average=None,
                        reduce=None, reduction: str = "mean"):
    """Ranking hinge ``max(0, -y (x1 - x2) + margin)`` (``F.margin_ranking_loss``).

    **Arguments:**

    - ``input1``, ``input2``, ``target``: arrays of one shape (``target`` usually +-1).
    - ``margin``: the margin.
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.
    """
    fn = "margin_ranking_loss"
    reduction = L.reduction(fn, reduction, size_average, reduce)
    shapes = [L.shape_of(a) for a in (input1, input2, target)]
    if len(set(shapes)) != 1:
        raise ValueError(f"{fn}: input1, input2 and target must have the same shape (no "
                         f"broadcasting), got shapes {shapes[0]}, {shapes[1]} and {shapes[2]}")
    input1, input2, target = cast(fn, input1, input2, target)
    L.check_floating_input(fn, "input1", input1)
    acc, dtype = _compute_dtype(input1, input2, target)
    x1, x2, y = (a.astype(acc) for a in (input1, input2, target))
    loss = _clamp_min0(-y * (x1 - x2) + margin)
    return L.reduce_loss(loss, reduction).astype(dtype)


def hinge_embedding_loss(input, target, margin: float = 1.0, size_average=None, reduce=None,
                         reduction: str = "mean"):
    """Hinge embedding loss: ``x`` where ``y = 1``, ``max(0, margin - x)`` where ``y = -1``
    (``F.hinge_embedding_loss``; other target values take both terms, as in torch).

    **Arguments:**

    - ``input``: any shape (usually distances); ``target`` (+-1) broadcasts against it.
    - ``margin``: the margin.
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.
    """
    fn = "hinge_embedding_loss"
    reduction = L.reduction(fn, reduction, size_average, reduce)
    input, target = cast(fn, input, target)
    L.check_floating_input(fn, "input", input)
    L.broadcast_shape(fn, ("input", input), ("target", target))
    acc, dtype = _compute_dtype(input, target)
    x, y = input.astype(acc), target.astype(acc)
    zero = jnp.zeros((), acc)
    loss = jnp.where(y != 1, _clamp_min0(margin - x), zero) + jnp.where(y != -1, x, zero)
    return L.reduce_loss(loss, reduction).astype(dtype)


def cosine_embedding_loss(input1, input2, target, margin: float = 0, size_average=None,
                          reduce=None, reduction: str = "mean"):
    """Cosine embedding loss: ``1 - cos`` where ``y = 1``, ``max(0, cos - margin)`` where
    ``y = -1``, 0 for other targets (``F.cosine_embedding_loss``).

    **Arguments:**

    - ``input1``, ``input2``: ``(N, D)`` with a ``(N,)`` target, or ``(D,)`` with a ``()``
      target; they broadcast against each other.
    - ``target``: +-1.
    - ``margin``: the margin, in [-1, 1].
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.

    ``cos = sum(x1 x2) / sqrt((sum(x1^2) + 1e-12) (sum(x2^2) + 1e-12))``, torch's formula.
    """
    fn = "cosine_embedding_loss"
    reduction = L.reduction(fn, reduction, size_average, reduce)
    input1, input2, target = cast(fn, input1, input2, target)
    if target.ndim > 1:
        raise ValueError(f"{fn}: target must be 0-D or 1-D (multi-target not supported), got "
                         f"target of shape {tuple(target.shape)}")
    if input1.ndim != target.ndim + 1:
        raise ValueError(f"{fn}: a {target.ndim}-D target needs {target.ndim + 1}-D inputs, got "
                         f"input1 of shape {tuple(input1.shape)} and input2 of shape "
                         f"{tuple(input2.shape)}")
    L.check_floating_input(fn, "input1", input1)
    L.broadcast_shape(fn, ("input1", input1), ("input2", input2))
    acc, dtype = _compute_dtype(input1, input2, target)
    x1, x2, y = (a.astype(acc) for a in (input1, input2, target))
    dim = target.ndim
    mag1 = jnp.sum(x1 * x1, axis=dim) + _COS_EPS
    mag2 = jnp.sum(x2 * x2, axis=dim) + _COS_EPS
    cos = jnp.sum(x1 * x2, axis=dim) / jnp.sqrt(mag1 * mag2)
    L.broadcast_shape(fn, ("cosine", cos), ("target", target))
    zero = jnp.zeros((), acc)
    loss = jnp.where(y == 1, 1 - cos, zero) + jnp.where(y == -1, _clamp_min0(cos - margin), zero)
    return L.reduce_loss(loss, reduction).astype(dtype)


def _triplet_checks(fn, anchor, positive, negative, margin):
    L.check_positive(fn, "margin", margin)
    ndims = [getattr(a, "ndim", 0) for a in (anchor, positive, negative)]
    if len(set(ndims)) != 1:
        raise ValueError(f"{fn}: anchor, positive and negative must have the same number of "
                         f"dimensions, got anchor {ndims[0]}D, positive {ndims[1]}D and negative "
                         f"{ndims[2]}D inputs")


def _triplet(dist_pos, dist_neg, dist_swap, margin, reduction):
    if dist_swap is not None:
        dist_neg = jnp.minimum(dist_neg, dist_swap)
    loss = _clamp_min0(margin + dist_pos - dist_neg)
    return _args.in_opmath(L.reduce_loss, loss, reduction)


def triplet_margin_loss(anchor, positive, negative, margin: float = 1.0, p: float = 2,
                        eps: float = 1e-6, swap: bool = False, size_average=None, reduce=None,
                        reduction: str = "mean"):
    """Triplet loss ``max(0, d(a, p) - d(a, n) + margin)`` with ``d`` = :func:`pairwise_distance`
    (``F.triplet_margin_loss``).

    **Arguments:**

    - ``anchor``, ``positive``, ``negative``: ``(N, D)`` or ``(D,)``, of one rank, broadcastable.
    - ``margin``: > 0.
    - ``p``: the norm degree of the distance.
    - ``eps``: added to the differences (``pairwise_distance``'s ``eps``).
    - ``swap``: use ``min(d(a, n), d(p, n))`` as the negative distance.
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.
    """
    fn = "triplet_margin_loss"
    reduction = L.reduction(fn, reduction, size_average, reduce)
    _triplet_checks(fn, anchor, positive, negative, margin)
    anchor, positive, negative = cast(fn, anchor, positive, negative)
    L.broadcast_shape(fn, ("anchor", anchor), ("positive", positive), ("negative", negative))
    acc, dtype = _compute_dtype(anchor, positive, negative)
    a, pos, neg = (x.astype(acc) for x in (anchor, positive, negative))
    swapped = pairwise_distance(pos, neg, p, eps) if swap else None
    out = _triplet(pairwise_distance(a, pos, p, eps), pairwise_distance(a, neg, p, eps), swapped,
                   margin, reduction)
    return out.astype(dtype)


def triplet_margin_with_distance_loss(anchor, positive, negative, *, distance_function=None,
                                      margin: float = 1.0, swap: bool = False,
                                      reduction: str = "mean"):
    """Triplet loss with any distance (``F.triplet_margin_with_distance_loss``).

    **Arguments:**

    - ``anchor``, ``positive``, ``negative``: arrays of one rank, as ``distance_function`` takes.
    - ``distance_function``: ``(x1, x2) -> distances``; :func:`pairwise_distance` by default.
    - ``margin``: > 0.
    - ``swap``: use ``min(d(a, n), d(p, n))`` as the negative distance.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.
    """
    fn = "triplet_margin_with_distance_loss"
    reduction = L.reduction(fn, reduction, alias=False)
    _triplet_checks(fn, anchor, positive, negative, margin)
    if distance_function is None:     # float16/bfloat16: the distances too in float32, rounded once
        acc, dtype = _compute_dtype(anchor, positive, negative)
        anchor, positive, negative = (x.astype(acc) for x in (anchor, positive, negative))
        distance = pairwise_distance
    else:
        distance, dtype = distance_function, None
    swapped = distance(positive, negative) if swap else None
    out = _triplet(distance(anchor, positive), distance(anchor, negative), swapped, margin, reduction)
    return out if dtype is None else out.astype(dtype)
