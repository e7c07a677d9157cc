"""equivalence: port torch checkpoints to jaxconv and prove the port computes what torch computes.

Importing it needs no torch; torch is imported only where a torch model or a ``.pt`` file is used.
"""
from . import io
from .io import CheckpointError
from .state_dict import (IncompatibleKeys, StateDictError, load_state_dict, named_variables, save,
                         state_dict)
from .orbax_checkpoint import (CheckpointMismatchError, checkpoint_metadata, restore_checkpoint,
                               save_checkpoint)
from . import examples
from .compare import assert_equivalent, compare
from .report import Report, Row
from . import tolerance
from .training import (OptimizerStateError, RecipeError, load_optimizer_state,
                       load_training_checkpoint, optimizer_state_dict, save_training_checkpoint,
                       translate_optimizer)
from .training import TrainingReport, compare_training

#: Lazily imported (they need torch): name -> (submodule, attribute).
_LAZY = {name: ("translator", name) for name in
         ("translate", "translate_source", "build_from_source", "register", "unregister",
          "TranslationError")}


def __getattr__(name):
    """``equivalence.translate`` and friends, imported on first use (importing them needs torch)."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
