"""The jaxconv twins of the seed models: the same attribute names, so torch's weights load by name."""
from __future__ import annotations

import jax

from jaxconv import nn


class ResidualBlock(nn.Module):
    """``relu(conv2(relu(conv1(x))) + shortcut(x))`` with 3x3 convs and a 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, *, rngs=None):
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, rngs=rngs)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, rngs=rngs)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))) + self.shortcut(x))


class ResidualCNN(nn.Module):
    """The seed article's residual CNN for ``(N, 1, 28, 28)`` inputs, 10 classes."""

    def __init__(self, *, rngs=None):
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, rngs=rngs)
        self.pool = nn.MaxPool2d(2, 2)
        self.resblock1 = ResidualBlock(32, 64, rngs=rngs)
        self.resblock2 = ResidualBlock(64, 128, rngs=rngs)
        self.fc1 = nn.Linear(128 * 3 * 3, 512, rngs=rngs)
        self.fc2 = nn.Linear(512, 10, rngs=rngs)

    def __call__(self, x):
        x = self.pool(jax.nn.relu(self.conv1(x)))
        x = self.pool(self.resblock1(x))
        x = self.pool(self.resblock2(x))
        x = x.reshape(x.shape[0], -1)  # NCHW order, as torch's x.view(x.size(0), -1)
        return self.fc2(jax.nn.relu(self.fc1(x)))


def cifar_net(*, rngs=None) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, rngs=rngs), nn.Tanh(), nn.MaxPool2d(2),
        nn.Conv2d(16, 8, 3, padding=1, rngs=rngs), nn.Tanh(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(512, 32, rngs=rngs), nn.Tanh(), nn.Linear(32, 2, rngs=rngs))


class Generator(nn.Module):
    """The DCGAN generator: ``(N, nz, 1, 1)`` noise to ``(N, nc, 64, 64)`` images."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, *, rngs=None):
        def up(cin, cout, stride, padding):
            return [nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=False, rngs=rngs),
                    nn.BatchNorm2d(cout), nn.ReLU(True)]

        self.main = nn.Sequential(
            *up(nz, ngf * 8, 1, 0), *up(ngf * 8, ngf * 4, 2, 1), *up(ngf * 4, ngf * 2, 2, 1),
            *up(ngf * 2, ngf, 2, 1),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False, rngs=rngs), nn.Tanh())

    def __call__(self, x):
        return self.main(x)
