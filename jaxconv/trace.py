"""Intercept the calls of a model's named submodules: what ``summary`` and ``equivalence`` build on.

A call is intercepted by swapping the instance's class for a cached subclass whose
``__call__`` consults the active hooks; the original class is restored when the last block
using the instance exits. This works eagerly and inside a trace (``jax.eval_shape``,
``jax.jit``) of a function that calls the model.

Hooks are local to the calling context (a ``contextvars.ContextVar`` holds them): another
thread calling the same module while one thread is inside :func:`intercept` runs the module
plainly (a thread started inside the block too, unless it runs in a copy of the context).
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .layout import plain_calls
from .nn.module import named_modules

Hook = Callable[[Any, type, tuple, dict], Any]
"""``hook(module, original_class, args, kwargs) -> output``; call
``original_class.__call__(module, *args, **kwargs)`` to run the module itself, or
``module(*args, **kwargs)`` to call through to the next outer hook (see :func:`intercept`)."""

_hooked: dict[type, type] = {}  # original class -> its hooking subclass
_swapped: dict[int, list] = {}  # id(module) -> [module, original class, blocks using it]
_lock = threading.Lock()
_hooks: contextvars.ContextVar[dict[int, tuple[Hook, ...]]] = contextvars.ContextVar(
    "jaxconv_trace_hooks", default={})  # id(module) -> its hooks, outermost first
_running: contextvars.ContextVar[dict[int, int]] = contextvars.ContextVar(
    "jaxconv_trace_running", default={})  # id(module) -> how many of its hooks stay callable


def _hooked_class(cls: type) -> type:
    sub = _hooked.get(cls)
    if sub is None:
        def __call__(self, *args, **kwargs):
            key = id(self)
            hooks = _hooks.get().get(key, ())
            level = _running.get().get(key, len(hooks))
            if level == 0:
                return cls.__call__(self, *args, **kwargs)
            token = _running.set({**_running.get(), key: level - 1})
            try:
                return hooks[level - 1](self, cls, args, kwargs)
            finally:
                _running.reset(token)

        sub = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                          "__qualname__": cls.__qualname__})
        _hooked[cls] = sub
    return sub


def _acquire(module) -> None:
    """Swap ``module``'s class on the first block that uses it; count the others."""
    with _lock:
        entry = _swapped.get(id(module))
        if entry is None:
            cls = type(module)
            object.__setattr__(module, "__class__", _hooked_class(cls))
            _swapped[id(module)] = [module, cls, 1]
        else:
            entry[2] += 1


def _release(module) -> None:
    """Restore ``module``'s class when the last block that uses it exits."""
    with _lock:
        entry = _swapped[id(module)]
        entry[2] -= 1
        if entry[2] == 0:
            object.__setattr__(module, "__class__", entry[1])
            del _swapped[id(module)]


@contextlib.contextmanager
def intercept(hooks: dict):
    """Within the block, calls of each module in ``hooks`` (``{module: hook}``) go through its
    :data:`Hook` instead, in this context only (other threads see no hooks).

    Re-entrant: nested blocks may hook the same module. The innermost hook wins; inside it,
    ``original_class.__call__(module, ...)`` runs the module itself and ``module(...)`` calls
    through to the next outer hook (the module itself past the outermost). When the inner
    block exits, the outer hook is active again; the class is restored when the last block
    exits, also on an exception.
    """
    acquired = []
    token = None
    try:
        for module in hooks:
            _acquire(module)
            acquired.append(module)
        current = _hooks.get()
        token = _hooks.set({**current, **{id(m): current.get(id(m), ()) + (h,)
                                         for m, h in hooks.items()}})
        with plain_calls():  # the hooks are on these modules, not on a plan's copies
            yield
    finally:
        if token is not None:
            _hooks.reset(token)
        for module in acquired:
            _release(module)


@dataclass
class Call:
    """One call of a named submodule: its name, class, positional inputs and output, and
    ``parent``, the index of the recorded call it happened in (``None`` at the top)."""

    name: str
    type: type
    inputs: tuple = ()
    output: Any = None
    kwargs: dict = field(default_factory=dict)
    parent: int | None = None


@contextlib.contextmanager
def record_calls(model, include_root: bool = False):
    """Within the block, every call of a named submodule of ``model`` is appended to the
    yielded list as a :class:`Call`, in the order the calls start. A module reachable by
    several paths is named by its first (as torch's hooks name it)."""
    calls: list[Call] = []
    running: list[int] = []

    def recorder(name):
        def hook(module, cls, args, kwargs):
            call = Call(name, cls, args, None, kwargs, running[-1] if running else None)
            running.append(len(calls))
            calls.append(call)  # the slot is taken at call start: rows follow call order
            try:
                call.output = cls.__call__(module, *args, **kwargs)
            finally:
                running.pop()
            return call.output
        return hook

    with intercept({m: recorder(n) for n, m in named_modules(model) if n or include_root}):
        yield calls
