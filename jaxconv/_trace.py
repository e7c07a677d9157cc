"""Record the calls of a model's named submodules, for ``summary`` and ``equivalence``."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from .nn.module import named_modules

_recording_classes: dict[type, type] = {}
_active: list[dict[int, tuple[str, list]]] = []


@dataclass
class Call:
    """One call of a named submodule: its name, class, positional inputs and output."""

    name: str
    type: type
    inputs: tuple = ()
    output: Any = None
    kwargs: dict = field(default_factory=dict)


def _recording_class(cls: type) -> type:
    sub = _recording_classes.get(cls)
    if sub is None:
        def __call__(self, *args, **kwargs):
            entry = _active[-1].get(id(self)) if _active else None
            if entry is None:
                return cls.__call__(self, *args, **kwargs)
            name, calls = entry
            call = Call(name, cls, args, None, kwargs)
            calls.append(call)  # slot taken at call start: rows follow call order
            call.output = cls.__call__(self, *args, **kwargs)
            return call.output

        sub = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                          "__qualname__": cls.__qualname__})
        _recording_classes[cls] = sub
    return sub


@contextlib.contextmanager
def record_calls(model, include_root: bool = False):
    """Within the block, every call of a named submodule of ``model`` is appended to the
    yielded list as a :class:`Call`, in the order the calls start.

    Works eagerly and inside a trace (``jax.eval_shape``, ``jax.jit``) of a function that
    calls ``model``; classes are restored on exit.
    """
    modules = [(n, m) for n, m in named_modules(model) if n or include_root]
    calls: list[Call] = []
    originals = []
    _active.append({id(m): (n, calls) for n, m in modules})
    try:
        for _, m in modules:
            cls = type(m)
            if cls not in _recording_classes.values():
                originals.append((m, cls))
                object.__setattr__(m, "__class__", _recording_class(cls))
        yield calls
    finally:
        for m, cls in originals:
            object.__setattr__(m, "__class__", cls)
        _active.pop()
