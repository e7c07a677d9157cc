"""A sampled rounding error: each op's rounding, given a random sign, carried to the outputs
through the code's linearization (first-order Monte Carlo arithmetic).

The running bound (:mod:`.running`) carries ``|d out / d in|`` errors op by op: a worst case in
which every rounding pushes the same way. Through a loop that is ruinous: a recurrent layer's
step multiplies its state's error by ``|Jacobian|``, whose entries' absolute sums exceed 1 even
where the signed Jacobian contracts (an LSTM's gates do), so the bound grows geometrically with
the sequence (to 1e38 within 64 steps of a 128-wide LSTM, whose float32 error stays at 1e-7).
Here each op adds its rounding as :func:`~.running.own_rounding` sizes it, times an independent
random sign per element, and the ``jvp`` of each op carries the errors it receives, signs and
all; after ``K`` samples the root mean square ``sigma`` of an output's error estimates the spread
of its rounding error over summation orders. This is Monte Carlo arithmetic (Parker 1997,
verificarlo) to first order, in the policy's own model: errors of ``eps`` per operation
accumulating like a random walk. ``scan`` runs its body's rule step by step, with a fresh
sign per step.
"""
from __future__ import annotations

import functools

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from ._rules import array_leaves, trace_as_written
from .running import Unsupported, called_jaxpr, own_rounding

#: Samples drawn; ``sigma``'s relative spread is about ``1 / sqrt(2 * SAMPLES)``.
SAMPLES = 16


def _floating(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _error_dtype(x):
    return jnp.promote_types(jnp.result_type(x), jnp.float32)


def _bind(eqn, args):
    out = eqn.primitive.bind(*args, **eqn.params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _mix(x):
    """A uint32 hash (murmur3's finalizer): cheap to compile, unlike ``jax.random``'s threefry,
    which every op of the code would otherwise inline."""
    x = x ^ (x >> 16)
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def _fold(salt, i):
    """A new salt from ``salt`` and an int (an op's index, a step's)."""
    return _mix(salt ^ (jnp.asarray(i, jnp.uint32) * np.uint32(0x9E3779B9) + np.uint32(0x7F4A7C15)))


def _signs(salt, shape, dtype):
    """Independent random signs of ``shape``, a function of ``salt``."""
    index = jax.lax.iota(jnp.uint32, int(np.prod(shape, dtype=np.int64))).reshape(shape)
    bits = _mix(index ^ _mix(salt))
    return (1 - 2 * (bits >> 31).astype(jnp.int32)).astype(dtype)


def _linearized(eqn, vals, tans):
    """The op's outputs and the ``jvp`` of the errors it receives (``None`` where none)."""
    if all(t is None for t in tans):
        return _bind(eqn, vals), None
    tangents = tuple(np.zeros(np.shape(v), jax.dtypes.float0) if not _floating(v) else
                     jnp.zeros_like(v) if t is None else t.astype(jnp.result_type(v))
                     for v, t in zip(vals, tans))
    try:
        outs, touts = jax.jvp(lambda *a: _bind(eqn, a), tuple(vals), tangents)
    except NotImplementedError:
        raise Unsupported(eqn.primitive.name) from None
    return outs, [t.astype(_error_dtype(o)) if _floating(o) else None for o, t in zip(outs, touts)]


def _scan(eqn, vals, tans, salt):
    """A ``scan`` nested in traced code: the body's rule in a ``lax.scan`` whose carry holds
    values and errors (zeros for an exact floating carry, so that every step sees one
    structure), a salt per step."""
    p = eqn.params
    nc, nk = p["num_consts"], p["num_carry"]
    body = p["jaxpr"]
    consts, const_tans = vals[:nc], tans[:nc]

    def zero(v, t):
        return jnp.zeros(np.shape(v), _error_dtype(v)) if t is None and _floating(v) else t

    carry = (list(vals[nc:nc + nk]), [zero(v, t) for v, t in zip(vals[nc:nc + nk], tans[nc:nc + nk])])

    def step(carry, x):
        (c, ct), (xv, xt, i) = carry, x
        outs, otans = _run(body.jaxpr, body.consts, consts + c + xv, const_tans + ct + xt,
                           _fold(salt, i))
        new_ct = [None if like is None else jnp.zeros_like(like) if t is None else
                  jnp.broadcast_to(t, np.shape(like)).astype(like.dtype)
                  for t, like in zip(otans[:nk], ct)]
        return (outs[:nk], new_ct), (outs[nk:], otans[nk:])

    xs = (list(vals[nc + nk:]), list(tans[nc + nk:]), jnp.arange(p["length"]))
    (c, ct), (ys, yt) = jax.lax.scan(step, carry, xs, length=p["length"], reverse=p["reverse"],
                                     unroll=p["unroll"])
    return c + ys, ct + yt


def _extremum(eqn, vals, tans):
    """``max``/``min`` perturbed exactly, not linearized, so that an error crossing the kink
    (a ReLU's input within rounding of 0) is carried: ``max(a + t_a, b + t_b) - max(a, b)``,
    written with ``d = a - b`` so that small errors are not lost to ``a``'s rounding."""
    a, b = vals
    ta, tb = (jnp.zeros(np.shape(v), _error_dtype(v)) if t is None else t for v, t in zip(vals, tans))
    if eqn.primitive.name == "min":
        a, b, ta, tb = -a, -b, -ta, -tb
    d = jnp.where(a == b, 0, a - b).astype(ta.dtype)       # -inf - -inf: equal, not NaN
    out = jnp.where(d >= 0, jnp.maximum(ta, tb - d), jnp.maximum(d + ta, tb))
    return _bind(eqn, vals), [-out if eqn.primitive.name == "min" else out]


def _eqn(eqn, vals, tans, salt):
    """One equation's values and errors: the errors it receives, linearized, plus its own
    rounding with random signs."""
    name = eqn.primitive.name
    if name == "scan":
        return _scan(eqn, vals, tans, salt)
    closed = called_jaxpr(eqn)
    if closed is not None:
        return _run(closed.jaxpr, closed.consts, vals, tans, salt)
    if name in ("max", "min") and any(t is not None for t in tans) and all(map(_floating, vals)):
        return _extremum(eqn, vals, tans)
    outs, touts = _linearized(eqn, vals, tans)
    touts = touts or [None] * len(outs)
    result = []
    for j, (o, t, own) in enumerate(zip(outs, touts, own_rounding(eqn, vals, outs))):
        if own is not None:
            own = own * _signs(_fold(salt, j), np.shape(o), own.dtype)
        if t is not None:       # an inf or NaN result (log(0)) carries no error: 0 * inf is NaN
            t = jnp.where(jnp.isfinite(o), t, jnp.zeros((), t.dtype))
        result.append(own if t is None else t if own is None else t + own)
    return outs, result


def _run(jaxpr, consts, vals, tans, salt):
    """Values and errors of a jaxpr's outputs (traced: inside a compiled stretch or step), each
    equation with its own salt."""
    env = {}

    def read(v):
        return (v.val, None) if isinstance(v, jcore.Literal) else env[v]

    for var, c in zip(jaxpr.constvars, consts):
        env[var] = (c, None)
    for var, v, t in zip(jaxpr.invars, vals, tans):
        env[var] = (v, t)
    for i, eqn in enumerate(jaxpr.eqns):
        ins = [read(v) for v in eqn.invars]
        outs, otans = _eqn(eqn, [v for v, _ in ins], [t for _, t in ins], _fold(salt, i))
        for var, o, t in zip(eqn.outvars, outs, otans):
            env[var] = (o, t)
    got = [read(v) for v in jaxpr.outvars]
    return [v for v, _ in got], [t for _, t in got]


# The driver. Compiling a recurrent layer's code whole costs seconds per layer: every scan's
# body (a layer's two directions, each layer, each again in a backward pass) compiles once more.
# So the driver runs the code in pieces: each stretch of equations between scans as one compiled
# function, each scan step by step in Python with one compiled step per distinct body, shared by
# every scan that has it. The samples are a leading axis of every error, one salt per sample.

_COMPILED: dict = {}


def _cache(key, fn) -> None:
    if len(_COMPILED) >= 256:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = fn


def _has_scan(jaxpr) -> bool:
    return any(e.primitive.name == "scan" or (called_jaxpr(e) is not None
                                              and _has_scan(called_jaxpr(e).jaxpr)) for e in jaxpr.eqns)


def _read(env, v):
    return (v.val, None) if isinstance(v, jcore.Literal) else env[v]


def _text(eqns, reads) -> str:
    """A stretch's equations as text, with its variables numbered by first use: equal texts
    compute the same thing (the compiled function's cache key)."""
    names = {v: f"in{k}:{v.aval}" for k, v in enumerate(reads)}
    lines = []
    for e in eqns:
        ins = [f"{v.val!r}:{v.aval}" if isinstance(v, jcore.Literal) else names[v] for v in e.invars]
        names.update((v, f"v{len(names)}:{v.aval}") for v in e.outvars)
        lines.append(f"{[names[v] for v in e.outvars]} = {e.primitive.name}{e.params} {ins}")
    return "\n".join(lines)


def _segment(eqns, indices, salts, env) -> None:
    """Run a stretch of equations without scans as one compiled, sample-vectorized function
    (cached by its text, so that running the same code again compiles nothing)."""
    defined = {v for e in eqns for v in e.outvars}
    reads = list(dict.fromkeys(v for e in eqns for v in e.invars
                               if not isinstance(v, jcore.Literal) and v not in defined))
    writes = [v for e in eqns for v in e.outvars]
    tans = [env[v][1] for v in reads]
    key = ("segment", _text(eqns, reads), tuple(indices), tuple(t is None for t in tans))
    if key not in _COMPILED:
        def one(vals, tans, salt):
            local = dict(zip(reads, zip(vals, tans)))
            for i, e in zip(indices, eqns):
                ins = [_read(local, v) for v in e.invars]
                outs, otans = _eqn(e, [x for x, _ in ins], [t for _, t in ins], _fold(salt, i))
                local.update(zip(e.outvars, zip(outs, otans)))
            return [local[v][0] for v in writes], [local[v][1] for v in writes]

        _cache(key, jax.jit(jax.vmap(one, in_axes=(None, 0, 0), out_axes=(None, 0))))
    outs, otans = _COMPILED[key]([env[v][0] for v in reads], tans, salts)
    env.update(zip(writes, zip(outs, otans)))


def _step(body, nc: int, nk: int, pattern: tuple):
    """The compiled step ``i`` of a scan with this ``body``: from the scan's constants, carry
    and full ``xs`` (errors: a leading samples axis), slice ``i`` of the ``xs``; the new carry,
    and the stacked outputs' buffers with slice ``i`` written. ``pattern``: which operands have
    errors."""
    key = ("step", str(body.jaxpr), nc, nk, pattern)
    if key not in _COMPILED:

        def step(body_consts, vals, tans, ys, yts, i, salts):
            vals = vals[:nc + nk] + [jax.lax.dynamic_index_in_dim(v, i, 0, False) for v in vals[nc + nk:]]
            tans = tans[:nc + nk] + [None if t is None else jax.lax.dynamic_index_in_dim(t, i, 1, False)
                                     for t in tans[nc + nk:]]
            outs = jcore.jaxpr_as_fun(jcore.ClosedJaxpr(body.jaxpr, body_consts))(*vals)

            def one(tans, salt):
                _, otans = _run(body.jaxpr, body_consts, vals, tans, _fold(salt, i))
                return ([None if like is None else jnp.zeros_like(like) if t is None else
                         jnp.broadcast_to(t, np.shape(like)).astype(like.dtype)
                         for t, like in zip(otans[:nk], tans[nc:nc + nk])], otans[nk:])

            carried, oyts = jax.vmap(one)(tans, salts)
            ys = [jax.lax.dynamic_update_index_in_dim(b, o.astype(b.dtype), i, 0)
                  for b, o in zip(ys, outs[nk:])]
            yts = [None if b is None else jax.lax.dynamic_update_index_in_dim(
                b, jnp.zeros(b.shape[:1] + b.shape[2:], b.dtype) if t is None else t.astype(b.dtype), i, 1)
                for b, t in zip(yts, oyts)]
            return list(outs[:nk]), carried, ys, yts

        _cache(key, jax.jit(step, donate_argnums=(3, 4)))
    return _COMPILED[key]


def _scan_loop(eqn, vals, tans, salts):
    """A ``scan`` run step by step with its body's compiled :func:`_step`."""
    p = eqn.params
    nc, nk, length, body = p["num_consts"], p["num_carry"], p["length"], p["jaxpr"]
    k = salts.shape[0]
    tans = list(tans)
    for j in range(nc, nc + nk):  # a floating carry always has errors: one structure per step
        if tans[j] is None and _floating(vals[j]):
            tans[j] = jnp.zeros((k,) + np.shape(vals[j]), _error_dtype(vals[j]))
    step = _step(body, nc, nk, tuple(t is None for t in tans))
    outs_aval = body.out_avals[nk:]  # the stacked outputs' buffers, errors for each
    ys = [jnp.zeros((length,) + a.shape, a.dtype) for a in outs_aval]
    yts = [jnp.zeros((k, length) + a.shape, _error_dtype(a)) for a in outs_aval]
    vals, carry_t = list(vals), tans[nc:nc + nk]
    for i in (reversed(range(length)) if p["reverse"] else range(length)):
        carry, carry_t, ys, yts = step(body.consts, vals, tans[:nc] + carry_t + tans[nc + nk:], ys, yts,
                                       np.int32(i), salts)
        vals[nc:nc + nk] = carry
    return vals[nc:nc + nk] + ys, carry_t + yts


def _drive(jaxpr, consts, vals, tans, salts):
    """The driver's run of a jaxpr: stretches between scans compiled, scans stepped."""
    env = {}
    env.update((v, (c, None)) for v, c in zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, zip(vals, tans)))
    stretch: list = []

    def flush():
        if stretch:
            _segment([e for _, e in stretch], [i for i, _ in stretch], salts, env)
            stretch.clear()

    for i, eqn in enumerate(jaxpr.eqns):
        closed = called_jaxpr(eqn)
        if eqn.primitive.name == "scan" and eqn.params["length"] > 0:
            run = functools.partial(_scan_loop, eqn)
        elif closed is not None and _has_scan(closed.jaxpr):
            run = functools.partial(lambda c, v, t, s: _drive(c.jaxpr, c.consts, v, t, s), closed)
        else:
            stretch.append((i, eqn))
            continue
        flush()
        ins = [_read(env, v) for v in eqn.invars]
        outs, otans = run([x for x, _ in ins], [t for _, t in ins], _fold(salts, i))
        env.update(zip(eqn.outvars, zip(outs, otans)))
    flush()
    got = [_read(env, v) for v in jaxpr.outvars]
    return [v for v, _ in got], [t for _, t in got]


def sampled_error(fn, *args, samples: int = SAMPLES, seed: int = 0):
    """``(outputs, sigma)`` of ``fn(*args)``: its outputs and, for each array output, the root
    mean square of ``samples`` sampled first-order rounding errors (the module docstring), an
    array of its shape (zeros where the output is exact).

    **Arguments:**

    - ``fn``: a jax-traceable function.
    - ``*args``: its arguments, pytrees whose array leaves are taken as exact; other leaves are
      passed as they are.
    - ``samples``, ``seed``: how many sign draws, and the seed they come from (the result is
      reproducible).

    Raises :class:`~.running.Unsupported` naming an op without a linearization.
    """
    leaves, tree, where = array_leaves(args)
    inputs = [jnp.asarray(leaves[i]) for i in where]
    closed, shape = trace_as_written(fn, leaves, tree, where, inputs)
    salts = _mix(jnp.arange(samples, dtype=jnp.uint32) + np.uint32(seed * samples))
    outs, tans = _drive(closed.jaxpr, closed.consts, inputs, [None] * len(inputs), salts)
    sigma = [jnp.zeros(np.shape(o), _error_dtype(o) if _floating(o) else jnp.float32) if t is None
             else jnp.broadcast_to(jnp.sqrt(jnp.mean(jnp.square(t), axis=0)), np.shape(o))
             for o, t in zip(outs, tans)]
    structure = jax.tree_util.tree_structure(shape)
    return (jax.tree_util.tree_unflatten(structure, outs), jax.tree_util.tree_unflatten(structure, sigma))
