"""MultiheadAttention against torch 2.13: packed and separate projections, bias_kv, zero attn,
masks, batch_first, need_weights / average_attn_weights, gradients, state_dict, init, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxconv.nn as nn
from equivalence import load_state_dict, state_dict
from tests._util import assert_close, randn, t

E, H, L, S, N = 12, 3, 4, 5, 2


def _pair(rng, **kw):
    """A torch MHA (float64, random non-zero biases) and its jaxconv twin with its weights."""
    tm = torch.nn.MultiheadAttention(E, H, **kw).double()
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(t(randn(rng, *p.shape)) * 0.3)
    kw.pop("device", None)
    jm = nn.MultiheadAttention(E, H, **kw)
    load_state_dict(jm, tm.state_dict(), dtype=jnp.float64)
    return tm.eval(), jm.eval()


def _inputs(rng, kw, batched=True):
    kdim, vdim = kw.get("kdim") or E, kw.get("vdim") or E
    shape = (lambda n, d: (N, n, d) if kw.get("batch_first") else (n, N, d)) if batched \
        else (lambda n, d: (n, d))
    return randn(rng, *shape(L, E)), randn(rng, *shape(S, kdim)), randn(rng, *shape(S, vdim))


CONFIGS = {
    "packed": {}, "no-bias": {"bias": False}, "bias-kv": {"add_bias_kv": True},
    "zero-attn": {"add_zero_attn": True}, "separate": {"kdim": 7, "vdim": 5},
    "batch-first": {"batch_first": True},
    "all": {"add_bias_kv": True, "add_zero_attn": True, "kdim": 7, "batch_first": True},
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_forward_matches_torch(rng, config, need_weights, average):
    kw = dict(CONFIGS[config])
    tm, jm = _pair(rng, **kw)
    q, k, v = _inputs(rng, kw)
    theirs, tw = tm(t(q), t(k), t(v), need_weights=need_weights, average_attn_weights=average)
    ours, w = jm(q, k, v, need_weights=need_weights, average_attn_weights=average)
    assert_close(ours, theirs.detach().numpy(), reduction=E)
    assert (w is None) == (tw is None)
    if tw is not None:
        assert_close(w, tw.detach().numpy(), reduction=E)


@pytest.mark.parametrize("mask", ["bool-attn", "float-attn", "3d-attn", "padding", "both", "causal"])
@pytest.mark.parametrize("need_weights", [True, False])
def test_masks_match_torch(rng, mask, need_weights):
    kw = {"add_bias_kv": True} if mask == "both" else {}
    tm, jm = _pair(rng, **kw)
    q, k, v = _inputs(rng, kw)
    args = {}
    if mask == "bool-attn":
        m = rng.standard_normal((L, S)) > 0.4
        m[:, 0] = False
        args["attn_mask"] = m
    elif mask == "float-attn":
        args["attn_mask"] = randn(rng, L, S)
    elif mask == "3d-attn":
        args["attn_mask"] = randn(rng, N * H, L, S)
    elif mask in ("padding", "both"):
        m = np.zeros((N, S), bool)
        m[0, -2:] = m[1, 1] = True
        args["key_padding_mask"] = m
        if mask == "both":
            args["attn_mask"] = randn(rng, L, S)
    else:
        k, v = k[:L], v[:L]
        args = {"attn_mask": np.triu(np.ones((L, L), bool), 1), "is_causal": True}
    targs = {n: t(a) if isinstance(a, np.ndarray) else a for n, a in args.items()}
    theirs, tw = tm(t(q), t(k), t(v), need_weights=need_weights, **targs)
    ours, w = jm(q, k, v, need_weights=need_weights, **args)
    assert_close(ours, theirs.detach().numpy(), reduction=E)
    if tw is not None:
        assert_close(w, tw.detach().numpy(), reduction=E)


def test_unbatched_matches_torch(rng):
    tm, jm = _pair(rng, add_bias_kv=True)
    q, k, v = _inputs(rng, {}, batched=False)
    theirs, tw = tm(t(q), t(k), t(v))
    ours, w = jm(q, k, v)
    assert ours.shape == (L, E) and w.shape == (L, S + 1)
    assert_close(ours, theirs.detach().numpy(), reduction=E)
    assert_close(w, tw.detach().numpy(), reduction=E)


@pytest.mark.parametrize("batch_first", [False, True])
def test_gradients_match_torch(rng, batch_first):
    kw = {"batch_first": batch_first, "add_bias_kv": True}
    tm, jm = _pair(rng, **kw)
    q, k, v = _inputs(rng, kw)
    g = randn(rng, *q.shape)
    from flax import nnx
    graphdef, params, rest = nnx.split(jm, nnx.Param, ...)

    def loss(params, q, k, v):
        out, _ = nnx.merge(graphdef, params, rest)(q, k, v)
        return jnp.sum(out * g)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(params, q, k, v)
    tq, tk, tv = (t(a).requires_grad_() for a in (q, k, v))
    (tm(tq, tk, tv)[0] * t(g)).sum().backward()
    for ours, theirs in zip(grads[1:], (tq, tk, tv)):
        assert_close(ours, theirs.grad.numpy(), reduction=E * S)
    flat = dict(state_dict(nnx.merge(graphdef, grads[0], rest)))
    for name, p in tm.named_parameters():
        assert_close(flat[name], p.grad.numpy(), reduction=E * S)


def test_state_dict_and_init_match_torch():
    import jaxconv
    torch.manual_seed(0)
    jaxconv.manual_seed(0)
    for kw in ({}, {"kdim": 7, "vdim": 5, "add_bias_kv": True}, {"bias": False}):
        tm, jm = torch.nn.MultiheadAttention(E, H, **kw), nn.MultiheadAttention(E, H, **kw)
        ours, theirs = state_dict(jm), tm.state_dict()
        assert list(ours) == list(theirs)
        for name, p in theirs.items():
            assert ours[name].shape == tuple(p.shape) and ours[name].dtype == np.float32
            if name.endswith("bias") and "bias_" not in name:
                assert not ours[name].any()         # torch zeroes both projection biases
            elif p.numel() >= 100:      # same distribution: compare the spread, not the draws
                assert abs(ours[name].std() - p.std().item()) < 0.2 * p.std().item()
            else:                       # bias_k / bias_v: 12 normal draws, xavier std 0.28
                assert 0 < ours[name].std() < 1


def test_dropout_in_training():
    jm = nn.MultiheadAttention(E, H, dropout=0.5, rngs=jax.random.key(0))
    q = np.random.default_rng(0).standard_normal((L, N, E)).astype(np.float32)
    a, _ = jm(q, q, q)
    b, _ = jm(q, q, q)
    assert not np.allclose(a, b)                    # a fresh mask per call
    jm.eval()
    c, w = jm(q, q, q, average_attn_weights=False)
    d, _ = jm(q, q, q)
    np.testing.assert_array_equal(c, d)
    # torch returns the weights after dropout: each is dropped (0) or scaled by 1 / (1 - p)
    jm.train()
    _, dropped = jm(q, q, q, average_attn_weights=False)
    dropped, w = np.asarray(dropped), np.asarray(w)
    assert (dropped == 0).any() and (dropped != 0).any()
    np.testing.assert_allclose(dropped[dropped != 0], 2 * w[dropped != 0], rtol=1e-6)
    _, mean = jm(q, q, q)       # heads averaged after dropout
    assert not np.allclose(np.asarray(mean).sum(-1), 1)


def test_errors_as_torch():
    with pytest.raises(AssertionError):
        torch.nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.MultiheadAttention(10, 3)
    tm, jm = torch.nn.MultiheadAttention(E, H), nn.MultiheadAttention(E, H)
    x = np.zeros((L, N, E + 1), np.float32)
    with pytest.raises(AssertionError):
        tm(t(x), t(x), t(x))
    with pytest.raises(ValueError, match="expecting embedding dimension"):
        jm(x, x, x)
    y = np.zeros((L, N, E), np.float32)
    with pytest.raises(RuntimeError):
        tm(t(y), t(y), t(y), is_causal=True)
    with pytest.raises(ValueError, match="need attn_mask"):
        jm(y, y, y, is_causal=True)
