"""Classification losses with torch.nn.functional's names, signatures and semantics.

``cross_entropy`` and ``nll_loss`` take class-index targets (any integer dtype) over
``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)`` inputs; ``cross_entropy`` also takes class
probabilities of the input's shape. Where optax differs, torch's rules hold here:

- ``'mean'`` of a class-weighted loss divides by the summed weights of the non-ignored
  targets (NaN when every target is ignored, as in torch), not by their count;
- ``label_smoothing`` mixes in the uniform distribution's loss, weighted by the class
  weights and zero at ignored targets, normalised by the same sum of weights;
- ``binary_cross_entropy`` clamps each ``log`` at -100 and its gradient is torch's
  ``(x - y) / max(x (1 - x), 1e-12)``; ``pos_weight`` scales the positive term of
  ``binary_cross_entropy_with_logits``;
- ``kl_div``'s ``'mean'`` divides by the element count (with torch's warning) and
  ``'batchmean'`` by the batch size.

A target class out of range raises ``IndexError`` when the target is concrete; under
``jit`` / ``grad`` / ``vmap`` values cannot raise, and such a target's loss is NaN (so a
reduced loss is NaN too). float16/bfloat16 inputs compute in float32 and round once.
"""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from .._autocast import cast
from . import _args
from . import _loss_args as L
from ._sharding import take

_BCE_EPS = float(np.float32(1e-12))  # torch's EPSILON, a float constant


def _class_dim(input) -> int:
    return 0 if input.ndim == 1 else 1


def _check_nll_shapes(fn: str, input, target):
    """torch's shape rules: ``(C,)`` with a ``()`` target (or one element), ``(N, C)`` with
    ``(N,)``, ``(N, C, d1, ..., dK)`` with ``(N, d1, ..., dK)``."""
    if input.ndim < 1:
        raise ValueError(f"{fn}: input must have 1 or more dimensions (C,), (N, C) or "
                         f"(N, C, d1, ..., dK), got input of shape {tuple(input.shape)}")
    if input.ndim == 1:
        if target.ndim > 1 or target.size != 1:
            raise ValueError(f"{fn}: for an unbatched input of shape {tuple(input.shape)}, target "
                             f"must be a single class index, got target of shape "
                             f"{tuple(target.shape)}")
        return
    want = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != want:
        raise ValueError(f"{fn}: for input of shape {tuple(input.shape)}, target must have shape "
                         f"(N, d1, ..., dK) = {want}, got target of shape {tuple(target.shape)}")


def _picked(logp, target, weight, ignore_index):
    """Per target: ``-weight[t] * logp[t]`` (0 where ignored, NaN where out of range) and the
    weight it counts with in a ``'mean'`` (0 where ignored). ``logp`` has classes last."""
    num_classes = logp.shape[-1]
    ignored = target == ignore_index
    valid = (target >= 0) & (target < num_classes)
    index = jnp.where(valid, target, 0)
    picked = jnp.take_along_axis(logp, index[..., None].astype(jnp.int32), axis=-1)[..., 0]
    w = jnp.ones((), logp.dtype) if weight is None else take(weight.astype(logp.dtype), index)
    w = jnp.where(ignored, jnp.zeros((), logp.dtype), jnp.broadcast_to(w, target.shape))
    loss = jnp.where(valid, -w * picked, jnp.full((), jnp.nan, logp.dtype))
    return jnp.where(ignored, jnp.zeros((), logp.dtype), loss), w


def _nll_reduce(loss, w, reduction):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    return jnp.sum(loss) / jnp.sum(w)


def _index_setup(fn, input, target, weight, ignore_index):
    """Checks of a class-index loss; returns (classes-last input, target, flat weight)."""
    L.check_index_target(fn, target)
    _check_nll_shapes(fn, input, target)
    num_classes = input.shape[_class_dim(input)]
    weight = L.check_class_weight(fn, weight, num_classes, input)
    L.check_class_range(fn, target, num_classes, ignore_index)
    x = jnp.moveaxis(input, _class_dim(input), -1)
    if input.ndim == 1:
        target = jnp.reshape(target, ())
    return x, target, weight


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100,
             reduce=None, reduction: str = "mean"):
    """The negative log likelihood loss of log-probabilities (``F.nll_loss``).

    **Arguments:**

    - ``input``: log-probabilities ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
    - ``target``: class indices ``()``, ``(N,)`` or ``(N, d1, ..., dK)``, any integer dtype.
    - ``weight``: optional ``(C,)`` class weights, of the input's dtype.
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``ignore_index``: targets of this value contribute 0 and are not counted.
    - ``reduction``: ``'none'``, ``'mean'`` (the sum divided by the summed weights of the
      non-ignored targets; NaN if there are none) or ``'sum'``.

    A target outside ``[0, C)`` (other than ``ignore_index``) raises ``IndexError`` when
    concrete; under a trace its loss is NaN.
    """
    fn = "nll_loss"
    reduction = L.reduction(fn, reduction, size_average, reduce)
    input, weight = cast(fn, input, weight)
    L.check_floating_input(fn, "input", input)
    x, target, weight = _index_setup(fn, input, target, weight, ignore_index)
    loss, w = _picked(x.astype(_args.opmath(x.dtype)), target, weight, ignore_index)
    return _nll_reduce(loss, w, reduction).astype(input.dtype)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100,
                  reduce=None, reduction: str = "mean", label_smoothing: float = 0.0):
    """Cross entropy between logits and class indices or class probabilities (``F.cross_entropy``).

    **Arguments:**

    - ``input``: unnormalised logits ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
    - ``target``: class indices (``()``, ``(N,)`` or ``(N, d1, ..., dK)``, any integer dtype)
      or class probabilities (a floating array of the input's shape).
    - ``weight``: optional ``(C,)`` class weights.
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``ignore_index``: class-index targets of this value contribute 0 and are not counted
      (not allowed with probabilities).
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``. With indices, ``'mean'`` divides by
      the summed weights of the non-ignored targets; with probabilities, by ``N * d1 * ... * dK``.
    - ``label_smoothing``: ``eps`` in [0, 1] (torch treats a negative value as 0): the loss
      becomes ``(1 - eps) * nll + eps / C * (-sum_c weight[c] * log_softmax[c])``, the second
      term 0 at ignored targets and normalised like the first.

    Out-of-range class indices raise ``IndexError`` when concrete; under a trace their loss is NaN.
    """
    fn = "cross_entropy"
    reduction = L.reduction(fn, reduction, size_average, reduce)
    if label_smoothing > 1.0:
        raise ValueError(f"{fn}: label_smoothing must be between 0.0 and 1.0, got "
                         f"label_smoothing={label_smoothing}")
    probabilities = jnp.issubdtype(getattr(target, "dtype", np.int64), jnp.floating)
    if probabilities:
        input, target, weight = cast(fn, input, target, weight)
    else:
        input, weight = cast(fn, input, weight)
    L.check_floating_input(fn, "input", input)
    if input.ndim < 1:
        raise ValueError(f"{fn}: input must have 1 or more dimensions (C,), (N, C) or "
                         f"(N, C, d1, ..., dK), got input of shape {tuple(input.shape)}")
    if probabilities and tuple(target.shape) == tuple(input.shape):
        return _cross_entropy_probabilities(input, target, weight, ignore_index, reduction,
                                            label_smoothing)
    if probabilities:
        raise ValueError(f"{fn}: a floating target holds class probabilities and must have the "
                         f"input's shape {tuple(input.shape)}, got target of shape "
                         f"{tuple(target.shape)} (class indices need an integer dtype)")
    x, target, weight = _index_setup(fn, input, target, weight, ignore_index)
    logp = jax.nn.log_softmax(x.astype(_args.opmath(x.dtype)), axis=-1)
    loss, w = _picked(logp, target, weight, ignore_index)
    if label_smoothing <= 0:
        return _nll_reduce(loss, w, reduction).astype(input.dtype)
    per_class = logp if weight is None else logp * weight.astype(logp.dtype)
    smooth = jnp.where(target == ignore_index, jnp.zeros((), logp.dtype), -jnp.sum(per_class, -1))
    eps, num_classes = label_smoothing, x.shape[-1]
    if reduction == "none":
        out = (1 - eps) * loss + smooth * (eps / num_classes)
    else:
        total = (1 - eps) * jnp.sum(loss) + jnp.sum(smooth) * (eps / num_classes)
        out = total if reduction == "sum" else total / jnp.sum(w)
    return out.astype(input.dtype)


def _cross_entropy_probabilities(input, target, weight, ignore_index, reduction, eps):
    fn = "cross_entropy"
    if ignore_index >= 0:
        raise ValueError(f"{fn}: ignore_index is not supported for class-probability targets, "
                         f"got ignore_index={ignore_index}")
    dim = _class_dim(input)
    num_classes = input.shape[dim]
    weight = L.check_class_weight(fn, weight, num_classes)
    dtype = jnp.result_type(input.dtype, target.dtype)
    acc = _args.opmath(dtype)
    logp = jax.nn.log_softmax(input.astype(acc), axis=dim)
    t = target.astype(acc)
    if eps > 0:
        t = t * (1 - eps) + eps / num_classes
    prod = logp * t
    if weight is not None:
        prod = prod * jnp.reshape(weight.astype(acc), (-1,) + (1,) * (input.ndim - dim - 1))
    loss = -jnp.sum(prod, axis=dim)
    if reduction == "mean":
        out = jnp.sum(loss) / (input.size // num_classes if num_classes else 0)
    else:
        out = L.reduce_loss(loss, reduction)
    return out.astype(dtype)


# --- binary cross entropy -------------------------------------------------------------------

@jax.custom_jvp
def _bce(x, y):
    """``-(y log x + (1 - y) log(1 - x))``, each log clamped at -100 (torch's kernel)."""
    return ((y - 1) * jnp.maximum(jnp.log(1 - x), -100.0)
            - y * jnp.maximum(jnp.log(x), -100.0))


@_bce.defjvp
def _bce_jvp(primals, tangents):
    """torch's derivatives: ``(x - y) / max(x (1 - x), EPSILON)`` for the input and
    ``-logit(x)`` (unclamped) for the target. A JVP (linear in the tangents, so reverse mode
    transposes it) rather than a VJP, so that ``jax.jvp`` and ``hessian`` work too."""
    (x, y), (dx, dy) = primals, tangents
    eps = jnp.asarray(_BCE_EPS, x.dtype)
    return _bce(x, y), dx * ((x - y) / jnp.maximum((1 - x) * x, eps)) + dy * -jnp.log(x / (1 - x))


def _check_unit_interval(fn: str, name: str, x):
    values = L.concrete(x)
    if values is not None and values.size and not np.all((values >= 0) & (values <= 1)):
        bad = values[~((values >= 0) & (values <= 1))].flat[0]
        raise ValueError(f"{fn}: all elements of {name} should be between 0 and 1, got {name} "
                         f"value {bad}")


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction: str = "mean"):
    """Binary cross entropy of probabilities (``F.binary_cross_entropy``).

    **Arguments:**

    - ``input``: probabilities in [0, 1], any shape.
    - ``target``: of the input's shape and dtype, values in [0, 1].
    - ``weight``: optional, broadcastable to the target's shape; multiplies each element.
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.

    Each ``log`` is clamped at -100, so ``x = 0`` or ``1`` gives a finite loss; the gradients
    are torch's (``(x - y) / max(x (1 - x), 1e-12)``, and ``-logit(x)`` for the target).
    Values outside [0, 1] (NaN too) raise ``ValueError`` when concrete; under a trace they give NaN.
    """
    fn = "binary_cross_entropy"
    reduction = L.reduction(fn, reduction, size_average, reduce)
    input, target, weight = cast(fn, input, target, weight)
    L.check_floating_input(fn, "input", input)
    L.check_same_shape(fn, input, target, message=" (a different target size is deprecated)")
    if jnp.dtype(target.dtype) != jnp.dtype(input.dtype):
        raise TypeError(f"{fn}: input ({input.dtype}) and target ({target.dtype}) must have the "
                        "same dtype")
    if weight is not None and (L.broadcast_shape(fn, ("target", target), ("weight", weight))
                               != tuple(target.shape)):
        raise ValueError(f"{fn}: weight must broadcast to the target's shape "
                         f"{tuple(target.shape)}, got weight of shape {tuple(weight.shape)}")
    _check_unit_interval(fn, "input", input)
    _check_unit_interval(fn, "target", target)
    acc = _args.opmath(input.dtype)
    loss = _bce(input.astype(acc), target.astype(acc))
    if weight is not None:
        loss = loss * weight.astype(acc)
    return L.reduce_loss(loss, reduction).astype(input.dtype)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction: str = "mean", pos_weight=None):
    """Binary cross entropy of logits, with an optional positive-class weight
    (``F.binary_cross_entropy_with_logits``).

    **Arguments:**

    - ``input``: logits, any shape.
    - ``target``: a floating array of the input's shape (probabilities of the positive class).
    - ``weight``: optional, broadcastable to the input's shape; multiplies each element.
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'mean'`` or ``'sum'``.
    - ``pos_weight``: optional, broadcastable to the target (``(C,)`` per class on the last
      axis); scales the positive term: ``(1 - y) x - (1 + (pos_weight - 1) y) log_sigmoid(x)``.

    Computed with ``log_sigmoid``, so large logits neither overflow nor lose the gradient.
    """
    fn = "binary_cross_entropy_with_logits"
    reduction = L.reduction(fn, reduction, size_average, reduce)
    input, target, weight, pos_weight = cast(fn, input, target, weight, pos_weight)
    L.check_floating_input(fn, "input", input)
    L.check_floating_input(fn, "target", target)
    L.check_same_shape(fn, input, target)
    for name, v in (("weight", weight), ("pos_weight", pos_weight)):
        if v is not None and L.broadcast_shape(fn, ("input", input), (name, v)) != tuple(input.shape):
            raise ValueError(f"{fn}: {name} must broadcast to the input's shape "
                             f"{tuple(input.shape)}, got {name} of shape {tuple(v.shape)}")
    dtype = jnp.result_type(input.dtype, target.dtype)
    acc = _args.opmath(dtype)
    x, y = input.astype(acc), target.astype(acc)
    log_sig = jax.nn.log_sigmoid(x)
    if pos_weight is not None:
        log_sig = log_sig * ((pos_weight.astype(acc) - 1) * y + 1)
    loss = (1 - y) * x - log_sig
    if weight is not None:
        loss = loss * weight.astype(acc)
    return L.reduce_loss(loss, reduction).astype(dtype)


def kl_div(input, target, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False):
    """Kullback-Leibler divergence of ``target`` from log-probabilities ``input`` (``F.kl_div``).

    **Arguments:**

    - ``input``: log-probabilities, any shape.
    - ``target``: probabilities (or, with ``log_target``, log-probabilities), broadcastable.
    - ``size_average``, ``reduce``: deprecated; override ``reduction`` as in torch.
    - ``reduction``: ``'none'``, ``'batchmean'`` (the sum divided by ``input.shape[0]``: the
      KL divergence), ``'sum'``, or ``'mean'`` (divided by the element count, with torch's
      warning that it is not the KL divergence).
    - ``log_target``: ``target`` is given as log-probabilities.

    Pointwise ``xlogy(t, t) - t * x`` (``exp(t) * (t - x)`` with ``log_target``), as torch: a
    zero target contributes 0, and its gradient with respect to the target is NaN, as in torch.
    """
    fn = "kl_div"
    legacy = size_average is not None or reduce is not None
    if not legacy and reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the "
                      "support size.'batchmean' divides only by the batch size, and aligns with "
                      "the KL div math definition.'mean' will be changed to behave the same as "
                      "'batchmean' in the next major release.", UserWarning, stacklevel=2)
    mode = L.reduction(fn, reduction, size_average, reduce, extra=("batchmean",))
    input, target = cast(fn, input, target)
    L.check_floating_input(fn, "input", input)
    L.broadcast_shape(fn, ("input", input), ("target", target))
    dtype = jnp.result_type(input.dtype, target.dtype)
    acc = _args.opmath(dtype)
    x, t = input.astype(acc), target.astype(acc)
    loss = jnp.exp(t) * (t - x) if log_target else xlogy(t, t) - t * x
    out = L.reduce_loss(loss, "sum" if mode == "batchmean" else mode)
    if reduction == "batchmean" and input.ndim != 0:
        out = out / input.shape[0]
    return out.astype(dtype)

