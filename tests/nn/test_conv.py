"""Conv and ConvTranspose modules with torch's weights copied in compute what torch computes."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxconv.nn as nn
from jaxconv.nn.module import Module
from tests._util import assert_close, randn, t

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same.:UserWarning")


def copy_weights(m, tm):
    """torch layer -> module, by parameter name (the dtype follows the module's)."""
    m.weight[...] = jnp.asarray(tm.weight.detach().numpy(), m.weight[...].dtype)
    assert (m.bias is None) == (tm.bias is None)
    if tm.bias is not None:
        m.bias[...] = jnp.asarray(tm.bias.detach().numpy(), m.bias[...].dtype)


def _call(m, x, **kw):
    return nnx.jit(lambda m, x: m(x, **kw))(m, x)


def _torch_out(tm, x, **kw):
    with torch.no_grad():
        return tm(t(x), **kw).numpy()


# (n, in, out, kernel, stride, padding, dilation, groups, bias, batched, spatial)
CONV_CASES = [
    (1, 4, 6, 3, 2, 2, 1, 2, True, False, (9,)),
    (2, 3, 6, (3, 2), (1, 2), (1, 2), (2, 1), 3, False, True, (8, 7)),
    (3, 2, 4, (2, 3, 2), 1, (1, 0, 1), 1, 1, True, True, (5, 6, 4)),
    (2, 4, 4, (4, 3), 1, "same", (1, 2), 2, True, True, (7, 8)),     # 'same', even kernel, dilated
    (1, 3, 3, 4, 1, "same", 1, 3, True, True, (6,)),
    (3, 2, 2, 2, 1, "valid", 1, 1, True, False, (3, 4, 5)),
]


def _id(case):
    return "-".join(str(v).replace(" ", "") for v in case)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("case", CONV_CASES, ids=_id)
def test_conv_module_matches_torch(rng, case, padding_mode):
    n, cin, cout, k, s, p, d, g, bias, batched, spatial = case
    cfg = dict(stride=s, padding=p, dilation=d, groups=g, bias=bias, padding_mode=padding_mode)
    tm = getattr(torch.nn, f"Conv{n}d")(cin, cout, k, **cfg).double()
    m = getattr(nn, f"Conv{n}d")(cin, cout, k, **cfg, dtype=jnp.float64)
    copy_weights(m, tm)
    x = randn(rng, *((2,) if batched else ()), cin, *spatial)
    red = cin // g * math.prod(m.kernel_size)
    assert_close(_call(m, x), _torch_out(tm, x), reduction=red)


def test_conv_module_weight_value_assignment_float32(rng):
    """The issue's own words: ``m.weight.value = jnp.asarray(torch_layer.weight...)``."""
    tm = torch.nn.Conv2d(4, 6, (3, 2), stride=2, padding=(2, 1), groups=2, padding_mode="reflect")
    m = nn.Conv2d(4, 6, (3, 2), stride=2, padding=(2, 1), groups=2, padding_mode="reflect")
    m.weight.value = jnp.asarray(tm.weight.detach().numpy())
    m.bias.value = jnp.asarray(tm.bias.detach().numpy())
    x = randn(rng, 3, 4, 9, 8, dtype=np.float32)
    y = _call(m, x)
    assert y.dtype == jnp.float32
    assert_close(y, _torch_out(tm, x), dtype=np.float32, reduction=2 * 6)


# (n, in, out, kernel, stride, padding, output_padding, dilation, groups, bias, batched, spatial)
CONV_T_CASES = [
    (1, 4, 6, 3, 2, 1, 1, 1, 2, True, False, (5,)),
    (2, 3, 6, (3, 2), (2, 3), (1, 0), (1, 2), 1, 3, False, True, (4, 5)),
    (3, 2, 4, (2, 3, 2), (1, 2, 1), 0, (0, 1, 0), (2, 1, 1), 2, True, True, (3, 4, 2)),
    (2, 2, 3, 2, 1, 2, 0, 1, 1, True, True, (5, 6)),   # padding 2 > dilation*(k-1) = 1
]


@pytest.mark.parametrize("case", CONV_T_CASES, ids=_id)
def test_conv_transpose_module_matches_torch(rng, case):
    n, cin, cout, k, s, p, op, d, g, bias, batched, spatial = case
    cfg = dict(stride=s, padding=p, output_padding=op, groups=g, bias=bias, dilation=d)
    tm = getattr(torch.nn, f"ConvTranspose{n}d")(cin, cout, k, **cfg).double()
    m = getattr(nn, f"ConvTranspose{n}d")(cin, cout, k, **cfg, dtype=jnp.float64)
    copy_weights(m, tm)
    x = randn(rng, *((2,) if batched else ()), cin, *spatial)
    assert_close(_call(m, x), _torch_out(tm, x), reduction=cin // g * math.prod(m.kernel_size))


@pytest.mark.parametrize("output_size,batched", [((8, 14), True), ((2, 6, 7, 15), True),
                                                 ((6, 8, 13), False), ((7, 14), False)])
def test_conv_transpose_output_size(rng, output_size, batched):
    tm = torch.nn.ConvTranspose2d(3, 6, 3, stride=(2, 3), padding=1, groups=3).double()
    m = nn.ConvTranspose2d(3, 6, 3, stride=(2, 3), padding=1, groups=3, dtype=jnp.float64)
    copy_weights(m, tm)
    x = randn(rng, *((2,) if batched else ()), 3, 4, 5)
    want = _torch_out(tm, x, output_size=list(output_size))
    assert want.shape[-2:] == tuple(output_size[-2:])
    assert_close(_call(m, x, output_size=output_size), want, reduction=9)


REPR_CASES = [
    ("Conv1d", (3, 5, 2), {}),
    ("Conv2d", (16, 33, (3, 5)), dict(stride=(2, 1), padding=(4, 2), dilation=(3, 1))),
    ("Conv2d", (4, 8, 3), dict(padding="same", groups=4, bias=False, padding_mode="reflect")),
    ("Conv2d", (4, 8, 3), dict(padding="valid", padding_mode="circular")),
    ("Conv3d", (2, 4, (1, 2, 3)), dict(stride=2, padding=1, padding_mode="replicate")),
    ("ConvTranspose1d", (3, 6, 4), dict(stride=2, output_padding=1, groups=3)),
    ("ConvTranspose2d", (1, 3, 4, 1, 0), dict(bias=False)),
    ("ConvTranspose3d", (2, 4, 3), dict(stride=(1, 2, 2), padding=(0, 1, 1), output_padding=(0, 1, 0),
                                        dilation=2)),
]


@pytest.mark.parametrize("name,args,kwargs", REPR_CASES)
def test_repr_equals_torch(name, args, kwargs):
    m, tm = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(m) == repr(tm)
    assert str(m) == str(tm)


def test_unbatched_module_matches_batched(rng):
    m = nn.Conv3d(2, 3, 2, padding=1, padding_mode="circular", dtype=jnp.float64)
    x = randn(rng, 2, 4, 3, 5)
    y = _call(m, x)
    assert y.shape == (3, 5, 4, 6)
    np.testing.assert_allclose(np.asarray(y), np.asarray(_call(m, x[None]))[0], rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# a small ported model: plain flax.nnx.Module subclasses holding convs
class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect")
        self.conv2 = torch.nn.Conv2d(8, 8, 3, stride=2, groups=4)
        self.up = torch.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        return self.up(torch.tanh(self.conv2(torch.tanh(self.conv1(x)))))


class Net(nnx.Module):
    def __init__(self, dtype=None):
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect", dtype=dtype)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, groups=4, dtype=dtype)
        self.up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, output_padding=1, dtype=dtype)

    def __call__(self, x):
        return self.up(jnp.tanh(self.conv2(jnp.tanh(self.conv1(x)))))


def _ported(dtype=jnp.float64):
    tnet = TorchNet().double()
    net = Net(dtype)
    for name in ("conv1", "conv2", "up"):
        copy_weights(getattr(net, name), getattr(tnet, name))
    return net, tnet


def test_ported_model_nnx_jit_and_grad(rng):
    net, tnet = _ported()
    x = randn(rng, 2, 3, 9, 10)
    want = tnet(t(x))
    y = nnx.jit(lambda m, x: m(x))(net, x)
    assert_close(y, want.detach().numpy(), reduction=72)

    g_out = randn(rng, *want.shape)
    (want * t(g_out)).sum().backward()
    grads = nnx.jit(nnx.grad(lambda m, x: jnp.sum(m(x) * g_out)))(net, x)
    for name in ("conv1", "conv2", "up"):
        for p in ("weight", "bias"):
            expected = getattr(getattr(tnet, name), p).grad.numpy()
            assert_close(grads[name][p][...], expected, reduction=72 * y.size)


def test_ported_model_split_merge(rng):
    net, tnet = _ported()
    x = randn(rng, 3, 8, 8)  # unbatched through the whole model
    graphdef, state = nnx.split(net)
    y = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))(state, x)
    with torch.no_grad():
        want = tnet(t(x)).numpy()
    assert_close(y, want, reduction=72)
    # a model merged from a transformed state carries the transformed values
    other = nnx.merge(graphdef, jax.tree.map(lambda a: 2 * a, state))
    np.testing.assert_array_equal(np.asarray(other.up.weight[...]), 2 * np.asarray(net.up.weight[...]))
    assert_close(_call(net, x), want, reduction=72)


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Conv2d(3, 6, 3, padding="same", padding_mode="replicate")
        self.head = torch.nn.ConvTranspose1d(6, 2, 2, stride=2, bias=False)


class Block(Module):
    def __init__(self):
        self.body = nn.Conv2d(3, 6, 3, padding="same", padding_mode="replicate")
        self.head = nn.ConvTranspose1d(6, 2, 2, stride=2, bias=False)


def test_nested_repr_equals_torch():
    # the class names match, so the whole printout must match
    TorchBlock.__name__ = Block.__name__
    assert repr(Block()) == repr(TorchBlock())


# ---------------------------------------------------------------------------------------------
# the seed articles' examples
def test_seed_conv2d_strided_dilated(rng):
    tm = torch.nn.Conv2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1))
    m = nn.Conv2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1))
    copy_weights(m, tm)
    x = randn(rng, 20, 16, 50, 100, dtype=np.float32)
    y = _call(m, x)
    assert y.shape == (20, 33, 26, 100) and y.dtype == jnp.float32
    assert_close(y, _torch_out(tm.double(), x.astype(np.float64)), dtype=np.float32, reduction=16 * 15)


def test_seed_unbatched_grouped(rng):
    tm = torch.nn.Conv2d(6, 10, 3, padding=1, groups=2).double()
    m = nn.Conv2d(6, 10, 3, padding=1, groups=2, dtype=jnp.float64)
    copy_weights(m, tm)
    x = randn(rng, 6, 64, 64)
    y = _call(m, x)
    assert y.shape == (10, 64, 64)
    assert_close(y, _torch_out(tm, x), reduction=27)


def test_seed_per_channel_affine_as_depthwise_1x1(rng):
    c = 5
    a, b = randn(rng, c), randn(rng, c)
    x = randn(rng, 2, c, 6, 7)
    m = nn.Conv2d(c, c, 1, groups=c, dtype=jnp.float64)
    m.weight[...] = jnp.asarray(a.reshape(c, 1, 1, 1))
    m.bias[...] = jnp.asarray(b)
    y = _call(m, x)
    assert_close(y, x * a[:, None, None] + b[:, None, None])
    tm = torch.nn.Conv2d(c, c, 1, groups=c).double()
    with torch.no_grad():
        tm.weight.copy_(t(a.reshape(c, 1, 1, 1)))
        tm.bias.copy_(t(b))
    assert_close(y, _torch_out(tm, x))


def _scatter_add_transpose(x, w):
    """Transposed conv (stride 1, no padding) the long way: each input element times the
    kernel, added into the output window it starts."""
    n, cin, h, wd = x.shape
    _, cout, kh, kw = w.shape
    out = np.zeros((n, cout, h + kh - 1, wd + kw - 1))
    for b in range(n):
        for ci in range(cin):
            for i in range(h):
                for j in range(wd):
                    out[b, :, i:i + kh, j:j + kw] += x[b, ci, i, j] * w[ci]
    return out


def test_seed_conv_transpose_scatter_and_add():
    w = np.linspace(0.1, 4.8, 48).reshape(1, 3, 4, 4)
    x = np.array([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])
    m = nn.ConvTranspose2d(1, 3, 4, 1, 0, bias=False, dtype=jnp.float64)
    m.weight[...] = jnp.asarray(w)
    y = _call(m, x)
    assert y.shape == (1, 3, 5, 6)
    assert_close(y, _scatter_add_transpose(x, w), reduction=16)
    tm = torch.nn.ConvTranspose2d(1, 3, 4, 1, 0, bias=False).double()
    with torch.no_grad():
        tm.weight.copy_(t(w))
    assert_close(y, _torch_out(tm, x), reduction=16)


def test_seed_conv_transpose_shape(rng):
    tm = torch.nn.ConvTranspose2d(3, 7, 4, 1, 0).double()
    m = nn.ConvTranspose2d(3, 7, 4, 1, 0, dtype=jnp.float64)
    copy_weights(m, tm)
    x = randn(rng, 4, 3, 4, 4)
    y = _call(m, x)
    assert y.shape == (4, 7, 7, 7)
    assert_close(y, _torch_out(tm, x), reduction=48)
    assert_close(y, _scatter_add_transpose(x, np.asarray(m.weight[...])) + np.asarray(m.bias[...])[:, None, None],
                 reduction=48)


# ---------------------------------------------------------------------------------------------
# errors: jaxconv raises where torch raises (construction, or the first call for torch)
MODULE_ERRORS = {
    "groups_not_dividing_in_channels": (lambda M: M.Conv2d(4, 6, 3, groups=3), None, "in_channels"),
    "groups_not_dividing_out_channels": (lambda M: M.Conv2d(6, 4, 3, groups=3), None, "out_channels"),
    "transposed_groups_not_dividing": (lambda M: M.ConvTranspose2d(4, 6, 3, groups=4), None, "out_channels"),
    "unknown_padding_string": (lambda M: M.Conv2d(2, 6, 3, padding="full"), None, "padding"),
    "same_with_stride": (lambda M: M.Conv2d(2, 6, 3, padding="same", stride=2), None, "stride"),
    "unknown_padding_mode": (lambda M: M.Conv2d(2, 6, 3, padding_mode="mirror"), None, "padding_mode"),
    "transposed_padding_mode": (
        lambda M: M.ConvTranspose2d(2, 6, 3, padding_mode="reflect"), None, "padding_mode"),
    "stride_zero": (lambda M: M.Conv2d(2, 6, 3, stride=0), (1, 2, 5, 5), "stride"),
    "dilation_zero": (lambda M: M.Conv1d(2, 6, 3, dilation=0), (1, 2, 5), "dilation"),
    "output_padding_not_smaller": (
        lambda M: M.ConvTranspose2d(2, 6, 3, stride=2, output_padding=2), (1, 2, 4, 4), "output_padding"),
    "wrong_channels": (lambda M: M.Conv2d(3, 6, 3), (1, 4, 5, 5), "channels"),
    "wrong_rank": (lambda M: M.Conv2d(3, 6, 3), (5, 5), "input"),
    "wrong_rank_reflect": (lambda M: M.Conv2d(3, 6, 3, padding=1, padding_mode="reflect"), (5, 5), "input"),
    "kernel_larger_than_input": (lambda M: M.Conv2d(2, 6, 3), (1, 2, 2, 5), "kernel"),
    "reflect_padding_too_wide": (
        lambda M: M.Conv1d(2, 3, 3, padding=3, padding_mode="reflect"), (1, 2, 3), "reflect"),
    "circular_padding_too_wide": (
        lambda M: M.Conv1d(2, 3, 3, padding=4, padding_mode="circular"), (1, 2, 3), "circular"),
}


@pytest.mark.parametrize("name", list(MODULE_ERRORS))
def test_module_errors_where_torch_raises(rng, name):
    build, x_shape, match = MODULE_ERRORS[name]
    x = None if x_shape is None else randn(rng, *x_shape, dtype=np.float32)
    with pytest.raises(Exception):
        tm = build(torch.nn)
        tm(t(x))
    with pytest.raises((ValueError, TypeError), match=match):
        m = build(nn)
        m(x)


@pytest.mark.parametrize("output_size,match", [((20, 20), "output size"), ((12, 12, 12), "output_size")])
def test_conv_transpose_bad_output_size(rng, output_size, match):
    x = randn(rng, 1, 2, 5, 5, dtype=np.float32)
    with pytest.raises(ValueError):
        torch.nn.ConvTranspose2d(2, 6, 3, stride=2)(t(x), output_size=list(output_size))
    with pytest.raises(ValueError, match=match):
        nn.ConvTranspose2d(2, 6, 3, stride=2)(x, output_size=output_size)


@pytest.mark.parametrize("make", [lambda **k: nn.Conv2d(3, 4, 3, **k), lambda **k: nn.ConvTranspose2d(3, 4, 3, **k),
                                  lambda **k: nn.Linear(5, 3, **k)])
def test_modules_take_a_precision(make):
    # full float32 by default (as torch computes); lax.Precision.DEFAULT on request, like Flax's
    from jax import lax

    x = jnp.ones((1, 3, 5, 5) if not isinstance(make(), nn.Linear) else (2, 5), jnp.float32)
    for precision in (lax.Precision.HIGHEST, lax.Precision.DEFAULT):
        m = make() if precision == lax.Precision.HIGHEST else make(precision=precision)
        jaxpr = str(jax.make_jaxpr(m)(x))
        assert f"precision=(Precision.{precision.name}, Precision.{precision.name})" in jaxpr, jaxpr
        assert ("precision=" in repr(m)) == (precision != lax.Precision.HIGHEST)
