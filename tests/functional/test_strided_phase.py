"""The phase form of a strided conv's input gradient (``_lowering._PHASE_INPUT_GRAD``).

It is off by default (measured slower on XLA:CPU), so these tests switch it on and check the
gradients in every AD mode against torch (slow: ~1 min of compiles), and that the compiled
gradient really has no ``lhs_dilation`` conv left (default).
"""
import jax
import numpy as np
import pytest
import torch

import jaxconv.functional as F
from jaxconv.functional import _lowering

from .._util import assert_close, randn, t
from .test_lowering import _check_against_torch, _conv_fn


@pytest.fixture
def phases(monkeypatch):
    monkeypatch.setattr(_lowering, "_PHASE_INPUT_GRAD", True)


@pytest.mark.slow
@pytest.mark.parametrize("n,cin,cout,kernel,stride,padding,size", [
    (2, 17, 5, (3, 3), 2, 1, (11, 10)),       # odd kernel: XLA's weight gradient beside it
    (2, 16, 4, (4, 3), (2, 3), (1, 0), (10, 13)),  # even kernel: per-tap weight gradient
    (2, 3, 6, (7, 7), 2, 3, (15, 14)),        # a stem: few channels
    (1, 4, 3, (5,), 3, 2, (17,)),
    (3, 2, 3, (3, 2, 3), (2, 1, 2), 1, (5, 4, 6)),
])
def test_phase_input_gradient_matches_torch(rng, phases, n, cin, cout, kernel, stride, padding, size):
    x, w, b = randn(rng, 2, cin, *size), randn(rng, cout, cin, *kernel), randn(rng, cout)
    jf, tf = _conv_fn(n)
    _check_against_torch(rng, lambda x, w, b: jf(x, w, b, stride, padding),
                         lambda x, w, b: tf(x, w, b, stride, padding), (x, w, b), cout,
                         cin * int(np.prod(kernel)), cout * int(np.prod(kernel)))


@pytest.mark.slow
def test_phase_forward_and_second_order_match_torch(rng, phases):
    x, w = randn(rng, 2, 16, 9, 10), randn(rng, 6, 16, 3, 3)
    dx, dw = randn(rng, *x.shape), randn(rng, *w.shape)
    tf = torch.nn.functional.conv2d
    _, jv = jax.jvp(lambda x, w: F.conv2d(x, w, None, 2, 1), (x, w), (dx, dw))
    _, tjv = torch.func.jvp(lambda x, w: tf(x, w, None, 2, 1), (t(x), t(w)), (t(dx), t(dw)))
    assert_close(jv, tjv.numpy(), reduction=2 * 16 * 9)

    def loss(conv, x, w):
        return (conv(x, w, None, 2, 1) ** 2).sum()
    gw = jax.jit(jax.grad(lambda x, w: (jax.grad(lambda x: loss(F.conv2d, x, w))(x) ** 2).sum(), 1))(x, w)
    tx, tw = t(x).requires_grad_(), t(w).requires_grad_()
    (g,) = torch.autograd.grad(loss(tf, tx, tw), tx, create_graph=True)
    (g ** 2).sum().backward()
    assert_close(gw, tw.grad.numpy(), reduction=200)


@pytest.mark.parametrize("on", [False, True])
def test_phase_input_gradient_has_no_lhs_dilation(rng, monkeypatch, on):
    monkeypatch.setattr(_lowering, "_PHASE_INPUT_GRAD", on)
    x, w = randn(rng, 2, 32, 12, 12).astype(np.float32), randn(rng, 32, 32, 3, 3).astype(np.float32)
    grad = jax.jit(jax.grad(lambda x, w: (F.conv2d(x, w, None, 2, 1) ** 2).sum(), (0, 1)))
    assert ("lhs_dilate" in grad.lower(x, w).compile().as_text()) is not on
