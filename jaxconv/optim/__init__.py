"""torch.optim as optax transformations: torch's names, arguments, defaults and update order."""
from . import lr_scheduler, swa_utils
from .optimizer import Optimizer, OptimizerState
from .sgd import SGD

__all__ = ["SGD", "Optimizer", "OptimizerState", "lr_scheduler", "swa_utils"]
