"""Intercept the calls of a model's named submodules: what ``summary`` and ``equivalence`` build on.

A call is intercepted by swapping the instance's class for a cached subclass whose
``__call__`` consults the active hooks; the original classes are restored on exit. This works
eagerly and inside a trace (``jax.eval_shape``, ``jax.jit``) of a function that calls the model.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .nn.module import named_modules

_hooked: dict[type, type] = {}
_hooks: dict[int, Callable] = {}

Hook = Callable[[Any, type, tuple, dict], Any]
"""``hook(module, original_class, args, kwargs) -> output``; call
``original_class.__call__(module, *args, **kwargs)`` to run the module itself."""


def _hooked_class(cls: type) -> type:
    sub = _hooked.get(cls)
    if sub is None:
        def __call__(self, *args, **kwargs):
            hook = _hooks.get(id(self))
            if hook is None:
                return cls.__call__(self, *args, **kwargs)
            return hook(self, cls, args, kwargs)

        sub = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                          "__qualname__": cls.__qualname__})
        _hooked[cls] = sub
    return sub


@contextlib.contextmanager
def intercept(hooks: dict):
    """Within the block, calls of each module in ``hooks`` (``{module: hook}``) go through its
    :data:`Hook` instead."""
    swapped = []
    try:
        for module, hook in hooks.items():
            cls = type(module)
            if cls not in _hooked.values():
                object.__setattr__(module, "__class__", _hooked_class(cls))
                swapped.append((module, cls))
            _hooks[id(module)] = hook
        yield
    finally:
        for module in hooks:
            _hooks.pop(id(module), None)
        for module, cls in swapped:
            object.__setattr__(module, "__class__", cls)


@dataclass
class Call:
    """One call of a named submodule: its name, class, positional inputs and output."""

    name: str
    type: type
    inputs: tuple = ()
    output: Any = None
    kwargs: dict = field(default_factory=dict)


@contextlib.contextmanager
def record_calls(model, include_root: bool = False):
    """Within the block, every call of a named submodule of ``model`` is appended to the
    yielded list as a :class:`Call`, in the order the calls start."""
    calls: list[Call] = []

    def recorder(name):
        def hook(module, cls, args, kwargs):
            call = Call(name, cls, args, None, kwargs)
            calls.append(call)  # the slot is taken at call start: rows follow call order
            call.output = cls.__call__(module, *args, **kwargs)
            return call.output
        return hook

    with intercept({m: recorder(n) for n, m in named_modules(model) if n or include_root}):
        yield calls
