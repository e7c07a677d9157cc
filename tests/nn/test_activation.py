"""Activation modules: torch's reprs and defaults, forward against torch, PReLU's parameter."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxconv.nn as nn
from tests._util import assert_close, randn, t

MODULES = [
    lambda m: m.ReLU(), lambda m: m.ReLU(inplace=True), lambda m: m.ReLU6(), lambda m: m.ReLU6(True),
    lambda m: m.LeakyReLU(), lambda m: m.LeakyReLU(0.2, True), lambda m: m.ELU(), lambda m: m.ELU(0.5, inplace=True),
    lambda m: m.SELU(), lambda m: m.SELU(True), lambda m: m.CELU(), lambda m: m.CELU(2.0),
    lambda m: m.GELU(), lambda m: m.GELU("tanh"), lambda m: m.GELU(approximate="tanh"),
    lambda m: m.SiLU(), lambda m: m.SiLU(inplace=True), lambda m: m.Mish(), lambda m: m.Mish(True),
    lambda m: m.Hardswish(), lambda m: m.Hardswish(True), lambda m: m.Hardsigmoid(), lambda m: m.Hardsigmoid(True),
    lambda m: m.Hardtanh(), lambda m: m.Hardtanh(-2.0, 3.0, True), lambda m: m.Sigmoid(), lambda m: m.Tanh(),
    lambda m: m.Softplus(), lambda m: m.Softplus(2.0, 5.0), lambda m: m.Softmax(dim=1), lambda m: m.Softmax(-1),
    lambda m: m.LogSoftmax(dim=1), lambda m: m.Softmin(dim=0), lambda m: m.PReLU(), lambda m: m.PReLU(3, 0.1),
]


@nnx.jit
def jit_call(m, x):
    return m(x)


@pytest.mark.parametrize("make", MODULES)
def test_module_repr_and_forward_match_torch(rng, make):
    ours, theirs = make(nn), make(torch.nn).double()
    assert repr(ours) == repr(theirs)
    x = randn(rng, 4, 3, 5) * 4
    if isinstance(ours, nn.PReLU):  # float64 on both sides: torch's prelu refuses mixed dtypes
        ours.weight.set_value(jnp.asarray(theirs.weight.detach().numpy()))
    expected = theirs(t(x).clone()).detach().numpy()
    assert_close(jit_call(ours, x), expected, reduction=5)


def test_implicit_softmax_dim_repr():
    assert repr(nn.Softmax()) == repr(torch.nn.Softmax()) == "Softmax(dim=None)"
    assert repr(nn.LogSoftmax()) == repr(torch.nn.LogSoftmax())


def test_prelu_parameter_and_gradient(rng):
    ours, theirs = nn.PReLU(3, init=0.3), torch.nn.PReLU(3, init=0.3)
    assert [k for k, v in vars(ours).items() if isinstance(v, nnx.Variable)] == ["weight"]
    assert isinstance(ours.weight, nnx.Param)
    np.testing.assert_array_equal(ours.weight[...], theirs.weight.detach().numpy())
    assert ours.weight[...].dtype == np.float32
    x, g = randn(rng, 2, 3, 4, dtype=np.float32), randn(rng, 2, 3, 4, dtype=np.float32)
    grads = nnx.grad(lambda m: jnp.sum(m(x) * g))(ours)
    (theirs(t(x)) * t(g)).sum().backward()
    assert_close(grads["weight"][...], theirs.weight.grad.numpy(), np.float32, reduction=8)


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"max_val \(-1.0\) must be greater than min_val \(1.0\)"):
        nn.Hardtanh(1.0, -1.0)
    with pytest.raises(AssertionError):
        torch.nn.Hardtanh(1.0, -1.0)
    with pytest.raises(ValueError, match="approximate argument must be either 'none' or 'tanh'"):
        nn.GELU("x")
    with pytest.raises(ValueError, match="alpha cannot be 0"):
        nn.CELU(0.0)(jnp.ones(3))


def test_modules_in_sequential_are_train_eval_agnostic(rng):
    model = nn.Sequential(nn.ReLU(), nn.GELU(), nn.Softplus())
    x = randn(rng, 5)
    y = model(x)
    model.eval()
    np.testing.assert_array_equal(model(x), y)
