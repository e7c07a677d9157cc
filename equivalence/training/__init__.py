"""Porting a training recipe: torch's optimizer and scheduler translated, their state moved both
ways, and whole training checkpoints loaded. Needs torch where a torch object or file is used."""
from .checkpoint import load_training_checkpoint, save_training_checkpoint
from .errors import OptimizerStateError, RecipeError
from .optimizer import (OPTIMIZERS, Translation, frozen_names, trainable,
                        translate_optimizer)
from .scheduler import ARGUMENTS, translate_scheduler
from .state import load_optimizer_state, optimizer_state_dict, scheduler_state_dict

__all__ = ["ARGUMENTS", "OPTIMIZERS", "OptimizerStateError", "RecipeError", "Translation",
           "frozen_names", "load_optimizer_state", "load_training_checkpoint",
           "optimizer_state_dict", "save_training_checkpoint", "scheduler_state_dict", "trainable",
           "translate_optimizer", "translate_scheduler"]
from .compare import compare_training
from .training_report import TrainingReport
__all__ += ["TrainingReport", "compare_training"]
