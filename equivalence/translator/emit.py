"""Readable Flax source for one traced module: its class, one assignment per graph node.

A traced module's class takes its children as constructor arguments (``build()`` passes them)
and its own parameters as shapes; its ``__call__`` is its fx graph, one assignment per node,
named as fx names them after torch's code (``conv1``, ``bn1``, ``add``, ``relu_1``).
Instances share a class when their graphs, children and variables agree (:func:`variant`).
"""
from __future__ import annotations

import keyword
import textwrap

import torch
import torch.fx as fx

from . import dispatch, functions, ops
from .graph import Part, Problem, signature, source_line, writes
from .leaves import qualified_name
from .text import RESERVED, Header, constant_name, indent, literal, param

def _name(node) -> str:
    """The local variable of ``node``: fx's name, with ``_`` where it would shadow a reserved
    name, a keyword, or the module-level function a call goes to (a traced-into function, or
    ``math.ceil`` imported as ``ceil``: fx names such a node after the function, and a local
    of that name makes the call unbound)."""
    name = node.name
    shadows = node.op == "call_function" and (functions.traced_into(node.target)
                                              or getattr(node.target, "__module__", None) == "math")
    return f"{name}_" if shadows or name in RESERVED or keyword.iskeyword(name) else name


def _path(parts: dict, path: str, base: str) -> str:
    """Source that reaches ``base.path`` (``self.layer1[0].conv1``): ``[i]`` in lists."""
    out, here = "self", base
    for piece in path.split("."):
        kind = parts[here].kind if here in parts else "traced"
        here = f"{here}.{piece}" if here else piece
        if kind in ("sequential", "list") and piece.isdigit():
            out += f"[{piece}]"
        elif kind == "dict" or not piece.isidentifier() or keyword.iskeyword(piece):
            out += f"[{piece!r}]" if kind == "dict" else f".__dict__[{piece!r}]"
        else:
            out += f".{piece}"
    return out


class Body:
    """The emitter context of one ``__call__``: formats arguments, collects lines."""

    def __init__(self, part: Part, parts: dict, header: Header, problems: list):
        self.part, self.parts, self.header, self.problems = part, parts, header, problems
        self.expr: dict = {}
        self.lines: list[str] = []
        self.name = ""
        self.needs_rng = False
        self._after: list[str] = []
        self.calls = part.functions     # call nodes of Python functions traced into

    # --- what emitters use -------------------------------------------------------------
    def fmt(self, v) -> str:
        """Source of an argument: a node's expression or a constant."""
        return literal(v, self.expr)

    def call(self, fn: str, args, kwargs) -> str:
        """``fn(a, b, k=v)``."""
        items = [self.fmt(a) for a in args] + [f"{k}={self.fmt(v)}" for k, v in kwargs.items()]
        return f"{fn}({', '.join(items)})"

    def attr(self, v) -> str | None:
        """The dotted path of ``v`` when it reads a parameter or buffer of this module."""
        return v.target if isinstance(v, fx.Node) and v.op == "get_attr" else None

    def after(self, line: str) -> None:
        """A statement to emit after this node's assignment."""
        self._after.append(line)

    def rng(self) -> str:
        """A fresh dropout key from this module's ``rngs`` stream."""
        self.needs_rng = True
        return "self.rngs.dropout()"

    def imported(self, module: str, name: str) -> str:
        """Import ``name`` from ``module`` in the generated source; returns the local name."""
        return self.header.imported(module, name)

    def define(self, name: str, text: str) -> str:
        """A module-level definition ``name = text`` in the generated source; returns the name
        it got: ``name``, or ``name_1``, ... where ``name`` is defined as something else."""
        base, i = name, 1
        while self.header.defs.get(name, f"{name} = {text}") != f"{name} = {text}" or name in RESERVED:
            name, i = f"{base}_{i}", i + 1
        self.header.defs[name] = f"{name} = {text}"
        return name

    # --- the graph -------------------------------------------------------------------------
    def _problem(self, node, what):
        self.problems.append(Problem(self.part.path, qualified_name(self.part.cls), what,
                                     source_line(node)))

    def _emit(self, node) -> str | None:
        args, kwargs = node.args, dict(node.kwargs)
        if node.op == "get_attr":
            target = node.target
            if target.startswith("_tensor_constant"):
                return f"self.{constant_name(target)}[...]"
            owner, _, leaf = target.rpartition(".")
            owner = _path(self.parts, owner, self.part.path) if owner else "self"
            return f"{owner}.{leaf}[...]" if param(leaf) == leaf else f"getattr({owner}, {leaf!r})[...]"
        if node.op == "call_module":
            call = f"{_path(self.parts, node.target, self.part.path)}"
            text = self.call(call, args, kwargs)
            if node.target in self.part.optional:
                return f"{self.fmt(args[0])} if {call} is None else {text}"
            return text
        if node.op == "call_function" and node in self.calls:
            return functions.emit_call(self, node, self.calls[node])
        if node.op == "call_function":
            emitter, what = dispatch.function(node.target), ops.qualified(node.target)
        else:
            emitter, what = dispatch.method(node.target), f"Tensor.{node.target}"
        if emitter is None:
            self._problem(node, f"no translation for {what}")
            return "None"
        try:
            return emitter(self, *args, **kwargs)
        except (KeyError, TypeError) as e:
            self._problem(node, f"no translation for {what} with these arguments ({e})")
            return "None"

    def _output(self, v) -> str:
        """The returned structure; dicts as ``OrderedDict``, whose key order jax keeps (under
        ``jit`` a plain dict comes back sorted by key)."""
        if isinstance(v, dict):
            name = self.imported("collections", "OrderedDict")
            if all(isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k) for k in v):
                return f"{name}({', '.join(f'{k}={self._output(x)}' for k, x in v.items())})"
            return f"{name}([{', '.join(f'({k!r}, {self._output(x)})' for k, x in v.items())}])"
        if isinstance(v, (tuple, list)) and not hasattr(v, "_fields"):
            items = [self._output(x) for x in v]
            if isinstance(v, list):
                return f"[{', '.join(items)}]"
            return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
        return self.fmt(v)

    def graph(self, graph) -> tuple[list[str], list[str]]:
        """``(parameters, lines)`` of the ``__call__`` that computes ``graph``."""
        params, lines = [], []
        for node in graph.nodes:
            self.name, self._after = _name(node), []
            if node.op == "placeholder":
                default = f"={self.fmt(node.args[0])}" if node.args else ""
                params.append(f"{node.target}{default}")
                self.expr[node] = node.target.lstrip("*")
            elif node.op == "output":
                lines.append(f"return {self._output(node.args[0])}")
            else:
                text = self._emit(node)
                if text is None:
                    self.expr[node] = "None"
                elif text == "" or text.isidentifier() and text in self.expr.values():
                    self.expr[node] = text or self.name
                elif node.op == "get_attr":
                    self.expr[node] = text
                else:
                    lines.append(f"{self.name} = {text}")
                    self.expr[node] = self.name
                lines += self._after
                if writes(node) and self.attr(node.args[0]):      # into a buffer: store the new value
                    owner = self.expr[node.args[0]]
                    lines.append(f"{owner} = {self.name}")
        return params, lines


def _own_variables(m: torch.nn.Module):
    """A module's own ``(parameters, persistent buffers)`` as ``(name, tensor)`` lists."""
    persistent = [(n, t) for n, t in m._buffers.items()
                  if t is not None and n not in m._non_persistent_buffers_set]
    params = [(n, p) for n, p in m._parameters.items() if p is not None]
    return params, persistent


def _non_persistent(m: torch.nn.Module):
    """A module's own buffers that its state_dict leaves out: their values go in the source."""
    return [(n, t) for n, t in m._buffers.items()
            if t is not None and n in m._non_persistent_buffers_set]


def variant(part: Part) -> str:
    """The key of ``part``'s class: its torch class, graphs, children and variables."""
    params, buffers = _own_variables(part.module)
    return repr((qualified_name(part.cls), [signature(g) for g in part.graphs.values()],
                 list(part.graphs), [n for n, _ in part.children], sorted(part.optional),
                 [(n, str(p.dtype), p.dim()) for n, p in params + buffers],
                 {k: v.tolist() for k, v in part.constants.items()},
                 [t.key() for t in part.functions.values()], sorted(part.specialised.items()),
                 not part.path, part.frozen))


def _variable_lines(m: torch.nn.Module, constants: dict) -> tuple[list[str], list[str]]:
    """``(constructor parameters, __init__ lines)`` for a module's own parameters and buffers."""
    params, buffers = _own_variables(m)
    args, lines = [], []
    def assign(n, value):       # a ParameterList's '0' is no identifier
        return f"self.{n} = {value}" if param(n) == n else f"setattr(self, {n!r}, {value})"

    for kind, items in (("nnx.Param", params), ("nnx.BatchStat", buffers)):
        for n, t in items:
            args.append(param(n))
            lines.append(assign(n, f"{kind}(jnp.zeros({param(n)}, {literal(t.dtype)}))"))
    for n, t in [*_non_persistent(m), *((constant_name(k), v) for k, v in constants.items())]:
        args.append(param(n))
        lines.append(assign(n, f"nnx.Variable(jnp.asarray({param(n)}, {literal(t.dtype)}))"))
    return args, lines


def _specialisation(name: str, part: Part) -> tuple[list[str], list[str]]:
    """``(docstring lines, __call__ lines)`` for the arguments ``part`` was traced with as
    constants (:mod:`.callsite`): the docstring names them and, at the root (the user's call),
    a call with other values raises instead of computing the branch that was not translated.
    A child is called by the translation itself, as its parent's graph calls it."""
    items = {k: v for k, v in part.specialised.items() if not (isinstance(v, float) and v != v)}
    if not items:
        return [], []
    shown = [f"no {k}" if k.startswith("**") else f"{k}={literal(v)}" for k, v in items.items()]
    how = ("as the example inputs call it; other values raise: translate again with example "
           "inputs that pass them." if not part.path else "as its caller calls it.")
    doc = ["", *textwrap.wrap(f"Specialised to {', '.join(shown)}, {how}", 96,
                              initial_indent="    ", subsequent_indent="    ")]
    if part.path:
        return doc, []
    lines = []
    for (k, v), what in zip(items.items(), shown):
        test = k[2:] if k.startswith("**") else f"{k} is not None" if v is None else f"{k} != {literal(v)}"
        message = f"{name} was translated for {what} only; translate again for other values"
        lines += [f"if {test}:", f"    raise ValueError({message!r})"]
    return doc, lines


def class_source(name: str, part: Part, parts: dict, header: Header,
                 problems: list) -> tuple[str, bool]:
    """The source of the class that ``part`` (and every instance of its variant) runs, and
    whether its constructor takes ``rngs`` (it draws dropout masks of its own)."""
    children = [n for n, _ in part.children]
    var_args, var_lines = _variable_lines(part.module, part.constants)
    body = Body(part, parts, header, problems)
    bodies = {}
    for mode, graph in part.graphs.items():
        body.expr = {}
        bodies[mode] = body.graph(graph)
    params = next(iter(bodies.values()))[0]
    init_params = [f"{param(c)}=None" if c in part.optional else param(c) for c in children]
    init_params = [c for c in init_params if "=" not in c] + [c for c in init_params if "=" in c]
    if var_args:
        init_params += ["*"] + var_args
    if body.needs_rng:
        init_params += ([] if var_args else ["*"]) + ["rngs=None"]
    init = [f"self.{c} = {c}" if param(c) == c else f"setattr(self, {c!r}, {param(c)})"
            for c in children] + var_lines
    if len(part.graphs) > 1:
        init.append("self.training = True")
    if body.needs_rng:
        init.append("self.rngs = nn.init.dropout_rngs(rngs)")
    if len(part.graphs) == 1:
        call = bodies[None][1]
    else:
        call = (["if self.training:"] + indent(bodies[True][1])
                + ["else:"] + indent(bodies[False][1]))
    doc = [f'    """Translated from ``{qualified_name(part.cls)}``.']
    calls = getattr(part, "exported_shapes", None)      # captured by .export: shapes per call
    if calls is not None and len(calls) == 1:
        doc += ["", "    Captured by torch.export for inputs of shapes "
                f"{', '.join(map(str, calls[0]))}:", "    shapes in it are fixed to those."]
    elif calls is not None:
        doc += ["", *textwrap.wrap(
            "Captured by torch.export for calls with inputs of shapes "
            f"{'; '.join(', '.join(map(str, c)) for c in calls)}: the dimensions in which they "
            "differ are read from the inputs, the others are fixed.", 96,
            initial_indent="    ", subsequent_indent="    ")]
    special_doc, checks = _specialisation(name, part)
    doc += special_doc
    if part.frozen:
        doc += ["", "    Python values its forward computes from its parameters and buffers are those of the",
                "    translated model:", *(f"    - {f}" for f in part.frozen)]
    doc = [doc[0] + '"""'] if len(doc) == 1 else doc + ['    """']
    call = checks + call
    lines = [f"class {name}(nn.Module):", *doc, "",
             f"    def __init__({', '.join(['self'] + init_params)}):",
             *indent(init or ["pass"], 2), "",
             f"    def __call__({', '.join(['self'] + params)}):",
             *indent(call, 2)]
    return "\n".join(lines), body.needs_rng
