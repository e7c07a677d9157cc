"""ATen entries of the losses: ``torch.nn.functional``'s losses as export records them.

ATen takes ``reduction`` as torch's enum (``at::Reduction``: 0 ``'none'``, 1 ``'mean'``,
2 ``'sum'``; ``F.kl_div``'s ``'batchmean'`` is a ``'sum'`` divided in Python, so it arrives as
2 and a ``div``), and its own argument order (``multi_margin_loss(self, target, p, margin,
weight, reduction)``); each entry calls the ``jaxconv.functional`` loss by keyword. Class-index
losses come as ``nll_loss_nd`` (any number of dimensions) or ``nll_loss2d``, and
``cross_entropy`` as one ``cross_entropy_loss``. ``F.multilabel_soft_margin_loss``,
``F.gaussian_nll_loss`` and ``F.triplet_margin_with_distance_loss`` have no ATen op: export
records the ops of their Python code (``log_sigmoid``, ``pairwise_distance``, ...).

Some of these ops are ``torch`` functions too (``torch.kl_div(input, target, 2)``): the ATen
op's binding, with its schema (:data:`BINDINGS`), translated by the same entries.
"""
from __future__ import annotations

import torch

from ._table import TABLE, kw, op, tup

#: ``at::Reduction``'s values.
REDUCTIONS = ("none", "mean", "sum")


def reduction(value) -> str:
    """The ``reduction`` string of ATen's enum value."""
    if not isinstance(value, int) or not 0 <= value < len(REDUCTIONS):
        raise TypeError(f"reduction must be ATen's enum 0, 1 or 2, got {value!r}")
    return REDUCTIONS[value]


def _mean_default(value) -> dict:
    """``reduction=`` where it is not the functions' default ``'mean'``."""
    r = reduction(value)
    return {} if r == "mean" else {"reduction": r}


@op("cross_entropy_loss.default")
def _cross_entropy(e, input, target, weight=None, reduction=1, ignore_index=-100, label_smoothing=0.0):
    return e.call("F.cross_entropy", (input, target),
                  kw(weight=weight, ignore_index=None if ignore_index == -100 else ignore_index,
                     label_smoothing=label_smoothing or None) | _mean_default(reduction))


@op("nll_loss.default", "nll_loss_nd.default", "nll_loss2d.default")
def _nll(e, input, target, weight=None, reduction=1, ignore_index=-100):
    return e.call("F.nll_loss", (input, target),
                  kw(weight=weight, ignore_index=None if ignore_index == -100 else ignore_index)
                  | _mean_default(reduction))


@op("binary_cross_entropy.default")
def _bce(e, input, target, weight=None, reduction=1):
    return e.call("F.binary_cross_entropy", (input, target), kw(weight=weight) | _mean_default(reduction))


@op("binary_cross_entropy_with_logits.default")
def _bce_logits(e, input, target, weight=None, pos_weight=None, reduction=1):
    return e.call("F.binary_cross_entropy_with_logits", (input, target),
                  kw(weight=weight, pos_weight=pos_weight) | _mean_default(reduction))


def _pointwise(name, extra=None):
    """``name(self, target, reduction[, extra])``: ``mse_loss``, ``smooth_l1_loss(beta)``, ..."""
    def emit(e, input, target, reduction=1, value=None):
        return e.call(f"F.{name}", (input, target),
                      _mean_default(reduction) | ({} if value is None else {extra: value}))
    return emit


for _name in ("mse_loss", "l1_loss", "soft_margin_loss", "multilabel_margin_loss"):
    TABLE[f"{_name}.default"] = _pointwise(_name)
TABLE["smooth_l1_loss.default"] = _pointwise("smooth_l1_loss", "beta")
TABLE["huber_loss.default"] = _pointwise("huber_loss", "delta")


@op("kl_div.default")
def _kl_div(e, input, target, reduction=1, *, log_target=False):
    return e.call("F.kl_div", (input, target), _mean_default(reduction) | kw(log_target=log_target or None))


@op("poisson_nll_loss.default")
def _poisson_nll(e, input, target, log_input, full, eps, reduction):
    return e.call("F.poisson_nll_loss", (input, target),
                  {"log_input": log_input, "full": full, "eps": eps} | _mean_default(reduction))


@op("multi_margin_loss.default")
def _multi_margin(e, input, target, p=1, margin=1, weight=None, reduction=1):
    return e.call("F.multi_margin_loss", (input, target),
                  {"p": p, "margin": margin} | kw(weight=weight) | _mean_default(reduction))


def _two_inputs(name):
    def emit(e, input1, input2, target, margin=0.0, reduction=1):
        return e.call(f"F.{name}", (input1, input2, target), {"margin": margin} | _mean_default(reduction))
    return emit


TABLE["margin_ranking_loss.default"] = _two_inputs("margin_ranking_loss")
TABLE["cosine_embedding_loss.default"] = _two_inputs("cosine_embedding_loss")


@op("hinge_embedding_loss.default")
def _hinge(e, input, target, margin=1.0, reduction=1):
    return e.call("F.hinge_embedding_loss", (input, target), {"margin": margin} | _mean_default(reduction))


@op("triplet_margin_loss.default")
def _triplet(e, anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction=1):
    return e.call("F.triplet_margin_loss", (anchor, positive, negative),
                  {"margin": margin, "p": p, "eps": eps, "swap": swap} | _mean_default(reduction))


@op("ctc_loss.IntList", "ctc_loss.Tensor")
def _ctc(e, log_probs, targets, input_lengths, target_lengths, blank=0, reduction=1, zero_infinity=False):
    return e.call("F.ctc_loss", (log_probs, targets, tup(input_lengths), tup(target_lengths)),
                  kw(blank=blank or None, zero_infinity=zero_infinity or None) | _mean_default(reduction))


@op("log_sigmoid.default")
def _log_sigmoid(e, input):
    """``F.logsigmoid`` (in export graphs of ``multilabel_soft_margin_loss``)."""
    return f"jax.nn.log_sigmoid({e.fmt(input)})"


#: ``torch`` functions that are these ATen ops' bindings (ATen's arguments, enum reductions).
BINDINGS = {getattr(torch, name): TABLE[f"{name}.default"] for name in (
    "binary_cross_entropy_with_logits", "kl_div", "poisson_nll_loss", "margin_ranking_loss",
    "hinge_embedding_loss", "cosine_embedding_loss", "triplet_margin_loss")}
BINDINGS[torch.ctc_loss] = TABLE["ctc_loss.IntList"]
