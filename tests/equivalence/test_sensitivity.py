"""Planted bugs: the harness must fail and name the layer; the correct port must pass with margin.

These tests also fix the tolerance constant ``c``: float32 ports stay well below ratio 1 and
every planted bug exceeds it by orders of magnitude.
"""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn as tnn

import equivalence
from equivalence._torch import to_numpy
from equivalence import tolerance
from jaxconv import functional as F
from jaxconv import nn as jnn

MARGIN = 0.5     # a correct float32 port reaches at most half the tolerance
BUG_RATIO = 100  # a planted bug exceeds it a hundredfold at least


class TorchNet(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = tnn.BatchNorm2d(8)
        self.act = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(8)
        self.up = tnn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.fc = tnn.Linear(8 * 8 * 8, 5)

    def forward(self, x):
        y = self.act(self.bn1(self.conv1(x)))
        y = self.act(self.bn2(self.conv2(y)) + y)
        return self.fc(self.up(y).flatten(1))


class JaxNet(jnn.Module):
    def __init__(self, bn=jnn.BatchNorm2d, conv1=jnn.Conv2d, nhwc_flatten=False):
        self.conv1 = conv1(3, 8, 3, padding=1)
        self.bn1 = bn(8)
        self.act = jnn.ReLU()
        self.conv2 = jnn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = jnn.BatchNorm2d(8)
        self.up = jnn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1)
        self.fc = jnn.Linear(8 * 8 * 8, 5)
        self.nhwc_flatten = nhwc_flatten

    def __call__(self, x):
        y = self.act(self.bn1(self.conv1(x)))
        y = self.act(self.bn2(self.conv2(y)) + y)
        y = self.up(y)
        if self.nhwc_flatten:  # planted: channels-last flatten order
            y = jnp.transpose(y, (0, 2, 3, 1))
        return self.fc(y.reshape(y.shape[0], -1))


class PadHighConv2d(jnn.Conv2d):
    """Planted: pads (0, 2) on each spatial dim instead of (1, 1)."""

    def __call__(self, x):
        x = F.pad(x, (0, 2, 0, 2))
        return F.conv2d(x, self.weight[...], self.bias[...])


class Eps3BatchNorm2d(jnn.BatchNorm2d):
    """Planted: eps 1e-3 instead of 1e-5."""

    def __init__(self, n):
        super().__init__(n, eps=1e-3)


class BiasedVarBatchNorm2d(jnn.BatchNorm2d):
    """Planted: the running variance is updated with the biased batch variance."""

    def __call__(self, x):
        if self.use_running_average:
            return super().__call__(x)
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))  # biased: divides by m, torch by m - 1
        m = self.momentum
        self.running_mean[...] = (1 - m) * self.running_mean[...] + m * mean
        self.running_var[...] = (1 - m) * self.running_var[...] + m * var
        self.num_batches_tracked[...] = self.num_batches_tracked[...] + 1
        xhat = (x - mean[:, None, None]) / jnp.sqrt(var[:, None, None] + self.eps)
        return xhat * self.weight[...][:, None, None] + self.bias[...][:, None, None]


SHAPE = (2, 3, 4, 4)
ONE = (1, 3, 4, 4)  # a batch of one: the biased variance is 15/16 of torch's, visible in bfloat16


DTYPES = ("float32", "bfloat16", "float16")
#: How far a planted bug must exceed the tolerance: a hundredfold in float32; in float16 and
#: bfloat16, whose tolerance is an ulp of 2**-10 and 2**-7, the subtler bugs (a 1/31 larger
#: running variance) exceed it by less.
BUG_RATIOS = {"float32": BUG_RATIO, "float16": 10, "bfloat16": 2}


def _pair(dtype="float32", **jax_kwargs):
    torch.manual_seed(0)
    tm = TorchNet()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial BatchNorm parameters and statistics
        for bn in (tm.bn1, tm.bn2):
            bn.weight.copy_(torch.rand(8, generator=gen) + 0.5)
            bn.bias.copy_(torch.rand(8, generator=gen) - 0.5)
            bn.running_mean.copy_(torch.rand(8, generator=gen) - 0.5)
            # log-spread down to 1e-4: an eps of 1e-3 for 1e-5 shows above a bfloat16 ulp
            bn.running_var.copy_(10 ** (-4 * torch.rand(8, generator=gen)))
    jm = JaxNet(**jax_kwargs)
    tm.to(getattr(torch, dtype))
    equivalence.load_state_dict(jm, tm.state_dict(), dtype=getattr(jnp, dtype))
    return tm.eval(), jm


def _assert_fails_at(report, name, dtype="float32"):
    assert not report.passed
    first = report.first_divergence
    assert first.name == name, report.to_text()
    assert first.ratio > BUG_RATIOS[dtype], report.to_text()
    # nothing before it in data-flow order fails: the bug does not smear upstream
    layer_rows = [r for r in report.rows if r.section == "layer"]
    assert all(r.passed for r in layer_rows[:layer_rows.index(first)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("train", [False, True])
def test_correct_port_passes_with_margin(train, dtype):
    tm, jm = _pair(dtype)
    report = equivalence.compare(tm, jm, SHAPE, grads=True, train=train, dtype=dtype)
    assert report.passed, report.to_text()
    assert report.worst_ratio() < MARGIN, report.to_text()
    sections = {r.section for r in report.rows}
    assert sections == ({"layer", "grad", "buffer"} if train else {"layer", "grad"})


@pytest.mark.parametrize("dtype", DTYPES)
def test_flipped_kernel(dtype):
    tm, jm = _pair(dtype)
    jm.conv2.weight[...] = jm.conv2.weight[...][:, :, ::-1, ::-1]
    _assert_fails_at(equivalence.compare(tm, jm, SHAPE, dtype=dtype), "conv2", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transposed_conv_in_out_swapped(dtype):
    tm, jm = _pair(dtype)
    assert jm.up.weight.shape[0] == jm.up.weight.shape[1]  # square: loads without complaint
    jm.up.weight[...] = jnp.swapaxes(jm.up.weight[...], 0, 1)
    _assert_fails_at(equivalence.compare(tm, jm, SHAPE, dtype=dtype), "up", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_padding_on_the_wrong_side(dtype):
    tm, jm = _pair(dtype, conv1=PadHighConv2d)
    _assert_fails_at(equivalence.compare(tm, jm, SHAPE, dtype=dtype), "conv1", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_eps_1e3_instead_of_1e5(dtype):
    tm, jm = _pair(dtype, bn=Eps3BatchNorm2d)
    _assert_fails_at(equivalence.compare(tm, jm, SHAPE, dtype=dtype), "bn1", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_biased_running_variance(dtype):
    tm, jm = _pair(dtype, bn=BiasedVarBatchNorm2d)
    rng = np.random.default_rng(3)
    tm.train(), jm.train()
    for _ in range(10):  # training steps on the same batches
        x = rng.standard_normal(ONE).astype(np.float32)
        tm(torch.from_numpy(x).to(getattr(torch, dtype))), jm(jnp.asarray(x, dtype))
    # the training outputs agree (batch statistics); the drift hides in the buffer ...
    np.testing.assert_allclose(to_numpy(tm.bn1.running_mean).astype(np.float64),
                               np.asarray(jm.bn1.running_mean[...], np.float64),
                               atol=4 * tolerance.eps(dtype))
    # ... and the eval forward diverges at that BatchNorm
    _assert_fails_at(equivalence.compare(tm.eval(), jm, SHAPE, dtype=dtype), "bn1", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_biased_running_variance_caught_in_train_mode_buffers(dtype):
    tm, jm = _pair(dtype, bn=BiasedVarBatchNorm2d)
    report = equivalence.compare(tm, jm, ONE, train=True, dtype=dtype)
    assert not report.passed
    assert all(r.passed for r in report.rows if r.section == "layer")
    assert report.first_divergence.name == "bn1.running_var"
    assert report.first_divergence.ratio > BUG_RATIOS[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_nhwc_flatten_before_linear(dtype):
    tm, jm = _pair(dtype, nhwc_flatten=True)
    report = equivalence.compare(tm, jm, SHAPE, dtype=dtype)
    _assert_fails_at(report, "(root)", dtype)  # the bug is in the root's own code ...
    assert "input of fc" in report.first_divergence.note  # ... in what it hands to fc
    assert report.first_divergence.check == "glue"


def test_tolerance_formula():
    eps32 = np.finfo(np.float32).eps
    tol = tolerance.tolerance(np.array([2.0, 0.0]), 16, np.float32, c=3.0)
    assert tol[0] == pytest.approx(3.0 * eps32 * 4 * 2.0)
    assert 0 < tol[1] < 1e-37  # floored at the smallest normal: exact zeros pass, nothing else
    assert tolerance.eps(np.float64) == np.finfo(np.float64).eps
    assert tolerance.reduction_ratio([np.zeros((2, 8))], np.zeros((2, 2)), operands=1) == 4.0


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_autocast_port_passes_and_a_planted_bug_is_caught(dtype):
    """Under autocast (float32 weights, convs and linear in ``dtype``): the correct port passes
    with margin, gradients included, and a flipped kernel is caught at its layer."""
    tm, jm = _pair()
    report = equivalence.compare(tm, jm, SHAPE, grads=True, autocast=dtype)
    assert report.passed and report.worst_ratio() < MARGIN, report.to_text()
    assert {r.dtype for r in report.rows if r.name == "conv2"} == {dtype}
    jm.conv2.weight[...] = jm.conv2.weight[...][:, :, ::-1, ::-1]
    _assert_fails_at(equivalence.compare(tm, jm, SHAPE, autocast=dtype), "conv2", dtype)
