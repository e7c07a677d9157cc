"""Losses through the translator: every ``torch.nn.functional`` loss from a traced ``forward``
(the torch-function table) and from an exported one (the ATen table), every ``nn.*Loss`` module
as a leaf with its ``weight`` / ``pos_weight`` buffers, and example inputs given by keyword.

Float64, random asymmetric data; values and the input gradient of the summed losses against
torch's autograd.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from flax import nnx

import equivalence
from equivalence import translate, translate_source
from equivalence.translator import build_from_source, positional

from tests._util import assert_close, randn, t

N, C = 4, 5


def _data(seed=0):
    """Logits ``x`` (N, C), class indices ``k`` (N,), probabilities ``p`` (N, C), signs ``s`` (N,)."""
    rng = np.random.default_rng(seed)
    x = randn(rng, N, C) * 1.5
    k = np.array([0, 3, 1, 4])
    p = rng.uniform(0.05, 0.95, (N, C))
    s = np.array([1.0, -1.0, -1.0, 1.0])
    return x, k, p, s


class Functions(torch.nn.Module):
    """Every functional loss, with non-default keywords, on ``(x, k, p, s)`` (with ``few``,
    the first seven: the default suite's)."""

    export = False          # True: export records its ops (the ATen table)

    def __init__(self, few=False):
        super().__init__()
        self.few = few

        g = torch.Generator().manual_seed(1)
        self.register_buffer("w", torch.rand(C, generator=g, dtype=torch.float64) + 0.5)
        self.register_buffer("mlm", torch.tensor([[1, 2, -1, 0, 0], [3, -1, 0, 0, 0],
                                                  [0, 1, 2, 3, 4], [4, -1, 0, 0, 0]]))
        self.register_buffer("ctc_targets", torch.tensor([[1, 2, 2], [3, 1, 0]]))
        self.register_buffer("ctc_lengths", torch.tensor([3, 2]))

    def forward(self, x, k, p, s):
        if self.export and x.shape[-1] % 2 == 0:        # fx cannot trace this branch
            x = x * 2
        lp = x.log_softmax(1)
        out = [
            TF.cross_entropy(x, k, weight=self.w, ignore_index=3, label_smoothing=0.2),
            TF.nll_loss(lp.reshape(2, 2, C).transpose(1, 2).unsqueeze(-1).contiguous(), k.reshape(2, 2, 1),
                        ignore_index=1, reduction="sum"),
            TF.binary_cross_entropy_with_logits(x, p, pos_weight=self.w, reduction="sum"),
            TF.mse_loss(x, p),
            TF.kl_div(lp, p.log(), reduction="batchmean", log_target=True),
            torch.kl_div(lp, p, 2),      # the ATen binding: an enum reduction (2: 'sum')
            torch.binary_cross_entropy_with_logits(x, p, None, self.w, 0),
        ]
        if self.few:
            return tuple(out)
        ctc_lp = torch.cat([x, x.flip(0)], 1).reshape(N, 2, C).log_softmax(-1)   # (T, N, C)
        out += [
            TF.cross_entropy(x, k),
            TF.cross_entropy(x, p.softmax(1), label_smoothing=0.1, reduction="sum"),
            TF.cross_entropy(x.reshape(2, 2, C).transpose(1, 2).contiguous(), k.reshape(2, 2), reduction="none"),
            TF.nll_loss(lp, k, weight=self.w),
            TF.binary_cross_entropy(x.sigmoid(), p, weight=self.w),
            TF.l1_loss(x, p, reduction="sum"),
            TF.smooth_l1_loss(x, p, beta=0.5), TF.huber_loss(x, p, delta=0.7, reduction="none"),
            TF.poisson_nll_loss(x, p, full=True), TF.soft_margin_loss(x[:, 0], s),
            TF.multilabel_soft_margin_loss(x, (p > 0.5).to(x.dtype), weight=self.w),
            TF.multilabel_margin_loss(x, self.mlm), TF.multi_margin_loss(x, k, p=2, margin=0.7, weight=self.w),
            TF.margin_ranking_loss(x[:, 0], x[:, 1], s, margin=0.2),
            TF.hinge_embedding_loss(x, torch.ones_like(x).where(p > 0.5, -1.0), margin=0.8),
            TF.cosine_embedding_loss(x, p, s, margin=0.1), TF.triplet_margin_loss(x, p, x.flip(0), swap=True),
            TF.triplet_margin_with_distance_loss(x, p, x.flip(0), margin=0.5),
        ]
        if not self.export:     # their outputs' shapes or checks read values: export refuses them
            out += [TF.gaussian_nll_loss(x, p, p + 0.1, full=True),
                    TF.ctc_loss(ctc_lp, self.ctc_targets, (4, 3), (3, 2)),
                    TF.ctc_loss(ctc_lp, self.ctc_targets, torch.tensor([4, 4]), self.ctc_lengths,
                                blank=4, reduction="sum", zero_infinity=True)]
        return tuple(out)


class Exported(Functions):
    export = True


def _check(m, inputs, reduction=64):
    """``m`` translated from its standalone source: every output and the gradient of their sum
    with respect to ``x`` against torch; returns the source."""
    m = m.double().eval()
    xs = [t(a) for a in inputs]
    source = translate_source(m, *xs)
    jm = build_from_source(source, m)
    xs[0].requires_grad_()
    ref = m(*xs)
    sum(r.sum() for r in ref).backward()

    def total(model, x, *rest):
        ys = model(x, *rest)
        return sum(jnp.sum(y) for y in ys), ys

    (_, ys), g = nnx.jit(lambda model, *a: jax.value_and_grad(lambda x: total(model, x, *a[1:]),
                                                             has_aux=True)(a[0]))(jm, *map(jnp.asarray, inputs))
    assert len(ys) == len(ref)
    for k, (y, r) in enumerate(zip(ys, ref)):
        assert_close(y, r.detach().numpy(), reduction=reduction), k
    assert_close(g, xs[0].grad.numpy(), reduction=reduction)
    return source


def _aten_ops(m, inputs) -> set:
    graph = torch.export.export(m.double(), tuple(map(t, inputs)), strict=False).graph
    return {n.target.__name__ for n in graph.nodes if isinstance(n.target, torch._ops.OpOverload)}


@pytest.mark.parametrize("cls", [Functions, Exported])
def test_losses_translate_from_traced_and_exported_forwards(cls):
    """Export records ATen ops (``cross_entropy_loss``, ``nll_loss_nd``, ``mse_loss``,
    ``broadcast_tensors``, ...) with ATen's enum reductions."""
    m, data = cls(few=True), _data(1)
    source = _check(m, data)
    assert ("torch.export" in source) is (cls is Exported)
    if cls is Exported:
        assert {"cross_entropy_loss.default", "nll_loss_nd.default", "mse_loss.default", "kl_div.default",
                "binary_cross_entropy_with_logits.default", "broadcast_tensors.default"} <= _aten_ops(m, data)


@pytest.mark.slow
def test_every_functional_loss_translates_from_a_traced_forward():
    source = _check(Functions(), _data())
    assert "F.cross_entropy(" in source and "F.ctc_loss(" in source and "import torch" not in source


@pytest.mark.slow
def test_every_functional_loss_translates_from_an_exported_forward():
    x, k, p, s = _data(1)
    m = Exported()
    assert {"binary_cross_entropy.default", "log_sigmoid.default", "triplet_margin_loss.default",
            "multilabel_margin_loss.default", "cosine_embedding_loss.default"} <= _aten_ops(m, (x, k, p, s))
    assert "torch.export" in _check(m, (x, k, p, s))


class Modules(torch.nn.Module):
    """Every loss module (leaves), weighted ones with their buffers (with ``few``, those whose
    arguments need more than their attributes: buffers, a child module, a tuple of lengths)."""

    def __init__(self, few=False):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        w = torch.rand(C, generator=g) + 0.5
        nn = torch.nn
        self.few = few
        self.ce = nn.CrossEntropyLoss(weight=w, ignore_index=2, label_smoothing=0.15)
        self.bcel = nn.BCEWithLogitsLoss(pos_weight=w.flip(0), reduction="none")
        self.tripd = nn.TripletMarginWithDistanceLoss(margin=0.3, swap=True)
        self.ctc = nn.CTCLoss(blank=4, zero_infinity=True)
        if few:
            return
        self.nll = nn.NLLLoss(weight=w.flip(0), reduction="sum")
        self.bce = nn.BCELoss(weight=w)
        self.pointwise = nn.ModuleList([nn.MSELoss(), nn.L1Loss(reduction="sum"), nn.SmoothL1Loss(beta=0.3),
                                        nn.HuberLoss(delta=0.4), nn.PoissonNLLLoss(log_input=False, eps=1e-3),
                                        nn.KLDivLoss(reduction="batchmean")])
        self.gnll = nn.GaussianNLLLoss(full=True, eps=1e-4)
        self.soft = nn.SoftMarginLoss()
        self.mlsm = nn.MultiLabelSoftMarginLoss(weight=w)
        self.mm = nn.MultiMarginLoss(p=2, margin=0.5, weight=w)
        self.mr = nn.MarginRankingLoss(margin=0.3)
        self.hinge = nn.HingeEmbeddingLoss(margin=0.6)
        self.cos = nn.CosineEmbeddingLoss(margin=-0.2)
        self.trip = nn.TripletMarginLoss(margin=0.5, p=1.5)

    def forward(self, x, k, p, s):
        out = [self.ce(x, k), self.bcel(x, p), self.tripd(x, p, x.flip(0)),
               self.ctc(x.reshape(N, 1, C).log_softmax(-1), k[:2].reshape(1, 2), (4,), (2,))]
        if self.few:
            return tuple(out)
        lp = x.log_softmax(1)
        out += [self.nll(lp, k), self.bce(x.sigmoid(), p)]
        out += [m(x, p) for m in self.pointwise[:4]] + [self.pointwise[4](x.abs(), p), self.pointwise[5](lp, p)]
        out += [self.gnll(x, p, p + 0.2), self.soft(x, torch.ones_like(x).where(p > 0.5, -1.0)),
                self.mlsm(x, (p > 0.4).to(x.dtype)), self.mm(x, k), self.mr(x[:, 1], x[:, 2], s),
                self.hinge(x, torch.ones_like(x).where(p < 0.5, -1.0)), self.cos(x, p, s),
                self.trip(x, p, x.flip(0))]
        return tuple(out)


@pytest.mark.parametrize("few", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_loss_modules_are_leaves_with_their_buffers(few):
    m = Modules(few).double()
    source = _check(m, _data(2))
    assert "nn.CrossEntropyLoss(" in source and "nn.CTCLoss(blank=4, zero_infinity=True)" in source
    assert "pos_weight=jnp.asarray([" in source         # class weights: values in the source
    jm = build_from_source(source, m)
    sd, tsd = equivalence.state_dict(jm), m.state_dict()
    assert list(sd) == list(tsd) == ["ce.weight", "bcel.pos_weight"] + (
        [] if few else ["nll.weight", "bce.weight", "mlsm.weight", "mm.weight"])
    for key, value in tsd.items():
        np.testing.assert_array_equal(np.asarray(sd[key]), value.numpy())
        assert np.asarray(sd[key]).dtype == np.float64


def test_a_custom_distance_function_of_a_loss_module_is_refused_by_name():
    m = torch.nn.Sequential(torch.nn.Identity())
    m.loss = torch.nn.TripletMarginWithDistanceLoss(distance_function=lambda a, b: (a - b).abs().sum(-1))
    with pytest.raises(equivalence.TranslationError, match="distance_function"):
        translate_source(m, torch.ones(2, 3))


class Head(torch.nn.Module):
    """A classifier whose ``forward(x, labels=None, scale=2.0)`` adds a loss when given labels."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(C, 3)

    def forward(self, x, mask=None, labels=None, scale=2.0):
        logits = self.fc(x) * scale
        if labels is None:
            return logits
        return TF.cross_entropy(logits, labels), logits


def test_example_inputs_by_keyword():
    torch.manual_seed(0)
    m = Head().double()
    x, labels = t(_data()[0]), torch.tensor([2, 0, 1, 1])
    assert positional(m, (x,), {"labels": labels})[1:] == (None, labels)
    jm = translate(m, x, labels=labels)
    loss, logits = jm(jnp.asarray(x.numpy()), labels=jnp.asarray(labels.numpy()))
    assert_close(loss, m(x, labels=labels)[0].detach().numpy())
    assert_close(logits, m(x).detach().numpy())
    assert positional(m, (x,), {"scale": 3.0})[1:] == (None, None, 3.0)
    with pytest.raises(TypeError, match=r"positional parameters of Head.forward \(x, mask, labels, scale\), got label"):
        translate(m, x, label=labels)
    with pytest.raises(TypeError, match="x both by position and by keyword"):
        translate(m, x, x=x)
