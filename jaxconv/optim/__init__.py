"""torch.optim as optax transformations: torch's names, arguments, defaults and update order."""
from .optimizer import Optimizer, OptimizerState
from .sgd import SGD
from . import swa_utils

__all__ = ["SGD", "Optimizer", "OptimizerState"]

from . import lr_scheduler

__all__ += ["lr_scheduler"]
