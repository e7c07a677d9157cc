"""``scaled_dot_product_attention`` with torch 2.13's semantics.

The math, as torch's reference (``_scaled_dot_product_attention_math``) computes it::

    bias   = 0, -inf where the causal mask or a bool attn_mask is False, + a float attn_mask
    weight = softmax((q * sqrt(scale)) @ (k * sqrt(scale))^T + bias, dim=-1)
    out    = dropout(weight, dropout_p) @ v

with ``scale = 1 / sqrt(E)`` by default, the causal mask ``tril(ones(L, S))`` aligned at
the top left (query ``i`` sees keys ``0..i`` even when ``L != S``), and torch's "safe"
softmax: a row whose scores are all ``-inf`` (fully masked) gives zeros, not NaN.
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from . import _args
from .conv import DEFAULT_PRECISION
from .linear import dropout

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
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    _check(query, key, value, attn_mask, is_causal, enable_gqa)
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
    return jnp.matmul(weight, value, precision=DEFAULT_PRECISION)
