"""Readable Flax source for one fx graph: one assignment per node, named as fx names them
after torch's code (``conv1``, ``bn1``, ``add``, ``relu_1``).

:class:`Body` walks a graph in the shape of ``torch.fx.Interpreter``: :meth:`Body.run_node`
dispatches on ``node.op`` to one method per opcode, each taking ``(target, args, kwargs)``
with the current node in ``self.node``, and a subclass overrides only what differs::

    Body                    the __call__ of a traced module
      placeholder           a parameter of __call__ (with its default)
      get_attr              a parameter or buffer read: self.layer1[0].weight[...]
      call_module           a child's call: self.layer1[0](x)
      call_function         through the one lookup (:mod:`.dispatch`), or a call of a
                            Python function traced into (:func:`function_call`)
      call_method           through the one lookup
      output                return ...
    FunctionBody(Body)      the body of a traced-into function (:mod:`.functions`)
      get_attr              its tensor constants, defined at module level
      call_function         its branch guards, as asserts

An opcode method (or the emitter it dispatches to, :mod:`.ops`) returns the node's expression,
which is assigned to the node's local; ``None`` (no value); or :data:`.ops.BOUND`: the node's
value is bound already (by lines the emitter added with :meth:`Body.after`, or as an expression
read where it is used: a parameter, an attribute).
"""
from __future__ import annotations

import inspect
import keyword

import torch.fx as fx

from . import dispatch, functions
from .graph import Part, Problem, source_line, writes
from .leaves import qualified_name
from .ops import BOUND
from .text import (RESERVED, Header, constant_name, has_literal, identifier, indent, literal, param,
                   qualified)


def local_name(node) -> str:
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
        elif kind == "dict" or not identifier(piece):
            out += f"[{piece!r}]" if kind == "dict" else f".__dict__[{piece!r}]"
        else:
            out += f".{piece}"
    return out


class Body:
    """The emitter context of one ``__call__``: formats arguments, collects lines.

    ``calls``: the call nodes of Python functions traced into (default: ``part.functions``).
    """

    def __init__(self, part: Part, parts: dict, header: Header, problems: list, calls=None):
        self.part, self.parts, self.header, self.problems = part, parts, header, problems
        self.calls = part.functions if calls is None else calls
        self.expr: dict = {}
        self.params: list[str] = []
        self.lines: list[str] = []
        self.node = None
        self.name = ""
        self.needs_rng = False
        self._after: list[str] = []

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
        return self.header.define(name, ("=", name, text), lambda given: f"{given} = {text}")

    # --- the graph, as torch.fx.Interpreter runs one ----------------------------------------
    def run(self, graph: fx.Graph) -> tuple[list[str], list[str]]:
        """``(parameters, lines)`` of the ``__call__`` that computes ``graph``."""
        self.expr, self.params, self.lines = {}, [], []
        for node in graph.nodes:
            self.run_node(node)
        return self.params, self.lines

    def run_node(self, node: fx.Node) -> None:
        """Emit ``node`` by its opcode's method and bind its value (see the module docstring);
        a write into a buffer is stored back into it."""
        self.node, self.name, self._after = node, local_name(node), []
        value = getattr(self, node.op)(node.target, node.args, dict(node.kwargs))
        if value is BOUND:
            self.expr.setdefault(node, self.name)
        elif value is None:
            self.expr[node] = "None"
        elif value.isidentifier() and value in self.expr.values():     # an alias
            self.expr[node] = value
        else:
            self.lines.append(f"{self.name} = {value}")
            self.expr[node] = self.name
        self.lines += self._after
        if writes(node) and self.attr(node.args[0]):      # into a buffer: store the new value
            self.lines.append(f"{self.expr[node.args[0]]} = {self.name}")

    def placeholder(self, target, args, kwargs):
        self.params.append(f"{target}={self.fmt(args[0])}" if args else target)
        self.expr[self.node] = target.lstrip("*")
        return BOUND

    def get_attr(self, target, args, kwargs):
        if target.startswith("_tensor_constant"):
            self.expr[self.node] = f"self.{constant_name(target)}[...]"
            return BOUND
        owner, _, leaf = target.rpartition(".")
        owner = _path(self.parts, owner, self.part.path) if owner else "self"
        self.expr[self.node] = (f"{owner}.{leaf}[...]" if param(leaf) == leaf
                                else f"getattr({owner}, {leaf!r})[...]")
        return BOUND

    def call_module(self, target, args, kwargs):
        call = _path(self.parts, target, self.part.path)
        text = self.call(call, args, kwargs)
        if target in self.part.optional:
            return f"{self.fmt(args[0])} if {call} is None else {text}"
        return text

    def call_function(self, target, args, kwargs):
        if self.node in self.calls:
            return function_call(self, self.node, self.calls[self.node])
        return self._translated(dispatch.function(target), qualified(target), args, kwargs)

    def call_method(self, target, args, kwargs):
        return self._translated(dispatch.method(target), f"Tensor.{target}", args, kwargs)

    def output(self, target, args, kwargs):
        self.lines.append(f"return {self._output(args[0])}")
        return None

    # --- helpers ---------------------------------------------------------------------------
    def _translated(self, emitter, what: str, args, kwargs):
        """What ``emitter`` makes of the current node; a problem where there is no emitter, or
        it does not take these arguments."""
        if emitter is None:
            self._problem(f"no translation for {what}")
            return "None"
        try:
            return emitter(self, *args, **kwargs)
        except (KeyError, TypeError) as e:
            self._problem(f"no translation for {what} with these arguments ({e})")
            return "None"

    def _problem(self, what):
        self.problems.append(Problem(self.part.path, qualified_name(self.part.cls), what,
                                     source_line(self.node)))

    def _output(self, v) -> str:
        """The returned structure; dicts as ``OrderedDict``, whose key order jax keeps (under
        ``jit`` a plain dict comes back sorted by key)."""
        if isinstance(v, dict):
            name = self.imported("collections", "OrderedDict")
            if all(isinstance(k, str) and identifier(k) for k in v):
                return f"{name}({', '.join(f'{k}={self._output(x)}' for k, x in v.items())})"
            return f"{name}([{', '.join(f'({k!r}, {self._output(x)})' for k, x in v.items())}])"
        if isinstance(v, (tuple, list)) and not hasattr(v, "_fields"):
            items = [self._output(x) for x in v]
            if isinstance(v, list):
                return f"[{', '.join(items)}]"
            return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
        return self.fmt(v)


class FunctionBody(Body):
    """A traced function's body (:class:`.functions.Traced`): its nested calls, constants
    and branch guards."""

    def __init__(self, part, parts, header, problems, traced):
        super().__init__(part, parts, header, problems, calls=traced.calls)
        self.traced = traced

    def get_attr(self, target, args, kwargs):
        if target not in self.traced.constants:
            return super().get_attr(target, args, kwargs)
        value = self.traced.constants[target]
        self.expr[self.node] = self.define(f"{self.traced.fn.__name__.lstrip('_')}_{target.lstrip('_')}",
                                           f"jnp.asarray({value.tolist()!r}, {literal(value.dtype)})")
        return BOUND

    def call_function(self, target, args, kwargs):
        if target is not functions.guard:
            return super().call_function(target, args, kwargs)
        cond, expected = args
        self.after(f"assert {'' if expected else 'not '}{self.fmt(cond)}, "
                   f"'traced for the branch where {self.fmt(cond)} is {expected}'")
        return None


# --- calls of traced-into functions ----------------------------------------------------------
def function_call(e: Body, node, traced):
    """The source of ``node``, a call of ``traced.fn`` (a :class:`.functions.Traced`), in the
    body ``e``: a call of the module-level function its body becomes, asserting that the
    constants it was traced with hold; tensors it writes into are rebound after the call."""
    bound = inspect.signature(traced.fn).bind(*node.args, **node.kwargs)
    for n, value in traced.baked.items():
        arg = bound.arguments.get(n)
        if _reads_nodes(arg):
            try:
                e.after(f"assert {e.fmt(arg)} == {literal(value)}, "
                        f"'{traced.fn.__name__} was traced for {n}={literal(value)}'")
            except TypeError:       # a constant with no source form
                pass
    if traced.graph is None:
        return literal(traced.value)
    name = _function_name(e, traced)
    call = e.call(name, [bound.arguments[n] for n in traced.names], {})
    if not traced.mutated:
        return call
    targets = [e.name]
    for n in traced.mutated:
        arg = bound.arguments[n]
        rebound = f"{e.name}_{n}"
        targets.append(rebound)
        if isinstance(arg, fx.Node):
            e.expr[arg] = rebound
    e.after(f"{', '.join(targets)} = {call}")
    return BOUND


def _reads_nodes(value) -> bool:
    found = []
    fx.node.map_arg(value, found.append)
    return bool(found)


def _function_name(e: Body, traced) -> str:
    """A module-level name for ``traced``'s body: the function's own, numbered when two calls
    translate differently."""
    text = _function_source(e, traced)
    base = traced.fn.__name__.lstrip("_") or "function"
    return e.header.define(base, ("def", base, text), lambda name: text.replace("def <name>(", f"def {name}(", 1))


def _function_source(e: Body, traced) -> str:
    params, lines = FunctionBody(e.part, e.parts, e.header, e.problems, traced).run(traced.graph)
    notes = [f"{n}={literal(v)}" for n, v in traced.baked.items()
             if has_literal(v) and len(literal(v)) <= 60]
    doc = f"Translated from ``{traced.fn.__module__}.{traced.fn.__qualname__}``"
    doc += f", traced with {', '.join(notes)}." if notes else "."
    return "\n\n" + "\n".join([f"def <name>({', '.join(params)}):", f'    """{doc}"""',
                               *indent(lines)])
