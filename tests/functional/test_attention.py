"""scaled_dot_product_attention against torch 2.13: masks, causal, scale, GQA, dropout, errors."""
import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jaxconv.functional as F
from tests._util import assert_close, check_grad, randn, t

MASK = np.random.default_rng(11).standard_normal((3, 5)) > -0.3
MASK[1] = False  # a fully masked row: torch gives zeros, not NaN


def _attn(module, **kw):
    return lambda q, k, v, *m: module.scaled_dot_product_attention(q, k, v, *m, **kw)


@pytest.mark.parametrize("case", ["plain", "scale", "causal", "causal-wide", "causal-tall", "bool-mask",
                                  "float-mask", "gqa", "gqa-causal", "unbatched", "broadcast-batch"])
def test_sdpa_matches_torch(rng, case):
    q, k, v = randn(rng, 2, 4, 3, 6), randn(rng, 2, 4, 5, 6), randn(rng, 2, 4, 5, 7)
    kw, masks = {}, []
    if case == "scale":
        kw = {"scale": 0.37}
    elif case == "causal":
        k, v, kw = randn(rng, 2, 4, 3, 6), randn(rng, 2, 4, 3, 7), {"is_causal": True}
    elif case in ("causal-wide", "causal-tall"):  # L != S: top-left aligned
        if case == "causal-tall":
            q = randn(rng, 2, 4, 7, 6)
        kw = {"is_causal": True}
    elif case == "bool-mask":
        masks = [MASK]
    elif case == "float-mask":
        m = randn(rng, 4, 1, 5)
        m[1, 0, 2] = -np.inf
        masks = [m]
    elif case in ("gqa", "gqa-causal"):
        k, v = k[:, :2], v[:, :1]
        kw = {"enable_gqa": True, **({"is_causal": True} if case == "gqa-causal" else {})}
    elif case == "unbatched":
        q, k, v = q[0, 0], k[0, 0], v[0, 0]
    elif case == "broadcast-batch":
        k, v = k[:1], v[:, :1]
    if masks and masks[0].dtype == bool:  # a bool mask takes no gradient
        mask = masks[0]
        check_grad(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask, **kw),
                   lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, t(mask), **kw), [q, k, v], rng, reduction=6)
    else:
        check_grad(_attn(F, **kw), _attn(TF, **kw), [q, k, v, *masks], rng, reduction=6)


def test_sdpa_fully_masked_rows_are_zero(rng):
    q, k, v = randn(rng, 3, 4), randn(rng, 5, 4), randn(rng, 5, 2)
    ours = F.scaled_dot_product_attention(q, k, v, MASK)
    theirs = TF.scaled_dot_product_attention(t(q), t(k), t(v), t(MASK))
    assert np.all(np.asarray(ours)[1] == 0) and not np.isnan(np.asarray(ours)).any()
    assert_close(ours, theirs.numpy(), reduction=5)
    grads = jax.grad(lambda q: F.scaled_dot_product_attention(q, k, v, MASK).sum())(q)
    assert np.all(np.asarray(grads)[1] == 0)


def test_sdpa_float32_runs_at_full_precision(rng):
    q, k, v = (randn(rng, 2, 16, 64, dtype=np.float32) for _ in range(3))
    y = jax.jit(F.scaled_dot_product_attention)(q, k, v)
    assert y.dtype == np.float32
    exact = TF.scaled_dot_product_attention(t(q).double(), t(k).double(), t(v).double()).numpy()
    assert_close(y, exact, np.float32, reduction=64)


def test_sdpa_dropout_drops_attention_weights(rng):
    q, k, v = randn(rng, 2, 3, 4), randn(rng, 2, 5, 4), randn(rng, 2, 5, 6)
    key = jax.random.key(0)
    y = F.scaled_dot_product_attention(q, k, v, dropout_p=0.4, dropout_key=key)
    weights = jax.nn.softmax(q @ np.swapaxes(k, -1, -2) / 2.0, axis=-1)
    expected = F.dropout(weights, 0.4, key=key) @ v
    assert_close(y, expected)
    assert not np.allclose(y, F.scaled_dot_product_attention(q, k, v))
    assert np.all(np.asarray(F.scaled_dot_product_attention(q, k, v, dropout_p=1.0, dropout_key=key)) == 0)
    torch_p1 = TF.scaled_dot_product_attention(t(q), t(k), t(v), dropout_p=1.0)
    assert torch.all(torch_p1 == 0)


@pytest.mark.parametrize("case,exc,match", [
    ("causal+mask", ValueError, "an explicit attn_mask should not be set when is_causal=True"),
    ("gqa-heads", ValueError, r"number of heads in key \(3\) and value \(3\) must divide the number of heads in query \(4\)"),
    ("heads", ValueError, "the batch dims of query, key and value must broadcast"),
    ("int-mask", TypeError, "expected attn_mask dtype to be bool or float"),
    ("dtypes", TypeError, r"input \(float64\) and key \(float32\) must have the same dtype"),
    ("embed", ValueError, r"expected query \(..., L, E\), key \(..., S, E\)"),
    ("value-length", ValueError, r"expected query \(..., L, E\)"),
    ("mask-shape", ValueError, r"attn_mask of shape \(4, 5\) does not broadcast"),
])
def test_sdpa_errors_where_torch_raises(rng, case, exc, match):
    q, k, v = randn(rng, 2, 4, 3, 6), randn(rng, 2, 4, 5, 6), randn(rng, 2, 4, 5, 7)
    kw, mask = {}, None
    if case == "causal+mask":
        kw, mask = {"is_causal": True}, MASK
    elif case == "gqa-heads":
        k, v, kw = k[:, :3], v[:, :3], {"enable_gqa": True}
    elif case == "heads":
        k, v = k[:, :2], v[:, :2]
    elif case == "int-mask":
        mask = np.zeros((3, 5), np.int64)
    elif case == "dtypes":
        k = k.astype(np.float32)
    elif case == "embed":
        k = k[..., :4]
    elif case == "value-length":
        v = v[:, :, :4]
    elif case == "mask-shape":
        mask = np.zeros((4, 5))
    args = (q, k, v) if mask is None else (q, k, v, mask)
    with pytest.raises(exc, match=match):
        F.scaled_dot_product_attention(*args, **kw)
    with pytest.raises(RuntimeError):
        TF.scaled_dot_product_attention(*map(t, args), **kw)


def test_sdpa_dropout_needs_a_key(rng):
    q = randn(rng, 3, 4)
    with pytest.raises(ValueError, match="dropout_p=0.5 > 0 needs a dropout_key"):
        F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    assert F.scaled_dot_product_attention(q, q, q, dropout_p=0.5, dropout_key=jax.random.key(1)).shape == (3, 4)
