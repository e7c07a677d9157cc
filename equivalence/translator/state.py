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


def record_calls(root: torch.nn.Module, example_inputs, modules, inputs=None, output=None,
                 train: bool = False) -> dict:
    """Run ``root`` once on ``example_inputs`` (eval mode, or train mode with ``train``;
    ``torch.no_grad``; its state :func:`preserved` and torch's random state forked) and return ``{module: [(inputs, output), ...]}``, one entry per call of
    each of ``modules``, in call order.

    ``inputs(args, kwargs)`` keeps what is needed of a call's arguments, taken before the call
    runs (a forward may write into them; default: ``(args, kwargs)`` themselves);
    ``output(value)`` what is needed of its result (default: nothing).
    """
    calls: dict = {}
    handles = []

    def before(m, args, kwargs):
        calls.setdefault(m, []).append([inputs(args, kwargs) if inputs else (args, dict(kwargs)), None])

    def after(m, args, kwargs, value):
        if output is not None:
            calls[m][-1][1] = output(value)

    for m in modules:
        handles.append(m.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(m.register_forward_hook(after, with_kwargs=True))
    try:
        with preserved(root), torch.no_grad(), torch.random.fork_rng(devices=[]):
            root.train(train)
            root(*example_inputs)
    finally:
        for h in handles:
            h.remove()
    return {m: [tuple(c) for c in cs] for m, cs in calls.items()}


def tied(root: torch.nn.Module) -> list[tuple[str, str]]:
    """``(name, first name)`` of each parameter or persistent buffer that a second module
    holds too (weight tying: ``head.weight = embed.weight``), by their state_dict names. A
    module held twice is not listed: its variables are shared with it."""
    first, out = {}, []
    for prefix, m in root.named_modules():      # each module once, at its first path
        persistent = [(n, b) for n, b in m._buffers.items() if n not in m._non_persistent_buffers_set]
        for name, t in [*m._parameters.items(), *persistent]:
            if t is None:
                continue
            full = f"{prefix}.{name}" if prefix else name
            if id(t) in first:
                out.append((full, first[id(t)]))
            else:
                first[id(t)] = full
    return out
