"""compare_training replays torch's dropout and stochastic depth masks: models with Dropout,
Dropout2d, timm's DropPath and torchvision's StochasticDepth train side by side and pass; a mask
that is not torch's fails at step 0's loss; F.dropout in a forward is refused by name."""
import numpy as np
import pytest
import torch

import equivalence
import jaxconv.optim as jopt
from equivalence.training import compare as compare_mod
from equivalence.training._masks import jax_masks
from tests._zoo import randomize_batchnorm, timm
from tests.equivalence.training._recipe import SHAPE, batches

SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}


def _dropout_model():
    """conv -> BatchNorm -> ReLU -> Dropout(0.3) -> linear."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4),
                                torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 4 * 4, 5))
    return randomize_batchnorm(model)


class Residual(torch.nn.Module):
    """``x + drop(bn(conv(x)))``, ``drop`` a stochastic depth module."""

    def __init__(self, drop):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(4)
        self.drop = drop

    def forward(self, x):
        return x + self.drop(self.bn(self.conv(x)))


def _depth_model():
    """A stem, a block with timm's DropPath (0.4), one with torchvision's StochasticDepth
    ('row', 0.3), Dropout2d, a linear head."""
    DropPath = timm().layers.DropPath     # imports torchvision through the helper
    from torchvision.ops import StochasticDepth
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4),
                                Residual(DropPath(0.4)), Residual(StochasticDepth(0.3, "row")),
                                torch.nn.Dropout2d(0.25), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 4 * 4, 5))
    return randomize_batchnorm(model)


def _compare(model, steps=4):
    port = equivalence.translate(model, torch.zeros(SHAPE))
    opt = torch.optim.SGD(model.parameters(), **SGD)
    state = torch.get_rng_state()
    report = equivalence.compare_training(model, port, opt, jopt.SGD(**SGD), batches(4, seed=2),
                                        torch.nn.CrossEntropyLoss(), steps=steps, max_grad_norm=1.0)
    assert torch.equal(torch.get_rng_state(), state)    # the caller's generator is untouched
    return report


def test_dropout_replayed():
    """Dropout(p=0.3) over 4 steps: every check passes with torch's masks."""
    report = _compare(_dropout_model())
    assert report.passed, report.to_text()


def _other_masks(recorded):
    """Planted: each mask replaced by another draw of the same probability."""
    rng = np.random.default_rng(0)
    return {name: tuple(rng.random(k.shape) < k.mean() for k in keeps)
            for name, keeps in jax_masks(recorded).items()}


def test_mask_from_another_draw_fails_at_step_0(monkeypatch):
    monkeypatch.setattr(compare_mod, "jax_masks", _other_masks)
    report = _compare(_dropout_model(), steps=1)
    first = report.first_divergence
    assert (first.step, first.stage) == (0, "loss"), report.verdict()


@pytest.mark.slow
def test_stochastic_depth_replayed():
    """timm's DropPath, torchvision's StochasticDepth and Dropout2d over 4 steps."""
    report = _compare(_depth_model())
    assert report.passed, report.to_text()


class FunctionalDropout(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = _dropout_model()[:3]
        self.head = torch.nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        return self.head(torch.nn.functional.dropout(self.body(x), 0.2, self.training).flatten(1))


def test_functional_dropout_refused():
    model = FunctionalDropout()
    port = equivalence.translate(model, torch.zeros(SHAPE))
    with pytest.raises(ValueError, match="calls dropout in its forward, outside a module"):
        equivalence.compare_training(model, port, torch.optim.SGD(model.parameters(), lr=0.1),
                                     jopt.SGD(lr=0.1), batches(1), torch.nn.CrossEntropyLoss())
