"""RNN, LSTM, GRU and their cells against torch 2.13 in float64: outputs, final states and
gradients for the input, h_0/c_0 and every weight (by torch's names); unbatched inputs,
batch_first, proj_size, bias=False, relu; state_dict names and round trips, initialisation,
repr, train/eval dropout, nnx.jit, and the errors torch raises."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxconv.nn as nn
from equivalence import load_state_dict, state_dict
from tests._util import assert_close, randn, t

IN, HID, SEQ, BATCH = 4, 5, 4, 3


def _pair(rng, name, *args, **kw):
    """A float64 torch module with random weights and its jaxconv twin loaded from it."""
    tm = getattr(torch.nn, name)(*args, **kw).double()
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(t(randn(rng, *p.shape)) * 0.5)
    jm = getattr(nn, name)(*args, **kw)
    load_state_dict(jm, tm.state_dict(), dtype=jnp.float64)
    return tm, jm


def _check(rng, tm, jm, x, hx):
    """Output, final states and the gradients of every input and weight against torch."""
    graphdef, params, rest = nnx.split(jm, nnx.Param, ...)

    def ours(params, x, hx):
        return nnx.merge(graphdef, params, rest)(x, hx)

    cots = jax.tree.map(lambda o: randn(rng, *o.shape), jax.eval_shape(ours, params, x, hx))

    @jax.jit
    def run(params, x, hx, cots):
        out, vjp = jax.vjp(ours, params, x, hx)
        return out, vjp(cots)

    out, (g_params, gx, ghx) = run(params, x, hx, cots)
    tx = t(x).requires_grad_()
    thx = None if hx is None else jax.tree.map(lambda h: t(h).requires_grad_(), hx)
    theirs = tm(tx, thx)
    sum((o * t(c)).sum() for o, c in zip(jax.tree.leaves(theirs), jax.tree.leaves(cots))).backward()
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(theirs)):
        assert_close(a, b.detach().numpy(), reduction=HID * SEQ)
    assert_close(gx, tx.grad.numpy(), reduction=HID * SEQ)
    for a, b in zip(jax.tree.leaves(ghx), jax.tree.leaves(thx)):
        assert_close(a, b.grad.numpy(), reduction=HID * SEQ)
    grads = state_dict(nnx.merge(graphdef, g_params, rest))
    assert list(grads) == [n for n, _ in tm.named_parameters()]
    for name, p in tm.named_parameters():
        assert_close(grads[name], p.grad.numpy(), reduction=HID * SEQ)


def _inputs(rng, tm, batched=True, hx=True):
    dirs, layers = (2 if tm.bidirectional else 1), tm.num_layers
    shape = ((BATCH, SEQ, IN) if tm.batch_first else (SEQ, BATCH, IN)) if batched else (SEQ, IN)
    state = (layers * dirs, BATCH) if batched else (layers * dirs,)
    h = randn(rng, *state, getattr(tm, "proj_size", 0) or HID)
    if isinstance(tm, torch.nn.LSTM):
        h = (h, randn(rng, *state, HID))
    return randn(rng, *shape), h if hx else None


# by default one case per class, each flag set somewhere; the sweep covers them all
CASES = {
    "lstm 2-layer bidirectional batch_first proj_size": (
        "LSTM", dict(num_layers=2, bidirectional=True, batch_first=True, proj_size=3)),
    "gru 2-layer no bias": ("GRU", dict(num_layers=2, bias=False)),
    "rnn relu bidirectional": ("RNN", dict(nonlinearity="relu", bidirectional=True)),
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.startswith("gru") else c
                                  for c in CASES])
def test_modules_match_torch(rng, case):
    name, kw = CASES[case]
    tm, jm = _pair(rng, name, IN, HID, **kw)
    _check(rng, tm, jm, *_inputs(rng, tm))


@pytest.mark.parametrize("name,kw", [("LSTM", {"bidirectional": True}), ("GRU", {"batch_first": True})])
def test_unbatched_and_default_state_match_torch(rng, name, kw):
    tm, jm = _pair(rng, name, IN, HID, **kw)
    x, hx = _inputs(rng, tm, batched=False)
    jitted = nnx.jit(lambda m, x, hx: m(x, hx))
    for h in (hx, None):
        for a, b in zip(jax.tree.leaves(jitted(jm, x, h)), jax.tree.leaves(tm(t(x), None if h is None else jax.tree.map(t, h)))):
            assert_close(a, b.detach().numpy(), reduction=HID * SEQ)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("batched", [False, True])
def test_module_sweep(rng, name, num_layers, bidirectional, batch_first, bias, batched):
    kws = [{}] + ([{"proj_size": 2}] if name == "LSTM" else [{"nonlinearity": "relu"}] if name == "RNN" else [])
    for extra in kws:
        tm, jm = _pair(rng, name, IN, HID, num_layers=num_layers, bidirectional=bidirectional,
                       batch_first=batch_first, bias=bias, **extra)
        _check(rng, tm, jm, *_inputs(rng, tm, batched=batched))


@pytest.mark.parametrize("name,kw", [("LSTMCell", {}), ("GRUCell", {"bias": False}),
                                     ("RNNCell", {"nonlinearity": "relu"})])
def test_cells_match_torch(rng, name, kw):
    tm, jm = _pair(rng, name, IN, HID, **kw)
    x, h = randn(rng, BATCH, IN), randn(rng, BATCH, HID)
    hx = (h, randn(rng, BATCH, HID)) if name == "LSTMCell" else h
    @nnx.jit
    def step(m, x, hx, x1):  # batched with a state, and unbatched from zeros
        loss = lambda m: jnp.sum(jnp.square(jax.tree.leaves(m(x, hx))[0]))  # noqa: E731
        return m(x, hx), m(x1), nnx.grad(loss)(m)

    ours, unbatched, grads = step(jm, x, hx, x[0])
    for got, args in ((ours, (x, hx)), (unbatched, (x[0], None))):
        theirs = tm(t(args[0]), None if args[1] is None else jax.tree.map(t, args[1]))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(theirs)):
            assert_close(a, b.detach().numpy(), reduction=HID)
    loss = (jax.tree.leaves(tm(t(x), jax.tree.map(t, hx)))[0] ** 2).sum()
    loss.backward()
    for name, p in tm.named_parameters():
        assert_close(getattr(grads, name)[...], p.grad.numpy(), reduction=HID)


@pytest.mark.parametrize("name,args,kw", [
    ("LSTM", (IN, HID), dict(num_layers=2, bidirectional=True, proj_size=3, bias=False)),
    ("GRU", (IN, HID), dict(num_layers=3, batch_first=True, dropout=0.25)),
    ("RNN", (IN, HID, 2, "relu"), {}),
    ("LSTMCell", (IN, HID), {}), ("GRUCell", (IN, HID), {"bias": False}),
    ("RNNCell", (IN, HID), {"nonlinearity": "relu"})])
def test_parameters_names_repr_and_init_are_torchs(name, args, kw):
    tm, jm = getattr(torch.nn, name)(*args, **kw), getattr(nn, name)(*args, **kw, rngs=nnx.Rngs(0))
    ours, theirs = state_dict(jm), tm.state_dict()
    assert list(ours) == list(theirs)
    assert [v.shape for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]
    assert all(v.dtype == np.float32 for v in ours.values())
    assert repr(jm) == repr(tm)
    bound = 1 / math.sqrt(HID)  # every parameter ~ U(-1/sqrt(hidden), 1/sqrt(hidden)), as torch
    everything = np.concatenate([v.ravel() for v in ours.values()])
    assert np.all(np.abs(everything) <= bound) and np.max(np.abs(everything)) > 0.9 * bound
    assert abs(np.mean(everything)) < 0.2 * bound and np.std(everything) > 0.45 * bound
    # the state_dict round-trips: jaxconv -> torch (strict) -> jaxconv, bit for bit
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in ours.items()}, strict=True)
    again = getattr(nn, name)(*args, **kw, rngs=nnx.Rngs(1))
    load_state_dict(again, tm.state_dict())
    for a, b in zip(state_dict(again).values(), ours.values()):
        np.testing.assert_array_equal(a, b)
    assert all(not np.array_equal(a, b) for a, b in zip(state_dict(getattr(nn, name)(*args, **kw, rngs=nnx.Rngs(1))).values(), ours.values()))


def test_dropout_only_in_training(rng):
    tm, jm = _pair(rng, "LSTM", IN, HID, num_layers=2, dropout=0.5)
    x, _ = _inputs(rng, tm, hx=False)
    run = nnx.jit(lambda m, x: m(x)[0])
    jm.eval()
    tm.eval()
    assert_close(run(jm, x), tm(t(x))[0].detach().numpy(), reduction=HID * SEQ)
    jm.train()
    assert jm.training
    a, b = run(jm, x), run(jm, x)  # a fresh mask per call, as torch
    assert not np.allclose(a, b)
    assert not np.allclose(a, run(jm.eval(), x))
    # p = 1: every mask drops everything, so torch's train mode is deterministic and comparable
    tm1, jm1 = _pair(rng, "GRU", IN, HID, num_layers=2, dropout=1.0)
    assert_close(run(jm1.train(), x), tm1.train()(t(x))[0].detach().numpy(), reduction=HID * SEQ)


def test_constructor_errors_match_torch():
    bad = [
        (dict(proj_size=5), ValueError, "proj_size has to be smaller than hidden_size, got proj_size=5"),
        (dict(proj_size=-1), ValueError, "proj_size should be a positive integer or zero"),
        (dict(dropout=1.5), ValueError, "dropout should be a number in range \\[0, 1\\].*dropout=1.5"),
        (dict(dropout=True), ValueError, "dropout should be a number in range"),
        (dict(num_layers=0), ValueError, "num_layers must be greater than zero, got num_layers=0"),
        (dict(bias=1), TypeError, "bias should be of type bool, got: int"),
        (dict(batch_first="yes"), TypeError, "batch_first should be of type bool"),
    ]
    for kw, err, msg in bad:
        with pytest.raises(err, match=msg):
            nn.LSTM(IN, HID, **kw)
        with pytest.raises(err):
            torch.nn.LSTM(IN, HID, **kw)
    with pytest.raises(TypeError, match="hidden_size should be of type int, got: float"):
        nn.GRU(IN, 5.0)
    with pytest.raises(ValueError, match="input_size must be greater than zero, got input_size=0"):
        nn.RNN(0, HID)
    for cls in (nn.RNN, nn.RNNCell):
        with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'. Select from 'tanh' or 'relu'"):
            cls(IN, HID, nonlinearity="gelu")
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        torch.nn.RNN(IN, HID, nonlinearity="gelu")
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        nn.LSTM(IN, HID, dropout=0.5)


def test_call_errors_match_torch(rng):
    lstm, tlstm = nn.LSTM(IN, HID), torch.nn.LSTM(IN, HID)
    gru, tgru = nn.GRU(IN, HID), torch.nn.GRU(IN, HID)
    x = randn(rng, SEQ, BATCH, IN, dtype=np.float32)
    h = np.zeros((1, BATCH, HID), np.float32)
    cases = [
        (lambda m: m(x[..., :3]), "input.size\\(-1\\) must be equal to input_size. Expected 4, got 3"),
        (lambda m: m(x[None]), "Expected input to be 2D or 3D, got 4D instead"),
        (lambda m: m(x, (h[:, :2], h)), "Expected hidden\\[0\\] size \\(1, 3, 5\\), got \\[1, 2, 5\\]"),
        (lambda m: m(x, (h, h[..., :4])), "Expected hidden\\[1\\] size \\(1, 3, 5\\), got \\[1, 3, 4\\]"),
        (lambda m: m(x, (h[0], h[0])), "For batched 3-D input, hx (and cx )?should also be 3-D"),
        (lambda m: m(x[:, 0], (h, h)), "For unbatched 2-D input, hx (and cx )?should also be 2-D"),
    ]
    for call, msg in cases:
        with pytest.raises(ValueError, match=msg):
            call(lstm)
        with pytest.raises((RuntimeError, ValueError), match=msg):
            call(lambda *a: tlstm(*(jax.tree.map(t, a))))
    with pytest.raises(ValueError, match="Expected hidden size \\(1, 3, 5\\), got \\[1, 2, 5\\]"):
        gru(x, h[:, :2])
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        tgru(t(x), t(h[:, :2]))
    with pytest.raises(TypeError, match="hx must be a tuple \\(h_0, c_0\\)"):
        lstm(x, h)
    with pytest.raises(TypeError, match="must have the same dtype"):
        lstm(x.astype(np.float64))
    packed = torch.nn.utils.rnn.pack_padded_sequence(t(x), [SEQ] * BATCH)
    with pytest.raises(TypeError, match="LSTM: input must be an array, got PackedSequence. Packed sequences are not supported"):
        lstm(packed)
    cell = nn.LSTMCell(IN, HID)
    with pytest.raises(ValueError, match="LSTMCell: Expected input to be 1D or 2D, got 3D"):
        cell(x)
    with pytest.raises(ValueError, match="LSTMCell: Expected input to be 1D or 2D"):
        torch.nn.LSTMCell(IN, HID)(t(x))
    with pytest.raises(TypeError, match="hx must be a tuple \\(h, c\\)"):
        cell(x[0], h[0])
    with pytest.raises(ValueError, match="GRUCell: Expected hidden to be 1D or 2D, got 3D"):
        nn.GRUCell(IN, HID)(x[0], h)
    with pytest.raises(ValueError, match="Input batch size 3 doesn't match hidden0 batch size"):
        nn.GRUCell(IN, HID)(x[0], h[0, :2])
    with pytest.raises(RuntimeError, match="Input batch size 3 doesn't match hidden0 batch size"):
        torch.nn.GRUCell(IN, HID)(t(x[0]), t(h[0, :2]))
