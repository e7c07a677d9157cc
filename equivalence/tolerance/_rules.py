"""Rules of the running error bound (:mod:`.running`) that need more than a table entry: maxima
and minima (:func:`extremum`), and calls whose operands were rounded before the trace
(:data:`CALL_RULES`: ``interpolate``'s resampling weights), with the helpers every rule uses, and
the tracing of a function as written that the running and the sampled bounds share."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv.layout import plain_calls

from ._policy import ELEMENTWISE_N


def floating(x) -> bool:
    """Whether ``x`` is a floating (or complex) value."""
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def eps(x) -> float:
    """Machine epsilon of ``x``'s dtype."""
    return float(jnp.finfo(jnp.result_type(x)).eps)


def error_dtype(x):
    """The dtype an error bound of ``x`` is kept in: its own, at least float32."""
    return jnp.promote_types(jnp.result_type(x), jnp.float32)


def bind(eqn, args):
    """The outputs of equation ``eqn`` on ``args``, as a list."""
    out = eqn.primitive.bind(*args, **eqn.params)
    return list(out) if eqn.primitive.multiple_results else [out]


#: Maxima (+1) and minima (-1), whose error is that of the entries that could be the extremum.
EXTREMA = {"max": 1, "reduce_max": 1, "min": -1, "reduce_min": -1}


def extremum(eqn, vals, errs):
    """The error of a maximum (minimum): the largest error among the entries within their own
    and the winner's error of it, which could be the extremum of the exact values. An entry far
    from it passes nothing on (a logit masked to -1e4, whose rounding is 1e-3, does not move a
    softmax row's maximum). Elementwise for ``max``/``min``, along ``axes`` for the reductions."""
    sign = EXTREMA[eqn.primitive.name]
    (out,) = bind(eqn, vals)
    es = [jnp.zeros(np.shape(v), error_dtype(v)) if e is None else e.astype(error_dtype(v)) for v, e in zip(vals, errs)]
    if eqn.primitive.name.startswith("reduce"):
        axes = tuple(eqn.params["axes"])
        (x,), (e,) = vals, es
        best = jnp.expand_dims(out, axes)
        winner = x == best
        e_win = jnp.expand_dims(jnp.max(jnp.where(winner, e, 0), axis=axes), axes)
        near = winner | (sign * (best - x) <= e + e_win)
        return [jnp.max(jnp.where(near, e, 0), axis=axes)]
    winners = [v == out for v in vals]
    e_win = jnp.max(jnp.stack([jnp.where(w, e, 0) for w, e in zip(winners, es)]), axis=0)
    near = [w | (sign * (out - v) <= e + e_win) for w, v, e in zip(winners, vals, es)]
    return [jnp.max(jnp.stack([jnp.where(n, e, 0) for n, e in zip(near, es)]), axis=0)]


#: The steepest slope of torch's interpolation kernels as functions of the source coordinate:
#: Keys' cubic 1.35 (A = -0.75) and 1.39 (A = -0.5, antialiased), the triangle 1, Lanczos-3 1.3;
#: the antialiased filters, normalised to sum 1, are flatter by the scale when downsampling.
KERNEL_SLOPE = 1.5

#: How far torch's and jaxconv's source coordinates may differ, in ``eps |src|``: numpy rounds
#: ``scale * (i + 0.5)`` and then ``- 0.5`` (up to ``eps |src|``), torch's compiled kernel fuses
#: them into one rounding (half that).
COORDINATE_ULPS = 1.5


def resample_weights(vals, errs) -> list:
    """The operand errors of ``jaxconv.functional.interpolate``'s resampling call
    (``_resample``: the input, then per spatial axis an ``(out, in)`` weight matrix, or an index
    vector for the nearest modes).

    The matrices are computed before the trace, in float32 (float64 for float64 input), from
    each output row's source coordinate ``scale * (i + 0.5) - 0.5`` (``scale * i`` with
    ``align_corners``), at most ``(i + 1) in / out`` in size. The two sides' coordinates differ
    by up to :data:`COORDINATE_ULPS` ``eps`` of that, which moves each tap's weight by up to
    :data:`KERNEL_SLOPE` times as much: at 240 -> 224 pixels a hundred ulps of the weight, where
    treating the matrix as exact allows the sum's ``sqrt(in)``. So each tap, and each neighbour
    of a tap (a weight exactly 0 on one side need not be on the other), carries
    ``eps (COORDINATE_ULPS KERNEL_SLOPE (i + 1) in / out + ELEMENTWISE_N)``, the last term for
    the kernel polynomial's own rounding.
    """
    out = list(errs)
    for k, w in enumerate(vals[1:], start=1):
        if not floating(w) or jnp.ndim(w) != 2:
            continue
        rows, cols = w.shape
        coord = (jnp.arange(rows, dtype=error_dtype(w)) + 1) * cols / rows
        taps = w != 0
        near = taps | jnp.pad(taps[:, 1:], ((0, 0), (0, 1))) | jnp.pad(taps[:, :-1], ((0, 0), (1, 0)))
        e = eps(w) * (COORDINATE_ULPS * KERNEL_SLOPE * coord[:, None] + ELEMENTWISE_N) * near
        out[k] = e if errs[k] is None else errs[k] + e
    return out


#: Calls whose operands carry errors rounded before the trace, by the call's name.
CALL_RULES = {"_resample": resample_weights}


def array_leaves(args):
    """``(leaves, tree, where)``: ``args`` flattened, and the positions of its array leaves."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    return leaves, tree, [i for i, a in enumerate(leaves) if isinstance(a, (jax.Array, np.ndarray))]


def trace_as_written(fn, leaves, tree, where, inputs):
    """``jax.make_jaxpr(..., return_shape=True)`` of ``fn`` as a function of the arrays
    ``inputs`` put at positions ``where`` of its flattened arguments ``leaves`` / ``tree``.

    The code is traced as written (``plain_calls``), not as jaxconv's channels-last plan of it,
    under which, e.g., a bicubic resize's interpolation weights are constants whose rounding an
    error bound would not count."""
    def traced(*arrays):
        full = list(leaves)
        for i, a in zip(where, arrays):
            full[i] = a
        return fn(*jax.tree_util.tree_unflatten(tree, full))
    with plain_calls():
        return jax.make_jaxpr(traced, return_shape=True)(*inputs)
