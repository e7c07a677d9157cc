"""A traced forward checked against torch's own call of it on the example inputs.

``torch.fx`` traces the code of ``forward``, not what runs around it: a library's wrapper that
the capture traces through (:func:`.callsite.pass_through`) or forward hooks. Such a wrapper
can change what the forward's children are called with, or what it returns. Hugging Face's
``filter_output_hidden_states`` forces ``output_hidden_states=True`` into the ``**kwargs``
the forward passes on; ``capture_outputs`` installs forward hooks on the children and adds
what they collect (``hidden_states``, ``attentions``) to the ``ModelOutput``. The traced graph
then computes something else, silently: a field torch sets reads ``None``.

The model ran once on the example inputs (:func:`.callsite.example_calls`), and each call's
arguments and result were kept as an :func:`outline`: their structure, with the constants.
A traced graph (eval mode, as that run) must agree with it (:func:`disagreement`):

- what it returns has torch's structure: the same lists, tuples, dicts and output classes, with
  the same fields set;
- each child it calls gets the constants torch passed that child (defaults filled in).

Only what the graph fixes is compared: a value the graph computes (a shape, a tensor whose
kind is not known) agrees with anything. A module whose graph disagrees is captured by
``torch.export`` instead (:mod:`.export`), which runs its wrappers and hooks.
"""
from __future__ import annotations

import builtins
import inspect
import operator
from dataclasses import dataclass

import torch

from .outputs import is_output_class

_CONSTANTS = (type(None), bool, int, float, str)


class _Mark:
    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


#: A tensor; a value the graph computes, of a kind not known (agrees with anything).
TENSOR, ANY = _Mark("<tensor>"), _Mark("<value>")


@dataclass(frozen=True)
class Seq:
    """A list, tuple or named tuple (``kind``) of outlines."""

    kind: type
    items: tuple

    def __repr__(self):
        inner = ", ".join(map(repr, self.items)) + ("," if len(self.items) == 1 and self.kind is tuple else "")
        return f"[{inner}]" if self.kind is list else f"({inner})" if self.kind is tuple else f"{self.kind.__name__}({inner})"


@dataclass(frozen=True)
class Record:
    """A dict (``kind`` ``dict``) or output class of outlines: the fields that are not ``None``."""

    kind: type
    fields: tuple       # (name, outline), in order

    def get(self, key):
        return dict(self.fields).get(key)

    def __repr__(self):
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields)
        return f"{{{inner}}}" if self.kind is dict else f"{self.kind.__name__}({inner})"


def _seq_kind(value):
    return type(value) if hasattr(value, "_fields") else list if isinstance(value, list) else tuple


def _record(kind, items):
    return Record(kind if is_output_class(kind) else dict,
                  tuple((k, v) for k, v in items if v is not None))


def outline(value):
    """The structure of ``value``: a tensor is ``TENSOR``, a constant itself, a list, tuple or
    dict (or output class) a :class:`Seq` or :class:`Record` of its items' outlines, anything
    else ``ANY``."""
    if isinstance(value, torch.Tensor):
        return TENSOR
    if isinstance(value, _CONSTANTS):
        return value
    if isinstance(value, (list, tuple)):
        return Seq(_seq_kind(value), tuple(outline(v) for v in value))
    if isinstance(value, dict):
        return _record(type(value), [(k, outline(v)) for k, v in value.items()])
    return ANY


def agree(ours, torch_s) -> bool:
    """Whether outline ``ours`` (the graph's) can be outline ``torch_s`` (torch's)."""
    if ours is ANY or torch_s is ANY:
        return True
    if isinstance(ours, Seq) and isinstance(torch_s, Seq):
        return (ours.kind is torch_s.kind and len(ours.items) == len(torch_s.items)
                and all(map(agree, ours.items, torch_s.items)))
    if isinstance(ours, Record) and isinstance(torch_s, Record):
        keys = dict.fromkeys(k for k, _ in ours.fields + torch_s.fields)
        return ours.kind is torch_s.kind and all(agree(ours.get(k), torch_s.get(k)) for k in keys)
    if isinstance(ours, (_Mark, Seq, Record)) or isinstance(torch_s, (_Mark, Seq, Record)):
        return ours is torch_s
    return type(ours) is type(torch_s) and (ours == torch_s or ours != ours and torch_s != torch_s)


def _only(outlines):
    """The one outline of several calls, ``ANY`` where they differ."""
    return outlines[0] if outlines and all(o == outlines[0] for o in outlines) else ANY


def _evaluate(graph, module, example) -> tuple:
    """``(outline of what graph returns, [(call node, child, its args outline)])``: the
    graph run on outlines, each child returning what it returned in the example."""
    env, calls, result = {}, [], ANY

    def of(value):          # outline() with the graph's values for its nodes
        if isinstance(value, torch.fx.Node):
            return env.get(value, ANY)
        if isinstance(value, (list, tuple)):
            return Seq(_seq_kind(value), tuple(map(of, value)))
        if isinstance(value, dict):
            return _record(dict, [(k, of(v)) for k, v in value.items()])
        return outline(value)

    for node in graph.nodes:
        value = ANY
        args, kwargs = of(node.args), {k: of(v) for k, v in node.kwargs.items()}
        if node.op == "call_module":
            try:
                child = module.get_submodule(node.target)
            except AttributeError:          # an absent optional child
                child = None
            if child is not None and child in example:
                value = _only([c[3] for c in example[child]])
                calls.append((node, child, (args, kwargs)))
        elif node.op == "call_function" and is_output_class(node.target):
            value = _record(node.target, list(kwargs.items()))
        elif node.op == "call_function" and isinstance(node.target, type) and hasattr(node.target, "_fields"):
            value = Seq(node.target, args.items)
        elif node.op == "call_function" and node.target in (builtins.getattr, operator.getitem):
            value = _item(*args.items[:2], attribute=node.target is builtins.getattr)
        elif node.op == "output":
            result = args.items[0]
        env[node] = value
    return result, calls


def _item(obj, key, attribute: bool):
    """``getattr(obj, key)`` or ``obj[key]`` of an outline, ``ANY`` where not known."""
    if isinstance(obj, Record) and isinstance(key, str):
        if key in dict(obj.fields):
            return obj.get(key)
        fields = getattr(obj.kind, "__dataclass_fields__", {})
        return None if attribute and key in fields else ANY     # a ModelOutput field not set
    if isinstance(obj, Record) and isinstance(key, int) and obj.kind is not dict and not attribute:
        values = [v for _, v in obj.fields]
        return values[key] if -len(values) <= key < len(values) else ANY
    if isinstance(obj, Seq) and isinstance(key, int) and not attribute:
        return obj.items[key] if -len(obj.items) <= key < len(obj.items) else ANY
    return ANY


def _bound(sig, args, kwargs) -> dict | None:
    """``{parameter: outline}`` of a call, defaults filled in; ``None`` where it does not bind."""
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        return None
    out = {}
    for p in sig.parameters.values():
        if p.name in bound.arguments:
            value = bound.arguments[p.name]
            out[p.name] = (Seq(tuple, value) if p.kind is p.VAR_POSITIONAL else
                           Record(dict, tuple(value.items())) if p.kind is p.VAR_KEYWORD else value)
        elif p.kind is p.VAR_KEYWORD:
            out[p.name] = Record(dict, ())
        elif p.kind is not p.VAR_POSITIONAL:
            out[p.name] = outline(p.default) if p.default is not p.empty else ANY
    return out


def _call_disagrees(node, child, ours, example) -> str:
    """Why the graph's call ``ours`` (``(args, kwargs)`` outlines) of ``child`` differs from
    every call torch made of it in the example (``''`` where one agrees)."""
    try:
        sig = inspect.signature(child.forward)
    except (TypeError, ValueError):
        return ""
    mine = _bound(sig, ours[0].items, ours[1])
    if mine is None:
        return ""
    first = ""
    for call in example[child]:
        theirs = _bound(sig, call[2][0].items, call[2][1])
        if theirs is None:
            return ""
        differ = [k for k in mine if not agree(mine[k], theirs.get(k, ANY))]
        if not differ:
            return ""
        first = first or "; ".join(f"{k}={mine[k]!r} where torch passed {theirs.get(k)!r}" for k in differ)
    return f"it calls {node.target} with {first}"


def disagreement(part, example: dict) -> str:
    """How ``part``'s traced graph (eval mode) differs from torch's calls of its module in
    ``example`` (:attr:`.callsite.Sites.example`), as a problem's text; ``''`` where it
    agrees, or where the example did not call it."""
    module = part.module
    if module not in example or not part.graphs:
        return ""
    graph = part.graphs.get(False, part.graphs.get(None))
    returned, calls = _evaluate(graph, module, example)
    theirs = _only([c[3] for c in example[module]])
    why = "" if agree(returned, theirs) else (
        f"its traced forward returns {returned!r} where torch's call returned {theirs!r}")
    for node, child, ours in calls:
        why = why or _call_disagrees(node, child, ours, example)
    return f"{why} (a wrapper of its forward, or hooks, that torch.fx does not see)" if why else ""
