"""The recurrent functions (torch.lstm / gru / rnn_tanh / rnn_relu and the cells) against torch
in float64: outputs, final states and gradients for the input, the initial states and every
weight, over the argument space; jit, vmap, dropout, low precision, errors."""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxconv.functional as F
from tests._util import assert_close, randn, t

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
SEQ, BATCH, IN, HID = 5, 3, 4, 6


def _params(rng, mode, layers, dirs, bias, proj):
    """torch's flat weights: per layer and direction w_ih, w_hh[, b_ih, b_hh][, w_hr]."""
    g, out = GATES[mode] * HID, proj or HID
    params = []
    for layer in range(layers):
        for _ in range(dirs):
            params += [randn(rng, g, IN if layer == 0 else out * dirs) * 0.5, randn(rng, g, out) * 0.5]
            params += [randn(rng, g) * 0.5, randn(rng, g) * 0.5] if bias else []
            params += [randn(rng, proj, HID) * 0.5] if proj else []
    return params


def _case(rng, mode, layers=1, bidirectional=False, batch_first=False, bias=True, proj=0):
    dirs = 2 if bidirectional else 1
    x = randn(rng, *((BATCH, SEQ, IN) if batch_first else (SEQ, BATCH, IN)))
    hx = [randn(rng, layers * dirs, BATCH, proj or HID)]
    if mode == "lstm":
        hx.append(randn(rng, layers * dirs, BATCH, HID))
    flags = (bias, layers, 0.0, False, bidirectional, batch_first)
    return x, hx, _params(rng, mode, layers, dirs, bias, proj), flags


def _check(rng, mode, x, hx, params, flags):
    """Outputs and every gradient (input, states, weights) against torch's autograd."""
    def ours(x, hx, params):
        return getattr(F, mode)(x, tuple(hx) if mode == "lstm" else hx[0], params, *flags)

    @jax.jit
    def run(x, hx, params, cots):
        out, vjp = jax.vjp(ours, x, hx, params)
        return out, vjp(cots)

    cots = tuple(randn(rng, *o.shape) for o in jax.eval_shape(ours, x, hx, params))
    out, (gx, ghx, gp) = run(x, hx, params, cots)
    tx, thx, tp = t(x).requires_grad_(), [t(h).requires_grad_() for h in hx], [t(p).requires_grad_() for p in params]
    theirs = getattr(torch, mode)(tx, tuple(thx) if mode == "lstm" else thx[0], tp, *flags)
    sum((o * t(c)).sum() for o, c in zip(theirs, cots)).backward()
    for a, b in zip(out, theirs):
        assert_close(a, b.detach().numpy(), reduction=HID * SEQ)
    for a, b in zip([gx, *ghx, *gp], [tx, *thx, *tp]):
        assert_close(a, b.grad.numpy(), reduction=HID * SEQ)


# one configuration per mode by default, each flag set somewhere; the sweep covers them all
CONFIGS = {
    "lstm": {"layers": 2, "bidirectional": True, "batch_first": True, "proj": 4},
    "gru": {"layers": 2, "bidirectional": True, "bias": False},
    "rnn_tanh": {"batch_first": True},
    "rnn_relu": {"layers": 2},
}


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh", pytest.param("rnn_relu", marks=pytest.mark.slow)])
def test_sequence_matches_torch(rng, mode):
    _check(rng, mode, *_case(rng, mode, **CONFIGS[mode]))


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(GATES))
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_sequence_sweep(rng, mode, layers, bidirectional, batch_first, bias):
    _check(rng, mode, *_case(rng, mode, layers, bidirectional, batch_first, bias))
    if mode == "lstm":
        _check(rng, mode, *_case(rng, mode, layers, bidirectional, batch_first, bias, proj=2))


@pytest.mark.parametrize("mode,bias", [("lstm", True), ("gru", True), ("rnn_tanh", False), ("rnn_relu", True)])
def test_cells_match_torch(rng, mode, bias):
    g = GATES[mode] * HID
    x, h = randn(rng, BATCH, IN), randn(rng, BATCH, HID)
    hx = (h, randn(rng, BATCH, HID)) if mode == "lstm" else h
    w = [randn(rng, g, IN), randn(rng, g, HID)] + ([randn(rng, g), randn(rng, g)] if bias else [])
    fn = getattr(F, f"{mode}_cell")
    cot = jax.tree.map(lambda o: randn(rng, *o.shape), jax.eval_shape(fn, x, hx, *w))

    @jax.jit
    def run(x, hx, w, cot):
        out, vjp = jax.vjp(lambda x, hx, w: fn(x, hx, *w), x, hx, w)
        return out, vjp(cot)

    out, grads = run(x, hx, w, cot)
    targs = [t(x).requires_grad_(), jax.tree.map(lambda a: t(a).requires_grad_(), hx),
             [t(a).requires_grad_() for a in w]]
    theirs = getattr(torch, f"{mode}_cell")(targs[0], targs[1], *targs[2])
    loss = sum((o * t(c)).sum() for o, c in zip(jax.tree.leaves(theirs), jax.tree.leaves(cot)))
    loss.backward()
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(theirs)):
        assert_close(a, b.detach().numpy(), reduction=HID)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(targs)):
        assert_close(a, b.grad.numpy(), reduction=HID)


def test_jit_and_vmap(rng):
    x, hx, params, flags = _case(rng, "lstm", bidirectional=True)
    f = jax.jit(lambda x, hx, p: F.lstm(x, hx, p, *flags))
    # vmap over independent batches of sequences: each the call on its own
    xs = np.stack([x, randn(rng, *x.shape)])
    hs = tuple(np.stack([h, randn(rng, *h.shape)]) for h in hx)
    mapped = jax.jit(jax.vmap(lambda x, h, c: F.lstm(x, (h, c), params, *flags)))(xs, *hs)
    for k in range(2):
        single = f(xs[k], tuple(h[k] for h in hs), params)
        for a, b in zip(mapped, single):
            assert_close(a[k], b)


@pytest.mark.slow
def test_dropout_between_layers(rng):
    x, hx, params, (bias, layers, _, _, bi, bf) = _case(rng, "gru", 2)
    gru = jax.jit(F.gru, static_argnums=(3, 4, 5, 6, 7, 8))
    # p = 1 zeroes layer 0's output for layer 1: deterministic, so torch can check it
    ours = gru(x, hx[0], params, bias, layers, 1.0, True, bi, bf, key=jax.random.key(0))
    theirs = torch.gru(t(x), t(hx[0]), [t(p) for p in params], bias, layers, 1.0, True, bi, bf)
    for a, b in zip(ours, theirs):
        assert_close(a, b.numpy(), reduction=HID)
    args = (x, hx[0], params, bias, layers, 0.5, True, bi, bf)
    a, b = gru(*args, key=jax.random.key(1)), gru(*args, key=jax.random.key(2))
    assert not np.allclose(a[0], b[0])
    np.testing.assert_array_equal(gru(*args, key=jax.random.key(1))[0], a[0])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, pytest.param(jnp.float16, marks=pytest.mark.slow)])
def test_reduced_precision_keeps_dtype_and_accuracy(rng, dtype):
    x, hx, params, flags = _case(rng, "lstm", 2, True)
    lstm = jax.jit(lambda x, hx, p: F.lstm(x, hx, p, *flags))
    cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    out = lstm(cast(x), tuple(map(cast, hx)), list(map(cast, params)))
    exact = lstm(*(jax.tree.map(lambda a: np.asarray(cast(a), np.float64), (x, tuple(hx), params))))
    for a, b in zip(out, exact):
        assert a.dtype == dtype
        # one rounding of the state per step: a few ulps, compounded over the sequence
        assert np.max(np.abs(np.asarray(a, np.float64) - b)) < 8 * SEQ * float(jnp.finfo(dtype).eps)


def test_bad_arguments_are_named(rng):
    x, hx, params, flags = _case(rng, "lstm")
    with pytest.raises(ValueError, match=r"expected a 3-D input \(seq_len, batch, input_size\)"):
        F.lstm(x[0], tuple(hx), params, *flags)
    with pytest.raises(ValueError, match="input.size\\(-1\\) must be equal to input_size. Expected \\(4,\\), got 5"):
        F.lstm(np.concatenate([x, x[..., :1]], -1), tuple(hx), params, *flags)
    with pytest.raises(ValueError, match="sequence length to be larger than 0"):
        F.lstm(x[:0], tuple(hx), params, *flags)
    with pytest.raises(ValueError, match="expected 4 params .* got 3 params"):
        F.lstm(x, tuple(hx), params[:3], *flags)
    with pytest.raises(ValueError, match=r"Expected hidden\[1\] size \(1, 3, 6\), got \[1, 2, 6\]"):
        F.lstm(x, (hx[0], hx[1][:, :2]), params, *flags)
    with pytest.raises(ValueError, match=r"expected hx of 2 array\(s\), got 1"):
        F.lstm(x, (hx[0],), params, *flags)
    with pytest.raises(TypeError, match=r"input \(float64\) and params\[1\] \(float32\) must have the same dtype"):
        F.lstm(x, tuple(hx), [params[0], params[1].astype(np.float32)] + params[2:], *flags)
    with pytest.raises(ValueError, match="input has inconsistent input_size: got 5 expected 4"):
        F.gru_cell(randn(rng, 2, 5), randn(rng, 2, HID), randn(rng, 3 * HID, 4), randn(rng, 3 * HID, HID))
    with pytest.raises(ValueError, match="hidden0 has inconsistent hidden_size: got 5, expected 6"):
        F.rnn_tanh_cell(randn(rng, 2, 4), randn(rng, 2, 5), randn(rng, HID, 4), randn(rng, HID, HID))
    with pytest.raises(ValueError, match="weight_hh must be 2-D with a first dim of 3 \\* hidden_size"):
        F.gru_cell(randn(rng, 2, 4), randn(rng, 2, HID), randn(rng, 3 * HID, 4), randn(rng, 14, HID))
    gx, ghx, gparams, _ = _case(rng, "gru", 2)
    with pytest.raises(ValueError, match="dropout=0.5 between layers in training needs a key"):
        F.gru(gx, ghx[0], gparams, True, 2, 0.5, True, False, False)
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        F.lstm(x, tuple(hx), params, True, 1, 1.5, True, False, False, key=jax.random.key(0))
    with pytest.raises(ValueError, match="lstm_cell expects two hidden states"):
        F.lstm_cell(randn(rng, 2, 4), randn(rng, 2, HID), randn(rng, 4 * HID, 4), randn(rng, 4 * HID, HID))
    # torch refuses these too (with less direct messages)
    with pytest.raises(RuntimeError):
        torch.gru_cell(t(randn(rng, 2, 5)), t(randn(rng, 2, HID)), t(randn(rng, 3 * HID, 4)), t(randn(rng, 3 * HID, HID)))
    with pytest.raises(RuntimeError, match="larger than 0"):
        torch.nn.LSTM(4, HID)(torch.zeros(0, 2, 4))


def _aten_params(name):
    schema = next(s for s in torch._C._jit_get_schemas_for_operator(f"aten::{name}")
                  if s.overload_name in ("", "input"))
    return [a.name for a in schema.arguments]


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell",
                                  "rnn_tanh_cell", "rnn_relu_cell"])
def test_signatures_are_atens(name):
    fn = getattr(F, name)
    ours = [p.name for p in inspect.signature(fn).parameters.values() if p.kind != p.KEYWORD_ONLY]
    assert ours == _aten_params(name)
    assert f"torch.{name}" in fn.__doc__ and "**Arguments" in fn.__doc__
