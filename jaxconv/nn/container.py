"""Containers that name their children as torch does: ``'0'``, ``'1'``, ... or by key."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from flax import nnx

from .module import Module, _indent, named_children


def _check_module(name, module):
    if not isinstance(module, nnx.Module):
        raise TypeError(f"{name} must be an nnx.Module, got {type(module).__name__}")
    return module


class _Indexed(Module):
    """Children held as attributes ``'0'``, ``'1'``, ..., so state paths match torch's names."""

    def _children(self) -> list[tuple[str, nnx.Module]]:
        return list(named_children(self))

    def __len__(self) -> int:
        return len(self._children())

    def __iter__(self):
        return (m for _, m in self._children())

    def _index(self, idx: int) -> int:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for {type(self).__name__} of length {n}")
        return idx % n

    def __getitem__(self, idx):
        children = self._children()
        if isinstance(idx, slice):
            return self._sliced(children[idx])
        return children[self._index(idx)][1]

    def __setitem__(self, idx: int, module) -> None:
        setattr(self, self._children()[self._index(idx)][0], _check_module("module", module))

    def append(self, module):
        """Add ``module`` at the end, named by its position."""
        setattr(self, str(len(self)), _check_module("module", module))
        return self


class Sequential(_Indexed):
    """Runs its children in order (``torch.nn.Sequential``).

    ``Sequential(m0, m1, ...)`` names the children ``'0'``, ``'1'``, ...;
    ``Sequential(OrderedDict(name=module))`` keeps the given names. Supports indexing,
    slicing (a ``Sequential`` that keeps the original names), ``len``, iteration and ``append``.
    """

    def __init__(self, *modules):
        if len(modules) == 1 and isinstance(modules[0], Mapping):
            items = modules[0].items()
        else:
            items = ((str(i), m) for i, m in enumerate(modules))
        for name, module in items:
            setattr(self, name, _check_module(f"Sequential child {name!r}", module))

    def _sliced(self, items):
        return Sequential(OrderedDict(items))

    def __call__(self, x):
        """Runs the children in order, each on the previous one's output.

        **Arguments:** ``x``: the first child's input.

        **Returns:** the last child's output (``x`` itself when there are no children).
        """
        for module in self:
            x = module(x)
        return x


class ModuleList(_Indexed):
    """A list of modules whose children are named ``'0'``, ``'1'``, ... (``torch.nn.ModuleList``)."""

    def __init__(self, modules: Iterable | None = None):
        self.extend(modules or ())

    def _sliced(self, items):
        return ModuleList(m for _, m in items)

    def __repr__(self) -> str:
        # torch collapses runs of children with equal reprs: "(1-3): 3 x Conv2d(...)".
        runs: list[list] = []
        for i, child in enumerate(self):
            text = repr(child)
            if runs and runs[-1][2] == text:
                runs[-1][1] = i
            else:
                runs.append([i, i, text])
        if not runs:
            return "ModuleList()"
        lines = [f"({a}): {text}" if a == b else f"({a}-{b}): {b - a + 1} x {text}" for a, b, text in runs]
        return "ModuleList(" + "".join("\n  " + _indent(line) for line in lines) + "\n)"

    def extend(self, modules: Iterable):
        """Append every module of ``modules``."""
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module) -> None:
        """Insert ``module`` before ``index``, renumbering the children after it as torch does."""
        modules = list(self)
        modules.insert(index, _check_module("module", module))
        for name, _ in self._children():
            delattr(self, name)
        self.extend(modules)


class ModuleDict(Module):
    """A dict of modules named by their keys (``torch.nn.ModuleDict``); keys are strings."""

    def __init__(self, modules: Mapping | Iterable | None = None):
        self.update(modules or {})

    def update(self, modules) -> None:
        """Add or replace children from a mapping or an iterable of ``(key, module)`` pairs."""
        items = modules.items() if isinstance(modules, Mapping) else modules
        for key, module in items:
            self[key] = module

    def __setitem__(self, key: str, module) -> None:
        if not isinstance(key, str) or not key or "." in key:
            raise KeyError(f"ModuleDict keys must be non-empty strings without '.', got {key!r}")
        setattr(self, key, _check_module(f"ModuleDict[{key!r}]", module))

    def __getitem__(self, key: str):
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        delattr(self, key)

    def __contains__(self, key) -> bool:
        return any(name == key for name, _ in named_children(self))

    def __len__(self) -> int:
        return len(self.keys())

    def __iter__(self):
        return iter(self.keys())

    def keys(self):
        return [name for name, _ in named_children(self)]

    def values(self):
        return [m for _, m in named_children(self)]

    def items(self):
        return list(named_children(self))
