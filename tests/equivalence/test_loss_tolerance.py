"""The loss error model (kind ``loss``): a model that ends in a loss passes ``compare`` with its
gradients (class-index targets have none, a float target has its own), a loss twin with a
wrong ``label_smoothing`` or ``pos_weight`` fails, and the tolerance bounds float32's actual
rounding where the logits are confident (the cancellation the fallback's magnitude misses)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import equivalence
from equivalence import tolerance
from jaxconv import nn as jnn


def _x(*shape, seed=0, scale=1.0):
    return torch.from_numpy((scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32))


class Classifier(torch.nn.Module):
    """A linear classifier whose forward ends in its loss."""

    def __init__(self, loss, c=5):
        super().__init__()
        self.fc = torch.nn.Linear(6, c)
        self.loss = loss

    def forward(self, x, target):
        return self.loss(self.fc(x), target)


def _weights(c=5):
    return torch.rand(c, generator=torch.Generator().manual_seed(1)) + 0.5


def test_a_model_ending_in_a_loss_passes_and_a_wrong_label_smoothing_fails():
    torch.manual_seed(0)
    tm = Classifier(torch.nn.CrossEntropyLoss(weight=_weights(), ignore_index=2, label_smoothing=0.1))
    x, k = _x(8, 6, scale=3), torch.tensor([0, 3, 1, 4, 2, 2, 1, 0])
    jm = equivalence.translate(tm, x, k)
    assert tolerance.kind_of(jm.loss).name == "loss"
    report = equivalence.compare(tm, jm, x, k, grads=True)
    assert report.passed, report.to_text()
    assert {r.name for r in report.rows if r.section == "grad"} == {"fc.weight", "fc.bias", "input[0]"}
    jm.loss.label_smoothing = 0.11
    report = equivalence.compare(tm, jm, x, k)
    assert [r.name for r in report.rows if r.ratio > 1] == ["loss"], report.to_text()


@pytest.mark.slow
def test_a_float_target_has_its_gradient_checked_and_a_wrong_pos_weight_fails():
    torch.manual_seed(0)
    tm = Classifier(torch.nn.BCEWithLogitsLoss(pos_weight=_weights()))
    x, y = _x(8, 6), torch.rand(8, 5, generator=torch.Generator().manual_seed(2))
    jm = equivalence.translate(tm, x, y)
    report = equivalence.compare(tm, jm, x, y, grads=True)
    assert report.passed, report.to_text()
    assert "input[1]" in {r.name for r in report.rows if r.section == "grad"}
    jm.loss.pos_weight[...] = jm.loss.pos_weight[...] * (1 + 1e-4)
    assert not equivalence.compare(tm, jm, x, y, grads=True).passed


@pytest.mark.slow
def test_dtype_casts_the_logits_not_the_class_indices():
    torch.manual_seed(0)
    tm = Classifier(torch.nn.NLLLoss(weight=_weights())).double()
    x, k = _x(8, 6), torch.tensor([0, 3, 1, 4, 2, 2, 1, 0])
    jm = equivalence.translate(tm, x.double(), k)
    report = equivalence.compare(tm, jm, x, k, dtype=torch.float64, grads=True)
    assert report.passed, report.to_text()
    assert [i["dtype"] for i in report.meta["inputs"]] == ["float64", "int64"]


LOSSES = {  # name: (module, inputs)
    "CrossEntropyLoss-2d": (torch.nn.CrossEntropyLoss(label_smoothing=0.2),
                            lambda: (_x(2, 5, 3, 4, scale=4), torch.randint(0, 5, (2, 3, 4), generator=torch.Generator().manual_seed(0)))),
    "KLDivLoss": (torch.nn.KLDivLoss(reduction="batchmean"),
                  lambda: (_x(4, 5).log_softmax(1), _x(4, 5, seed=1).softmax(1))),
    "SmoothL1Loss": (torch.nn.SmoothL1Loss(beta=0.5), lambda: (_x(4, 5), _x(4, 5, seed=1))),
    "CTCLoss": (torch.nn.CTCLoss(blank=0),
                lambda: (_x(7, 2, 5).log_softmax(-1), torch.tensor([[1, 2, 2], [3, 4, 0]]),
                         torch.tensor([7, 6]), torch.tensor([3, 2]))),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", LOSSES)
def test_each_loss_passes_with_gradients(name):
    tm, inputs = LOSSES[name]
    inputs = inputs()
    jm = equivalence.translate(tm, *inputs)
    report = equivalence.compare(tm, jm, *inputs, grads=True)
    assert report.passed, report.to_text()


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_the_tolerance_bounds_float32_rounding_of_confident_logits(seed):
    """Logits of scale 30 whose largest entry is the target: each loss term is near 0 while
    float32 rounds ``x - max`` at ``eps * 30``. The loss model's tolerance (forward and
    gradient) covers the float32 loss's distance from the float64 one; the fallback's
    magnitude, the loss of the absolute logits, is no bound of it."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, 10)) * 30
    k = np.argmax(x, 1)
    m = jnn.CrossEntropyLoss(label_smoothing=0.05)

    value_and_grad = jax.jit(jax.value_and_grad(lambda x: m(x, jnp.asarray(k))))

    (v32, g32), (v64, g64) = value_and_grad(jnp.asarray(x, jnp.float32)), value_and_grad(jnp.asarray(x))
    call = tolerance.LayerCall(module=m, torch_module=None, inputs=(np.asarray(x, np.float32), k),
                               output=np.asarray(v32), magnitude=None, train=False,
                               cotangent=np.ones((), np.float32), cotangents=(np.ones((), np.float32),))
    bounds = tolerance.kind_of(m).model(call)
    assert abs(float(v32) - float(v64)) <= bounds.forward.tolerance(np.float32)
    assert np.all(np.abs(np.asarray(g32, np.float64) - np.asarray(g64)) <= bounds.input.tolerance(np.float32))
