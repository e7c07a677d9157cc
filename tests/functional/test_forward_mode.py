"""Forward-mode and second-order derivatives against torch.func, in float64.

The depthwise conv is a primitive with its own JVP, transpose and batching rules
(``_depthwise.py``); binary cross entropy and CTC carry custom JVPs. Each is checked with
``jax.jvp`` / ``jacfwd`` / ``hessian`` against ``torch.func``; whole models (a ResNet and a
MobileNetV2 with every block kind, eval and train mode, with and without ``channels_last``)
with ``jax.jvp`` against ``torch.func.jvp``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxconv
import jaxconv.functional as F
from benchmarks import models as M

from .._util import assert_close, randn, t

TF = torch.nn.functional


@pytest.mark.parametrize("mult,stride,dilation", [(1, 1, 1), (2, 2, 1), (1, (2, 1), (1, 2))])
def test_depthwise_jvp_matches_torch(rng, mult, stride, dilation):
    x, w = randn(rng, 2, 3, 8, 7), randn(rng, 3 * mult, 1, 3, 3)
    dx, dw = randn(rng, *x.shape), randn(rng, *w.shape)
    conv = lambda f: (lambda a, b: f(a, b, None, stride, 1, dilation, 3))
    y, tangent = jax.jit(lambda *a: jax.jvp(conv(F.conv2d), a[:2], a[2:]))(x, w, dx, dw)
    ty, ref = torch.func.jvp(conv(TF.conv2d), (t(x), t(w)), (t(dx), t(dw)))
    assert_close(y, ty.numpy(), reduction=9)
    assert_close(tangent, ref.numpy(), reduction=18)


@pytest.mark.parametrize("argnum", [0, 1])
def test_depthwise_hessian_matches_torch(rng, argnum):
    # hessian = jacfwd(jacrev): the JVP of the transpose rules, batched over both arguments
    x, w = randn(rng, 1, 2, 5, 4), randn(rng, 2, 1, 3, 3)

    def loss(f, lib):
        return lambda a, b: lib.sin(f(a, b, None, 2, 1, 1, 2)).pow(2).sum() if lib is torch else \
            (jnp.sin(f(a, b, None, 2, 1, 1, 2)) ** 2).sum()
    h = jax.jit(jax.hessian(loss(F.conv2d, jnp), argnum))(x, w)
    ref = torch.func.hessian(loss(TF.conv2d, torch), argnum)(t(x), t(w))
    assert_close(h, ref.numpy(), reduction=50)


def test_depthwise_jacfwd_under_vmap_of_weights(rng):
    # a batched weight joins the channel axis (the batching rule's second branch)
    x, ws = randn(rng, 2, 3, 6, 6), randn(rng, 4, 3, 1, 3, 3)
    out = jax.jit(jax.vmap(lambda w: F.conv2d(x, w, None, 1, 1, 1, 3)))(ws)
    ref = torch.vmap(lambda w: TF.conv2d(t(x), w, None, 1, 1, 1, 3))(t(ws))
    assert_close(out, ref.numpy(), reduction=9)
    jac = jax.jacfwd(lambda a: F.conv2d(a, ws[1], None, 2, 1, 1, 3).sum((0, 2, 3)))(x)
    tjac = torch.func.jacfwd(lambda a: TF.conv2d(a, t(ws[1]), None, 2, 1, 1, 3).sum((0, 2, 3)))(t(x))
    assert_close(jac, tjac.numpy(), reduction=20)


def test_binary_cross_entropy_forward_and_second_order(rng):
    x = jnp.asarray(rng.uniform(0.05, 0.95, (3, 4)))
    y = jnp.asarray(rng.uniform(0, 1, (3, 4)))
    dx, dy = randn(rng, 3, 4), randn(rng, 3, 4)
    _, tangent = jax.jvp(F.binary_cross_entropy, (x, y), (dx, dy))
    _, ref = torch.func.jvp(TF.binary_cross_entropy, (t(x), t(y)), (t(dx), t(dy)))
    assert_close(tangent, ref.numpy(), reduction=12)
    h = jax.hessian(lambda a: F.binary_cross_entropy(a, y, reduction="sum"))(x)
    exact = np.diag((y / x ** 2 + (1 - y) / (1 - x) ** 2).ravel()).reshape(3, 4, 3, 4)
    assert_close(h, exact, reduction=4)
    # torch's double backward adds 1e-12 to x and 1 - x: equal to ~1e-11 relative
    th = torch.func.hessian(lambda a: TF.binary_cross_entropy(a, t(y), reduction="sum"))(t(x))
    np.testing.assert_allclose(h, th.numpy(), rtol=1e-9)


def test_ctc_loss_forward_mode_matches_torch(rng):
    T, N, C, S = 7, 2, 5, 3
    lp = jax.nn.log_softmax(randn(rng, T, N, C), -1)
    dlp = randn(rng, T, N, C)
    targets = np.asarray(rng.integers(1, C, (N, S)))
    il, tl = np.array([7, 6]), np.array([3, 2])
    f = lambda a: F.ctc_loss(a, targets, il, tl, reduction="sum")
    _, tangent = jax.jvp(f, (lp,), (dlp,))
    g = lambda a: TF.ctc_loss(a, torch.as_tensor(targets), torch.as_tensor(il), torch.as_tensor(tl),
                              reduction="sum")
    ta = t(lp).requires_grad_()
    (grad,) = torch.autograd.grad(g(ta), ta)  # torch's ctc has no forward-mode formula: <grad, dlp>
    assert_close(tangent, float((grad * t(dlp)).sum()), reduction=T * N * C)
    assert_close(jax.grad(f)(lp), grad.numpy(), reduction=T * C)


def _model(name, train):
    tcls, jcls, shapes = M.MODELS[name]
    torch.manual_seed(0)
    tmodel = tcls(width=8, blocks=1)
    g = torch.Generator().manual_seed(3)
    for m in tmodel.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.2)
    jmodel = M.copy_torch_state(tmodel, jcls(width=8, blocks=1))
    tmodel.double()  # float32 values, held and computed in float64 on both sides
    if train:  # batch statistics without torch's in-place update (torch.func refuses it)
        for m in tmodel.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.track_running_stats, m.running_mean, m.running_var = False, None, None
    for m in (tmodel, jmodel):
        m.train() if train else m.eval()
    x = np.random.default_rng(1).standard_normal((2, *shapes["quick"]))
    return tmodel, jmodel, x


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("layout", ["plain", "channels_last"])
def test_model_jvp_matches_torch(rng, name, train, layout):
    tmodel, jmodel, x = _model(name, train)
    dx = rng.standard_normal(x.shape)
    gdef, state = nnx.split(jmodel)
    state = jax.tree.map(lambda v: v.astype(np.float64) if jnp.issubdtype(v.dtype, jnp.floating) else v, state)

    def fwd(s, a):
        return nnx.merge(gdef, s)(a)
    if layout == "channels_last":  # forward mode taken outside it
        fwd = jaxconv.channels_last(fwd)

    def tangent(s, a, da):
        # the state enters the JVP with zero tangents, so that BatchNorm's statistics are
        # updated at the JVP's trace level
        zero = jax.tree.map(lambda v: jnp.zeros_like(v) if jnp.issubdtype(v.dtype, jnp.floating)
                            else np.zeros(v.shape, jax.dtypes.float0), s)
        return jax.jvp(fwd, (s, a), (zero, da))[1]
    out = jax.jit(tangent)(state, jnp.asarray(x), jnp.asarray(dx))
    params = {k: v for k, v in tmodel.named_parameters()}
    buffers = {k: v.clone() for k, v in tmodel.named_buffers()}
    _, ref = torch.func.jvp(lambda a: torch.func.functional_call(tmodel, (params, buffers), (a,)),
                            (t(x),), (t(dx),))
    # train mode: batch statistics of 2 samples amplify float64 rounding (~1e-11 relative)
    assert_close(out, ref.detach().numpy(), reduction=1e7 if train else 1000)
