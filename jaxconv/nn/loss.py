"""Loss modules: torch's constructor signatures, attributes, buffers and reprs.

Each is a thin wrapper of the function of the same name in ``jaxconv.functional``, called
with the module's configuration. As in torch, the deprecated ``size_average`` / ``reduce``
set ``reduction`` at construction (with torch's warning), and the class weights ``weight``
(and ``BCEWithLogitsLoss``'s ``pos_weight``) are buffers: ``nnx.BatchStat`` variables, so
they are part of a state_dict under torch's names (absent when ``None``) and load back.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from ..functional import _loss_args, ctc, losses, margin_losses, regression_losses
from .distance import PairwiseDistance
from .module import Module


def _buffer(value):
    """A registered buffer (``nnx.BatchStat``) holding ``value`` as given, or ``None``."""
    return None if value is None else nnx.BatchStat(jnp.asarray(value))


def _value(buffer):
    return None if buffer is None else buffer[...]


class _Loss(Module):
    """A loss's ``reduction``, set by the deprecated ``size_average`` / ``reduce`` when given."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        if size_average is not None or reduce is not None:
            reduction = _loss_args.legacy_reduction(size_average, reduce)
        self.reduction = reduction


class _WeightedLoss(_Loss):
    """A loss with optional class weights ``weight``, a buffer."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.weight = _buffer(weight)



class L1Loss(_Loss):
    """Mean absolute error (``torch.nn.L1Loss``). **Arguments:** ``reduction`` (``'none'``,
    ``'mean'``, ``'sum'``); ``size_average``, ``reduce`` (deprecated)."""

    def __call__(self, input, target):
        """Mean absolute error. **Arguments:** ``input``: ``(*)``; ``target``: broadcast against
        it. **Returns:** a scalar, or ``(*)`` with ``reduction='none'``."""
        return regression_losses.l1_loss(input, target, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean squared error (``torch.nn.MSELoss``). **Arguments:** ``reduction`` (``'none'``,
    ``'mean'``, ``'sum'``); ``size_average``, ``reduce`` (deprecated)."""

    def __call__(self, input, target):
        """Mean squared error. **Arguments:** ``input``: ``(*)``; ``target``: broadcast against
        it. **Returns:** a scalar, or ``(*)`` with ``reduction='none'``."""
        return regression_losses.mse_loss(input, target, reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """Cross entropy of logits against class indices or probabilities (``torch.nn.CrossEntropyLoss``).

    **Arguments:** ``weight`` (``(C,)`` class weights, a buffer), ``ignore_index``,
    ``reduction``, ``label_smoothing``; ``size_average``, ``reduce`` (deprecated). See
    :func:`jaxconv.functional.cross_entropy`.
    """

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def __call__(self, input, target):
        """Cross entropy of logits. **Arguments:** ``input``: ``(C,)``, ``(N, C)`` or
        ``(N, C, d1, ..., dK)``; ``target``: class indices ``()``, ``(N,)`` or
        ``(N, d1, ..., dK)`` (any integer dtype), or probabilities of ``input``'s shape.
        **Returns:** a scalar, or ``input``'s shape without ``C`` with ``reduction='none'``."""
        return losses.cross_entropy(input, target, _value(self.weight), ignore_index=self.ignore_index,
                                    reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log likelihood of log-probabilities (``torch.nn.NLLLoss``).

    **Arguments:** ``weight`` (``(C,)`` class weights, a buffer), ``ignore_index``,
    ``reduction``; ``size_average``, ``reduce`` (deprecated).
    """

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def __call__(self, input, target):
        """Negative log likelihood. **Arguments:** ``input``: log-probabilities ``(C,)``,
        ``(N, C)`` or ``(N, C, d1, ..., dK)``; ``target``: class indices ``()``, ``(N,)`` or
        ``(N, d1, ..., dK)``. **Returns:** a scalar, or ``input``'s shape without ``C`` with
        ``reduction='none'``."""
        return losses.nll_loss(input, target, _value(self.weight), ignore_index=self.ignore_index,
                               reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """Binary cross entropy of probabilities (``torch.nn.BCELoss``). **Arguments:** ``weight``
    (broadcast to the target, a buffer), ``reduction``; ``size_average``, ``reduce`` (deprecated)."""

    def __call__(self, input, target):
        """Binary cross entropy. **Arguments:** ``input``: probabilities ``(*)``; ``target``: its
        shape, in [0, 1]. **Returns:** a scalar, or ``(*)`` with ``reduction='none'``."""
        return losses.binary_cross_entropy(input, target, _value(self.weight),
                                           reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy of logits (``torch.nn.BCEWithLogitsLoss``).

    **Arguments:** ``weight`` (broadcast to the input) and ``pos_weight`` (broadcast to the
    target, e.g. ``(C,)``), both buffers; ``reduction``; ``size_average``, ``reduce`` (deprecated).
    """

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean",
                 pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self.weight, self.pos_weight = _buffer(weight), _buffer(pos_weight)

    def __call__(self, input, target):
        """Binary cross entropy of logits. **Arguments:** ``input``: ``(*)``; ``target``: its
        shape, in [0, 1]. **Returns:** a scalar, or ``(*)`` with ``reduction='none'``."""
        return losses.binary_cross_entropy_with_logits(
            input, target, _value(self.weight), reduction=self.reduction,
            pos_weight=_value(self.pos_weight))


class KLDivLoss(_Loss):
    """Kullback-Leibler divergence (``torch.nn.KLDivLoss``). **Arguments:** ``reduction``
    (``'none'``, ``'batchmean'``, ``'sum'``, ``'mean'``), ``log_target``; ``size_average``,
    ``reduce`` (deprecated)."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean",
                 log_target: bool = False):
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def __call__(self, input, target):
        """KL divergence. **Arguments:** ``input``: log-probabilities ``(*)``; ``target``:
        probabilities (log-probabilities with ``log_target``), broadcast against it.
        **Returns:** a scalar (``'batchmean'`` divides the sum by ``input.shape[0]``), or
        ``(*)`` with ``reduction='none'``."""
        return losses.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class SmoothL1Loss(_Loss):
    """Smooth L1 (``torch.nn.SmoothL1Loss``). **Arguments:** ``reduction``, ``beta`` (>= 0);
    ``size_average``, ``reduce`` (deprecated)."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def __call__(self, input, target):
        """Smooth L1 loss. **Arguments:** ``input``: ``(*)``; ``target``: broadcast against it.
        **Returns:** a scalar, or ``(*)`` with ``reduction='none'``."""
        return regression_losses.smooth_l1_loss(input, target, reduction=self.reduction,
                                                beta=self.beta)


class HuberLoss(_Loss):
    """Huber loss (``torch.nn.HuberLoss``). **Arguments:** ``reduction``, ``delta`` (> 0)."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def __call__(self, input, target):
        """Huber loss. **Arguments:** ``input``: ``(*)``; ``target``: broadcast against it.
        **Returns:** a scalar, or ``(*)`` with ``reduction='none'``."""
        return regression_losses.huber_loss(input, target, reduction=self.reduction,
                                            delta=self.delta)


class PoissonNLLLoss(_Loss):
    """Poisson negative log likelihood (``torch.nn.PoissonNLLLoss``). **Arguments:**
    ``log_input``, ``full``, ``eps``, ``reduction``; ``size_average``, ``reduce`` (deprecated)."""

    def __init__(self, log_input: bool = True, full: bool = False, size_average=None,
                 eps: float = 1e-8, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.log_input, self.full, self.eps = log_input, full, eps

    def __call__(self, log_input, target):
        """Poisson negative log likelihood. **Arguments:** ``log_input``: expectations ``(*)``
        (their log when the flag ``log_input`` is set); ``target``: broadcast against it.
        **Returns:** a scalar, or ``(*)`` with ``reduction='none'``."""
        return regression_losses.poisson_nll_loss(log_input, target, log_input=self.log_input,
                                                  full=self.full, eps=self.eps,
                                                  reduction=self.reduction)


class GaussianNLLLoss(_Loss):
    """Gaussian negative log likelihood (``torch.nn.GaussianNLLLoss``). **Arguments**
    (keyword-only): ``full``, ``eps``, ``reduction``."""

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean"):
        super().__init__(None, None, reduction)
        self.full, self.eps = full, eps

    def __call__(self, input, target, var):
        """Gaussian negative log likelihood. **Arguments:** ``input``: means ``(N, *)`` or
        ``(*)``; ``target``: its shape (or one dim of size 1); ``var``: variances >= 0 of its
        shape, with one dim of size 1 or without the last dim, or a number. **Returns:** a
        scalar, or ``input``'s shape with ``reduction='none'``."""
        return regression_losses.gaussian_nll_loss(input, target, var, full=self.full,
                                                   eps=self.eps, reduction=self.reduction)


class SoftMarginLoss(_Loss):
    """Two-class logistic loss (``torch.nn.SoftMarginLoss``). **Arguments:** ``reduction``;
    ``size_average``, ``reduce`` (deprecated)."""

    def __call__(self, input, target):
        """Two-class logistic loss. **Arguments:** ``input``: ``(*)``; ``target``: +-1,
        broadcast. **Returns:** a scalar, or ``(*)`` with ``reduction='none'``."""
        return margin_losses.soft_margin_loss(input, target, reduction=self.reduction)


class MultiLabelSoftMarginLoss(_WeightedLoss):
    """Multi-label logistic loss (``torch.nn.MultiLabelSoftMarginLoss``). **Arguments:**
    ``weight`` (``(C,)``, a buffer), ``reduction``; ``size_average``, ``reduce`` (deprecated)."""

    def __call__(self, input, target):
        """Multi-label logistic loss. **Arguments:** ``input``: logits ``(N, C)`` (any
        ``(*, C)``); ``target``: 0/1 labels of its shape. **Returns:** a scalar, or ``(N,)``
        (the shape without ``C``) with ``reduction='none'``."""
        return margin_losses.multilabel_soft_margin_loss(input, target, _value(self.weight),
                                                         reduction=self.reduction)


class MultiLabelMarginLoss(_Loss):
    """Multi-label hinge loss (``torch.nn.MultiLabelMarginLoss``). **Arguments:** ``reduction``;
    ``size_average``, ``reduce`` (deprecated)."""

    def __call__(self, input, target):
        """Multi-label hinge loss. **Arguments:** ``input``: ``(C,)`` or ``(N, C)``; ``target``:
        class indices of its shape, each row's targets first, ended by -1. **Returns:** a
        scalar, or ``(N,)`` (``()`` unbatched) with ``reduction='none'``."""
        return margin_losses.multilabel_margin_loss(input, target, reduction=self.reduction)


class MultiMarginLoss(_WeightedLoss):
    """Multi-class hinge loss (``torch.nn.MultiMarginLoss``). **Arguments:** ``p`` (1 or 2),
    ``margin``, ``weight`` (1-D ``(C,)``, a buffer), ``reduction``; ``size_average``,
    ``reduce`` (deprecated)."""

    def __init__(self, p: int = 1, margin: float = 1.0, weight=None, size_average=None,
                 reduce=None, reduction: str = "mean"):
        if p not in (1, 2):
            raise ValueError(f"MultiMarginLoss: p must be 1 or 2, got p={p!r}")
        if weight is not None and jnp.ndim(weight) != 1:
            raise ValueError(f"MultiMarginLoss: weight must be one-dimensional, got weight of "
                             f"shape {tuple(jnp.shape(weight))}")
        super().__init__(weight, size_average, reduce, reduction)
        self.p, self.margin = p, margin

    def __call__(self, input, target):
        """Multi-class hinge loss. **Arguments:** ``input``: ``(N, C)`` or ``(C,)``; ``target``:
        class indices ``(N,)`` (``()`` or ``(1,)`` for ``(C,)``). **Returns:** a scalar, or
        ``target``'s shape with ``reduction='none'``."""
        return margin_losses.multi_margin_loss(input, target, p=self.p, margin=self.margin,
                                               weight=_value(self.weight), reduction=self.reduction)


class MarginRankingLoss(_Loss):
    """Ranking hinge (``torch.nn.MarginRankingLoss``). **Arguments:** ``margin``, ``reduction``;
    ``size_average``, ``reduce`` (deprecated)."""

    def __init__(self, margin: float = 0.0, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def __call__(self, input1, input2, target):
        """Ranking hinge loss. **Arguments:** ``input1``, ``input2``, ``target`` (+-1): ``(N,)``
        or ``()``, one shape. **Returns:** a scalar, or ``(N,)`` / ``()`` with
        ``reduction='none'``."""
        return margin_losses.margin_ranking_loss(input1, input2, target, margin=self.margin,
                                                 reduction=self.reduction)


class HingeEmbeddingLoss(_Loss):
    """Hinge embedding loss (``torch.nn.HingeEmbeddingLoss``). **Arguments:** ``margin``,
    ``reduction``; ``size_average``, ``reduce`` (deprecated)."""

    def __init__(self, margin: float = 1.0, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def __call__(self, input, target):
        """Hinge embedding loss. **Arguments:** ``input``: distances ``(*)``; ``target``: +-1,
        broadcast. **Returns:** a scalar, or ``(*)`` with ``reduction='none'``."""
        return margin_losses.hinge_embedding_loss(input, target, margin=self.margin,
                                                  reduction=self.reduction)


class CosineEmbeddingLoss(_Loss):
    """Cosine embedding loss (``torch.nn.CosineEmbeddingLoss``). **Arguments:** ``margin``,
    ``reduction``; ``size_average``, ``reduce`` (deprecated)."""

    def __init__(self, margin: float = 0.0, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def __call__(self, input1, input2, target):
        """Cosine embedding loss. **Arguments:** ``input1``, ``input2``: ``(N, D)`` or ``(D,)``;
        ``target``: +-1, ``(N,)`` or ``()``. **Returns:** a scalar, or ``(N,)`` / ``()`` with
        ``reduction='none'``."""
        return margin_losses.cosine_embedding_loss(input1, input2, target, margin=self.margin,
                                                   reduction=self.reduction)


class TripletMarginLoss(_Loss):
    """Triplet loss with the ``p``-norm distance (``torch.nn.TripletMarginLoss``). **Arguments:**
    ``margin`` (> 0), ``p``, ``eps``, ``swap``, ``reduction``; ``size_average``, ``reduce``
    (deprecated)."""

    def __init__(self, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6, swap: bool = False,
                 size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        _loss_args.check_positive("TripletMarginLoss", "margin", margin)
        self.margin, self.p, self.eps, self.swap = margin, p, eps, swap

    def __call__(self, anchor, positive, negative):
        """Triplet loss. **Arguments:** ``anchor``, ``positive``, ``negative``: ``(N, D)`` or
        ``(D,)``, one rank, broadcast. **Returns:** a scalar, or ``(N,)`` / ``()`` with
        ``reduction='none'``."""
        return margin_losses.triplet_margin_loss(anchor, positive, negative, margin=self.margin,
                                                 p=self.p, eps=self.eps, swap=self.swap,
                                                 reduction=self.reduction)


class TripletMarginWithDistanceLoss(_Loss):
    """Triplet loss with any distance (``torch.nn.TripletMarginWithDistanceLoss``).

    **Arguments** (keyword-only): ``distance_function`` (``(x1, x2) -> distances``; a
    :class:`PairwiseDistance` child module by default, as in torch), ``margin`` (> 0), ``swap``,
    ``reduction``.
    """

    def __init__(self, *, distance_function=None, margin: float = 1.0, swap: bool = False,
                 reduction: str = "mean"):
        super().__init__(None, None, reduction)
        _loss_args.check_positive("TripletMarginWithDistanceLoss", "margin", margin)
        self.distance_function = (PairwiseDistance() if distance_function is None
                                  else distance_function)
        self.margin, self.swap = margin, swap

    def __call__(self, anchor, positive, negative):
        """Triplet loss with ``distance_function``. **Arguments:** ``anchor``, ``positive``,
        ``negative``: ``(N, *)`` as ``distance_function`` takes them (``(N, D)`` or ``(D,)``
        by default). **Returns:** a scalar, or the distances' shape (``(N,)``) with
        ``reduction='none'``."""
        return margin_losses.triplet_margin_with_distance_loss(
            anchor, positive, negative, distance_function=self.distance_function,
            margin=self.margin, swap=self.swap, reduction=self.reduction)


class CTCLoss(_Loss):
    """Connectionist Temporal Classification loss (``torch.nn.CTCLoss``). **Arguments:**
    ``blank``, ``reduction`` (``'mean'`` divides each loss by its target length first),
    ``zero_infinity``."""

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False):
        super().__init__(reduction=reduction)
        self.blank, self.zero_infinity = blank, zero_infinity

    def __call__(self, log_probs, targets, input_lengths, target_lengths):
        """CTC loss. **Arguments:** ``log_probs``: ``(T, N, C)`` or ``(T, C)``, blank included;
        ``targets``: class indices, padded ``(N, S)`` or concatenated
        ``(sum(target_lengths),)`` (``(S,)`` unbatched); ``input_lengths``,
        ``target_lengths``: ``(N,)`` (``()`` unbatched) ints. **Returns:** a scalar, or
        ``(N,)`` (``()`` unbatched) with ``reduction='none'``."""
        return ctc.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=self.blank,
                            reduction=self.reduction, zero_infinity=self.zero_infinity)
