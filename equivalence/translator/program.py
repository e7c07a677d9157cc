"""One module's ``torch.export`` program, made ready for :func:`torch.export.unflatten`.

:mod:`.export` turns the unflattened graph into the module's graph; this module gets it there:

- every direct child (items of a ``ModuleList``) is exported with its call signature
  preserved, so that unflatten folds its ops back into one ``call_module``;
- a child whose call records no op of its own (an ``nn.Identity`` placeholder) gets one
  (:func:`alias_outputs`);
- ops are attributed to the module's own code or the direct child they run in
  (:func:`own_level`): deeper modules are captured on their own;
- where the module's own code writes in place, torch functionalises the program
  (:func:`functional`);
- stack traces keep the frames of helper functions (:func:`anchor_stack_traces`), so that
  an op without a translation is reported at its own line.
"""
from __future__ import annotations

import inspect
import sys
import warnings

import torch
from torch.utils import _pytree as pytree

from .graph import writes


def called_children(m, prefix=""):
    """Paths of the children whose calls stay ``call_module`` (items of lists and dicts)."""
    out = []
    for name, child in m._modules.items():
        if child is None:
            continue
        own = type(child).forward is not torch.nn.Module.forward
        if isinstance(child, (torch.nn.ModuleList, torch.nn.ModuleDict)) and not own:
            out += called_children(child, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def alias_outputs(module, args, kwargs, output):
    """A forward hook: every tensor a child returns unchanged from its arguments, as an
    ``aten.alias`` of it (a view: writes into it still reach the argument, as in torch).

    ``torch.export.unflatten`` rebuilds a preserved child's call from the ops recorded inside
    it; a child that records none (an ``nn.Identity`` placeholder, timm's ``drop_path1``,
    ``pool`` or ``se``) has no submodule then, and unflatten fails. The alias gives the call
    an op of its own and its output a node of its own, inside the child's graph, which is
    never translated.
    """
    inputs = {id(a) for a in pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)}
    return pytree.tree_map_only(
        torch.Tensor, lambda t: torch.ops.aten.alias.default(t) if id(t) in inputs else t, output)


def anchor_stack_traces(m) -> None:
    """Keep, in export's stack traces, the frames of every function in the files that define
    ``m``'s classes, not only ``forward``'s: an op in a helper (``self.random_masking(x)``,
    timm's ``window_partition``) then points at its own line. (torch's anchors for its frame
    filter; where a torch version lacks them, traces stop at ``forward`` as before.)"""
    anchor = getattr(torch.fx.proxy, "_register_stack_trace_anchor", None)
    if anchor is None:
        return
    for cls in {type(sub) for sub in m.modules()}:
        module = sys.modules.get(cls.__module__)
        if module is None or cls.__module__.startswith("torch."):
            continue
        for value in vars(module).values():
            for fn in (value, *vars(value).values()) if inspect.isclass(value) else (value,):
                if inspect.isfunction(fn) and fn.__module__ == module.__name__:
                    anchor(fn)


def own_level(ep) -> None:
    """Attribute every op to the module's own code or to the direct child it runs in.

    unflatten then rebuilds the calls of the direct children only, which is all the graph
    needs (a child's own graph is captured on its own); it cannot misplace the ops of deeper
    modules (it fails on some: Hugging Face DPT's neck, 'Could not find output node')."""
    for node in ep.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if stack and len(stack) > 2:
            node.meta["nn_module_stack"] = dict(list(stack.items())[:2])


def functional(ep):
    """``ep`` with its in-place writes in functional form (``x[:, 1:] = y`` as
    ``slice_scatter``, ``x += y`` as ``add``; writes into buffers as one ``copy_`` each),
    its ops otherwise as they were (an empty decomposition table)."""
    ep = ep.run_decompositions({})
    stacks = [n.meta["nn_module_stack"] for n in ep.graph.nodes if n.meta.get("nn_module_stack")]
    root = dict(list(stacks[0].items())[:1]) if stacks else {}
    for node in ep.graph.nodes:     # views that functionalisation re-plays carry an empty stack
        if node.op == "call_function" and node.meta.get("nn_module_stack") == {}:
            node.meta["nn_module_stack"] = dict(root)
    return ep


def unflattened(m, args, kwargs, dynamic_shapes=None):
    """``(exported program, unflattened module)`` of ``m`` called with ``args`` / ``kwargs``,
    in its current mode (``dynamic_shapes`` as :func:`torch.export.export` takes them)."""
    children = called_children(m)
    hooks = [m.get_submodule(c).register_forward_hook(alias_outputs, with_kwargs=True)
             for c in children]
    anchor_stack_traces(m)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.export(m, tuple(args), dict(kwargs), strict=False, dynamic_shapes=dynamic_shapes,
                                     preserve_module_call_signature=tuple(children))
            own_level(ep)
            unflat = torch.export.unflatten(ep)
            if any(writes(n) for n in unflat.graph.nodes):
                ep = functional(ep)
                own_level(ep)
                unflat = torch.export.unflatten(ep)
        return ep, unflat
    finally:
        for h in hooks:
            h.remove()
