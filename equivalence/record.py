"""The torch side of a comparison: one forward (and backward) recording every named module's calls.

Forward pre-hooks and hooks on every module of ``named_modules()`` record each call's inputs,
output and enclosing call; with gradients, a tensor hook on each output records the gradient of
the loss with respect to it. Everything is stored as numpy copies, in the call's structure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._torch import to_numpy, to_torch
from ._tree import first_array, first_tensor, torch_to_numpy


@dataclass(eq=False)
class TorchCall:
    """One call of a named torch module.

    ``index``: start order; ``order``: finish order (-1 until it returns); ``parent``: the
    index of the enclosing call; ``input_ids``: for each positional argument, the index of the
    model input it is (``None`` otherwise); ``grad_out``: the gradient of the loss with respect
    to the output (summed when the output is used several times).
    """

    index: int
    name: str
    type: str
    args: tuple
    kwargs: dict
    parent: int | None
    input_ids: list
    out: Any = None
    grad_out: np.ndarray | None = None
    done: bool = False
    order: int = -1

    def add_grad(self, g: np.ndarray) -> None:
        """Accumulate a gradient of the output."""
        self.grad_out = g if self.grad_out is None else self.grad_out + g


@dataclass
class TorchRun:
    """What torch computed: its calls, output, cotangent, gradients (torch names) and buffers."""

    calls: list
    out: Any
    cotangent: np.ndarray | None = None
    param_grads: dict = field(default_factory=dict)
    input_grads: list = field(default_factory=list)
    buffers: dict = field(default_factory=dict)

    def finished(self) -> list:
        """The calls that returned, in start order."""
        return [c for c in self.calls if c.done]


def run_torch(torch, module, inputs, cotangent_seed: int, grads: bool) -> TorchRun:
    """Run ``module`` on ``inputs`` (numpy arrays) recording every named module's calls; with
    ``grads``, backpropagate ``sum(output * cotangent)``, the cotangent drawn from ``cotangent_seed``."""
    calls, stack, handles, finished = [], [], [], [0]
    names = {id(m): n for n, m in module.named_modules()}
    model_inputs = [to_torch(x.copy()).requires_grad_(grads) for x in inputs]
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
        main = first_tensor(out, torch) if grads and first_array(c.out) is not None else None
        if main is not None and main.requires_grad:  # the first tensor: (out, weights) of attention
            main.register_hook(lambda g, c=c: c.add_grad(to_numpy(g)))
            if main is out and out._is_view():
                # an in-place op on a view (ReLU(inplace=True) after a Linear on a 4-d input)
                # would rewrite its history and the hook would never run: hand on a copy
                return out.clone()

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
        main = first_array(run.out)
        run.cotangent = np.random.default_rng(cotangent_seed).standard_normal(main.shape).astype(main.dtype)
        module.zero_grad(set_to_none=True)
        (first_tensor(out, torch) * to_torch(run.cotangent)).sum().backward()
        run.param_grads = {n: to_numpy(p.grad) for n, p in module.named_parameters() if p.grad is not None}
        run.input_grads = [to_numpy(x.grad) if x.grad is not None else np.zeros(x.shape, a.dtype)
                           for x, a in zip(model_inputs, inputs)]
    run.buffers = {n: to_numpy(b) for n, b in module.named_buffers()}
    return run
