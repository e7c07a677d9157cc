"""A user's own torch layer and function, and the jaxconv twins registered for them."""
import jax.numpy as jnp
import torch
from flax import nnx

from jaxconv import nn


class TorchScale(torch.nn.Module):
    """Scales by a learned per-channel factor; its forward branches on data, so fx cannot trace it."""

    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        self.scale = torch.nn.Parameter(torch.randn(channels))

    def forward(self, x):
        if x.sum() > 1e9:      # data-dependent: a TraceError under torch.fx
            return x
        return x * self.scale[:, None, None]


class Scale(nn.Module):
    """The jaxconv twin: same constructor argument, same parameter name."""

    def __init__(self, channels, *, rngs=None):
        self.channels = channels
        self.scale = nnx.Param(jnp.ones((channels,)))

    def __call__(self, x):
        return x * self.scale[...][:, None, None]


@torch.fx.wrap
def soft_clip(x, limit: float):
    """A user function torch.fx keeps as one call (``torch.fx.wrap``)."""
    return limit * torch.tanh(x / limit)


def soft_clip_jax(x, limit: float):
    return limit * jnp.tanh(x / limit)


class WrongScale(Scale):
    """A deliberately wrong twin (adds instead of multiplying), to see a translation fail."""

    def __call__(self, x):
        return x + self.scale[...][:, None, None]


def wrongly_registered():
    """A torch model whose TorchScale is registered to the wrong twin (for the CLI's exit 1)."""
    import equivalence

    equivalence.register(TorchScale, "tests.translate._user:WrongScale")
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), TorchScale(4))


class _FFT(torch.nn.Module):
    def forward(self, x):
        return torch.fft.fft2(x).real


def untranslatable():
    """A torch model with an op that has no translation."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), _FFT())
