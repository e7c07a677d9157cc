"""jaxconv.channels_last: the same values and derivatives, with the activations' transposes gone."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax.extend import core as jcore

import jaxconv
import jaxconv.functional as F
from benchmarks import models as M
from jaxconv.layout import _groups, plain_calls


def _randomise_bn(tmodel):
    g = torch.Generator().manual_seed(3)
    for m in tmodel.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.randn(c, generator=g))
            m.bias.data.copy_(torch.randn(c, generator=g))


def _model(name):
    tcls, jcls, _ = M.MODELS[name]
    torch.manual_seed(0)
    tmodel = tcls(width=8, blocks=1)
    _randomise_bn(tmodel)
    x = np.random.default_rng(1).standard_normal((2, *(M.MODELS[name][2]["quick"]))).astype(np.float32)
    return M.copy_torch_state(tmodel, jcls(width=8, blocks=1)), jnp.asarray(x)


def _activation_transposes(fn, *args):
    """Layout transposes in ``fn``'s jaxpr (calls included) of values computed from the input
    (the last argument): rank-4 moves of axes longer than 1, not those of parameters, of
    constants (a pool's padding, a mask), of the input itself or a transposed conv's interleave
    of its phases (rank 6: data movement every layout needs)."""
    def moves(e):
        shape, perm = e.invars[0].aval.shape, e.params["permutation"]
        kept = [a for a in perm if shape[a] > 1]
        return len(shape) == 4 and kept != sorted(kept)

    def walk(jaxpr, live):
        found = []
        for e in jaxpr.eqns:
            ins = [v for v in e.invars if not isinstance(v, jcore.Literal)]
            if not any(v in live for v in ins):
                continue
            subs = [p.jaxpr if hasattr(p, "jaxpr") else p for p in e.params.values()
                    if isinstance(p, (jcore.Jaxpr, jcore.ClosedJaxpr))]
            for sub in subs:  # a call: its arguments map one to one onto the callee's
                if len(sub.invars) == len(e.invars):
                    found += walk(sub, {w for v, w in zip(e.invars, sub.invars) if v in ins and v in live})
            if e.primitive.name == "transpose" and e.invars[0] is not jaxpr.invars[-1] and moves(e):
                found.append(e)
            live.update(e.outvars)
        return found
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    return walk(jaxpr, {jaxpr.invars[-1]})


def _close(a, b, tol=2e-5, noise=1e-6):
    """Every leaf within ``tol`` of ``b``'s, relative to the leaf's largest magnitude: a wrong
    axis is off by O(1); reordered float32 sums are not. Each leaf may also be off by ``noise``
    times the largest magnitude of all leaves (some ulps of it), which is all a leaf that
    cancels to rounding noise (a conv's gradient through train-mode BatchNorm) can be held to."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    noise = noise * max(float(np.max(np.abs(np.asarray(v, np.float64)), initial=0)) for v in lb)
    for u, v in zip(la, lb):
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        assert u.shape == v.shape
        assert np.max(np.abs(u - v), initial=0) <= tol * np.max(np.abs(v), initial=0) + noise


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "dcgan_generator"])
def test_forward_values_and_no_activation_transposes(name):
    model, x = _model(name)
    model.eval()
    gd, state = nnx.split(model)

    def forward(s, x):
        return nnx.merge(gd, s)(x)

    fast = jaxconv.channels_last(forward)
    with plain_calls():  # the model as written, without the plan its modules run by default
        _close(jax.jit(fast)(state, x), jax.jit(forward)(state, x))
        before = _activation_transposes(forward, state, x)
    after = _activation_transposes(fast, state, x)
    assert len(before) > len(after)
    # what is left: the output back to torch's layout (and a classifier's flatten)
    assert len(after) <= 2, [e.params for e in after]


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "dcgan_generator"])
@pytest.mark.parametrize("train", [False, True])
def test_jaxconv_models_run_channels_last_by_default(name, train):
    # jitted the plain way, a jaxconv model's outermost call runs its own channels-last plan:
    # the same values and BatchNorm statistics as the model as written, without its transposes
    model, x = _model(name)
    model.train(train)
    gd, state = nnx.split(model)

    def forward(s, x):
        m = nnx.merge(gd, s)
        return m(x), nnx.state(m)

    got = jax.jit(forward)(state, x)
    with plain_calls():
        want = jax.jit(forward)(state, x)
        before = _activation_transposes(forward, state, x)
    _close(got, want)
    after = _activation_transposes(forward, state, x)
    assert len(after) <= 2 < len(before) or len(after) < len(before) == 1  # MobileNetV2: its stem
    with F.lowering("xla"):  # no plan where the CPU measurements do not apply
        assert len(_activation_transposes(forward, state, x)) > 2


def test_plan_writes_back_what_the_call_changed():
    # train mode under nnx.jit: BatchNorm's statistics and Dropout's RNG count come back from the
    # planned call's copy to the module, as the module as written updates them itself
    nn = jaxconv.nn
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5, rngs=nnx.Rngs(1)))
    twin = nnx.clone(model)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 8, 8)), jnp.float32)
    planned = nnx.jit(lambda m, x: m(x))
    as_written = nnx.jit(lambda m, x: m(x))
    got = [planned(model, x) for _ in range(2)]
    with plain_calls():
        want = [as_written(twin, x) for _ in range(2)]
    assert not np.array_equal(got[0] != 0, got[1] != 0)  # a fresh mask per call
    _close(got, want)
    _close(nnx.state(model, nnx.BatchStat, nnx.RngCount), nnx.state(twin, nnx.BatchStat, nnx.RngCount))


def test_forward_mode_through_channels_last_from_outside():
    rng = np.random.default_rng(2)
    x, dx = (jnp.asarray(rng.standard_normal((2, 3, 6, 5)).astype(np.float64)) for _ in range(2))
    w = jnp.asarray(rng.standard_normal((4, 3, 3, 3)).astype(np.float64))

    def f(x):
        y = F.relu(F.conv2d(x, w, padding=1))
        return F.max_pool2d(F.batch_norm(y, None, None, training=True), 2, 2)

    want = jax.jvp(f, (x,), (dx,))
    _close(jax.jit(lambda x, dx: jax.jvp(jaxconv.channels_last(f), (x,), (dx,)))(x, dx), want, 1e-12, 1e-14)
    _close(jax.jacfwd(jaxconv.channels_last(lambda x: jnp.sum(f(x) ** 2)))(x),
           jax.jacfwd(lambda x: jnp.sum(f(x) ** 2))(x), 1e-12, 1e-14)


@pytest.mark.parametrize("name", ["resnet18", pytest.param("mobilenet_v2", marks=pytest.mark.slow)])
def test_training_step_inside_matches(name):
    # in float64: batch statistics of 2 samples at 1x1 make float32 gradients ill-conditioned
    # (leaves that are zero in exact arithmetic come out as rounding noise), and a float64 step
    # holds every leaf to 1e-9 of its own size
    model, x = _model(name)
    model.train()
    to64 = lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
    gd, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest, x = jax.tree.map(to64, (params, rest, x))

    def step(p, r, x):
        m = nnx.merge(gd, p, r)
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(x) ** 2))(m)
        return loss, grads, nnx.state(m, nnx.BatchStat)

    l1, g1, stats1 = jax.jit(jaxconv.channels_last(step))(params, rest, x)
    l0, g0, stats0 = jax.jit(step)(params, rest, x)
    _close(l1, l0, tol=1e-9, noise=1e-12)
    _close(stats1, stats0, tol=1e-9, noise=1e-12)
    _close(g1, g0, tol=1e-9, noise=1e-12)


def test_grad_outside_keeps_the_derivatives_of_f():
    # relu(relu(x)) sees exact zeros: its derivative there is 0 (torch's), not max's 1/2
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 3, 6, 5)).astype(np.float32))
    w = jnp.asarray(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))

    def f(x, w):
        y = F.relu(F.relu(F.conv2d(x, w, padding=1)))
        return jnp.sum(F.max_pool2d(y, 2, 2) * jnp.arange(4.0).reshape(1, 4, 1, 1))

    want = jax.grad(f, (0, 1))(x, w)
    got = jax.jit(jax.grad(jaxconv.channels_last(f), (0, 1)))(x, w)
    _close(got, want)
    _close(jax.vmap(jaxconv.channels_last(f), (0, None))(x[:, None], w), jax.vmap(f, (0, None))(x[:, None], w))


def test_ops_without_a_rule_see_the_logical_layout():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 5, 4, 3)).astype(np.float32))

    def f(x):
        y = jnp.moveaxis(x, 1, -1) * 2.0          # deferred
        y = jnp.sort(jnp.moveaxis(y, -1, 1), 1)  # sort along channels: no rule
        z = jnp.cumsum(y, 2) + jnp.flip(y, 3)
        return z.reshape(2, 5, 12), jnp.concatenate([y, z], 1)[:, ::2, 1:], jnp.max(y, (0, 2))

    _close(jaxconv.channels_last(f)(x), f(x))


@pytest.mark.parametrize("src,dst,want", [
    ((2, 3, 4), (6, 4), [([0, 1], [0]), ([2], [1])]),
    ((2, 12), (2, 3, 4), [([0], [0]), ([1], [1, 2])]),
    ((1, 6), (6,), [([0, 1], [0])]),
    ((6,), (6, 1), [([0], [0, 1])]),
    ((4, 6), (6, 4), [([0, 1], [0, 1])]),
    ((2, 3), (3, 5), None),
])
def test_reshape_groups(src, dst, want):
    assert _groups(src, dst) == want
