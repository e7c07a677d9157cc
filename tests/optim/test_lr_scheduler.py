"""jaxconv.optim.lr_scheduler against torch.optim.lr_scheduler: every scheduler's lr (and cycled
momentum) sequence over a few hundred steps on an SGD with two groups of different lrs, in
float64 (to torch's rounding) and float32 (within the derived bound of ``_lr_rules``), by
stepping the rule directly and through jitted ``tx.update`` loops."""
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

import jaxconv.optim as jo
from jaxconv.optim import lr_scheduler as L

T = torch.optim.lr_scheduler
LRS = (0.1, 0.03)           # the two groups' lrs
N = 300                     # steps per sequence
EPS32 = float(np.finfo(np.float32).eps)


def jax_sgd():
    return jo.SGD([{"params": ["a"], "lr": LRS[0]}, {"params": ["b"], "lr": LRS[1]}],
                  lr=LRS[0], momentum=0.9)


def torch_sgd():
    ps = [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)),
          torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))]
    return torch.optim.SGD([{"params": [ps[0]], "lr": LRS[0]}, {"params": [ps[1]], "lr": LRS[1]}],
                           lr=LRS[0], momentum=0.9), ps


def torch_run(make, n=N, metrics=None, grads=None):
    """torch's group lrs and momenta before each of ``n`` updates (and the final params)."""
    opt, ps = torch_sgd()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheds = make(opt)
        scheds = scheds if isinstance(scheds, list) else [scheds]
        lrs, moms = [], []
        for k in range(n):
            lrs.append([g["lr"] for g in opt.param_groups])
            moms.append([g["momentum"] for g in opt.param_groups])
            if grads is not None:
                for p, g in zip(ps, grads):
                    p.grad = torch.from_numpy(np.asarray(g[k]))
            opt.step()
            for s in scheds:
                s.step() if metrics is None else s.step(float(metrics[k]))
    return np.array(lrs), np.array(moms), [p.detach().numpy() for p in ps]


def start_hyper(tx, dtype):
    values = {"lr": LRS, "initial_lr": LRS, "momentum": (0.9, 0.9)}
    return {k: jnp.asarray(values[k], dtype) for k in tx.scheduled_keys()}


def rules_run(txs: dict, dtype, metrics: dict, n=N):
    """Every rule stepped directly, in one jitted program (one compilation for all cases): init
    on ``dtype`` hyperparameters, then a scan of ``step``; the hyperparameters before each step."""
    @jax.jit
    def run(hypers, metrics):
        out = {}
        for name, tx in txs.items():
            rule = tx.scheduler

            def body(carry, x, rule=rule):
                state, hyper = carry
                return rule.step(state, hyper, x), hyper
            carry = rule.init(hypers[name], tx.momentum_key)
            out[name] = jax.lax.scan(body, carry, metrics.get(name), length=n)[1]
        return out

    hypers = {name: start_hyper(tx, dtype) for name, tx in txs.items()}
    return jax.device_get(run(hypers, {k: jnp.asarray(v, dtype) for k, v in metrics.items()}))


def updates_run(txs: dict, grads, metrics: dict):
    """Jitted scans of ``tx.update`` on two tiny float64 parameters, all cases in one program:
    the hyperparameters before each update and the final parameters."""
    params = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    xs = {"a": jnp.asarray(grads[0]), "b": jnp.asarray(grads[1])}

    @jax.jit
    def run(states, metrics):
        out = {}
        for name, tx in txs.items():
            def body(carry, x, tx=tx):
                params, state = carry
                g, m = x
                updates, new = tx.update(g, state, params, value=m)
                return (optax.apply_updates(params, updates), new), state.hyper
            (final, _), hist = jax.lax.scan(body, (params, states[name]), (xs, metrics[name]))
            out[name] = hist, [final["a"], final["b"]]
        return out

    states = {name: tx.init(params) for name, tx in txs.items()}
    return jax.device_get(run(states, {k: jnp.asarray(metrics.get(k, np.zeros(N))) for k in txs}))


def check(got, want, dtype, what, eta_min=0.0):
    """float64: torch's values to rounding; float32: within the bound derived in _lr_rules,
    ``|lr_k - lr_k^torch| <= 10 (k + 1) eps32 (|lr_k| + eta_min)`` (plus a floor far below
    one rounding of the largest lr, for exact zeros) per group."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.max(np.abs(want), axis=0)
    if dtype == jnp.float64:
        bound = 1e-12 * np.abs(want) + 1e-14 * scale
    else:
        steps = np.arange(len(want))[:, None] + 1
        bound = 10 * steps * EPS32 * (np.abs(want) + eta_min) + 1e-3 * EPS32 * scale
    bad = np.argwhere(~(np.abs(got - want) <= bound))
    assert not len(bad), (f"{what}: first mismatch at step {bad[0][0]}, group {bad[0][1]}: "
                          f"{got[tuple(bad[0])]!r} vs torch {want[tuple(bad[0])]!r}")


def lam_j(e):
    return jnp.minimum(1.0, (e + 1) / 10) * 0.99 ** e


def lam_t(e):
    return min(1.0, (e + 1) / 10) * 0.99 ** e


#: the eta_min of the cases with one: its additions round relative to it (see _lr_rules)
ETA_MIN = {"CosineAnnealingLR": 1e-3, "WarmRestarts": 1e-4, "Chained": 1e-3}

# name -> (jaxconv constructor on an optimizer, torch constructor on an optimizer)
CASES = {
    "LambdaLR": (lambda o: L.LambdaLR(o, [lam_j, lambda e: 0.98 ** e]),
                 lambda o: T.LambdaLR(o, [lam_t, lambda e: 0.98 ** e])),
    "MultiplicativeLR": (lambda o: L.MultiplicativeLR(o, lambda e: 1 - 0.002 * (e % 7)),
                         lambda o: T.MultiplicativeLR(o, lambda e: 1 - 0.002 * (e % 7))),
    "StepLR": (lambda o: L.StepLR(o, 30, 0.5), lambda o: T.StepLR(o, 30, 0.5)),
    "MultiStepLR": (lambda o: L.MultiStepLR(o, [30, 80, 80, 150], 0.3),
                    lambda o: T.MultiStepLR(o, [30, 80, 80, 150], 0.3)),
    "ConstantLR": (lambda o: L.ConstantLR(o, 0.4, 40), lambda o: T.ConstantLR(o, 0.4, 40)),
    "LinearLR": (lambda o: L.LinearLR(o, 0.05, 0.9, 100), lambda o: T.LinearLR(o, 0.05, 0.9, 100)),
    "LinearLR-to-0": (lambda o: L.LinearLR(o, 1.0, 0.0, 120), lambda o: T.LinearLR(o, 1.0, 0.0, 120)),
    "ExponentialLR": (lambda o: L.ExponentialLR(o, 0.98), lambda o: T.ExponentialLR(o, 0.98)),
    "PolynomialLR": (lambda o: L.PolynomialLR(o, 150, 2.0), lambda o: T.PolynomialLR(o, 150, 2.0)),
    "PolynomialLR-0.7": (lambda o: L.PolynomialLR(o, 90, 0.7), lambda o: T.PolynomialLR(o, 90, 0.7)),
    "CosineAnnealingLR": (lambda o: L.CosineAnnealingLR(o, 120, 1e-3),
                          lambda o: T.CosineAnnealingLR(o, 120, 1e-3)),
    "CosineAnnealingLR-0": (lambda o: L.CosineAnnealingLR(o, 70), lambda o: T.CosineAnnealingLR(o, 70)),
    "WarmRestarts": (lambda o: L.CosineAnnealingWarmRestarts(o, 13, 2, 1e-4),
                     lambda o: T.CosineAnnealingWarmRestarts(o, 13, 2, 1e-4)),
    "WarmRestarts-1": (lambda o: L.CosineAnnealingWarmRestarts(o, 17),
                       lambda o: T.CosineAnnealingWarmRestarts(o, 17)),
    "CyclicLR": (lambda o: L.CyclicLR(o, [0.01, 0.002], [0.1, 0.05], 20, 13),
                 lambda o: T.CyclicLR(o, [0.01, 0.002], [0.1, 0.05], 20, 13)),
    "CyclicLR-triangular2": (lambda o: L.CyclicLR(o, 0.01, 0.1, 11, mode="triangular2",
                                                  base_momentum=[0.7, 0.8], max_momentum=0.95),
                             lambda o: T.CyclicLR(o, 0.01, 0.1, 11, mode="triangular2",
                                                  base_momentum=[0.7, 0.8], max_momentum=0.95)),
    "CyclicLR-exp_range": (lambda o: L.CyclicLR(o, 0.01, 0.1, 9, 25, mode="exp_range", gamma=0.99),
                           lambda o: T.CyclicLR(o, 0.01, 0.1, 9, 25, mode="exp_range", gamma=0.99)),
    "CyclicLR-scale_fn": (lambda o: L.CyclicLR(o, 0.01, 0.1, 15, scale_fn=lambda x: 1 / (1 + 0.01 * x),
                                               scale_mode="iterations", cycle_momentum=False),
                          lambda o: T.CyclicLR(o, 0.01, 0.1, 15, scale_fn=lambda x: 1 / (1 + 0.01 * x),
                                               scale_mode="iterations", cycle_momentum=False)),
    "OneCycleLR": (lambda o: L.OneCycleLR(o, [0.5, 0.2], total_steps=N),
                   lambda o: T.OneCycleLR(o, [0.5, 0.2], total_steps=N)),
    "OneCycleLR-linear-3": (lambda o: L.OneCycleLR(o, 0.4, epochs=3, steps_per_epoch=100,
                                                   pct_start=0.29, anneal_strategy="linear",
                                                   three_phase=True, div_factor=10.0,
                                                   final_div_factor=100.0, base_momentum=[0.8, 0.85]),
                            lambda o: T.OneCycleLR(o, 0.4, epochs=3, steps_per_epoch=100,
                                                   pct_start=0.29, anneal_strategy="linear",
                                                   three_phase=True, div_factor=10.0,
                                                   final_div_factor=100.0, base_momentum=[0.8, 0.85])),
    "Sequential-Linear-Cosine": (
        lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, total_iters=20), L.CosineAnnealingLR(o, 200)], [20]),
        lambda o: T.SequentialLR(o, [T.LinearLR(o, 0.1, total_iters=20), T.CosineAnnealingLR(o, 200)], [20])),
    "Sequential-Exponential-Step": (
        lambda o: L.SequentialLR(o, [L.ExponentialLR(o, 0.97), L.StepLR(o, 25, 0.5)], [50]),
        lambda o: T.SequentialLR(o, [T.ExponentialLR(o, 0.97), T.StepLR(o, 25, 0.5)], [50])),
    "Sequential-3": (
        lambda o: L.SequentialLR(o, [L.ConstantLR(o, 0.3, 10), L.LambdaLR(o, lambda e: 0.99 ** e),
                                     L.MultiplicativeLR(o, lambda e: 0.995)], [15, 120]),
        lambda o: T.SequentialLR(o, [T.ConstantLR(o, 0.3, 10), T.LambdaLR(o, lambda e: 0.99 ** e),
                                     T.MultiplicativeLR(o, lambda e: 0.995)], [15, 120])),
    "Sequential-Linear-OneCycle": (
        lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.5, total_iters=10),
                                     L.OneCycleLR(o, 0.3, total_steps=N)], [10]),
        lambda o: T.SequentialLR(o, [T.LinearLR(o, 0.5, total_iters=10),
                                     T.OneCycleLR(o, 0.3, total_steps=N)], [10])),
    "Chained": (lambda o: L.ChainedScheduler([L.ExponentialLR(o, 0.995), L.CosineAnnealingLR(o, 80, 1e-3)]),
                lambda o: T.ChainedScheduler([T.ExponentialLR(o, 0.995), T.CosineAnnealingLR(o, 80, 1e-3)])),
    "Chained-Constant-Linear": (
        lambda o: L.ChainedScheduler([L.ConstantLR(o, 0.5, 20), L.LinearLR(o, 0.2, total_iters=30)]),
        lambda o: T.ChainedScheduler([T.ConstantLR(o, 0.5, 20), T.LinearLR(o, 0.2, total_iters=30)])),
    "two-on-one": (lambda o: L.PolynomialLR(L.LinearLR(o, 0.25, total_iters=40), 250, 1.5),
                   lambda o: [T.LinearLR(o, 0.25, total_iters=40), T.PolynomialLR(o, 250, 1.5)]),
}


# a metric that improves, plateaus (patience), improves by less than the threshold, and keeps
# going until min_lr clamps and eps stops further reductions
METRICS = np.concatenate([np.linspace(1.0, 0.5, 20), np.full(30, 0.5), 0.5 - 1e-6 * np.arange(40),
                          np.linspace(0.49, 0.3, 10), np.full(200, 0.3)])
PLATEAU = {
    "min-rel": {"patience": 3, "cooldown": 2},
    "min-abs": {"patience": 2, "threshold": 0.01, "threshold_mode": "abs", "min_lr": [1e-4, 2e-3]},
    "max-rel": {"mode": "max", "patience": 4, "factor": 0.5, "cooldown": 5, "min_lr": 1e-3},
    "max-abs-eps": {"mode": "max", "threshold_mode": "abs", "patience": 1, "factor": 0.7, "eps": 2e-3},
}
METRIC_OF = {}
for _name, _kw in PLATEAU.items():
    CASES[f"ReduceLROnPlateau-{_name}"] = (lambda o, kw=_kw: L.ReduceLROnPlateau(o, **kw),
                                           lambda o, kw=_kw: T.ReduceLROnPlateau(o, **kw))
    METRIC_OF[f"ReduceLROnPlateau-{_name}"] = 2 - METRICS if _kw.get("mode") == "max" else METRICS
UPDATE_CASES = ["OneCycleLR", "Sequential-Linear-Cosine", "two-on-one", "ReduceLROnPlateau-min-abs"]
GRADS = [np.random.default_rng(0).standard_normal((N, 2)),
         np.random.default_rng(1).standard_normal((N, 3))]


@functools.cache
def reference(name, grads=False):
    return torch_run(CASES[name][1], metrics=METRIC_OF.get(name), grads=GRADS if grads else None)


@functools.cache
def rule_results(dtype):
    return rules_run({name: make(jax_sgd()) for name, (make, _) in CASES.items()},
                     jnp.dtype(dtype).type, METRIC_OF)


@functools.cache
def update_results():
    return updates_run({name: CASES[name][0](jax_sgd()) for name in UPDATE_CASES}, GRADS, METRIC_OF)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_rule_matches_torch(name, dtype):
    """Each scheduler's lr (and cycled momentum) over N steps equals torch's: float64 to
    rounding, float32 within the derived bound (all cases share one jitted program per dtype)."""
    want, want_m, _ = reference(name)
    hist = rule_results(dtype)[name]
    assert hist["lr"].dtype == dtype
    check(hist["lr"], want, jnp.dtype(dtype).type, f"{name} lr ({dtype})", ETA_MIN.get(name, 0.0))
    if "momentum" in hist:
        check(hist["momentum"], want_m, jnp.dtype(dtype).type, f"{name} momentum ({dtype})")


@pytest.mark.parametrize("name", UPDATE_CASES)
def test_update_loop_matches_torch(name):
    """Through jitted ``tx.update``: the lr of the k-th update is torch's, and the parameters
    after N SGD-with-momentum updates (momentum cycled where the scheduler cycles it) are too."""
    want, want_m, want_params = reference(name, grads=True)
    hist, params = update_results()[name]
    check(hist["lr"], want, jnp.float64, f"{name} lr via update")
    if "momentum" in hist:
        check(hist["momentum"], want_m, jnp.float64, f"{name} momentum via update")
    for got, ref in zip(params, want_params):
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-12)


def test_cosine_float32_does_not_cancel_near_zero():
    """A long cosine in float32: near T_max, torch's ``1 + cos`` would cancel (relative error
    ~u (2T/pi)^2, 3e-2 here); the cos^2 form keeps the relative bound of the recursion."""
    n = 1520
    want = torch_run(lambda o: T.CosineAnnealingLR(o, 1500), n=n)[0]
    hist = rules_run({"c": L.CosineAnnealingLR(jax_sgd(), 1500)}, jnp.float32, {}, n=n)["c"]
    check(hist["lr"], want, jnp.float32, "long cosine (float32)")


@pytest.mark.parametrize("name", list(PLATEAU))
def test_plateau_metrics_exercise_the_rules(name):
    """The metric sequence makes torch reduce the lr several times in every configuration."""
    want = reference(f"ReduceLROnPlateau-{name}")[0]
    assert len(np.unique(want[:, 0])) >= 3


def test_plateau_after_warmup_through_nnx_optimizer():
    """Two schedulers on one optimizer (LinearLR warmup, then ReduceLROnPlateau) driven by
    ``nnx.Optimizer.update(model, grads, value=loss)``; get_last_lr reads its state."""
    class Model(nnx.Module):
        def __init__(self):
            self.a = nnx.Param(jnp.zeros(2))
            self.b = nnx.Param(jnp.zeros(3))

    model = Model()
    tx = L.ReduceLROnPlateau(L.LinearLR(jax_sgd(), 0.5, total_iters=4), patience=1, cooldown=1)
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    torch_opt, _ = torch_sgd()
    warm, plateau = T.LinearLR(torch_opt, 0.5, total_iters=4), T.ReduceLROnPlateau(torch_opt, patience=1,
                                                                                      cooldown=1)
    step = nnx.jit(lambda opt, model, grads, loss: opt.update(model, grads, value=loss))
    grads = nnx.state(model, nnx.Param)
    for loss in [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85]:
        assert get_lr_close(L.get_last_lr(opt.opt_state), [g["lr"] for g in torch_opt.param_groups])
        step(opt, model, grads, jnp.asarray(loss))
        torch_opt.step()
        warm.step()
        plateau.step(loss)
    assert get_lr_close(L.get_last_lr(opt.opt_state), [g["lr"] for g in torch_opt.param_groups])
    assert L.get_last_lr(opt.opt_state)[0] < 0.05


def get_lr_close(got, want):
    return np.allclose(got, want, rtol=1e-12, atol=0)


def test_get_last_lr_on_raw_and_chained_state():
    tx = L.LinearLR(jax_sgd(), 0.2, total_iters=4)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    state = tx.init(params)
    assert L.get_last_lr(state) == pytest.approx([0.02, 0.006], rel=1e-15)
    chained = optax.chain(optax.identity(), tx)
    assert L.get_last_lr(chained.init(params)) == pytest.approx([0.02, 0.006], rel=1e-15)
    with pytest.raises(TypeError, match="expected one jaxconv.optim OptimizerState .* found 0"):
        L.get_last_lr(optax.sgd(0.1).init(params))


def test_python_lambda_under_jit_is_a_clear_error():
    tx = L.LambdaLR(jax_sgd(), lambda e: min(1.0, (e + 1) / 10))
    params = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    with pytest.raises(TypeError, match="must be written with jnp operations"):
        jax.jit(tx.init)(params)


def test_plateau_without_value_is_a_clear_error():
    tx = L.ReduceLROnPlateau(jax_sgd())
    params = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    with pytest.raises(ValueError, match=r"value=loss"):
        jax.jit(tx.update)(params, tx.init(params), params)


@pytest.mark.parametrize(("make", "match"), [
    (lambda o: L.OneCycleLR(o, 0.1), "give total_steps, or both epochs and steps_per_epoch"),
    (lambda o: L.OneCycleLR(o, 0.1, total_steps=0), "total_steps must be a positive integer, got 0"),
    (lambda o: L.OneCycleLR(o, 0.1, epochs=2, steps_per_epoch=-1), "steps_per_epoch must be"),
    (lambda o: L.OneCycleLR(o, 0.1, 10, pct_start=1), r"pct_start must be a float in \[0, 1\], got 1"),
    (lambda o: L.OneCycleLR(o, 0.1, 10, anneal_strategy="exp"), "anneal_strategy must be"),
    (lambda o: L.OneCycleLR(o, [0.1, 0.2, 0.3], 10), "max_lr has 3 values, but the optimizer has 2"),
    (lambda o: L.LinearLR(o, start_factor=0), r"LinearLR: start_factor must be in \(0, 1\], got 0"),
    (lambda o: L.LinearLR(o, end_factor=1.5), r"LinearLR: end_factor must be in \[0, 1\], got 1.5"),
    (lambda o: L.ConstantLR(o, factor=2.0), r"ConstantLR: factor must be in \(0, 1\]"),
    (lambda o: L.SequentialLR(o, [L.StepLR(o, 3), L.StepLR(o, 4)], [1, 2]),
     "milestones must have one entry fewer than schedulers"),
    (lambda o: L.SequentialLR(o, [L.StepLR(o, 3), L.ReduceLROnPlateau(o)], [1]),
     "does not support ReduceLROnPlateau"),
    (lambda o: L.SequentialLR(o, [L.StepLR(o, 3), L.StepLR(jax_sgd(), 4)], [1]),
     r"schedulers\[1\] was built on another optimizer"),
    (lambda o: L.CyclicLR(o, 0.01, 0.1, mode="sine"), "mode must be 'triangular'"),
    (lambda o: L.LambdaLR(o, [lambda e: 1.0]), "lr_lambda has 1 values, but the optimizer has 2"),
    (lambda o: L.ReduceLROnPlateau(o, factor=1.0), "factor must be < 1.0, got 1.0"),
    (lambda o: L.CosineAnnealingWarmRestarts(o, 0), "T_0 must be a positive integer, got 0"),
    (lambda o: L.StepLR(o, 3, last_epoch=5), "last_epoch must be -1"),
])
def test_constructor_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(jax_sgd())


def test_adam_beta1_cycling():
    """OneCycleLR on Adam cycles beta1 as torch's does (needs jaxconv.optim.Adam)."""
    if not hasattr(jo, "Adam"):
        pytest.skip("jaxconv.optim.Adam is not on this branch yet")
    ps = [torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))]
    opt = torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.99))
    sched = T.OneCycleLR(opt, 0.05, total_steps=60, base_momentum=0.8)
    rng = np.random.default_rng(1)
    grads = rng.standard_normal((60, 3))
    want = []
    for g in grads:
        want.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]))
        ps[0].grad = torch.from_numpy(g)
        opt.step()
        sched.step()
    tx = L.OneCycleLR(jo.Adam(lr=0.01, betas=(0.9, 0.99)), 0.05, total_steps=60, base_momentum=0.8)
    params = {"w": jnp.zeros(3)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    got = []
    for g in grads:
        got.append((float(state.hyper["lr"][0]), float(state.hyper["beta1"][0])))
        updates, state = update({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(params["w"], ps[0].detach().numpy(), rtol=1e-10, atol=1e-12)
