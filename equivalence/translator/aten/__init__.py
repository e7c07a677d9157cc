"""ATen operators (``torch.export``'s pre-decomposition graph) -> jaxconv source.

An ATen overload (``aten.conv2d.default``) is translated by the first of:

1. its entry in the table (:mod:`._table`, filled by :mod:`.nn` and :mod:`.tensor`), for the
   ops whose ATen schema differs from the torch function's (argument order, several results,
   a Python operator, a functional form of an in-place write);
2. the jaxconv function of the same name (``T.cumsum``, ``F.pixel_shuffle``), called as the
   torch-function table of :mod:`..ops` calls it, where the ATen schema agrees with that
   function's signature (:func:`agrees`). ATen and the torch functions thus share one
   vocabulary: what ``jaxconv.tensor`` and ``jaxconv.functional`` add, both translate.
"""
from __future__ import annotations

import inspect

import torch

import jaxconv.functional as jF
from jaxconv import tensor as jT

from .. import ops
from . import losses, nn, tensor  # noqa: F401  (they fill the table)
from ._table import TABLE

_NAMESPACES = (("T", jT), ("F", jF))


def _default(value):
    return tuple(value) if isinstance(value, list) else value


def agrees(schema, fn) -> bool:
    """Whether every call of the ATen ``schema`` binds to ``fn`` with the same meaning.

    That is: ATen's positional arguments are ``fn``'s positional parameters in the same order
    under the same names (ATen's ``self`` is ``fn``'s ``input``, or its first); its
    keyword-only ones are parameters of ``fn``; ``fn`` needs no other argument; defaults that
    both have are equal (export leaves out arguments at their defaults); and the op has one
    result, or named results (``values, indices``: torch returns those as a namedtuple).
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    by_name = {p.name: p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
    args = [a for a in schema.arguments if not a.kwarg_only]
    if len(args) > len(positional) or (len(schema.returns) != 1 and not all(r.name for r in schema.returns)):
        return False
    matched = {}
    for i, (a, p) in enumerate(zip(args, positional)):
        if a.name != p.name and not (a.name == "self" and (i == 0 or p.name == "input")):
            return False
        matched[a.name] = p
    for a in schema.arguments:
        if a.kwarg_only:
            if a.name not in by_name and not takes_any_keyword:
                return False
            if a.name in by_name:
                matched[a.name] = by_name[a.name]
    if any(p.default is p.empty and p not in matched.values() for p in by_name.values()):
        return False
    for a in schema.arguments:
        p = matched.get(a.name)
        if a.has_default_value() and p is not None and p.default is not p.empty:
            if _default(a.default_value) != _default(p.default):
                return False
    return True


def _same_named(op):
    """The emitter of the jaxconv function named like ``op``, where the schemas agree."""
    name = op._schema.name.partition("::")[2]
    for prefix, namespace in _NAMESPACES:
        fn = getattr(namespace, name, None)
        if callable(fn) and not inspect.isclass(fn) and agrees(op._schema, fn):
            emit = ops.passthrough(f"{prefix}.{name}", fn)
            return lambda e, *args, **kwargs: emit(e, *(_default(a) for a in args), **kwargs)
    return None


def function(target):
    """The emitter of an ATen overload, or of a ``torch`` function that binds one with its
    schema (:data:`.losses.BINDINGS`); ``None`` (for other targets too)."""
    if isinstance(target, torch._ops.OpOverload) and target.namespace == "aten":
        return TABLE.get(target.__name__) or _same_named(target)
    try:
        return losses.BINDINGS.get(target)      # torch.kl_div: the ATen op's own schema
    except TypeError:       # unhashable
        return None
