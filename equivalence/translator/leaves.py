"""Which torch modules become a jaxconv module whole (a *leaf*), and the source that builds it.

A torch module is a leaf when its class, or the class whose ``forward`` it inherits unchanged,
is in the table: every ``torch.nn`` class that ``jaxconv.nn`` has under the same name, the
stochastic-depth layers of torchvision and timm, and whatever :func:`register` adds. Its twin
is built from the torch instance's attributes (``stride``, ``eps``, ``padding_mode``, ...),
which torch names after its constructor arguments; arguments equal to their default are left
out, so ``build()`` reads like hand-written code. Everything else is traced through
(:mod:`.capture`): timm's ``BatchNormAct2d`` or ``StdConv2d`` override ``forward`` and are
not leaves, though they subclass ``BatchNorm2d`` and ``Conv2d``.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Callable

import jaxconv.nn as jnn

_CONTAINERS = {"Sequential", "ModuleList", "ModuleDict", "Module"}
_SKIP = {"self", "rngs", "dtype", "device", "args", "kwargs"}
_EMPTY = inspect.Parameter.empty
_SHAPES = {"normalized_shape", "unflattened_size"}   # a tuple here is not an int repeated
#: Leaves that draw nothing at construction: ``build()`` passes them no ``rngs``.
NOT_RANDOM = ("Norm", "Pool", "Pad", "Identity", "Flatten", "Upsample")


@dataclass(frozen=True)
class Leaf:
    """How one torch module class becomes a module of the generated source.

    ``target`` is ``'package.module:Name'`` (``jaxconv.nn`` classes print as ``nn.Name``);
    ``arguments(torch_module)`` gives the constructor's ``(args, kwargs)``, by default read
    from the instance attributes named after ``target``'s constructor parameters.
    """

    target: str
    arguments: Callable | None = None
    defaults: dict = field(default_factory=dict)

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def name(self) -> str:
        return self.target.partition(":")[2]

    def resolve(self):
        """The class ``target`` names (imported)."""
        obj = importlib.import_module(self.module)
        for part in self.name.split("."):
            obj = getattr(obj, part)
        return obj

    def call(self, torch_module) -> tuple[tuple, dict]:
        """Constructor ``(args, kwargs)`` for the twin of ``torch_module``."""
        if self.arguments is not None:
            return self.arguments(torch_module)
        return attribute_arguments(self.resolve(), torch_module, self.defaults)


def attribute_arguments(cls, torch_module, values=None) -> tuple[tuple, dict]:
    """``cls``'s constructor arguments read from ``torch_module``'s same-named attributes.

    A ``bias`` flag is read as "the module has a bias" (or as torch's own flag, where the module
    keeps one: ``LSTM.bias``); a parameter without an attribute
    (PReLU's ``init``, ...) is left to its default, or taken from ``values``. Required
    parameters go positionally, the others by keyword when they differ from the default.
    """
    args, kwargs = [], {}
    values = dict(values or {})
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name in _SKIP or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name in values:
            value = values[name]
        elif name == "bias" and p.default in (True, False):
            value = getattr(torch_module, "bias", None)
            value = value if isinstance(value, bool) else value is not None  # the flag, or the tensor
        elif hasattr(torch_module, name):
            value = getattr(torch_module, name)
        elif p.default is not _EMPTY:
            continue
        else:
            raise TypeError(f"{type(torch_module).__name__} has no attribute {name!r}, which "
                            f"{cls.__name__}'s constructor needs")
        value = _compact(name, value)
        if p.default is _EMPTY and p.kind is not p.KEYWORD_ONLY and not kwargs:
            args.append(value)
        elif p.default is _EMPTY or value != p.default:
            kwargs[name] = value
    return tuple(args), kwargs


_REGISTERED: dict[str, Leaf] = {}


def qualified_name(cls) -> str:
    """``'package.module.Class'`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register(torch_class, target: str, arguments: Callable | None = None) -> None:
    """Translate every instance of ``torch_class`` into a ``target`` module.

    **Arguments:**

    - ``torch_class``: a ``torch.nn.Module`` subclass (its exact class; subclasses that
      override ``forward`` are traced as usual).
    - ``target``: ``'package.module:Class'`` of the Flax module to build; the generated source
      imports it.
    - ``arguments``: ``torch_module -> (args, kwargs)`` for ``Class(*args, **kwargs)``; by
      default the instance attributes named after ``Class``'s constructor parameters.

    The twin's variables must carry the torch module's state_dict names: translation loads
    the torch weights into it with a strict ``load_state_dict``.
    """
    if not isinstance(torch_class, type):
        raise TypeError(f"register: torch_class must be a class, got {torch_class!r}")
    if ":" not in target:
        raise ValueError(f"register: target must be 'package.module:Class', got {target!r}")
    _REGISTERED[qualified_name(torch_class)] = Leaf(target, arguments)


def unregister(torch_class) -> None:
    """Undo :func:`register` for ``torch_class``."""
    _REGISTERED.pop(qualified_name(torch_class), None)


_BUILTIN: dict[str, Leaf] = {}


def _builtin() -> dict[str, Leaf]:
    if not _BUILTIN:
        names = {n for n in dir(jnn) if isinstance(getattr(jnn, n), type)
                 and issubclass(getattr(jnn, n), jnn.Module) and n not in _CONTAINERS}
        _BUILTIN.update({f"torch.nn:{n}": Leaf(f"jaxconv.nn:{n}") for n in names})
        _BUILTIN["torchvision.ops.stochastic_depth.StochasticDepth"] = Leaf("jaxconv.nn:StochasticDepth")
        _BUILTIN["timm.layers.drop.DropPath"] = Leaf("jaxconv.nn:DropPath")
        _BUILTIN["torch.nn:MultiheadAttention"] = Leaf("jaxconv.nn:MultiheadAttention",
                                                       _attention_arguments)
        _BUILTIN["torch.nn:TripletMarginWithDistanceLoss"] = Leaf(
            "jaxconv.nn:TripletMarginWithDistanceLoss", _triplet_arguments)
    return _BUILTIN


def _attention_arguments(m) -> tuple[tuple, dict]:
    """torch's ``MultiheadAttention`` keeps ``bias`` / ``add_bias_kv`` only as its tensors, and
    ``kdim`` / ``vdim`` resolved (``embed_dim`` for ``None``)."""
    values = {"bias": m.in_proj_bias is not None, "add_bias_kv": m.bias_k is not None,
              "kdim": None if m.kdim == m.embed_dim else m.kdim,
              "vdim": None if m.vdim == m.embed_dim else m.vdim}
    return attribute_arguments(jnn.MultiheadAttention, m, values)


def _triplet_arguments(m) -> tuple[tuple, dict]:
    """torch keeps the default ``distance_function`` as a ``PairwiseDistance()`` child, which
    the jaxconv twin builds itself; any other distance has no source form."""
    d = m.distance_function
    if not (type(d).__name__ == "PairwiseDistance" and (d.norm, d.eps, d.keepdim) == (2.0, 1e-6, False)):
        raise TypeError(f"TripletMarginWithDistanceLoss: only the default distance_function "
                        f"(pairwise_distance) translates, got distance_function={d!r}; register "
                        f"the loss class with a twin of your own (equivalence.translator.register)")
    return attribute_arguments(jnn.TripletMarginWithDistanceLoss, m, {"distance_function": None})


def _compact(name: str, value):
    """``(3, 3)`` -> ``3`` where the module reads an int as that tuple (not for shapes)."""
    if (isinstance(value, (tuple, list)) and len(value) > 1 and name not in _SHAPES
            and all(type(v) is int and v == value[0] for v in value)):
        return value[0]
    return list(value) if isinstance(value, list) else value


def _own_key(cls) -> str | None:
    name = qualified_name(cls)
    if name in _REGISTERED or name in _builtin():
        return name
    if cls.__module__.startswith("torch.nn.modules.") and f"torch.nn:{cls.__name__}" in _builtin():
        return f"torch.nn:{cls.__name__}"
    return None


def leaf_for(torch_module) -> Leaf | None:
    """The :class:`Leaf` that translates ``torch_module``, or ``None`` when it is traced.

    A class in the table is a leaf; so is a subclass that inherits its ``forward`` unchanged
    (and so computes what the table's class computes), but not one that overrides it.
    """
    for cls in type(torch_module).__mro__:
        key = _own_key(cls)
        if key is not None:
            if type(torch_module).forward is not cls.forward:
                return None
            return _REGISTERED.get(key) or _builtin()[key]
    return None
