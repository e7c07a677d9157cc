"""Activations against torch: forward and gradient in float64, at the knees too."""
import warnings

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jaxconv.functional as F
from tests._util import assert_close, check_grad, randn, t

# (name, jaxconv function, torch function, the points where the function changes branch)
CASES = [
    ("relu", F.relu, TF.relu, [0.0]),
    ("relu6", F.relu6, TF.relu6, [0.0, 6.0]),
    ("hardtanh", F.hardtanh, TF.hardtanh, [-1.0, 1.0]),
    ("hardtanh(-2,3)", lambda x: F.hardtanh(x, -2.0, 3.0), lambda x: TF.hardtanh(x, -2.0, 3.0), [-2.0, 3.0]),
    ("leaky_relu", F.leaky_relu, TF.leaky_relu, [0.0]),
    ("leaky_relu(0.2)", lambda x: F.leaky_relu(x, 0.2, True), lambda x: TF.leaky_relu(x, 0.2), [0.0]),
    ("elu", F.elu, TF.elu, [0.0, 800.0, -800.0]),
    ("elu(0.5)", lambda x: F.elu(x, 0.5), lambda x: TF.elu(x, 0.5), [0.0, 800.0]),
    ("selu", F.selu, TF.selu, [0.0, 800.0, -800.0]),
    ("celu", F.celu, TF.celu, [0.0, 800.0]),
    ("celu(2)", lambda x: F.celu(x, 2.0), lambda x: TF.celu(x, 2.0), [0.0, 1500.0]),
    ("gelu", F.gelu, TF.gelu, [0.0, -40.0, 40.0]),
    ("gelu(tanh)", lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh"), [0.0]),
    ("silu", F.silu, TF.silu, [0.0, -50.0, 50.0]),
    ("mish", F.mish, TF.mish, [0.0, -50.0, 50.0]),
    ("hardswish", F.hardswish, TF.hardswish, [-3.0, 3.0, 0.0]),
    ("hardsigmoid", F.hardsigmoid, TF.hardsigmoid, [-3.0, 3.0]),
    ("sigmoid", F.sigmoid, torch.sigmoid, [0.0, -50.0, 50.0]),
    ("tanh", F.tanh, torch.tanh, [0.0, 30.0]),
    ("softplus", F.softplus, TF.softplus, [20.0, 20.000001, 19.99999, -40.0]),
    ("softplus(2,5)", lambda x: F.softplus(x, 2.0, 5.0), lambda x: TF.softplus(x, 2.0, 5.0), [2.5, 2.5000001, 2.4999]),
    ("softplus(0.5,20)", lambda x: F.softplus(x, beta=0.5), lambda x: TF.softplus(x, beta=0.5), [40.0, 40.001, 39.999]),
]


# torch's float64 hardsigmoid backward multiplies by the float32 constant 1/6 (its kernel's
# ``one_sixth(1.0f / 6.0f)``); ours is exact, so that gradient is held to float32 precision.
GRAD_DTYPE = {"hardsigmoid": np.float32}
# The tanh-gelu gradient multiplies 1 - tanh(u)**2 (absolute rounding error ~eps, larger
# where XLA's tanh is within a few ulp) by up to ~0.3 * x**4, so its error grows with x.
AMPLIFICATION = {"gelu(tanh)": 40}


@pytest.mark.parametrize("name,fn,tfn,edges", CASES, ids=[c[0] for c in CASES])
def test_activation_matches_torch_forward_and_gradient(rng, name, fn, tfn, edges):
    x = np.concatenate([randn(rng, 48) * 4, np.asarray(edges, np.float64)])
    # reduction=4: each function is a handful of elementwise ops, each rounding once
    check_grad(fn, tfn, (x,), rng, reduction=4 * AMPLIFICATION.get(name, 1) ** 2,
               grad_dtype=GRAD_DTYPE.get(name))


@pytest.mark.parametrize("fn,tfn", [(F.gelu, TF.gelu), (F.softplus, TF.softplus), (F.hardswish, TF.hardswish),
                                    (F.elu, TF.elu)])
def test_activation_float32(rng, fn, tfn):
    x = randn(rng, 5, 7, dtype=np.float32) * 4
    y = jax.jit(fn)(x)
    assert y.dtype == np.float32
    assert_close(y, tfn(t(x)).numpy(), np.float32)


def test_nan_propagates(rng):
    x = np.array([np.nan, 1.0, -1.0])
    for fn, tfn in [(F.relu6, TF.relu6), (F.hardtanh, TF.hardtanh), (F.hardswish, TF.hardswish),
                    (F.hardsigmoid, TF.hardsigmoid), (F.leaky_relu, TF.leaky_relu), (F.elu, TF.elu)]:
        np.testing.assert_array_equal(np.isnan(np.asarray(fn(x))), np.isnan(tfn(t(x)).numpy()))


@pytest.mark.parametrize("shape,wsize", [((4, 3, 5), 3), ((4, 3, 5), 1), ((6,), 1), ((2, 5), 5)])
def test_prelu_matches_torch(rng, shape, wsize):
    x = randn(rng, *shape)
    x.flat[0] = 0.0
    w = randn(rng, wsize)
    check_grad(F.prelu, TF.prelu, (x, w), rng, reduction=x.size)


def test_prelu_errors(rng):
    with pytest.raises(ValueError, match="Found parameter numbers = 2 and channel size = 3"):
        F.prelu(randn(rng, 2, 3, 4), randn(rng, 2))
    with pytest.raises(ValueError, match="Found parameter numbers = 3 and channel size = 1"):
        F.prelu(randn(rng, 3), randn(rng, 3))
    with pytest.raises(ValueError, match="scalar or 1D tensor, but got: ndim = 2"):
        F.prelu(randn(rng, 2, 3), randn(rng, 1, 3))
    with pytest.raises(RuntimeError):
        TF.prelu(t(randn(rng, 2, 3, 4)), t(randn(rng, 2)))


@pytest.mark.parametrize("which", ["softmax", "log_softmax", "softmin"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_family_matches_torch(rng, which, dim):
    x = randn(rng, 3, 4, 5) * 3
    check_grad(lambda x: getattr(F, which)(x, dim), lambda x: getattr(TF, which)(x, dim), (x,), rng, reduction=5)


@pytest.mark.parametrize("shape", [(5,), (3, 4, 5), (2, 3, 4, 5)])
def test_softmax_implicit_dim_follows_torch_with_its_warning(rng, shape):
    x = randn(rng, *shape)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        y = F.softmax(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = TF.softmax(t(x)).numpy()
    assert_close(y, expected, reduction=5)


def test_softmax_dtype_and_errors(rng):
    x = randn(rng, 3, 4, dtype=np.float32)
    y = jax.jit(F.log_softmax, static_argnums=1, static_argnames="dtype")(x, 1, dtype=np.float64)
    assert y.dtype == np.float64
    assert_close(y, TF.log_softmax(t(x), 1, dtype=torch.float64).numpy(), reduction=4)
    with pytest.raises(ValueError, match=r"Dimension out of range \(expected to be in range of \[-2, 1\], but got dim=2\)"):
        F.softmax(x, 2)
    with pytest.raises(IndexError):
        TF.softmax(t(x), 2)


def test_argument_errors(rng):
    x = randn(rng, 4)
    with pytest.raises(ValueError, match="min_val cannot be greater than max_val"):
        F.hardtanh(x, 1.0, -1.0)
    with pytest.raises(ValueError):
        TF.hardtanh(t(x), 1.0, -1.0)
    with pytest.raises(ValueError, match="alpha cannot be 0 for CELU"):
        F.celu(x, 0.0)
    with pytest.raises(RuntimeError):
        TF.celu(t(x), 0.0)
    with pytest.raises(ValueError, match="approximate argument must be either 'none' or 'tanh'"):
        F.gelu(x, approximate="x")
    with pytest.raises(RuntimeError):
        TF.gelu(t(x), approximate="x")
