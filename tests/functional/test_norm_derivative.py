"""The closed-form derivative of training-mode batch_norm (and instance_norm): value, VJP and
JVP against torch in float64, second order against JAX differentiating the plain formula.

The inputs have a large mean against their spread (offset 1e4, spread ~1), where a one-pass
variance or a derivative that loses a term is far above the float64 tolerance.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jaxconv.functional as F
from tests._util import assert_close, t

SHAPE = (4, 3, 5, 6)
OFFSET = 1e4  # the values' mean against a spread of ~1: the tolerance scale


def _inputs(rng, shape=SHAPE):
    c = shape[1]
    per_channel = (1, c) + (1,) * (len(shape) - 2)
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 2, per_channel)
         + OFFSET * rng.uniform(0.5, 1.5, per_channel))
    return x, rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c), rng.standard_normal(c)


def _ours(kind):
    if kind == "batch":
        return lambda x, w=None, b=None: F.batch_norm(x, None, None, w, b, training=True, eps=1e-3)
    return lambda x, w=None, b=None: F.instance_norm(x, None, None, w, b, eps=1e-3)


def _torch(kind):
    if kind == "batch":
        return lambda x, w=None, b=None: TF.batch_norm(x, None, None, w, b, training=True, eps=1e-3)
    return lambda x, w=None, b=None: TF.instance_norm(x, None, None, w, b, eps=1e-3)


def _plain(kind):
    """The two-pass formula, differentiated by JAX op by op: the second-order reference."""
    def f(x, w, b):
        axes = (0, 2, 3) if kind == "batch" else (2, 3)
        mean = jnp.mean(x, axes, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axes, keepdims=True)
        return (x - mean) / jnp.sqrt(var + 1e-3) * w[:, None, None] + b[:, None, None]
    return f


def _close(ours, theirs, n):
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert_close(a, np.asarray(b), reduction=n, scale=OFFSET * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("kind,affine", [("batch", True), ("batch", False), ("instance", True)])
def test_value_vjp_and_jvp_match_torch_float64(rng, kind, affine):
    args = _inputs(rng)
    if not affine:  # weight and bias None: the rule without its affine terms
        args = args[:1]
    tangents = tuple(rng.standard_normal(np.shape(a)) for a in args)
    g = rng.standard_normal(SHAPE)
    f = _ours(kind)

    @jax.jit
    def run(args, tangents, g):
        y, vjp = jax.vjp(f, *args)
        return y, vjp(g), jax.jvp(f, args, tangents)[1]
    y, grads, dy = run(args, tangents, g)
    targs = [t(a).requires_grad_() for a in args]
    ty = _torch(kind)(*targs)
    ty.backward(t(g))
    tdy = torch.func.jvp(_torch(kind), tuple(map(t, args)), tuple(map(t, tangents)))[1]
    n = 120 if kind == "batch" else 30
    _close((y, dy, *grads), (ty.detach().numpy(), tdy.numpy(), *(a.grad.numpy() for a in targs)), n)


@pytest.mark.parametrize("kind", ["batch", "instance"])
def test_second_order_matches_the_plain_formula(rng, kind):
    """Reverse over reverse (grad of a grad) and forward over reverse (Hessian-vector product)
    of a nonlinear loss, against JAX's own derivatives of the two-pass formula."""
    args = _inputs(rng)
    v = tuple(rng.standard_normal(np.shape(a)) for a in args)
    c = rng.standard_normal(SHAPE)

    def derivatives(f):
        loss = lambda *a: jnp.sum(jnp.sin(f(*a)) * c)
        grad = jax.grad(loss, (0, 1, 2))
        gg = jax.grad(lambda *a: sum(jnp.vdot(g, u) for g, u in zip(grad(*a), v)), (0, 1, 2))(*args)
        return gg, jax.jvp(grad, args, v)[1]
    _close(jax.jit(lambda: derivatives(_ours(kind)))(), jax.jit(lambda: derivatives(_plain(kind)))(), 120)


def test_sync_batch_norm_derivatives_span_the_replicas(rng):
    """Under a replica axis the means in the rule are over every shard: the VJP and JVP of the
    sharded batch equal those of the whole batch."""
    args = _inputs(rng, (6, 3, 4, 5))
    tangents = tuple(rng.standard_normal(np.shape(a)) for a in args)
    g = rng.standard_normal((6, 3, 4, 5))
    whole = lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True)
    shard = functools.partial(F.batch_norm, running_mean=None, running_var=None, training=True,
                              axis_name="r")

    def sharded(x, w, b):
        y = jax.vmap(lambda xs: shard(xs, weight=w, bias=b), axis_name="r")(x.reshape(3, 2, 3, 4, 5))
        return y.reshape(x.shape)

    def derivatives(f):
        y, vjp = jax.vjp(f, *args)
        return y, vjp(g), jax.jvp(f, args, tangents)[1]
    _close(jax.jit(lambda: derivatives(sharded))(), jax.jit(lambda: derivatives(whole))(), 120)


def test_empty_batch_has_zero_parameter_gradients():
    """As torch: an empty batch gives an empty output and zero weight and bias gradients."""
    x, w, b = np.zeros((0, 3, 5)), np.ones(3), np.ones(3)
    grads = jax.jit(jax.grad(lambda *a: jnp.sum(F.batch_norm(a[0], None, None, a[1], a[2], True)),
                             (0, 1, 2)))(x, w, b)
    assert grads[0].shape == x.shape
    np.testing.assert_array_equal(grads[1], 0), np.testing.assert_array_equal(grads[2], 0)


def test_bfloat16_gradients_are_the_float32_ones_rounded(rng):
    """A bfloat16 input computes in float32 inside the rule too: its gradient is the float32
    input's gradient rounded once."""
    x = rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * 3 + 2
    w, b = rng.uniform(0.5, 1.5, 4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    g = jnp.asarray(rng.standard_normal(x.shape), jnp.bfloat16)
    xb = jnp.asarray(x, jnp.bfloat16)

    def grads(x, g):
        return jax.vjp(lambda x: F.batch_norm(x, None, None, w, b, True), x)[1](g)[0]
    ours = jax.jit(grads)(xb, g)
    assert ours.dtype == jnp.bfloat16
    want = jax.jit(grads)(xb.astype(np.float32), g.astype(np.float32)).astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(ours, np.float32), np.asarray(want, np.float32))
