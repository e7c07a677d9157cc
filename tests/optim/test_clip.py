"""jaxconv.nn.utils clipping against torch.nn.utils: norms, the clip coefficient, non-finite
gradients, clip_grad_value, and the optax transformations in a chain and in nnx.Optimizer."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

import jaxconv.nn as jnn
from jaxconv.nn import utils
from jaxconv.optim import SGD

SHAPES = [(3, 4), (5,), (2, 3, 2), (7,), (1, 6)]


def _grads(seed, dtype=np.float32):
    """An asymmetric tree: leaves of different shapes and scales."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s) * rng.uniform(0.1, 3.0)).astype(dtype) for s in SHAPES]


def _tree(leaves):
    return {"conv": {"weight": leaves[0], "bias": leaves[1]}, "block": [leaves[2], leaves[3]],
            "fc": leaves[4]}


def _flat(tree):
    return [np.asarray(x) for x in (tree["conv"]["weight"], tree["conv"]["bias"], *tree["block"],
                                    tree["fc"])]


def _torch_clip(leaves, max_norm, norm_type, **kw):
    params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype))
              for g in leaves]
    for p, g in zip(params, leaves):
        p.grad = torch.from_numpy(g.copy())
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type, **kw)
    return [p.grad.numpy() for p in params], total


def _f64_norm(leaves, p):
    norms = np.array([np.linalg.norm(g.astype(np.float64).ravel(), p) if p != 0.5 else
                      np.sum(np.abs(g.astype(np.float64)) ** 0.5) ** 2 for g in leaves])
    return np.sum(norms ** 0.5) ** 2 if p == 0.5 else np.linalg.norm(norms, p)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 0.5, 0.0])
@pytest.mark.parametrize("below", [True, False])
def test_clip_grad_norm_matches_torch(norm_type, below):
    leaves = _grads(7)
    p = float(norm_type)
    ref = _f64_norm(leaves, p) if p != 0 else float(len(leaves))
    max_norm = ref * (0.37 if below else 2.5)
    want, want_norm = _torch_clip(leaves, max_norm, norm_type)
    got, norm = utils.clip_grad_norm(_tree([jnp.asarray(g) for g in leaves]), max_norm, norm_type)
    assert norm.dtype == jnp.float32
    # as close to the float64 norm as torch's float32 is, and to torch within float32 rounding
    ulp = np.spacing(np.float32(ref))
    assert abs(float(norm) - ref) <= max(4 * ulp, abs(float(want_norm) - ref) + 2 * ulp)
    np.testing.assert_allclose(float(norm), float(want_norm), rtol=4e-7)
    for g, w in zip(_flat(got), want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=0)
    if not below:  # coefficient clamped at 1: the gradients come back unchanged
        for g, w in zip(_flat(got), leaves):
            np.testing.assert_array_equal(g, w)


def test_clip_coefficient_is_torchs_reciprocal_times_max_norm():
    """torch evaluates ``max_norm / (norm + 1e-6)`` as ``reciprocal(norm + 1e-6) * max_norm``; on
    many norms this differs from one division in the last bit, so compare bit for bit."""
    rng = np.random.default_rng(3)
    totals = (10 ** rng.uniform(-7, 3, 4000)).astype(np.float32)
    max_norm = 0.7311
    coef = torch.clamp(max_norm / (torch.from_numpy(totals) + 1e-6), max=1.0).numpy()
    grads = rng.standard_normal(totals.shape).astype(np.float32)
    got = np.asarray(utils.clip_grads_with_norm(jnp.asarray(grads), max_norm, jnp.asarray(totals)))
    np.testing.assert_array_equal(got, (torch.from_numpy(grads) * torch.from_numpy(coef)).numpy())
    one_division = np.minimum(np.float32(max_norm) / (totals + np.float32(1e-6)), 1)
    assert (one_division != coef).any(), "the test cannot tell the two formulas apart"
    # the 1e-6: a tiny norm is not blown up to max_norm / norm
    small = jnp.asarray(np.float32(1e-6))
    assert float(utils.clip_grads_with_norm(small, 1e-6, small)) == pytest.approx(5e-7, rel=1e-6)


def test_total_norm_is_the_norm_of_the_per_leaf_norms():
    """For p = 0.5 the norm of norms differs from the norm of the concatenation."""
    leaves = [np.array([1.0, 4.0], np.float32), np.array([9.0], np.float32)]
    total = utils.get_total_norm(leaves, 0.5)
    per_leaf = np.array([9.0, 9.0])
    assert float(total) == pytest.approx(np.sum(per_leaf ** 0.5) ** 2, rel=1e-6)  # 36
    want = torch.nn.utils.get_total_norm([torch.from_numpy(x) for x in leaves], 0.5)
    assert float(total) == pytest.approx(float(want), rel=1e-6)


def test_mixed_dtypes_match_torch():
    leaves = _grads(5)
    leaves_t = [torch.from_numpy(g) for g in leaves]
    leaves_t[1] = leaves_t[1].to(torch.bfloat16)
    leaves_t[3] = leaves_t[3].to(torch.float16)
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in leaves_t]
    for p, g in zip(params, leaves_t):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(params, 1.5)
    jl = [jnp.asarray(g) for g in leaves]
    jl[1], jl[3] = jl[1].astype(jnp.bfloat16), jl[3].astype(jnp.float16)
    got, norm = utils.clip_grad_norm(jl, 1.5)
    assert norm.dtype == jnp.float32 and float(norm) == pytest.approx(float(total), rel=1e-6)
    for g, p in zip(got, params):
        assert g.dtype == jnp.dtype(str(p.grad.dtype).split(".")[-1])
        np.testing.assert_allclose(np.asarray(g, np.float32), p.grad.float().numpy(), rtol=1e-2)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_nonfinite_norm(bad):
    leaves = _grads(11)
    leaves[2] = leaves[2].copy()
    leaves[2][1, 0, 1] = bad
    tree = _tree([jnp.asarray(g) for g in leaves])
    # error_if_nonfinite=False: scaled by the non-finite norm anyway, as torch does
    want, want_norm = _torch_clip(leaves, 1.0, 2.0)
    got, norm = utils.clip_grad_norm(tree, 1.0)
    np.testing.assert_array_equal(float(norm), float(want_norm))
    for g, w in zip(_flat(got), want):
        np.testing.assert_array_equal(g, w)  # NaN where torch has NaN, zeros elsewhere for inf
    # error_if_nonfinite=True: torch's error and message, eagerly
    with pytest.raises(RuntimeError) as torch_error:
        _torch_clip(leaves, 1.0, 2.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError) as ours:
        utils.clip_grad_norm(tree, 1.0, error_if_nonfinite=True)
    assert str(ours.value) == str(torch_error.value)
    # under jit: the call fails at run time with torch's message; finite gradients pass
    clip = jax.jit(lambda t: utils.clip_grad_norm(t, 1.0, error_if_nonfinite=True))
    with pytest.raises(jax.errors.JaxRuntimeError, match="is non-finite, so it cannot be clipped"):
        jax.block_until_ready(clip(tree))
    fine = _tree([jnp.asarray(g) for g in _grads(11)])
    got, norm = jax.block_until_ready(clip(fine))
    eager, eager_norm = utils.clip_grad_norm(fine, 1.0)
    np.testing.assert_allclose(float(norm), float(eager_norm), rtol=4e-7)  # fused sums differ
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, eager)


def test_clip_grad_value_matches_torch():
    leaves = _grads(13)
    leaves[0] = leaves[0].copy()
    leaves[0][2, 1] = np.nan
    params = [torch.nn.Parameter(torch.zeros(g.shape)) for g in leaves]
    for p, g in zip(params, leaves):
        p.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_value_(params, 0.8)
    got = utils.clip_grad_value(_tree([jnp.asarray(g) for g in leaves]), 0.8)
    for g, p in zip(_flat(got), params):
        np.testing.assert_array_equal(g, p.grad.numpy())
    assert jnp.isnan(got["conv"]["weight"][2, 1])


def test_edge_cases_and_errors():
    empty, norm = utils.clip_grad_norm({}, 1.0)
    assert empty == {} and float(norm) == 0.0
    tree = {"a": jnp.ones(3), "b": None}
    clipped, _ = utils.clip_grad_norm(tree, 1.0)
    assert clipped["b"] is None
    one, norm = utils.clip_grad_norm(jnp.array([3.0, 4.0]), 1.0)  # one array, as torch accepts
    assert float(norm) == 5.0
    assert float(utils.get_total_norm(jnp.array([3.0, -4.0]), "inf")) == 4.0  # torch's float('inf')
    with pytest.raises(ValueError, match="norm_type must be a number or 'inf', got 'two'"):
        utils.clip_grad_norm(tree, 1.0, "two")


def _linear_pair(seed=0):
    torch.manual_seed(seed)
    t = torch.nn.Linear(5, 3)
    j = jnn.Linear(5, 3, rngs=nnx.Rngs(0))
    j.weight[...] = jnp.asarray(t.weight.detach().numpy())
    j.bias[...] = jnp.asarray(t.bias.detach().numpy())
    return t, j


def test_transformations_chain_in_nnx_optimizer():
    """``optax.chain(ClipGradNorm, SGD)`` in ``nnx.Optimizer`` is torch's clip then ``step()``."""
    t, j = _linear_pair()
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((8, 5)).astype(np.float32), rng.standard_normal((8, 3)).astype(np.float32)
    tx = optax.chain(utils.ClipGradNorm(0.05, 1.0), SGD(lr=0.5, momentum=0.9))
    assert repr(utils.ClipGradNorm(0.05, 1.0)) == ("ClipGradNorm(max_norm=0.05, norm_type=1.0, "
                                                   "error_if_nonfinite=False)")
    opt_t = torch.optim.SGD(t.parameters(), lr=0.5, momentum=0.9)
    opt_j = nnx.Optimizer(j, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        grads = nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads, value=jnp.float32(1.0))  # extra args accepted, ignored

    for _ in range(3):
        opt_t.zero_grad()
        ((t(torch.from_numpy(x)) - torch.from_numpy(y)) ** 2).mean().backward()
        torch.nn.utils.clip_grad_norm_(t.parameters(), 0.05, 1.0)
        opt_t.step()
        step(j, opt_j)
    np.testing.assert_allclose(np.asarray(j.weight[...]), t.weight.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(j.bias[...]), t.bias.detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_clip_grad_value_transformation():
    grads = {"w": jnp.array([0.3, -2.0, 1.0]), "b": jnp.array([-0.01])}
    tx = optax.chain(utils.ClipGradValue(0.5), optax.sgd(1.0))
    updates, _ = tx.update(grads, tx.init(grads), grads)
    np.testing.assert_array_equal(np.asarray(updates["w"]), [-0.3, 0.5, -0.5])
    np.testing.assert_array_equal(np.asarray(updates["b"]), [0.01])
    assert repr(utils.ClipGradValue(0.5)) == "ClipGradValue(clip_value=0.5)"


class _RecordValue:
    """A scheduler rule that records the ``value`` it is stepped with."""

    cycles_momentum = False

    def init(self, hyper, momentum_key):
        return jnp.float32(0.0), hyper

    def step(self, state, hyper, value=None):
        return jnp.asarray(value, jnp.float32), hyper


def test_value_reaches_a_chained_jaxconv_optimizer():
    """optax.chain passes extra arguments only to GradientTransformationExtraArgs members: a
    jaxconv optimizer is one, so ``value`` reaches it."""
    params = {"w": jnp.arange(3.0)}
    opt = SGD(lr=0.1).with_scheduler(_RecordValue())
    tx = optax.chain(utils.ClipGradNorm(1.0), opt)
    state = tx.init(params)
    _, state = tx.update({"w": jnp.array([0.3, -2.0, 1.0])}, state, params, value=2.5)
    assert float(state[1].schedule) == 2.5
