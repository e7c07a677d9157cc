"""The error model of the recurrent layers: ``RNN``, ``LSTM``, ``GRU`` and their cells.

A recurrent layer carries each step's rounding into every later step, so no one-op model
fits it, and the running bound's worst case (:mod:`.running`) grows geometrically with the
sequence. Its tolerance is the sampled rounding error (:mod:`.sampled`) of the jaxconv layer run
on torch's recorded inputs: ``c * sigma``, ``sigma`` the root mean square of the layer's
first-order error over random signs of every op's rounding, carried step by step through the
layer's own (signed) linearization. Gradients get the same model of the layer's backward pass
(the reverse scans and their products with the forward's states) with torch's cotangents of
every output (the sequence, ``h_n`` and ``c_n``).
Measured (tests/translate/test_recurrent_translate.py): float32 ports stay below a tenth of it,
and a gate bias moved by 1e-3 exceeds it a hundredfold.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._tree import floating_arrays, to_jax
from ._policy import ELEMENTWISE_N, REDUCED, Bound, LayerBounds, LayerCall, eps, register
from .sampled import sampled_error


def _bound(sigma, value, dtype) -> Bound:
    """``c * sigma`` as a :class:`Bound` of a value of ``dtype``: ``S = sigma / eps`` with
    ``n = 1``, ``eps`` that of the dtype the policy's ``c * eps * S`` term uses (float32's for
    float16/bfloat16, whose tolerance adds the final rounding to it); at least the elementwise
    floor ``sqrt(ELEMENTWISE_N) |value|``, the rounding of the value itself."""
    unit = eps(np.float32) if np.dtype(dtype).name in REDUCED else eps(dtype)
    floor = np.sqrt(ELEMENTWISE_N) * np.abs(np.asarray(value, np.float64)) * eps(dtype) / unit
    return Bound(np.maximum(np.asarray(sigma, np.float64) / unit, floor), 1)


@register("recurrent", match=("RNNBase", "RNNCellBase"))
def recurrent(call: LayerCall) -> LayerBounds:
    """``S``: the layer's sampled rounding error ``sigma`` (the module docstring) over ``eps``,
    ``n = 1``; for each parameter's gradient and the input's, that of the backward pass."""
    from flax import nnx

    from ..state_dict import named_variables

    graphdef, params, rest = nnx.split(nnx.clone(call.module), nnx.Param, ...)
    args = to_jax(call.inputs)

    def outputs(p, *args):
        return floating_arrays(nnx.merge(graphdef, p, jax.tree.map(jnp.asarray, rest))(*args))

    def forward(p, *args):
        return outputs(p, *args)[0]

    dtype = np.dtype(call.output.dtype)
    out, sigma = sampled_error(forward, params, *args)
    bounds = LayerBounds(_bound(sigma, out, dtype))
    if call.cotangent is None:
        return bounds

    def backward(p, args, gs):     # every floating output's cotangent: h_n's and c_n's too
        outs, vjp = jax.vjp(lambda p, x: outputs(p, x, *args[1:]), p, args[0])
        return vjp([g.astype(o.dtype) for g, o in zip(gs, outs)])

    cotangents = [jnp.asarray(g) for g in (call.cotangents or (call.cotangent,))]
    (g_params, g_input), (s_params, s_input) = sampled_error(backward, params, args, cotangents)

    def named(state):
        merged = nnx.merge(graphdef, state, rest)
        return {n: v[...] for n, v in named_variables(merged) if isinstance(v, nnx.Param)}

    values = named(g_params)
    params = {n: _bound(s, values[n], dtype) for n, s in named(s_params).items()}
    return LayerBounds(bounds.forward, params, _bound(s_input, g_input, dtype))
