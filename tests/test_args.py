"""The argument rules of ``jaxconv.functional._args`` against torch: output sizes, int arguments."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jaxconv.functional as F
import jaxconv.nn as J
from jaxconv.functional import _args, conv_output_size, conv_transpose_output_size, pool_output_size
from tests._util import assert_close

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same.:UserWarning")


def _configs(rng, count, n):
    for _ in range(count):
        k = tuple(int(v) for v in rng.integers(1, 5, n))
        s = tuple(int(v) for v in rng.integers(1, 4, n))
        d = tuple(int(v) for v in rng.integers(1, 3, n))
        yield k, s, d


@pytest.mark.parametrize("n", [1, 2, 3])
def test_conv_output_size_matches_torch(rng, n):
    conv = getattr(TF, f"conv{n}d")
    for k, s, d in _configs(rng, 25, n):
        p = tuple(int(v) for v in rng.integers(0, 3, n))
        size = tuple(int(di * (ki - 1) + 1 - 2 * pi + e) for ki, di, pi, e in zip(k, d, p, rng.integers(0, 5, n)))
        size = tuple(max(v, 1) for v in size)
        x = torch.randn(1, 1, *size)
        w = torch.randn(1, 1, *k)
        for padding in (p, p[0], "valid") + (("same",) if s == (1,) * n else ()):
            eff = tuple(di * (ki - 1) + 1 for ki, di in zip(k, d))
            pads = p if padding == p else (p[0],) * n if padding == p[0] else (0,) * n
            if padding != "same" and any(e > z + 2 * q for e, z, q in zip(eff, size, pads)):
                continue
            expected = conv(x, w, stride=s, padding=padding, dilation=d).shape[2:]
            assert conv_output_size(size, k, s, padding, d) == tuple(expected), (size, k, s, padding, d)


def test_conv_output_size_int_arguments():
    assert conv_output_size(10, 3) == (8,)
    assert conv_output_size((10, 7), 3, stride=2, padding=1) == (5, 4)
    assert conv_output_size((10, 7), (4, 2), padding="same") == (10, 7)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_conv_transpose_output_size_matches_torch(rng, n):
    conv_t = getattr(TF, f"conv_transpose{n}d")
    for k, s, d in _configs(rng, 25, n):
        size = tuple(int(v) for v in rng.integers(1, 5, n))
        p = tuple(int(v) for v in rng.integers(0, 4, n))
        op = tuple(int(rng.integers(0, max(si, di))) for si, di in zip(s, d))
        expect = conv_transpose_output_size(size, k, s, p, op, d)
        x, w = torch.randn(1, 1, *size), torch.randn(1, 1, *k)
        try:
            got = conv_t(x, w, stride=s, padding=p, output_padding=op, dilation=d).shape[2:]
        except RuntimeError:  # torch: "Output size is too small"
            assert min(expect) < 1, (size, k, s, p, op, d)
            continue
        # (some torch kernels return an empty output for a size of 0 instead of raising)
        assert expect == tuple(got), (size, k, s, p, op, d)


def test_pool_output_size_matches_torch_max_pool2d(rng):
    checked = 0
    for _ in range(300):
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        p = tuple(int(rng.integers(0, ki // 2 + 1)) for ki in k)  # torch: pad <= kernel/2
        size = tuple(int(v) for v in rng.integers(1, 9, 2))
        if any(di * (ki - 1) + 1 > z + 2 * pi for ki, di, z, pi in zip(k, d, size, p)):
            continue
        x = torch.randn(1, 1, *size)
        for ceil_mode in (False, True):
            got = TF.max_pool2d(x, k, s, p, d, ceil_mode=ceil_mode).shape[2:]
            assert pool_output_size(size, k, s, p, d, ceil_mode) == tuple(got), (size, k, s, p, d, ceil_mode)
            checked += 1
    assert checked > 200


def test_pool_output_size_ceil_mode_drops_window_starting_in_right_padding():
    # size 5, k 2, s 2, p 1: ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the 4th would start at
    # 6 = in + p, entirely in the right padding; torch drops it.
    x = torch.randn(1, 1, 5, 5)
    got = tuple(TF.max_pool2d(x, 2, 2, 1, ceil_mode=True).shape[2:])
    assert got == (3, 3)
    assert pool_output_size((5, 5), 2, 2, 1, ceil_mode=True) == got
    # Without padding, ceil mode keeps the partial last window.
    assert pool_output_size((5, 5), 2, 2, 0, ceil_mode=True) == tuple(
        TF.max_pool2d(x, 2, 2, 0, ceil_mode=True).shape[2:]) == (3, 3)
    # stride defaults to kernel_size
    assert pool_output_size((7, 9), 3) == tuple(TF.max_pool2d(torch.randn(1, 1, 7, 9), 3).shape[2:])


def test_ntuple_rules():
    assert _args.ntuple(3, 2, "stride") == (3, 3)
    assert _args.ntuple((1, 2), 2, "stride") == (1, 2)
    with pytest.raises(ValueError, match="stride"):
        _args.ntuple((1, 2, 3), 2, "stride")
    with pytest.raises(TypeError, match="kernel_size"):
        _args.ntuple(2.5, 2, "kernel_size")
    with pytest.raises(TypeError, match="padding"):
        _args.ntuple(True, 2, "padding")
    with pytest.raises(ValueError, match="dilation"):
        _args.positive((1, 0), "dilation")


def test_conv_padding_same_puts_extra_after():
    assert _args.conv_padding("same", (4, 3), (1, 1), (1, 2)) == ((1, 2), (2, 2))
    assert _args.conv_padding("valid", (4, 3), (1, 1), (1, 1)) == ((0, 0), (0, 0))
    with pytest.raises(ValueError, match="stride"):
        _args.conv_padding("same", (3,), (2,), (1,))
    with pytest.raises(ValueError, match="padding"):
        _args.conv_padding("full", (3,), (1,), (1,))


# ---------------------------------------------------------------- integer arguments (is_int)

def test_is_int_counts_numpy_integers_but_not_bool():
    for v in (3, np.int64(3), np.int32(-2), np.uint8(7)):
        assert _args.is_int(v), v
    for v in (True, np.bool_(True), 3.0, np.float64(3), "3", None, np.array([3])):
        assert not _args.is_int(v), v
    assert _args.ntuple(np.int64(3), 2, "stride") == (3, 3)
    assert _args.ntuple((np.int32(1), 2), 2, "stride") == (1, 2)
    assert all(type(v) is int for v in _args.ntuple((np.int64(1), np.int64(2)), 2, "stride"))
    with pytest.raises(ValueError, match="stride"):
        _args.ntuple((1, True), 2, "stride")


I2, I3 = np.int64(2), np.int32(3)

# (name, call(functional_module, x, weight)): every integer argument a numpy integer; torch
# reads them through __index__, and so does jaxconv.
NUMPY_INT_CALLS = [
    ("conv2d", lambda m, x, w: m.conv2d(x, w, None, I2, np.int64(1), np.int64(1), I3)),
    ("conv_transpose2d", lambda m, x, w: m.conv_transpose2d(x, w, None, I2, np.int64(1), np.int64(1), I3)),
    ("max_pool2d", lambda m, x, w: m.max_pool2d(x, I2, I2, np.int64(1), np.int64(1))),
    ("max_pool2d tuple", lambda m, x, w: m.max_pool2d(x, (I2, I3), (I2, 1))),
    ("avg_pool2d", lambda m, x, w: m.avg_pool2d(x, I3, 1, np.int64(1), divisor_override=np.int64(5))),
    ("lp_pool2d", lambda m, x, w: m.lp_pool2d(x, I2, I2)),
    ("adaptive_avg_pool2d", lambda m, x, w: m.adaptive_avg_pool2d(x, (np.int64(3), None))),
    ("adaptive_max_pool2d", lambda m, x, w: m.adaptive_max_pool2d(x, (np.int64(3), I2))),
    ("interpolate size", lambda m, x, w: m.interpolate(x, size=np.int64(5))),
    ("interpolate size tuple", lambda m, x, w: m.interpolate(x, size=(np.int64(5), 3), mode="bilinear")),
    ("interpolate scale", lambda m, x, w: m.interpolate(x, scale_factor=I2)),
    ("group_norm", lambda m, x, w: m.group_norm(x, I3)),
    ("local_response_norm", lambda m, x, w: m.local_response_norm(x, I2)),
    ("layer_norm", lambda m, x, w: m.layer_norm(x, (np.int64(7),))),
    ("pad", lambda m, x, w: m.pad(x, (np.int64(1), np.int64(2)))),
    ("pixel_unshuffle", lambda m, x, w: m.pixel_unshuffle(x[..., :6], I2)),
    ("channel_shuffle", lambda m, x, w: m.channel_shuffle(x, I3)),
    ("unfold", lambda m, x, w: m.unfold(x, I2, stride=(I2, 1))),
    ("softmax", lambda m, x, w: m.softmax(x, np.int64(1))),
]


@pytest.mark.parametrize("name, call", NUMPY_INT_CALLS, ids=[c[0] for c in NUMPY_INT_CALLS])
def test_numpy_integer_arguments_are_accepted_as_torch_accepts_them(rng, name, call):
    x = rng.standard_normal((2, 6, 6, 7))
    w = rng.standard_normal((6, 2, 3, 2))
    expected = call(TF, torch.from_numpy(x), torch.from_numpy(w))
    got = call(F, jnp.asarray(x), jnp.asarray(w))
    assert_close(got, expected.numpy(), reduction=36)


BOOL_CALLS = [
    ("conv2d stride", lambda m, x, w: m.conv2d(x, w, stride=True)),
    ("conv2d groups", lambda m, x, w: m.conv2d(x, w[:, :6], groups=True)),
    ("max_pool2d", lambda m, x, w: m.max_pool2d(x, True)),
    ("avg_pool2d divisor", lambda m, x, w: m.avg_pool2d(x, 2, divisor_override=True)),
    ("adaptive_avg_pool2d", lambda m, x, w: m.adaptive_avg_pool2d(x, True)),
    ("interpolate", lambda m, x, w: m.interpolate(x, size=True)),
    ("group_norm", lambda m, x, w: m.group_norm(x, True)),
    ("unfold", lambda m, x, w: m.unfold(x, True)),
    ("pad", lambda m, x, w: m.pad(x, (True, 1))),
    ("pixel_shuffle", lambda m, x, w: m.pixel_shuffle(x, True)),
    ("local_response_norm", lambda m, x, w: m.local_response_norm(x, True)),
]


@pytest.mark.parametrize("name, call", BOOL_CALLS, ids=[c[0] for c in BOOL_CALLS])
def test_bool_is_not_an_int_argument_as_in_torch(rng, name, call):
    x = rng.standard_normal((2, 6, 6, 7))
    w = rng.standard_normal((6, 6, 3, 2))
    with pytest.raises((TypeError, RuntimeError)):
        call(TF, torch.from_numpy(x), torch.from_numpy(w))
    with pytest.raises((TypeError, ValueError)):
        call(F, jnp.asarray(x), jnp.asarray(w))


MODULES = [
    ("Conv2d", (I3, np.int64(4), I2), {"stride": I2, "padding": np.int64(1), "groups": np.int64(1)}),
    ("ConvTranspose2d", (I3, np.int64(6), 3), {"stride": I2, "output_padding": np.int64(1), "groups": I3}),
    ("MaxPool2d", (I2,), {"stride": np.int64(1), "padding": np.int64(1)}),
    ("AvgPool1d", (I3,), {"stride": I2}),
    ("AdaptiveMaxPool2d", ((np.int64(2), None),), {}),
    ("LPPool2d", (I2, I2), {}),
    ("GroupNorm", (I3, np.int64(3)), {}),
    ("BatchNorm2d", (np.int64(3),), {}),
    ("LayerNorm", (np.int64(7),), {}),
    ("ZeroPad2d", (np.int64(1),), {}),
    ("ConstantPad2d", ((np.int64(1), 2, 0, I3), 0.5), {}),
    ("Flatten", (np.int64(2),), {}),
]


@pytest.mark.parametrize("name, args, kw", MODULES, ids=[m[0] for m in MODULES])
def test_modules_take_numpy_integer_arguments_as_torch_does(rng, name, args, kw):
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    if name == "AvgPool1d":
        x = x[0]
    theirs = getattr(torch.nn, name)(*args, **kw)
    ours = getattr(J, name)(*args, **kw)
    for key, value in theirs.named_parameters():  # the same weights, so that values compare
        getattr(ours, key)[...] = jnp.asarray(value.detach().numpy())
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    assert_close(ours(jnp.asarray(x)), expected, np.float32, reduction=54)
    for attr in ("kernel_size", "stride", "padding", "output_padding", "groups", "num_groups"):
        if hasattr(theirs, attr) and hasattr(ours, attr):
            assert getattr(ours, attr) == getattr(theirs, attr), attr


def test_adaptive_output_size_takes_a_bare_numpy_integer():
    # One rule for every int argument: jaxconv accepts np.int64(3) here, where torch's Python
    # wrapper (`_list_with_default`) calls len() on it and raises. A tuple of numpy integers
    # works in both; the bare one gives the same result as the tuple.

    x = np.random.default_rng(0).standard_normal((1, 2, 7, 5))
    with pytest.raises(TypeError):
        TF.adaptive_avg_pool2d(torch.from_numpy(x), np.int64(3))
    expected = TF.adaptive_avg_pool2d(torch.from_numpy(x), (np.int64(3), np.int64(3))).numpy()
    np.testing.assert_allclose(np.asarray(F.adaptive_avg_pool2d(jnp.asarray(x), np.int64(3))), expected,
                               rtol=1e-12)


def test_group_norm_divisibility_has_one_rule_and_torchs_two_messages():
    with pytest.raises(ValueError, match=r"num_channels \(6\) must be divisible by num_groups \(4\)") as ours:
        J.GroupNorm(4, 6)
    with pytest.raises(ValueError) as theirs:
        torch.nn.GroupNorm(4, 6)
    assert str(ours.value) == str(theirs.value)
    x = np.random.default_rng(1).standard_normal((2, 6, 3))
    with pytest.raises(RuntimeError) as theirs:
        TF.group_norm(torch.from_numpy(x), 4)
    with pytest.raises(ValueError) as ours:
        F.group_norm(jnp.asarray(x), 4)
    assert str(ours.value) == str(theirs.value)
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="num_groups must be a positive integer"):
            J.GroupNorm(bad, 6)
        with pytest.raises(ValueError, match="num_groups must be a positive integer"):
            F.group_norm(jnp.asarray(x), bad)
