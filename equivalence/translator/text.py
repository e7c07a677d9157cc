"""Pure formatting for the generated source: literals, names, indentation, the module header,
and the readable names of call targets that problems report.

At the bottom of the translator with :mod:`.graph`; it imports no other phase.
"""
from __future__ import annotations

import importlib
import keyword
import math

import torch
import torch.fx as fx

#: The imports every generated module starts with.
IMPORTS = ("import jax", "import jax.numpy as jnp", "from flax import nnx", "",
           "import jaxconv.functional as F", "from jaxconv import nn, tensor as T")
#: Names the generated source gives a meaning of its own: no generated name may take them.
RESERVED = frozenset({"self", "jax", "jnp", "nnx", "nn", "F", "T", "rngs", "build"})
_DTYPES = {getattr(torch, n): n for n in ("float16", "bfloat16", "float32", "float64", "int8",
                                          "uint8", "int16", "int32", "int64", "complex64",
                                          "complex128")}
_DTYPES[torch.bool] = "bool_"


def literal(v, expr=None) -> str:
    """Source of a value: a node's expression (from ``expr``) or a constant; a ``TypeError``
    for a constant with no source form."""
    if isinstance(v, fx.Node):
        return expr[v]
    if isinstance(v, torch.Size):
        v = tuple(v)
    if isinstance(v, tuple):
        items = [literal(x, expr) for x in v]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(v, list):
        return f"[{', '.join(literal(x, expr) for x in v)}]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {literal(x, expr)}" for k, x in v.items()) + "}"
    if isinstance(v, slice):
        return f"slice({literal(v.start, expr)}, {literal(v.stop, expr)}, {literal(v.step, expr)})"
    if isinstance(v, float) and not math.isfinite(v):
        return f"float({str(v)!r})"
    if isinstance(v, torch.dtype):
        return f"jnp.{_DTYPES[v]}"
    if isinstance(v, (torch.device, torch.memory_format, torch.layout)):
        return "None"
    if v is Ellipsis:
        return "..."
    if v is None or isinstance(v, (bool, int, float, str)):
        return repr(v)
    raise TypeError(f"a constant of type {type(v).__name__} ({v!r}) has no source form")


def has_literal(v) -> bool:
    """Whether :func:`literal` can write constant ``v``."""
    try:
        literal(v)
    except TypeError:
        return False
    return True


def indent(lines, n=1) -> list[str]:
    """``lines`` indented by ``n`` levels (empty lines stay empty)."""
    pad = "    " * n
    return [pad + line if line else line for line in lines]


def identifier(name: str) -> bool:
    """Whether ``name`` can be a Python variable (an identifier, not a keyword)."""
    return name.isidentifier() and not keyword.iskeyword(name)


def param(child: str) -> str:
    """The constructor parameter that takes child (or variable) ``child`` (``'0'`` -> ``_0``;
    ``self``, as Hugging Face names attention's inner module, -> ``self_``)."""
    if child in ("self", "rngs"):
        return f"{child}_"
    if identifier(child):
        return child
    return "_" + "".join(c if c.isalnum() else "_" for c in child)


def constant_name(target: str) -> str:
    """The attribute of an fx tensor constant (``_tensor_constant0`` -> ``tensor_constant0``)."""
    return target.lstrip("_")


_PUBLIC: dict[int, str] = {}


def _public_names() -> dict[int, str]:
    """id -> public name of torch's functions (``torch.fft.fft2``, not ``torch._C._fft.fft_fft2``)."""
    if not _PUBLIC:
        for label in ("torch.fft", "torch.special", "torch.linalg", "torch.nn.functional", "torch",
                      "operator"):
            namespace = importlib.import_module(label)
            for attr in dir(namespace):
                if not attr.startswith("_") or label == "torch":
                    _PUBLIC.setdefault(id(getattr(namespace, attr, None)), f"{label}.{attr}")
    return _PUBLIC


def qualified(target) -> str:
    """A readable name of a call target: ``torch.nn.functional.gelu``, ``Tensor.view``."""
    if isinstance(target, str):
        return f"Tensor.{target}"
    if isinstance(target, torch._ops.OpOverload):
        return f"torch.ops.{target.namespace}.{target.__name__}"
    name = _public_names().get(id(target))
    if name:
        return name
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


class Namespace:
    """The names of one scope of the generated source, handed out as torch.fx hands out the
    names of a graph's nodes (``torch.fx.graph._Namespace``, whose contract this keeps).

    :meth:`create_name` gives an object its candidate name, sanitised into an identifier, or
    ``candidate_1``, ``candidate_2``, ... where the name is taken, reserved, a keyword or a
    builtin; asked again for the same object, it returns the same name. No name goes to two
    objects.
    """

    def __init__(self, reserved=()):
        self._names = fx.graph._Namespace()
        self.taken: set[str] = set()
        for name in reserved:
            self.reserve(name)

    def create_name(self, candidate: str, obj) -> str:
        """The name of ``obj`` (hashable; ``None``: a fresh name each time)."""
        name = self._names.create_name(candidate, obj)
        self.taken.add(name)
        return name

    def reserve(self, name: str) -> None:
        """Keep ``name`` from being handed out: the generated code uses it as it is."""
        self.create_name(name, None)

    def child(self, reserved=()) -> Namespace:
        """A namespace for an inner scope: its names avoid these and ``reserved``."""
        return Namespace(self.taken | set(reserved))


class Header:
    """What the generated module needs above its classes: imports and definitions, each under
    a name of the module's one :class:`Namespace` (``names``), which the classes share."""

    def __init__(self):
        self.imports: dict[str, dict[str, str]] = {}    # module -> {name: local name}
        self.defs: dict[str, str] = {}                  # name -> source
        self.names = Namespace(RESERVED)

    def imported(self, module: str, name: str) -> str:
        """Import ``name`` from ``module``; returns the local name (``name``, unless another
        object has it: ``from module import name as name_1``)."""
        local = self.names.create_name(name, ("import", module, name))
        self.imports.setdefault(module, {})[name] = local
        return local

    def define(self, candidate: str, key, source) -> str:
        """A module-level definition of the object ``key`` (hashable: the same key, the same
        definition), named ``candidate`` where free; ``source(name)`` is its source, added
        the first time. Returns its name."""
        name = self.names.create_name(candidate, key)
        if name not in self.defs:
            self.defs[name] = source(name)
        return name

    def lines(self) -> list[str]:
        """The import lines and definitions, in source order."""
        out = [f"from {m} import {', '.join(n if n == local else f'{n} as {local}' for n, local in sorted(names.items()))}"
               for m, names in sorted(self.imports.items())]
        return out + ([""] if self.defs else []) + list(self.defs.values())
