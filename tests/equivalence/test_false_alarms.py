"""Harness false alarms (issue 20): correct ports that ``compare`` failed, one small torch module
per class, each passing now (forward and gradients) while a planted bug still fails at its row.

1. a layer subclass with its own ``forward`` (timm's ``StdConv2d``): module code, checked with
   the running error bound of its code, not the plain conv's model of its stored weight;
2. softmax over masked logits (``-100``, ``-1e4``, ``-inf``): the error model follows the values
   the softmax sees, not the softmax of absolute values;
3. a bicubic resize in module code (CrossViT's ``scale_image``): the resampling weights are
   rounded functions of the source coordinates, which the running bound now carries;
4. train-mode BatchNorm buffers after an ill-conditioned input: checked locally, on torch's
   recorded input of each call, instead of after jaxconv's own free run;
5. a LayerNorm over features far from zero (MaxVit's pooled head): its weight's gradient
   carries the rounding of ``x - mean``, not of ``|xhat|``.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from flax import nnx
from torch import nn as tnn

import equivalence
from equivalence import tolerance
from equivalence.tolerance.running import running_error
from jaxconv import functional as F
from jaxconv import nn as jnn
from tests._zoo import randomize_batchnorm

MARGIN = 0.5    # a correct port reaches at most half the tolerance
BUG_RATIO = 30  # a planted bug exceeds it thirtyfold at least


def _rows(report):
    return {row.name: row for row in report.rows}


def _fails_at(report, name, section="layer"):
    first = report.first_divergence
    assert not report.passed and first.name == name and first.section == section, report.to_text()
    assert first.ratio > BUG_RATIO, report.to_text()
    return first


def _input(*shape, scale=1.0, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy((rng.standard_normal(shape) * scale + offset).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# 1. subclasses with their own forward


class StdConv2d(tnn.Conv2d):
    """timm's ``StdConv2d``: the weight standardised per output channel on every call."""

    def forward(self, x):
        w = TF.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                          training=True, momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return TF.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ScaledStdConv2d(tnn.Conv2d):
    """timm's ``ScaledStdConv2d``: standardised, times a learned gain and ``fan_in ** -0.5``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gain = tnn.Parameter(torch.rand(self.out_channels, 1, 1, 1) + 0.5)
        self.scale = self.weight[0].numel() ** -0.5

    def forward(self, x):
        w = TF.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                          weight=(self.gain * self.scale).view(-1), training=True, momentum=0.0,
                          eps=1e-6).reshape_as(self.weight)
        return TF.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class JaxStdConv2d(jnn.Conv2d):
    """A hand-written port: a jaxconv ``Conv2d`` subclass that overrides ``__call__``."""

    def __call__(self, x):
        w = self.weight[...]
        w = F.batch_norm(w.reshape(1, w.shape[0], -1), None, None, training=True, eps=1e-6).reshape(w.shape)
        return F.conv2d(x, w, self.bias[...], self.stride, self.padding)


def _std_convs():
    torch.manual_seed(0)
    tm = tnn.Sequential(StdConv2d(3, 8, 3, padding=1), tnn.ReLU(), ScaledStdConv2d(8, 4, 3)).eval()
    x = _input(2, 3, 10, 10)
    return tm, equivalence.translate(tm, x), x


def test_a_subclass_with_its_own_forward_is_module_code():
    tm, jm, x = _std_convs()
    assert tolerance.kind_for(jm[0], tm[0]).name == "elementwise, module code"
    assert tolerance.kind_for(JaxStdConv2d(3, 8, 3), tm[0]).name == "dot, module code"
    assert not tolerance.is_module_code(jnn.Conv2d(3, 8, 3)) and not tolerance.is_module_code(jnn.ReLU())
    report = equivalence.compare(tm, jm, x, grads=True)
    assert report.passed and report.worst_ratio() < MARGIN, report.to_text()
    assert {"0", "2", "0.weight", "2.weight", "2.gain", "input[0]"} <= set(_rows(report))

    noise = np.random.default_rng(1).standard_normal(jm[0].weight.shape)
    jm[0].weight[...] = jm[0].weight[...] * (1 + 1e-3 * noise.astype(np.float32))  # planted
    _fails_at(equivalence.compare(tm, jm, x), "0")


@pytest.mark.slow
def test_a_hand_written_subclass_overriding_call_is_module_code():
    tm, _, x = _std_convs()
    torch_conv = tnn.Sequential(tm[0])
    jax_conv = jnn.Sequential(JaxStdConv2d(3, 8, 3, padding=1))
    equivalence.load_state_dict(jax_conv, torch_conv.state_dict())
    report = equivalence.compare(torch_conv, jax_conv, x, grads=True)
    assert report.passed and report.worst_ratio() < MARGIN, report.to_text()
    jax_conv[0].padding = (0, 0)  # planted: the padding dropped in its own code
    assert not equivalence.compare(torch_conv, jax_conv, x).passed


# ---------------------------------------------------------------------------------------------
# 2. softmax over masked logits


class MaskedAttention(tnn.Module):
    """Window attention with an additive mask (Swin's shifted windows), its softmax a module or
    ``F.softmax`` in the code."""

    def __init__(self, mask_value, module=True, tokens=49):
        super().__init__()
        self.qkv = tnn.Linear(16, 48)
        self.softmax = tnn.Softmax(dim=-1) if module else None
        self.proj = tnn.Linear(16, 16)
        g = torch.Generator().manual_seed(1)
        mask = torch.where(torch.rand(tokens, tokens, generator=g) < 0.5, mask_value, 0.0)
        self.register_buffer("mask", mask.fill_diagonal_(0.0))

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, 2, c // 2).permute(2, 0, 3, 1, 4)
        a = q @ k.transpose(-2, -1) * 0.35 + self.mask
        a = self.softmax(a) if self.softmax is not None else TF.softmax(a, -1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


@pytest.mark.parametrize("mask_value", [-1e4] + [pytest.param(v, marks=pytest.mark.slow) for v in (-100.0, float("-inf"))])
def test_softmax_over_masked_logits(mask_value):
    torch.manual_seed(0)
    tm, x = MaskedAttention(mask_value).eval(), _input(4, 49, 16, scale=3.0)
    jm = equivalence.translate(tm, x)
    report = equivalence.compare(tm, jm, x)
    assert report.passed and report.worst_ratio() < MARGIN, report.to_text()
    assert tolerance.kind_for(jm.softmax, tm.softmax).name == "softmax"
    assert _rows(report)["softmax"].tol > 1e-9  # not float32's smallest normal

    class HotSoftmax(jnn.Softmax):  # planted: a temperature off by 1e-3
        _fn = staticmethod(lambda x, dim: F.softmax(x * 1.001, dim))

    jm.softmax = HotSoftmax(-1)
    _fails_at(equivalence.compare(tm, jm, x), "softmax")


@pytest.mark.slow
@pytest.mark.parametrize("module", [True, False])
def test_softmax_over_minus_inf_with_gradients(module):
    torch.manual_seed(0)
    tm, x = MaskedAttention(float("-inf"), module=module).eval(), _input(4, 49, 16, scale=3.0)
    jm = equivalence.translate(tm, x)
    report = equivalence.compare(tm, jm, x, grads=True)
    assert report.passed and report.worst_ratio() < MARGIN, report.to_text()
    jm.mask[...] = jm.mask[...].at[3, 5].set(-np.inf if tm.mask[3, 5] == 0 else 0.0)  # planted: one entry
    _fails_at(equivalence.compare(tm, jm, x), "(root)")  # the mask is added in the root's code


def test_running_bound_of_a_softmax_follows_the_values_it_sees():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((64, 49)) * 4).astype(np.float32)
    x[rng.random(x.shape) < 0.5] = -np.inf
    x[:, 0] = 1.0  # every row keeps an entry
    y, e = running_error(lambda a: F.softmax(a, -1), x)
    exact = torch.softmax(torch.from_numpy(x.astype(np.float64)), -1).numpy()
    e = np.asarray(e)
    assert np.isfinite(e).all() and (e[exact > 1e-3] > 0).all()
    assert (np.abs(np.asarray(y, np.float64) - exact) <= e).all()


# ---------------------------------------------------------------------------------------------
# 3. module code that resizes its input


class ResizeThenConv(tnn.Module):
    """CrossViT's ``scale_image``: a bicubic resize in the module's own code, then a branch."""

    def __init__(self, size=224, align_corners=False, leaf=False):
        super().__init__()
        self.size, self.align_corners = size, align_corners
        self.up = tnn.Upsample(size=size, mode="bicubic", align_corners=align_corners) if leaf else None
        self.conv = tnn.Conv2d(1, 2, 8, stride=8)

    def forward(self, x):
        if self.up is not None:
            return self.conv(self.up(x))
        return self.conv(TF.interpolate(x, size=self.size, mode="bicubic", align_corners=self.align_corners))


class JaxResizeThenConv(jnn.Module):
    def __init__(self, mode="bicubic"):
        self.mode = mode
        self.conv = jnn.Conv2d(1, 2, 8, stride=8)

    def __call__(self, x):
        return self.conv(F.interpolate(x, size=224, mode=self.mode, align_corners=False))


def test_resize_in_module_code():
    torch.manual_seed(0)
    tm, x = ResizeThenConv().eval(), _input(1, 1, 240, 240)
    report = equivalence.compare(tm, equivalence.translate(tm, x), x)
    assert report.passed and report.worst_ratio() < MARGIN, report.to_text()

    jm = JaxResizeThenConv(mode="bilinear")  # planted: bilinear where torch resizes bicubic
    equivalence.load_state_dict(jm, tm.state_dict())
    first = _fails_at(equivalence.compare(tm, jm, x), "(root)")
    assert "input of conv" in first.note


@pytest.mark.slow
@pytest.mark.parametrize("grads", [False, True])
def test_resize_as_a_layer(grads):
    torch.manual_seed(0)
    tm, x = ResizeThenConv(size=240, align_corners=True, leaf=True).eval(), _input(1, 1, 224, 224)
    jm = equivalence.translate(tm, x)
    assert tolerance.kind_for(jm.up, tm.up).name == "resize"
    report = equivalence.compare(tm, jm, x, grads=grads)
    assert report.passed and report.worst_ratio() < MARGIN, report.to_text()
    jm.up.align_corners = False  # planted
    _fails_at(equivalence.compare(tm, jm, x), "up")


@pytest.mark.parametrize("mode, sizes, align_corners, antialias", [
    ("bicubic", (240, 224), False, False),
    pytest.param("bicubic", (224, 240), True, False, marks=pytest.mark.slow),
    pytest.param("bilinear", (37, 100), False, False, marks=pytest.mark.slow),
    pytest.param("bicubic", (384, 240), False, True, marks=pytest.mark.slow),
    pytest.param("bicubic", (100, 37), True, False, marks=pytest.mark.slow),
    pytest.param("bilinear", (500, 250), False, True, marks=pytest.mark.slow)])
def test_running_bound_of_a_resize_covers_torch(mode, sizes, align_corners, antialias):
    """torch's float32 resize and jaxconv's differ by the rounding of the source coordinates
    (torch's compiled kernel fuses the multiply-add): at 240 -> 224 by 1e-5 relative, as far as
    each is from float64. The running bound carries it, and allows less than 1e-3."""
    n, m = sizes
    x, size = _input(1, 2, n, n + 3, seed=n), (m, m + 1)
    kwargs = {"size": size, "mode": mode, "align_corners": align_corners, "antialias": antialias}
    want = TF.interpolate(x, **kwargs).numpy()
    y, e = running_error(lambda a: F.interpolate(a, **kwargs), x.numpy())
    e = np.asarray(e, np.float64)
    assert (np.abs(np.asarray(y, np.float64) - want) <= e).all()
    assert tolerance.C * e.max() < 3e-3 * np.abs(x.numpy()).max()


# ---------------------------------------------------------------------------------------------
# 4. training-mode buffers after errors that propagate


def _two_blocks(channels=64):
    """Two conv-BatchNorm blocks; the second normalises 8 values per channel. The input's large
    common offset makes the first normalisation ill-conditioned, so the free runs' inputs to the
    second differ as much as in a ResNet-50's last stage at batch 2 (torch's float32 from its
    float64 by 1e-4 relative)."""
    torch.manual_seed(0)
    tm = tnn.Sequential(tnn.Conv2d(channels, channels, 3, bias=False), tnn.BatchNorm2d(channels), tnn.ReLU(),
                        tnn.Conv2d(channels, channels, 3, bias=False), tnn.BatchNorm2d(channels))
    x = _input(2, channels, 6, 6, offset=100.0)
    tm = randomize_batchnorm(tm).train()
    return tm, equivalence.translate(tm, x), x


def test_buffers_are_checked_locally():
    tm, jm, x = _two_blocks()
    planted_torch, planted_jax = copy.deepcopy(tm), nnx.clone(jm)
    report = equivalence.compare(tm, jm, x, train=True)
    assert report.passed and report.worst_ratio() < MARGIN, report.to_text()
    row = _rows(report)["4.running_mean"]
    assert row.check == "local" and row.e2e > 2 * row.tol  # the free run's drift would fail it

    planted_jax[4].momentum = 0.2  # planted: torch's is 0.1
    _fails_at(equivalence.compare(planted_torch, planted_jax, x, train=True), "4.running_mean", "buffer")


class _Offset(tnn.Module):
    def forward(self, x):
        return x * 0.05 + 3.0     # features far from zero next to their spread (a pooled map)


def test_layer_norm_of_offset_features():
    # the weight's gradient sums g * xhat, and xhat carries the rounding of (x - mean): eps times
    # the spread of x over sigma, not eps * |xhat| (which vanishes where xhat does; MaxVit's head)
    torch.manual_seed(0)
    tm = tnn.Sequential(tnn.Linear(16, 32), _Offset(), tnn.LayerNorm(32), tnn.Linear(32, 3))
    with torch.no_grad():
        tm[2].weight.normal_(), tm[2].bias.normal_()
    x = torch.randn(2, 16)
    jm = equivalence.translate(tm, x)
    report = equivalence.compare(tm, jm, x, grads=True)
    assert report.passed and report.worst_ratio() < MARGIN, report.to_text()
    assert _rows(report)["2.weight"].check == "local"

    jm[2].eps = 1e-3    # planted: torch's is 1e-5 (the variance's bound once hid it: ratio 3)
    _fails_at(equivalence.compare(tm, jm, x), "2")
