"""A torch learning-rate scheduler -> the :mod:`jaxconv.optim.lr_scheduler` rule, and its position."""
from __future__ import annotations

from .optimizer import RecipeError


def translate_scheduler(scheduler, optimizer):
    """``optimizer`` (a jaxconv optimizer) with the rule of torch ``scheduler`` attached, from step 0."""
    try:
        from jaxconv.optim import lr_scheduler  # noqa: F401
    except ImportError:
        raise RecipeError(f"torch scheduler {type(scheduler).__name__} has no translation: "
                          f"jaxconv.optim.lr_scheduler is not available") from None
    raise RecipeError(f"torch scheduler {type(scheduler).__name__} has no translation")


def schedule_from_torch(tx, old, scheduler_state, hyper):
    """``(schedule state, hyper)`` at the torch scheduler's position (its ``state_dict()``)."""
    raise RecipeError("moving a scheduler's position needs jaxconv.optim.lr_scheduler")


def schedule_to_torch(tx, state):
    """The torch scheduler's ``state_dict()`` at the position of ``state``."""
    raise RecipeError("exporting a scheduler's position needs jaxconv.optim.lr_scheduler")
