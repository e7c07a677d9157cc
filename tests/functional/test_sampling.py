"""interpolate, pixel/channel shuffles and unfold/fold against torch: forward, gradients, jit, errors."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF

import jaxconv.functional as F
from tests._util import assert_close, randn, t

NO_ALIGN = ("nearest", "nearest-exact", "area")
# mode -> ranks torch accepts
MODE_RANKS = {
    "nearest": (3, 4, 5), "nearest-exact": (3, 4, 5), "area": (3, 4, 5),
    "linear": (3,), "bilinear": (4,), "bicubic": (4,), "trilinear": (5,),
}
MODE_CASES = [
    (mode, rank, ac)
    for mode, ranks in MODE_RANKS.items()
    for rank in ranks
    for ac in ((None,) if mode in NO_ALIGN else (False, True))
]


def _shape(rank, base):
    """A (N, C, *spatial) shape with distinct spatial sizes starting at ``base``."""
    return (2, 3) + tuple(base + k for k in range(rank - 2))


def _check(x, dtype=np.float64, reduction=64, **kw):
    expected = TF.interpolate(t(x), **kw).numpy()
    actual = F.interpolate(jnp.asarray(x), **kw)
    assert actual.dtype == expected.dtype
    assert_close(actual, expected, dtype, reduction=reduction)


@pytest.mark.parametrize("mode,rank,ac", MODE_CASES)
def test_interpolate_size(rng, mode, rank, ac):
    # Up- and downsampling, output 1 and output == input, non-uniform per-axis sizes.
    for base in (2, 6):
        x = randn(rng, *_shape(rank, base))
        for size in (1, 5, 13, tuple(range(5, 3 + rank))):
            _check(x, size=size, mode=mode, align_corners=ac)


@pytest.mark.parametrize("mode,rank,ac", MODE_CASES)
def test_interpolate_scale_factor(rng, mode, rank, ac):
    # 1.1 on size 5 keeps the size but not the scale; 2.05 on 5 doubles it (torch's shortcuts).
    x = randn(rng, *_shape(rank, 5))
    for sf in (0.6, 1.7, 1.1, 2.05, (2, 0.5, 1.1)[: rank - 2]):
        for recompute in (None, False, True):
            _check(x, scale_factor=sf, mode=mode, align_corners=ac, recompute_scale_factor=recompute)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "lanczos"])
def test_interpolate_antialias(rng, mode):
    x = randn(rng, 2, 3, 13, 17)
    for ac in (False,) if mode == "lanczos" else (False, True):
        for sf in (0.5, 0.3, 0.77, 1.3, (0.4, 0.9)):
            for recompute in (None, True):
                _check(x, np.float64, reduction=64, scale_factor=sf, mode=mode, align_corners=ac,
                       recompute_scale_factor=recompute, antialias=True)
        for size in (1, 4, (5, 3), (20, 9)):
            _check(x, np.float64, reduction=64, size=size, mode=mode, align_corners=ac, antialias=True)


def test_interpolate_float32(rng):
    x = randn(rng, 2, 3, 9, 7, dtype=np.float32)
    for mode, ac, aa in [("nearest", None, False), ("nearest-exact", None, False),
                         ("bilinear", False, False), ("bilinear", True, False),
                         ("bicubic", False, False), ("area", None, False),
                         ("bilinear", False, True), ("bicubic", False, True)]:
        for kw in ({"size": (4, 11)}, {"scale_factor": 1.7}, {"scale_factor": 0.6}):
            expected = TF.interpolate(t(x), mode=mode, align_corners=ac, antialias=aa, **kw).numpy()
            actual = F.interpolate(x, mode=mode, align_corners=ac, antialias=aa, **kw)
            assert actual.dtype == jnp.float32
            if mode.startswith("nearest"):  # indices computed as torch does in float32: exact
                np.testing.assert_array_equal(actual, expected)
            else:
                assert_close(actual, expected, np.float32, reduction=16)


def test_interpolate_empty_batch_and_area_zero(rng):
    x = randn(rng, 0, 2, 5, 6)
    _check(x, size=3, mode="bilinear")
    y = randn(rng, 1, 2, 5, 6)
    _check(y, scale_factor=0.1, mode="area")  # area allows an empty output


@pytest.mark.parametrize("mode,rank,kw", [
    ("linear", 3, {"scale_factor": 1.7}),
    ("linear", 3, {"size": 4, "align_corners": True}),
    ("bilinear", 4, {"size": (9, 4)}),
    ("bicubic", 4, {"size": (9, 4)}),
    ("bicubic", 4, {"scale_factor": 0.6, "align_corners": True}),
    ("trilinear", 5, {"size": (3, 7, 8)}),
    ("area", 4, {"size": (3, 4)}),
    ("nearest", 4, {"scale_factor": 1.7}),
    ("nearest-exact", 3, {"size": 4}),
    ("bilinear", 4, {"scale_factor": 0.3, "antialias": True}),
    ("bicubic", 4, {"size": (3, 7), "antialias": True}),
])
def test_interpolate_grad(rng, mode, rank, kw):
    x = randn(rng, *_shape(rank, 5))
    out_shape = TF.interpolate(t(x), mode=mode, **kw).shape
    g = randn(rng, *out_shape)
    xt = t(x).requires_grad_()
    (TF.interpolate(xt, mode=mode, **kw) * t(g)).sum().backward()
    grad = jax.jit(jax.grad(lambda v: jnp.sum(F.interpolate(v, mode=mode, **kw) * g)))(x)
    assert_close(grad, xt.grad.numpy(), reduction=64)


def test_interpolate_jit(rng):
    x = randn(rng, 2, 3, 6, 5)
    for mode, kw in [("bicubic", {"scale_factor": 1.7, "align_corners": True}),
                     ("nearest", {"size": (3, 8)}), ("area", {"scale_factor": 0.5}),
                     ("bilinear", {"scale_factor": 0.4, "antialias": True})]:
        fn = jax.jit(functools.partial(F.interpolate, mode=mode, **kw))
        assert_close(fn(x), TF.interpolate(t(x), mode=mode, **kw).numpy(), reduction=16)


INTERP_ERRORS = [
    # (kwargs, input shape, expected exception type, message fragment)
    ({"size": 3, "scale_factor": 2.0}, (1, 4, 5, 6), ValueError, "only one of size or scale_factor"),
    ({}, (1, 4, 5, 6), ValueError, "either size or scale_factor"),
    ({"size": 3, "align_corners": True}, (1, 4, 5, 6), ValueError, "align_corners"),
    ({"size": 3, "mode": "area", "align_corners": False}, (1, 4, 5, 6), ValueError, "align_corners"),
    ({"size": 3, "mode": "nearest-exact", "align_corners": True}, (1, 4, 5, 6), ValueError, "align_corners"),
    ({"size": 3, "mode": "linear"}, (1, 4, 5, 6), ValueError, "mode='linear' needs a 3D"),
    ({"size": 3, "mode": "bilinear"}, (1, 4, 5), ValueError, "mode='bilinear' needs a 4D"),
    ({"size": 3, "mode": "trilinear"}, (1, 4, 5, 6), ValueError, "mode='trilinear' needs a 5D"),
    ({"size": 3, "mode": "bicubic"}, (1, 4, 5, 6, 2), ValueError, "mode='bicubic' needs a 4D"),
    ({"size": 3}, (4, 5), ValueError, "3D, 4D or 5D"),
    ({"size": 3}, (1, 1, 4, 5, 2, 2), ValueError, "3D, 4D or 5D"),
    ({"size": 3, "antialias": True}, (1, 4, 5, 6), ValueError, "antialias"),
    ({"size": 3, "mode": "linear", "antialias": True}, (1, 4, 5), ValueError, "antialias"),
    ({"size": 3, "mode": "area", "antialias": True}, (1, 4, 5, 6), ValueError, "antialias"),
    ({"size": 3, "mode": "foo"}, (1, 4, 5, 6), ValueError, "mode must be one of"),
    ({"size": (3, 3, 3)}, (1, 4, 5, 6), ValueError, "size=\\(3, 3, 3\\)"),
    ({"scale_factor": (2.0, 2.0, 2.0)}, (1, 4, 5, 6), ValueError, "scale_factor=\\(2.0, 2.0, 2.0\\)"),
    ({"size": (3.0, 3)}, (1, 4, 5, 6), TypeError, "size must be an int"),
    ({"size": 3.0}, (1, 4, 5, 6), TypeError, "size must be an int"),
    ({"size": 3, "recompute_scale_factor": True}, (1, 4, 5, 6), ValueError, "recompute_scale_factor"),
    ({"scale_factor": 0.1}, (1, 4, 5, 6), ValueError, "greater than 0"),
    ({"scale_factor": -2.0, "mode": "bilinear"}, (1, 4, 5, 6), ValueError, "greater than 0"),
    ({"size": (0, 2), "mode": "bilinear"}, (1, 4, 5, 6), ValueError, "greater than 0"),
    ({"size": (-1, 2), "mode": "area"}, (1, 4, 5, 6), ValueError, "greater than 0"),
    ({"size": 3, "mode": "lanczos", "align_corners": True, "antialias": True}, (1, 4, 5, 6),
     ValueError, "lanczos"),
    ({"size": 3, "mode": "lanczos"}, (1, 4, 5, 6), ValueError, "antialias"),
]


@pytest.mark.parametrize("kw,shape,exc,match", INTERP_ERRORS)
def test_interpolate_errors(kw, shape, exc, match):
    x = np.random.default_rng(0).standard_normal(shape)
    with pytest.raises(Exception):
        TF.interpolate(t(x), **kw)
    with pytest.raises(exc, match=match):
        F.interpolate(x, **kw)


# --------------------------------------------------------------------------- rearrangement


def test_pixel_shuffle_and_unshuffle(rng):
    for shape, r in [((18, 2, 4), 3), ((2, 3, 8, 2, 3), 2), ((1, 5, 4, 6), 1)]:
        x = randn(rng, *shape)
        y = F.pixel_shuffle(x, r)
        np.testing.assert_array_equal(y, TF.pixel_shuffle(t(x), r).numpy())
        np.testing.assert_array_equal(F.pixel_unshuffle(y, r), x)  # round trip
        z = randn(rng, *y.shape)
        np.testing.assert_array_equal(F.pixel_unshuffle(z, r), TF.pixel_unshuffle(t(z), r).numpy())
    assert_close(jax.jit(F.pixel_shuffle, static_argnums=1)(x, 1), x)


def test_channel_shuffle(rng):
    for shape, g in [((2, 6, 5), 3), ((2, 6, 3, 4), 2), ((1, 8, 2, 3, 2), 4)]:
        x = randn(rng, *shape)
        np.testing.assert_array_equal(F.channel_shuffle(x, g), TF.channel_shuffle(t(x), g).numpy())
        np.testing.assert_array_equal(jax.jit(F.channel_shuffle, static_argnums=1)(x, g),
                                      TF.channel_shuffle(t(x), g).numpy())


# (input shape, kernel_size, dilation, padding, stride)
FOLD_CASES = [
    ((2, 3, 6, 7), 2, 1, 0, 1),
    ((2, 3, 9, 8), (3, 2), (2, 1), (1, 2), (2, 3)),
    ((3, 7, 6), 3, 1, 1, 2),              # unbatched
    ((1, 2, 5, 5), 5, 1, 0, 1),           # one block
    ((2, 2, 7, 9), (1, 3), 1, (2, 0), (3, 1)),
    ((1, 2, 4, 5), 2, 2, 1, (1, 2)),
]


@pytest.mark.parametrize("shape,k,d,p,s", FOLD_CASES)
def test_unfold_fold(rng, shape, k, d, p, s):
    x = randn(rng, *shape)
    expected = TF.unfold(t(x), k, d, p, s).numpy()
    np.testing.assert_array_equal(F.unfold(x, k, d, p, s), expected)
    cols = randn(rng, *expected.shape)
    out_size = shape[-2:]
    assert_close(F.fold(cols, out_size, k, d, p, s), TF.fold(t(cols), out_size, k, d, p, s).numpy(),
                 reduction=9)
    # gradients (under jit) against autograd; fold is unfold's adjoint
    uf = lambda v: F.unfold(v, k, d, p, s)  # noqa: E731
    fo = lambda v: F.fold(v, out_size, k, d, p, s)  # noqa: E731
    xt, ct = t(x).requires_grad_(), t(cols).requires_grad_()
    (TF.unfold(xt, k, d, p, s) * t(cols)).sum().backward()
    (TF.fold(ct, out_size, k, d, p, s) * t(x)).sum().backward()
    assert_close(jax.jit(jax.grad(lambda v: jnp.sum(uf(v) * cols)))(x), xt.grad.numpy(), reduction=9)
    assert_close(jax.jit(jax.grad(lambda v: jnp.sum(fo(v) * x)))(cols), ct.grad.numpy())


def test_unfold_fold_jit(rng):
    x = randn(rng, 2, 3, 7, 6)
    uf = jax.jit(F.unfold, static_argnums=(1, 2, 3, 4))
    np.testing.assert_array_equal(uf(x, (3, 2), 1, 1, 2), TF.unfold(t(x), (3, 2), 1, 1, 2).numpy())
    cols = TF.unfold(t(x), (3, 2), 1, 1, 2).numpy()
    fo = jax.jit(F.fold, static_argnums=(1, 2, 3, 4, 5))
    assert_close(fo(cols, (7, 6), (3, 2), 1, 1, 2), TF.fold(t(cols), (7, 6), (3, 2), 1, 1, 2).numpy())


REARRANGE_ERRORS = [
    # (name, args, input shape, exception, message fragment)
    ("pixel_shuffle", (2,), (4, 5), ValueError, "at least 3 dimensions"),
    ("pixel_shuffle", (0,), (1, 4, 5, 6), ValueError, "positive upscale_factor"),
    ("pixel_shuffle", (2,), (1, 5, 2, 2), ValueError, "divisible by upscale_factor"),
    ("pixel_unshuffle", (2,), (1, 4, 5, 6), ValueError, "height input.shape\\[-2\\]=5"),
    ("pixel_unshuffle", (2,), (1, 4, 4, 5), ValueError, "width input.shape\\[-1\\]=5"),
    ("pixel_unshuffle", (0,), (1, 4, 4, 4), ValueError, "positive downscale_factor"),
    ("pixel_unshuffle", (2,), (4, 4), ValueError, "at least 3 dimensions"),
    ("pixel_shuffle", (2.0,), (1, 4, 4, 4), TypeError, "upscale_factor must be an int"),
    ("channel_shuffle", (0,), (1, 4, 5, 6), ValueError, "positive groups"),
    ("channel_shuffle", (3,), (1, 4, 5, 6), ValueError, "divisible by groups"),
    ("channel_shuffle", (2,), (1, 4), ValueError, "more than 2 dimensions"),
    ("unfold", (0,), (1, 4, 5, 6), ValueError, "kernel_size must be >= 1"),
    ("unfold", (2, 1, 0, 0), (1, 4, 5, 6), ValueError, "stride must be >= 1"),
    ("unfold", (2, 0), (1, 4, 5, 6), ValueError, "dilation must be >= 1"),
    ("unfold", (2, 1, -1), (1, 4, 5, 6), ValueError, "padding must be non-negative"),
    ("unfold", (7,), (1, 4, 5, 6), ValueError, "at least one"),
    ("unfold", (2,), (5, 6), ValueError, "3D \\(unbatched\\) or 4D"),
    ("unfold", (2,), (1, 1, 5, 6, 2), ValueError, "3D \\(unbatched\\) or 4D"),
    ("unfold", ((2, 2, 2),), (1, 4, 5, 6), ValueError, "kernel_size"),
    ("unfold", (2,), (1, 0, 5, 6), ValueError, "non-zero"),
    ("fold", ((4, 5), 2), (1, 5, 12), ValueError, "divisible by the product of kernel_size"),
    ("fold", ((4, 5), 2), (1, 8, 11), ValueError, "3 \\* 4 = 12"),
    ("fold", ((1, 1), 2), (1, 8, 1), ValueError, "sliding blocks"),
    ("fold", ((0, 5), 2), (1, 8, 12), ValueError, "sliding blocks"),
    ("fold", ((4, 5), 2), (1, 8, 12, 1), ValueError, "2D \\(unbatched\\) or 3D"),
    ("fold", ((4, 5), 2), (12,), ValueError, "2D \\(unbatched\\) or 3D"),
    ("fold", ((4, 5), 0), (1, 8, 12), ValueError, "kernel_size must be >= 1"),
    ("fold", ((4, 5), 2, 1, 0, 0), (1, 8, 12), ValueError, "stride must be >= 1"),
    ("fold", ((4, 5), 2, 1, -1), (1, 8, 12), ValueError, "padding must be non-negative"),
]


@pytest.mark.parametrize("name,args,shape,exc,match", REARRANGE_ERRORS)
def test_rearrange_errors(name, args, shape, exc, match):
    x = np.random.default_rng(0).standard_normal(shape)
    with pytest.raises(Exception):
        getattr(TF, name)(t(x), *args)
    with pytest.raises(exc, match=match):
        getattr(F, name)(x, *args)
