"""Padding modules against torch: forward, attribute ``padding``, repr, errors."""
import numpy as np
import pytest
import torch
from flax import nnx

import jaxconv.nn as J
from tests._util import randn, t

KINDS = ["ZeroPad", "ConstantPad", "ReflectionPad", "ReplicationPad", "CircularPad"]
PADS = {1: [2, (1, 3), (2, -1)], 2: [1, (1, 2, 0, 3), (2, 0, -1, 1)], 3: [1, (1, 0, 2, 1, 0, 2)]}


def _make(kind, n, padding):
    args = (padding, 2.5) if kind == "ConstantPad" else (padding,)
    return getattr(J, f"{kind}{n}d")(*args), getattr(torch.nn, f"{kind}{n}d")(*args)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_padding_modules_match_torch(rng, kind, n):
    for padding in PADS[n]:
        ours, theirs = _make(kind, n, padding)
        assert repr(ours) == repr(theirs)
        assert ours.padding == theirs.padding
        x = randn(rng, 2, 3, *(5, 4, 6)[:n])
        y = nnx.jit(lambda m, x: m(x))(ours, x)
        np.testing.assert_array_equal(np.asarray(y), theirs(t(x)).numpy())
        np.testing.assert_array_equal(np.asarray(ours(x[1])), theirs(t(x[1])).numpy())


def test_constant_pad_value_and_dtype(rng):
    x = randn(rng, 2, 3, 4, dtype=np.float32)
    y = J.ConstantPad1d((1, 2), -3.5)(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(y), torch.nn.ConstantPad1d((1, 2), -3.5)(t(x)).numpy())
    assert J.ZeroPad2d(1).value == torch.nn.ZeroPad2d(1).value == 0.0


@pytest.mark.parametrize("kind, n, padding, shape", [
    ("ReflectionPad", 1, 5, (2, 3, 5)),      # reflect pad must be smaller than the size
    ("ReflectionPad", 2, (1, 1, 4, 0), (2, 3, 4, 6)),
    ("CircularPad", 1, 6, (2, 3, 5)),        # circular wraps at most once
    ("CircularPad", 2, 1, (2, 3, 4, 5, 6)),  # wrong rank
    ("CircularPad", 3, 1, (3, 4, 5)),
    ("ReplicationPad", 2, 1, (5,)),
])
def test_errors_where_torch_raises(kind, n, padding, shape):
    ours, theirs = _make(kind, n, padding)
    x = np.zeros(shape)
    with pytest.raises(Exception):
        theirs(t(x))
    with pytest.raises(ValueError):
        ours(x)


@pytest.mark.parametrize("padding", [(1, 2, 3), (1,), 1.5, True])
def test_bad_padding_argument(padding):
    """A padding tuple must have 2n ints (torch accepts any tuple and fails or pads other dims later)."""
    with pytest.raises(ValueError, match="padding"):
        J.ZeroPad2d(padding)
