"""The fallback capture: ``torch.export`` where ``torch.fx`` cannot trace a module's own forward.

Python control flow on shapes (Hugging Face's channel checks, timm's ``Conv2dSame`` padding
from ``x.shape``) stops ``torch.fx``; ``torch.export.export(module, args, kwargs, strict=False)``
runs that Python on example values instead. Export needs the module's call arguments, so the
model is run once on the user's example inputs, recording the calls of every module that
failed (:func:`.state.record_calls`: eval mode, ``torch.no_grad``, the model's state restored
afterwards). Each failed module is then exported on its own, in train and in eval
mode (:mod:`.program`), and its graph becomes the part's graph in the same form as an fx graph:

- the graph is the **pre-decomposition** ATen graph (``run_decompositions`` would rewrite
  ``silu`` as ``x * sigmoid(x)`` and ``linear`` as ``addmm``, changing bits): its
  ``call_function`` targets are ATen overloads, translated by :mod:`.aten`. Where the
  module's own code writes in place (``x += y``, ``x[:, 1:] = y``), torch's functionalisation
  (``run_decompositions`` with an empty table) rewrites the writes into their functional
  forms (``add``, ``slice_scatter``), so that every later reader of the tensor, or of a view
  into it, reads the new value; a write into a buffer becomes one ``copy_`` into it;
- every direct child (items of a ``ModuleList``) is exported with its call signature preserved
  and :func:`torch.export.unflatten` folds its ops back into one ``call_module``, so leaves keep
  their jaxconv twins and children keep their own classes (a module that the example inputs
  do not reach: :mod:`.unreached`);
- the pytree plumbing that unflatten inserts (``tree_unflatten``, ``tree_flatten_spec`` and
  the ``getitem`` on them) is evaluated here, leaving indexing on real values only;
- the ``__call__`` takes the parameters of the torch ``forward`` (non-tensor arguments keep
  their defaults and are specialised to the recorded values), and the output keeps its
  structure: a Hugging Face ``ModelOutput`` becomes a call of its class (:mod:`.aten`).

Export specialises shapes to the example input (``sym_size`` nodes, where export keeps them,
become ``x.shape[i]``); the generated class docstring says so.
"""
from __future__ import annotations

import inspect
import operator
import warnings

import torch
import torch.fx as fx
from torch.fx import _pytree as fx_pytree
from torch.utils import _pytree as pytree

from . import callsite, program, unreached
from .graph import Problem, eliminate_dead_code, signature
from .state import preserved, record_calls
from .text import has_literal

#: Part attribute that marks a part whose graphs came from torch.export (read by emit/aten).
EXPORTED = "exported_shapes"
HINT = ("pass example inputs (translate(model, x)) to enable the torch.export fallback")


class _Struct:
    """A pytree node of a class other than tuple/list/dict (a ``ModelOutput``), not yet a node."""

    def __init__(self, cls, keys, values):
        self.cls, self.keys, self.values = cls, list(keys), list(values)

    def item(self, key):
        return self.values[key] if isinstance(key, int) else self.values[self.keys.index(key)]


# --- export and the graph rewrite -----------------------------------------------------------
def _unflatten(spec, leaves):
    if spec.is_leaf():
        return next(leaves)
    children = [_unflatten(c, leaves) for c in spec.children()]
    if spec.type in (tuple, list):
        return spec.type(children)
    if spec.type is dict:
        return dict(zip(spec.context, children))
    if spec.type is type(None):
        return None
    keys = getattr(spec.type, "_fields", None) or spec.context
    return _Struct(spec.type, keys, children)


class _Rewrite(fx.Interpreter):
    """Copies an unflattened export graph into a plain graph, as ``torch.fx.Interpreter`` runs
    one: the "values" of its nodes are nodes of the new graph (or structures of them). The
    pytree plumbing that unflatten inserts is evaluated; a ``torch.no_grad()`` or
    ``torch.autocast`` region (a higher-order op calling a body graph) is copied in place by a
    rewrite of its body into the same graph (:meth:`inline`)."""

    def __init__(self, module, unflat, params=(), graph=None, constants=None):
        super().__init__(unflat, garbage_collect_values=False)
        self.extra_traceback = False        # failures are reported as they are
        self.owner, self.params = module, params
        self.out = fx.Graph() if graph is None else graph
        self.constants = {} if constants is None else constants

    # --- the graph, node by node ---------------------------------------------------------
    def run_node(self, n):
        self.node = n
        return super().run_node(n)

    def get_attr(self, target, args, kwargs):
        obj = self.fetch_attr(target)
        if isinstance(obj, (pytree.TreeSpec, torch.nn.Module)):    # a region's body: see inline
            return obj
        try:
            real = self.owner.get_parameter(target)
        except AttributeError:
            try:
                real = self.owner.get_buffer(target)
            except AttributeError:
                real = None
        if real is not None:
            return self.out.get_attr(target)
        name = f"_tensor_constant{len(self.constants)}"
        self.constants[name] = obj.detach().clone() if isinstance(obj, torch.Tensor) else obj
        return self.out.get_attr(name)

    def call_function(self, target, args, kwargs):
        if target is pytree.tree_unflatten:
            leaves, spec = args
            return _unflatten(spec, iter(leaves))
        if target is fx_pytree.tree_flatten_spec:
            v, spec = args
            return self.flatten(v, spec)
        if target is operator.getitem and not isinstance(args[0], fx.Node):
            return self.index(*args)
        if isinstance(target, torch._ops.HigherOrderOperator):
            return self.inline(target, args)
        return self.copy(args, kwargs)

    def call_method(self, target, args, kwargs):
        return self.copy(args, kwargs)

    def call_module(self, target, args, kwargs):
        return self.copy(args, kwargs)

    # --- helpers ---------------------------------------------------------------------------
    def node_of(self, v):
        """``v`` as graph values: structures made into calls of their class."""
        if isinstance(v, _Struct):
            items = [self.node_of(x) for x in v.values]
            if hasattr(v.cls, "_fields"):
                return self.out.create_node("call_function", v.cls, tuple(items), {}, "result")
            return self.out.create_node("call_function", v.cls, (), dict(zip(v.keys, items)), "result")
        if isinstance(v, (tuple, list)):
            return type(v)(self.node_of(x) for x in v)
        if isinstance(v, dict):
            return {k: self.node_of(x) for k, x in v.items()}
        return v

    def index(self, v, key):
        if isinstance(v, _Struct):
            return v.item(key)
        if isinstance(v, (tuple, list, dict)):
            return v[key]
        name = key if isinstance(key, str) and key.isidentifier() else None
        return self.out.create_node("call_function", operator.getitem, (v, key), {}, name)

    def flatten(self, v, spec) -> list:
        if spec.is_leaf():
            return [v]
        children = spec.children()
        keyed = isinstance(spec.context, list) and not hasattr(spec.type, "_fields")    # dicts, ModelOutput
        keys = spec.context if keyed else range(len(children))
        return [leaf for k, c in zip(keys, children) for leaf in self.flatten(self.index(v, k), c)]

    def copy(self, args, kwargs):
        """The current node, copied with its arguments' values."""
        node = self.node
        new = self.out.create_node(node.op, node.target, self.node_of(args), self.node_of(kwargs), node.name)
        new.meta = dict(node.meta)
        return new

    def inline(self, target, args):
        """A region of ``forward`` copied in place, as a tuple of its outputs; those of a
        no-grad region are detached."""
        name = target.name()
        if name == "wrap_with_set_grad_enabled":
            enabled, body, *inputs = args
        elif name == "wrap_with_autocast":
            enabled, body, inputs = True, args[4], list(args[5:])
        else:
            raise NotImplementedError(f"torch.export's {name} (a higher-order op) has no translation")
        region = _Rewrite(self.owner, body, graph=self.out, constants=self.constants)
        outputs = region.run(*inputs, enable_io_processing=False)
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        if not enabled:
            outputs = [self.out.call_method("detach", (o,)) if isinstance(o, fx.Node) else o
                       for o in outputs]
        return tuple(outputs)

    def rewrite(self, in_spec, out_spec, n_args):
        """``(graph, constants)``: the graph whose placeholders are the parameters of the
        torch ``forward`` (``params``; ``n_args`` of them passed by position in the exported
        call, ``in_spec`` / ``out_spec`` the call's pytree specs)."""
        holders = {}
        for name, default in self.params:
            holders[name] = self.out.placeholder(name, default_value=default)
        positional = tuple(holders[n] for n, _ in self.params[:n_args] if not n.startswith("*"))
        args_spec, kwargs_spec = in_spec.children()
        if len(positional) < len(args_spec.children()):     # a *args forward
            star = next(holders[n] for n, _ in self.params if n.startswith("*") and not n.startswith("**"))
            positional = positional + tuple(self.index(star, i) for i in range(len(args_spec.children()) - len(positional)))
        star = next((holders[n] for n, _ in self.params if n.startswith("**")), None)
        kwargs = {k: holders[k] if k in holders else self.index(star, k) for k in kwargs_spec.context}
        outs = self.run(*self.flatten((positional, kwargs), in_spec), enable_io_processing=False)
        result = _unflatten(out_spec, iter(outs if isinstance(outs, (tuple, list)) else (outs,)))
        self.out.output(self.node_of(result))
        eliminate_dead_code(self.out, self.owner)     # the plumbing's unused reads
        return self.out, self.constants


def _literal_default(v):
    return v if has_literal(v) else None


def _parameters(m, args):
    """``(name, default)`` for each parameter of ``m.forward``, ``*``/``**`` kept in the name."""
    out, defaulted = [], False
    for p in inspect.signature(m.forward).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            out.append((f"*{p.name}", inspect.Parameter.empty))
            defaulted = False           # keyword-only from here: no default needed
        elif p.kind is p.VAR_KEYWORD:
            out.append((f"**{p.name}", inspect.Parameter.empty))
        elif p.default is not p.empty or defaulted:     # a keyword-only one after defaults
            out.append((p.name, None if p.default is p.empty else _literal_default(p.default)))
            defaulted = True
        else:
            out.append((p.name, inspect.Parameter.empty))
    return out


def dynamic_shapes(m, calls):
    """torch.export's ``dynamic_shapes`` for ``m`` called as ``calls`` (``(args, kwargs)``
    pairs): ``Dim.AUTO`` on each dimension in which the calls' tensors differ (a module applied
    at several resolutions); ``None`` where they agree, or differ in structure."""
    try:
        sig = inspect.signature(m.forward)
        bound = [sig.bind(*a, **k).arguments for a, k in calls]
        names = list(bound[0])
        values = [[b[n] for n in names] for b in bound]
        if any(list(b) != names for b in bound):
            return None

        def spec(*tensors):
            if not isinstance(tensors[0], torch.Tensor):
                return None
            dims = {i: torch.export.Dim.AUTO for i in range(tensors[0].dim())
                    if len({t.shape[i] for t in tensors}) > 1}
            return dims or None

        specs = pytree.tree_map(spec, *values)
    except (TypeError, ValueError):
        return None
    if all(v is None for v in pytree.tree_leaves(specs, is_leaf=lambda v: v is None or isinstance(v, dict))):
        return None
    return dict(zip(names, specs))


def export_graph(m, args, kwargs, mode: bool, others=()):
    """``(graph, constants)`` of ``m``'s forward exported in train (``mode``) or eval mode,
    for the call ``(args, kwargs)`` and, with shapes left symbolic where they differ, the
    calls ``others``: a ``ValueError`` where export fixed a shape they need."""
    with preserved(m):
        m.train(mode)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dynamic = dynamic_shapes(m, [(args, kwargs), *others]) if others else None
            ep, unflat = program.unflattened(m, args, kwargs, dynamic)
            for a, k in others:
                try:
                    ep.module()(*a, **k)
                except Exception as e:  # noqa: BLE001 - the guards export put on the shapes
                    raise ValueError(f"called with inputs of shapes {_shapes(args, kwargs)} and "
                                     f"{_shapes(a, k)}, and torch.export could capture it for the "
                                     f"first only ({type(e).__name__})") from e
        spec = ep.module_call_graph[0].signature
        return _Rewrite(m, unflat, _parameters(m, args)).rewrite(spec.in_spec, spec.out_spec, len(args))


def _reads_training(cls) -> bool:
    """Whether the code of ``cls`` (below ``nn.Module``) may read ``training``: only then is it
    exported in train mode too (each export takes a tenth of a second or more)."""
    for c in cls.__mro__:
        if c.__module__.startswith("torch.nn") or c is object:
            continue
        try:
            if "training" in inspect.getsource(c):
                return True
        except (OSError, TypeError):
            return True
    return False


def _shapes(args, kwargs):
    return [tuple(a.shape) for a in pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]


def _shaped_calls(calls) -> list:
    """The recorded ``(args, kwargs)`` of a module's calls, one per distinct input shapes."""
    out, seen = [], set()
    for inputs, _ in calls:
        key = repr(_shapes(*inputs))
        if key not in seen:
            seen.add(key)
            out.append(inputs)
    return out


def fallback(root, failed: list, example_inputs, problems: list) -> None:
    """Give each part in ``failed`` (fx could not trace it) graphs from ``torch.export``.

    Parts that export replace their fx problem; the rest keep it, with why export failed (or,
    without ``example_inputs``, how to enable it).
    """
    fx_problem = {p.path: next((q for q in problems if q.path == p.path), None) for p in failed}

    def note(part, text):
        old = fx_problem[part.path]
        new = Problem(part.path, old.cls, f"{old.what}; {text}", old.line)
        problems[problems.index(old)] = new
        fx_problem[part.path] = new

    if not example_inputs:
        for part in failed:
            if fx_problem[part.path] is not None:
                note(part, HINT)
        return
    try:
        calls = record_calls(root, example_inputs, [p.module for p in failed])
        missing = [p.module for p in failed if p.module not in calls]
        if missing:                                 # a train-only branch
            try:
                calls.update(record_calls(root, example_inputs, missing, train=True))
            except Exception:  # noqa: BLE001 - e.g. train-mode BatchNorm on a batch of one
                pass
    except Exception as e:  # noqa: BLE001 - reported against every part that needed it
        for part in failed:
            note(part, f"running the example inputs failed: {type(e).__name__}: {e}")
        return
    for part in failed:
        if part.module not in calls:
            note(part, unreached.WHAT_TO_DO)
            setattr(part, unreached.UNREACHED, True)
            continue
        (args, kwargs), *others = _shaped_calls(calls[part.module])
        part.specialised = callsite.called_with(part.module, args, kwargs)
        try:
            graphs = {False: export_graph(part.module, args, kwargs, False, others)}
            graphs[True] = graphs[False]
            if _reads_training(type(part.module)):
                try:
                    graphs[True] = export_graph(part.module, args, kwargs, True, others)
                except Exception:  # noqa: BLE001 - e.g. a batch of one in train-mode BatchNorm
                    pass
        except Exception as e:  # noqa: BLE001 - any export failure is reported with the module
            note(part, f"torch.export failed too: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        (train, constants), (eval_, _) = graphs[True], graphs[False]
        part.constants = constants
        part.graphs = {None: train} if signature(train) == signature(eval_) else {True: train, False: eval_}
        setattr(part, EXPORTED, [_shapes(a, k) for a, k in [(args, kwargs), *others]])
        problems.remove(fx_problem[part.path])
