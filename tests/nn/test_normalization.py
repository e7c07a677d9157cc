"""Normalization modules against torch: running statistics over train steps, modes, reprs."""
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxconv.nn as nn
from tests._util import assert_close, randn, t


@nnx.jit
def jit_call(m, x):
    return m(x)


def eager_call(m, x):
    return m(x)


def variables(m):
    """Parameter and buffer names in registration order (torch's state_dict order)."""
    return [k for k, v in vars(m).items() if isinstance(v, nnx.Variable)]


def copy_affine(ours, theirs, rng):
    """Give both modules the same random affine parameters (not ones/zeros)."""
    for name in ("weight", "bias"):
        p = getattr(theirs, name, None)
        if p is not None:
            v = randn(rng, *p.shape)
            with torch.no_grad():
                p.copy_(t(v))
            getattr(ours, name)[...] = jnp.asarray(v, getattr(ours, name)[...].dtype)


REPRS = [
    (lambda m: m.BatchNorm2d(3), None),
    (lambda m: m.BatchNorm1d(5, eps=1e-3, momentum=None, affine=False), None),
    (lambda m: m.BatchNorm3d(4, track_running_stats=False, bias=False), None),
    (lambda m: m.InstanceNorm2d(3), None),
    (lambda m: m.InstanceNorm1d(3, affine=True, track_running_stats=True), None),
    (lambda m: m.GroupNorm(2, 6), None),
    (lambda m: m.GroupNorm(3, 6, eps=1e-4, affine=False), None),
    (lambda m: m.LayerNorm(10), None),
    (lambda m: m.LayerNorm((3, 4), elementwise_affine=False), None),
    (lambda m: m.LayerNorm([3, 4], bias=False), None),
    (lambda m: m.RMSNorm(10), None),
    (lambda m: m.RMSNorm([2, 3], eps=1e-3, elementwise_affine=False), None),
    (lambda m: m.LocalResponseNorm(2), None),
    (lambda m: m.LocalResponseNorm(3, alpha=0.01, beta=0.5, k=2.0), None),
]


@pytest.mark.parametrize("make", [r[0] for r in REPRS])
def test_repr_names_and_order_match_torch(make):
    ours, theirs = make(nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    assert variables(ours) == [k for k, _ in theirs.named_parameters()] + [k for k, _ in theirs.named_buffers()]
    state = theirs.state_dict()
    for name in variables(ours):
        v = getattr(ours, name)[...]
        np.testing.assert_array_equal(v, state[name].numpy())
        assert v.dtype == (np.float32 if name != "num_batches_tracked" else v.dtype)


@pytest.mark.parametrize("call", [eager_call, jit_call], ids=["eager", "nnx.jit"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_running_stats_over_train_steps_then_eval(rng, call, momentum):
    ours = nn.BatchNorm2d(3, momentum=momentum, dtype=jnp.float64)
    theirs = torch.nn.BatchNorm2d(3, momentum=momentum).double()
    copy_affine(ours, theirs, rng)
    assert ours.training and not ours.use_running_average
    for step in range(4):
        x = randn(rng, 4, 3, 5, 6) * (step + 1) + step
        assert_close(call(ours, x), theirs(t(x)).detach().numpy(), reduction=120)
        assert_close(ours.running_mean[...], theirs.running_mean.numpy(), reduction=120)
        assert_close(ours.running_var[...], theirs.running_var.numpy(), reduction=120)
        assert int(ours.num_batches_tracked[...]) == int(theirs.num_batches_tracked) == step + 1
    assert ours.eval() is ours
    theirs.eval()
    assert ours.use_running_average and not ours.training
    x = randn(rng, 2, 3, 5, 6)
    assert_close(call(ours, x), theirs(t(x)).detach().numpy(), reduction=120)
    assert int(ours.num_batches_tracked[...]) == 4  # eval does not count
    ours.train()
    assert ours.training


@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (6, 3)), ("BatchNorm1d", (4, 3, 5)), ("BatchNorm3d", (2, 3, 2, 3, 4))])
def test_batchnorm_dimensions(rng, cls, shape):
    ours, theirs = getattr(nn, cls)(3, dtype=jnp.float64), getattr(torch.nn, cls)(3).double()
    copy_affine(ours, theirs, rng)
    for _ in range(2):
        x = randn(rng, *shape)
        assert_close(jit_call(ours, x), theirs(t(x)).detach().numpy(), reduction=24)
    assert_close(ours.running_var[...], theirs.running_var.numpy(), reduction=24)


def test_batchnorm_float32(rng):
    ours, theirs = nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4)
    x = randn(rng, 8, 4, 3, 3, dtype=np.float32)
    y = jit_call(ours, x)
    assert y.dtype == ours.running_mean[...].dtype == np.float32
    assert_close(y, theirs(t(x)).detach().numpy(), np.float32, reduction=72)
    assert_close(ours.running_var[...], theirs.running_var.numpy(), np.float32, reduction=72)


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval(rng):
    ours = nn.BatchNorm2d(3, track_running_stats=False, dtype=jnp.float64)
    theirs = torch.nn.BatchNorm2d(3, track_running_stats=False).double()
    assert ours.running_mean is None and ours.num_batches_tracked is None
    copy_affine(ours, theirs, rng)
    x = randn(rng, 4, 3, 2, 5) * 3 + 1
    assert_close(ours(x), theirs(t(x)).detach().numpy(), reduction=40)
    ours.eval()
    theirs.eval()
    assert_close(jit_call(ours, x), theirs(t(x)).detach().numpy(), reduction=40)


def test_batchnorm_affine_false(rng):
    ours, theirs = nn.BatchNorm1d(4, affine=False, dtype=jnp.float64), torch.nn.BatchNorm1d(4, affine=False).double()
    assert ours.weight is None and ours.bias is None
    x = randn(rng, 5, 4, 3)
    assert_close(ours(x), theirs(t(x)).detach().numpy(), reduction=15)
    assert_close(ours.running_mean[...], theirs.running_mean.numpy(), reduction=15)


def test_batchnorm_gradients_in_train_mode(rng):
    ours = nn.BatchNorm2d(3, dtype=jnp.float64)
    theirs = torch.nn.BatchNorm2d(3).double()
    copy_affine(ours, theirs, rng)
    x, g = randn(rng, 4, 3, 2, 3), randn(rng, 4, 3, 2, 3)
    grads = nnx.jit(nnx.grad(lambda m, x: jnp.sum(m(x) * g)))(ours, x)
    (theirs(t(x)) * t(g)).sum().backward()
    assert_close(grads["weight"][...], theirs.weight.grad.numpy(), reduction=24)
    assert_close(grads["bias"][...], theirs.bias.grad.numpy(), reduction=24)
    assert_close(ours.running_mean[...], theirs.running_mean.numpy(), reduction=24)


def test_batchnorm_errors(rng):
    for cls, bad in [("BatchNorm1d", (2, 3, 4, 5)), ("BatchNorm2d", (2, 3, 4)), ("BatchNorm3d", (2, 3, 4, 5))]:
        with pytest.raises(ValueError, match=rf"expected .*input \(got {len(bad)}D input\)"):
            getattr(nn, cls)(3)(randn(rng, *bad))
        with pytest.raises(ValueError):
            getattr(torch.nn, cls)(3)(t(randn(rng, *bad)))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        nn.BatchNorm1d(3)(randn(rng, 1, 3))


@pytest.mark.parametrize("track", [False, True])
@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 4, 5)], ids=["unbatched", "batched"])
def test_instancenorm_matches_torch(rng, track, shape):
    ours = nn.InstanceNorm2d(3, affine=True, track_running_stats=track, dtype=jnp.float64)
    theirs = torch.nn.InstanceNorm2d(3, affine=True, track_running_stats=track).double()
    copy_affine(ours, theirs, rng)
    for step in range(2):
        x = randn(rng, *shape) + step
        assert_close(jit_call(ours, x), theirs(t(x)).detach().numpy(), reduction=20)
    if track:
        assert_close(ours.running_mean[...], theirs.running_mean.numpy(), reduction=20)
        assert_close(ours.running_var[...], theirs.running_var.numpy(), reduction=20)
        assert int(ours.num_batches_tracked[...]) == int(theirs.num_batches_tracked) == 0
    ours.eval()
    theirs.eval()
    x = randn(rng, *shape)
    assert_close(jit_call(ours, x), theirs(t(x)).detach().numpy(), reduction=20)


def test_instancenorm_checks(rng):
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 4D input\)"):
        nn.InstanceNorm1d(3)(randn(rng, 2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"expected input's size at dim=1 to match num_features \(4\), but got: 3"):
        nn.InstanceNorm1d(4, affine=True)(randn(rng, 2, 3, 5))
    with pytest.raises(ValueError):
        torch.nn.InstanceNorm1d(4, affine=True)(t(randn(rng, 2, 3, 5)))
    x = randn(rng, 2, 3, 5)
    with pytest.warns(UserWarning, match="does not match num_features"):
        y = nn.InstanceNorm1d(4)(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = torch.nn.InstanceNorm1d(4)(t(x)).numpy()
    assert_close(y, expected, reduction=5)


@pytest.mark.parametrize("make,shape,reduction", [
    (lambda m, d: m.GroupNorm(2, 6, eps=1e-3, dtype=d), (2, 6, 5), 15),
    (lambda m, d: m.GroupNorm(3, 6, bias=False, dtype=d), (4, 6), 2),
    (lambda m, d: m.LayerNorm((4, 5), dtype=d), (3, 4, 5), 20),
    (lambda m, d: m.LayerNorm(5, bias=False, dtype=d), (3, 4, 5), 5),
    (lambda m, d: m.RMSNorm((4, 5), dtype=d), (3, 4, 5), 20),
    (lambda m, d: m.LocalResponseNorm(3, alpha=0.2), (2, 6, 3, 3), 3),
])
def test_stateless_norm_modules_match_torch(rng, make, shape, reduction):
    ours, theirs = make(nn, jnp.float64), make(torch.nn, torch.float64)
    copy_affine(ours, theirs, rng)
    x = randn(rng, *shape)
    assert_close(jit_call(ours, x), theirs(t(x)).detach().numpy(), reduction=reduction)


def test_groupnorm_construction_error():
    with pytest.raises(ValueError, match=r"num_channels \(6\) must be divisible by num_groups \(4\)"):
        nn.GroupNorm(4, 6)
