"""Python values a traced ``forward`` computes from its own parameters and buffers.

``int(self.k)``, ``self.sizes.tolist()``, ``bool(self.flag.any())``: torch.fx would record a
node (or fail: ``int()`` of a proxy is a ``TypeError``), and no translation can turn a jax
array back into a Python number under ``jit``. Where the value depends on parameters and
buffers only, it is taken from the torch model at trace time, as Python takes it, and the
translation is specialised to it (the class docstring lists each such value). Where it
depends on the inputs, the trace fails with a ``TraceError`` naming it, and the capture falls
back to ``torch.export`` like any other trace failure.
"""
from __future__ import annotations

import inspect
import linecache
import os
import traceback

import torch
import torch.fx as fx

_HERE = os.path.dirname(os.path.abspath(__file__))
#: Tensor methods that return Python values.
PYTHON_VALUES = ("item", "tolist")


class _Dynamic(Exception):
    """A value that depends on the inputs (a placeholder or a module call)."""


class Proxy(fx.Proxy):
    """A proxy that ``int()``, ``float()`` and ``operator.index`` read through its tracer."""

    def __int__(self):
        return self.tracer.python_value(self, "int", int)

    def __float__(self):
        return self.tracer.python_value(self, "float", float)

    def __index__(self):
        return self.tracer.python_value(self, "operator.index", int)


class _Values(fx.Interpreter):
    """The values of the nodes a tracer has recorded so far, each computed on demand after its
    inputs, from the root's parameters and buffers; a placeholder or a module call depends on
    the inputs (``_Dynamic``)."""

    def __init__(self, tracer):
        super().__init__(tracer.root, garbage_collect_values=False, graph=tracer.graph)
        self.tracer = tracer

    def run_node(self, n):
        if n not in self.env:
            for i in n.all_input_nodes:
                self.run_node(i)
            self.env[n] = super().run_node(n)
        return self.env[n]

    def placeholder(self, target, args, kwargs):
        raise _Dynamic(target)

    def call_module(self, target, args, kwargs):
        raise _Dynamic(target)

    def get_attr(self, target, args, kwargs):
        """The tensor itself, past fx's patched ``Module.__getattr__`` (which proxies)."""
        *path, name = target.split(".")
        owner = self.module
        for piece in path:
            owner = owner._modules[piece]
        tables = (owner._parameters, owner._buffers, owner.__dict__)
        self.tracer.sources.setdefault(target, self.tracer._reading)
        return next(table[name] for table in tables if name in table)

    def call_function(self, target, args, kwargs):
        with torch.no_grad():
            return super().call_function(target, args, kwargs)

    def call_method(self, target, args, kwargs):
        with torch.no_grad():
            return super().call_method(target, args, kwargs)


class Concrete:
    """A ``torch.fx.Tracer`` mixin: Python values computed from the root's parameters and
    buffers are computed (``frozen`` describes each, ``sources`` are the attributes they
    read); those computed from the inputs raise ``TraceError``."""

    def proxy(self, node):
        return Proxy(node, self)

    def to_bool(self, obj):
        return self.python_value(obj, "bool", bool)

    def create_proxy(self, kind, target, args, kwargs, *rest, **more):
        if kind == "call_method" and target in PYTHON_VALUES and isinstance(args[0], fx.Proxy):
            return self.python_value(args[0], f"Tensor.{target}", lambda t: getattr(t, target)())
        return super().create_proxy(kind, target, args, kwargs, *rest, **more)

    def python_value(self, proxy, what: str, fn):
        """``fn`` of the tensor ``proxy`` stands for, where it depends on parameters and
        buffers only; a ``TraceError`` naming ``what`` otherwise."""
        if not hasattr(self, "frozen"):
            self.frozen, self.sources, self._values = [], {}, _Values(self)
        self._reading = user_line()
        try:
            value = fn(self._values.run_node(proxy.node))
        except _Dynamic:
            raise fx.proxy.TraceError(f"{what}() of a value computed from the inputs: a Python "
                                      "value that a translation cannot compute under jit") from None
        line = self._reading
        self.frozen.append(f"{what}() = {value!r}" + (f" at {line}" if line else ""))
        return value


def check_sources(tracer, graph, in_place) -> None:
    """Refuse (``TraceError``) a trace that froze a value read from a buffer its own graph
    writes into (``in_place(node)``): the value changes from call to call."""
    written = {n.args[0].target for n in graph.nodes if n.args and isinstance(n.args[0], fx.Node)
               and n.args[0].op == "get_attr" and in_place(n)}
    sources = getattr(tracer, "sources", {})
    moving = sorted(written & set(sources))
    if moving:
        error = fx.proxy.TraceError(f"a Python value computed from {', '.join(moving)}, which "
                                    "the forward writes into")
        error.line = sources[moving[0]]
        raise error


def _user(file: str) -> bool:
    return not (file.startswith(_HERE) or f"{os.sep}torch{os.sep}" in file or file.startswith("<"))


def _line(file: str, lineno: int) -> str:
    return f"{file}:{lineno}  {linecache.getline(file, lineno).strip()}"


def user_line() -> str:
    """``file:line  code`` of the innermost frame of the current stack outside torch and the
    translator: the user code being traced."""
    frame = inspect.currentframe()
    while frame is not None:
        if _user(frame.f_code.co_filename):
            return _line(frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return ""


def error_line(error: BaseException) -> str:
    """``file:line  code`` of the innermost user frame (outside torch and the translator) of
    ``error``'s traceback: the line of a forward that made tracing or exporting fail."""
    found = getattr(error, "line", "")
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if _user(frame.f_code.co_filename):
            found = _line(frame.f_code.co_filename, lineno)
    return found
