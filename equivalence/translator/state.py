"""The one way the translator runs or traces a torch model: with its state put back afterwards.

Capturing runs the user's model (to learn call arguments, to trace into functions, to export
blocks) and switches its modes (to trace ``forward`` in train and in eval mode). A train-mode
run moves BatchNorm statistics even under ``torch.no_grad``, and a forward may write into its
buffers or rebind them. :func:`preserved` undoes all of it, so that ``translate`` leaves the
torch model bit-identical.
"""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def preserved(module: torch.nn.Module, values: bool = True):
    """Within the block, change ``module`` at will: on exit every submodule has its
    ``training`` flag back and, with ``values``, every parameter and buffer its tensor
    object (rebinding undone, buffers added in the block removed) and its bits, copied back
    from a snapshot taken on entry (BatchNorm's kernel writes its statistics without bumping
    their version counters, so every tensor is copied back).

    ``values=False`` restores the modes only (for tracing, which runs nothing on real data).
    """
    modes = [(m, m.training) for m in module.modules()]
    tables = [table for m in module.modules() for table in (m._parameters, m._buffers)] if values else []
    entries = [dict(table) for table in tables]
    copies = {id(t): (t, t.detach().clone()) for entry in entries for t in entry.values()
              if t is not None}
    try:
        yield module
    finally:
        for m, flag in modes:
            m.training = flag
        for table, entry in zip(tables, entries):
            table.clear()
            table.update(entry)
        with torch.no_grad():
            for t, copy in copies.values():
                if not torch.equal(t, copy):        # unchanged tensors keep their versions
                    t.copy_(copy)
