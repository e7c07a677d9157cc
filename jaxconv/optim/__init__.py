"""torch.optim as optax transformations: torch's names, arguments, defaults and update order."""
from . import lr_scheduler, swa_utils
from .adagrad import Adadelta, Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .nadam import NAdam
from .optimizer import Optimizer, OptimizerState
from .radam import RAdam
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "Optimizer",
           "OptimizerState", "RAdam", "RMSprop", "lr_scheduler", "swa_utils"]
