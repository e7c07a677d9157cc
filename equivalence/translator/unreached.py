"""Modules that torch.fx cannot trace and the example inputs do not reach.

torch.export needs a module's call arguments, so such a module has no graph. What that means
depends on whether translated code calls it:

- **no graph calls it** (a block past a model's configured depth, a branch that the
  example's shapes rule out in an exported parent, a head the forward never uses): it is
  translated as a *stub*, a class that holds its parameters (so ``state_dict`` loads) and
  whose ``__call__`` raises, naming the module and what to do; ``translate`` warns;
- **a captured graph calls it** (a train-only branch of a traced parent, when the example
  reaches it in neither mode): the translation is refused with the same explanation.
"""
from __future__ import annotations

import inspect
import warnings

import torch
import torch.fx as fx

#: Part attribute set on a part whose module the example inputs did not reach.
UNREACHED = "unreached"

WHAT_TO_DO = ("the example inputs reach it in neither train nor eval mode, so torch.export "
              "cannot capture it either: translate with example inputs that reach it")


@fx.node.has_side_effect
def not_reached(message: str):
    """Stands, in a stub's graph, for the forward of a module the example inputs did not
    reach; the translated ``__call__`` raises ``RuntimeError(message)``."""
    raise RuntimeError(message)


def called_paths(tree) -> set:
    """Paths of the modules that run when the root does: what the graphs of modules that run
    call, and the members of containers that run."""
    parts = {p.path: p for p in tree.parts()}
    called, todo = set(), [tree.path]
    while todo:
        path = todo.pop()
        if path in called or path not in parts:
            continue
        called.add(path)
        part = parts[path]
        prefix = f"{path}." if path else ""
        for graph in part.graphs.values():
            todo += [prefix + n.target for n in graph.find_nodes(op="call_module")]
        if part.kind == "sequential":
            todo += [c.path for _, c in part.children if c is not None]
    return called


def _stub(part, message: str) -> fx.Graph:
    graph = fx.Graph()
    for p in inspect.signature(part.module.forward).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            graph.placeholder(f"{'*' if p.kind is p.VAR_POSITIONAL else '**'}{p.name}")
        else:
            graph.placeholder(p.name, default_value=inspect.Parameter.empty if p.default is p.empty else None)
    graph.call_function(not_reached, (message,))
    graph.output(None)
    return graph


def settle(tree, problems: list) -> None:
    """Give each unreached part that no graph calls a stub graph in place of its problem (a
    holder of parameters with no ``forward``, a ``ParameterList``, without a warning: torch
    raises when it is called too)."""
    called = called_paths(tree)
    for part in tree.parts():
        if not getattr(part, UNREACHED, False) or part.path in called:
            continue
        problem = next(q for q in problems if q.path == part.path)
        problems.remove(problem)
        if type(part.module).forward is torch.nn.Module.forward:
            part.graphs = {None: _stub(part, f"{problem.cls} has no forward, as in torch")}
            continue
        message = f"{part.path or '<root>'} ({problem.cls}) was not translated: {problem.what}"
        part.graphs = {None: _stub(part, message)}
        warnings.warn(f"{message}. It is translated as a stub that raises if called.", stacklevel=3)
