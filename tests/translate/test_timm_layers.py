"""timm's library layers through the translator, one at a time: its activation modules (and
their in-place and custom-autograd forms), normalisation-with-activation layers, weight-
standardised convs, pooling, attention gates and conv variants. Eval forward against torch
(float32), and train mode with the BatchNorm buffers where the layer has any."""
import copy

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import equivalence
from equivalence import translate
from tests._zoo import randomize_batchnorm, relative_error, timm


def _layers():
    timm()
    import timm.layers as layers

    return layers


def _act(name, module="activations", **kwargs):
    def make():
        import importlib

        timm()
        cls = getattr(importlib.import_module(f"timm.layers.{module}"), name)
        act = cls(**kwargs)
        # in place: after a conv, so that the input it overwrites is not the caller's
        return torch.nn.Sequential(torch.nn.Conv2d(8, 8, 1), act) if kwargs.get("inplace") else act
    return make


class _CondConv(torch.nn.Module):
    """CondConv2d as timm's CondConvResidual calls it: per-sample expert routing weights."""

    def __init__(self):
        super().__init__()
        self.route = torch.nn.Linear(8, 3)
        self.conv = _layers().CondConv2d(8, 12, 3, stride=2, padding="", num_experts=3)

    def forward(self, x):
        return self.conv(x, torch.sigmoid(self.route(x.mean((2, 3)))))


ACTIVATIONS = ["Swish", "Mish", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "HardMish", "GELU",
               "GELUTanh", "QuickGELU"]
LAYERS = {
    **{n: _act(n) for n in ACTIVATIONS},
    **{f"{n} (inplace)": _act(n, inplace=True) for n in ACTIVATIONS},
    **{n: _act(n, "activations_me") for n in ("SwishMe", "MishMe", "HardSigmoidMe", "HardSwishMe",
                                               "HardMishMe")},
    "PReLU": lambda: _layers().activations.PReLU(8),
    "Linear": lambda: torch.nn.Sequential(torch.nn.Flatten(), _layers().Linear(8 * 6 * 6, 5)),
    "MixedConv2d": lambda: _layers().MixedConv2d(8, 12, [3, 5, 7], stride=2),
    "CondConv2d": _CondConv,
    "BlurPool2d": lambda: _layers().BlurPool2d(8, filt_size=3, stride=2),
    "SplitAttn": lambda: _layers().SplitAttn(8, 8, kernel_size=3, radix=2,
                                                 norm_layer=torch.nn.BatchNorm2d),
    "EffectiveSEModule": lambda: _layers().EffectiveSEModule(8),
    "SEModule": lambda: _layers().SEModule(8, rd_ratio=0.5),
    "EcaModule": lambda: _layers().EcaModule(8),
    "SelectiveKernel": lambda: _layers().SelectiveKernel(8, 8),
    **{f"SelectAdaptivePool2d({p})": (lambda p=p: _layers().SelectAdaptivePool2d(pool_type=p, flatten=True))
       for p in ("avg", "max", "avgmax", "catavgmax", "fast")},
    "LayerNorm2d": lambda: _layers().LayerNorm2d(8),
    "BatchNormAct2d": lambda: _layers().BatchNormAct2d(8, act_layer=torch.nn.SiLU),
    "GroupNormAct": lambda: _layers().GroupNormAct(8, 2, act_layer=torch.nn.ReLU),
    "GroupNorm1": lambda: _layers().GroupNorm1(8),
    "StdConv2d": lambda: _layers().StdConv2d(8, 12, 3, padding=1),
    "ScaledStdConv2d": lambda: _layers().ScaledStdConv2d(8, 12, 3, padding=1),
    "ConvNormAct": lambda: _layers().ConvNormAct(8, 12, 3, stride=2, act_layer=torch.nn.ReLU),
    "DropPath": lambda: torch.nn.Sequential(torch.nn.Conv2d(8, 8, 1), _layers().DropPath(0.3)),
    "ConvMlp": lambda: _layers().ConvMlp(8, 12, 8),
    "GlobalResponseNormMlp": lambda: _layers().GlobalResponseNormMlp(6, 12, 6),
    "LayerScale2d": lambda: _layers().LayerScale2d(8),
}
#: Layers with BatchNorm buffers: train forward and buffers checked as well.
BATCHNORM = {"BatchNormAct2d", "ConvNormAct", "SplitAttn", "SelectiveKernel"}


def _randomize(m, seed=0):
    """Random values in every floating parameter (timm zero-inits some: LayerScale, GRN)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + 0.5)
    return randomize_batchnorm(m, seed)


@pytest.mark.parametrize("name", list(LAYERS))
def test_timm_layer_matches_torch(name):
    torch.manual_seed(0)
    tm = _randomize(LAYERS[name]()).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 8, 6, 6)).astype(np.float32))
    train_twin = copy.deepcopy(tm).train()
    jm = translate(tm)
    with torch.no_grad():
        ref = tm(x.clone())
    assert relative_error(jm(jnp.asarray(x.numpy())), ref) <= 1e-4
    if name not in BATCHNORM:
        return
    jm.train()
    with torch.no_grad():
        ref = train_twin(x.clone())
    assert relative_error(jm(jnp.asarray(x.numpy())), ref) <= 1e-4
    ours = equivalence.state_dict(jm)
    buffers = {k: v for k, v in train_twin.state_dict().items() if k.endswith(("running_mean", "running_var"))}
    assert buffers
    for k, v in buffers.items():
        assert relative_error(ours[k], v) <= 1e-4, k
