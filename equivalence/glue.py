"""The local check of a composite module's own code, on torch's own values.

The module runs its own code with each child call answered by torch's recorded output of that
child (:func:`check_glue`); its output and the inputs its code hands to the children are
checked, which catches a wrong flatten order or a wrong ``F.pad`` in ``forward``. Tolerances:
the elementwise model, or where larger ``c`` times the running error bound of the code
(:mod:`equivalence.tolerance.running`); the parameters it uses in its own code get local
gradients (:func:`glue_grads`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.nn import named_children, named_modules
from jaxconv.trace import intercept

from . import tolerance
from ._tree import arrays, first_array, floating_arrays, to_device, to_jax
from .checks import Grad, _named_params
from .tolerance import running
from .tolerance.code import NO_RUNNING_BOUND


def _glue_values(call, children, fn=None) -> tuple:
    """``(args, kwargs, children's outputs)`` of a recorded composite call as jax values
    (``fn`` applied to every array first: ``np.abs`` for magnitudes)."""
    return to_jax(call.args, fn), to_jax(call.kwargs, fn), [to_jax(c.out, fn) for c in children]


def _glue_run(sub, call, children, values):
    """Run a composite's own code with its children answered by torch's recorded outputs.

    ``values``: :func:`_glue_values` (or traced stand-ins of the same structure). torch's
    children of a call may be grandchildren in jaxconv's tree (``self.blocks[0](x)``, a
    ModuleList never called itself); those are answered too, and a container called whole where
    torch called its members one by one runs its own code to reach them. Returns ``(output,
    [(child call, (args, kwargs) the code passed)], problems)``.
    """
    args, kwargs, answers = values
    pending = list(children)
    seen, problems = [], []
    prefix = f"{call.name}." if call.name else ""
    hooked = {m: n for n, m in named_children(sub)}
    below = dict(named_modules(sub))
    hooked.update({below[c.name[len(prefix):]]: c.name[len(prefix):] for c in children
                   if c.name[len(prefix):] in below})

    def hook_for(cname):
        def hook(self, cls, args, kwargs):
            full = prefix + cname
            if pending and pending[0].name.startswith(full + "."):  # a container of the next child
                return cls.__call__(self, *args, **kwargs)
            if not pending or pending[0].name != full:
                want = pending[0].name if pending else "nothing"
                problems.append(f"jaxconv called {full!r} where torch called {want!r}")
                return cls.__call__(self, *args, **kwargs)
            answer = answers[len(children) - len(pending)]
            seen.append((pending.pop(0), (args, kwargs)))
            return answer
        return hook

    with intercept({m: hook_for(n) for m, n in hooked.items()}):
        out = sub(*args, **kwargs)
    if pending:
        problems.append("torch called " + ", ".join(repr(c.name) for c in pending)
                        + " which jaxconv's code did not call")
    return out, seen, problems


def _glue_runs(sub, call, children):
    """The composite's code run on torch's values and on their absolute values, with the running
    error bounds (:mod:`equivalence.tolerance.running`) of the first run: ``(run, run on
    absolute values, bounds, problems)``, each run ``(output, [(child call, [arrays the code
    passed it])])``, the bounds ``[output, [per child [per array]]]`` or ``None`` where the code
    has an op without a rule, a call-structure problem, or cannot be traced.

    Both runs go through the one compiled program of the bound (jitted, shared by equal code at
    equal shapes: the twelve ``MultiheadAttention`` layers of ViT-B/16 compile once); code that
    cannot be traced runs eagerly op by op. Measured on vit_b_16 (40 composite calls, 2-core VM at
    load average ~6, cProfile): the composite checks took 9-13 s op by op (the eager runs, and an
    XLA compilation per op and shape), 4-8 s through the compiled program."""
    graphdef, state = nnx.split(nnx.clone(sub))
    traced: dict = {}

    def code(state, values):
        out, seen, problems = _glue_run(nnx.merge(graphdef, state), call, children, values)
        traced["children"], traced["problems"] = [child for child, _ in seen], problems
        return first_array(out), [arrays(passed) for _, passed in seen]

    bound = running.RunningBound(code)
    try:
        (out, passed), (e_out, e_passed) = bound(state, _glue_values(call, children))
        (out_abs, passed_abs), _ = bound(state, _glue_values(call, children, np.abs))
    except NO_RUNNING_BOUND:
        runs = [_glue_run(nnx.clone(sub), call, children, _glue_values(call, children, f)) for f in (None, np.abs)]
        (out, seen, problems), (out_abs, seen_abs, _) = runs
        return ((out, [(ch, arrays(p)) for ch, p in seen]), (out_abs, [(ch, arrays(p)) for ch, p in seen_abs]),
                None, problems)
    problems = traced["problems"]
    return ((out, list(zip(traced["children"], passed))), (out_abs, list(zip(traced["children"], passed_abs))),
            None if problems else [e_out, e_passed], problems)


def glue_floor(sub, torch_module, call, train: bool, c: float):
    """The tolerance a composite's own code gets beyond the elementwise model's, or ``None``:
    where its torch module is of a ``traced`` kind (timm's ``BatchNormAct2d`` computes its
    batch norm in its own code), that kind's forward bound on torch's recorded input."""
    kind = tolerance.kind_for(sub, torch_module)
    if not kind.traced or first_array(call.args) is None:
        return None
    layer = _traced_call(sub, torch_module, call, train)
    return kind.model(layer).forward.tolerance(layer.output.dtype, c, value=layer.output)


def _traced_call(sub, torch_module, call, train: bool, **backward) -> tolerance.LayerCall:
    """The :class:`~equivalence.tolerance.LayerCall` a ``traced`` kind's model reads for a
    composite: torch's module, recorded input and output, no magnitude."""
    return tolerance.LayerCall(module=sub, torch_module=torch_module, inputs=tuple(call.args),
                               output=first_array(call.out), magnitude=None, train=train, **backward)


def _finite(a) -> np.ndarray:
    """``a`` (a new float64 array) with non-finite entries (a bound that broke down) as 0."""
    a = np.array(a, np.float64)
    a[~np.isfinite(a)] = 0.0
    return a


def check_glue(sub, call, children, c: float, floor=None) -> dict:
    """Check a composite module's own code (see the module docstring): the worst of its output
    and the inputs it hands to its children, as :func:`~equivalence.tolerance.errors` with a
    ``note`` saying where; a call-structure problem fails the check. ``floor``
    (:func:`glue_floor`) raises the tolerance of every value of its shape."""
    (out, seen), (out_abs, seen_abs), bounds, problems = _glue_runs(sub, call, children)
    bound, child_bounds = bounds or (None, [])
    operands = len(arrays(call.args)) + len(children)
    sizes = arrays(call.args) + [a for child in children for a in arrays(child.out)]
    targets = [(first_array(out), first_array(call.out), first_array(out_abs), bound, "output")]
    for k, ((child, passed), (_, passed_abs)) in enumerate(zip(seen, seen_abs)):
        wanted = arrays((child.args, child.kwargs))
        bounds = child_bounds[k] if k < len(child_bounds) else [None] * len(wanted)
        for got, want, mag, e in zip(passed, wanted, passed_abs, bounds):
            targets.append((got, want, mag, e, f"input of {child.name}"))
    worst, where = None, "output"
    for got, want, mag, e, what in targets:
        n = tolerance.reduction_ratio(sizes, want, operands)
        tol = tolerance.tolerance(np.asarray(mag), n, want.dtype, c, rounding=want)
        if e is not None and np.shape(e) == np.shape(want):  # the running bound, where larger
            running_tol = _finite(e)
            running_tol *= c
            tol = np.maximum(tol, running_tol, out=running_tol)
        if floor is not None and np.shape(floor) == np.shape(want):
            tol = np.maximum(tol, floor)
        err = tolerance.errors(np.asarray(got), want, tol)
        if worst is None or err["ratio"] > worst["ratio"]:
            worst, where = err, what
    notes = problems + ([worst["note"]] if worst["note"] else [])
    if where != "output" and worst["ratio"] > 1:
        notes.append(f"worst at {where}")
    if problems:
        worst["ratio"] = float("inf")
    worst["note"] = "; ".join(notes)
    return worst


def glue_grads(sub, torch_module, call, children, child_input_grads: dict, train: bool) -> dict:
    """Local gradients of the parameters a composite uses in its own code (ConvNeXt's layer
    scale, the affine of timm's ``BatchNormAct2d``, ``MultiheadAttention``'s projections), as
    :class:`Grad` by the composite's names; ``{}`` where that cannot be done locally. The
    composite's local gradients of its positional inputs go into ``child_input_grads`` under its
    call's index (a list like :attr:`LeafResult.input_grads`), for its parent's check (calls are
    checked children first).

    The composite's code runs on torch's recorded inputs, its children answered by torch's
    outputs, under ``jax.vjp``: the cotangents of its floating outputs are torch's, that of each array a
    child gets positionally that child's local input gradient (``child_input_grads``; every
    child must have them). The bounds: the running error bound of that backward pass (the
    children's input gradients carrying their own bounds), or where larger, for a ``traced``
    kind its backward model with the cotangents of every value of the input's shape summed in
    absolute value (an upper bound of the one that reaches the normalization's output),
    otherwise the elementwise model's, the same run on absolute values with absolute cotangents."""
    x, g_outs = first_array(call.args), call.cotangents()
    if x is None or g_outs is None or not np.issubdtype(x.dtype, np.floating) or any(
            ch.index not in child_input_grads for ch in children):
        return {}
    prefix = f"{call.name}." if call.name else ""
    answered = {ch.name[len(prefix):] for ch in children}
    graphdef, params, rest = nnx.split(nnx.clone(sub), nnx.Param, ...)
    where = [i for i, a in enumerate(call.args) if isinstance(a, np.ndarray)]
    cots = [[(j, g) for j, g in enumerate(child_input_grads[ch.index]) if isinstance(ch.args[j], np.ndarray)]
            for ch in children]
    if any(g is None for pairs in cots for _, g in pairs):
        return {}

    def vjp_of(f):
        args, kwargs, answers = _glue_values(call, children, f)

        def grads_of(p, xs, g, cs):
            def run(p, xs):
                full = list(args)
                for i, a in zip(where, xs):
                    full[i] = a
                out, seen, _ = _glue_run(nnx.merge(graphdef, p, rest), call, children, (tuple(full), kwargs, answers))
                passed = [[ps[0][j] if j < len(ps[0]) else None for j, _ in pairs]
                          for (_, ps), pairs in zip(seen, cots)]
                return floating_arrays(out), passed

            (outs, passed), vjp = jax.vjp(run, p, xs)
            if [o.shape for o in outs] != [np.shape(h) for h in g] or len(passed) != len(cs) or any(
                    not isinstance(q, jax.Array) or np.shape(c) != q.shape for qs, ds in zip(passed, cs)
                    for q, c in zip(qs, ds)):
                raise _NoLocalGrad
            return vjp(([h.astype(o.dtype) for h, o in zip(g, outs)],
                        [[c.astype(q.dtype) for q, c in zip(qs, ds)] for qs, ds in zip(passed, cs)]))
        return grads_of

    def own_of(grads):
        return {n: v for n, v in _named_params(graphdef, grads, rest).items()
                if not any(n.startswith(f"{r}.") for r in answered)}

    xs = [to_device(call.args[i]) for i in where]
    values = [xs, [to_device(g) for g in g_outs], [[to_device(g.value) for _, g in pairs] for pairs in cots]]
    try:
        grads, x_grads = vjp_of(None)(params, *values)
    except _NoLocalGrad:
        return {}
    own = own_of(grads)
    child_errors = [g.bound.tolerance(g.value.dtype, 1.0) for pairs in cots for _, g in pairs]
    seeds = [None] * (len(jax.tree.leaves(params)) + len(xs) + len(g_outs)) + child_errors
    flat_cots = [np.asarray(g.value) for pairs in cots for _, g in pairs]
    abs_params = jax.tree.map(jnp.abs, params)
    abs_values = [[jnp.abs(a) for a in xs], [jnp.abs(g) for g in values[1]], [[jnp.abs(c) for c in cs] for cs in values[2]]]
    try:
        _, (e_grads, e_xs) = running.running_error(vjp_of(None), params, *values, errors=seeds)
        e_own, e_xs = own_of(e_grads), [_finite(e) for e in e_xs]
    except NO_RUNNING_BOUND:  # the absolute-valued backward: its own rounding, and the children's carried
        it = iter(child_errors)
        carried = [[to_device(next(it)) for _ in cs] for cs in values[2]]
        _, mags = vjp_of(np.abs)(abs_params, *abs_values)
        _, spread = vjp_of(np.abs)(abs_params, abs_values[0], [jnp.zeros_like(g) for g in values[1]], carried)
        e_own = {}
        e_xs = [tolerance.eps(a.dtype) * np.sqrt(tolerance.reduction_ratio([*g_outs, *flat_cots], a)) * np.asarray(m)
                + np.asarray(p) for m, p, a in zip(mags, spread, xs)]
    it = iter(tolerance.Bound(e / tolerance.eps(a.dtype), 1) for e, a in zip(e_xs, xs))
    child_input_grads[call.index] = [Grad(np.asarray(x_grads[where.index(i)]), next(it)) if i in where else None
                                     for i in range(len(call.args))]
    if not own:
        return {}
    kind = tolerance.kind_for(sub, torch_module)
    if kind.traced:
        cotangent = sum((np.abs(np.asarray(c, np.float64)) for c in [*g_outs, *flat_cots] if np.shape(c) == x.shape),
                        np.zeros(x.shape))
        layer = _traced_call(sub, torch_module, call, train, cotangent=cotangent, param_grads=own)
        bounds = kind.model(layer).params
    else:
        mags = own_of(vjp_of(np.abs)(abs_params, *abs_values)[0])
        bounds = {k: tolerance.Bound(mags[k], tolerance.reduction_ratio([*g_outs, *flat_cots], v)) for k, v in own.items()}
    return {k: Grad(v, _widest(bounds[k], e_own.get(k), v.dtype)) for k, v in own.items() if k in bounds}


class _NoLocalGrad(Exception):
    """The composite's code gives no array output, or hands a child something torch did not."""


def _widest(bound: tolerance.Bound, error, dtype) -> tolerance.Bound:
    """``bound``, or where a running error bound is larger that bound (as ``S`` with ``n = 1``)."""
    if error is None:
        return bound
    s = np.abs(np.asarray(bound.scale, np.float64)) * np.sqrt(np.maximum(np.asarray(bound.n, np.float64), 1.0))
    return tolerance.Bound(np.maximum(s, _finite(error) / tolerance.eps(dtype)), 1, error=bound.error)
