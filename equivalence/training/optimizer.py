"""A torch optimizer -> the :mod:`jaxconv.optim` optimizer with its class, hyperparameters and groups.

One table, :data:`OPTIMIZERS`, says which jaxconv class a torch optimizer class becomes and how its
``param_groups`` keys are renamed; adding an optimizer is one line. Every other group key must be
an argument of the jaxconv class, or one of torch's implementation switches (:data:`IGNORED`),
which choose a kernel, not a result. Groups become lists of torch parameter names, found by
identity in ``torch_model.named_parameters()``, in torch's group order (which is the order of
the indices in ``torch_optimizer.state_dict()``).
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import NamedTuple

from .errors import RecipeError

#: Group keys that choose torch's kernel (for-each, fused, autograd through the step, CUDA
#: graphs) or label parameters, and change no value of a single-tensor CPU update: passed on
#: where the jaxconv class takes them (it validates them), dropped where not.
IGNORED = frozenset({"params", "foreach", "fused", "differentiable", "capturable", "initial_lr",
                     "param_names"})
#: Group keys a torch scheduler writes for itself (OneCycleLR's); the scheduler translates them.
SCHEDULER_KEYS = frozenset({"max_lr", "min_lr", "max_momentum", "base_momentum"})


class Translation(NamedTuple):
    """How a torch optimizer class becomes a jaxconv one.

    Attributes:
      name: the :mod:`jaxconv.optim` class name.
      rename: torch group key -> jaxconv argument, where they differ.
      implied: torch group keys the jaxconv class implies, with the value it implies (AdamW's
        ``decoupled_weight_decay=True``); another value is refused.
    """

    name: str
    rename: Mapping[str, str] = {}
    implied: Mapping[str, object] = {}


#: torch.optim class name -> its translation; a class missing here is refused by name.
OPTIMIZERS: dict[str, Translation] = {
    "SGD": Translation("SGD"),
    "Adam": Translation("Adam"),
    "AdamW": Translation("AdamW", implied={"decoupled_weight_decay": True}),
    "RMSprop": Translation("RMSprop"),
    "Adagrad": Translation("Adagrad"),
    "Adadelta": Translation("Adadelta"),
    "Adamax": Translation("Adamax"),
    "NAdam": Translation("NAdam"),
    "RAdam": Translation("RAdam"),
}


def jaxconv_class(torch_optimizer):
    """``(jaxconv class, Translation)`` for a torch optimizer instance or class; refuses the rest."""
    import jaxconv.optim

    cls = torch_optimizer if isinstance(torch_optimizer, type) else type(torch_optimizer)
    spec = OPTIMIZERS.get(cls.__name__)
    target = getattr(jaxconv.optim, spec.name, None) if spec is not None else None
    if target is None:
        known = sorted(k for k, v in OPTIMIZERS.items() if hasattr(jaxconv.optim, v.name))
        raise RecipeError(f"torch optimizer {cls.__module__}.{cls.__name__} has no jaxconv "
                               f"translation; translated: {known}")
    return target, spec


def _arguments(cls) -> list[str]:
    """The hyperparameter arguments of a jaxconv optimizer class (its ``__init__`` less params)."""
    sig = inspect.signature(cls.__init__)
    return [n for n, p in sig.parameters.items() if n not in ("self", "params")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _python(value):
    """A torch hyperparameter as a Python value (a 0-d tensor lr becomes a float)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, tuple):
        return tuple(_python(v) for v in value)
    return value


def hyperparameters(torch_optimizer, group: Mapping, *, start: bool) -> dict:
    """One torch group's hyperparameters as the jaxconv class's arguments.

    ``start=True`` takes the learning rate a scheduler started from (``initial_lr``), so the
    translation begins at step 0; keys with no jaxconv argument are refused by name.
    """
    cls, spec = jaxconv_class(torch_optimizer)
    accepted = set(_arguments(cls))
    out = {}
    for key, value in group.items():
        target = spec.rename.get(key, key)
        if target not in accepted and (key in IGNORED or key in SCHEDULER_KEYS):
            continue
        if target not in accepted and key in spec.implied and _python(value) == spec.implied[key]:
            continue
        if target not in accepted:
            raise RecipeError(f"torch.optim.{type(torch_optimizer).__name__} option {key!r}="
                                   f"{value!r} has no translation: jaxconv.optim.{cls.__name__} "
                                   f"takes {sorted(accepted)}")
        out[target] = _python(value)
    if start and "initial_lr" in group:
        out["lr"] = _python(group["initial_lr"])
    return out


def parameter_names(torch_model) -> dict[int, str]:
    """``id(parameter) -> torch name`` over ``torch_model.named_parameters()`` (first name of a
    shared parameter, as torch's state_dict keeps it)."""
    return {id(p): name for name, p in torch_model.named_parameters()}


def group_names(torch_optimizer, torch_model) -> list[list[str]]:
    """The torch names of each group's parameters, in the group's order (``state_dict`` order).

    Raises :class:`RecipeError` naming a parameter of the optimizer that is not one of the
    model's (the optimizer was built for another model).
    """
    names = parameter_names(torch_model)
    out = []
    for g, group in enumerate(torch_optimizer.param_groups):
        listed = []
        for i, p in enumerate(group["params"]):
            if id(p) not in names:
                raise RecipeError(
                    f"parameter {i} of group {g} of the torch optimizer (shape {tuple(p.shape)}) is not "
                    f"a parameter of torch_model {type(torch_model).__name__}: the optimizer was "
                    f"built for another model")
            listed.append(names[id(p)])
        out.append(listed)
    return out


def frozen_names(torch_optimizer, torch_model) -> list[str]:
    """The model's parameters torch never updates: in no group, or with ``requires_grad=False``
    (torch skips a parameter whose ``.grad`` is ``None``)."""
    held = {n for group in group_names(torch_optimizer, torch_model) for n in group}
    return [n for n, p in torch_model.named_parameters() if n not in held or not p.requires_grad]


def trainable(torch_optimizer, torch_model):
    """An ``nnx`` filter selecting the parameters the torch optimizer updates.

    Where some parameters are frozen (:func:`frozen_names`), torch leaves them as they are; pass
    this filter as ``wrt`` to ``nnx.Optimizer`` and to ``nnx.grad`` (``nnx.DiffState(0, wrt)``)
    so jaxconv's optimizer, which updates every parameter it is given, sees only the others.
    """
    from flax import nnx

    frozen = set(frozen_names(torch_optimizer, torch_model))

    def updated(path, value) -> bool:
        return isinstance(value, nnx.Param) and ".".join(str(k) for k in path) not in frozen

    return updated


def translate_optimizer(torch_optimizer, torch_model, scheduler=None):
    """The :mod:`jaxconv.optim` optimizer doing what ``torch_optimizer`` does, from step 0.

    Same class, hyperparameters and parameter groups: each torch group becomes a group whose
    ``'params'`` is the list of its parameters' torch names (matched by identity in
    ``torch_model.named_parameters()``), with that group's hyperparameters. Where a scheduler
    was attached, the learning rate is its ``initial_lr`` and ``scheduler`` (the torch scheduler,
    translated by :func:`equivalence.training.translate_scheduler`) is attached, so the
    learning rate follows torch's from its first step.

    Parameters torch never updates (in no group, or ``requires_grad=False``) are in no group:
    build the ``nnx.Optimizer`` and the gradients with ``wrt=trainable(torch_optimizer,
    torch_model)``; passing them to the optimizer raises, naming the parameter.

    Arguments:
      torch_optimizer: a ``torch.optim.Optimizer`` (a class in :data:`OPTIMIZERS`).
      torch_model: the ``torch.nn.Module`` whose parameters it holds.
      scheduler: the torch learning-rate scheduler stepping it, or ``None``.

    Returns:
      A :class:`jaxconv.optim.Optimizer` (an optax transformation).

    Raises:
      RecipeError: the optimizer, an option or the scheduler has no translation, or a
        parameter of the optimizer is not one of the model's.
    """
    cls, _ = jaxconv_class(torch_optimizer)
    names = group_names(torch_optimizer, torch_model)
    groups = []
    for listed, group in zip(names, torch_optimizer.param_groups):
        hyper = hyperparameters(torch_optimizer, group, start=True)
        groups.append(dict(hyper, params=listed))
    defaults = {k: v for k, v in groups[0].items() if k != "params"}
    optimizer = cls([dict(g) for g in groups], **defaults)
    if scheduler is not None:
        from .scheduler import translate_scheduler

        optimizer = translate_scheduler(scheduler, optimizer)
    return optimizer
