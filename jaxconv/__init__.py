"""jaxconv: PyTorch's conv-net semantics, exactly, on ``jax.lax`` as Flax NNX modules."""
from . import functional, nn
from ._rng import manual_seed

__version__ = "0.1.0"
__all__ = ["functional", "nn", "manual_seed", "__version__"]
