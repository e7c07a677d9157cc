"""linear, flatten/unflatten and dropout against torch."""
import functools
import math

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jaxconv.functional as F
from tests._util import assert_close, check_grad, randn, t


@pytest.mark.parametrize("xshape,wshape,bias", [((5, 3), (4, 3), True), ((2, 3, 7), (6, 7), False),
                                                ((7,), (2, 7), True), ((3, 7), (7,), False)])
def test_linear_matches_torch(rng, xshape, wshape, bias):
    x, w = randn(rng, *xshape), randn(rng, *wshape)
    if bias:
        b = randn(rng, wshape[0])
        check_grad(F.linear, TF.linear, (x, w, b), rng, reduction=xshape[-1])
    else:
        check_grad(F.linear, TF.linear, (x, w), rng, reduction=xshape[-1])


def test_linear_float32_runs_at_full_precision(rng):
    x, w, b = randn(rng, 8, 256, dtype=np.float32), randn(rng, 16, 256, dtype=np.float32), randn(rng, 16, dtype=np.float32)
    y = jax.jit(F.linear)(x, w, b)
    assert y.dtype == np.float32
    expected = x.astype(np.float64) @ w.astype(np.float64).T + b
    assert_close(y, expected, np.float32, reduction=256)
    assert_close(y, TF.linear(t(x), t(w), t(b)).numpy(), np.float32, reduction=256)


def test_linear_errors(rng):
    with pytest.raises(ValueError, match=r"mat1 and mat2 shapes cannot be multiplied \(2x3 and 5x4\)"):
        F.linear(randn(rng, 2, 3), randn(rng, 4, 5))
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        TF.linear(t(randn(rng, 2, 3)), t(randn(rng, 4, 5)))
    with pytest.raises(ValueError, match="bias of shape"):
        F.linear(randn(rng, 2, 3), randn(rng, 4, 3), randn(rng, 5))
    with pytest.raises(RuntimeError):
        TF.linear(t(randn(rng, 2, 3)), t(randn(rng, 4, 3)), t(randn(rng, 5)))


@pytest.mark.parametrize("shape,start,end", [((2, 3, 4, 5), 1, -1), ((2, 3, 4, 5), 0, 2), ((2, 3, 4), -2, -1),
                                             ((2, 0, 4), 1, 2), ((), 0, -1), ((3,), 0, 0)])
def test_flatten_matches_torch(rng, shape, start, end):
    x = randn(rng, *shape)
    np.testing.assert_array_equal(F.flatten(x, start, end), torch.flatten(t(x), start, end).numpy())


@pytest.mark.parametrize("shape,dim,sizes", [((2, 6), 1, (2, 3)), ((2, 6, 4), -2, (3, -1)), ((12,), 0, [2, 2, 3])])
def test_unflatten_matches_torch(rng, shape, dim, sizes):
    x = randn(rng, *shape)
    np.testing.assert_array_equal(F.unflatten(x, dim, sizes), torch.unflatten(t(x), dim, sizes).numpy())


def test_flatten_unflatten_errors(rng):
    x = randn(rng, 2, 6, 4)
    with pytest.raises(ValueError, match="start_dim cannot come after end_dim"):
        F.flatten(x, 2, 1)
    with pytest.raises(RuntimeError):
        torch.flatten(t(x), 2, 1)
    with pytest.raises(ValueError, match=r"Dimension out of range \(expected to be in range of \[-3, 2\], but got start_dim=5\)"):
        F.flatten(x, 5)
    with pytest.raises(ValueError, match=r"Provided sizes \[4, -1\] don't multiply up to the size of dim 1 \(6\)"):
        F.unflatten(x, 1, (4, -1))
    with pytest.raises(ValueError, match=r"Provided sizes \[4, 2\]"):
        F.unflatten(x, 1, (4, 2))
    with pytest.raises(ValueError, match="only one dimension can be inferred"):
        F.unflatten(x, 1, (-1, -1))
    for sizes in [(4, -1), (4, 2), (-1, -1)]:
        with pytest.raises(RuntimeError):
            torch.unflatten(t(x), 1, sizes)


# -------------------------------------------------------------------------------- dropout

_dropout = jax.jit(F.dropout, static_argnames=("p", "training", "inplace"))


def _sigma(n, p):
    return math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics_and_exact_scaling(rng, p):
    x = randn(rng, 100, 200, dtype=np.float32)
    y = np.asarray(_dropout(x, p=p, key=jax.random.key(0)))
    assert y.dtype == np.float32
    dropped = y == 0
    assert abs(dropped.mean() - p) < 5 * _sigma(x.size, p)
    scale = np.float32(1) / np.float32(1 - p)
    np.testing.assert_array_equal(y[~dropped], x[~dropped] * scale)
    # torch scales its kept elements by the same float32 factor
    torch.manual_seed(0)
    ty = TF.dropout(t(x), p).numpy()
    kept = ty != 0
    np.testing.assert_array_equal(ty[kept], x[kept] * scale)


def test_dropout_identity_cases_and_p_one(rng):
    x = randn(rng, 4, 5)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0, key=jax.random.key(1)) is x
    np.testing.assert_array_equal(_dropout(x, p=1.0, key=jax.random.key(1)), np.zeros_like(x))
    np.testing.assert_array_equal(TF.dropout(t(x), 1.0).numpy(), np.zeros_like(x))
    k = jax.random.key(3)
    a, b = _dropout(x, p=0.5, key=k), _dropout(x, p=0.5, key=jax.random.key(4))
    np.testing.assert_array_equal(a, _dropout(x, p=0.5, key=k))  # same key, same mask
    assert not np.array_equal(a, b)


def test_dropout_errors(rng):
    x = randn(rng, 4, 5)
    for fn, tfn in [(F.dropout, TF.dropout), (F.dropout2d, TF.dropout2d)]:
        for p in (-0.1, 1.5):
            with pytest.raises(ValueError, match=f"dropout probability has to be between 0 and 1, but got {p}"):
                fn(x, p)
            with pytest.raises(ValueError):
                tfn(t(x), p)
    with pytest.raises(ValueError, match="a key is required"):
        F.dropout(x, 0.5)
    with pytest.raises(ValueError, match="dropout1d: Expected 2D or 3D input, but received a 4D input"):
        F.dropout1d(randn(rng, 2, 3, 4, 5), key=jax.random.key(0))
    with pytest.raises(RuntimeError):
        TF.dropout1d(t(randn(rng, 2, 3, 4, 5)))


def _channel_structure(y, x, channel_axes):
    """Each channel slice is either all zero or all ``x * scale``; returns the dropped mask."""
    axes = tuple(range(len(channel_axes), y.ndim))
    dropped = np.all(y == 0, axis=axes)
    kept_ok = np.all(y != 0, axis=axes)
    assert np.all(dropped | kept_ok), "a channel is partly dropped"
    return dropped


@pytest.mark.parametrize("fn,shape,lead", [
    (F.dropout2d, (20, 50, 3, 4), 2), (F.dropout1d, (20, 50, 6), 2), (F.dropout1d, (500, 6), 1),
    (F.dropout3d, (10, 50, 2, 3, 2), 2), (F.dropout3d, (500, 2, 3, 2), 1)])
def test_channel_dropout_structure(rng, fn, shape, lead):
    x = randn(rng, *shape, dtype=np.float32)
    p = 0.4
    y = np.asarray(jax.jit(functools.partial(fn, p=p))(x, key=jax.random.key(5)))
    dropped = _channel_structure(y, x, shape[:lead])
    assert abs(dropped.mean() - p) < 5 * _sigma(dropped.size, p)
    scale = np.float32(1) / np.float32(1 - p)
    np.testing.assert_array_equal(y[y != 0], x[y != 0] * scale)


def test_dropout2d_reads_3d_input_as_batched_1d_with_torch_warning(rng):
    x = randn(rng, 10, 40, 5, dtype=np.float32)
    with pytest.warns(UserWarning, match="Received a 3D input to dropout2d"):
        y = np.asarray(F.dropout2d(x, 0.5, key=jax.random.key(0)))
    _channel_structure(y, x, x.shape[:2])  # (N, C) slices, as torch
    with pytest.warns(UserWarning, match="Received a 3D input to dropout2d"):
        ty = TF.dropout2d(t(x), 0.5).numpy()
    _channel_structure(ty, x, x.shape[:2])
    with pytest.warns(UserWarning, match="Received a 2-D input to dropout2d, which is deprecated"):
        F.dropout2d(randn(rng, 3, 4), 0.5, training=False)


def test_given_mask_replays_torchs_draw(rng):
    """``mask=`` applies a given keep mask (torch's draw) with jaxconv's own scaling: torch's
    output exactly, for element, channel and sample masks; a mask that does not broadcast is
    refused naming its shape."""
    x = randn(rng, 4, 3, 5, 5)
    for fn, tfn, p in [(F.dropout, TF.dropout, 0.3), (F.dropout2d, TF.dropout2d, 0.4)]:
        torch.manual_seed(1)
        ty = tfn(t(x), p).numpy()
        torch.manual_seed(1)
        keep = tfn(torch.ones(x.shape), p).numpy() != 0
        assert 0 < keep.mean() < 1
        np.testing.assert_allclose(np.asarray(fn(x, p, mask=keep)), ty, rtol=1e-6, atol=0)
    keep = np.array([True, False, True, True])[:, None, None, None]
    np.testing.assert_allclose(np.asarray(F.stochastic_depth(x, 0.25, mask=keep)),
                               x * keep / 0.75, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match=r"dropout: mask must broadcast to the input's shape "
                                         r"\(4, 3, 5, 5\), got shape \(3,\)"):
        F.dropout(x, 0.5, mask=np.ones(3, bool))
