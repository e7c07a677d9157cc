"""Random tensors: ``rand``, ``randn``, ``rand_like``, ``randn_like``, ``bernoulli``.

torch draws from a global generator; these take a ``jax.random`` key instead (``key=``,
required), so a translated forward draws from its module's ``rngs`` stream, as dropout does.
The values therefore differ from torch's draws; their distributions are torch's.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _parse


def _key(key, fn: str):
    if key is None:
        raise TypeError(f"{fn}: a jax.random key is required (key=...), got key=None")
    return key


def _shape(size, kw, fn):
    shape = _parse.one_form(size, kw.pop("size", None), fn, "size")
    for k in kw:
        if k not in ("device", "requires_grad", "layout", "pin_memory", "generator"):
            raise TypeError(f"{fn}: unexpected keyword argument {k!r}")
    return shape


def rand(*size, key=None, dtype=None, **kw):
    """Uniform on ``[0, 1)`` in shape ``size``, float32 by default (``torch.rand``)."""
    shape = _shape(size, kw, "rand")
    return jax.random.uniform(_key(key, "rand"), shape, _parse.canonical(dtype or jnp.float32))


def randn(*size, key=None, dtype=None, **kw):
    """Standard normal in shape ``size``, float32 by default (``torch.randn``)."""
    shape = _shape(size, kw, "randn")
    return jax.random.normal(_key(key, "randn"), shape, _parse.canonical(dtype or jnp.float32))


def rand_like(input, *, key=None, dtype=None, **placement):
    """``rand`` in ``input``'s shape and dtype (``torch.rand_like``)."""
    return rand(jnp.shape(input), key=key, dtype=dtype or jnp.result_type(input))


def randn_like(input, *, key=None, dtype=None, **placement):
    """``randn`` in ``input``'s shape and dtype (``torch.randn_like``)."""
    return randn(jnp.shape(input), key=key, dtype=dtype or jnp.result_type(input))


def bernoulli(input, p=None, *, key=None, **placement):
    """1 with probability ``p`` (or, without ``p``, each element of ``input``), else 0, in
    ``input``'s shape and dtype (``torch.bernoulli``; ``x.bernoulli_(p)``)."""
    probability = input if p is None else p
    if _parse.is_number(p) and not 0 <= p <= 1:
        raise ValueError(f"bernoulli: p must be in [0, 1], got p={p}")
    draws = jax.random.bernoulli(_key(key, "bernoulli"), probability, jnp.shape(input))
    return draws.astype(jnp.result_type(input))
