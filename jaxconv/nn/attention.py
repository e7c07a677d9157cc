"""``MultiheadAttention`` (``torch.nn.MultiheadAttention``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .. import _rng
from ..functional.attention import multi_head_attention_forward
from ..functional.linear import _check_p
from . import init
from .linear import Linear
from .module import Module, RandomInTraining


class MultiheadAttention(RandomInTraining, Module):
    """Multi-head attention with torch's parameters and call (``torch.nn.MultiheadAttention``).

    **Arguments:**

    - ``embed_dim``, ``num_heads``: model width ``E`` and number of heads (``E % num_heads == 0``).
    - ``dropout``: dropout on the attention weights in training.
    - ``bias``: biases in the input and output projections.
    - ``add_bias_kv``: learn ``bias_k`` / ``bias_v`` ``(1, 1, E)``, appended as a key position.
    - ``add_zero_attn``: append a zero key/value position.
    - ``kdim``, ``vdim``: key / value widths (``E`` when ``None``); when either differs from
      ``E`` the projections are the separate ``q_proj_weight`` / ``k_proj_weight`` /
      ``v_proj_weight`` instead of the packed ``in_proj_weight`` ``(3E, E)``.
    - ``batch_first``: inputs and outputs are ``(N, L, E)`` instead of ``(L, N, E)``.
    - ``rngs``: ``nnx.Rngs`` or a key (its ``params`` and ``dropout`` streams); ``None`` draws
      from the stream seeded by ``jaxconv.manual_seed``.

    Initialised as torch: xavier-uniform projections, zero ``in_proj_bias`` and
    ``out_proj.bias``, xavier-normal ``bias_k`` / ``bias_v``; ``out_proj`` is a ``Linear``.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, dtype=None, *, rngs=None):
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: embed_dim and num_heads must be greater than 0, "
                             f"got embed_dim={embed_dim} and num_heads={num_heads} instead")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim must be divisible by num_heads, got "
                             f"embed_dim={embed_dim} and num_heads={num_heads}")
        _check_p(dropout)
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.batch_first, self.add_zero_attn = batch_first, add_zero_attn
        self.head_dim = embed_dim // num_heads
        key = _rng.key_from(rngs)
        k_q, k_k, k_v, k_in, k_out, k_bk, k_bv = jax.random.split(key, 7)
        dt = init.default_dtype(dtype)
        if self._qkv_same_embed_dim:
            self.in_proj_weight = nnx.Param(init.xavier_uniform(k_in, (3 * embed_dim, embed_dim), dtype=dt))
            self.q_proj_weight = self.k_proj_weight = self.v_proj_weight = None
        else:
            self.q_proj_weight = nnx.Param(init.xavier_uniform(k_q, (embed_dim, embed_dim), dtype=dt))
            self.k_proj_weight = nnx.Param(init.xavier_uniform(k_k, (embed_dim, self.kdim), dtype=dt))
            self.v_proj_weight = nnx.Param(init.xavier_uniform(k_v, (embed_dim, self.vdim), dtype=dt))
            self.in_proj_weight = None
        self.in_proj_bias = nnx.Param(jnp.zeros((3 * embed_dim,), dt)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype, rngs=k_out)
        if bias:
            self.out_proj.bias = nnx.Param(jnp.zeros((embed_dim,), dt))
        if add_bias_kv:
            self.bias_k = nnx.Param(init.xavier_normal(k_bk, (1, 1, embed_dim), dtype=dt))
            self.bias_v = nnx.Param(init.xavier_normal(k_bv, (1, 1, embed_dim), dtype=dt))
        else:
            self.bias_k = self.bias_v = None
        self.deterministic = False
        self.rngs = init.dropout_rngs(rngs)

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
                f"batch_first={self.batch_first}")

    def __call__(self, query, key, value, key_padding_mask=None, need_weights: bool = True,
                 attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        """Attends ``query`` to ``key`` / ``value`` (torch's ``forward``).

        **Arguments:** (``L``: target length, ``S``: source length, ``E = embed_dim``)

        - ``query``: ``(L, N, E)``, ``(N, L, E)`` with ``batch_first``, or unbatched ``(L, E)``.
        - ``key``, ``value``: ``(S, N, kdim)`` and ``(S, N, vdim)``, in ``query``'s layout
          (``(N, S, ...)`` with ``batch_first``; ``(S, kdim)``, ``(S, vdim)`` unbatched).
        - ``key_padding_mask``: ``None`` or ``(N, S)`` (``(S,)`` unbatched): bool (``True``
          ignores that key) or float (added to the scores).
        - ``need_weights``: also return the attention weights; ``False`` returns ``None`` there.
        - ``attn_mask``: ``None``, ``(L, S)`` or ``(N * num_heads, L, S)``: bool (``True`` = may
          not attend) or float (added to the scores).
        - ``average_attn_weights``: average the returned weights over the heads.
        - ``is_causal``: a hint that ``attn_mask`` is the causal mask; it needs ``attn_mask``.

        **Returns:** ``(attn_output, attn_weights)``: ``attn_output`` in ``query``'s layout and
        shape (``E`` features); ``attn_weights`` ``(N, L, S)``, ``(N, num_heads, L, S)`` without
        ``average_attn_weights``, no ``N`` unbatched (``S`` counts the ``add_bias_kv`` /
        ``add_zero_attn`` positions), or ``None``. Training (as built) applies dropout
        (probability ``dropout``) to the weights, drawn from ``self.rngs``; eval
        (``model.eval()``) does not.
        """
        def value_of(p):
            return None if p is None else p[...]

        batched = jnp.ndim(query) == 3
        if self.batch_first and batched:
            query, key, value = (jnp.swapaxes(jnp.asarray(t), 0, 1) for t in (query, key, value))
        training = not self.deterministic
        drop = training and self.dropout > 0
        out, weights = multi_head_attention_forward(
            query, key, value, self.embed_dim, self.num_heads, value_of(self.in_proj_weight),
            value_of(self.in_proj_bias), value_of(self.bias_k), value_of(self.bias_v),
            self.add_zero_attn, self.dropout, self.out_proj.weight[...],
            value_of(self.out_proj.bias), training=training, key_padding_mask=key_padding_mask,
            need_weights=need_weights, attn_mask=attn_mask,
            use_separate_proj_weight=not self._qkv_same_embed_dim,
            q_proj_weight=value_of(self.q_proj_weight), k_proj_weight=value_of(self.k_proj_weight),
            v_proj_weight=value_of(self.v_proj_weight), average_attn_weights=average_attn_weights,
            is_causal=is_causal, dropout_key=self.rngs.dropout() if drop else None)
        if self.batch_first and batched:
            out = jnp.swapaxes(out, 0, 1)
        return out, weights
