"""torch's default initialisation of Conv/ConvTranspose: bounds, moments, dtypes, seeding, shapes."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxconv
import jaxconv.nn as nn

# (class name, args, kwargs): a spread of conv and transposed-conv configs
CONFIGS = [
    ("Conv1d", (3, 5, 4), {}),
    ("Conv2d", (6, 4, (3, 2)), dict(groups=2)),
    ("Conv3d", (2, 6, (1, 2, 3)), dict(bias=False)),
    ("ConvTranspose1d", (4, 6, 3), dict(groups=2)),
    ("ConvTranspose2d", (3, 8, (2, 4)), {}),
    ("ConvTranspose3d", (6, 3, 2), dict(groups=3, bias=False)),
]


def _torch_bound(tm):
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(tm.weight)
    return 1 / math.sqrt(fan_in)


@pytest.mark.parametrize("name,args,kwargs", CONFIGS)
def test_shapes_names_and_bounds_match_torch(name, args, kwargs):
    tm, m = getattr(torch.nn, name)(*args, **kwargs), getattr(nn, name)(*args, **kwargs)
    assert m.weight[...].shape == tuple(tm.weight.shape)
    assert (m.bias is None) == (tm.bias is None)
    if tm.bias is not None:
        assert m.bias[...].shape == tuple(tm.bias.shape)
    # parameters registered under torch's names
    assert sorted("/".join(map(str, k)) for k, _ in nnx.to_flat_state(nnx.state(m, nnx.Param))) == sorted(
        n for n, _ in tm.named_parameters())
    # torch's fan_in: weight.shape[1] * prod(kernel) -- for a transposed conv, out/groups * prod(k)
    k = tm.kernel_size
    assert _torch_bound(tm) == 1 / math.sqrt(tm.weight.shape[1] * math.prod(k))
    bound = _torch_bound(tm)
    for p in (m.weight, m.bias) if m.bias is not None else (m.weight,):
        v = np.asarray(p[...])
        assert np.abs(v).max() <= bound
        assert np.std(v) > 0  # random, not constant


def _moments_ok(sample, bound):
    """Mean, variance and the mass in [-b/2, b/2] of ``sample`` match U(-b, b), each within five
    standard errors for this sample size; and no value outside [-b, b]."""
    x = np.asarray(sample, np.float64).ravel()
    n = x.size
    assert np.abs(x).max() <= bound * (1 + 1e-6)
    assert np.abs(x).max() > bound * (1 - 20 / n)  # the support reaches the bound
    assert abs(x.mean()) <= 5 * bound / math.sqrt(3 * n)
    var = np.mean(x**2)
    assert abs(var - bound**2 / 3) <= 5 * bound**2 * math.sqrt(4 / 45 / n)
    inner = np.mean(np.abs(x) <= bound / 2)  # 0.5 for a uniform (0.61 for a normal of that variance)
    assert abs(inner - 0.5) <= 5 * math.sqrt(0.25 / n)


@pytest.mark.parametrize("name,args,kwargs,param", [
    ("Conv2d", (64, 128, 3), {}, "weight"),
    ("ConvTranspose2d", (16, 256, 3), dict(groups=2), "weight"),   # fan_in = 128 * 9, not 16 * 9
    ("Conv2d", (2, 20000, 1), {}, "bias"),
    ("ConvTranspose1d", (3, 20000, 1), {}, "bias"),                # bias bound 1/sqrt(20000)
])
def test_moments_match_torch(name, args, kwargs, param):
    torch.manual_seed(0)
    jaxconv.manual_seed(0)
    tm, m = getattr(torch.nn, name)(*args, **kwargs), getattr(nn, name)(*args, **kwargs)
    bound = _torch_bound(tm)
    _moments_ok(getattr(tm, param).detach().numpy(), bound)   # torch's own init passes ...
    _moments_ok(getattr(m, param)[...], bound)                 # ... and so does jaxconv's


@pytest.mark.parametrize("cls", [nn.Conv2d, nn.ConvTranspose2d])
def test_dtype_default_float32_even_with_x64(cls):
    assert jax.config.jax_enable_x64  # conftest turns x64 on: the default must not follow it
    m = cls(2, 4, 3)
    assert m.weight[...].dtype == jnp.float32 and m.bias[...].dtype == jnp.float32
    for dtype in (jnp.float64, jnp.bfloat16, jnp.float16):
        m = cls(2, 4, 3, dtype=dtype)
        assert m.weight[...].dtype == dtype and m.bias[...].dtype == dtype
        bound = 1 / math.sqrt(m.weight[...].shape[1] * 9)
        assert float(jnp.abs(m.weight[...].astype(jnp.float64)).max()) <= bound * (1 + jnp.finfo(dtype).eps)


def _build():
    return [nn.Conv2d(3, 4, 3), nn.ConvTranspose1d(2, 6, 2), nn.Conv3d(2, 2, 2, bias=False)]


def _values(mods):
    return [np.asarray(p[...]) for m in mods for p in (m.weight, m.bias) if p is not None]


def test_manual_seed_reproducible():
    jaxconv.manual_seed(7)
    first = _values(_build())
    jaxconv.manual_seed(7)
    again = _values(_build())
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    jaxconv.manual_seed(8)
    other = _values(_build())
    assert all(not np.array_equal(a, b) for a, b in zip(first, other))
    # the stream advances: two identical layers built in a row differ
    jaxconv.manual_seed(7)
    a, b = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)
    assert not np.array_equal(np.asarray(a.weight[...]), np.asarray(b.weight[...]))


def test_rngs_argument():
    a = nn.Conv2d(3, 4, 3, rngs=nnx.Rngs(0))
    b = nn.Conv2d(3, 4, 3, rngs=nnx.Rngs(0))
    c = nn.Conv2d(3, 4, 3, rngs=nnx.Rngs(1))
    np.testing.assert_array_equal(np.asarray(a.weight[...]), np.asarray(b.weight[...]))
    np.testing.assert_array_equal(np.asarray(a.bias[...]), np.asarray(b.bias[...]))
    assert not np.array_equal(np.asarray(a.weight[...]), np.asarray(c.weight[...]))
    # the library stream is untouched by explicit rngs
    jaxconv.manual_seed(3)
    x = nn.ConvTranspose2d(3, 4, 3)
    jaxconv.manual_seed(3)
    nn.ConvTranspose2d(3, 4, 3, rngs=nnx.Rngs(5))
    y = nn.ConvTranspose2d(3, 4, 3)
    np.testing.assert_array_equal(np.asarray(x.weight[...]), np.asarray(y.weight[...]))
    assert np.abs(np.asarray(a.weight[...])).max() <= 1 / math.sqrt(27)


def test_init_under_jit_and_eval_shape_matches_eager():
    """Building a layer inside a trace gives the same parameters as building it eagerly."""
    key = jax.random.key(11)
    eager = nn.Conv2d(5, 7, (3, 2), rngs=key)
    w, b = jax.jit(lambda k: (lambda m: (m.weight[...], m.bias[...]))(nn.Conv2d(5, 7, (3, 2), rngs=k)))(key)
    np.testing.assert_allclose(np.asarray(w), np.asarray(eager.weight[...]), rtol=0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(b), np.asarray(eager.bias[...]), rtol=0, atol=1e-7)
    abstract = nnx.eval_shape(lambda: nn.ConvTranspose3d(4, 6, 2, groups=2, rngs=nnx.Rngs(0)))
    assert abstract.weight.shape == (4, 3, 2, 2, 2) and abstract.weight.dtype == jnp.float32


def test_numpy_integer_sizes_build_as_in_torch():
    """torch.nn.Linear(np.int64(8), np.int64(2)) builds; so does jaxconv's, with the same shapes."""
    import numpy as np
    import torch
    from jaxconv import nn

    theirs = torch.nn.Linear(np.int64(8), np.int64(2))
    ours = nn.Linear(np.int64(8), np.int64(2))
    assert ours.weight[...].shape == tuple(theirs.weight.shape)
    assert ours.bias[...].shape == tuple(theirs.bias.shape)
    bound = 1 / np.sqrt(8)
    assert float(np.max(np.abs(np.asarray(ours.weight[...])))) <= bound
