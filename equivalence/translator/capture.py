"""Capture a torch model as a tree of parts, one ``torch.fx`` graph per traced module.

Each module instance is one :class:`.graph.Part`:

- a **leaf** (:mod:`.leaves`) becomes a jaxconv module whole;
- a ``Sequential`` (or a subclass inheriting its ``forward``), ``ModuleList`` or ``ModuleDict``
  becomes the jaxconv container of the same name;
- any other module is **traced**: its own ``forward`` is traced with ``torch.fx`` where every
  submodule call is a leaf ``call_module``, so each torch class yields one graph of its own
  forward and the generated source has one class per torch class.

``self.training`` is read by Python at trace time, so a traced module is traced in train and
in eval mode; where the graphs differ the source gets ``if self.training:``. A child that is
``None`` in some instances of a class and a module in others (torchvision's ``downsample``)
is traced as an identity placeholder; when that gives the graph of the instance as it is, the
instances share one class that calls the child only where it exists.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from . import callsite, functions, outline
from .concrete import Concrete, check_sources, error_line
from .export import fallback
from .graph import Part, Problem, eliminate_dead_code, signature, writes
from .leaves import Leaf, leaf_for, qualified_name
from .outputs import is_output_class
from .state import preserved
from .unreached import settle


class _Absent(torch.nn.Module):
    """Stands in for a ``None`` child while tracing; the identity."""

    def forward(self, x):
        return x


class _Tracer(Concrete, fx.Tracer):
    """Traces one module's own ``forward``: every submodule call is a ``call_module`` leaf.

    Buffers are proxies too, so that an in-place update in ``forward`` (timm's
    ``BatchNormAct2d``: ``self.num_batches_tracked.add_(1)``) is a graph node, not a change
    made to the torch module while tracing. A child that returned a tuple or list when the
    model ran on the example (``returns``: :func:`callsite.example_calls`) returns that structure
    of items of its call, so that ``attention_output, *rest = self.attention(x)`` traces.
    Python values computed from parameters and buffers are taken as they are
    (:class:`.concrete.Concrete`).
    """

    proxy_buffer_attributes = True

    def __init__(self, root, specialised=None, returns=None):
        super().__init__()
        self.record_stack_traces = True
        self._root = root
        self._specialised = specialised or {}
        self._returns = returns or {}

    def is_leaf_module(self, m, qualname):
        return m is not self._root

    def call_module(self, m, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        return callsite.structure(out, self._returns[m]) if m in self._returns else out

    def create_arg(self, a):
        """A Hugging Face ``ModelOutput`` (a dict subclass, which fx would make a plain dict)
        as a call of its class, so that the output keeps its class."""
        if is_output_class(type(a)):
            return self.create_node("call_function", type(a), (),
                                    {k: self.create_arg(v) for k, v in a.items()})
        return super().create_arg(a)

    def create_args_for_root(self, root_fn, is_module, concrete_args=None):
        root_fn = callsite.pass_through(root_fn)
        root_fn, args = super().create_args_for_root(root_fn, is_module, concrete_args)
        return root_fn, callsite.bind_arguments(root_fn, is_module, self._specialised, args)


def _kind(m) -> tuple[str, Leaf | None]:
    leaf = leaf_for(m)
    if leaf is not None:
        return "leaf", leaf
    if isinstance(m, torch.nn.Sequential) and type(m).forward is torch.nn.Sequential.forward:
        return "sequential", None
    own_forward = type(m).forward is not torch.nn.Module.forward
    if isinstance(m, torch.nn.ModuleList) and not own_forward:
        return "list", None
    if isinstance(m, torch.nn.ModuleDict) and not own_forward:
        return "dict", None
    return "traced", None


def _tree(m, path: str, seen: dict) -> Part:
    """The part of ``m`` at ``path``, and below it; ``seen``: the parts made so far, by module.
    A module met again is not captured again: ``path`` becomes an alias of its part (and the
    paths below it aliases of its children's parts)."""
    part = seen.get(m)
    if part is not None:
        if any(path.startswith(f"{p}.") for p in part.paths):     # a module inside itself
            return part
        part.aliases.append(path)
    else:
        part = seen[m] = Part(path, m, *_kind(m))
    if part.kind != "leaf":
        for name, child in m._modules.items():
            if child is not None:
                child_part = _tree(child, f"{path}.{name}" if path else name, seen)
                if path == part.path:
                    part.children.append((name, child_part))
    return part


def _trace_order(traced: list) -> list:
    """``traced`` (depth first) reordered so that every part comes after the parts that call
    it by any of its paths: their graphs give its call sites (:func:`callsite.specialise`)."""
    at = {path: p for p in traced for path in p.paths}
    order, done = [], set()

    def visit(part):
        if part in done:
            return
        done.add(part)
        for path in part.paths:
            pieces = path.split(".")
            for k in range(len(pieces)):
                caller = at.get(".".join(pieces[:k]))
                if caller is not None:
                    visit(caller)
        order.append(part)

    for p in traced:
        visit(p)
    return order


def _trace(m, mode: bool, absent: tuple[str, ...], specialised=None, returns=None):
    """``(graph, tensor constants, frozen values)`` of ``m.forward`` traced in train
    (``mode``) or eval mode, ``absent`` children as identities, ``specialised`` arguments
    bound and children's results of the structure they ``returns`` (:mod:`.callsite`)."""
    registered = {name: name in m._modules for name in absent}
    for name in absent:
        if not registered[name]:
            object.__delattr__(m, name)
        m.add_module(name, _Absent())
    try:
        with preserved(m, values=False):
            m.train(mode)
            tracer = _Tracer(m, specialised, returns)
            graph = tracer.trace(m)
        check_sources(tracer, graph, lambda n: n.op != "call_module" and writes(n))
        parked = {n.target: getattr(m, n.target) for n in graph.find_nodes(op="get_attr")
                  if n.target.startswith("_tensor_constant")}
        for name in parked:         # fx parks tensors made in forward on the root: take them back
            delattr(m, name)
        for node in graph.find_nodes(op="call_function", target=torch._assert):
            graph.erase_node(node)
        eliminate_dead_code(graph, m)   # what only the asserts read, items of results not read, ...
        constants = {n.target: parked[n.target] for n in graph.find_nodes(op="get_attr")
                     if n.target in parked}
        return graph, constants, getattr(tracer, "frozen", [])
    finally:
        for name in absent:
            m._modules[name] = None
            if not registered[name]:
                del m._modules[name]
                object.__setattr__(m, name, None)


def _absent_nodes(graph, names):
    return frozenset(n for n in graph.find_nodes(op="call_module") if n.target in names
                     and n.args and isinstance(n.args[0], fx.Node))


def _one_convention(part: Part, sites: callsite.Sites, problems: list) -> bool:
    """Whether ``part``'s call sites agree on the constants they pass, so that a graph captured
    from one call (torch.export's) computes every call; where not, its problem says which
    arguments differ (a shared module called with ``flag=True`` by one parent, ``False`` by
    another)."""
    per_call = [callsite.specialise(part.module, [c]) for c in sites.of(part, example=False)]
    values = {k: [s.get(k, callsite.TENSOR) for s in per_call] for s in per_call for k in s}
    differ = {k: v for k, v in values.items() if any(type(x) is not type(v[0]) or x != v[0] for x in v)}
    if not differ:
        return True
    old = next(q for q in problems if q.path == part.path)
    text = "; ".join(f"{k} is {' or '.join(dict.fromkeys(map(repr, v)))}" for k, v in differ.items())
    problems[problems.index(old)] = Problem(
        old.path, old.cls, f"{old.what}; its call sites pass different constants ({text}), so "
        "no one graph captured from a call computes them all", old.line)
    return False


def _trace_part(part: Part, optional: frozenset, problems: list, sites: callsite.Sites) -> frozenset:
    """Trace ``part`` in both modes; returns the ``optional`` children it was traced without.
    ``sites``: the call sites known so far (:class:`callsite.Sites`), this part's added."""
    m = part.module
    absent = tuple(sorted(n for n in optional if getattr(m, n, 0) is None))
    specialised = callsite.specialise(m, sites.of(part))
    part.specialised = callsite.constants(specialised)
    try:
        graphs = {}
        for mode in (True, False):
            graph, part.constants, frozen = _trace(m, mode, absent, specialised, sites.returns)
            if absent:
                plain, _, plain_frozen = _trace(m, mode, (), specialised, sites.returns)
                if signature(graph, _absent_nodes(graph, absent)) != signature(plain):
                    graph, absent, frozen = plain, (), plain_frozen
            part.frozen += [f for f in frozen if f not in part.frozen]
            sites.record(part.path, graph)
            graphs[mode] = graph
    except Exception as e:  # noqa: BLE001 - any trace failure is reported with the module
        problems.append(Problem(part.path, qualified_name(type(m)),
                                f"torch.fx cannot trace its forward: {type(e).__name__}: {e}".strip(),
                                error_line(e)))
        part.frozen = []
        return frozenset()
    order = list(m._modules)
    part.children += [(name, None) for name in absent]
    part.children.sort(key=lambda c: order.index(c[0]) if c[0] in order else len(order))
    train, eval_ = graphs[True], graphs[False]
    part.graphs = {None: train} if signature(train) == signature(eval_) else {True: train, False: eval_}
    return frozenset(absent)


def capture(root: torch.nn.Module, example_inputs=()) -> tuple[Part, list[Problem]]:
    """The part tree of ``root`` and the problems met while tracing (none when all traced).

    Every traced forward is specialised to how it is called (:mod:`.callsite`): the root to
    ``example_inputs`` (the arguments they do not pass take their defaults), each other
    module to its call sites. Modules that fx cannot trace are captured with
    ``torch.export`` on the arguments they get when ``root`` runs on ``example_inputs``
    (:mod:`.export`).
    Calls of plain Python functions (``torch.fx.wrap``-ed) are traced into
    (:mod:`.functions`), which needs ``example_inputs`` to run ``root`` on.
    """
    tree = _tree(root, "", {})
    traced = _trace_order([p for p in tree.parts() if p.kind == "traced"])
    present: dict[type, set] = {}
    for p in traced:
        present.setdefault(p.cls, set()).update(n for n, _ in p.children)
    problems: list[Problem] = []
    optional: dict[type, frozenset] = {}
    sites = callsite.Sites({path: p for p in tree.parts() for path in p.paths},
                           callsite.site(example_inputs) if example_inputs else callsite.REQUIRED,
                           callsite.example_calls(root, example_inputs))
    for p in traced:
        optional[p.cls] = (optional.get(p.cls, frozenset())
                           | _trace_part(p, frozenset(present[p.cls]), problems, sites))
    for p in traced:    # a graph that is not what torch ran (a wrapper or hooks): export it
        if why := outline.disagreement(p, sites.example):
            problems.append(Problem(p.path, qualified_name(p.cls), why))
            p.graphs, p.constants, p.frozen = {}, {}, []
            sites.forget(p.path)
    failed = [p for p in traced if not p.graphs and _one_convention(p, sites, problems)]
    if failed:
        fallback(root, failed, example_inputs, problems)
        settle(tree, problems)
    for p in traced:
        p.optional = optional[p.cls]
    functions.attach(tree, traced, tuple(example_inputs), problems)
    return tree, problems
