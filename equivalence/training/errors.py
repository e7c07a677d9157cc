"""The errors of a recipe's translation and of moving its state."""
from __future__ import annotations


class RecipeError(ValueError):
    """A torch optimizer, scheduler or option with no jaxconv translation, or an optimizer whose
    parameters do not belong to the model given."""


class OptimizerStateError(RecipeError):
    """A torch optimizer state that does not fit the jaxconv optimizer (another model's, a
    missing parameter, a shape that differs, another optimizer or group count); nothing was
    changed."""
