"""Factories for the CLI training check tests: a small conv + BatchNorm + linear classifier in
torch (seeded, BatchNorm randomised) and its hand-written jaxconv twins, one with a planted bug."""
import torch

import jaxconv.nn as jnn
from tests._zoo import randomize_batchnorm

SHAPE = "4,3,6,6"


def torch_model():
    """conv (no bias) -> BatchNorm -> ReLU -> flatten -> linear, 5 classes, for ``(N, 3, 6, 6)``."""
    torch.manual_seed(0)
    n = torch.nn
    model = n.Sequential(n.Conv2d(3, 4, 3, bias=False), n.BatchNorm2d(4), n.ReLU(), n.Flatten(),
                         n.Linear(4 * 4 * 4, 5))
    return randomize_batchnorm(model, 1)


def jax_model(momentum=0.1):
    """The jaxconv twin of :func:`torch_model`."""
    return jnn.Sequential(jnn.Conv2d(3, 4, 3, bias=False), jnn.BatchNorm2d(4, momentum=momentum),
                          jnn.ReLU(), jnn.Flatten(), jnn.Linear(4 * 4 * 4, 5))


def jax_model_inverted_momentum():
    """Planted: BatchNorm momentum inverted (Flax's 0.9 where torch means 0.1): the eval-mode
    forward agrees, training moves the running statistics the wrong way."""
    return jax_model(momentum=0.9)
