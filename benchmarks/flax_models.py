"""The suite's whole models written the way a Flax NNX user writes them: NHWC activations,
HWIO kernels, ``nnx.Conv`` / ``nnx.ConvTranspose`` / ``nnx.BatchNorm`` / ``nnx.Linear``.

They are the JAX peer that jaxconv's models are measured against. :func:`load_torch`
copies a torch twin's weights in (with the layout changes a Flax port makes by hand), so
that the suite checks every Flax model against torch before it times it.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .models import _MBV2


def _bn(c, rngs):
    # torch's defaults: eps 1e-5, running stats updated with momentum 0.1
    return nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, rngs=rngs)


def _conv(cin, cout, k, stride=1, groups=1, rngs=None):
    p = (k - 1) // 2
    return nnx.Conv(cin, cout, (k, k), (stride, stride), padding=((p, p), (p, p)),
                    feature_group_count=groups, use_bias=False, rngs=rngs)


class BasicBlock(nnx.Module):
    def __init__(self, cin, cout, stride, rngs):
        self.conv1, self.bn1 = _conv(cin, cout, 3, stride, rngs=rngs), _bn(cout, rngs)
        self.conv2, self.bn2 = _conv(cout, cout, 3, rngs=rngs), _bn(cout, rngs)
        down = stride != 1 or cin != cout
        self.downsample = nnx.Sequential(_conv(cin, cout, 1, stride, rngs=rngs), _bn(cout, rngs)) if down else None

    def __call__(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = nnx.relu(self.bn1(self.conv1(x)))
        return nnx.relu(self.bn2(self.conv2(y)) + idt)


class ResNet18(nnx.Module):
    """ResNet-18 on ``(N, H, W, 3)`` images."""

    def __init__(self, width=64, num_classes=1000, blocks=2, *, rngs=None):
        rngs = rngs or nnx.Rngs(0)
        w = width
        self.conv1 = nnx.Conv(3, w, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False, rngs=rngs)
        self.bn1 = _bn(w, rngs)
        cin, stages = w, []
        for i, c in enumerate([w, 2 * w, 4 * w, 8 * w]):
            stride = 1 if i == 0 else 2
            stages.append(nnx.Sequential(BasicBlock(cin, c, stride, rngs),
                                         *(BasicBlock(c, c, 1, rngs) for _ in range(blocks - 1))))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nnx.Linear(8 * w, num_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(jnp.mean(x, axis=(1, 2)))


def _conv_bn(cin, cout, k, stride=1, groups=1, act=True, *, rngs):
    layers = [_conv(cin, cout, k, stride, groups, rngs), _bn(cout, rngs)]
    return layers + [nnx.relu6] if act else layers


class InvertedResidual(nnx.Module):
    def __init__(self, cin, cout, stride, t, rngs):
        hidden = cin * t
        self.use_res = stride == 1 and cin == cout
        layers = [] if t == 1 else _conv_bn(cin, hidden, 1, rngs=rngs)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden, rngs=rngs)
        layers += _conv_bn(hidden, cout, 1, act=False, rngs=rngs)
        self.conv = nnx.Sequential(*layers)

    def __call__(self, x):
        y = self.conv(x)
        return x + y if self.use_res else y


class MobileNetV2(nnx.Module):
    """MobileNetV2 (width 1.0 at ``width=64``) on ``(N, H, W, 3)`` images."""

    def __init__(self, width=64, num_classes=1000, blocks=None, *, rngs=None):
        rngs = rngs or nnx.Rngs(0)
        scale = width / 64
        ch = lambda c: max(4, int(round(c * scale)))  # noqa: E731
        cin = ch(32)
        layers = [nnx.Sequential(*_conv_bn(3, cin, 3, 2, rngs=rngs))]
        for t, c, n, s in _MBV2:
            for i in range(n if blocks is None else min(n, blocks)):
                layers.append(InvertedResidual(cin, ch(c), s if i == 0 else 1, t, rngs))
                cin = ch(c)
        last = ch(1280)
        layers.append(nnx.Sequential(*_conv_bn(cin, last, 1, rngs=rngs)))
        self.features = nnx.Sequential(*layers)
        self.classifier = nnx.Linear(last, num_classes, rngs=rngs)

    def __call__(self, x):
        return self.classifier(jnp.mean(self.features(x), axis=(1, 2)))


class DCGANGenerator(nnx.Module):
    """DCGAN generator: ``(N, 1, 1, nz)`` noise -> ``(N, 64, 64, 3)`` image."""

    def __init__(self, width=64, nz=100, blocks=None, *, rngs=None):
        rngs = rngs or nnx.Rngs(0)
        g = width
        chans = [nz, 8 * g, 4 * g, 2 * g, g, 3]
        layers = []
        for i, (cin, cout) in enumerate(zip(chans, chans[1:])):
            # torch's ConvTranspose2d(k=4, s, p) is flax's with padding k-1-p and the kernel flipped
            pad = 3 if i == 0 else 2
            layers.append(nnx.ConvTranspose(cin, cout, (4, 4), (1, 1) if i == 0 else (2, 2),
                                            padding=((pad, pad), (pad, pad)), use_bias=False,
                                            transpose_kernel=True, rngs=rngs))
            layers += [_bn(cout, rngs), nnx.relu] if cout != 3 else [jnp.tanh]
        self.main = nnx.Sequential(*layers)

    def __call__(self, x):
        return self.main(x)


FLAX_MODELS = {"resnet18": ResNet18, "mobilenet_v2": MobileNetV2, "dcgan_generator": DCGANGenerator}


def load_torch(torch_model, model):
    """Copy ``torch_model``'s weights into the Flax ``model`` built with the same sizes, by
    name (a Flax path without its ``layers`` steps is the torch name): conv kernels go
    OIHW -> HWIO (transposed-conv kernels ``(in, out, kH, kW)`` -> ``(kH, kW, out, in)``,
    which ``transpose_kernel=True`` expects) and linear weights are transposed."""
    state = {k: v.detach().cpu().numpy() for k, v in torch_model.state_dict().items()}
    for path, m in nnx.iter_graph(model):
        if not isinstance(m, (nnx.Conv, nnx.ConvTranspose, nnx.BatchNorm, nnx.Linear)):
            continue
        name = ".".join(str(p) for p in path if p != "layers")
        if f"{name}.weight" not in state:
            raise KeyError(f"the Flax layer {path} has no torch twin {name!r}")
        w, b = state[f"{name}.weight"], state.get(f"{name}.bias")
        if isinstance(m, nnx.BatchNorm):
            m.scale[...], m.bias[...] = w, b
            m.mean[...], m.var[...] = state[f"{name}.running_mean"], state[f"{name}.running_var"]
            continue
        w = w.T if isinstance(m, nnx.Linear) else w.transpose(2, 3, 1, 0)
        if tuple(w.shape) != tuple(m.kernel.shape):
            raise ValueError(f"{name}: torch kernel {w.shape} != the Flax kernel {m.kernel.shape}")
        m.kernel[...] = np.ascontiguousarray(w)
        if b is not None:
            m.bias[...] = b
    return model


def param_name(torch_name, model):
    """The path of torch parameter ``torch_name`` in the Flax ``model`` (``weight`` is ``kernel``)."""
    *mod, leaf = torch_name.split(".")
    for path, _ in nnx.iter_graph(model):
        if [str(p) for p in path if p != "layers"] == mod:
            return ".".join(map(str, path)) + "." + {"weight": "kernel"}.get(leaf, leaf)
    raise KeyError(f"no Flax twin of torch parameter {torch_name!r}")


def oihw(g):
    """A Flax kernel (or its gradient) in torch's layout; vectors and matrices pass unchanged
    but for the transpose of a linear kernel, which this suite never compares."""
    g = np.asarray(g)
    return g.transpose(3, 2, 0, 1) if g.ndim == 4 else g


def nchw(y, impl):
    """A model output in torch's layout: the Flax models' images (``flax_nnx*`` columns) are NHWC."""
    y = np.asarray(y)
    return y.transpose(0, 3, 1, 2) if impl.startswith("flax_nnx") and y.ndim == 4 else y
