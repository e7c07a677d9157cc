"""jaxconv: PyTorch's conv-net semantics, exactly, on ``jax.lax`` as Flax NNX modules."""
from . import functional, nn, tensor
from ._autocast import autocast, get_autocast_dtype
from .layout import channels_last
from ._rng import manual_seed
from .summary import Summary, count_params, summary

__version__ = "0.1.0"
__all__ = ["functional", "nn", "tensor", "autocast", "get_autocast_dtype", "channels_last", "manual_seed", "summary", "Summary", "count_params", "__version__"]


def __getattr__(name: str):
    """``jaxconv.parallel`` is imported on first use, so that ``import jaxconv`` stays cheap."""
    if name == "parallel":
        import importlib

        return importlib.import_module(".parallel", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
