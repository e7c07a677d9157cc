"""Specialise a traced module's ``forward`` to how its parent calls it.

``torch.fx`` makes every argument a proxy, so a forward that branches on a flag argument
(timm's ``ClassifierHead.forward(x, pre_logits=False)``: ``if pre_logits:``), tests an
optional one (``if children is None:``) or appends to a list argument (timm's ``DlaTree``)
cannot be traced on its own. Its parent's graph says what it is called with, though: the
``call_module`` node holds constants (``None``, flags, numbers) and lists of tensors as they
are. A module is therefore traced with

- each argument its call sites pass as the same constant, and each one they leave to a
  constant default, bound to that value (the graph is the branch that runs);
- each argument passed as a list of ``n`` tensors bound to the list ``[a[0], ..., a[n-1]]``
  of a placeholder ``a`` (so Python's list operations run at trace time);
- the rest as placeholders, as usual.

The placeholders stay in the signature, so the generated ``__call__`` takes the arguments its
parent passes. A module that no traced graph calls (a child of a ``Sequential``) is called
with its input alone. The root is not specialised: its caller is the user.
"""
from __future__ import annotations

import inspect

import torch.fx as fx

_CONSTANTS = (type(None), bool, int, float, str)


class _Tensor:
    """A call-site argument that is a tensor (a graph node)."""

    def __repr__(self):
        return "<tensor>"


TENSOR = _Tensor()


class TensorList(tuple):
    """A call-site argument that is a list of ``len`` tensors."""


def _pattern(value):
    if isinstance(value, fx.Node):
        return TENSOR
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, fx.Node) for v in value):
        return TensorList((TENSOR,) * len(value))
    if isinstance(value, _CONSTANTS):
        return value
    return TENSOR       # anything else is left to a placeholder


#: How a module reached through a container (``Sequential``) is called.
DEFAULT_SITE = ((TENSOR,), ())


def record(sites: dict, path: str, graph) -> None:
    """Add the call sites of ``graph`` (the forward of the module at ``path``) to ``sites``."""
    for node in graph.nodes:
        if node.op == "call_module":
            child = f"{path}.{node.target}" if path else node.target
            site = (tuple(_pattern(a) for a in node.args),
                    tuple((k, _pattern(v)) for k, v in node.kwargs.items()))
            sites.setdefault(child, {})[repr(site)] = site


def _same(values):
    first = values[0]
    return all(type(v) is type(first) and v == first for v in values[1:])


def specialise(module, calls) -> dict:
    """``{parameter: value}`` to bind while tracing ``module.forward`` for the call sites
    ``calls`` (``record``'s values for its path, or ``[DEFAULT_SITE]``).

    ``value`` is a constant or a :class:`TensorList`; parameters not named stay placeholders.
    """
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return {}
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in sig.parameters.values()):
        return {}
    seen: dict[str, list] = {p.name: [] for p in params}
    for args, kwargs in calls:
        try:
            bound = sig.bind(*args, **dict(kwargs))
        except TypeError:
            return {}
        for p in params:
            if p.name in bound.arguments:
                seen[p.name].append(bound.arguments[p.name])
            elif p.default is not p.empty:
                seen[p.name].append(p.default)
            else:
                seen[p.name].append(TENSOR)
    out = {}
    for name, values in seen.items():
        if not values or not _same(values) or values[0] is TENSOR:
            continue
        if isinstance(values[0], (TensorList, *_CONSTANTS)):
            out[name] = values[0]
    return out


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
        if name not in names:
            continue
        i = offset + names.index(name)
        if isinstance(value, TensorList):
            placeholder = args[i]
            args[i] = [placeholder[k] for k in range(len(value))]
        else:
            args[i] = value
    return args
