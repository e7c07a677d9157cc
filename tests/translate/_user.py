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
