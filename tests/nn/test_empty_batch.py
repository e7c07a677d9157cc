"""Zero-size batches: every module in ``jaxconv.nn`` on an ``(0, C, ...)`` input against torch.

Train and eval mode, eager and under ``nnx.jit``: the output shape and dtype, and every
parameter and buffer afterwards (BatchNorm keeps its running statistics on an empty batch and
still counts it in ``num_batches_tracked``, as torch does).
"""
import inspect

import numpy as np
import pytest
import torch
from flax import nnx

import jaxconv.nn as nn
from equivalence.state_dict import load_state_dict, state_dict

S = {1: (0, 6, 7), 2: (0, 6, 7, 5), 3: (0, 6, 5, 4, 3)}
MODULES = []


def module(name, args, shape, torch_raises=False, **kwargs):
    MODULES.append(pytest.param(name, args, kwargs, shape, torch_raises,
                                id=f"{name}-{len(MODULES)}"))


for n in (1, 2, 3):
    d = f"{n}d"
    module(f"Conv{d}", (6, 4, 3), S[n], stride=2, padding=1)
    module(f"Conv{d}", (6, 6, 3), S[n], groups=6, padding="same", padding_mode="reflect")
    module(f"ConvTranspose{d}", (6, 4, 3), S[n], stride=2, output_padding=1)
    module(f"BatchNorm{d}", (6,), S[n] if n > 1 else (0, 6))
    module(f"BatchNorm{d}", (6,), S[n], momentum=None)
    module(f"BatchNorm{d}", (6,), S[n], track_running_stats=False)
    module(f"InstanceNorm{d}", (6,), S[n])
    module(f"InstanceNorm{d}", (6,), S[n], track_running_stats=True)
    module(f"InstanceNorm{d}", (6,), S[n], torch_raises=True, affine=True)
    module(f"MaxPool{d}", (2,), S[n], stride=1, padding=1)
    module(f"MaxPool{d}", (2,), S[n], return_indices=True)
    module(f"AvgPool{d}", (3,), S[n], stride=2, padding=1, ceil_mode=True)
    module(f"LPPool{d}", (2.0, 2), S[n])
    module(f"AdaptiveAvgPool{d}", (3,), S[n])
    module(f"AdaptiveMaxPool{d}", (2,), S[n], return_indices=True)
    module(f"Dropout{d}", (0.5,), S[n])
    for pad in ("Circular", "Reflection", "Replication", "Zero"):
        module(f"{pad}Pad{d}", (1,), S[n])
    module(f"ConstantPad{d}", (2, 0.5), S[n])
module("BatchNorm1d", (6,), (0, 6, 7))
module("SyncBatchNorm", (6,), S[2])
module("GroupNorm", (3, 6), S[2])
module("LayerNorm", ((7, 5),), S[2])
module("RMSNorm", (5,), S[2])
module("LocalResponseNorm", (3,), S[2])
module("Linear", (6, 4), (0, 6))
module("Linear", (5, 4), S[2], bias=False)
module("Identity", (), S[2])
module("Flatten", (), S[2])
module("Unflatten", (1, (2, 3)), S[1])
module("Dropout", (0.3,), S[2])
module("Upsample", (), S[2], scale_factor=2, mode="bilinear")
module("Upsample", (), S[3], size=(2, 3, 4), mode="trilinear", align_corners=True)
module("Upsample", (), S[1], scale_factor=1.5)
module("UpsamplingNearest2d", (), S[2], scale_factor=2)
module("UpsamplingBilinear2d", (), S[2], size=(3, 4))
module("PixelShuffle", (2,), (0, 8, 3, 2))
module("ChannelShuffle", (3,), S[2])
module("Unfold", (2,), (0, 3, 5, 4), padding=1)
module("Fold", ((3, 4), 2), (0, 12, 6))
module("PReLU", (6,), S[2])
for act in ("CELU", "ELU", "GELU", "Hardsigmoid", "Hardswish", "Hardtanh", "LeakyReLU", "Mish",
            "ReLU", "ReLU6", "SELU", "Sigmoid", "SiLU", "Softplus", "Tanh"):
    module(act, (), S[2])
for act in ("Softmax", "Softmin", "LogSoftmax"):
    module(act, (1,), S[2])
module("Sequential", (), S[2])  # built below: conv, batch norm, relu, pool, flatten, linear
module("MultiheadAttention", (4, 2), (5, 0, 4))
module("StochasticDepth", (0.3, "row"), S[2])  # torchvision.ops's
module("DropPath", (0.3,), S[2])               # timm's
# torch's PixelUnshuffle returns an empty input unchanged (a wrong shape): see
# tests/functional/test_empty_batch.py; jaxconv gives the shape of a non-empty batch.
module("PixelUnshuffle", (2,), (0, 2, 4, 6))

for rnn in ("LSTM", "GRU", "RNN"):
    module(rnn, (6, 4), (5, 0, 6), num_layers=2)
    module(f"{rnn}Cell", (6, 4), (0, 6))

NOT_CALLED = {"Module", "ModuleList", "ModuleDict",  # containers without a forward of their own
              "RNNBase", "RNNCellBase"}              # the recurrent layers' bases
# the losses (and PairwiseDistance) take two or more arguments: their empty batches are in
# tests/functional/test_empty_batch.py (every loss function) and tests/nn/test_loss.py
NOT_CALLED |= {k for k in vars(nn) if k.endswith("Loss")} | {"PairwiseDistance"}


def _library_module(name):
    """torchvision's StochasticDepth and timm's DropPath, the twins of jaxconv's."""
    from tests._zoo import timm

    library = timm()   # imports torchvision too
    if name == "DropPath":
        return library.layers.DropPath
    from torchvision.ops import StochasticDepth

    return StochasticDepth


def build(lib, name, args, kwargs):
    if name == "Sequential":
        return lib.Sequential(lib.Conv2d(6, 4, 3, padding=1), lib.BatchNorm2d(4), lib.ReLU(),
                              lib.AdaptiveAvgPool2d(2), lib.Flatten(), lib.Linear(16, 3))
    if lib is torch.nn and name in ("StochasticDepth", "DropPath"):
        return _library_module(name)(*args, **kwargs)
    return getattr(lib, name)(*args, **kwargs)


def test_every_module_has_a_case():
    public = {k for k, v in vars(nn).items() if inspect.isclass(v) and issubclass(v, nnx.Module)}
    missing = sorted(public - NOT_CALLED - {p.values[0] for p in MODULES})
    assert not missing, f"no empty-batch case for {missing}"


def _randomise(theirs):
    """Random parameters and running statistics, so that 'unchanged' is a real check."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, v in theirs.state_dict().items():
            if v.dtype.is_floating_point:
                v.copy_(torch.rand(v.shape, generator=g) + 0.5 if name.endswith("running_var")
                        else torch.randn(v.shape, generator=g))


def _leaves(out):
    """The arrays of an output, nested tuples (an LSTM's ``(output, (h, c))``) flattened."""
    if not isinstance(out, tuple):
        return (out,)
    return tuple(leaf for o in out for leaf in _leaves(o))


def _call(m, x):
    """``m(x)``; MultiheadAttention as self-attention, its output alone."""
    if type(m).__name__ == "MultiheadAttention":
        return m(x, x, x, need_weights=False)[0]
    return m(x)


_jit_call = nnx.jit(_call)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name,args,kwargs,shape,torch_raises", MODULES)
def test_empty_batch_module_matches_torch(name, args, kwargs, shape, torch_raises, training):
    theirs = build(torch.nn, name, args, kwargs).train(training)
    _randomise(theirs)
    x = np.zeros(shape, np.float32)
    for call in (_call, _jit_call):
        ours = build(nn, name, args, kwargs).train(training)
        load_state_dict(ours, theirs)
        if torch_raises:
            with pytest.raises(Exception):
                _call(build(torch.nn, name, args, kwargs).train(training), torch.from_numpy(x))
            with pytest.raises(ValueError, match="empty batch"):
                call(ours, x)
            continue
        twin = build(torch.nn, name, args, kwargs).train(training)
        twin.load_state_dict(theirs.state_dict())
        expected = _call(twin, torch.from_numpy(x))
        if name == "PixelUnshuffle":  # the shape a batch of 1 gives, with N = 0
            expected = twin(torch.zeros((1,) + shape[1:])).new_zeros((0, 8, 2, 3))
        got = call(ours, x)
        for o, e in zip(_leaves(got), _leaves(expected), strict=True):
            assert o.shape == tuple(e.shape)
            assert str(o.dtype) == str(e.dtype).removeprefix("torch.")
        after = twin.state_dict()
        for key, value in state_dict(ours).items():  # parameters and buffers afterwards
            np.testing.assert_array_equal(value, after[key].numpy(), err_msg=key)
