"""``equivalence.compare`` proves translated zoo models layer by layer, forward and gradients.

Models whose layers include a LayerNorm, or a traced normalization such as timm's
BatchNormAct2d, are not here yet: the tolerance policy has no error model for them, and the
elementwise fallback is too tight for a normalization (see the README's translation section).
"""
import numpy as np
import pytest
import torch

import equivalence
from tests._zoo import randomize_batchnorm, timm, torchvision_models


def _torchvision(name):
    return lambda: torchvision_models().get_model(name)


def _timm(name):
    return lambda: timm().create_model(name, pretrained=False, num_classes=10)


MODELS = {
    "torchvision resnet18": (_torchvision("resnet18"), 64, True),
    "torchvision mobilenet_v3_small": (_torchvision("mobilenet_v3_small"), 64, False),
    "timm resnet18d": (_timm("resnet18d"), 64, False),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if quick else pytest.mark.slow)
                                  for n, (_, _, quick) in MODELS.items()])
def test_translation_is_proven_by_compare(name):
    make, side, _ = MODELS[name]
    torch.manual_seed(0)
    tm = randomize_batchnorm(make()).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, side, side)).astype(np.float32))
    report = equivalence.compare(tm, equivalence.translate(tm, x), x, grads=True)
    assert report.passed, report.to_text()
    assert len(report.rows) > 10
