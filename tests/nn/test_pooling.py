"""Pooling modules: torch's constructor signatures, attributes, repr and forward."""
import jax
import numpy as np
import pytest
import torch
from flax import nnx

import jaxconv.nn as J
from tests._util import assert_close, randn, t

_call = nnx.jit(lambda m, x: m(x))

CASES = [  # (class name, args, kwargs, input spatial shape)
    ("MaxPool1d", (3,), dict(stride=2, padding=1, ceil_mode=True), (9,)),
    ("MaxPool2d", (2,), {}, (6, 7)),
    ("MaxPool2d", ((3, 2),), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (7, 8)),
    ("MaxPool2d", ([2, 2],), dict(stride=[2, 1]), (5, 6)),
    ("MaxPool3d", (2,), dict(ceil_mode=True), (5, 4, 3)),
    ("AvgPool1d", (3,), dict(stride=2, padding=1, count_include_pad=False), (9,)),
    ("AvgPool1d", ((2,),), {}, (6,)),
    ("AvgPool2d", (3,), dict(stride=(2, 1), padding=1, ceil_mode=True), (7, 6)),
    ("AvgPool2d", (2,), dict(divisor_override=3), (6, 6)),
    ("AvgPool3d", ((2, 3, 2),), dict(padding=(1, 1, 0), count_include_pad=False), (5, 6, 4)),
    ("AdaptiveAvgPool1d", (3,), {}, (7,)),
    ("AdaptiveAvgPool2d", ((3, None),), {}, (7, 5)),
    ("AdaptiveAvgPool3d", (2,), {}, (5, 4, 3)),
    ("AdaptiveMaxPool1d", (4,), {}, (10,)),
    ("AdaptiveMaxPool2d", ((None, 3),), {}, (4, 7)),
    ("AdaptiveMaxPool3d", ((2, 1, 3),), {}, (5, 4, 7)),
    ("LPPool1d", (2, 3), dict(stride=2), (9,)),
    ("LPPool2d", (1.5, (2, 3)), dict(ceil_mode=True), (7, 7)),
    ("LPPool3d", (2, 2), {}, (4, 5, 4)),
]


@pytest.mark.parametrize("name, args, kw, spatial", CASES)
def test_module_matches_torch(rng, name, args, kw, spatial):
    ours, theirs = getattr(J, name)(*args, **kw), getattr(torch.nn, name)(*args, **kw)
    assert repr(ours) == repr(theirs)
    x = np.abs(randn(rng, 2, 3, *spatial))  # positive, so LPPool's fractional powers are finite
    assert_close(_call(ours, x), theirs(t(x)).detach().numpy(), reduction=27)
    assert_close(_call(ours, x[0]), theirs(t(x[0])).detach().numpy(), reduction=27)


def test_attributes_like_torch():
    for name, args, kw, _ in CASES:
        ours, theirs = getattr(J, name)(*args, **kw), getattr(torch.nn, name)(*args, **kw)
        for attr in ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices",
                     "count_include_pad", "divisor_override", "output_size", "norm_type"):
            if hasattr(theirs, attr):
                assert getattr(ours, attr) == getattr(theirs, attr), (name, attr)


@pytest.mark.parametrize("name, output", [("MaxPool2d", (3,)), ("AdaptiveMaxPool2d", (3,)),
                                          ("MaxPool1d", (2,)), ("AdaptiveMaxPool3d", (2,))])
def test_return_indices(rng, name, output):
    n = int(name[-2])
    ours = getattr(J, name)(*output, return_indices=True)
    theirs = getattr(torch.nn, name)(*output, return_indices=True)
    x = randn(rng, 2, 3, *(7, 6, 5)[:n])
    (y, i), (ty, ti) = _call(ours, x), theirs(t(x))
    np.testing.assert_array_equal(np.asarray(y), ty.numpy())
    np.testing.assert_array_equal(np.asarray(i), ti.numpy())


def test_gradient_through_module(rng):
    m, tm = J.MaxPool2d(3, stride=2, padding=1), torch.nn.MaxPool2d(3, stride=2, padding=1)
    x = randn(rng, 2, 3, 7, 6)
    g = jax.jit(jax.grad(lambda x: (m(x) ** 2).sum()))(x)
    tx = t(x).requires_grad_()
    (tm(tx) ** 2).sum().backward()
    assert_close(g, tx.grad.numpy())


ERRORS = [  # torch raises at forward; we raise at construction or at the call
    ("MaxPool2d", (3,), dict(padding=2), (5, 5)),
    ("MaxPool2d", (0,), {}, (5, 5)),
    ("MaxPool1d", (2,), dict(stride=0), (5,)),
    ("AvgPool2d", (2,), dict(divisor_override=0), (5, 5)),
    ("AvgPool1d", (3,), dict(padding=2), (5,)),
    ("MaxPool2d", (6,), {}, (5, 5)),
    ("AdaptiveAvgPool2d", (-1,), {}, (5, 5)),
    ("AdaptiveMaxPool2d", ((2, 3, 4),), {}, (5, 5)),
    ("LPPool2d", (2, 6), {}, (5, 5)),
]


@pytest.mark.parametrize("name, args, kw, spatial", ERRORS)
def test_errors_where_torch_raises(name, args, kw, spatial):
    x = np.zeros((1, 2) + spatial)
    with pytest.raises(Exception):
        getattr(torch.nn, name)(*args, **kw)(t(x))
    with pytest.raises((ValueError, TypeError)):
        getattr(J, name)(*args, **kw)(x)


def test_wrong_rank_raises(rng):
    with pytest.raises(Exception):
        torch.nn.MaxPool2d(2)(torch.zeros(5, 5))
    with pytest.raises(ValueError, match="input"):
        J.MaxPool2d(2)(np.zeros((5, 5)))
