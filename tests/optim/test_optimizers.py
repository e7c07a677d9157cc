"""jaxconv.optim's optimizers against torch.optim's single-tensor CPU path, step by step.

Each run takes ``STEPS`` updates of random, asymmetric gradients on a tree of parameters of
different shapes (a 0-d and a 1-d leaf among them) in both frameworks and compares parameters and
every per-parameter state by torch's name. float32 runs with JAX's defaults (x64 off: float32
scalars, the user's path); float64 runs hold the math to float64 rounding.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxconv.optim as jopt
from jaxconv.optim.optimizer import named_leaves

STEPS = 8


def make_params(rng):
    """A parameter tree (float64 numpy) with torch names a.weight, a.bias, b.0.kernel, scale."""
    return {"a": {"weight": rng.standard_normal((3, 4)), "bias": rng.standard_normal(4)},
            "b": [{"kernel": rng.standard_normal((2, 3, 2))}],
            "scale": np.asarray(rng.standard_normal() + 2.0)}


def make_grads(rng, params):
    """``STEPS`` gradient trees; each leaf has its own scale, so no two leaves look alike."""
    scales = {"a.weight": 0.3, "a.bias": 1.7, "b.0.kernel": 0.05, "scale": 0.8}
    leaves, treedef = jax.tree_util.tree_flatten(params)
    names = [n for n, _ in named_leaves(params)]
    return [treedef.unflatten([scales[n] * rng.standard_normal(np.shape(x)) + 0.1 * scales[n]
                               for n, x in zip(names, leaves)]) for _ in range(STEPS)]


def resolve(groups, params):
    """torch's list of group dicts (names) for our group spec (names or predicates)."""
    named = named_leaves(params)
    out = []
    for group in groups:
        sel = group["params"]
        names = [n for n, x in named if (sel(n, x) if callable(sel) else n in sel)]
        out.append(dict(group, params=names))
    return out


def run_torch(name, kwargs, params, grads, groups=None):
    """``STEPS`` steps of ``torch.optim.<name>`` (single-tensor path): parameters and state by name."""
    tensors = {n: torch.tensor(np.asarray(x), requires_grad=True) for n, x in named_leaves(params)}
    spec = resolve(groups, params) if groups else [{"params": list(tensors)}]
    tgroups = [dict(g, params=[tensors[n] for n in g["params"]]) for g in spec]
    opt = getattr(torch.optim, name)(tgroups, **kwargs, foreach=False)
    for grad in grads:
        for n, g in named_leaves(grad):
            tensors[n].grad = torch.tensor(np.asarray(g))
        opt.step()
    state = {n: {k: v.detach().numpy() for k, v in opt.state[t].items()} for n, t in tensors.items()}
    return {n: t.detach().numpy() for n, t in tensors.items()}, state


def run_jax(name, kwargs, params, grads, groups=None, dtype=np.float32, jit=False):
    """The same with ``jaxconv.optim.<name>``: eagerly (op by op, as torch; cheap for a grid of
    configurations) or all steps in one jit (a scan)."""
    tx = getattr(jopt, name)(groups, **kwargs)
    params = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
    stacked = jax.tree.map(lambda *g: jnp.asarray(np.stack(g), dtype), *grads)

    def run(params, stacked):
        def body(carry, grad):
            p, s = carry
            updates, s = tx.update(grad, s, p)
            return (optax.apply_updates(p, updates), s), None
        if jit:
            return jax.lax.scan(body, (params, tx.init(params)), stacked)[0]
        carry = (params, tx.init(params))
        for k in range(STEPS):
            carry = body(carry, jax.tree.map(lambda g: g[k], stacked))[0]
        return carry

    params, state = (jax.jit(run) if jit else run)(params, stacked)
    slots = {k: dict(named_leaves(v)) for k, v in state.slots.items()}
    return dict(named_leaves(params)), slots, state


def compare(name, kwargs, groups=None, dtype=np.float32, seed=0, jit=False):
    """Run both and compare parameters and torch's per-parameter state by name."""
    rng = np.random.default_rng(seed)
    params = make_params(rng)
    grads = make_grads(rng, params)
    cast = (lambda t: jax.tree.map(lambda x: np.asarray(x, dtype), t))
    theirs, tstate = run_torch(name, kwargs, cast(params), [cast(g) for g in grads], groups)
    if dtype == np.float32:
        with jax.enable_x64(False):
            ours, slots, state = run_jax(name, kwargs, params, grads, groups, dtype, jit)
    else:
        ours, slots, state = run_jax(name, kwargs, params, grads, groups, dtype, jit)
    # float32: a few ulp per step of each quantity; float64: the same math beyond rounding
    rtol, atol = (2e-6 * STEPS, 1e-6 * STEPS) if dtype == np.float32 else (1e-12, 1e-13)
    for n, value in theirs.items():
        np.testing.assert_allclose(ours[n], value, rtol=rtol, atol=atol, err_msg=f"param {n}")
        for key, tvalue in tstate[n].items():
            if key == "step":
                assert float(tvalue) == STEPS
                continue
            assert key in slots, f"torch keeps {key!r}, we do not (we keep {sorted(slots)})"
            got = np.asarray(slots[key][n])
            assert got.dtype == tvalue.dtype, (key, n, got.dtype, tvalue.dtype)
            scale = float(np.max(np.abs(tvalue), initial=0.0))
            np.testing.assert_allclose(got, tvalue, rtol=rtol, atol=atol * max(scale, 1e-30),
                                       err_msg=f"{key} of {n}")
    np.testing.assert_array_equal(state.step, STEPS)
    return ours, slots


# A grid covering every option of every optimizer, each on and off at least once, with
# hyperparameters large enough that each term shows (eps near sqrt(v), strong weight decay).
CONFIGS = {
    "SGD": [{}, {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1},
            {"lr": 0.05, "momentum": 0.8, "nesterov": True, "maximize": True}],
    "Adam": [{}, {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-2, "weight_decay": 0.3},
             {"lr": 0.05, "eps": 1e-3, "weight_decay": 0.2, "decoupled_weight_decay": True,
              "amsgrad": True},
             {"lr": 0.02, "betas": (0.0, 0.9), "amsgrad": True, "maximize": True}],
    "AdamW": [{}, {"lr": 0.05, "betas": (0.7, 0.99), "eps": 1e-2, "weight_decay": 0.5,
                   "amsgrad": True, "maximize": True}],
    "RMSprop": [{}, {"lr": 0.02, "alpha": 0.9, "eps": 1e-2, "weight_decay": 0.1, "momentum": 0.9,
                     "centered": True},
                {"lr": 0.01, "eps": 0.1, "centered": True, "maximize": True},
                {"lr": 0.01, "eps": 0.05, "momentum": 0.5}],
    "Adagrad": [{}, {"lr": 0.1, "lr_decay": 0.1, "weight_decay": 0.1,
                     "initial_accumulator_value": 0.3, "eps": 1e-2, "maximize": True}],
    "Adadelta": [{}, {"lr": 0.5, "rho": 0.8, "eps": 1e-3, "weight_decay": 0.1, "maximize": True}],
    "Adamax": [{}, {"lr": 0.05, "betas": (0.7, 0.9), "eps": 1e-2, "weight_decay": 0.1,
                    "maximize": True}],
    "NAdam": [{}, {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-2, "weight_decay": 0.1,
                   "momentum_decay": 0.1},
              {"lr": 0.05, "weight_decay": 0.2, "decoupled_weight_decay": True, "maximize": True}],
    "RAdam": [{}, {"lr": 0.05, "betas": (0.8, 0.9), "eps": 1e-2, "weight_decay": 0.2},
              {"lr": 0.05, "weight_decay": 0.2, "decoupled_weight_decay": True, "maximize": True}],
}
CASES = [pytest.param(name, kw, id=f"{name}-{i}") for name, kws in CONFIGS.items()
         for i, kw in enumerate(kws) if hasattr(jopt, name)]


@pytest.mark.parametrize("name, kwargs", CASES)
def test_matches_torch_float32(name, kwargs):
    compare(name, kwargs)


@pytest.mark.parametrize("name, kwargs", [c for c in CASES if c.id.endswith("-1")])
def test_matches_torch_float64(name, kwargs):
    """With every option on, float64 agrees to float64 rounding: the same math, not an
    approximation of it."""
    compare(name, kwargs, dtype=np.float64)
