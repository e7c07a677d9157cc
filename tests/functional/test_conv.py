"""conv{1,2,3}d and conv_transpose{1,2,3}d against torch: forward, gradients, transforms, errors."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st
from jax import lax

import jaxconv.functional as F
from tests._util import assert_close, randn, t

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same.:UserWarning")


def _size(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


# ---------------------------------------------------------------------------------------------
# The cases: (n, in, out, groups, kernel, stride, padding, dilation, bias, batched, spatial)
CONV_CASES = [
    (1, 3, 4, 1, 3, 1, 0, 1, True, True, (11,)),
    (1, 4, 6, 2, 4, 2, 2, 1, False, False, (12,)),
    (1, 3, 6, 3, 2, 1, "same", 2, True, True, (9,)),          # depthwise (out = 2*in), even k, dilated
    (1, 2, 3, 1, 5, 3, "valid", 1, True, True, (13,)),
    (1, 3, 5, 1, 4, 1, "same", 1, True, False, (8,)),          # even kernel: extra pad after
    (2, 3, 4, 1, (3, 5), (2, 1), (1, 2), (1, 2), True, True, (9, 11)),
    (2, 4, 4, 4, 3, 1, "same", 1, True, True, (7, 8)),         # depthwise, out = in
    (2, 2, 6, 2, (2, 4), 1, "same", (2, 3), False, True, (8, 9)),
    (2, 6, 4, 2, (4, 3), (3, 2), 0, 1, True, False, (10, 9)),
    (2, 3, 3, 1, 1, 2, "valid", 1, True, True, (5, 6)),
    (2, 2, 6, 2, 3, 1, (0, 3), 1, True, True, (6, 6)),
    (3, 2, 3, 1, (2, 3, 1), (1, 2, 1), (1, 0, 2), (2, 1, 1), True, True, (6, 7, 5)),
    (3, 3, 6, 3, 3, 1, "same", (1, 2, 1), True, False, (5, 6, 4)),
    (3, 4, 2, 2, (3, 2, 2), 2, "valid", 1, False, True, (7, 5, 6)),
    (3, 2, 2, 1, 2, 1, "same", 1, True, True, (4, 5, 3)),
]

# (n, in, out, groups, kernel, stride, padding, output_padding, dilation, bias, batched, spatial)
CONV_T_CASES = [
    (1, 3, 4, 1, 3, 1, 0, 0, 1, True, True, (7,)),
    (1, 4, 6, 2, 4, 3, 1, 2, 1, True, False, (5,)),
    (1, 2, 3, 1, 3, 2, 5, 1, 2, False, True, (8,)),             # padding 5 > d*(k-1) = 4
    (1, 3, 6, 3, 2, 2, 0, 1, 2, True, True, (4,)),              # depthwise
    (2, 3, 4, 1, (3, 5), (2, 1), (1, 2), (1, 0), (1, 2), True, True, (5, 6)),
    (2, 4, 4, 4, 3, 2, 1, 1, 1, True, True, (4, 5)),
    (2, 2, 6, 2, (2, 4), (3, 2), (3, 4), (2, 0), 1, False, False, (5, 4)),  # padding > d*(k-1)
    (2, 6, 3, 3, 3, 1, 0, (1, 0), (2, 1), True, True, (3, 4)),  # output_padding < dilation
    (3, 2, 3, 1, (2, 3, 1), (2, 1, 3), (0, 1, 0), (1, 0, 2), 1, True, True, (3, 4, 2)),
    (3, 3, 6, 3, 3, 2, 2, 0, (1, 2, 1), True, False, (3, 3, 4)),
    (3, 4, 2, 2, (3, 2, 2), 1, 3, 0, 1, False, True, (6, 7, 6)),   # padding 3 > d*(k-1)
]


def _conv_data(rng, case, dtype, batch=2):
    n, cin, cout, g, k, s, p, d, bias, batched, spatial = case
    k = _size(k, n)
    x = randn(rng, *((batch,) if batched else ()), cin, *spatial, dtype=dtype)
    w = randn(rng, cout, cin // g, *k, dtype=dtype)
    b = randn(rng, cout, dtype=dtype) if bias else None
    return x, w, b, dict(stride=s, padding=p, dilation=d, groups=g), cin // g * math.prod(k)


def _conv_t_data(rng, case, dtype, batch=2):
    n, cin, cout, g, k, s, p, op, d, bias, batched, spatial = case
    k = _size(k, n)
    x = randn(rng, *((batch,) if batched else ()), cin, *spatial, dtype=dtype)
    w = randn(rng, cin, cout // g, *k, dtype=dtype)
    b = randn(rng, cout, dtype=dtype) if bias else None
    cfg = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    return x, w, b, cfg, cin // g * math.prod(k)


def _torch(fn_name, x, w, b, cfg):
    """torch's answer in float64 (on the very values the jax side sees)."""
    tb = None if b is None else t(b).double()
    return getattr(TF, fn_name)(t(x).double(), t(w).double(), tb, **cfg).numpy()


def _jit(fn_name, cfg):
    fn = getattr(F, fn_name)
    return jax.jit(lambda x, w, b: fn(x, w, b, **cfg))


def _case_id(case):
    return "-".join(str(v).replace(" ", "") for v in case)


# ---------------------------------------------------------------------------------------------
# forward
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CONV_CASES, ids=_case_id)
def test_conv_forward_matches_torch(rng, case, dtype):
    x, w, b, cfg, red = _conv_data(rng, case, dtype)
    name = f"conv{case[0]}d"
    y = _jit(name, cfg)(x, w, b)
    assert y.dtype == dtype
    assert_close(y, _torch(name, x, w, b, cfg), dtype=dtype, reduction=red)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CONV_T_CASES, ids=_case_id)
def test_conv_transpose_forward_matches_torch(rng, case, dtype):
    x, w, b, cfg, red = _conv_t_data(rng, case, dtype)
    name = f"conv_transpose{case[0]}d"
    y = _jit(name, cfg)(x, w, b)
    assert y.dtype == dtype
    assert_close(y, _torch(name, x, w, b, cfg), dtype=dtype, reduction=red)


def test_conv_eager_matches_jit(rng):
    """Outside jit too: the same answer as torch."""
    x, w, b, cfg, red = _conv_data(rng, CONV_CASES[5], np.float64)
    assert_close(F.conv2d(x, w, b, **cfg), _torch("conv2d", x, w, b, cfg), reduction=red)
    x, w, b, cfg, red = _conv_t_data(rng, CONV_T_CASES[4], np.float64)
    assert_close(F.conv_transpose2d(x, w, b, **cfg), _torch("conv_transpose2d", x, w, b, cfg), reduction=red)


# ---------------------------------------------------------------------------------------------
# gradients w.r.t. input, weight and bias against torch autograd, under jax.jit
def _grads_vs_torch(fn_name, x, w, b, cfg, red):
    fn = getattr(F, fn_name)
    y_shape = _torch(fn_name, x, w, b, cfg).shape
    g_out = randn(np.random.default_rng(len(y_shape) + sum(y_shape)), *y_shape)

    def loss(x, w, b):
        return jnp.sum(fn(x, w, b, **cfg) * g_out)

    argnums = (0, 1, 2) if b is not None else (0, 1)
    grads = jax.jit(jax.grad(loss, argnums))(x, w, b)

    tx, tw = t(x).requires_grad_(), t(w).requires_grad_()
    tb = t(b).requires_grad_() if b is not None else None
    (getattr(TF, fn_name)(tx, tw, tb, **cfg) * t(g_out)).sum().backward()
    expected = (tx.grad, tw.grad) + ((tb.grad,) if b is not None else ())
    for got, want in zip(grads, expected):
        assert_close(got, want.numpy(), reduction=red * max(y_shape))


@pytest.mark.parametrize("case", [CONV_CASES[i] for i in (1, 2, 5, 7, 8, 11, 12)], ids=_case_id)
def test_conv_grad_matches_torch(rng, case):
    x, w, b, cfg, red = _conv_data(rng, case, np.float64)
    _grads_vs_torch(f"conv{case[0]}d", x, w, b, cfg, red)


@pytest.mark.parametrize("case", [CONV_T_CASES[i] for i in (1, 2, 3, 4, 6, 7, 8)], ids=_case_id)
def test_conv_transpose_grad_matches_torch(rng, case):
    x, w, b, cfg, red = _conv_t_data(rng, case, np.float64)
    _grads_vs_torch(f"conv_transpose{case[0]}d", x, w, b, cfg, red)


# ---------------------------------------------------------------------------------------------
# hypothesis sweep over the whole argument space
@st.composite
def conv_configs(draw):
    n = draw(st.integers(1, 3))
    transposed = draw(st.booleans())
    kmax = 3 if n < 3 else 2
    g = draw(st.integers(1, 3))
    cin, cout = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, kmax)) for _ in range(n))
    d = tuple(draw(st.integers(1, 2)) for _ in range(n))
    kind = draw(st.sampled_from(["int", "tuple", "same", "valid"] if not transposed else ["int", "tuple"]))
    s = (1,) * n if kind == "same" else tuple(draw(st.integers(1, 3)) for _ in range(n))
    if kind == "int":
        p = draw(st.integers(0, 3))
    elif kind == "tuple":
        p = tuple(draw(st.integers(0, 3)) for _ in range(n))
    else:
        p = kind
    pads = _size(p, n) if not isinstance(p, str) else (0,) * n
    batched = draw(st.booleans())
    if transposed:
        op = tuple(draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d))
        sizes = []
        for ki, si, di, pi, oi in zip(k, s, d, pads, op):
            # smallest input giving an output >= 1: (i-1)*s - 2p + d*(k-1) + op + 1 >= 1
            lo = max(1, 1 + -(-(2 * pi - di * (ki - 1) - oi) // si))
            sizes.append(draw(st.integers(lo, lo + 3)))
        cfg = dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
        w_shape = (cin, cout // g, *k)
    else:
        sizes = []
        for ki, di, pi in zip(k, d, pads):
            lo = max(1, di * (ki - 1) + 1 - 2 * (0 if p == "same" else pi))
            sizes.append(draw(st.integers(lo, lo + 4)))
        cfg = dict(stride=s, padding=p, dilation=d, groups=g)
        w_shape = (cout, cin // g, *k)
    x_shape = ((draw(st.integers(1, 2)),) if batched else ()) + (cin, *sizes)
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    name = f"conv_transpose{n}d" if transposed else f"conv{n}d"
    return name, x_shape, w_shape, cout if bias else None, cfg, seed


def _check_config(config):
    name, x_shape, w_shape, bias, cfg, seed = config
    rng = np.random.default_rng(seed)
    x, w = randn(rng, *x_shape), randn(rng, *w_shape)
    b = randn(rng, bias) if bias else None
    y = _jit(name, cfg)(x, w, b)
    assert_close(y, _torch(name, x, w, b, cfg), reduction=w_shape[1] * math.prod(w_shape[2:]))


@given(conv_configs())
def test_sweep_matches_torch(config):
    _check_config(config)


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(conv_configs())
def test_sweep_matches_torch_long(config):
    _check_config(config)


# ---------------------------------------------------------------------------------------------
# transforms, precision, dtypes
def test_vmap_over_extra_leading_axis(rng):
    x = randn(rng, 3, 2, 4, 7, 6)  # (V, N, C, H, W)
    w = randn(rng, 6, 2, 3, 2)
    b = randn(rng, 6)
    cfg = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    y = jax.jit(jax.vmap(lambda x: F.conv2d(x, w, b, **cfg)))(x)
    want = _torch("conv2d", x.reshape(6, 4, 7, 6), w, b, cfg)
    assert_close(y, want.reshape(3, 2, *want.shape[1:]), reduction=2 * 6)

    ws = randn(rng, 3, 4, 6, 2, 2)  # vmap over transposed-conv weights as well
    cfg_t = dict(stride=2, padding=1, output_padding=1, groups=2)
    y = jax.jit(jax.vmap(lambda x, w: F.conv_transpose2d(x, w, None, **cfg_t)))(x, ws)
    for i in range(3):
        assert_close(y[i], _torch("conv_transpose2d", x[i], ws[i], None, cfg_t), reduction=3 * 4)


def test_jit_with_static_config(rng):
    x, w, b = randn(rng, 2, 3, 8, 9), randn(rng, 6, 1, 3, 4), randn(rng, 6)
    conv = jax.jit(F.conv2d, static_argnames=("stride", "padding", "dilation", "groups"))
    for cfg in (dict(padding="same", dilation=(2, 1), groups=3), dict(stride=(2, 3), padding=(1, 2), groups=3)):
        assert_close(conv(x, w, b, **cfg), _torch("conv2d", x, w, b, cfg), reduction=12)
    conv_t = jax.jit(F.conv_transpose2d,
                     static_argnames=("stride", "padding", "output_padding", "groups", "dilation"))
    wt = randn(rng, 3, 2, 3, 4)
    cfg = dict(stride=2, padding=(1, 0), output_padding=(1, 0), groups=3)
    assert_close(conv_t(x, wt, None, **cfg), _torch("conv_transpose2d", x, wt, None, cfg), reduction=12)


def _eqns(jaxpr):
    """Every equation of ``jaxpr``, nested ones (custom_jvp, pjit, ...) included."""
    for e in jaxpr.eqns:
        yield e
        for v in e.params.values():
            sub = getattr(v, "jaxpr", v)
            if hasattr(sub, "eqns"):
                yield from _eqns(sub)


def _conv_precisions(fn, *args, primitive="conv_general_dilated", **kw):
    jaxpr = jax.make_jaxpr(lambda *a: fn(*a, **kw))(*args)
    return [e.params["precision"] for e in _eqns(jaxpr.jaxpr) if e.primitive.name == primitive]


def test_default_precision_is_highest(rng):
    x, w = randn(rng, 1, 2, 6, 6, dtype=np.float32), randn(rng, 4, 2, 3, 3, dtype=np.float32)
    highest = (lax.Precision.HIGHEST, lax.Precision.HIGHEST)
    got = _conv_precisions(F.conv2d, x, w)
    assert got and all(p in (lax.Precision.HIGHEST, highest) for p in got), got
    got = _conv_precisions(F.conv_transpose2d, x, randn(rng, 2, 3, 3, 3, dtype=np.float32), stride=2)
    assert got and all(p in (lax.Precision.HIGHEST, highest) for p in got), got
    got = _conv_precisions(F.conv2d, x, w, precision=lax.Precision.DEFAULT)
    assert got and all(p in (lax.Precision.DEFAULT, (lax.Precision.DEFAULT,) * 2) for p in got), got
    # a 1x1 conv is lowered to a matrix product: the same default
    got = _conv_precisions(F.conv2d, x, randn(rng, 4, 2, 1, 1, dtype=np.float32), primitive="dot_general")
    assert got and all(p in (lax.Precision.HIGHEST, highest) for p in got), got


@pytest.mark.parametrize("precision", [lax.Precision.DEFAULT, lax.Precision.HIGH, "highest"])
def test_precision_argument_accepted_float32_stays_float32(rng, precision):
    x, w, b = (randn(rng, 2, 4, 7, 6, dtype=np.float32), randn(rng, 6, 2, 3, 3, dtype=np.float32),
               randn(rng, 6, dtype=np.float32))
    cfg = dict(padding=1, groups=2)
    y = jax.jit(lambda x, w, b: F.conv2d(x, w, b, **cfg, precision=precision))(x, w, b)
    assert y.dtype == jnp.float32
    # DEFAULT/HIGH may use TF32 (10-bit mantissa, as float16) passes on a GPU: that tolerance.
    tol_dtype = np.float32 if precision == "highest" else np.float16
    assert_close(y, _torch("conv2d", x, w, b, cfg), dtype=tol_dtype, reduction=18)
    wt = randn(rng, 4, 3, 2, 2, dtype=np.float32)
    yt = F.conv_transpose2d(x, wt, None, 2, 0, 1, 2, precision=precision)
    assert yt.dtype == jnp.float32
    assert_close(yt, _torch("conv_transpose2d", x, wt, None, dict(stride=2, output_padding=1, groups=2)),
                 dtype=tol_dtype, reduction=8)


def test_bfloat16_input(rng):
    x = jnp.asarray(randn(rng, 2, 4, 9, 8), jnp.bfloat16)
    w = jnp.asarray(randn(rng, 6, 2, 3, 3), jnp.bfloat16)
    b = jnp.asarray(randn(rng, 6), jnp.bfloat16)
    cfg = dict(padding="same", groups=2, dilation=(1, 2))
    y = jax.jit(lambda x, w, b: F.conv2d(x, w, b, **cfg))(x, w, b)
    assert y.dtype == jnp.bfloat16
    f64 = [np.asarray(a, np.float64) for a in (x, w, b)]
    want = _torch("conv2d", *f64, cfg)
    eps = float(jnp.finfo(jnp.bfloat16).eps)
    tol = 4 * eps * np.sqrt(18) * max(1.0, np.abs(want).max())
    assert np.abs(np.asarray(y, np.float64) - want).max() <= tol

    wt = jnp.asarray(randn(rng, 4, 3, 2, 3), jnp.bfloat16)
    yt = jax.jit(lambda x, w: F.conv_transpose2d(x, w, None, 2, 1, 1, 2))(x, wt)
    assert yt.dtype == jnp.bfloat16
    want = _torch("conv_transpose2d", f64[0], np.asarray(wt, np.float64), None,
                  dict(stride=2, padding=1, output_padding=1, groups=2))
    tol = 4 * eps * np.sqrt(12) * max(1.0, np.abs(want).max())
    assert np.abs(np.asarray(yt, np.float64) - want).max() <= tol


# ---------------------------------------------------------------------------------------------
# errors: jaxconv raises where torch raises, with a message naming the argument
def _r(*shape):
    return np.random.default_rng(sum(shape)).standard_normal(shape)


ERRORS = {
    # name: (call with module F (jaxconv.functional or torch's), exception, match)
    "groups_not_dividing_channels": (
        lambda f: f.conv2d(_r(1, 4, 5, 5), _r(6, 2, 3, 3), None, 1, 0, 1, 4), ValueError, "groups"),
    "groups_not_dividing_transposed_weight": (
        lambda f: f.conv_transpose2d(_r(1, 4, 5, 5), _r(4, 2, 3, 3), None, 1, 0, 0, 3), ValueError, "groups"),
    "weight_vs_input_channels": (
        lambda f: f.conv2d(_r(1, 5, 5, 5), _r(6, 2, 3, 3), None, 1, 0, 1, 2), ValueError, "channels"),
    "transposed_weight_vs_input_channels": (
        lambda f: f.conv_transpose2d(_r(1, 5, 5, 5), _r(4, 2, 3, 3), None, 1, 0, 0, 2), ValueError, "channels"),
    "input_rank_too_small": (lambda f: f.conv2d(_r(5, 5), _r(6, 5, 3, 3)), ValueError, "input"),
    "input_rank_too_large": (lambda f: f.conv2d(_r(1, 1, 5, 5, 5), _r(6, 1, 3, 3)), ValueError, "input"),
    "transposed_input_rank": (lambda f: f.conv_transpose1d(_r(5,), _r(5, 6, 3)), ValueError, "input"),
    "kernel_larger_than_padded_input": (
        lambda f: f.conv2d(_r(1, 2, 3, 5), _r(6, 2, 4, 3), None, 1, 0), ValueError, "kernel"),
    "dilated_kernel_larger_than_padded_input": (
        lambda f: f.conv2d(_r(1, 2, 5, 5), _r(6, 2, 3, 3), None, 1, 0, 3), ValueError, "kernel"),
    "same_with_stride": (
        lambda f: f.conv2d(_r(1, 2, 5, 5), _r(6, 2, 3, 3), None, 2, "same"), ValueError, "stride"),
    "unknown_padding_string": (
        lambda f: f.conv2d(_r(1, 2, 5, 5), _r(6, 2, 3, 3), None, 1, "full"), ValueError, "padding"),
    "negative_padding": (
        lambda f: f.conv2d(_r(1, 2, 5, 5), _r(6, 2, 3, 3), None, 1, -1), ValueError, "padding"),
    "stride_zero": (lambda f: f.conv2d(_r(1, 2, 5, 5), _r(6, 2, 3, 3), None, 0), ValueError, "stride"),
    "dilation_zero": (lambda f: f.conv1d(_r(1, 2, 5), _r(6, 2, 3), None, 1, 0, 0), ValueError, "dilation"),
    "transposed_stride_zero": (
        lambda f: f.conv_transpose2d(_r(1, 2, 5, 5), _r(2, 6, 3, 3), None, 0), ValueError, "stride"),
    "transposed_dilation_zero": (
        lambda f: f.conv_transpose1d(_r(1, 2, 5), _r(2, 6, 3), None, 1, 0, 0, 1, 0), ValueError, "dilation"),
    "output_padding_not_smaller_than_stride_or_dilation": (
        lambda f: f.conv_transpose2d(_r(1, 2, 5, 5), _r(2, 6, 3, 3), None, 2, 0, 2), ValueError,
        "output_padding"),
    "output_padding_with_dilation": (
        lambda f: f.conv_transpose1d(_r(1, 2, 5), _r(2, 6, 3), None, 1, 0, 2, 1, 2), ValueError,
        "output_padding"),
    "transposed_output_too_small": (
        lambda f: f.conv_transpose1d(_r(1, 2, 2), _r(2, 6, 3), None, 1, 2), ValueError, "output size"),
    "bias_shape": (lambda f: f.conv2d(_r(1, 2, 5, 5), _r(6, 2, 3, 3), _r(5)), ValueError, "bias"),
    "transposed_bias_shape": (
        lambda f: f.conv_transpose2d(_r(1, 2, 5, 5), _r(2, 6, 3, 3), _r(5)), ValueError, "bias"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_where_torch_raises(name):
    call, exc, match = ERRORS[name]

    class TorchF:  # torch.nn.functional on tensors built from the same numpy arrays
        def __getattr__(self, attr):
            fn = getattr(TF, attr)
            return lambda *a: fn(*(t(v) if isinstance(v, np.ndarray) else v for v in a))

    with pytest.raises(Exception):
        call(TorchF())
    with pytest.raises(exc, match=match):
        call(F)
