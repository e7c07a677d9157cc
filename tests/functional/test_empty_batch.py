"""Zero-size batches: every public function on an ``(0, C, ...)`` input against torch.

torch returns an empty result (shape and dtype as for a non-empty batch) wherever it can;
where it raises, jaxconv raises too. Each case runs eagerly and under ``jax.jit``, and the
differentiable ones are differentiated (parameter gradients on an empty batch are zeros).
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jaxconv.functional as JF
from tests._util import assert_close

J, T = "jax", "torch"


class Side:
    """The arguments one framework needs: its functional module, arrays, a dropout key."""

    def __init__(self, kind, seed=0):
        self.kind, self.F = kind, (JF if kind == J else TF)
        self._rng = np.random.default_rng(seed)

    def p(self, *shape):
        """A random float64 parameter, the same values on both sides."""
        a = self._rng.standard_normal(shape)
        return jnp.asarray(a) if self.kind == J else torch.from_numpy(a)

    @property
    def kw(self):
        """``key=`` for jaxconv's dropout; torch draws from its global generator."""
        return {"key": jax.random.key(0)} if self.kind == J else {}


def _conv(n, **kw):
    return lambda s, x: getattr(s.F, f"conv{n}d")(x, s.p(4, 6 // kw.get("groups", 1), *(3,) * n), s.p(4), **kw)


def _convt(n, **kw):
    g = kw.get("groups", 1)
    return lambda s, x: getattr(s.F, f"conv_transpose{n}d")(x, s.p(6, 4 // g, *(3,) * n), s.p(4), **kw)


S = {1: (0, 6, 7), 2: (0, 6, 7, 5), 3: (0, 6, 5, 4, 3)}
CASES = []


def case(name, shape, fn, grad=True, torch_raises=False):
    CASES.append(pytest.param(shape, fn, grad, torch_raises, id=name))


for n in (1, 2, 3):
    case(f"conv{n}d", S[n], _conv(n))
    case(f"conv{n}d-stride-pad", S[n], _conv(n, stride=2, padding=1, dilation=1))
    case(f"conv{n}d-same", S[n], _conv(n, padding="same"))
    case(f"conv{n}d-groups", S[n], _conv(n, groups=2))
    case(f"conv{n}d-depthwise", S[n], lambda s, x, n=n: getattr(s.F, f"conv{n}d")(
        x, s.p(6, 1, *(3,) * n), s.p(6), groups=6))
    case(f"conv{n}d-1x1", S[n], lambda s, x, n=n: getattr(s.F, f"conv{n}d")(x, s.p(4, 6, *(1,) * n), s.p(4)))
    case(f"conv_transpose{n}d", S[n], _convt(n))
    case(f"conv_transpose{n}d-stride", S[n], _convt(n, stride=2, padding=1, output_padding=1))
    case(f"conv_transpose{n}d-groups", S[n], _convt(n, stride=2, groups=2))
    for mode in ("constant", "reflect", "replicate", "circular"):
        case(f"pad{n}d-{mode}", S[n], lambda s, x, mode=mode, n=n: s.F.pad(x, (1, 2) * n, mode=mode))
    case(f"max_pool{n}d", S[n], lambda s, x, n=n: getattr(s.F, f"max_pool{n}d")(x, 2, 1, 1, ceil_mode=True))
    case(f"max_pool{n}d-indices", S[n], lambda s, x, n=n: getattr(s.F, f"max_pool{n}d")(
        x, 2, return_indices=True), grad=False)
    case(f"avg_pool{n}d", S[n], lambda s, x, n=n: getattr(s.F, f"avg_pool{n}d")(x, 3, 2, 1, count_include_pad=False))
    case(f"lp_pool{n}d", S[n], lambda s, x, n=n: getattr(s.F, f"lp_pool{n}d")(x, 2.0, 2))
    case(f"adaptive_avg_pool{n}d", S[n], lambda s, x, n=n: getattr(s.F, f"adaptive_avg_pool{n}d")(x, 2))
    case(f"adaptive_max_pool{n}d", S[n], lambda s, x, n=n: getattr(s.F, f"adaptive_max_pool{n}d")(x, 3))
    case(f"adaptive_max_pool{n}d-indices", S[n], lambda s, x, n=n: getattr(s.F, f"adaptive_max_pool{n}d")(
        x, 3, return_indices=True), grad=False)
    case(f"dropout{n}d-train", S[n], lambda s, x, n=n: getattr(s.F, f"dropout{n}d")(x, 0.5, **s.kw), grad=False)
    case(f"dropout{n}d-eval", S[n], lambda s, x, n=n: getattr(s.F, f"dropout{n}d")(x, 0.5, False))
    case(f"batch_norm{n}d-train", S[n], lambda s, x: s.F.batch_norm(
        x, s.p(6), s.p(6) ** 2, s.p(6), s.p(6), True))
    case(f"batch_norm{n}d-eval", S[n], lambda s, x: s.F.batch_norm(
        x, s.p(6), s.p(6) ** 2, s.p(6), s.p(6), False))
    case(f"instance_norm{n}d", S[n], lambda s, x: s.F.instance_norm(x))
    case(f"instance_norm{n}d-eval", S[n], lambda s, x: s.F.instance_norm(
        x, s.p(6), s.p(6) ** 2, use_input_stats=False))
    case(f"instance_norm{n}d-affine", S[n], lambda s, x: s.F.instance_norm(x, weight=s.p(6), bias=s.p(6)),
         torch_raises=True)
    case(f"group_norm{n}d", S[n], lambda s, x: s.F.group_norm(x, 3, s.p(6), s.p(6)))
    for mode, dims in (("nearest", (1, 2, 3)), ("nearest-exact", (1, 2, 3)), ("linear", (1,)),
                       ("bilinear", (2,)), ("bicubic", (2,)), ("trilinear", (3,)), ("area", (1, 2, 3))):
        if n not in dims:
            continue
        case(f"interpolate{n}d-{mode}-size", S[n], lambda s, x, mode=mode: s.F.interpolate(x, size=4, mode=mode))
        case(f"interpolate{n}d-{mode}-scale", S[n], lambda s, x, mode=mode: s.F.interpolate(
            x, scale_factor=1.5, mode=mode))
        if mode in ("linear", "bilinear", "bicubic", "trilinear"):
            case(f"interpolate{n}d-{mode}-align", S[n], lambda s, x, mode=mode: s.F.interpolate(
                x, scale_factor=2, mode=mode, align_corners=True))
    if n == 2:
        case("interpolate2d-bilinear-antialias", S[2], lambda s, x: s.F.interpolate(
            x, size=(3, 2), mode="bilinear", antialias=True))

case("batch_norm-train-nostats", S[2], lambda s, x: s.F.batch_norm(x, None, None, s.p(6), s.p(6), True))
case("batch_norm-2d-input", (0, 6), lambda s, x: s.F.batch_norm(x, s.p(6), s.p(6) ** 2, None, None, True))
case("instance_norm-weight-only", S[2], lambda s, x: s.F.instance_norm(x, weight=s.p(6)), torch_raises=True)
case("instance_norm-bias-only", S[2], lambda s, x: s.F.instance_norm(x, bias=s.p(6)), torch_raises=True)
case("instance_norm-eval-affine", S[2], lambda s, x: s.F.instance_norm(
    x, s.p(6), s.p(6) ** 2, s.p(6), s.p(6), use_input_stats=False), torch_raises=True)
case("instance_norm-stats", S[2], lambda s, x: s.F.instance_norm(x, s.p(6), s.p(6) ** 2))
case("group_norm-2d", (0, 6), lambda s, x: s.F.group_norm(x, 2))
case("group_norm-no-affine", S[1], lambda s, x: s.F.group_norm(x, 6))
case("layer_norm", S[2], lambda s, x: s.F.layer_norm(x, (7, 5), s.p(7, 5), s.p(7, 5)))
case("layer_norm-all", S[1], lambda s, x: s.F.layer_norm(x, (0, 6, 7)))
case("rms_norm", S[2], lambda s, x: s.F.rms_norm(x, (5,), s.p(5)))
case("local_response_norm", S[2], lambda s, x: s.F.local_response_norm(x, 3))
case("linear", (0, 6), lambda s, x: s.F.linear(x, s.p(4, 6), s.p(4)))
case("linear-3d", (0, 3, 6), lambda s, x: s.F.linear(x, s.p(4, 6), s.p(4)))
case("linear-no-bias", (0, 6), lambda s, x: s.F.linear(x, s.p(4, 6)))
case("flatten", S[2], lambda s, x: s.F.flatten(x, 1) if s.kind == J else torch.flatten(x, 1))
case("flatten-all", S[2], lambda s, x: s.F.flatten(x) if s.kind == J else torch.flatten(x))
case("unflatten", S[1], lambda s, x: s.F.unflatten(x, 1, (2, 3)) if s.kind == J else torch.unflatten(x, 1, (2, 3)))
case("unflatten-batch", S[1], lambda s, x: s.F.unflatten(x, 0, (0, 5)) if s.kind == J else torch.unflatten(
    x, 0, (0, 5)))
case("dropout-train", S[2], lambda s, x: s.F.dropout(x, 0.3, **s.kw), grad=False)
case("dropout-p1", S[2], lambda s, x: s.F.dropout(x, 1.0, **s.kw))
case("dropout-eval", S[2], lambda s, x: s.F.dropout(x, 0.3, False))
case("scaled_dot_product_attention", S[2], lambda s, x: s.F.scaled_dot_product_attention(x, x, x))
case("scaled_dot_product_attention-causal", S[2],
     lambda s, x: s.F.scaled_dot_product_attention(x, x, x, is_causal=True))
case("multi_head_attention_forward", (5, 0, 4), lambda s, x: s.F.multi_head_attention_forward(
    x, x, x, 4, 2, s.p(12, 4), s.p(12), None, None, False, 0.0, s.p(4, 4), s.p(4),
    training=False, need_weights=False)[0])


def _stochastic_depth(s, x, p, mode, training):
    if s.kind == J:
        return s.F.stochastic_depth(x, p, mode, training, **(s.kw if training else {}))
    from tests._zoo import torchvision_models

    torchvision_models()
    from torchvision.ops import stochastic_depth

    return stochastic_depth(x, p, mode, training)


case("stochastic_depth-row-train", S[2], lambda s, x: _stochastic_depth(s, x, 0.3, "row", True), grad=False)
case("stochastic_depth-batch-eval", S[2], lambda s, x: _stochastic_depth(s, x, 0.3, "batch", False))
# torch's pixel_unshuffle returns an empty input unchanged, (0, 2, 4, 6) here, and so the
# backward of both fails on an empty batch. jaxconv gives the shape of a non-empty batch.
case("pixel_shuffle", (0, 8, 3, 2), lambda s, x: s.F.pixel_shuffle(x, 2), grad=J)
case("pixel_unshuffle", (0, 2, 4, 6), lambda s, x: s.F.pixel_unshuffle(x, 2), grad=J)
TORCH_EMPTY_SHAPE_BUG = {"pixel_unshuffle"}
case("channel_shuffle", (0, 6, 3), lambda s, x: s.F.channel_shuffle(x, 3), grad=False)
case("unfold", (0, 3, 5, 4), lambda s, x: s.F.unfold(x, 2, padding=1, stride=2))
case("fold", (0, 12, 6), lambda s, x: s.F.fold(x, (3, 4), 2))
case("prelu", S[2], lambda s, x: s.F.prelu(x, s.p(6)))
case("prelu-shared", S[2], lambda s, x: s.F.prelu(x, s.p(1)))
for name, kw in (("relu", {}), ("relu6", {}), ("hardtanh", {"min_val": -0.5, "max_val": 2.0}),
                 ("leaky_relu", {"negative_slope": 0.2}), ("elu", {"alpha": 0.7}), ("selu", {}),
                 ("celu", {"alpha": 1.3}), ("gelu", {}), ("gelu", {"approximate": "tanh"}),
                 ("silu", {}), ("mish", {}), ("hardswish", {}), ("hardsigmoid", {}),
                 ("sigmoid", {}), ("tanh", {}), ("softplus", {"beta": 2.0, "threshold": 5.0}),
                 ("softmax", {"dim": 1}), ("softmax", {"dim": 0}), ("softmin", {"dim": -1}),
                 ("log_softmax", {"dim": 1})):
    case(f"{name}-{'-'.join(map(str, kw.values())) or 'default'}", S[2],
         lambda s, x, name=name, kw=kw: getattr(s.F, name)(x, **kw))



def _recurrent(name, gates, cell=False):
    """ATen's recurrences (``torch.lstm`` and the rest; the cells with ``(0, 6)`` inputs)."""
    def f(s, x):
        ns = JF if s.kind == J else torch
        zeros = (lambda *k: jnp.zeros(k)) if s.kind == J else (lambda *k: torch.zeros(k, dtype=torch.float64))
        weights = [s.p(gates * 4, 6), s.p(gates * 4, 4), s.p(gates * 4), s.p(gates * 4)]
        h = zeros(*(0, 4) if cell else (1, 0, 4))
        hx = (h, zeros(*h.shape)) if name.startswith("lstm") else h
        if cell:
            return getattr(ns, name)(x, hx, *weights)
        return getattr(ns, name)(x, hx, weights, True, 1, 0.0, False, False, False)[0]
    return f


for _name, _gates in (("lstm", 4), ("gru", 3), ("rnn_tanh", 1), ("rnn_relu", 1)):
    case(_name, (5, 0, 6), _recurrent(_name, _gates))
    case(f"{_name}_cell", (0, 6), _recurrent(f"{_name}_cell", _gates, cell=True))


def _index(s, *shape):
    """Class indices (int64) of one framework."""
    return jnp.zeros(shape, jnp.int64) if s.kind == J else torch.zeros(shape, dtype=torch.long)


# losses: 'mean' of an empty batch is NaN (values: tests/functional/test_loss_edges.py)
L2 = (0, 5)
case("cross_entropy", L2, lambda s, x: s.F.cross_entropy(x, _index(s, 0), s.p(5), label_smoothing=0.1))
case("cross_entropy-probabilities", L2, lambda s, x: s.F.cross_entropy(x, s.p(0, 5)))
case("nll_loss-kdim", (0, 5, 3), lambda s, x: s.F.nll_loss(x, _index(s, 0, 3), s.p(5)))
case("binary_cross_entropy", L2, lambda s, x: s.F.binary_cross_entropy(x, s.p(0, 5), s.p(5)))
case("binary_cross_entropy_with_logits", L2, lambda s, x: s.F.binary_cross_entropy_with_logits(
    x, s.p(0, 5), pos_weight=s.p(5)))
case("kl_div", L2, lambda s, x: s.F.kl_div(x, s.p(0, 5), reduction="batchmean"))
for name in ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "poisson_nll_loss", "soft_margin_loss",
             "multilabel_soft_margin_loss", "hinge_embedding_loss"):
    case(name, L2, lambda s, x, name=name: getattr(s.F, name)(x, s.p(0, 5)))
case("gaussian_nll_loss", L2, lambda s, x: s.F.gaussian_nll_loss(x, s.p(0, 5), s.p(0, 5)))
case("multilabel_margin_loss", L2, lambda s, x: s.F.multilabel_margin_loss(x, _index(s, 0, 5)))
case("multi_margin_loss", L2, lambda s, x: s.F.multi_margin_loss(x, _index(s, 0)))
case("margin_ranking_loss", L2, lambda s, x: s.F.margin_ranking_loss(x, s.p(0, 5), s.p(0, 5)))
case("cosine_embedding_loss", L2, lambda s, x: s.F.cosine_embedding_loss(x, s.p(0, 5), s.p(0)))
case("pairwise_distance", L2, lambda s, x: s.F.pairwise_distance(x, s.p(0, 5)))
for name in ("triplet_margin_loss", "triplet_margin_with_distance_loss"):
    case(name, L2, lambda s, x, name=name: getattr(s.F, name)(x, s.p(0, 5), s.p(0, 5)))
case("ctc_loss", (5, 0, 4), lambda s, x: s.F.ctc_loss(x, _index(s, 0, 3), _index(s, 0), _index(s, 0)),
     torch_raises=True)

PUBLIC = {n for n in dir(JF) if not n.startswith("_") and callable(getattr(JF, n))}
HELPERS = {"conv_output_size", "conv_transpose_output_size", "pool_output_size", "lowering"}


def test_every_public_function_has_a_case():
    heads = {p.id.split("-")[0] for p in CASES}
    covered = heads | {re.sub(r"\d+d$", "", h) for h in heads}
    missing = sorted(PUBLIC - HELPERS - covered)
    assert not missing, f"no empty-batch case for {missing}"


def _leaves(out):
    return out if isinstance(out, tuple) else (out,)


def _torch(fn, shape):
    x = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    return fn(Side(T), x), x


@pytest.mark.parametrize("shape,fn,grad,torch_raises", CASES)
def test_empty_batch_matches_torch(request, shape, fn, grad, torch_raises):
    if torch_raises:  # torch refuses this case: jaxconv refuses it too, eagerly and traced
        with pytest.raises(Exception):
            _torch(fn, shape)
        with pytest.raises(ValueError, match="empty batch"):
            fn(Side(J), jnp.zeros(shape))
        with pytest.raises(ValueError, match="empty batch"):
            jax.jit(lambda x: fn(Side(J), x))(jnp.zeros(shape))
        return
    t_out, t_x = _torch(fn, shape)
    if request.node.callspec.id in TORCH_EMPTY_SHAPE_BUG:  # a batch of 1, then N = 0
        t_out = fn(Side(T), torch.zeros((1,) + shape[1:], dtype=torch.float64))
        t_out = t_out.new_zeros((0,) + t_out.shape[1:])
    x = jnp.zeros(shape)
    for out in (fn(Side(J), x), jax.jit(lambda x: fn(Side(J), x))(x)):
        if isinstance(out, tuple) and not isinstance(t_out, tuple):
            out = out[0]  # jaxconv returns the running statistics that torch updates in place
        for ours, theirs in zip(_leaves(out), _leaves(t_out), strict=True):
            assert ours.shape == tuple(theirs.shape)
            assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch.")
    if not grad:
        return
    # d(sum(out)) / d(input): an empty gradient (parameter gradients: the test below).
    g = jax.jit(jax.grad(lambda x: jnp.sum(_leaves(fn(Side(J), x))[0])))(x)
    assert g.shape == shape
    if grad != J:
        _leaves(t_out)[0].sum().backward()
        assert tuple(t_x.grad.shape) == shape


@pytest.mark.parametrize("n", [1, 2, 3])
def test_empty_batch_parameter_gradients_are_zero(n):
    """A conv + batch norm + linear on an empty batch: every parameter gradient is 0, as in torch."""
    rng = np.random.default_rng(n)
    w, b = rng.standard_normal((4, 6, *(3,) * n)), rng.standard_normal(4)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    lw = rng.standard_normal((2, 4))

    def net(F, x, w, b, gamma, beta, lw):
        y = getattr(F, f"conv{n}d")(x, w, b, padding=1)
        y = F.batch_norm(y, None, None, gamma, beta, True)
        return F.linear(y.mean(tuple(range(2, n + 2))), lw).sum()

    args = [w, b, gamma, beta, lw]
    x = np.zeros(S[n])
    ours = jax.jit(jax.grad(lambda *a: net(JF, *a), argnums=tuple(range(6))))(x, *args)
    targs = [torch.from_numpy(a).requires_grad_() for a in [x, *args]]
    net(TF, *targs).backward()
    for o, ta in zip(ours, targs):
        assert_close(o, ta.grad.numpy())


def test_batch_norm_empty_batch_keeps_running_stats():
    """On an empty batch torch leaves the running statistics as they are (no NaN update)."""
    rng = np.random.default_rng(0)
    rm, rv = rng.standard_normal(6), rng.uniform(0.5, 2, 6)
    for shape in [(0, 6), (0, 6, 4), (3, 6, 0, 2)]:
        ta, tb = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
        TF.batch_norm(torch.zeros(shape, dtype=torch.float64), ta, tb, training=True)
        y, m, v = jax.jit(lambda x: JF.batch_norm(x, jnp.asarray(rm), jnp.asarray(rv), training=True))(
            jnp.zeros(shape))
        assert y.shape == shape
        np.testing.assert_array_equal(m, ta.numpy())
        np.testing.assert_array_equal(v, tb.numpy())


def test_instance_norm_empty_running_stats():
    """torch's instance_norm: N=0 makes the running stats NaN (a mean over no instances);
    an empty spatial extent leaves them unchanged. jaxconv does the same."""
    rng = np.random.default_rng(1)
    rm, rv = rng.standard_normal(6), rng.uniform(0.5, 2, 6)
    for shape in [(0, 6, 4), (2, 6, 0)]:
        ta, tb = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
        TF.instance_norm(torch.zeros(shape, dtype=torch.float64), ta, tb)
        y, m, v = JF.instance_norm(jnp.zeros(shape), jnp.asarray(rm), jnp.asarray(rv))
        assert y.shape == shape
        np.testing.assert_array_equal(m, ta.numpy())
        np.testing.assert_array_equal(v, tb.numpy())


def test_single_value_per_channel_still_raises():
    """torch raises for exactly one value per channel (N=1, no spatial), not for zero."""
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        JF.batch_norm(jnp.zeros((1, 3)), None, None, training=True)
    with pytest.raises(ValueError, match="Expected more than 1 spatial element"):
        JF.instance_norm(jnp.zeros((2, 3, 1)))
    assert JF.batch_norm(jnp.zeros((1, 0, 2)), None, None, training=True).shape == (1, 0, 2)
    assert JF.instance_norm(jnp.zeros((2, 3, 0))).shape == (2, 3, 0)
