"""``scaled_dot_product_attention`` with torch 2.13's semantics.

The math, as torch's reference (``_scaled_dot_product_attention_math``) computes it::

    bias   = 0, -inf where the causal mask or a bool attn_mask is False, + a float attn_mask
    weight = softmax((q * sqrt(scale)) @ (k * sqrt(scale))^T + bias, dim=-1)
    out    = dropout(weight, dropout_p) @ v

with ``scale = 1 / sqrt(E)`` by default, the causal mask ``tril(ones(L, S))`` aligned at
the top left (query ``i`` sees keys ``0..i`` even when ``L != S``), and torch's "safe"
softmax: a row whose scores are all ``-inf`` (fully masked) gives zeros, not NaN.
float16/bfloat16 attention is computed in float32 and rounded once, as torch's CPU kernel
accumulates (within one ulp of the output's magnitude of it).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._autocast import cast
from . import _args
from ._sharding import explicit_spec, reshape
from .conv import DEFAULT_PRECISION
from .linear import dropout, product

FN = "scaled_dot_product_attention"


def _check(query, key, value, attn_mask, is_causal, enable_gqa):
    _args.check_same_dtype(FN, query, key=key, value=value)
    if min(query.ndim, key.ndim, value.ndim) < 2:
        raise ValueError(f"{FN}: query, key and value must be at least 2-D, got shapes "
                         f"{query.shape}, {key.shape} and {value.shape}")
    if key.shape[-1] != query.shape[-1] or value.shape[-2] != key.shape[-2]:
        raise ValueError(f"{FN}: expected query (..., L, E), key (..., S, E) and value (..., S, Ev), "
                         f"got shapes {query.shape}, {key.shape} and {value.shape}")
    if attn_mask is not None:
        if is_causal:
            raise ValueError(f"{FN}: an explicit attn_mask should not be set when is_causal=True")
        kind = jnp.result_type(attn_mask)
        if kind != jnp.bool_ and not jnp.issubdtype(kind, jnp.floating):
            raise TypeError(f"{FN}: expected attn_mask dtype to be bool or float, got attn_mask of "
                            f"dtype {kind}")
    if enable_gqa:
        if min(query.ndim, key.ndim, value.ndim) < 3:
            raise ValueError(f"{FN}: enable_gqa needs a heads dim (-3), got shapes {query.shape}, "
                             f"{key.shape} and {value.shape}")
        hq, hk, hv = query.shape[-3], key.shape[-3], value.shape[-3]
        if hq % hk or hq % hv:
            raise ValueError(f"{FN}: the number of heads in key ({hk}) and value ({hv}) must divide "
                             f"the number of heads in query ({hq}) with enable_gqa=True")


def _safe_softmax(scores):
    """Softmax over the last dim; rows that are all ``-inf`` give zeros (torch's ``_safe_softmax``)."""
    m = jnp.max(scores, axis=-1, keepdims=True)
    dead = jnp.isneginf(m)
    e = jnp.exp(scores - jnp.where(dead, jnp.zeros((), scores.dtype), m))
    weight = e / jnp.sum(e, axis=-1, keepdims=True)
    return jnp.where(dead, jnp.zeros((), scores.dtype), weight)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, enable_gqa: bool = False,
                                 *, dropout_key=None):
    """``softmax(q k^T * scale + mask) v`` over the last two dims (``F.scaled_dot_product_attention``).

    **Arguments:**

    - ``query`` ``(..., L, E)``, ``key`` ``(..., S, E)``, ``value`` ``(..., S, Ev)``; batch
      dims broadcast; the output is ``(..., L, Ev)``.
    - ``attn_mask``: broadcastable to ``(..., L, S)``; bool (``True`` = attend) or float (added).
    - ``dropout_p``: dropout on the attention weights, which needs ``dropout_key``.
    - ``is_causal``: query ``i`` attends to keys ``0..i`` (top-left aligned); excludes ``attn_mask``.
    - ``scale``: defaults to ``1 / sqrt(E)``.
    - ``enable_gqa``: repeat each key/value head ``Hq / Hk`` times along dim -3 (grouped-query).
    - ``dropout_key``: a ``jax.random`` key (keyword-only: ``key`` is the key tensor, as in torch).
    """
    query, key, value = cast(FN, jnp.asarray(query), jnp.asarray(key), jnp.asarray(value))
    _check(query, key, value, attn_mask, is_causal, enable_gqa)
    dtype = query.dtype
    query, key, value = (a.astype(_args.opmath(dtype)) for a in (query, key, value))
    L, S = query.shape[-2], key.shape[-2]
    if enable_gqa:
        key = jnp.repeat(key, query.shape[-3] // key.shape[-3], axis=-3)
        value = jnp.repeat(value, query.shape[-3] // value.shape[-3], axis=-3)
    try:
        jnp.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    except ValueError:
        raise ValueError(f"{FN}: the batch dims of query, key and value must broadcast, got shapes "
                         f"{query.shape}, {key.shape} and {value.shape}") from None
    root = math.sqrt(1 / math.sqrt(query.shape[-1]) if scale is None else scale)
    scores = jnp.matmul(query * root, jnp.swapaxes(key * root, -2, -1), precision=DEFAULT_PRECISION)
    neg_inf = jnp.asarray(-jnp.inf, scores.dtype)
    if is_causal:
        scores = jnp.where(jnp.tril(jnp.ones((L, S), bool)), scores, neg_inf)
    if attn_mask is not None:
        attn_mask = jnp.asarray(attn_mask)
        try:
            jnp.broadcast_shapes(attn_mask.shape, scores.shape)
        except ValueError:
            raise ValueError(f"{FN}: attn_mask of shape {attn_mask.shape} does not broadcast to the "
                             f"attention scores' shape {scores.shape} (..., L, S)") from None
        if attn_mask.dtype == jnp.bool_:
            scores = jnp.where(attn_mask, scores, neg_inf)
        else:
            scores = scores + attn_mask
    weight = _safe_softmax(scores)
    if dropout_p > 0:
        if dropout_key is None:
            raise ValueError(f"{FN}: dropout_p={dropout_p} > 0 needs a dropout_key (a jax.random key)")
        weight = dropout(weight, dropout_p, key=dropout_key)
    return jnp.matmul(weight, value, precision=DEFAULT_PRECISION).astype(dtype)


def _bmm(a, b):
    """``a @ b`` accumulated in float32 for float16/bfloat16 and rounded once (torch's bmm)."""
    return product(a, b).astype(a.dtype)


MHA = "multi_head_attention_forward"


def _float_mask(mask, name: str, dtype):
    """A bool mask (``True`` = do not attend) as ``-inf`` / ``0``; a float mask as it is."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.dtype == jnp.bool_:
        return jnp.where(mask, jnp.asarray(-jnp.inf, dtype), jnp.zeros((), dtype))
    if not jnp.issubdtype(mask.dtype, jnp.floating):
        raise TypeError(f"{MHA}: only bool and floating types of {name} are supported, got {mask.dtype}")
    return mask.astype(dtype)


def _in_projection(query, key, value, E, in_proj_weight, in_proj_bias, separate, q_w, k_w, v_w):
    """``q, k, v``: one packed ``(3E, E)`` projection, or three separate weights."""
    from .linear import linear

    if separate:
        if q_w is None or k_w is None or v_w is None:
            raise ValueError(f"{MHA}: use_separate_proj_weight=True needs q_proj_weight, "
                             "k_proj_weight and v_proj_weight")
        bq = bk = bv = None
        if in_proj_bias is not None:
            bq, bk, bv = in_proj_bias[:E], in_proj_bias[E:2 * E], in_proj_bias[2 * E:]
        return linear(query, q_w, bq), linear(key, k_w, bk), linear(value, v_w, bv)
    if in_proj_weight is None:
        raise ValueError(f"{MHA}: use_separate_proj_weight=False needs in_proj_weight")
    ws = in_proj_weight[:E], in_proj_weight[E:2 * E], in_proj_weight[2 * E:]
    bs = (None,) * 3 if in_proj_bias is None else (
        in_proj_bias[:E], in_proj_bias[E:2 * E], in_proj_bias[2 * E:])
    return tuple(linear(x, w, b) for x, w, b in zip((query, key, value), ws, bs))


def multi_head_attention_forward(query, key, value, embed_dim_to_check: int, num_heads: int,
                                 in_proj_weight, in_proj_bias, bias_k, bias_v, add_zero_attn: bool,
                                 dropout_p: float, out_proj_weight, out_proj_bias,
                                 training: bool = True, key_padding_mask=None,
                                 need_weights: bool = True, attn_mask=None,
                                 use_separate_proj_weight: bool = False, q_proj_weight=None,
                                 k_proj_weight=None, v_proj_weight=None, static_k=None,
                                 static_v=None, average_attn_weights: bool = True,
                                 is_causal: bool = False, *, dropout_key=None):
    """Multi-head attention with torch's layout and masks (``F.multi_head_attention_forward``).

    Sequence first: ``query`` ``(L, N, E)``, ``key`` / ``value`` ``(S, N, E_k)`` /
    ``(S, N, E_v)``, or unbatched ``(L, E)``. Returns ``(output (L, N, E), weights)``;
    ``weights`` is ``(N, L, S)`` averaged over heads (``(N, H, L, S)`` when not
    ``average_attn_weights``), ``None`` unless ``need_weights``.

    The steps, as torch's: project ``q, k, v`` (packed ``in_proj_weight`` or three separate
    weights); append ``bias_k`` / ``bias_v`` as one more key position (and a zero key with
    ``add_zero_attn``), padding the masks by a column that attends; split ``E`` into heads;
    masks are ``True`` = masked out (bool) or added (float), ``key_padding_mask`` ``(N, S)``
    merged into ``attn_mask`` ``(L, S)`` or ``(N*H, L, S)``; weights ``softmax(q k^T /
    sqrt(E/H) + mask)``, dropout on them in training (``dropout_key``; the weights returned
    are the dropped ones, as torch's), ``out_proj``.
    """
    from .linear import linear

    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
        raise ValueError(f"{MHA}: query, key and value must all be 2-D (unbatched) or 3-D "
                         f"(batched), got shapes {query.shape}, {key.shape} and {value.shape}")
    batched = query.ndim == 3
    if not batched:
        query, key, value = query[:, None], key[:, None], value[:, None]
        if key_padding_mask is not None:
            key_padding_mask = jnp.asarray(key_padding_mask)[None]
    L, N, E = query.shape
    if E != embed_dim_to_check:
        raise ValueError(f"{MHA}: was expecting embedding dimension of {embed_dim_to_check}, "
                         f"but got {E}")
    if E % num_heads:
        raise ValueError(f"{MHA}: embed_dim {E} not divisible by num_heads {num_heads}")
    if is_causal and attn_mask is None:
        raise ValueError(f"{MHA}: need attn_mask if specifying the is_causal hint")
    head = E // num_heads
    q, k, v = _in_projection(query, key, value, E, in_proj_weight, in_proj_bias,
                             use_separate_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight)
    key_padding_mask = _float_mask(key_padding_mask, "key_padding_mask", q.dtype)
    attn_mask = _float_mask(attn_mask, "attn_mask", q.dtype)
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None        # torch then lets sdpa build the causal mask itself
    else:
        is_causal = False
    if attn_mask is not None and attn_mask.ndim == 2:
        attn_mask = attn_mask[None]
    if bias_k is not None and bias_v is not None:
        k = jnp.concatenate([k, jnp.broadcast_to(bias_k, (1, N, E))])
        v = jnp.concatenate([v, jnp.broadcast_to(bias_v, (1, N, E))])
        attn_mask = None if attn_mask is None else jnp.pad(attn_mask, [(0, 0), (0, 0), (0, 1)])
        key_padding_mask = (None if key_padding_mask is None
                            else jnp.pad(key_padding_mask, [(0, 0), (0, 1)]))
    q = reshape(q, (L, N * num_heads, head)).transpose(1, 0, 2)
    k = (reshape(k, (k.shape[0], N * num_heads, head)).transpose(1, 0, 2) if static_k is None
         else jnp.asarray(static_k))
    v = (reshape(v, (v.shape[0], N * num_heads, head)).transpose(1, 0, 2) if static_v is None
         else jnp.asarray(static_v))
    if add_zero_attn:
        k = jnp.concatenate([k, jnp.zeros((k.shape[0], 1, head), k.dtype)], axis=1)
        v = jnp.concatenate([v, jnp.zeros((v.shape[0], 1, head), v.dtype)], axis=1)
        attn_mask = None if attn_mask is None else jnp.pad(attn_mask, [(0, 0), (0, 0), (0, 1)])
        key_padding_mask = (None if key_padding_mask is None
                            else jnp.pad(key_padding_mask, [(0, 0), (0, 1)]))
    S = k.shape[1]
    if key_padding_mask is not None:
        if key_padding_mask.shape != (N, S):
            raise ValueError(f"{MHA}: expecting key_padding_mask shape of {(N, S)}, but got "
                             f"{key_padding_mask.shape}")
        padding = jnp.broadcast_to(key_padding_mask[:, None, None, :], (N, num_heads, 1, S))
        padding = padding.reshape(N * num_heads, 1, S)
        attn_mask = padding if attn_mask is None else attn_mask + padding
    if not training:
        dropout_p = 0.0
    if need_weights:
        scores = _bmm(q * math.sqrt(1.0 / head), jnp.swapaxes(k, -2, -1))
        if attn_mask is not None:
            scores = scores + attn_mask
        weights = _args.in_opmath(jax.nn.softmax, scores, axis=-1)
        dropped = weights
        if dropout_p > 0:
            if dropout_key is None:
                raise ValueError(f"{MHA}: dropout_p={dropout_p} > 0 needs a dropout_key")
            dropped = dropout(weights, dropout_p, key=dropout_key)
        out = _bmm(dropped, v)
        weights = reshape(dropped, (N, num_heads, L, S))   # as torch: the weights after dropout
        if average_attn_weights:
            weights = weights.mean(axis=1)
    else:
        if attn_mask is not None:
            attn_mask = (attn_mask[None] if attn_mask.shape[0] == 1
                         else attn_mask.reshape(N, num_heads, -1, S))
        out = scaled_dot_product_attention(
            reshape(q, (N, num_heads, L, head)), reshape(k, (N, num_heads, S, head)),
            reshape(v, (N, num_heads, S, head)), attn_mask, dropout_p, is_causal,
            dropout_key=dropout_key)
        out = reshape(out, (N * num_heads, L, head))
        weights = None
    out = reshape(out, (N, num_heads, L, head)).transpose(2, 0, 1, 3)
    if explicit_spec(out) is None:
        out = linear(out.reshape(L * N, E), out_proj_weight, out_proj_bias).reshape(L, N, E)
    else:  # a sharded N cannot merge with L (its shards would interleave): keep (L, N, E)
        out = linear(reshape(out, (L, N, E)), out_proj_weight, out_proj_bias)
    if not batched:
        out = out[:, 0]
        weights = None if weights is None else weights[0]
    return out, weights
