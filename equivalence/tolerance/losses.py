"""The error model of the losses (``CrossEntropyLoss``, ``MSELoss``, ..., ``CTCLoss``): kind ``loss``.

A loss reduces: one term per sample, position or element (a log-softmax over ``C`` classes, a
squared difference, a CTC path over ``T`` steps), then their mean or sum over ``N`` terms. The
op on absolute values, the fallback's magnitude, is no magnitude of it, because each term
cancels: ``logsumexp(x) - x[t]`` is near 0 for a confident logit of 30 whose rounding is
``eps * 30``, and ``(|x| - |y|)**2`` is no bound of ``(x - y)**2``. So:

- **forward**: ``S = |loss|`` and ``n`` the entries the reduction folds into each output
  element (``N * C`` for a mean cross entropy: ``numel(input) / numel(output)``), the rounding
  of a sum of ``n`` terms of the loss's size; and at least ``c`` times the running error bound
  of the jaxconv loss on torch's inputs (:mod:`.running`), which carries each term's
  cancellation: ``x - max`` rounded at ``eps |x - max|`` through ``exp``, the class sum, the
  ``log``, the weights and the batch sum or mean, op by op.
- **gradients**, of the first input and of every further floating input (a regression target,
  a second embedding: :attr:`LayerBounds.others`): ``S = |gradient|`` with the same ``n``, and
  at least ``c`` times the running error bound of the backward pass with torch's cotangent
  (``softmax - one_hot`` cancels as ``logsumexp`` does). Integer inputs (class indices,
  lengths) have no gradient.

A loss whose code loops (CTC's recursion over time, a ``scan``) gets its sampled rounding
error instead of the running bound, as the recurrent layers do (:mod:`.sampled`): through a loop
the worst case compounds (1e17 after 50 steps of a CTC whose float32 error stays at 1e-7).
Where neither exists (an op without a rule), the magnitude term holds alone.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.layout import plain_calls

from .._tree import floating_arrays, is_floating
from . import running
from ._policy import ELEMENTWISE_N, Bound, LayerBounds, LayerCall, reduction_ratio, register
from .code import NO_RUNNING_BOUND
from .sampled import sampled_error


def _split(call: LayerCall):
    """``(run, xs, arrays)``: ``run(xs)`` the loss's floating outputs as a function of its
    floating array inputs ``xs`` (the others fixed at torch's values); ``arrays``, for each array
    input in order, its index in ``xs`` (``None`` for integer ones)."""
    graphdef, state = nnx.split(nnx.clone(call.module))
    leaves, tree = jax.tree_util.tree_flatten(tuple(call.inputs))
    positions = [i for i, a in enumerate(leaves) if isinstance(a, (np.ndarray, jax.Array))]
    where = [i for i in positions if is_floating(leaves[i])]

    def run(xs):
        full = list(leaves)
        for i, a in zip(where, xs):
            full[i] = a
        return floating_arrays(nnx.merge(graphdef, state)(*jax.tree_util.tree_unflatten(tree, full)))

    xs = [jnp.asarray(leaves[i]) for i in where]
    return run, xs, [where.index(i) if i in where else None for i in positions]


def _loops(jaxpr) -> bool:
    """Whether a jaxpr runs a ``scan`` (in itself or a call it makes)."""
    return any(e.primitive.name == "scan" or (running.called_jaxpr(e) is not None
                                              and _loops(running.called_jaxpr(e).jaxpr)) for e in jaxpr.eqns)


def _bounded(fn, *args):
    """``(values, errors)`` of ``fn(*args)``: the running error bound, or for code that loops
    the sampled error; errors ``None`` where there is neither."""
    try:
        with plain_calls():
            loops = _loops(jax.make_jaxpr(fn)(*args).jaxpr)
        if loops:
            return sampled_error(fn, *args)
        return running.running_error(fn, *args)
    except NO_RUNNING_BOUND:
        return fn(*args), None


@register("loss", match=("_Loss",))
def loss(call: LayerCall) -> LayerBounds:
    """``S = |loss|``, ``n = numel(input) / numel(output)`` (the entries reduced into each
    value), at least ``c`` times the running error bound of the loss's code (its sampled error
    where it loops); gradients of every floating input the same (the module docstring)."""
    n = reduction_ratio(call.inputs, call.output, floor=ELEMENTWISE_N)
    run, xs, arrays = _split(call)
    _, e_out = _bounded(lambda xs: run(xs)[0], xs)
    forward = Bound(np.abs(np.asarray(call.output, np.float64)), n,
                    error=None if e_out is None else np.asarray(e_out))
    if call.cotangent is None:
        return LayerBounds(forward)

    def backward(xs, gs):
        outs, vjp = jax.vjp(run, xs)
        return vjp([g.astype(o.dtype) for g, o in zip(gs, outs)])[0]

    cotangents = [jnp.asarray(g) for g in (call.cotangents or (call.cotangent,))]
    grads, errors = _bounded(backward, xs, cotangents)
    bounds = [None if k is None else Bound(np.abs(np.asarray(grads[k], np.float64)), n,
                                           error=None if errors is None else np.asarray(errors[k]))
              for k in arrays]
    return LayerBounds(forward, {}, bounds[0] if bounds else None, tuple(bounds[1:]))
