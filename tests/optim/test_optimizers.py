"""jaxconv.optim's optimizers against torch.optim's single-tensor CPU path, step by step.

Each run takes ``STEPS`` updates of random, asymmetric gradients on a tree of parameters of
different shapes (a 0-d and a 1-d leaf among them) in both frameworks and compares parameters and
every per-parameter state by torch's name. float32 runs with JAX's defaults (x64 off: float32
scalars, the user's path); float64 runs hold the math to float64 rounding.
"""
import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxconv.optim as jopt
from jaxconv.optim.optimizer import named_leaves

STEPS = 8


@contextlib.contextmanager
def no_disk_cache():
    """Eager runs compile ~100 tiny XLA programs (one per primitive and shape) in milliseconds
    each, for which JAX's persistent cache (a read and a write each) costs more than it saves."""
    before = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", before)


def make_params(rng):
    """A parameter tree (float64 numpy) with torch names a.weight (2-d), b.0.bias (1-d), scale
    (0-d)."""
    return {"a": {"weight": rng.standard_normal((3, 4))}, "b": [{"bias": rng.standard_normal(4)}],
            "scale": np.asarray(rng.standard_normal() + 2.0)}


def make_grads(rng, params):
    """``STEPS`` gradient trees; each leaf has its own scale, so no two leaves look alike."""
    scales = {"a.weight": 0.3, "b.0.bias": 1.7, "scale": 0.8}
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


def run_torch(name, kwargs, params, grads, groups=None, before_step=None):
    """``STEPS`` steps of ``torch.optim.<name>`` (single-tensor path): parameters and state by
    name. ``before_step(optimizer, k)`` runs before step ``k`` (a scheduler's part)."""
    tensors = {n: torch.tensor(np.asarray(x), requires_grad=True) for n, x in named_leaves(params)}
    spec = resolve(groups, params) if groups else [{"params": list(tensors)}]
    tgroups = [dict(g, params=[tensors[n] for n in g["params"]]) for g in spec]
    opt = getattr(torch.optim, name)(tgroups, **{"foreach": False, **kwargs})
    for k, grad in enumerate(grads):
        for n, g in named_leaves(grad):
            tensors[n].grad = torch.tensor(np.asarray(g))
        if before_step is not None:
            before_step(opt, k)
        opt.step()
    state = {n: {k: v.detach().numpy() for k, v in opt.state[t].items()} for n, t in tensors.items()}
    return {n: t.detach().numpy() for n, t in tensors.items()}, state


def run_jax(specs, params, grads, dtype=np.float32, jit=False):
    """The same with ``jaxconv.optim``, for each ``(name, kwargs, groups, rule)`` of ``specs``:
    eagerly (op by op, as torch; cheap for a grid of configurations) or all of them, all steps,
    in one jit. Returns ``(params by name, slots by name -> by parameter, state)`` each."""
    txs = []
    for name, kwargs, groups, rule in specs:
        tx = getattr(jopt, name)(groups, **kwargs)
        txs.append(tx if rule is None else tx.with_scheduler(rule))
    params = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
    stacked = jax.tree.map(lambda *g: jnp.asarray(np.stack(g), dtype), *grads)

    def run(params, stacked):
        out = []
        for tx in txs:
            def body(carry, grad, tx=tx):
                p, s = carry
                updates, s = tx.update(grad, s, p)
                return (optax.apply_updates(p, updates), s), None
            if jit:
                out.append(jax.lax.scan(body, (params, tx.init(params)), stacked)[0])
                continue
            carry = (params, tx.init(params))
            for k in range(STEPS):
                carry = body(carry, jax.tree.map(lambda g: g[k], stacked))[0]
            out.append(carry)
        return out

    with contextlib.nullcontext() if jit else no_disk_cache():
        results = (jax.jit(run) if jit else run)(params, stacked)
    return [(dict(named_leaves(p)), {k: dict(named_leaves(v)) for k, v in s.slots.items()}, s)
            for p, s in results]


def data(seed, dtype):
    """Parameters and ``STEPS`` gradients, float64 numpy, and the same cast to ``dtype``."""
    rng = np.random.default_rng(seed)
    params = make_params(rng)
    grads = make_grads(rng, params)
    cast = (lambda t: jax.tree.map(lambda x: np.asarray(x, dtype), t))
    return params, grads, cast(params), [cast(g) for g in grads]


def check(torch_result, jax_result, dtype):
    """Parameters and torch's per-parameter state, by name, within the dtype's rounding."""
    (theirs, tstate), (ours, slots, state) = torch_result, jax_result
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


def compare(name, kwargs, groups=None, dtype=np.float32, seed=0, rule=None, before_step=None):
    """Run both (ours eagerly) and :func:`check`."""
    params, grads, tparams, tgrads = data(seed, dtype)
    torch_result = run_torch(name, kwargs, tparams, tgrads, groups, before_step)
    with jax.enable_x64(dtype == np.float64):
        [jax_result] = run_jax([(name, kwargs, groups, rule)], params, grads, dtype)
    check(torch_result, jax_result, dtype)


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


def test_matches_torch_float64_under_jit():
    """Every optimizer with every option of its second configuration, in float64 and in one jit
    (traced step and lr; one compilation for all): torch's float64 to 1e-12, the same math
    beyond rounding."""
    specs = [(name, configs[1], None, None) for name, configs in CONFIGS.items()]
    params, grads, tparams, tgrads = data(0, np.float64)
    results = run_jax(specs, params, grads, np.float64, jit=True)
    for (name, kwargs, _, _), jax_result in zip(specs, results):
        check(run_torch(name, kwargs, tparams, tgrads), jax_result, np.float64)


def test_fused_and_foreach_change_no_result():
    """The docstrings' claim: torch's fused CPU AdamW differs from the single-tensor kernel by
    rounding only, so ours (which ignores the flag) matches it as closely."""
    compare("AdamW", dict(CONFIGS["AdamW"][1], fused=True))
    compare("Adam", dict(CONFIGS["Adam"][1], foreach=True))


# ----------------------------------------------------------------------------- precision
def test_step_scalars_in_float32_are_accurate():
    """Bias corrections and RAdam's rho_t in float32 agree with the exact values to a few ulp at
    every step (a float32 ``1 - 0.999**t`` is off by 1e-5, a direct float32 rho_t by 1e-4)."""
    from decimal import Decimal, localcontext

    from jaxconv.optim._common import one_minus_pow, radam_rho
    steps = np.unique(np.geomspace(1, 100000, 60).astype(np.int32))
    with jax.enable_x64(False), localcontext() as ctx:
        ctx.prec = 40
        for beta in (0.9, 0.999, 0.9999, 0.5):
            b = Decimal(beta)
            exact_bc = np.array([float(1 - b ** int(t)) for t in steps])
            ours = np.asarray(one_minus_pow(beta, steps, jnp.float32))
            np.testing.assert_allclose(ours, exact_bc, rtol=4e-7, err_msg=f"1 - {beta}**t")
            rho_inf = 2 / (1 - b) - 1
            exact_rho = np.array([float(rho_inf - 2 * int(t) * b ** int(t) / (1 - b ** int(t)))
                                  for t in steps])
            rho = np.asarray(radam_rho(beta, steps, jnp.float32)[0])
            np.testing.assert_allclose(rho, exact_rho, rtol=4e-7, atol=4e-7, err_msg=f"rho_t {beta}")


# ----------------------------------------------------------------------------- groups
NO_DECAY = (lambda name, p: np.ndim(p) <= 1)   # timm's rule: biases, norm weights, scalars


@pytest.mark.parametrize("name, kwargs, groups", [
    ("Adam", {"lr": 0.02, "weight_decay": 0.1},                  # by names, per-group options
     [{"params": ["a.weight"], "lr": 0.05, "amsgrad": True},
      {"params": ["b.0.bias", "scale"], "weight_decay": 0.0, "maximize": True}]),
    ("AdamW", {"lr": 0.02, "weight_decay": 0.3},                 # by predicate: no decay for 0/1-d
     [{"params": NO_DECAY, "weight_decay": 0.0}, {"params": lambda n, p: not NO_DECAY(n, p)}]),
    ("RMSprop", {"lr": 0.01, "eps": 1e-2},                       # momentum only in one group
     [{"params": ["a.weight"], "momentum": 0.9, "centered": True},
      {"params": lambda n, p: n != "a.weight", "alpha": 0.8}]),
    ("SGD", {"lr": 0.05},                                        # the same for SGD's buffer
     [{"params": NO_DECAY, "momentum": 0.9, "nesterov": True}, {"params": ["a.weight"]}]),
    ("Adagrad", {"lr": 0.1},
     [{"params": NO_DECAY, "initial_accumulator_value": 0.5}, {"params": ["a.weight"]}]),
])
def test_parameter_groups_match_torch(name, kwargs, groups):
    compare(name, kwargs, groups)


def test_parameter_group_errors():
    params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
    both = jopt.AdamW([{"params": ["w", "b"]}, {"params": NO_DECAY, "weight_decay": 0.0}])
    with pytest.raises(ValueError, match=r"'b' is selected by parameter groups \[0, 1\]"):
        both.init(params)
    none = jopt.AdamW([{"params": ["w"]}])
    with pytest.raises(ValueError, match=r"'b' is selected by no parameter group"):
        none.init(params)
    with pytest.raises(ValueError, match=r"sets \['momentum'\], which is not an argument of AdamW"):
        jopt.AdamW([{"params": ["w"], "momentum": 0.9}])
    with pytest.raises(ValueError, match=r"AdamW: eps of parameter group 0 must be >= 0, got -1"):
        jopt.AdamW([{"params": ["w"], "eps": -1.0}])


# ----------------------------------------------------------------------------- momentum_key
class TableRule:
    """A stand-in scheduler rule (the protocol of jaxconv.optim.lr_scheduler): before update
    ``k`` the group has ``lr[k]`` and momentum/beta1 ``momentum[k]``, as a torch OneCycleLR
    would set them."""

    cycles_momentum = True

    def __init__(self, lr, momentum):
        self.lr, self.momentum = np.asarray(lr), np.asarray(momentum)

    def _at(self, k, hyper):
        key = next(k_ for k_ in hyper if k_ in ("momentum", "beta1"))
        dtype = hyper["lr"].dtype
        return dict(hyper, lr=jnp.full_like(hyper["lr"], jnp.asarray(self.lr, dtype)[k]),
                    **{key: jnp.full_like(hyper[key], jnp.asarray(self.momentum, dtype)[k])})

    def init(self, hyper, momentum_key):
        return jnp.zeros((), jnp.int32), self._at(0, hyper)

    def step(self, state, hyper, value=None):
        return state + 1, self._at(state + 1, hyper)


LRS = [0.01, 0.03, 0.05, 0.04, 0.03, 0.02, 0.01, 0.005, 0.001]
BETA1S = [0.95, 0.93, 0.9, 0.87, 0.85, 0.88, 0.91, 0.94, 0.95]


@pytest.mark.parametrize("name, kwargs, momenta", [
    ("Adam", {"amsgrad": True, "weight_decay": 0.1, "decoupled_weight_decay": True}, BETA1S),
    ("AdamW", {"eps": 1e-3}, BETA1S),
    ("Adamax", {"eps": 1e-2}, BETA1S),
    ("NAdam", {"weight_decay": 0.1}, BETA1S),
    ("RAdam", {"eps": 1e-2}, BETA1S),
    # momentum 0 at construction: the cycled value turns torch's buffer on, and off at 0
    ("RMSprop", {"eps": 1e-2}, [0.9, 0.8, 0.0, 0.5, 0.7, 0.0, 0.9, 0.95, 0.9]),
    ("SGD", {"dampening": 0.1}, [0.9, 0.8, 0.7, 0.5, 0.7, 0.8, 0.9, 0.95, 0.9]),
])
def test_cycled_momentum_and_beta1_follow_torch(name, kwargs, momenta):
    """A scheduler moving lr and ``momentum_key`` (traced values, ``1 - beta1`` in the array's
    dtype) gives torch's run with the same values set in its param_groups each step."""
    rule = TableRule(LRS, momenta)
    key = getattr(jopt, name).momentum_key

    def before_step(opt, k):
        for group in opt.param_groups:
            group["lr"] = LRS[k]
            if key == "beta1":
                group["betas"] = (momenta[k], group["betas"][1])
            else:
                group["momentum"] = momenta[k]

    compare(name, kwargs, rule=rule, before_step=before_step)


# ----------------------------------------------------------------------------- nnx.Optimizer
def test_nnx_optimizer_trains_a_jaxconv_model_as_torch():
    """AdamW with timm's no-decay groups through ``nnx.Optimizer`` under ``nnx.jit``, on a small
    model in train mode (BatchNorm statistics randomised), follows torch step by step."""
    from flax import nnx

    import jaxconv.functional as F
    import jaxconv.nn as nn
    from equivalence import load_state_dict, state_dict
    from tests._zoo import randomize_batchnorm

    torch.manual_seed(0)
    # Adam turns a gradient of rounding noise into a full step of either sign, so no parameter
    # may have an exact zero gradient: no bias right before BatchNorm, no dead ReLU channel
    theirs = randomize_batchnorm(torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(),
                                                     torch.nn.BatchNorm1d(7), torch.nn.Linear(7, 3)))
    rng = np.random.default_rng(2)
    batches = [(rng.standard_normal((6, 5), np.float32), rng.integers(0, 3, 6)) for _ in range(4)]
    no_decay = (lambda name, p: p.ndim <= 1)
    kwargs = {"lr": 0.02, "weight_decay": 0.1}
    named = dict(theirs.named_parameters())
    topt = torch.optim.AdamW([{"params": [p for n, p in named.items() if p.ndim <= 1], "weight_decay": 0.0},
                              {"params": [p for n, p in named.items() if p.ndim > 1]}],
                             foreach=False, **kwargs)
    with jax.enable_x64(False):
        ours = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.BatchNorm1d(7), nn.Linear(7, 3))
        load_state_dict(ours, theirs.state_dict())
        tx = jopt.AdamW([{"params": no_decay, "weight_decay": 0.0},
                         {"params": lambda n, p: not no_decay(n, p)}], **kwargs)
        optimizer = nnx.Optimizer(ours, tx, wrt=nnx.Param)

        @nnx.jit
        def step(model, optimizer, x, y):
            loss, grads = nnx.value_and_grad(lambda m: F.cross_entropy(m(x), y))(model)
            optimizer.update(model, grads)
            return loss

        for x, y in batches:
            loss = step(ours, optimizer, jnp.asarray(x), jnp.asarray(y))
            topt.zero_grad()
            tloss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(y))
            tloss.backward()
            topt.step()
            np.testing.assert_allclose(float(loss), tloss.item(), rtol=1e-5)
    got = state_dict(ours)
    for n, value in theirs.state_dict().items():
        np.testing.assert_allclose(got[n], value.numpy(), rtol=1e-5, atol=1e-6, err_msg=n)
    assert np.asarray(optimizer.opt_state.step[...]).tolist() == [4, 4]
