"""Generator, translated from ``equivalence.examples._torch.Generator`` by equivalence.translate.

``build(rngs=None)`` returns the model with jaxconv's (torch's) default initialisation, in train
mode as torch builds it; load torch's weights with ``equivalence.load_state_dict(model, state_dict)``.
"""
import jax
import jax.numpy as jnp
from flax import nnx

import jaxconv.functional as F
from jaxconv import nn, tensor as T


class Generator(nn.Module):
    """Translated from ``equivalence.examples._torch.Generator``."""

    def __init__(self, main):
        self.main = main

    def __call__(self, x):
        main = self.main(x)
        return main


def build(rngs=None):
    """The translated ``Generator``; ``rngs``: an ``nnx.Rngs`` or key for the parameters (the jaxconv stream when ``None``)."""
    return Generator(
        main=nn.Sequential(
            nn.ConvTranspose2d(100, 512, 4, bias=False, rngs=rngs),
            nn.BatchNorm2d(512),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(512, 256, 4, stride=2, padding=1, bias=False, rngs=rngs),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(256, 128, 4, stride=2, padding=1, bias=False, rngs=rngs),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1, bias=False, rngs=rngs),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 3, 4, stride=2, padding=1, bias=False, rngs=rngs),
            nn.Tanh(),
        ),
    )
