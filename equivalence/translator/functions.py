"""Plain Python functions a traced ``forward`` calls whole, translated by tracing into them.

A function wrapped with ``torch.fx.wrap`` (torchvision's ``shifted_window_attention``, mvit's
``_add_rel_pos``, ...) shows in a graph as one ``call_function`` node. Its body is traced
with torch.fx on the arguments it was called with in a run of the model on example inputs
(:func:`.state.record_calls`): tensors become the parameters of a module-level function of the generated
source; everything else (window sizes, flags, shapes computed by the caller) is a constant.
The tracer knows the value of every node, so Python control flow on shapes (``if
window_size >= H``) takes the branch the example takes, and the emitted function asserts
that it would again. A call with no tensor argument is evaluated and becomes its value.
Tensors the function writes into (``x.add_(y)``, ``x[:, 1:] += y``) are returned with its
result, and the caller rebinds them, as torch's aliasing would have them change.

This module traces (:class:`Traced` per call, in ``Part.functions``); :mod:`.emit` writes the
bodies (``FunctionBody``) and the calls (``function_call``).
"""
from __future__ import annotations

import inspect
import operator
import types
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch.overrides import TorchFunctionMode

from . import dispatch
from .graph import Problem, eliminate_dead_code, rebind_in_place, signature, source_line, writes
from .leaves import qualified_name
from .state import preserved, record_calls
from .text import qualified

#: torch factories whose constant-argument calls are recorded (not run) inside a body.
_FACTORIES = {torch.arange, torch.zeros, torch.ones, torch.full, torch.eye, torch.linspace}


def traced_into(target) -> bool:
    """Whether a ``call_function`` target is a plain Python function to trace into."""
    return (isinstance(target, types.FunctionType) and target is not guard
            and not (target.__module__ or "").startswith("torch.")
            and dispatch.function(target) is None)


@fx.node.has_side_effect
def guard(condition, expected):
    """Marks, in a traced body, a branch taken on ``condition``'s value ``expected``."""
    return None


@dataclass(eq=False)
class Traced:
    """One call of a Python function: its body graph (or its value) and how to call it."""

    fn: object
    names: list                       # the tensor parameters, in order
    graph: fx.Graph | None = None     # None: the call is its constant ``value``
    value: object = None
    baked: dict = field(default_factory=dict)      # non-tensor arguments, as constants
    mutated: list = field(default_factory=list)   # names of parameters written into
    constants: dict = field(default_factory=dict)  # fx tensor constants of the body
    calls: dict = field(default_factory=dict)      # body node -> Traced (nested functions)

    def key(self) -> str:
        """Equal for two calls that translate to the same source."""
        if self.graph is None:
            return repr(("value", self.fn.__qualname__, self.value))
        return repr((self.fn.__qualname__, self.names, self.mutated, signature(self.graph),
                     {k: v.tolist() for k, v in self.constants.items()},
                     [t.key() for t in self.calls.values()]))


class _Mode(TorchFunctionMode):
    """Records constant-argument factory calls (``torch.arange(7)``) as graph nodes."""

    def __init__(self, tracer):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _FACTORIES and not self.tracer.evaluating:
            proxies = []
            fx.node.map_aggregate((args, kwargs), lambda a: proxies.append(a) if isinstance(a, fx.Proxy) else a)
            if not proxies:
                return self.tracer.create_proxy("call_function", func, args, kwargs)
        return func(*args, **kwargs)


class _Proxy(fx.Proxy):
    """A proxy that records item assignment (``mask[a:b] = count``) as ``operator.setitem``."""

    def __setitem__(self, idx, value):
        self.tracer.create_proxy("call_function", operator.setitem, (self, idx, value), {})


class _Tracer(fx.Tracer):
    """A torch.fx tracer that also computes each node's value from the example arguments, as
    it records the node (with a ``torch.fx.Interpreter`` whose environment is ``values``)."""

    def __init__(self, inputs):
        super().__init__()
        self.record_stack_traces = True
        self.inputs, self.values, self.evaluating = list(inputs), {}, False
        self._interpreter = None

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None):
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if kind == "placeholder":
            self.values[node] = self.inputs.pop(0)
        elif kind != "output":
            if self._interpreter is None:
                self._interpreter = fx.Interpreter(self.root, garbage_collect_values=False, graph=self.graph)
                self._interpreter.env = self.values
            self.evaluating = True
            try:
                self.values[node] = self._interpreter.run_node(node)
            finally:
                self.evaluating = False
        return node

    def proxy(self, node):
        return _Proxy(node, self)

    def to_bool(self, obj):
        value = bool(self.values[obj.node])
        self.create_proxy("call_function", guard, (obj, value), {})
        return value

    def iter(self, obj):
        return iter([obj[i] for i in range(len(self.values[obj.node]))])


def _clone(tree):
    """Tensors cloned, fx's immutable lists made plain lists again (functions mutate them)."""
    if isinstance(tree, torch.Tensor):
        return tree.clone()
    if isinstance(tree, list):
        return [_clone(v) for v in tree]
    if isinstance(tree, tuple):
        return type(tree)(*map(_clone, tree)) if hasattr(tree, "_fields") else tuple(map(_clone, tree))
    if isinstance(tree, dict):
        return type(tree)((k, _clone(v)) for k, v in tree.items())
    return tree


def trace_call(fn, args, kwargs) -> Traced:
    """Trace ``fn`` called with these concrete ``args`` / ``kwargs`` (tensors as parameters)."""
    sig = inspect.signature(fn)
    bound = sig.bind(*_clone(args), **_clone(kwargs))
    names = [n for n, v in bound.arguments.items() if isinstance(v, torch.Tensor)]
    baked = {n: v for n, v in bound.arguments.items() if n not in names}
    if not names:
        return Traced(fn, [], value=fn(*bound.args, **bound.kwargs), baked=baked)
    inputs = [bound.arguments[n] for n in names]
    versions = [t._version for t in inputs]

    def call(*tensors):
        bound.arguments.update(zip(names, tensors))
        return fn(*bound.args, **bound.kwargs)

    namespace = {"call": call}
    exec(f"def {fn.__name__}({', '.join(names)}):\n    return call({', '.join(names)})", namespace)
    tracer = _Tracer(inputs)
    with _Mode(tracer):
        graph = tracer.trace(namespace[fn.__name__])
    mutated = [n for n, t, v in zip(names, inputs, versions) if t._version != v]
    if mutated:
        output = graph.output_node()
        holders = {n.target: n for n in graph.find_nodes(op="placeholder")}
        output.args = ((output.args[0], *(holders[n] for n in mutated)),)
    constants = {n.target: tracer.values[n] for n in graph.find_nodes(op="get_attr")
                 if n.target.startswith("_tensor_constant")}
    _write_back_views(graph)
    eliminate_dead_code(graph)      # shape pieces the body unpacked and never used
    rebind_in_place(graph)        # now, so that its key is that of the emitted body
    traced = Traced(fn, names, graph, baked=baked, mutated=mutated, constants=constants)
    for node in wanted(graph):
        a, k = fx.node.map_arg((node.args, node.kwargs), lambda n: tracer.values[n])
        traced.calls[node] = trace_call(node.target, _clone(a), _clone(k))
    return traced


def _write_back_views(graph) -> None:
    """``x[i].zero_()`` writes into ``x``: follow each in-place method on an indexed view with
    ``x[i] = result`` (the functional form reads it as a new value of ``x``)."""
    for node in list(graph.nodes):
        view = node.args[0] if node.args else None
        if (writes(node) and isinstance(view, fx.Node)
                and view.op == "call_function" and view.target is operator.getitem):
            with graph.inserting_after(node):
                graph.call_function(operator.setitem, (view.args[0], view.args[1], node))


def wanted(graph) -> list:
    """The nodes of ``graph`` that call a function to trace into."""
    return [n for n in graph.nodes if n.op == "call_function" and traced_into(n.target)]


class _Recorder(fx.Interpreter):
    def __init__(self, module, graph, nodes):
        super().__init__(module, graph=graph)
        self.nodes, self.calls = set(nodes), {}

    def call_module(self, target, args, kwargs):
        if getattr(self.module, target.split(".")[0], None) is None:   # an absent optional child
            return args[0]
        return super().call_module(target, args, kwargs)

    def run_node(self, n):
        if n in self.nodes:
            self.calls[n] = _clone(self.fetch_args_kwargs_from_env(n))
            args, kwargs = _clone(self.calls[n])
            return n.target(*args, **kwargs)
        return super().run_node(n)


def calls_of(module, graph, inputs) -> dict:
    """``node -> Traced`` for the function calls in ``graph`` (``module``'s forward), run on
    the ``(args, kwargs)`` ``module`` was called with, its children in eval mode (as
    the model's run ran them); the module's state is as it was afterwards."""
    args, kwargs = inputs
    bound = inspect.signature(module.forward).bind(*args, **kwargs)
    bound.apply_defaults()
    holders = graph.find_nodes(op="placeholder")
    values = [bound.arguments.get(n.target.lstrip("*"), n.args[0] if n.args else None) for n in holders]
    recorder = _Recorder(module, graph, wanted(graph))
    with preserved(module), torch.no_grad():
        module.eval()
        recorder.run(*values)
    return {n: trace_call(n.target, *recorder.calls[n]) for n in wanted(graph)}


def attach(tree, parts, example_inputs, problems) -> None:
    """Trace into the function calls of ``parts`` (``part.functions``), running ``tree``'s
    module on ``example_inputs`` to learn their arguments; failures go to ``problems``."""

    todo = [p for p in parts if any(wanted(g) for g in p.graphs.values())]
    if not todo:
        return

    def problem(part, what, node=None):
        problems.append(Problem(part.path, qualified_name(part.cls), what,
                                source_line(node) if node is not None else ""))

    if not example_inputs:
        for p in todo:
            for node in {n.target: n for g in p.graphs.values() for n in wanted(g)}.values():
                problem(p, f"tracing into {qualified(node.target)} needs example inputs: "
                           "translate(model, *example_inputs)", node)
        return
    seen = record_calls(tree.module, example_inputs, [p.module for p in todo],
                        lambda args, kwargs: (_clone(args), _clone(kwargs)))
    for p in todo:
        if p.module not in seen:
            problem(p, "not called when the model ran on the example inputs, so its function "
                       "calls cannot be traced")
            continue
        for graph in p.graphs.values():
            try:
                p.functions.update(calls_of(p.module, graph, seen[p.module][0][0]))
            except Exception as e:  # noqa: BLE001 - reported with the module
                problem(p, f"cannot trace into its function calls: {type(e).__name__}: {e}")
