"""The output-size helpers of ``jaxconv.functional._args`` against the shapes torch produces."""
import pytest
import torch
import torch.nn.functional as TF

from jaxconv.functional import _args, conv_output_size, conv_transpose_output_size, pool_output_size

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
