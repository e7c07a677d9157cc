"""Linear, Identity, Flatten, Unflatten and the Dropout modules."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxconv
import jaxconv.nn as nn
from tests._util import assert_close, randn, t


@nnx.jit
def jit_call(m, x):
    return m(x)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_layout_init_repr_and_forward(rng, bias):
    ours, theirs = nn.Linear(20, 7, bias=bias, rngs=nnx.Rngs(0)), torch.nn.Linear(20, 7, bias=bias)
    assert repr(ours) == repr(theirs)
    names = [k for k, v in vars(ours).items() if isinstance(v, nnx.Param)]
    assert names == [k for k, _ in theirs.named_parameters()]
    assert ours.weight[...].shape == (7, 20) and ours.weight[...].dtype == np.float32
    bound = 1 / math.sqrt(20)  # torch's kaiming_uniform(a=sqrt(5)) bound, and the bias bound
    for p in (ours.weight, ours.bias):
        if p is not None:
            v = np.asarray(p[...])
            assert np.all(np.abs(v) <= bound) and np.abs(v).max() > 0.6 * bound and np.std(v) > 0.3 * bound
    with torch.no_grad():
        theirs.weight.copy_(t(ours.weight[...]))
        if bias:
            theirs.bias.copy_(t(ours.bias[...]))
    x = randn(rng, 3, 5, 20, dtype=np.float32)
    y = jit_call(ours, x)
    assert y.dtype == np.float32
    assert_close(y, theirs(t(x)).detach().numpy(), np.float32, reduction=20)


def test_linear_rngs_and_manual_seed_reproducible():
    a, b = nn.Linear(4, 3, rngs=nnx.Rngs(1)), nn.Linear(4, 3, rngs=nnx.Rngs(1))
    np.testing.assert_array_equal(a.weight[...], b.weight[...])
    jaxconv.manual_seed(7)
    c = nn.Linear(4, 3)
    jaxconv.manual_seed(7)
    d = nn.Linear(4, 3)
    np.testing.assert_array_equal(c.weight[...], d.weight[...])
    np.testing.assert_array_equal(c.bias[...], d.bias[...])
    assert not np.array_equal(a.weight[...], c.weight[...])
    assert nn.Linear(4, 3, dtype=jnp.float64).weight[...].dtype == np.float64


def test_identity_flatten_unflatten(rng):
    x = randn(rng, 2, 3, 4, 5)
    assert repr(nn.Identity(3, foo=1)) == repr(torch.nn.Identity(3, foo=1)) == "Identity()"
    assert nn.Identity()(x) is x
    for args in [(), (0, 2), (2,), (-3, -2)]:
        ours, theirs = nn.Flatten(*args), torch.nn.Flatten(*args)
        assert repr(ours) == repr(theirs)
        np.testing.assert_array_equal(jit_call(ours, x), theirs(t(x)).numpy())
    for dim, sizes in [(1, (2, 10)), (-1, [5, 1]), (1, (-1, 5))]:
        y = x.reshape(2, 20, 3) if dim == 1 else x
        ours, theirs = nn.Unflatten(dim, sizes), torch.nn.Unflatten(dim, sizes)
        assert repr(ours) == repr(theirs)
        np.testing.assert_array_equal(jit_call(ours, y), theirs(t(y)).numpy())


def test_unflatten_errors(rng):
    with pytest.raises(TypeError, match="unflattened_size must be a tuple of ints, but found type int"):
        nn.Unflatten(1, 2)
    with pytest.raises(TypeError):
        torch.nn.Unflatten(1, 2)
    with pytest.raises(TypeError, match="found element of type float at pos 1"):
        nn.Unflatten(1, (2, 3.0))
    with pytest.raises(ValueError, match="don't multiply up"):
        nn.Unflatten(1, (4, 2))(randn(rng, 2, 6))


# -------------------------------------------------------------------------------- dropout

@pytest.mark.parametrize("name", ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d"])
def test_dropout_repr_and_mode(name):
    for args in [(), (0.2, True)]:
        ours, theirs = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
        assert repr(ours) == repr(theirs)
    m = getattr(nn, name)()
    assert m.deterministic is False and m.training
    model = nn.Sequential(nn.Linear(3, 3), m)
    model.eval()
    assert m.deterministic and not m.training
    model.train()
    assert not m.deterministic
    nnx.Module.eval(m)  # flax's own eval() sets it too
    assert m.deterministic
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        getattr(nn, name)(1.5)
    with pytest.raises(ValueError):
        getattr(torch.nn, name)(1.5)


def test_dropout_train_statistics_eval_identity_and_fresh_masks_under_jit(rng):
    p = 0.3
    m = nn.Dropout(p, rngs=nnx.Rngs(dropout=3))
    x = randn(rng, 100, 100, dtype=np.float32)
    masks = []
    for _ in range(3):
        y = np.asarray(jit_call(m, x))
        dropped = y == 0
        assert abs(dropped.mean() - p) < 5 * math.sqrt(p * (1 - p) / x.size)
        np.testing.assert_array_equal(y[~dropped], x[~dropped] * (np.float32(1) / np.float32(1 - p)))
        masks.append(dropped)
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])
    m.eval()
    np.testing.assert_array_equal(jit_call(m, x), x)
    # the same seed gives the same sequence of masks
    m2 = nn.Dropout(p, rngs=nnx.Rngs(dropout=3))
    np.testing.assert_array_equal(np.asarray(jit_call(m2, x)) == 0, masks[0])


def test_dropout2d_module_drops_whole_channels(rng):
    p = 0.5
    m = nn.Dropout2d(p, rngs=jax.random.key(0))
    x = randn(rng, 20, 30, 3, 4, dtype=np.float32)
    y1, y2 = np.asarray(jit_call(m, x)), np.asarray(jit_call(m, x))
    for y in (y1, y2):
        dropped = np.all(y == 0, axis=(2, 3))
        assert np.all(dropped | np.all(y != 0, axis=(2, 3)))
        assert abs(dropped.mean() - p) < 5 * math.sqrt(p * (1 - p) / dropped.size)
    assert not np.array_equal(y1 == 0, y2 == 0)
    m.eval()
    np.testing.assert_array_equal(jit_call(m, x), x)


def test_dropout_p_zero_and_one(rng):
    x = randn(rng, 4, 5, dtype=np.float32)
    np.testing.assert_array_equal(nn.Dropout(0.0)(x), x)
    np.testing.assert_array_equal(nn.Dropout(1.0)(x), np.zeros_like(x))


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_drops_whole_samples_and_scales_survivors(mode):
    """torchvision's rule: per sample (row) or for the whole batch, survivors / (1 - p)."""
    from jaxconv import nn as jnn

    x = jnp.asarray(np.random.default_rng(0).standard_normal((64, 3, 2, 2)))
    m = jnn.StochasticDepth(0.25, mode, rngs=jax.random.key(1))
    y = np.asarray(m(x))
    kept = np.abs(y).reshape(64, -1).max(axis=1) > 0
    np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / 0.75, rtol=1e-12)
    assert (y[~kept] == 0).all()
    if mode == "batch":
        assert kept.all() or not kept.any()
    else:
        assert 0 < kept.sum() < 64
    m.eval()
    np.testing.assert_array_equal(np.asarray(m(x)), np.asarray(x))


def test_drop_path_scale_by_keep():
    """timm's DropPath: per sample; ``scale_by_keep=False`` leaves survivors as they are."""
    from jaxconv import nn as jnn

    x = jnp.asarray(np.random.default_rng(0).standard_normal((64, 5)))
    for scale, factor in ((True, 1 / 0.6), (False, 1.0)):
        y = np.asarray(jnn.DropPath(0.4, scale_by_keep=scale, rngs=jax.random.key(2))(x))
        kept = np.abs(y).max(axis=1) > 0
        np.testing.assert_allclose(y[kept], np.asarray(x)[kept] * factor, rtol=1e-12)
        assert 0 < kept.sum() < 64


def test_stochastic_depth_refuses_a_bad_mode_as_torchvision_does():
    from jaxconv import functional as jf
    from tests._zoo import torchvision_models

    torchvision_models()
    from torchvision.ops import stochastic_depth

    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="mode"):
        stochastic_depth(torch.from_numpy(x), 0.5, "column", True)
    with pytest.raises(ValueError, match="mode has to be either 'batch' or 'row'"):
        jf.stochastic_depth(jnp.asarray(x), 0.5, "column", key=jax.random.key(0))
