"""Compare a torch module with its jaxconv twin, layer by layer, with tolerances from the policy.

How it works (one forward on each side, plus local re-runs of single jaxconv layers):

1. torch runs once with forward pre-hooks and hooks on every named module, recording each
   call's inputs, output, the enclosing call and (with ``grads``) the gradient of the loss with
   respect to the output.
2. jaxconv runs once, free-running, under ``jax.vjp`` (and ``jax.jit``) with every named
   submodule intercepted: each instance's ``__class__`` is swapped for a cached subclass whose
   ``__call__`` records the output, then restored. Recordings leave the trace as outputs, so no
   tracer escapes. Train-mode BatchNorm buffers are updated once, as torch's are.
3. Each recorded torch call is checked *locally*: a leaf layer (a clone taken before step 2)
   runs on torch's recorded input; a composite module runs its own code with each child call
   answered by torch's recorded output of that child, and the inputs its code hands to the
   children are checked too (this catches a wrong flatten order or a wrong ``F.pad`` in
   ``forward``). Each check's tolerance comes from :mod:`equivalence.tolerance`.
4. With ``grads``: the loss is ``sum(output * cotangent)`` with a cotangent drawn from the
   seed; gradients for the inputs and every parameter (torch names) are compared.
"""
from __future__ import annotations

import contextlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.nn import named_children, named_modules
from jaxconv.trace import intercept

from . import tolerance as tol_mod
from ._torch import require_torch
from .report import Report, Row
from .state_dict import named_variables

# ----------------------------------------------------------------------------------------
# helpers


def _tree_np(value, torch):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, (tuple, list)):
        return type(value)(_tree_np(v, torch) for v in value)
    if isinstance(value, dict):
        return {k: _tree_np(v, torch) for k, v in value.items()}
    return value


def _tree_jnp(value, fn=lambda a: a):
    if isinstance(value, np.ndarray):
        return jnp.asarray(fn(value))
    if isinstance(value, (tuple, list)):
        return type(value)(_tree_jnp(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _tree_jnp(v, fn) for k, v in value.items()}
    return value


def _arrays(value):
    """The array leaves of a nested value, in order."""
    if isinstance(value, (np.ndarray, jax.Array)):
        return [value]
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _arrays(v)]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _arrays(v)]
    return []


def _main(value):
    arrays = _arrays(value)
    return arrays[0] if arrays else None


def _kind(module) -> str:
    names = {c.__name__ for c in type(module).__mro__}
    if names & {"_ConvNd", "Linear", "LazyLinear"}:
        return "dot"
    if names & {"_BatchNorm"} or (hasattr(module, "running_mean") and hasattr(module, "use_running_average")):
        return "batchnorm"
    return "other"


@contextlib.contextmanager
def _pinned_precision(torch):
    """float32 at full precision on both sides; restores torch's flags afterwards."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
           torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        with jax.default_matmul_precision("highest"):
            yield {"torch.backends.cuda.matmul.allow_tf32": False,
                   "torch.backends.cudnn.allow_tf32": False,
                   "torch.float32_matmul_precision": "highest",
                   "jax_default_matmul_precision": "highest",
                   "jaxconv.conv_precision": "HIGHEST"}
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old[:2]
        torch.set_float32_matmul_precision(old[2])


def _set_mode(jax_module, train: bool):
    if hasattr(jax_module, "train") and hasattr(jax_module, "eval"):
        jax_module.train() if train else jax_module.eval()
    else:  # pragma: no cover - every nnx.Module has train/eval
        jax_module.set_attributes(use_running_average=not train, deterministic=not train,
                                  raise_if_not_found=False)


# ----------------------------------------------------------------------------------------
# torch side


class _Call:
    __slots__ = ("index", "name", "type", "args", "kwargs", "out", "parent", "grad_out",
                 "input_ids", "done", "order")

    def __init__(self, index, name, type_, args, kwargs, parent, input_ids):
        self.index, self.name, self.type = index, name, type_
        self.args, self.kwargs, self.parent = args, kwargs, parent
        self.out = self.grad_out = None
        self.input_ids = input_ids
        self.done = False
        self.order = -1


def _run_torch(torch, module, inputs, cotangent_seed, grads):
    calls, stack, handles, finished = [], [], [], [0]
    names = dict((id(m), n) for n, m in module.named_modules())
    model_inputs = [torch.from_numpy(x.copy()).requires_grad_(grads) for x in inputs]
    input_ids = {id(x): i for i, x in enumerate(model_inputs)}

    def pre(mod, args, kwargs):
        ids = [input_ids.get(id(a)) for a in args]
        c = _Call(len(calls), names[id(mod)], type(mod).__name__, _tree_np(args, torch),
                  _tree_np(kwargs, torch), stack[-1] if stack else None, ids)
        calls.append(c)
        stack.append(c.index)

    def post(mod, args, kwargs, out):
        c = calls[stack.pop()]
        c.out = _tree_np(out, torch)
        c.done, c.order = True, finished[0]
        finished[0] += 1
        if grads and isinstance(out, torch.Tensor) and out.requires_grad:
            def store(g, c=c):
                c.grad_out = g.detach().cpu().numpy().copy() if c.grad_out is None else \
                    c.grad_out + g.detach().cpu().numpy()
            out.register_hook(store)

    for _, m in module.named_modules():
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True))
    try:
        out = module(*model_inputs)
    finally:
        for h in handles:
            h.remove()
    out_np = _tree_np(out, torch)
    result = {"calls": calls, "out": out_np, "param_grads": {}, "input_grads": []}
    main = _main(out_np)
    cot = None
    if grads:
        cot = np.random.default_rng(cotangent_seed).standard_normal(main.shape).astype(main.dtype)
        module.zero_grad(set_to_none=True)
        (_main_t(out, torch) * torch.from_numpy(cot)).sum().backward()
        result["param_grads"] = {n: p.grad.detach().cpu().numpy().copy()
                                 for n, p in module.named_parameters() if p.grad is not None}
        result["input_grads"] = [x.grad.detach().cpu().numpy().copy() if x.grad is not None
                                 else np.zeros(x.shape, x.detach().numpy().dtype) for x in model_inputs]
    result["cotangent"] = cot
    result["buffers"] = {n: b.detach().cpu().numpy().copy() for n, b in module.named_buffers()}
    return result


def _main_t(out, torch):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return _main_t(out[0], torch)
    if isinstance(out, dict):
        return _main_t(next(iter(out.values())), torch)
    raise TypeError(f"the torch module's output has no tensor: {type(out).__name__}")


# ----------------------------------------------------------------------------------------
# jaxconv free-running side


def _run_jax(module, inputs, cotangent, grads, jit):
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
        return _main(out), (out, calls, new_rest)

    fn = jax.jit(forward) if jit else forward
    inputs = [jnp.asarray(x) for x in inputs]
    if grads:
        _, vjp, (out, calls, new_rest) = jax.vjp(fn, params, inputs, has_aux=True)
        g_params, g_inputs = vjp(jnp.asarray(cotangent))
        gm = nnx.merge(graphdef, g_params, rest)
        param_grads = {n: np.asarray(v[...]) for n, v in named_variables(gm)
                       if isinstance(v, nnx.Param)}
        input_grads = [np.asarray(g) for g in g_inputs]
    else:
        _, (out, calls, new_rest) = fn(params, inputs)
        param_grads, input_grads = {}, []
    nnx.update(module, new_rest)
    return {"out": out, "calls": list(zip(names, calls)), "param_grads": param_grads, "input_grads": input_grads}


# ----------------------------------------------------------------------------------------
# local checks


def _bn_stats(tmod, x, train):
    axes = (0,) + tuple(range(2, x.ndim)) if x.ndim > 1 else (0,)
    shape = [1] * x.ndim
    shape[1 if x.ndim > 1 else 0] = -1
    x64 = x.astype(np.float64)
    use_batch = train or getattr(tmod, "running_mean", None) is None
    if use_batch:
        mean, var = x64.mean(axes), x64.var(axes)
        m = x.size // max(x.shape[1 if x.ndim > 1 else 0], 1)
    else:
        mean = tmod.running_mean.detach().cpu().numpy().astype(np.float64)
        var = tmod.running_var.detach().cpu().numpy().astype(np.float64)
        m = 0
    w = np.ones_like(mean) if getattr(tmod, "weight", None) is None else \
        tmod.weight.detach().cpu().numpy().astype(np.float64)
    b = np.zeros_like(mean) if getattr(tmod, "bias", None) is None else \
        tmod.bias.detach().cpu().numpy().astype(np.float64)
    sigma = np.sqrt(var + tmod.eps)
    r = lambda a: np.reshape(a, shape)  # noqa: E731
    return {"mean": r(mean), "sigma": r(sigma), "w": r(w), "b": r(b), "m": m, "axes": axes,
            "xhat": (x64 - r(mean)) / r(sigma)}


def _fan(sub, out_shape, for_input: bool) -> int:
    """Terms summed per element by a dot-product layer (forward/weight-grad: fan-in; input-grad: fan-out)."""
    w = sub.weight[...]
    if for_input:
        inner = getattr(sub, "in_channels", None) or getattr(sub, "in_features", None) or w.shape[1]
    else:
        inner = getattr(sub, "out_channels", None) or getattr(sub, "out_features", None) or w.shape[0]
    return max(int(w.size) // max(int(inner), 1), 1)


def _leaf_run(graphdef, params, rest, args, g):
    """A leaf layer on its inputs and on absolute values, and (``g`` given) both backward passes."""
    def run(p, a):
        return _main(nnx.merge(graphdef, p, jax.tree.map(lambda v: v, rest))(*a))

    absp, absa = jax.tree.map(jnp.abs, params), jax.tree.map(jnp.abs, args)
    out = {"y": run(params, args), "s": run(absp, absa)}
    if g is not None:
        _, vjp = jax.vjp(run, params, args)
        out["gp"], out["ga"] = vjp(g)
        _, vjp = jax.vjp(run, absp, absa)
        out["sp"], out["sa"] = vjp(jnp.abs(g))
    return out


def _all_leaves(items):
    """Every leaf check of a comparison in one ``jax.jit`` (one compilation instead of one per
    layer). ``items``: ``[(graphdef, params, rest, args, g)]``."""
    graphdefs = [it[0] for it in items]

    def f(dynamic):
        return [_leaf_run(gd, *dyn) for gd, dyn in zip(graphdefs, dynamic)]

    return jax.jit(f)([it[1:] for it in items])


def _named_params(graphdef, state, rest):
    gm = nnx.merge(graphdef, state, rest)
    return {n: np.asarray(v[...]) for n, v in named_variables(gm) if isinstance(v, nnx.Param)}


def _leaf_prepare(sub, call, grads):
    """``(graphdef, params, rest, args, g)`` for :func:`_leaf_run` on torch's recorded input."""
    args = tuple(call.args)
    if call.kwargs or not all(isinstance(a, np.ndarray) for a in args):
        raise TypeError(f"{call.name}: only array positional inputs are supported, got "
                        f"{[type(a).__name__ for a in args]} and kwargs {list(call.kwargs)}")
    graphdef, params, rest = nnx.split(nnx.clone(sub), nnx.Param, ...)
    g = jnp.asarray(call.grad_out) if grads and call.grad_out is not None else None
    return graphdef, params, rest, tuple(jnp.asarray(a) for a in args), g


def _leaf_check(sub, kind, call, tmod, train, prepared, res):
    """Interpret a leaf's :func:`_leaf_run` results: its output, the magnitude ``S`` and length
    ``n`` of the computation, and its local backward with magnitudes and lengths.

    Returns ``(y, (S, n), {param: (grad, S, n)}, (input grad, S, n))``.
    """
    graphdef, _, rest, args, g = prepared
    x = _main(call.args)
    y = np.asarray(res["y"])
    if kind == "batchnorm":
        st = _bn_stats(tmod, x, train)
        fwd = (np.abs(st["w"]) * (np.abs(x) + np.abs(st["mean"])) / st["sigma"] + np.abs(st["b"]), st["m"] + 4)
    elif kind == "dot":
        fwd = (np.asarray(res["s"]), _fan(sub, y.shape, False))
    else:
        fwd = (np.asarray(res["s"]), tol_mod.reduction_ratio(_arrays(call.args), y, len(args),
                                                             floor=tol_mod.ELEMENTWISE_N))
    if g is None:
        return y, fwd, {}, (None, None, None)
    g = np.asarray(g)
    gp = _named_params(graphdef, res["gp"], rest)
    gx = np.asarray(res["ga"][0])
    if kind == "batchnorm":
        ag, xh = np.abs(g), np.abs(st["xhat"])
        m_p = x.size // st["w"].size
        scales = {"weight": ((ag * xh).sum(st["axes"]), m_p), "bias": (ag.sum(st["axes"]), m_p)}
        if st["m"] > 0:
            sx = np.abs(st["w"]) / st["sigma"] * (ag + ag.mean(st["axes"], keepdims=True)
                                                  + xh * (xh * ag).mean(st["axes"], keepdims=True))
        else:
            sx = np.abs(st["w"]) / st["sigma"] * ag
        return y, fwd, {k: (v, *scales[k]) for k, v in gp.items()}, (gx, sx, st["m"] + 4)
    sp = _named_params(graphdef, res["sp"], rest)
    sx = np.asarray(res["sa"][0])
    if kind == "dot":
        n_w, n_x = g.size // max(y.shape[1] if y.ndim > 2 else y.shape[-1], 1), _fan(sub, y.shape, True)
        n_p = {k: (n_w if k == "weight" else g.size // max(v.size, 1)) for k, v in gp.items()}
    else:
        n_p = {k: tol_mod.reduction_ratio([g], v) for k, v in gp.items()}
        n_x = tol_mod.reduction_ratio([g], x)
    return y, fwd, {k: (gp[k], sp[k], n_p[k]) for k in gp}, (gx, sx, n_x)


def _glue_check(sub, call, children, scale: bool):
    """Run a composite's own code with its children answered by torch's recorded outputs.

    Returns ``(output, [(child call, args the code passed)], problems)``; with ``scale`` the
    run is on absolute values (inputs and children's outputs), giving the magnitudes.
    """
    fn = np.abs if scale else (lambda a: a)
    pending = list(children)
    seen, problems = [], []
    child_names = {}
    for cname, cmod in named_children(sub):
        child_names.setdefault(id(cmod), cname)
    prefix = f"{call.name}." if call.name else ""

    def hook_for(cname):
        def hook(self, cls, args, kwargs):
            full = prefix + cname
            if not pending or pending[0].name != full:
                want = pending[0].name if pending else "nothing"
                problems.append(f"jaxconv called {full!r} where torch called {want!r}")
                return cls.__call__(self, *args, **kwargs)
            c = pending.pop(0)
            seen.append((c, (args, kwargs)))
            return _tree_jnp(c.out, fn)
        return hook

    hooks = {m: hook_for(n) for n, m in named_children(sub)}
    with intercept(hooks):
        out = sub(*_tree_jnp(call.args, fn), **_tree_jnp(call.kwargs, fn))
    if pending:
        problems.append("torch called " + ", ".join(repr(c.name) for c in pending)
                        + " which jaxconv's code did not call")
    return out, seen, problems


# ----------------------------------------------------------------------------------------
# the public entry points


def _draw_inputs(inputs, seed, dtype, torch):
    rng = np.random.default_rng(seed)
    arrays, shapes = [], []
    for x in inputs:
        if isinstance(x, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in x):
            a = rng.standard_normal(tuple(int(d) for d in x)).astype(dtype or np.float32)
            origin = "drawn"
        elif isinstance(x, torch.Tensor):
            a, origin = x.detach().cpu().numpy().copy(), "given"
        else:
            a, origin = np.array(x), "given"
        if dtype is not None:
            a = a.astype(dtype)
        arrays.append(a)
        shapes.append({"shape": list(a.shape), "dtype": str(a.dtype), "origin": origin})
    return arrays, shapes


def compare(torch_module, jax_module, *inputs, grads: bool = False, seed: int = 0, dtype=None,
            train: bool | None = None, c: float = tol_mod.C, jit: bool = True,
            progress=None) -> Report:
    """Run a torch module and its jaxconv twin on the same inputs and check every layer.

    **Arguments:**

    - ``torch_module``: the reference ``torch.nn.Module``.
    - ``jax_module``: the jaxconv twin (an ``nnx.Module`` with the same submodule names).
    - ``*inputs``: torch tensors, arrays, or shapes (tuples of ints) for which standard-normal
      data is drawn from ``seed``.
    - ``grads``: also compare gradients of ``sum(output * cotangent)`` (a cotangent drawn from
      ``seed``) with respect to the inputs and every parameter, by torch name.
    - ``seed``: seed of the drawn inputs and cotangent (recorded in the report).
    - ``dtype``: cast the inputs to this dtype (drawn inputs are float32 by default).
    - ``train``: the mode both run in; ``None`` takes the torch module's ``training`` flag.
    - ``c``: the tolerance policy's constant (see :mod:`equivalence.tolerance`).
    - ``jit``: run the free-running jaxconv forward under one ``jax.jit``.
    - ``progress``: an optional callable ``progress(done, total, label)``.

    Train-mode BatchNorm buffers are updated once on each side, as one training forward would.
    Returns a :class:`~equivalence.report.Report`.
    """
    torch = require_torch("equivalence.compare")
    start = time.perf_counter()
    train = bool(torch_module.training) if train is None else bool(train)
    torch_module.train(train)
    _set_mode(jax_module, train)
    arrays, shapes = _draw_inputs(inputs, seed, dtype, torch)
    report_meta = {"seed": seed, "inputs": shapes, "train": train, "grads": grads,
                   "torch_type": type(torch_module).__name__, "jax_type": type(jax_module).__name__}
    before = nnx.clone(jax_module)
    jax_named = dict(named_modules(before))
    torch_named = dict(torch_module.named_modules())
    with _pinned_precision(torch) as precision:
        t = _run_torch(torch, torch_module, arrays, seed + 1, grads)
        j = _run_jax(jax_module, arrays, t["cotangent"], grads, jit)
        rows, structure = _check(t, j, jax_module, jax_named, torch_named, grads, train, c, progress)
    report_meta["precision"] = precision
    report_meta["seconds"] = round(time.perf_counter() - start, 3)
    return Report(rows=rows, meta=report_meta, c=c, structure=structure)


def _check(t, j, jax_module, jax_named, torch_named, grads, train, c, progress):
    rows, structure = [], []
    calls = [cl for cl in t["calls"] if cl.done]
    by_parent: dict = {}
    for cl in calls:
        by_parent.setdefault(cl.parent, []).append(cl)
    # free-running jaxconv outputs per name, in call order
    free: dict = {}
    for name, out in j["calls"]:
        free.setdefault(name, []).append(out)
    index_in_name: dict = {}
    ordinal = {}
    for cl in calls:  # call index per name (start order)
        ordinal[cl.index] = index_in_name.get(cl.name, 0)
        index_in_name[cl.name] = ordinal[cl.index] + 1
    for name, outs in free.items():
        if len(outs) != index_in_name.get(name, 0):
            structure.append(f"{name or '(root)'}: torch called it {index_in_name.get(name, 0)} "
                             f"time(s), jaxconv {len(outs)}")
    for name in index_in_name:
        if name not in free and name in jax_named:
            structure.append(f"{name or '(root)'}: torch called it, jaxconv did not")
    local_grads: dict = {}
    input_grads: dict = {}
    ordered = sorted(calls, key=lambda cl: cl.order)
    total = len(ordered)
    leaf_calls = [cl for cl in ordered if cl.name in jax_named and _main(cl.out) is not None
                  and not any(True for _ in named_children(jax_named[cl.name]))]
    prepared = {cl.index: _leaf_prepare(jax_named[cl.name], cl, grads) for cl in leaf_calls}
    if progress:
        progress(0, total, "compiling the layer checks")
    results = dict(zip(prepared, _all_leaves(list(prepared.values())))) if prepared else {}
    for k, cl in enumerate(ordered):
        if progress:
            progress(k, total, cl.name or "(root)")
        sub = jax_named.get(cl.name)
        tmod = torch_named.get(cl.name)
        label = cl.name or "(root)"
        if sub is None:
            structure.append(f"{label}: no jaxconv submodule of that name")
            continue
        expected = _main(cl.out)
        if expected is None:
            continue
        dtype = expected.dtype
        i = ordinal[cl.index]
        e2e = None
        if cl.name in free and i < len(free[cl.name]):
            fo = np.asarray(_main(free[cl.name][i]))
            if fo.shape == expected.shape:
                e2e = float(np.max(np.abs(fo.astype(np.float64) - expected), initial=0.0))
        children = by_parent.get(cl.index, [])
        has_children = any(True for _ in named_children(sub))
        call_label = f"{label}#{i}" if index_in_name[cl.name] > 1 else label
        if not has_children:
            kind = _kind(sub)
            actual, (s, n), gp, gx = _leaf_check(sub, kind, cl, tmod, train,
                                                 prepared[cl.index], results[cl.index])
            err = tol_mod.errors(actual, expected, tol_mod.tolerance(s, n, dtype, c))
            rows.append(Row("layer", call_label, cl.type, tuple(expected.shape), e2e=e2e,
                            check="local", **err))
            for pname, (gv, sp, np_) in gp.items():
                full = f"{cl.name}.{pname}" if cl.name else pname
                _accumulate(local_grads, full, gv, sp, np_)
            idx = cl.input_ids[0] if cl.input_ids else None
            if idx is not None and gx[0] is not None:
                _accumulate(input_grads, idx, *gx)
        else:
            local = nnx.clone(sub)
            out, seen, problems = _glue_check(local, cl, children, scale=False)
            out_abs, seen_abs, _ = _glue_check(nnx.clone(sub), cl, children, scale=True)
            operands = len(_arrays(cl.args)) + len(children)
            sizes = _arrays(cl.args) + [a for c_ in children for a in _arrays(c_.out)]
            worst, where = None, "output"
            targets = [(np.asarray(_main(out)), expected, np.asarray(_main(out_abs)), "output")]
            for (ccall, (a, kw)), (_, (a_s, kw_s)) in zip(seen, seen_abs):
                got, want, mag = _arrays((a, kw)), _arrays((ccall.args, ccall.kwargs)), _arrays((a_s, kw_s))
                for g_, w_, m_ in zip(got, want, mag):
                    targets.append((np.asarray(g_), w_, np.asarray(m_), f"input of {ccall.name}"))
            for got, want, mag, what in targets:
                n = tol_mod.reduction_ratio(sizes, want, operands)
                err = tol_mod.errors(got, want, tol_mod.tolerance(mag, n, want.dtype, c))
                if worst is None or err["ratio"] > worst["ratio"]:
                    worst, where = err, what
            note = "; ".join(problems)
            if where != "output" and worst["ratio"] > 1:
                note = (note + "; " if note else "") + f"worst at {where}"
            if problems:
                worst["ratio"] = float("inf")
            worst["note"] = note or worst.get("note", "")
            rows.append(Row("layer", call_label, cl.type, tuple(expected.shape), e2e=e2e,
                            check="glue", **worst))
    if progress:
        progress(total, total, "done")
    if grads:
        rows.extend(_grad_rows(t, j, local_grads, input_grads, c))
    if train:
        rows.extend(_buffer_rows(t, jax_module, jax_named, torch_named, calls, c))
    return rows, structure


def _accumulate(acc, key, grad, scale, n):
    """Sum a layer call's local gradient and its magnitude into ``acc[key]`` (shared layers)."""
    if key in acc:
        g0, s0, n0 = acc[key]
        acc[key] = (g0 + grad, s0 + scale, np.maximum(n0, n))
    else:
        acc[key] = (grad, scale, n)


def _grad_rows(t, j, local_grads, input_grads, c):
    """Gradient checks: each parameter's local gradient (its layer's backward on torch's input
    and cotangent, summed over calls) against torch's; ``e2e`` is jaxconv's own full backward."""
    rows = []
    wanted = [(name, want, "parameter", local_grads.get(name), j["param_grads"].get(name))
              for name, want in t["param_grads"].items()]
    wanted += [(f"input[{k}]", want, "input", input_grads.get(k),
                j["input_grads"][k] if k < len(j["input_grads"]) else None)
               for k, want in enumerate(t["input_grads"])]
    for name, want, typ, local, free in wanted:
        e2e = None
        if free is not None and np.shape(free) == want.shape:
            e2e = float(np.max(np.abs(np.asarray(free, np.float64) - want), initial=0.0))
        if local is None:
            if free is None:
                rows.append(Row("grad", name, typ, tuple(want.shape), max_abs=float("inf"),
                                max_rel=float("inf"), tol=float("nan"), ratio=float("inf"),
                                note="no jaxconv gradient of that name"))
                continue
            # used outside any leaf layer: only the end-to-end gradient exists
            err = tol_mod.errors(free, want, tol_mod.tolerance(np.abs(want), want.size, want.dtype, c))
            err["note"] = "end-to-end only (not used by a leaf layer)"
        else:
            got, s, n = local
            err = tol_mod.errors(got, want, tol_mod.tolerance(s, n, want.dtype, c))
        rows.append(Row("grad", name, typ, tuple(want.shape), e2e=e2e, check="local", **err))
    return rows


def _buffer_rows(t, jax_module, jax_named, torch_named, calls, c):
    """Train-mode BatchNorm buffers after the forward: torch's update against jaxconv's.

    Tolerance per channel: ``c * eps * sqrt(m) * (|previous| + S)`` with ``S = mean|x|`` for
    the running mean and ``mean((|x| + |mean|)^2)`` for the running variance, ``m`` the number
    of elements each statistic averages.
    """
    rows = []
    got_all = {n: np.asarray(v[...]) for n, v in named_variables(jax_module)
               if isinstance(v, nnx.BatchStat)}
    for name, tmod in torch_named.items():
        bn_calls = [cl for cl in calls if cl.name == name]
        if not bn_calls or getattr(tmod, "running_mean", None) is None or name not in jax_named:
            continue
        if not hasattr(tmod, "momentum"):
            continue
        before = {n: np.asarray(v[...]).astype(np.float64) for n, v in named_variables(jax_named[name])}
        s_mean, s_var, m = 0.0, 0.0, 1
        for cl in bn_calls:
            x = _main(cl.args).astype(np.float64)
            axes = (0,) + tuple(range(2, x.ndim)) if x.ndim > 1 else (0,)
            m = x.size // x.shape[1 if x.ndim > 1 else 0]
            mu = x.mean(axes, keepdims=True)
            s_mean = s_mean + np.abs(x).mean(axes)
            s_var = s_var + ((np.abs(x) + np.abs(mu)) ** 2).mean(axes) * m / max(m - 1, 1)
        prefix = f"{name}." if name else ""
        for buf, s in (("running_mean", s_mean), ("running_var", s_var), ("num_batches_tracked", 0.0)):
            full = prefix + buf
            want = t["buffers"].get(full)
            if want is None:
                continue
            got = got_all.get(full)
            if got is None:
                rows.append(Row("buffer", full, type(tmod).__name__, tuple(want.shape),
                                max_abs=float("inf"), max_rel=float("inf"), tol=float("nan"),
                                ratio=float("inf"), note="no jaxconv buffer of that name"))
                continue
            scale = np.abs(before.get(buf, 0.0)) + s
            dt = want.dtype if np.issubdtype(want.dtype, np.floating) else np.float32
            tol = tol_mod.tolerance(scale, m, dt, c) if buf != "num_batches_tracked" else 0.5
            err = tol_mod.errors(got, want, tol)
            rows.append(Row("buffer", full, type(tmod).__name__, tuple(want.shape), **err))
    return rows


def assert_equivalent(torch_module, jax_module, *inputs, **kwargs) -> Report:
    """:func:`compare`, raising ``AssertionError`` with the report's text when any check fails."""
    report = compare(torch_module, jax_module, *inputs, **kwargs)
    if not report.passed:
        raise AssertionError(report.to_text())
    return report
