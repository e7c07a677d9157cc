"""The ATen table and the helpers its entries share.

One entry per ATen overload, keyed ``'name.overload'`` (``'conv2d.default'``), each an emitter
``fn(e, *args, **kwargs)`` like those of :mod:`..ops`, whose parameters are the ATen schema's
(``aten::conv2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=[1, 1], ...)``)
so that positional and keyword calls both bind.
"""
from __future__ import annotations

TABLE: dict = {}
INT64_MAX = 2 ** 63 - 1     # ATen's "to the end" in slices


def op(*names):
    """Register the decorated emitter for these ATen overload names."""
    def deco(fn):
        for name in names:
            TABLE[name] = fn
        return fn
    return deco


def tup(v):
    """Lists of constants (ATen's ``int[2]``) as tuples, for readable calls."""
    return tuple(v) if isinstance(v, list) else v


def kw(**kwargs):
    """Keyword arguments that are not ``None``."""
    return {k: v for k, v in kwargs.items() if v is not None}


def keyed(e, call: str, name: str) -> str:
    """``call`` with a fresh rng key passed as ``name`` (an expression, so not through ``e.fmt``)."""
    return f"{call[:-1]}{'' if call.endswith('(') else ', '}{name}={e.rng()})"


def lead(dim: int) -> str:
    """The index prefix that reaches dimension ``dim`` (``':, :, '``, or ``'..., '`` from the end)."""
    return ":, " * dim if dim >= 0 else "..., " + ":, " * (-dim - 1)


def span(e, start, end, step) -> str:
    """``start:end:step`` of an ATen slice (``end`` at ``INT64_MAX``: to the end)."""
    start = None if start in (0, None) else e.fmt(start)
    end = None if end is None or (isinstance(end, int) and end >= INT64_MAX) else e.fmt(end)
    return f"{start or ''}:{end or ''}" + ("" if step in (1, None) else f":{e.fmt(step)}")
