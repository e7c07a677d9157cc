"""The library-level random stream: parameters built without ``rngs`` draw from it."""
from __future__ import annotations

import jax

_stream = {"seed": 0, "key": None, "count": 0}


def manual_seed(seed: int) -> None:
    """Seed the stream that modules built without ``rngs`` draw their parameters from.

    Like ``torch.manual_seed``: after ``manual_seed(n)`` the same sequence of module
    constructions gives the same parameters.
    """
    _stream.update(seed=int(seed), key=None, count=0)


def next_key() -> jax.Array:
    """A fresh key from the library-level stream."""
    # Concrete even when the first draw happens inside a trace (nnx.eval_shape, jit):
    # the stream's key must never hold a tracer.
    with jax.ensure_compile_time_eval():
        if _stream["key"] is None:
            _stream["key"] = jax.random.key(_stream["seed"])
        key = jax.random.fold_in(_stream["key"], _stream["count"])
    _stream["count"] += 1
    return key


def key_from(rngs, stream: str = "params") -> jax.Array:
    """A key from ``rngs`` (an ``nnx.Rngs``, a key, or ``None`` for the library stream)."""
    if rngs is None:
        return next_key()
    if isinstance(rngs, jax.Array):
        return rngs
    return getattr(rngs, stream)()
