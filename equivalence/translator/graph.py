"""The data the translator's phases pass along: parts, problems, and facts about fx graphs.

The bottom of the translator; it imports no other phase.

- :class:`Part`: one torch module instance and its graphs (made by :mod:`.capture`);
- :class:`Problem`: something without a translation, with its source line (:func:`source_line`);
- :func:`signature`: a graph's structure as text, to tell graphs (and classes) apart;
- :func:`writes`: the one in-place predicate (``x.add_(y)``, ``inplace=True``, ATen ``copy_``);
  :func:`rebind_in_place` and :func:`eliminate_dead_code` are built on it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
import torch.fx as fx


@dataclass(eq=False)
class Part:
    """One torch module instance and how it is translated.

    A module object reachable by several paths (one positional encoding called by every block
    of a stage, or one module registered under two names) is one part: ``path`` is its first
    path, the name torch's ``named_modules()`` gives it, and ``aliases`` its others.
    """

    path: str
    module: torch.nn.Module
    kind: str                      # 'leaf' | 'sequential' | 'list' | 'dict' | 'traced'
    leaf: object = None            # leaves.Leaf of a leaf part
    children: list = field(default_factory=list)   # (name, Part | None): None = absent here
    graphs: dict = field(default_factory=dict)      # mode -> fx.Graph; one key when modes agree
    optional: frozenset = frozenset()               # children that may be None in this class
    constants: dict = field(default_factory=dict)   # fx tensor constants: name -> tensor
    functions: dict = field(default_factory=dict)   # call node -> functions.Traced
    aliases: list = field(default_factory=list)     # further paths of a shared module
    specialised: dict = field(default_factory=dict)  # parameter -> the constant it is traced for
    frozen: list = field(default_factory=list)      # Python values read from its state (.concrete)

    @property
    def cls(self):
        return type(self.module)

    @property
    def paths(self) -> list[str]:
        """Every path of this module: ``path``, then the ``aliases``."""
        return [self.path, *self.aliases]

    def parts(self, _seen=None):
        """This part and every part below it, depth first, each once (a shared one where
        its first path reaches it)."""
        _seen = set() if _seen is None else _seen
        if self in _seen:
            return
        _seen.add(self)
        yield self
        for _, child in self.children:
            if child is not None:
                yield from child.parts(_seen)


@dataclass(frozen=True)
class Problem:
    """Something with no translation: where (module path and class), what, and the source line."""

    path: str
    cls: str
    what: str
    line: str = ""

    def __str__(self):
        where = f"{self.path or '<root>'} ({self.cls})"
        return f"{where}: {self.what}" + (f"\n      at {self.line}" if self.line else "")


_TRACER_FILES = ("/torch/fx/", "/torch/overrides.py", "/torch/_tensor.py", "/torch/_jit_internal.py",
                 "/equivalence/translator/")


def source_line(node) -> str:
    """``file:line  code`` of the user code that made ``node`` (fx frames skipped)."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in \S+\n\s*(.*)', node.meta.get("stack_trace") or "")
    for file, line, code in reversed(frames):
        if not any(skip in file.replace("\\", "/") for skip in _TRACER_FILES):
            return f"{file}:{line}  {code.strip()}"
    return ""


# --- writes in place -----------------------------------------------------------------------
def in_place_method(name: str) -> bool:
    """Whether Tensor method ``name`` writes into its tensor (``add_``, ``relu_``; not ``__add__``)."""
    return name.endswith("_") and not name.endswith("__")


def _schema_writes(target) -> bool:
    if not isinstance(target, torch._ops.OpOverload):
        return False
    args = target._schema.arguments
    return bool(args) and args[0].alias_info is not None and args[0].alias_info.is_write


def writes(node: fx.Node, module=None) -> bool:
    """Whether ``node`` writes into its first argument, as torch runs it.

    That is: a Tensor method ``name_`` (``x.add_(y)``); a function called with ``inplace=True``
    (``F.relu(x, inplace=True)``); an ATen overload whose schema writes its first argument
    (``aten.add_.Tensor``, ``aten.copy_.default``); with ``module`` (the module whose forward
    the graph is), a call of a child built with ``inplace=True`` (``nn.ReLU(inplace=True)``).
    """
    if node.op == "call_method":
        return in_place_method(node.target)
    if node.op == "call_function":
        return node.kwargs.get("inplace") is True or _schema_writes(node.target)
    if node.op == "call_module" and module is not None:
        try:
            return getattr(module.get_submodule(node.target), "inplace", False) is True
        except AttributeError:      # an absent optional child
            return False
    return False


def rebind_in_place(graph: fx.Graph, module=None) -> None:
    """After an in-place op, later readers of its tensor read the op's result, as in torch.
    ``module``: the module whose forward ``graph`` is (for its children's ``inplace``)."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        if node.args and isinstance(node.args[0], fx.Node) and writes(node, module):
            src = node.args[0]
            src.replace_all_uses_with(node, delete_user_cb=lambda u: order[u] > order[node])


# --- dead code ------------------------------------------------------------------------------
def impure(node: fx.Node, module=None) -> bool:
    """What dead-code elimination keeps: what fx's ``Node.is_impure`` keeps (placeholders, the
    output, asserts, ``operator.setitem``, random draws, functions marked with
    ``torch.fx.node.has_side_effect``), every call of a child (a child may change its state:
    BatchNorm's statistics) and every write (:func:`writes`)."""
    return node.op == "call_module" or writes(node, module) or node.is_impure()


def eliminate_dead_code(graph: fx.Graph, module=None) -> None:
    """``graph.eliminate_dead_code`` with :func:`impure`: nodes nothing reads are removed (shape
    pieces a forward unpacked and never used, a condition whose assert was dropped)."""
    graph.eliminate_dead_code(is_impure_node=lambda node: impure(node, module))


# --- structure ------------------------------------------------------------------------------
def _key(value, index):
    if isinstance(value, fx.Node):
        return ("%", index.get(value, value.name))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, *(_key(v, index) for v in value))
    if isinstance(value, dict):
        return ("dict", *((k, _key(v, index)) for k, v in value.items()))
    if isinstance(value, slice):
        return ("slice", _key(value.start, index), _key(value.stop, index), _key(value.step, index))
    return (type(value).__name__, repr(value))


def _target(node):
    t = node.target
    return t if isinstance(t, str) else f"{getattr(t, '__module__', '')}.{getattr(t, '__qualname__', repr(t))}"


def signature(graph: fx.Graph, collapse=frozenset()) -> str:
    """A graph's structure as text: equal for graphs that compute the same thing the same way.

    Nodes in ``collapse`` (single-input identities) are skipped, their users reading the input.
    """
    index, rows = {}, []
    for node in graph.nodes:
        if node in collapse:
            index[node] = index.get(node.args[0], node.args[0].name)
            continue
        index[node] = len(rows)
        rows.append((node.op, _target(node), _key(node.args, index), _key(node.kwargs, index)))
    return repr(rows)
