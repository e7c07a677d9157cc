"""Keep activations channels-last between layers: :func:`channels_last` defers every transpose.

jaxconv's ops take and return torch's ``(N, C, *spatial)`` layout and run their convolutions
channels-last, so a model's jaxpr holds a transpose into NHWC before each conv and one back
after it, with the BatchNorm, ReLU and residual adds in between in NCHW. XLA:CPU does not
move transposes through those ops, and each one costs a pass over the activation.

:func:`channels_last` re-runs a function's jaxpr with every transpose deferred: a value is
carried as ``(physical array, perm)`` with ``physical = transpose(logical, perm)``. A
transpose only changes the perm. Elementwise ops, reductions, windows, pads, slices,
concatenations, reshapes that keep groups of axes together, convolutions and matrix products
run on the physical array with their axis parameters renumbered. Any other op gets its operands
in their logical layout. Only axes are relabelled, so the values are those of the function,
up to the order of floating-point sums.
"""
from __future__ import annotations

import contextlib
import functools

import jax
import numpy as np
from jax import lax
from jax._src import config as _config
from jax.custom_derivatives import SymbolicZero, zero_from_primal
from jax.extend import core as jcore

from .functional import _lowering
from .functional._depthwise import depthwise_p

__all__ = ["channels_last", "plan_applies", "plain_calls"]

_ELEMENTWISE = frozenset("""
    abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clamp convert_element_type
    copy copy_p cos cosh div eq erf erf_inv erfc exp exp2 expm1 floor ge gt imag integer_pow
    is_finite le lgamma digamma log log1p logistic lt max min mul ne neg nextafter not or pow
    real reduce_precision rem round rsqrt select_n sign sin sinh sqrt square sub tan tanh xor
""".split())
_REDUCE = frozenset("reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor "
                    "argmax argmin".split())
_WINDOW = frozenset("reduce_window_sum reduce_window_max reduce_window_min reduce_window "
                    "select_and_gather_add select_and_scatter_add".split())
_WINDOW_PARAMS = ("window_dimensions", "window_strides", "padding", "base_dilation", "window_dilation")
_CUMULATIVE = frozenset("cumsum cumprod cummax cummin cumlogsumexp".split())
_INLINE = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr"}
_REMAT = frozenset({"remat2", "checkpoint"})


class _Value:
    """``phys = transpose(logical, perm)``; ``perm is None`` for the logical layout."""
    __slots__ = ("phys", "perm")

    def __init__(self, phys, perm=None):
        self.phys = phys
        self.perm = None if perm is None or tuple(perm) == tuple(range(len(perm))) else tuple(perm)


def _inverse(perm):
    return tuple(int(i) for i in np.argsort(perm))


def _in_layout(v, perm):
    """``v``'s physical array laid out as ``perm`` (``None``: logical)."""
    if v.perm == perm:
        return v.phys
    n = np.ndim(v.phys)
    src = _inverse(v.perm or range(n))
    q = tuple(src[a] for a in (perm or range(n)))
    return v.phys if q == tuple(range(n)) else lax.transpose(v.phys, q)


def _logical(v):
    return _in_layout(v, None)


def _renumber(perm, drop):
    """The perm left when physical axes ``drop`` are removed (logical axes renumbered)."""
    keep = [a for k, a in enumerate(perm) if k not in drop]
    rank = {a: i for i, a in enumerate(sorted(keep))}
    return tuple(rank[a] for a in keep)


def _bind(eqn, args, **params):
    out = eqn.primitive.bind(*args, **eqn.primitive.get_bind_params({**eqn.params, **params}))
    return list(out) if eqn.primitive.multiple_results else [out]


def _out_sharding(eqn, perm):
    """``{"sharding": ...}``: the logical output's sharding on ``Explicit`` mesh axes with its
    axes in the physical order ``perm``, for ops that take their output's sharding as a
    parameter (reshape, broadcast_in_dim); ``{}`` when nothing is sharded (the op as it was)."""
    sharding = getattr(eqn.outvars[0].aval, "sharding", None)
    spec = tuple(getattr(sharding, "spec", ())) + (None,) * len(perm)
    if "sharding" not in eqn.params or all(p is None for p in spec):
        return {}
    return {"sharding": sharding.update(spec=tuple(spec[a] for a in perm))}


def _physical_axes(perm, axes):
    """Logical axes ``axes`` (negative ones counted from the end) as sorted physical axes."""
    inv = _inverse(perm)
    return tuple(sorted(inv[a % len(perm)] for a in axes))


# ----------------------------------------------------------------------------- rules
def _permuted(eqn, ins, perm, names=()):
    """Ops whose per-axis parameters ``names`` follow the axes: elementwise ops (none),
    windows, pads, slices. Scalar operands pass as they are."""
    args = [_in_layout(v, perm) if np.ndim(v.phys) == len(perm) else v.phys for v in ins]
    params = {k: tuple(eqn.params[k][a] for a in perm) for k in names if eqn.params.get(k) is not None}
    return [_Value(o, perm) for o in _bind(eqn, args, **params)]


def _transpose(eqn, ins):
    """Deferred: only the perm changes."""
    (v,) = ins
    back = _inverse(eqn.params["permutation"])
    return [_Value(v.phys, tuple(back[a] for a in (v.perm or range(np.ndim(v.phys)))))]


def _reduce(eqn, ins, perm):
    axes = _physical_axes(perm, eqn.params["axes"])
    return [_Value(o, _renumber(perm, axes)) for o in _bind(eqn, [ins[0].phys], axes=axes)]


def _squeeze(eqn, ins, perm):
    dims = _physical_axes(perm, eqn.params["dimensions"])
    return [_Value(o, _renumber(perm, dims)) for o in _bind(eqn, [ins[0].phys], dimensions=dims)]


def _one_axis(key):
    def rule(eqn, ins, perm):
        args = [_in_layout(v, perm) for v in ins]
        return [_Value(o, perm) for o in _bind(eqn, args, **{key: _inverse(perm)[eqn.params[key]]})]
    return rule


def _rev(eqn, ins, perm):
    dims = _physical_axes(perm, eqn.params["dimensions"])
    return [_Value(o, perm) for o in _bind(eqn, [ins[0].phys], dimensions=dims)]


def _broadcast(eqn, ins, perm):
    (v,) = ins
    shape = eqn.params["shape"]
    if len(shape) != np.ndim(v.phys):
        return None  # rank-changing broadcasts of a deferred value: take the logical layout
    return [_Value(o, perm) for o in _bind(eqn, [v.phys], shape=tuple(shape[a] for a in perm),
                                           **_out_sharding(eqn, perm))]


def _groups(src, dst):
    """Split a reshape ``src -> dst`` into ``(src axes, dst axes)`` groups of equal size, or None."""
    if 0 in src or not src or not dst:
        return None
    groups, i, j = [], 0, 0
    while i < len(src) and j < len(dst):
        gi, gj, a, b = [i], [j], src[i], dst[j]
        i, j = i + 1, j + 1
        while a != b:
            if a < b and i < len(src):
                a, i = a * src[i], i + 1
                gi.append(i - 1)
            elif b < a and j < len(dst):
                b, j = b * dst[j], j + 1
                gj.append(j - 1)
            else:
                return None
        groups.append((gi, gj))
    # trailing size-1 axes join the last group
    groups[-1][0].extend(range(i, len(src)))
    groups[-1][1].extend(range(j, len(dst)))
    return groups


def _reshape(eqn, ins, perm):
    """A reshape that merges or splits groups of axes. Groups whose axes are not adjacent in the
    physical layout (a depth-to-space interleave) are first made adjacent, in the order of their
    first physical axes, rather than the whole value going back to the logical layout."""
    (v,) = ins
    src = eqn.invars[0].aval.shape
    dst = tuple(eqn.params["new_sizes"])
    groups = _groups(src, dst)
    if groups is None or eqn.params.get("dimensions") is not None:
        return None
    inv = _inverse(perm)
    groups = sorted(groups, key=lambda g: min(inv[a] for a in g[0]))
    adjacent = tuple(a for gi, _ in groups for a in gi)
    new_perm = [a for _, gj in groups for a in gj]
    shape = tuple(dst[a] for a in new_perm)
    return [_Value(o, new_perm) for o in _bind(eqn, [_in_layout(v, adjacent)], new_sizes=shape,
                                               **_out_sharding(eqn, new_perm))]


def _conv(eqn, ins, perm):
    lhs, rhs = ins
    dn = eqn.params["dimension_numbers"]
    il = _inverse(lhs.perm or range(np.ndim(lhs.phys)))
    ir = _inverse(rhs.perm or range(np.ndim(rhs.phys)))
    dn = lax.ConvDimensionNumbers(tuple(il[a] for a in dn.lhs_spec), tuple(ir[a] for a in dn.rhs_spec),
                                  dn.out_spec)
    return [_Value(o) for o in _bind(eqn, [lhs.phys, rhs.phys], dimension_numbers=dn)]


def _dot(eqn, ins, perm):
    """``dot_general`` on the physical operands; the output keeps their free axes' order.

    When only the right operand is deferred (a weight times an activation), the product is
    taken the other way round, so that the activation's layout carries through."""
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = ins
    swap = lhs.perm is None and rhs.perm is not None
    sides = [(lhs, lc, lb), (rhs, rc, rb)]
    if swap:
        sides.reverse()
    phys, contract, batch, free_logical, free_phys = [], [], [], [], []
    for v, c, b in sides:
        n = np.ndim(v.phys)
        p = v.perm or tuple(range(n))
        inv = _inverse(p)
        phys.append(v.phys)
        contract.append(tuple(inv[a] for a in c))
        batch.append(tuple(inv[a] for a in b))
        free = [a for a in range(n) if a not in c and a not in b]
        free_logical.append(free)
        free_phys.append([p[k] for k in range(n) if p[k] in free])
    nb = len(lb)
    # logical output: batch, lhs free (sorted), rhs free (sorted)
    offset = {0: nb, 1: nb + len(free_logical[0])}
    if swap:
        offset = {0: nb + len(free_logical[1]), 1: nb}
    new_perm = list(range(nb))
    for side in (0, 1):
        new_perm += [offset[side] + free_logical[side].index(a) for a in free_phys[side]]
    dn = ((contract[0], contract[1]), (batch[0], batch[1]))
    return [_Value(o, new_perm) for o in _bind(eqn, phys, dimension_numbers=dn)]


def _depthwise(eqn, ins, perm):
    """jaxconv's depthwise conv, on a channels-last input (``perm = (0, 2, .., n, 1)``) as such."""
    x, w = ins
    if x.perm != (0, *range(2, len(perm)), 1) or w.perm is not None or eqn.params["channels_last"]:
        return None
    return [_Value(o, x.perm) for o in _bind(eqn, [x.phys, w.phys], channels_last=True)]


def _barrier(eqn, ins, perm):
    return [_Value(o, v.perm) for o, v in zip(_bind(eqn, [v.phys for v in ins]), ins)]


_RULES = {
    "reshape": _reshape, "squeeze": _squeeze, "rev": _rev,
    "broadcast_in_dim": _broadcast, "conv_general_dilated": _conv, "dot_general": _dot,
    "optimization_barrier": _barrier, depthwise_p.name: _depthwise,
    "concatenate": _one_axis("dimension"), "split": _one_axis("axis"),
    "pad": functools.partial(_permuted, names=("padding_config",)),
    "slice": functools.partial(_permuted, names=("start_indices", "limit_indices", "strides")),
    **{n: _reduce for n in _REDUCE},
    **{n: functools.partial(_permuted, names=_WINDOW_PARAMS) for n in _WINDOW},
    **{n: _one_axis("axis") for n in _CUMULATIVE},
}


def _physical(jaxpr, consts, perms, out_perms):
    """``jaxpr`` as a function of physical arrays laid out as ``perms``, run deferred; the
    layouts of its outputs are left in the list ``out_perms`` when it is traced."""
    def body(*phys):
        outs = _run(jaxpr, consts, [_Value(p, q) for p, q in zip(phys, perms)])
        out_perms[:] = [o.perm for o in outs]
        return [o.phys for o in outs]
    return body


def _remat(eqn, ins):
    """A rematerialised block, run deferred inside ``jax.checkpoint`` with the same policy."""
    out_perms = []
    body = _physical(eqn.params["jaxpr"], (), [v.perm for v in ins], out_perms)
    outs = jax.checkpoint(body, prevent_cse=eqn.params["prevent_cse"],
                          policy=eqn.params["policy"])(*[v.phys for v in ins])
    return [_Value(o, q) for o, q in zip(outs, out_perms)]


def _custom_jvp(eqn, ins):
    """A ``custom_jvp`` function (``relu``, jaxconv's conv weight gradient, ...) run deferred,
    as a ``custom_jvp`` over the physical operands whose rule is the original rule, deferred."""
    call, jvp_jaxpr_fun = eqn.params["call_jaxpr"], eqn.params["jvp_jaxpr_fun"]
    n_consts = eqn.params["num_consts"]
    perms = [v.perm for v in ins]
    out_perms = []
    primal = _physical(call.jaxpr, call.consts, perms, out_perms)

    def rule(primals, tangents):  # as jax's own lift_jvp, on deferred values
        primals, tangents = primals[n_consts:], tangents[n_consts:]
        zeros = [type(t) is SymbolicZero for t in tangents]
        jaxpr, consts, out_zeros = jvp_jaxpr_fun.call_wrapped(*zeros)
        args = [_Value(p, q) for p, q in zip(primals, perms[n_consts:])]
        args += [_Value(t, q) for t, q, z in zip(tangents, perms[n_consts:], zeros) if not z]
        outs = iter(_run(jaxpr, consts, args))
        ys = [_in_layout(next(outs), q) for q in out_perms]
        dys = [zero_from_primal(y) if z else _in_layout(next(outs), q)
               for y, q, z in zip(ys, out_perms, out_zeros)]
        return ys, dys

    fun = jax.custom_jvp(primal)
    fun.defjvp(rule, symbolic_zeros=True)
    phys = [v.phys for v in ins]
    jax.eval_shape(primal, *phys)  # the output layout, before a JVP trace calls only the rule
    return [_Value(o, q) for o, q in zip(fun(*phys), out_perms)]


def _apply(eqn, ins):
    name = eqn.primitive.name
    if name in _INLINE:
        sub = eqn.params[_INLINE[name]]
        closed = sub if isinstance(sub, jcore.ClosedJaxpr) else jcore.ClosedJaxpr(sub, ())
        return _run(closed.jaxpr, closed.consts, ins)
    if name in _REMAT:
        return _remat(eqn, ins)
    if name == "custom_jvp_call" and any(v.perm is not None for v in ins):
        return _custom_jvp(eqn, ins)
    if name == "transpose":
        return _transpose(eqn, ins)
    perm = next((v.perm for v in ins if v.perm is not None), None)
    rule = _permuted if name in _ELEMENTWISE else _RULES.get(name)
    if perm is not None and rule is not None:
        out = rule(eqn, ins, perm)
        if out is not None:
            return out
    return [_Value(o) for o in _bind(eqn, [_logical(v) for v in ins])]


def _run(jaxpr, consts, args):
    env = {}

    def read(var):
        return _Value(var.val) if isinstance(var, jcore.Literal) else env[var]

    env.update((v, _Value(c)) for v, c in zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        env.update(zip(eqn.outvars, _apply(eqn, [read(v) for v in eqn.invars])))
    return [read(v) for v in jaxpr.outvars]


def _evaluate(f, args):
    """``f(*args)`` evaluated through its jaxpr with the transposes deferred."""
    flat, tree = jax.tree_util.tree_flatten(args)
    with plain_calls():  # already deferred: the modules inside need no plan of their own
        closed, out_shape = jax.make_jaxpr(lambda *leaves: f(*tree.unflatten(leaves)),
                                           return_shape=True)(*flat)
    out = [_logical(v) for v in _run(closed.jaxpr, closed.consts, [_Value(a) for a in flat])]
    return jax.tree_util.tree_structure(out_shape).unflatten(out)


def channels_last(f):
    """``f`` with every transpose deferred until an op needs the logical layout.

    The result computes ``f``'s values (up to the order of floating-point sums) and is
    meant to be jitted: ``jax.jit(channels_last(forward))``. Between jaxconv's layers the
    activations stay channels-last, as in a model written for NHWC. ``f`` takes and returns
    pytrees of arrays; with Flax NNX, split the module and merge it inside ``f``.

    The result is an ordinary traced function: ``jax.grad``, ``jax.vjp``, ``jax.jvp``,
    ``jax.vmap`` (and ``jacfwd``, ``hessian``) apply to the channels-last ops it runs, so
    derivatives taken outside carry the deferred layout too, as do those taken inside ``f``.
    ``jax.custom_jvp`` functions run deferred and keep their rules, ``jax.checkpoint`` blocks
    run deferred inside a checkpoint with the same policy; ``custom_vjp`` functions and control
    flow (``cond``, ``scan``, ``while``) run with their operands in the logical layout.
    """
    @functools.wraps(f)
    def wrapped(*args):
        return _evaluate(f, args)
    return wrapped


_PLAIN = _config.bool_state(
    name="jaxconv_plain_calls", default=False,
    help="jaxconv.layout.plain_calls: modules run without their own plan; part of jit's cache key.",
    include_in_jit_key=True, include_in_trace_context=True)


@contextlib.contextmanager
def plain_calls():
    """Within the block, jaxconv modules run as written, without a plan of their own: inside
    :func:`channels_last`, and under :func:`jaxconv.trace.intercept`, whose hooks need the
    modules themselves (a planned call runs a copy). Like ``lowering``, it is read when a
    function is traced and is part of jit's cache key."""
    with _PLAIN(True):
        yield


def plan_applies(args) -> bool:
    """Whether a jaxconv module called on ``args`` (a pytree) runs under :func:`channels_last`
    by itself: outside :func:`plain_calls`, when its arguments are being traced (``jax.jit``,
    ``grad``, ``vmap``, ...; eager calls run op by op, where a plan would only add tracing) and
    the CPU lowerings apply (:func:`jaxconv.functional.lowering`; XLA:GPU and TPU choose their
    layouts themselves)."""
    return (not _PLAIN.value and _lowering.measured()
            and any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(args)))
