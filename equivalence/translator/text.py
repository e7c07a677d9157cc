"""Pure formatting for the generated source: literals, names, indentation, the module header.

At the bottom of the translator with :mod:`.graph`; it imports no other phase.
"""
from __future__ import annotations

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


class Header:
    """What the generated module needs above its classes: imports and definitions."""

    def __init__(self):
        self.imports: dict[str, set] = {}
        self.defs: dict[str, str] = {}

    def imported(self, module: str, name: str) -> str:
        """Import ``name`` from ``module``; returns the local name."""
        self.imports.setdefault(module, set()).add(name)
        return name

    def lines(self) -> list[str]:
        """The import lines and definitions, in source order."""
        out = [f"from {m} import {', '.join(sorted(n))}" for m, n in sorted(self.imports.items())]
        return out + ([""] if self.defs else []) + list(self.defs.values())
