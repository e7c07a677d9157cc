"""The faster lowerings in ``jaxconv.functional._lowering`` against torch, like the default one.

Each case checks (a) which lowering ``conv.py`` picks, so a grid row really exercises the
lowering it names, (b) the output in float64 against torch, under ``jax.jit``, and (c) the
gradients with respect to input, weight and bias against torch's autograd.
"""
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxconv.functional as F
from jaxconv.functional import _args, _lowering

from .._util import assert_close, randn, t

# (spatial dims, batch (None = unbatched), C_in, multiplier, kernel, stride, padding, dilation, spatial size)
DEPTHWISE = [
    (2, 2, 4, 1, 3, 1, 1, 1, (7, 9)),
    (2, 2, 3, 2, 3, 2, 1, 1, (8, 7)),            # channel multiplier 2, stride 2
    (2, None, 5, 1, (3, 2), (1, 2), (2, 0), 2, (9, 8)),  # unbatched, rectangular, dilated
    (2, 1, 2, 3, 5, 2, "same", 1, (6, 6)),       # 'same' is stride 1 only: stride overwritten below
    (1, 3, 6, 1, 4, 3, 2, 1, (13,)),
    (3, 1, 3, 1, 3, 1, 1, 2, (5, 6, 5)),
    (2, 2, 4, 1, 3, 1, "valid", 1, (5, 6)),
    (2, 2, 3, 1, 3, 2, 1, 1, (9, 8)),            # stride 2, odd size: a row no tap reads
    (2, 1, 2, 1, 3, (3, 2), (0, 2), (1, 2), (10, 9)),  # stride 3 > dilated kernel span in H
    (1, 2, 3, 1, 5, 2, 4, 3, (11,)),             # padding beyond the kernel, dilation 3 and stride 2
]


def _conv_fn(n):
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n], {1: torch.nn.functional.conv1d,
                                                      2: torch.nn.functional.conv2d,
                                                      3: torch.nn.functional.conv3d}[n]


def _check_conv(rng, n, batch, cin, cout, groups, kernel, stride, padding, dilation, size, expect):
    kernel = (kernel,) * n if isinstance(kernel, int) else kernel
    if padding == "same":
        stride = 1
    x = randn(rng, *(() if batch is None else (batch,)), cin, *size)
    w = randn(rng, cout, cin // groups, *kernel)
    b = randn(rng, cout)
    jf, tf = _conv_fn(n)
    st = (stride,) * n if isinstance(stride, int) else stride
    dl = (dilation,) * n if isinstance(dilation, int) else dilation
    pads = _args.conv_padding(padding, kernel, st, dl)
    xb_shape = x.shape if batch is not None else (1, *x.shape)
    assert _lowering.pick_conv(xb_shape, w.shape, pads, groups) == expect

    def f(x, w, b):
        return jf(x, w, b, stride, padding, dilation, groups)
    _check_against_torch(rng, f, lambda x, w, b: tf(x, w, b, stride, padding, dilation, groups),
                         (x, w, b), cout, (cin // groups) * int(np.prod(kernel)), cout * int(np.prod(kernel)))


def _check_against_torch(rng, f, torch_f, args, channels, reduction_out, reduction_x):
    """``f(x, w, b)`` under jit and its VJP (random cotangent) against ``torch_f`` and autograd:
    output, then gradients of input (``reduction_x``), weight and bias (the output's size per
    channel: its size over ``channels``)."""
    targs = [t(a).requires_grad_() for a in args]
    ref = torch_f(*targs)
    assert_close(jax.jit(f)(*args), ref.detach().numpy(), reduction=reduction_out)
    ct = randn(rng, *ref.shape)
    ref.backward(t(ct))
    gx, gw, gb = jax.vjp(jax.jit(f), *args)[1](ct)
    per_channel = int(np.prod(ref.shape)) // channels
    assert_close(gx, targs[0].grad.numpy(), reduction=reduction_x)
    assert_close(gw, targs[1].grad.numpy(), reduction=per_channel)
    assert_close(gb, targs[2].grad.numpy(), reduction=per_channel)


@pytest.mark.parametrize("n,batch,cin,mult,kernel,stride,padding,dilation,size", DEPTHWISE)
def test_depthwise_matches_torch(rng, n, batch, cin, mult, kernel, stride, padding, dilation, size):
    _check_conv(rng, n, batch, cin, cin * mult, cin, kernel, stride, padding, dilation, size, "depthwise")


@pytest.mark.parametrize("n,batch,cin,cout,stride,size", [
    (2, 2, 5, 7, 1, (6, 5)),
    (2, 3, 4, 6, 2, (7, 8)),        # odd size with stride 2
    (2, None, 3, 4, (1, 3), (5, 7)),  # unbatched, per-dimension stride
    (1, 2, 6, 3, 2, (9,)),
    (3, 1, 3, 5, 2, (4, 5, 3)),
    (2, 2, 3, 4, 1, (24, 23)),      # >= _POINTWISE_BATCHED_MIN pixels: one product per sample
])
def test_pointwise_matches_torch(rng, n, batch, cin, cout, stride, size):
    _check_conv(rng, n, batch, cin, cout, 1, 1, stride, 0, 1, size, "pointwise")


@pytest.mark.parametrize("groups,cin,cout,kernel,padding", [
    (1, 1, 3, 3, 1),     # one input channel, groups 1: a dense conv, not depthwise
    (2, 4, 4, 3, 1),     # grouped but not depthwise
    (1, 4, 5, 1, 1),     # 1x1 with padding: the default lowering
    (3, 3, 6, 8, 3),     # depthwise with more taps than the shift lowering takes (8x8)
])
def test_cases_left_to_the_default_lowering(rng, groups, cin, cout, kernel, padding):
    """XLA's conv: channels-last, with the faster weight gradient when groups == 1."""
    expect = "nhwc" if groups == 1 else "default"
    _check_conv(rng, 2, 2, cin, cout, groups, kernel, 1, padding, 1, (9, 10), expect)


def test_depthwise_second_order_gradient_matches_torch(rng):
    # the transpose rules are themselves differentiable (e.g. for gradient penalties)
    x, w = randn(rng, 2, 3, 7, 6), randn(rng, 3, 1, 3, 3)

    def loss(f, x, w):
        return (f(x, w, None, 2, 1, 1, 3) ** 2).sum()
    gx = jax.jit(jax.grad(lambda x, w: (jax.grad(lambda x: loss(F.conv2d, x, w))(x) ** 2).sum(), 1))(x, w)
    tx, tw = t(x).requires_grad_(), t(w).requires_grad_()
    (g,) = torch.autograd.grad(loss(torch.nn.functional.conv2d, tx, tw), tx, create_graph=True)
    (g ** 2).sum().backward()
    assert_close(gx, tw.grad.numpy(), reduction=50)


@pytest.mark.parametrize("cin,kernel", [
    (3, (3, 3)),     # fewer than _TAPS_MIN_CIN channels: XLA's own weight gradient
    (3, (4, 2)),
    (16, (3, 5)),    # odd kernel: XLA's own weight gradient
    (16, (4, 3)),    # an even kernel dimension: per-tap products
])
def test_dense_conv_weight_gradient_paths(rng, cin, kernel):
    assert (cin < _lowering._TAPS_MIN_CIN) == (cin == 3)
    x, w = randn(rng, 2, cin, 11, 10), randn(rng, 5, cin, *kernel)
    gx, gw = jax.jit(jax.grad(lambda x, w: (F.conv2d(x, w, None, 2, 1) ** 3).sum(), (0, 1)))(x, w)
    tx, tw = t(x).requires_grad_(), t(w).requires_grad_()
    (torch.nn.functional.conv2d(tx, tw, None, 2, 1) ** 3).sum().backward()
    assert_close(gx, tx.grad.numpy(), reduction=200)
    assert_close(gw, tw.grad.numpy(), reduction=200)


def test_depthwise_float32_keeps_dtype(rng):
    x = randn(rng, 2, 6, 8, 8, dtype=np.float32)
    w = randn(rng, 6, 1, 3, 3, dtype=np.float32)
    out = jax.jit(lambda x, w: F.conv2d(x, w, None, 1, 1, 1, 6))(x, w)
    assert out.dtype == jnp.float32
    ref = torch.nn.functional.conv2d(t(x), t(w), None, 1, 1, 1, 6)
    assert_close(out, ref.numpy(), dtype=np.float32, reduction=9)


# (spatial dims, batch, C_in, C_out, kernel, stride, padding, output_padding, size)
PHASE = [
    (2, 2, 5, 4, 4, 2, 1, 0, (5, 6)),   # the DCGAN layer
    (2, 2, 3, 4, 3, 2, 1, 1, (6, 5)),   # kernel not a multiple of the stride, output_padding
    (2, None, 3, 2, (5, 2), (3, 2), (2, 0), (2, 1), (4, 5)),  # unbatched, rectangular
    (2, 1, 2, 3, 1, 2, 0, 1, (3, 4)),   # 1x1 kernel smaller than the stride
    (2, 2, 2, 3, 4, 2, 3, 0, (6, 7)),   # padding beyond kernel-1: crop past the first phase row
    (2, 1, 2, 3, 2, 3, 0, 0, (4, 4)),   # kernel smaller than the stride (gaps in the output)
    (1, 2, 3, 4, 4, 2, 1, 1, (7,)),
    (3, 1, 2, 3, 3, 2, 1, 1, (3, 4, 3)),
    (2, 2, 3, 2, 4, (2, 1), 1, 0, (5, 6)),  # stride 1 in one dimension only
]


@pytest.mark.parametrize("n,batch,cin,cout,kernel,stride,padding,output_padding,size", PHASE)
def test_phase_transposed_matches_torch(rng, n, batch, cin, cout, kernel, stride, padding,
                                        output_padding, size):
    kernel = (kernel,) * n if isinstance(kernel, int) else kernel
    st = (stride,) * n if isinstance(stride, int) else stride
    assert _lowering.pick_conv_transpose(st, (1,) * n, 1) == "phase"
    x = randn(rng, *(() if batch is None else (batch,)), cin, *size)
    w = randn(rng, cin, cout, *kernel)
    b = randn(rng, cout)
    jf = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
    tf = {1: torch.nn.functional.conv_transpose1d, 2: torch.nn.functional.conv_transpose2d,
          3: torch.nn.functional.conv_transpose3d}[n]

    def f(x, w, b):
        return jf(x, w, b, stride, padding, output_padding)
    _check_against_torch(rng, f, lambda x, w, b: tf(x, w, b, stride, padding, output_padding),
                         (x, w, b), cout, cin * int(np.prod(kernel)), cout * int(np.prod(kernel)))


@pytest.mark.parametrize("stride,dilation,groups,expect", [
    ((1, 1), (1, 1), 1, "default"),   # nothing to gain at stride 1
    ((2, 2), (2, 1), 1, "default"),   # dilated: default lowering
    ((2, 2), (1, 1), 2, "default"),   # grouped: default lowering
    ((2, 2), (1, 1), 1, "phase"),
])
def test_transposed_lowering_choice_and_result(rng, stride, dilation, groups, expect):
    assert _lowering.pick_conv_transpose(stride, dilation, groups) == expect
    x = randn(rng, 2, 4, 5, 6)
    w = randn(rng, 4, 3, 3, 3)
    op = (1, 0) if stride[0] > 1 else 0
    out = jax.jit(lambda x, w: F.conv_transpose2d(x, w, None, stride, 1, op, groups, dilation))(x, w)
    ref = torch.nn.functional.conv_transpose2d(t(x), t(w), None, stride, 1, op, groups, dilation)
    assert_close(out, ref.numpy(), reduction=4 * 9)


def test_phase_float32_keeps_dtype(rng):
    x = randn(rng, 2, 8, 4, 4, dtype=np.float32)
    w = randn(rng, 8, 4, 4, 4, dtype=np.float32)
    out = jax.jit(lambda x, w: F.conv_transpose2d(x, w, None, 2, 1))(x, w)
    assert out.dtype == jnp.float32
    ref = torch.nn.functional.conv_transpose2d(t(x), t(w), None, 2, 1)
    assert_close(out, ref.numpy(), dtype=np.float32, reduction=8 * 16)


@pytest.mark.parametrize("fn,stride,wshape", [("conv2d", 2, (4, 3, 3, 3)), ("conv_transpose2d", 2, (3, 4, 4, 4))])
def test_forward_mode_matches_torch(rng, fn, stride, wshape):
    # groups == 1 convs carry a custom JVP (fast weight gradient): forward mode must still be exact
    x, w = randn(rng, 2, 3, 7, 6), randn(rng, *wshape)
    dx, dw = randn(rng, *x.shape), randn(rng, *w.shape)
    jf, tf = getattr(F, fn), getattr(torch.nn.functional, fn)
    _, tangent = jax.jit(lambda p, q: jax.jvp(lambda a, b: jf(a, b, None, stride, 1), (x, w), (p, q)))(dx, dw)
    _, ref = torch.func.jvp(lambda a, b: tf(a, b, None, stride, 1), (t(x), t(w)), (t(dx), t(dw)))
    assert_close(tangent, ref.numpy(), reduction=2 * 3 * 16)


def _conv_primitives(f, *args):
    """The names of the primitives in ``f``'s jaxpr (outer level and nested), traced afresh."""
    names = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            names.add(eqn.primitive.name)
            for sub in jax.core.jaxprs_in_params(eqn.params):
                walk(sub)
    walk(jax.make_jaxpr(lambda *a: f(*a))(*args).jaxpr)
    return names


def test_lowering_modes_choose_per_backend_with_the_same_values(monkeypatch):
    """``auto`` takes the measured lowerings on CPU and XLA's conv on other backends; ``xla``
    and ``jaxconv`` force either; the values agree (float64)."""
    g = np.random.default_rng(0)
    x = jnp.asarray(g.standard_normal((2, 6, 9, 8)))
    w = jnp.asarray(g.standard_normal((6, 1, 3, 3)))

    def f(x, w):
        return F.conv2d(x, w, None, 1, 1, 1, 6)

    auto = _conv_primitives(f, x, w)
    with F.lowering("xla"):
        xla = _conv_primitives(f, x, w)
        y_xla = jax.jit(f)(x, w)
    assert "jaxconv_depthwise" in auto and "conv_general_dilated" not in auto
    assert "jaxconv_depthwise" not in xla and "conv_general_dilated" in xla
    np.testing.assert_allclose(np.asarray(y_xla), np.asarray(jax.jit(f)(x, w)), rtol=0, atol=1e-12)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert "jaxconv_depthwise" not in _conv_primitives(f, x, w)
    with F.lowering("jaxconv"):
        assert "jaxconv_depthwise" in _conv_primitives(f, x, w)
    with pytest.raises(ValueError, match=r"lowering: mode must be one of .* got mode='cudnn'"):
        with F.lowering("cudnn"):
            pass


def _dot_and_conv_dtypes(f, *args):
    """``(operand dtypes, preferred_element_type)`` of each ``dot_general`` and
    ``conv_general_dilated`` in ``f``'s jaxpr (nested ones included), by primitive name."""
    found = {"dot_general": [], "conv_general_dilated": []}

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in found:
                found[eqn.primitive.name].append(
                    (tuple(str(v.aval.dtype) for v in eqn.invars), str(eqn.params["preferred_element_type"])))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)
    walk(jax.make_jaxpr(f)(*args).jaxpr)
    return found


def test_bfloat16_conv_runs_as_bfloat16_products_on_cpu(rng, monkeypatch):
    """A bfloat16 conv with >= 128 input channels is, on CPU, bfloat16 products accumulated in
    float32 (no conv, no float32 operands); ``lowering("xla")`` and other backends keep XLA's own
    bfloat16 conv; float16 and fewer channels keep the conv. Values against float64 torch:
    tests/functional/test_low_precision.py (``TAPS``)."""
    x = jnp.asarray(randn(rng, 2, 128, 6, 5), jnp.bfloat16)
    w = jnp.asarray(randn(rng, 4, 128, 3, 3), jnp.bfloat16)
    pads = ((1, 1), (1, 1))

    def f(x, w):
        return F.conv2d(x, w, None, 2, 1)
    assert _lowering.pick_conv(x.shape, w.shape, pads, 1, x.dtype) == "taps"
    taps = _dot_and_conv_dtypes(f, x, w)
    assert not taps["conv_general_dilated"]
    assert taps["dot_general"] == [(("bfloat16", "bfloat16"), "float32")] * 9
    with F.lowering("xla"):
        xla = _dot_and_conv_dtypes(f, x, w)
        y_xla = jax.jit(f)(x, w)
    assert not xla["dot_general"]
    assert xla["conv_general_dilated"] == [(("bfloat16", "bfloat16"), "float32")]
    y = jax.jit(f)(x, w)
    assert y.dtype == jnp.bfloat16
    # the same float32 sums in another order, rounded once: at most one bfloat16 ulp apart
    np.testing.assert_allclose(np.asarray(y, np.float64), np.asarray(y_xla, np.float64), rtol=2.0 ** -7)
    assert _lowering.pick_conv(x.shape, w.shape, pads, 1, jnp.dtype(jnp.float16)) == "nhwc"
    assert _lowering.pick_conv((2, 64, 6, 5), (4, 64, 3, 3), pads, 1, x.dtype) == "nhwc"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert _lowering.pick_conv(x.shape, w.shape, pads, 1, x.dtype) == "default"
