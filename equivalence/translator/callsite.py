"""Specialise a traced module's ``forward`` to how it is called.

``torch.fx`` makes every argument a proxy, so a forward that branches on a flag argument
(timm's ``ClassifierHead.forward(x, pre_logits=False)``: ``if pre_logits:``), tests an
optional one (``if attn_mask is not None:``), or unpacks or appends to a list argument
(timm's ``DlaTree``, HRNet's stages) cannot be traced on its own, or traces the wrong branch.
How the module is called says what its arguments are, though:

- a module that a traced graph calls: the ``call_module`` node holds constants (``None``,
  flags, numbers) and lists of tensors as they are (:meth:`Sites.record`);
- an item of a ``Sequential``: the first gets what the ``Sequential`` gets, each other one
  what the item before it returns (the output structure of its graph);
- the root: the example inputs (or, without them, its required parameters alone).

A module is therefore traced with

- each argument its call sites pass as the same constant, and each one they leave to a
  constant default, bound to that value (the graph is the branch that runs);
- each argument passed as a list or tuple of tensors (nested) bound to that structure of
  items of a placeholder ``a`` (``[a[0], (a[1][0], a[1][1])]``), so Python's list operations
  and ``isinstance`` run at trace time;
- the rest as placeholders, as usual.

The placeholders stay in the signature, so the generated ``__call__`` takes the arguments its
caller passes; the constants it was specialised to are checked there (:func:`constants`).
"""
from __future__ import annotations

import inspect

import torch
import torch.fx as fx

from .outline import outline
from .state import record_calls

_CONSTANTS = (type(None), bool, int, float, str)


class _Tensor:
    """A call-site argument that is a tensor (a graph node)."""

    def __repr__(self):
        return "<tensor>"


TENSOR = _Tensor()


class TensorList(tuple):
    """A call-site argument (or a result) that is a list of tensors (or of such structures,
    or ``None``), item by item."""

    kind = list

    def __repr__(self):
        return f"{type(self).__name__}{tuple.__repr__(self)}"


class TensorTuple(TensorList):
    """A call-site argument that is a tuple of tensors (or of such structures)."""

    kind = tuple


def pattern_of(value):
    """What a call passes or returns: ``TENSOR`` for a tensor (or a graph node), a
    :class:`TensorList` for a list or tuple of them (and ``None``), the value itself for a
    constant."""
    if isinstance(value, (fx.Node, torch.Tensor)):
        return TENSOR
    if isinstance(value, (list, tuple)) and value and not hasattr(value, "_fields"):
        items = tuple(pattern_of(v) for v in value)
        if (all(i is TENSOR or i is None or isinstance(i, TensorList) for i in items)
                and any(i is not None for i in items)):
            return (TensorList if isinstance(value, list) else TensorTuple)(items)
    if isinstance(value, _CONSTANTS):
        return value
    return TENSOR       # anything else is left to a placeholder


class Number:
    """A number the example passed (a shape, perhaps): it agrees with a call site that passes
    the same constant, and does not make one of its own."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"<number {self.value!r}>"

    @classmethod
    def of(cls, pattern):
        """``pattern``, a number as a :class:`Number`."""
        return cls(pattern) if isinstance(pattern, (int, float)) and not isinstance(pattern, bool) else pattern


def site(args, kwargs=None):
    """The call site of a call with these ``args`` / ``kwargs`` (graph nodes or values)."""
    return (tuple(pattern_of(a) for a in args),
            tuple((k, pattern_of(v)) for k, v in (kwargs or {}).items()))


#: How a module is called when nothing says otherwise: with one tensor.
DEFAULT_SITE = ((TENSOR,), ())
#: The root called without example inputs: with its required parameters alone.
REQUIRED = None


def example_calls(root, example_inputs) -> dict:
    """``{module: [(site, output pattern, (args, kwargs) outline, output outline), ...]}``:
    each call of each module of ``root`` when it ran on ``example_inputs``
    (:func:`.state.record_calls`): its :func:`site`, the :func:`pattern_of` what it returned,
    and the :func:`.outline.outline` of both (its arguments as ``(args, {name: kwarg})``), for
    :mod:`.outline`'s check of traced graphs;
    nothing without them, or when the run fails (the export fallback reports that)."""
    if not example_inputs:
        return {}
    try:
        calls = record_calls(root, example_inputs, list(root.modules()), _inputs,
                             lambda value: (pattern_of(value), outline(value)))
    except Exception:  # noqa: BLE001 - tracing does not need the run
        return {}
    return {m: [(s, p, args, out) for (s, args), (p, out) in results] for m, results in calls.items()}


def _inputs(args, kwargs):
    return site(args, kwargs), (outline(args), {k: outline(v) for k, v in kwargs.items()})


def pass_through(fn):
    """``fn`` without the ``(self, *args, **kwargs)`` wrappers of libraries other than torch
    (Hugging Face's gradient-checkpointing ``forward``), which fx's argument patching breaks;
    torch's own (``torch.no_grad()`` as a decorator) stay."""
    while (hasattr(fn, "__wrapped__") and not (fn.__module__ or "").startswith("torch")
           and fn.__code__.co_flags & inspect.CO_VARARGS and fn.__code__.co_flags & inspect.CO_VARKEYWORDS):
        fn = fn.__wrapped__
    return fn


class Sites:
    """The call sites of every module of a part tree, learnt as its parts are traced."""

    def __init__(self, parts: dict, root_site=REQUIRED, calls=None):
        self.parts = parts                      # path (each of a shared module's) -> graph.Part
        self.calls: dict[str, dict] = {}        # path -> {caller path: {repr(site): site}}, from graphs
        self.outputs: dict[str, object] = {}    # path -> pattern of what its graph returns
        self.root = root_site
        self.example = calls or {}              # module -> its calls in the example (example_calls)
        self.returns = {m: cs[0][1] for m, cs in self.example.items() if _same([c[1] for c in cs])}

    def record(self, path: str, graph) -> None:
        """Add the call sites in ``graph`` (the forward of the module at ``path``), and what
        the graph returns."""
        for node in graph.find_nodes(op="call_module"):
            child = f"{path}.{node.target}" if path else node.target
            call = site(node.args, node.kwargs)
            self.calls.setdefault(child, {}).setdefault(path, {})[repr(call)] = call
        self.outputs[path] = pattern_of(graph.output_node().args[0])

    def forget(self, path: str) -> None:
        """Drop what the graphs of the module at ``path`` said (they were found wrong)."""
        self.outputs.pop(path, None)
        for callers in self.calls.values():
            callers.pop(path, None)

    def of(self, part, example: bool = True) -> list:
        """The call sites of ``part`` (a ``graph.Part``) by all its paths (a shared module
        has several) and, with ``example``, its calls when the model ran on the example
        inputs (their numbers as :class:`Number`: they may be shapes): ``REQUIRED`` for a root
        called without example inputs, ``DEFAULT_SITE`` where nothing says how it is called."""
        found = {repr(s): s for path in part.paths for s in self._at(path)}
        for call in self.example.get(part.module, ()) if example else ():
            args, kwargs = (tuple(map(Number.of, call[0][0])), tuple((k, Number.of(v)) for k, v in call[0][1]))
            found[repr((args, kwargs))] = (args, kwargs)
        return list(found.values()) or [DEFAULT_SITE]

    def _at(self, path: str) -> list:
        """The call sites through ``path``: those its caller's graph records; for an item of
        a ``Sequential``, what the ``Sequential`` passes it; for the root, the example's; none
        where ``path`` is not called through (a module its parent's forward never calls)."""
        if any(self.calls.get(path, {}).values()):
            return [s for sites in self.calls[path].values() for s in sites.values()]
        if not path:
            return [self.root]
        parent, _, name = path.rpartition(".")
        container = self.parts.get(parent)
        if container is None or container.kind != "sequential":
            return []
        names = [n for n, c in container.children if c is not None]
        i = names.index(name)
        if i == 0:
            return self._at(parent)
        out = self.output(f"{parent}.{names[i - 1]}" if parent else names[i - 1])
        return [((out,), ())] if out is not None else [DEFAULT_SITE]

    def output(self, path: str):
        """The pattern of what the module at ``path`` returns, or ``None`` if not known."""
        part = self.parts[path]
        if part.kind == "traced" and part.path in self.outputs:
            return self.outputs[part.path]
        if part.kind != "sequential":
            return self.returns.get(part.module)
        names = [n for n, c in part.children if c is not None]
        if names:
            return self.output(f"{part.path}.{names[-1]}" if part.path else names[-1])
        calls = self.of(part)
        return calls[0][0][0] if len(calls) == 1 and calls[0] and len(calls[0][0]) == 1 else None


def _same(values):
    first = values[0]
    return all(type(v) is type(first) and v == first for v in values[1:])


def specialise(module, calls) -> dict:
    """``{parameter: value}`` to bind while tracing ``module.forward`` for the call sites
    ``calls`` (:meth:`Sites.of`).

    ``value`` is a constant or a :class:`TensorList`; parameters not named stay placeholders.
    A ``**kwargs`` parameter that every call passes the same constants to (Hugging Face's
    ``output_hidden_states=True``, passed down the model) is bound to them, ``{}`` where no
    call passes anything (named ``'**kwargs'``); with ``*args``, nothing is specialised.
    """
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return {}
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values()):
        return {}
    var = next((p.name for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD), None)
    seen: dict[str, list] = {p.name: [] for p in params}
    passed = set()      # what the calls pass to **var, each as sorted items
    for call in calls:
        try:
            bound = sig.bind_partial() if call is REQUIRED else sig.bind(*call[0], **dict(call[1]))
        except TypeError:
            return {}
        passed.add(repr(sorted(bound.arguments.get(var, {}).items())))
        if not all(isinstance(v, _CONSTANTS) for v in bound.arguments.get(var, {}).values()):
            var = None      # a call passes tensors to it: it stays a placeholder
        for p in params:
            if p.name in bound.arguments:
                seen[p.name].append(bound.arguments[p.name])
            elif p.default is not p.empty:
                seen[p.name].append(pattern_of(p.default))
            else:
                seen[p.name].append(TENSOR)
    out = {}
    for name, values in seen.items():
        numbers = [v.value for v in values if isinstance(v, Number)]
        values = [v for v in values if not isinstance(v, Number)]
        if not values or not _same(values + numbers) or values[0] is TENSOR:
            continue
        if isinstance(values[0], (TensorList, *_CONSTANTS)):
            out[name] = values[0]
    if var is not None and len(passed) <= 1:
        out[f"**{var}"] = dict(bound.arguments.get(var, {})) if calls else {}
    return out


def constants(specialised: dict) -> dict:
    """The parameters of ``specialised`` bound to constants (not to lists of tensors): the
    generated ``__call__`` checks that it is called with these values."""
    return {k: v for k, v in specialised.items() if not isinstance(v, TensorList)}


def called_with(module, args, kwargs) -> dict:
    """:func:`constants` for a module captured on one call with these values (torch.export
    specialises every argument that is not a tensor)."""
    return constants(specialise(module, [site(args, kwargs)]))


def structure(proxy, pattern):
    """``pattern``'s structure built from items of ``proxy``: ``[a[0], (a[1][0], a[1][1])]``
    (``None`` where the pattern has ``None``)."""
    if pattern is None:
        return None
    if not isinstance(pattern, TensorList):
        return proxy
    return pattern.kind(structure(proxy[k], item) for k, item in enumerate(pattern))


def bind_arguments(root_fn, is_module: bool, specialised: dict, args: list):
    """Replace the placeholder proxies in ``args`` (from ``create_args_for_root``) of the
    ``specialised`` parameters by their values; the placeholders stay, unused."""
    if not specialised:
        return args
    code = inspect.unwrap(root_fn).__code__
    names = list(code.co_varnames[int(is_module):code.co_argcount + code.co_kwonlyargcount])
    offset = int(is_module)
    args = list(args)
    for name, value in specialised.items():
        if name.startswith("**"):
            args[-1] = value            # the ``**kwargs`` placeholder comes last
            continue
        if name not in names:
            continue
        i = offset + names.index(name)
        args[i] = structure(args[i], value) if isinstance(value, TensorList) else value
    return args
