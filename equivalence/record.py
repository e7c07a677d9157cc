"""The torch side of a comparison: one forward (and backward) recording every named module's calls.

Forward pre-hooks and hooks on every module of ``named_modules()`` record each call's inputs,
output and enclosing call; with gradients, a tensor hook on each output records the gradient of
the loss with respect to it. Everything is stored as numpy copies, in the call's structure.

The loss is ``sum_k sum(output_k * cotangent_k)`` over every floating output ``output_k`` of the
model (an LSTM's ``h_n`` and ``c_n`` as well as its sequence, attention's weights), each with a
standard-normal cotangent of its own: a gradient that only a second output carries is checked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._torch import to_numpy, to_torch
from ._tree import floating_arrays, floating_tensors, torch_to_numpy


@dataclass(eq=False)
class TorchCall:
    """One call of a named torch module.

    ``index``: start order; ``order``: finish order (-1 until it returns); ``parent``: the
    index of the enclosing call; ``input_ids``: for each positional argument, the index of the
    model input it is (``None`` otherwise); ``grad_outs``: the gradient of the loss with
    respect to each floating output (:func:`~equivalence._tree.floating_arrays` of ``out``;
    summed when an output is used several times, ``None`` where the loss does not reach it).
    """

    index: int
    name: str
    type: str
    args: tuple
    kwargs: dict
    parent: int | None
    input_ids: list
    out: Any = None
    grad_outs: list = field(default_factory=list)
    done: bool = False
    order: int = -1

    def add_grad(self, k: int, g: np.ndarray) -> None:
        """Accumulate a gradient of floating output ``k``."""
        self.grad_outs[k] = g if self.grad_outs[k] is None else self.grad_outs[k] + g

    @property
    def grad_out(self) -> np.ndarray | None:
        """The gradient of the first floating output (``None`` where none reached it)."""
        return self.grad_outs[0] if self.grad_outs else None

    def cotangents(self) -> list | None:
        """The gradients of every floating output, zeros where the loss does not reach one;
        ``None`` where it reaches none."""
        if all(g is None for g in self.grad_outs):
            return None
        outs = floating_arrays(self.out)
        return [np.zeros(a.shape, a.dtype) if g is None else g for g, a in zip(self.grad_outs, outs)]


@dataclass
class TorchRun:
    """What torch computed: its calls, output, the cotangent of each floating output, gradients
    (torch names; of the floating inputs, ``None`` for the others) and buffers."""

    calls: list
    out: Any
    cotangents: list | None = None
    param_grads: dict = field(default_factory=dict)
    input_grads: list = field(default_factory=list)
    buffers: dict = field(default_factory=dict)

    def finished(self) -> list:
        """The calls that returned, in start order."""
        return [c for c in self.calls if c.done]


def _hooked(torch, out, outs: list, call: TorchCall):
    """``out`` with each floating output that has a history replaced by a copy whose gradient
    hook records ``call.grad_outs[k]``, or ``None`` where nothing needs replacing.

    A copy, so that the gradient is the one the callers pass back: a hook on a tensor the
    module itself used to compute another of its outputs (``y`` in ``return y, y * w``) would
    also count that use, which the local check counts again; and an in-place op on a view
    (``ReLU(inplace=True)`` after a ``Linear`` on a 4-d input) would rewrite its history, and its
    hook would never run. Containers ``torch.utils._pytree`` knows are rebuilt (tuples, dicts,
    Hugging Face's ``ModelOutput``); a tensor in any other keeps its own hook.
    """
    from torch.utils import _pytree

    where: dict = {}
    for k, o in enumerate(outs):
        if o.requires_grad:
            where.setdefault(id(o), []).append(k)
    if not where:
        return None

    def copy(t):
        if not where.get(id(t)):
            return t
        k = where[id(t)].pop(0)
        t = t.clone()
        t.register_hook(lambda g: call.add_grad(k, to_numpy(g)))
        return t

    new = _pytree.tree_map_only(torch.Tensor, copy, out)
    for o in outs:          # in a container that is no pytree: hooked where it is
        for k in where.get(id(o), []):
            o.register_hook(lambda g, k=k: call.add_grad(k, to_numpy(g)))
        where.pop(id(o), None)
    return new


def run_torch(torch, module, inputs, cotangent_seed: int, grads: bool) -> TorchRun:
    """Run ``module`` on ``inputs`` (numpy arrays) recording every named module's calls; with
    ``grads``, backpropagate ``sum_k sum(output_k * cotangent_k)`` over its floating outputs,
    the cotangents drawn from ``cotangent_seed`` (the module docstring)."""
    calls, stack, handles, finished = [], [], [], [0]
    names = {id(m): n for n, m in module.named_modules()}
    model_inputs = [to_torch(x.copy()) for x in inputs]
    for x in model_inputs:
        x.requires_grad_(grads and x.is_floating_point())    # class indices have no gradient
    input_ids = {id(x): i for i, x in enumerate(model_inputs)}

    def pre(mod, args, kwargs):
        c = TorchCall(len(calls), names[id(mod)], type(mod).__name__, torch_to_numpy(args, torch),
                      torch_to_numpy(kwargs, torch), stack[-1] if stack else None,
                      [input_ids.get(id(a)) for a in args])
        calls.append(c)
        stack.append(c.index)

    def post(mod, args, kwargs, out):
        c = calls[stack.pop()]
        c.out = torch_to_numpy(out, torch)
        c.done, c.order = True, finished[0]
        finished[0] += 1
        if not grads:
            return None
        outs = floating_tensors(out, torch)
        c.grad_outs = [None] * len(outs)
        return _hooked(torch, out, outs, c)

    for _, m in module.named_modules():
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True))
    try:
        out = module(*model_inputs)
    finally:
        for h in handles:
            h.remove()
    run = TorchRun(calls, torch_to_numpy(out, torch))
    if grads:
        rng = np.random.default_rng(cotangent_seed)
        run.cotangents = [rng.standard_normal(a.shape).astype(a.dtype) for a in floating_arrays(run.out)]
        module.zero_grad(set_to_none=True)
        terms = [(o * to_torch(g)).sum() for o, g in zip(floating_tensors(out, torch), run.cotangents)
                 if o.requires_grad]
        if terms:
            sum(terms).backward()
        run.param_grads = {n: to_numpy(p.grad) for n, p in module.named_parameters() if p.grad is not None}
        run.input_grads = [None if not x.is_floating_point() else to_numpy(x.grad) if x.grad is not None
                           else np.zeros(x.shape, a.dtype) for x, a in zip(model_inputs, inputs)]
    run.buffers = {n: to_numpy(b) for n, b in module.named_buffers()}
    return run
