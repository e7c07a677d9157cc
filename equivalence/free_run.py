"""The jaxconv side of a comparison: one free-running forward (and backward) on its own values.

The model runs under ``jax.vjp`` (and ``jax.jit``) with every named submodule intercepted
(:func:`jaxconv.trace.intercept`): each call's output is recorded and leaves the trace as an
output, so no tracer escapes. The updated non-parameter state (train-mode BatchNorm buffers) is
written back into the module once, as torch's forward updates its buffers once. These values
give the report's *end-to-end* column; the checks themselves start from torch's values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.nn import named_modules
from jaxconv.trace import intercept

from ._tree import floating_arrays
from .state_dict import named_variables


@dataclass
class JaxRun:
    """What jaxconv computed on its own: the output, each named call's output in call order
    (``[(name, output)]``), and with gradients those of the parameters (torch names) and inputs."""

    out: Any
    calls: list
    param_grads: dict = field(default_factory=dict)
    input_grads: list = field(default_factory=list)

    def outputs(self) -> dict:
        """``{name: [output of each call, in call order]}``."""
        by_name: dict = {}
        for name, out in self.calls:
            by_name.setdefault(name, []).append(out)
        return by_name


def run_jax(module, inputs, cotangents, grads: bool, jit: bool) -> JaxRun:
    """Run ``module`` on ``inputs`` recording every named submodule's output; with ``grads``,
    the vector-Jacobian product of its floating outputs with ``cotangents`` (torch's, one per
    floating output: :func:`~equivalence._tree.floating_arrays`)."""
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    names: list = []  # filled while tracing; the recorded outputs leave as outputs

    def forward(params, inputs):
        # a fresh copy of the non-parameter state, so its variables belong to this trace
        m = nnx.merge(graphdef, params, jax.tree.map(lambda a: a, rest))
        calls = []
        names.clear()

        def record(name):
            def hook(self, cls, args, kwargs):
                out = cls.__call__(self, *args, **kwargs)
                calls.append(out)
                names.append(name)
                return out
            return hook

        with intercept({sub: record(name) for name, sub in named_modules(m)}):
            out = m(*inputs)
        _, _, new_rest = nnx.split(m, nnx.Param, ...)
        return floating_arrays(out), (out, calls, new_rest)

    fn = jax.jit(forward) if jit else forward
    inputs = [jnp.asarray(x) for x in inputs]
    param_grads, input_grads = {}, []
    if grads:
        outs, vjp, (out, calls, new_rest) = jax.vjp(fn, params, inputs, has_aux=True)
        shapes = [tuple(np.shape(g)) for g in cotangents]
        if [tuple(o.shape) for o in outs] != shapes:
            raise ValueError(f"compare: jaxconv's model returns floating outputs of shapes "
                             f"{[tuple(o.shape) for o in outs]}, torch's of shapes {shapes}")
        g_params, g_inputs = vjp([jnp.asarray(g, o.dtype) for g, o in zip(cotangents, outs)])
        gm = nnx.merge(graphdef, g_params, rest)
        param_grads = {n: np.asarray(v[...]) for n, v in named_variables(gm) if isinstance(v, nnx.Param)}
        input_grads = [np.asarray(g) if jnp.issubdtype(x.dtype, jnp.inexact) else None
                       for g, x in zip(g_inputs, inputs)]
    else:
        _, (out, calls, new_rest) = fn(params, inputs)
    nnx.update(module, new_rest)
    return JaxRun(out, list(zip(names, calls)), param_grads, input_grads)
