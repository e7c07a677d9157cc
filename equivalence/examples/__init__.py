"""The seed models, each as a torch definition and a jaxconv twin with the same attribute names.

Factories (usable as ``module:factory`` strings, e.g. ``equivalence.examples:residual_cnn_torch``):

- ``residual_cnn_torch(seed=None)`` / ``residual_cnn_jax(rngs=None)``: the residual CNN for
  ``(N, 1, 28, 28)`` inputs (conv1, pool, resblock1, resblock2, fc1, fc2).
- ``cifar_net_torch(seed=None)`` / ``cifar_net_jax(rngs=None)``: the CIFAR ``Sequential``
  (18090 parameters), ``(N, 3, 32, 32)`` inputs.
- ``dcgan_generator_torch(nz=100, ngf=64, nc=3, seed=None)`` /
  ``dcgan_generator_jax(nz=100, ngf=64, nc=3, rngs=None)``: the DCGAN generator (``main``
  ``Sequential`` of ConvTranspose2d + BatchNorm2d + ReLU blocks, then ConvTranspose2d + Tanh),
  ``(N, nz, 1, 1)`` noise to ``(N, nc, 64, 64)`` images.

The torch factories import torch when called (``seed`` seeds their initialisation without
touching torch's global generator); the jax factories need no torch. :data:`EXAMPLES` lists
them with default input shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .._torch import require_torch


def _torch_defs():
    require_torch("the torch definitions of the example models")
    from . import _torch

    return _torch


def _jax_defs():
    from . import _jax

    return _jax


def residual_cnn_torch(seed: int | None = None):
    """The residual CNN as a ``torch.nn.Module`` (torch's default init, seeded by ``seed``)."""
    defs = _torch_defs()
    return defs.seeded(defs.ResidualCNN, seed)


def residual_cnn_jax(rngs=None):
    """The residual CNN's jaxconv twin (parameters from ``rngs`` or the jaxconv stream)."""
    return _jax_defs().ResidualCNN(rngs=rngs)


def cifar_net_torch(seed: int | None = None):
    """The CIFAR net as a ``torch.nn.Sequential``."""
    defs = _torch_defs()
    return defs.seeded(defs.cifar_net, seed)


def cifar_net_jax(rngs=None):
    """The CIFAR net's jaxconv twin, a ``jaxconv.nn.Sequential``."""
    return _jax_defs().cifar_net(rngs=rngs)


def dcgan_generator_torch(nz: int = 100, ngf: int = 64, nc: int = 3, seed: int | None = None):
    """The DCGAN generator as a ``torch.nn.Module``.

    **Arguments:** ``nz`` noise channels, ``ngf`` generator width, ``nc`` image channels,
    ``seed`` for the initialisation.
    """
    defs = _torch_defs()
    return defs.seeded(lambda: defs.Generator(nz, ngf, nc), seed)


def dcgan_generator_jax(nz: int = 100, ngf: int = 64, nc: int = 3, rngs=None):
    """The DCGAN generator's jaxconv twin (arguments as :func:`dcgan_generator_torch`)."""
    return _jax_defs().Generator(nz, ngf, nc, rngs=rngs)


@dataclass(frozen=True)
class Example:
    """A seed model: its torch and jaxconv factories and a default input shape ``(N, C, H, W)``."""

    name: str
    torch_factory: Callable
    jax_factory: Callable
    input_shape: tuple[int, ...]
    description: str

    @property
    def torch_spec(self) -> str:
        """The torch factory as a ``module:factory`` string."""
        return f"{__name__}:{self.torch_factory.__name__}"

    @property
    def jax_spec(self) -> str:
        """The jaxconv factory as a ``module:factory`` string."""
        return f"{__name__}:{self.jax_factory.__name__}"


EXAMPLES: dict[str, Example] = {
    "residual_cnn": Example("residual_cnn", residual_cnn_torch, residual_cnn_jax, (2, 1, 28, 28),
                            "residual CNN for 28x28 grayscale digits, 10 classes"),
    "cifar_net": Example("cifar_net", cifar_net_torch, cifar_net_jax, (2, 3, 32, 32),
                         "small tanh CNN for 32x32 CIFAR images, 2 classes (18090 parameters)"),
    "dcgan_generator": Example("dcgan_generator", dcgan_generator_torch, dcgan_generator_jax,
                               (2, 100, 1, 1), "DCGAN generator, 100-d noise to 3x64x64 images"),
}

__all__ = ["EXAMPLES", "Example", "residual_cnn_torch", "residual_cnn_jax", "cifar_net_torch",
           "cifar_net_jax", "dcgan_generator_torch", "dcgan_generator_jax"]
