"""The normalization error models: every norm passes on its own statistics, forward and
gradients, on inputs whose mean dwarfs their spread, and a weight off by 1e-4 fails."""
import numpy as np
import pytest
import torch
from torch import nn as tnn

import equivalence
from equivalence import tolerance
from jaxconv import nn as jnn
from tests._zoo import timm

NORMS = {  # name: (constructor args, input shape, kind)
    "LayerNorm": (((6, 5),), (3, 4, 6, 5), "normalization"),
    "GroupNorm": ((2, 6), (3, 6, 5, 4), "normalization"),
    "InstanceNorm2d": ((6,), (3, 6, 5, 4), "normalization"),
    "RMSNorm": (((5,),), (3, 4, 6, 5), "normalization"),
    "BatchNorm2d": ((6,), (3, 6, 5, 4), "batchnorm"),
}


def _pair(name, train):
    args, shape, _ = NORMS[name]
    kwargs = {"affine": True} if name == "InstanceNorm2d" else {}
    torch.manual_seed(0)
    tm = getattr(tnn, name)(*args, **kwargs)
    with torch.no_grad():
        tm.weight.uniform_(0.75, 1.25)
        if getattr(tm, "bias", None) is not None:
            tm.bias.normal_(0, 0.1)
        if getattr(tm, "running_mean", None) is not None:
            tm.running_mean.copy_(torch.randn_like(tm.running_mean) * 0.1 + 3.0)
            tm.running_var.copy_(torch.rand_like(tm.running_var) * 0.5 + 0.75)
    jm = getattr(jnn, name)(*args, **kwargs)
    equivalence.load_state_dict(jm, tm.state_dict())
    x = torch.from_numpy(3.0 + np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    return tm.train(train), jm, x


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", NORMS)
def test_each_norm_passes_on_its_own_statistics(name, train):
    tm, jm, x = _pair(name, train)
    assert tolerance.kind_of(jm).name == NORMS[name][2]
    report = equivalence.compare(tm, jm, x, grads=True)
    assert report.passed, report.to_text()
    assert max(r.ratio for r in report.rows) > 1e-3  # the tolerance is at rounding scale, not slack


@pytest.mark.parametrize("name", NORMS)
def test_a_weight_off_by_1e_4_fails(name):
    tm, jm, x = _pair(name, False)
    jm.weight[...] = jm.weight[...] * (1 + 1e-4)
    row = equivalence.compare(tm, jm, x).rows[0]
    assert row.ratio > 1, row


class _BatchNormRelu(tnn.BatchNorm2d):
    """A BatchNorm2d subclass whose forward the translator traces (as timm's BatchNormAct2d)."""

    def __init__(self, c):
        super().__init__(c)
        self.act = tnn.ReLU()

    def forward(self, x):
        return self.act(torch.nn.functional.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.training, 0.1, self.eps))


class _Net(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(3, 8, 3)
        self.bn = _BatchNormRelu(8)
        self.ln = timm().layers.LayerNorm2d(8)

    def forward(self, x):
        return self.ln(self.bn(self.conv(x)))


def test_traced_normalizations_are_bounded_by_their_torch_kind():
    torch.manual_seed(0)
    tm = _Net().eval()
    with torch.no_grad():
        tm.bn.running_mean.normal_(0, 0.1)
        tm.bn.running_var.uniform_(0.75, 1.25)
        tm.ln.weight.uniform_(0.75, 1.25)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32))
    jm = equivalence.translate(tm, x)
    assert tolerance.kind_of(jm.ln).name == tolerance.FALLBACK  # a translated class, not a jaxconv norm
    assert tolerance.kind_for(jm.ln, tm.ln).name == "normalization"
    assert tolerance.kind_for(jm.bn, tm.bn).name == "batchnorm"
    report = equivalence.compare(tm, jm, x, grads=True)
    assert report.passed, report.to_text()
    grads = {r.name: r for r in report.rows if r.section == "grad"}
    assert {"bn.weight", "bn.bias", "ln.weight", "ln.bias"} <= set(grads)
    assert not any("end-to-end only" in r.note for r in grads.values())  # bn's affine: its own code
    jm.ln.bias[...] = jm.ln.bias[...] + 1e-5
    jm.bn.weight[...] = jm.bn.weight[...] * (1 + 1e-4)
    failed = {r.name for r in equivalence.compare(tm, jm, x).rows if r.ratio > 1}
    assert {"bn", "ln"} <= failed, failed
