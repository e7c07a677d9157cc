"""Whole models written twice by hand, in torch and in jaxconv, with identical state names.

ResNet-18 (BasicBlock), MobileNetV2 (width 1.0; the classifier's dropout is left out so
that a training step can be checked against torch) and the DCGAN generator. ``width``
scales every channel count and ``blocks`` caps the blocks per stage (the defaults
are the real models; the quick mode uses less of both).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as tnn

import jaxconv.nn as jnn


# ----------------------------------------------------------------------------- ResNet-18
def _resnet_cls(nn, flatten):
    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                nn.BatchNorm2d(cout))
            else:
                self.downsample = None

        def __call__(self, x):
            return self.forward(x)

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            y = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(y)) + idt)

    class ResNet18(nn.Module):
        def __init__(self, width=64, num_classes=1000, blocks=2):
            super().__init__()
            w = width
            self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(w)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            chans = [w, 2 * w, 4 * w, 8 * w]
            cin = w
            for i, c in enumerate(chans):
                stride = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", nn.Sequential(
                    BasicBlock(cin, c, stride), *(BasicBlock(c, c, 1) for _ in range(blocks - 1))))
                cin = c
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8 * w, num_classes)

        def __call__(self, x):
            return self.forward(x)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(flatten(self.avgpool(x)))

    return ResNet18


# ----------------------------------------------------------------------------- MobileNetV2
_MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
         (6, 160, 3, 2), (6, 320, 1, 1)]  # expansion t, channels c, repeats n, stride s


def _mobilenet_cls(nn, flatten):
    def conv_bn(cin, cout, k, stride, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        return layers + [nn.ReLU6()] if act else layers

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hidden = cin * t
            self.use_res = stride == 1 and cin == cout
            layers = [] if t == 1 else conv_bn(cin, hidden, 1, 1)
            layers += conv_bn(hidden, hidden, 3, stride, groups=hidden)
            layers += conv_bn(hidden, cout, 1, 1, act=False)
            self.conv = nn.Sequential(*layers)

        def __call__(self, x):
            return self.forward(x)

        def forward(self, x):
            y = self.conv(x)
            return x + y if self.use_res else y

    class MobileNetV2(nn.Module):
        def __init__(self, width=64, num_classes=1000, blocks=None):
            super().__init__()
            scale = width / 64
            ch = lambda c: max(4, int(round(c * scale)))  # noqa: E731
            cin = ch(32)
            layers = [nn.Sequential(*conv_bn(3, cin, 3, 2))]
            for t, c, n, s in _MBV2:
                for i in range(n if blocks is None else min(n, blocks)):
                    layers.append(InvertedResidual(cin, ch(c), s if i == 0 else 1, t))
                    cin = ch(c)
            last = ch(1280)
            layers.append(nn.Sequential(*conv_bn(cin, last, 1, 1)))
            self.features = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(last, num_classes)

        def __call__(self, x):
            return self.forward(x)

        def forward(self, x):
            return self.classifier(flatten(self.pool(self.features(x))))

    return MobileNetV2


# ----------------------------------------------------------------------------- DCGAN
def _dcgan_cls(nn):
    class Generator(nn.Module):
        """DCGAN generator: ``(N, nz, 1, 1)`` noise -> ``(N, 3, 64, 64)`` image."""

        def __init__(self, width=64, nz=100, blocks=None):
            super().__init__()
            g = width
            self.main = nn.Sequential(
                nn.ConvTranspose2d(nz, 8 * g, 4, 1, 0, bias=False), nn.BatchNorm2d(8 * g), nn.ReLU(),
                nn.ConvTranspose2d(8 * g, 4 * g, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * g), nn.ReLU(),
                nn.ConvTranspose2d(4 * g, 2 * g, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * g), nn.ReLU(),
                nn.ConvTranspose2d(2 * g, g, 4, 2, 1, bias=False), nn.BatchNorm2d(g), nn.ReLU(),
                nn.ConvTranspose2d(g, 3, 4, 2, 1, bias=False), nn.Tanh(),
            )

        def __call__(self, x):
            return self.forward(x)

        def forward(self, x):
            return self.main(x)

    return Generator


_torch_flatten = lambda x: torch.flatten(x, 1)  # noqa: E731
_jax_flatten = lambda x: x.reshape(x.shape[0], -1)  # noqa: E731

TorchResNet18 = _resnet_cls(tnn, _torch_flatten)


TorchMobileNetV2 = _mobilenet_cls(tnn, _torch_flatten)
TorchDCGANGenerator = _dcgan_cls(tnn)
ResNet18 = _resnet_cls(jnn, _jax_flatten)
MobileNetV2 = _mobilenet_cls(jnn, _jax_flatten)
DCGANGenerator = _dcgan_cls(jnn)

MODELS = {
    # name: (torch class, jaxconv class, input shape without batch for (full, quick))
    "resnet18": (TorchResNet18, ResNet18, {"full": (3, 224, 224), "quick": (3, 32, 32)}),
    "mobilenet_v2": (TorchMobileNetV2, MobileNetV2, {"full": (3, 224, 224), "quick": (3, 32, 32)}),
    "dcgan_generator": (TorchDCGANGenerator, DCGANGenerator, {"full": (100, 1, 1), "quick": (100, 1, 1)}),
}


def copy_torch_state(torch_model, jax_model):
    """Copy every parameter and buffer of ``torch_model`` into ``jax_model`` by name."""
    for name, value in torch_model.state_dict().items():
        *path, leaf = name.split(".")
        obj = jax_model
        for part in path:
            obj = getattr(obj, part)
        var = getattr(obj, leaf)
        old = var[...]
        new = np.asarray(value.detach().cpu().numpy())
        if tuple(old.shape) != tuple(new.shape):
            raise ValueError(f"{name}: torch shape {new.shape} != jaxconv shape {old.shape}")
        var[...] = new.astype(old.dtype)
    return jax_model


def size(quick: bool) -> dict:
    """Constructor arguments of the model's size: width 8 and one block per stage when quick."""
    return dict(width=8, blocks=1) if quick else {}


def build(name, quick, batch, torch_device, shape=None):
    """``(torch model, its channels_last copy, jaxconv copy, input)`` for a row of the suite;
    quick mode uses width 8 and one block per stage. The input is a float32 numpy array of
    shape ``(batch, *shape)``, by default the model's full or quick input shape."""
    tcls, jcls, shapes = MODELS[name]
    kwargs = size(quick)
    torch.manual_seed(0)
    tmodel = tcls(**kwargs).to(torch_device)
    jmodel = copy_torch_state(tmodel, jcls(**kwargs))
    tmodel_cl = tcls(**kwargs).to(torch_device)
    tmodel_cl.load_state_dict(tmodel.state_dict())
    tmodel_cl = tmodel_cl.to(memory_format=torch.channels_last)
    x = np.random.default_rng(1).standard_normal((batch, *(shape or shapes["quick" if quick else "full"])))
    return tmodel, tmodel_cl, jmodel, x.astype(np.float32)
