"""The one lookup from a graph node's target to its emitter, for every phase that asks.

A ``call_function`` target is looked up in the ATen table first (:mod:`.aten`: the overloads of
``torch.export`` graphs), then among structured output classes (:mod:`.outputs`), then in the
torch-function table (:mod:`.ops`); a ``call_method`` name in the Tensor-method table. Emission
(:mod:`.emit`) asks for the emitter; tracing (:mod:`.functions`) asks whether there is one, to
tell a call it translates whole from a Python function to trace into.
"""
from __future__ import annotations

from . import aten, ops, outputs


def function(target):
    """The emitter of a ``call_function`` target, or ``None`` when it has no translation."""
    emitter = aten.function(target)
    if emitter is None and outputs.is_output_class(target):
        emitter = outputs.emitter(target)
    return emitter if emitter is not None else ops.function(target)


def method(name: str):
    """The emitter of Tensor method ``name`` (``add_`` uses ``add``'s), or ``None``."""
    return ops.method(name)
