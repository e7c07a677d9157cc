"""ResidualCNN, translated from ``equivalence.examples._torch.ResidualCNN`` by equivalence.translate.

``build(rngs=None)`` returns the model with jaxconv's (torch's) default initialisation, in train
mode as torch builds it; load torch's weights with ``equivalence.load_state_dict(model, state_dict)``.
"""
import jax
import jax.numpy as jnp
from flax import nnx

import jaxconv.functional as F
from jaxconv import nn, tensor as T


class ResidualCNN(nn.Module):
    """Translated from ``equivalence.examples._torch.ResidualCNN``."""

    def __init__(self, conv1, pool, resblock1, resblock2, fc1, fc2):
        self.conv1 = conv1
        self.pool = pool
        self.resblock1 = resblock1
        self.resblock2 = resblock2
        self.fc1 = fc1
        self.fc2 = fc2

    def __call__(self, x):
        conv1 = self.conv1(x)
        relu = F.relu(conv1)
        pool = self.pool(relu)
        resblock1 = self.resblock1(pool)
        pool_1 = self.pool(resblock1)
        resblock2 = self.resblock2(pool_1)
        pool_2 = self.pool(resblock2)
        size = pool_2.shape[0]
        view = T.view(pool_2, size, -1)
        fc1 = self.fc1(view)
        relu_1 = F.relu(fc1)
        fc2 = self.fc2(relu_1)
        return fc2


class ResidualBlock(nn.Module):
    """Translated from ``equivalence.examples._torch.ResidualBlock``."""

    def __init__(self, conv1, conv2, shortcut):
        self.conv1 = conv1
        self.conv2 = conv2
        self.shortcut = shortcut

    def __call__(self, x):
        conv1 = self.conv1(x)
        relu = F.relu(conv1)
        conv2 = self.conv2(relu)
        shortcut = self.shortcut(x)
        add = conv2 + shortcut
        relu_1 = F.relu(add)
        return relu_1


def build(rngs=None):
    """The translated ``ResidualCNN``; ``rngs``: an ``nnx.Rngs`` or key for the parameters (the jaxconv stream when ``None``)."""
    return ResidualCNN(
        conv1=nn.Conv2d(1, 32, 3, padding=1, rngs=rngs),
        pool=nn.MaxPool2d(2, stride=2),
        resblock1=ResidualBlock(
            conv1=nn.Conv2d(32, 64, 3, padding=1, rngs=rngs),
            conv2=nn.Conv2d(64, 64, 3, padding=1, rngs=rngs),
            shortcut=nn.Conv2d(32, 64, 1, rngs=rngs),
        ),
        resblock2=ResidualBlock(
            conv1=nn.Conv2d(64, 128, 3, padding=1, rngs=rngs),
            conv2=nn.Conv2d(128, 128, 3, padding=1, rngs=rngs),
            shortcut=nn.Conv2d(64, 128, 1, rngs=rngs),
        ),
        fc1=nn.Linear(1152, 512, rngs=rngs),
        fc2=nn.Linear(512, 10, rngs=rngs),
    )
