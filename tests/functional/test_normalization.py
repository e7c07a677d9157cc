"""Normalization functions against torch: forward, running-stat updates, gradients, errors."""
import functools
import math

import jax
import numpy as np
import pytest
import torch.nn.functional as TF

import jaxconv.functional as F
from tests._util import assert_close, check_grad, randn, t


# ----------------------------------------------------------------------------- batch_norm

@pytest.mark.parametrize("shape,affine", [((5, 3), True), ((4, 3, 7), False), ((2, 3, 4, 5), True),
                                          ((2, 3, 2, 3, 4), False)])
def test_batch_norm_training_matches_torch_and_updates_running_stats(rng, shape, affine):
    c = shape[1]
    x = randn(rng, *shape)
    rm, rv = randn(rng, c), np.abs(randn(rng, c)) + 0.5
    w, b = (randn(rng, c), randn(rng, c)) if affine else (None, None)
    fn = jax.jit(functools.partial(F.batch_norm, training=True, momentum=0.3, eps=1e-3))
    y, new_rm, new_rv = fn(x, rm, rv, w, b)
    trm, trv = t(rm), t(rv)
    ty = TF.batch_norm(t(x), trm, trv, None if w is None else t(w), None if b is None else t(b),
                       training=True, momentum=0.3, eps=1e-3)
    n = math.prod(shape) // c
    assert_close(y, ty.numpy(), reduction=n)
    assert_close(new_rm, trm.numpy(), reduction=n)
    assert_close(new_rv, trv.numpy(), reduction=n)
    # the inputs are untouched: the function is pure
    assert not np.shares_memory(np.asarray(new_rm), rm)


def test_batch_norm_training_without_running_stats_returns_output_only(rng):
    x = randn(rng, 6, 4, 3)
    y = jax.jit(functools.partial(F.batch_norm, training=True))(x, None, None)
    assert not isinstance(y, tuple)
    assert_close(y, TF.batch_norm(t(x), None, None, training=True).numpy(), reduction=18)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5)])
def test_batch_norm_eval_uses_running_stats(rng, shape):
    c = shape[1]
    x, rm, rv, w, b = randn(rng, *shape), randn(rng, c), np.abs(randn(rng, c)) + 0.1, randn(rng, c), randn(rng, c)
    y = jax.jit(F.batch_norm)(x, rm, rv, w, b)
    assert not isinstance(y, tuple)
    assert_close(y, TF.batch_norm(t(x), t(rm), t(rv), t(w), t(b)).numpy())


def test_batch_norm_float32(rng):
    x = randn(rng, 8, 4, 5, 5, dtype=np.float32)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    w, b = randn(rng, 4, dtype=np.float32), randn(rng, 4, dtype=np.float32)
    y, nrm, nrv = jax.jit(functools.partial(F.batch_norm, training=True))(x, rm, rv, w, b)
    assert y.dtype == nrm.dtype == nrv.dtype == np.float32
    trm, trv = t(rm), t(rv)
    ty = TF.batch_norm(t(x), trm, trv, t(w), t(b), training=True)
    assert_close(y, ty.numpy(), np.float32, reduction=200)
    assert_close(nrv, trv.numpy(), np.float32, reduction=200)


def test_batch_norm_traced_momentum(rng):
    """A traced momentum (the modules' cumulative average ``1/num_batches_tracked``) works under jit."""
    x, rm, rv = randn(rng, 5, 3), randn(rng, 3), np.abs(randn(rng, 3)) + 0.5
    fn = jax.jit(lambda x, rm, rv, m: F.batch_norm(x, rm, rv, training=True, momentum=m))
    _, nrm, nrv = fn(x, rm, rv, 1 / 3)
    trm, trv = t(rm), t(rv)
    TF.batch_norm(t(x), trm, trv, training=True, momentum=1 / 3)
    assert_close(nrm, trm.numpy(), reduction=5)
    assert_close(nrv, trv.numpy(), reduction=5)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradients(rng, training):
    x, w, b = randn(rng, 4, 3, 5), randn(rng, 3), randn(rng, 3)
    rm, rv = randn(rng, 3), np.abs(randn(rng, 3)) + 0.5
    if training:
        jfn = lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True)
        tfn = lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True)
    else:
        jfn = lambda x, w, b: F.batch_norm(x, rm, rv, w, b)
        tfn = lambda x, w, b: TF.batch_norm(x, t(rm), t(rv), w, b)
    check_grad(jfn, tfn, (x, w, b), rng, reduction=20)


def test_batch_norm_running_stats_carry_no_gradient(rng):
    x, rm, rv = randn(rng, 4, 3), randn(rng, 3), np.abs(randn(rng, 3)) + 0.5
    g = jax.jit(jax.grad(lambda x: F.batch_norm(x, rm, rv, training=True)[1].sum()))(x)
    assert np.all(np.asarray(g) == 0)


def test_batch_norm_errors(rng):
    c3 = randn(rng, 3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(randn(rng, 1, 3), c3, c3, training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(randn(rng, 1, 3, 1), None, None, training=True)
    with pytest.raises(ValueError, match="running_mean and running_var must be defined"):
        F.batch_norm(randn(rng, 2, 3), None, None, training=False)
    with pytest.raises(ValueError, match="running_mean should contain 3 elements not 4"):
        F.batch_norm(randn(rng, 2, 3), randn(rng, 4), randn(rng, 4))
    with pytest.raises(ValueError, match="weight should contain 3 elements not 4"):
        F.batch_norm(randn(rng, 2, 3), c3, c3, randn(rng, 4))
    with pytest.raises(ValueError, match="input of shape"):
        F.batch_norm(randn(rng, 3), c3, c3)
    with pytest.raises(TypeError, match="momentum must be a float"):
        F.batch_norm(randn(rng, 2, 3), c3, c3, training=True, momentum=None)
    # torch raises in the same places
    with pytest.raises(ValueError):
        TF.batch_norm(t(randn(rng, 1, 3)), t(c3), t(c3), training=True)
    with pytest.raises(RuntimeError):
        TF.batch_norm(t(randn(rng, 2, 3)), t(randn(rng, 4)), t(randn(rng, 4)))


# -------------------------------------------------------------------------- instance_norm

@pytest.mark.parametrize("shape", [(2, 3, 7), (1, 2, 3, 2, 4)])
def test_instance_norm_matches_torch(rng, shape):
    c = shape[1]
    x, w, b = randn(rng, *shape), randn(rng, c), randn(rng, c)
    check_grad(lambda x, w, b: F.instance_norm(x, None, None, w, b),
               lambda x, w, b: TF.instance_norm(x, None, None, w, b), (x, w, b), rng,
               reduction=math.prod(shape[2:]))
    assert not isinstance(jax.eval_shape(F.instance_norm, x), tuple)


def test_instance_norm_running_stats(rng):
    x, rm, rv = randn(rng, 3, 4, 5, 6), randn(rng, 4), np.abs(randn(rng, 4)) + 0.5
    y, nrm, nrv = jax.jit(functools.partial(F.instance_norm, momentum=0.2))(x, rm, rv)
    trm, trv = t(rm), t(rv)
    ty = TF.instance_norm(t(x), trm, trv, momentum=0.2)
    assert_close(y, ty.numpy(), reduction=30)
    assert_close(nrm, trm.numpy(), reduction=30)
    assert_close(nrv, trv.numpy(), reduction=30)
    # use_input_stats=False normalises with the running statistics
    y = jax.jit(functools.partial(F.instance_norm, use_input_stats=False))(x, rm, rv)
    assert_close(y, TF.instance_norm(t(x), t(rm), t(rv), use_input_stats=False).numpy())


def test_instance_norm_errors(rng):
    with pytest.raises(ValueError, match="Expected more than 1 spatial element when training"):
        F.instance_norm(randn(rng, 2, 6, 1))
    with pytest.raises(ValueError, match="Expected running_mean and running_var to be defined"):
        F.instance_norm(randn(rng, 2, 6, 3), use_input_stats=False)
    with pytest.raises(ValueError):
        TF.instance_norm(t(randn(rng, 2, 6, 1)))


# ----------------------------------------------------------------------------- group_norm

@pytest.mark.parametrize("shape,groups", [((2, 6), 2), ((3, 4, 3, 5), 4), ((1, 6, 2, 2, 3), 1)])
def test_group_norm_matches_torch(rng, shape, groups):
    c = shape[1]
    x, w, b = randn(rng, *shape), randn(rng, c), randn(rng, c)
    n = math.prod(shape[1:]) // groups
    check_grad(lambda x, w, b: F.group_norm(x, groups, w, b, 1e-4),
               lambda x, w, b: TF.group_norm(x, groups, w, b, 1e-4), (x, w, b), rng, reduction=n)


def test_group_norm_float32(rng):
    x = randn(rng, 2, 8, 4, 4, dtype=np.float32)
    y = jax.jit(F.group_norm, static_argnums=1)(x, 4)
    assert y.dtype == np.float32
    assert_close(y, TF.group_norm(t(x), 4).numpy(), np.float32, reduction=32)


def test_group_norm_errors(rng):
    with pytest.raises(ValueError, match=r"divisible by num_groups, but got input of shape \[2, 6, 4\] and num_groups=4"):
        F.group_norm(randn(rng, 2, 6, 4), 4)
    with pytest.raises(ValueError, match="Expected at least 2 dimensions"):
        F.group_norm(randn(rng, 6), 3)
    with pytest.raises(ValueError, match="Expected weight to be a vector of size equal to the number of channels"):
        F.group_norm(randn(rng, 2, 6, 3), 3, randn(rng, 5))
    with pytest.raises(RuntimeError):
        TF.group_norm(t(randn(rng, 2, 6, 4)), 4)


# ----------------------------------------------------------------------------- layer_norm

@pytest.mark.parametrize("shape,ns", [((4, 5), (5,)), ((2, 3, 4), [3, 4])])
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_layer_norm_matches_torch(rng, shape, ns, eps):
    x, w, b = randn(rng, *shape), randn(rng, *ns), randn(rng, *ns)
    check_grad(lambda x, w, b: F.layer_norm(x, ns, w, b, eps),
               lambda x, w, b: TF.layer_norm(x, ns, w, b, eps), (x, w, b), rng, reduction=math.prod(ns))


def test_layer_norm_without_affine(rng):
    x = randn(rng, 3, 4, 5)
    y = jax.jit(F.layer_norm, static_argnums=1)(x, (5,))
    assert_close(y, TF.layer_norm(t(x), (5,)).numpy(), reduction=5)


def test_layer_norm_errors(rng):
    with pytest.raises(ValueError, match=r"Given normalized_shape=\[4\], expected input with shape \[\*, 4\]"):
        F.layer_norm(randn(rng, 2, 6, 3), (4,))
    with pytest.raises(TypeError, match="normalized_shape must be a tuple or list of ints"):
        F.layer_norm(randn(rng, 2, 6, 3), 3)
    with pytest.raises(ValueError, match="Expected weight to be of same shape as normalized_shape"):
        F.layer_norm(randn(rng, 2, 6, 3), (3,), randn(rng, 4))
    with pytest.raises(TypeError):
        TF.layer_norm(t(randn(rng, 2, 6, 3)), 3)


# ------------------------------------------------------------------------------- rms_norm

@pytest.mark.parametrize("eps", [None, 1e-3])
def test_rms_norm_matches_torch(rng, eps):
    x, w = randn(rng, 3, 4, 5), randn(rng, 4, 5)
    x[0, 0] *= 1e-8  # a tiny row makes eps matter: the default must be torch's finfo(dtype).eps
    check_grad(lambda x, w: F.rms_norm(x, (4, 5), w, eps),
               lambda x, w: TF.rms_norm(x, (4, 5), w, eps), (x, w), rng, reduction=20)


def test_rms_norm_float32_default_eps(rng):
    x = randn(rng, 3, 4, 5, dtype=np.float32)
    x[0] *= 1e-3
    y = jax.jit(F.rms_norm, static_argnums=1)(x, (5,))
    assert y.dtype == np.float32
    assert_close(y, TF.rms_norm(t(x), [5]).numpy(), np.float32, reduction=5)


def test_rms_norm_errors(rng):
    with pytest.raises(ValueError, match=r"Given normalized_shape=\[4\]"):
        F.rms_norm(randn(rng, 2, 6, 3), (4,))
    with pytest.raises(RuntimeError):
        TF.rms_norm(t(randn(rng, 2, 6, 3)), (4,))


# -------------------------------------------------------------------- local_response_norm

@pytest.mark.parametrize("shape,size", [((2, 7, 5), 1), ((2, 7, 5), 4), ((2, 6, 3, 4), 3),
                                        ((2, 6, 3, 4), 2), ((1, 5, 2, 3, 2), 9)])
def test_local_response_norm_matches_torch(rng, shape, size):
    x = randn(rng, *shape) * 3
    check_grad(lambda x: F.local_response_norm(x, size, 0.3, 0.6, 1.5),
               lambda x: TF.local_response_norm(x, size, 0.3, 0.6, 1.5), (x,), rng, reduction=size)


def test_local_response_norm_defaults(rng):
    x = randn(rng, 2, 6, 3, 4) * 30
    y = jax.jit(F.local_response_norm, static_argnums=1)(x, 5)
    assert_close(y, TF.local_response_norm(t(x), 5).numpy(), reduction=5)


def test_local_response_norm_errors_and_empty(rng):
    with pytest.raises(ValueError, match=r"Expected 3D or higher dimensionality input \(got 2 dimensions\)"):
        F.local_response_norm(randn(rng, 2, 6), 2)
    with pytest.raises(ValueError):
        TF.local_response_norm(t(randn(rng, 2, 6)), 2)
    assert F.local_response_norm(np.zeros((2, 0, 3)), 3).shape == (2, 0, 3)
