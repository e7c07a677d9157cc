"""torch's default initialisations, as pure functions of a key (``torch.nn.init``)."""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def default_dtype(dtype):
    """torch's ``dtype=None``: float32, whatever JAX's x64 setting."""
    return jnp.dtype(jnp.float32 if dtype is None else dtype)


def fan_in_and_fan_out(shape) -> tuple[int, int]:
    """torch's ``_calculate_fan_in_and_fan_out``: ``shape[1]`` (resp. ``shape[0]``) times the
    product of the remaining dimensions. For a transposed conv, whose weight is
    ``(in, out/groups, *k)``, this makes ``fan_in = out/groups * prod(k)``, as in torch.
    """
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a tensor of at least 2 dimensions, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def uniform(key, shape, low, high, dtype=None) -> jax.Array:
    """``U(low, high)`` drawn at (at least) float32 precision, then cast to ``dtype``."""
    dtype = default_dtype(dtype)
    shape = tuple(int(d) for d in shape)  # numpy integers too, as torch takes them
    draw = dtype if jnp.finfo(dtype).bits >= 32 else jnp.float32
    if _is_traced(key):  # built under a trace (jit, eval_shape): stay in jax
        return jax.random.uniform(key, shape, draw, low, high).astype(dtype)
    # Eagerly, draw U[0, 1) into a power-of-two bucket and scale in numpy: XLA compiles the
    # random-bits program once per bucket instead of once per parameter shape (each compile
    # takes a large fraction of a second on CPU, which made building a model slow).
    size = math.prod(shape)
    bucket = 1 << max(size - 1, 0).bit_length()
    u = np.asarray(_unit_uniform(key, bucket, jnp.dtype(draw)))[:size].astype(np.float64)
    return jnp.asarray((low + (high - low) * u).astype(draw).astype(dtype).reshape(shape))


def _is_traced(key) -> bool:
    """Whether ``key`` is abstract (under ``jit``, ``eval_shape``, ...), by public API only:
    ``jax.core.Tracer`` is internal, so try to read the key and catch jax's public error."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    try:
        np.asarray(data)
    except jax.errors.TracerArrayConversionError:
        return True
    return False


@functools.partial(jax.jit, static_argnums=(1, 2))
def _unit_uniform(key, n, dtype):
    return jax.random.uniform(key, (n,), dtype)


def kaiming_uniform(key, shape, a: float = math.sqrt(5), dtype=None) -> jax.Array:
    """torch's ``kaiming_uniform_`` (fan_in, leaky_relu): ``U(-b, b)``, ``b = gain * sqrt(3 / fan_in)``.

    With torch's default ``a = sqrt(5)`` the gain is ``sqrt(1/3)``, so ``b = 1/sqrt(fan_in)``.
    """
    fan_in, _ = fan_in_and_fan_out(shape)
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in) if fan_in else 0.0
    return uniform(key, shape, -bound, bound, dtype)


def torch_default(key, weight_shape, bias_size: int | None, dtype=None):
    """``(weight, bias)`` as torch's Conv/ConvTranspose/Linear ``reset_parameters`` draws them:
    a kaiming-uniform weight and a bias of ``bias_size`` drawn from ``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))``; bias is ``None`` when ``bias_size`` is ``None``.
    """
    k_w, k_b = jax.random.split(key)
    weight = kaiming_uniform(k_w, weight_shape, dtype=dtype)
    if bias_size is None:
        return weight, None
    fan_in, _ = fan_in_and_fan_out(weight_shape)
    bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
    return weight, uniform(k_b, (bias_size,), -bound, bound, dtype)


def dropout_rngs(rngs=None):
    """An ``nnx.Rngs`` with a ``dropout`` stream, for a module that draws masks.

    ``rngs``: an ``nnx.Rngs`` (its ``dropout`` stream, or ``default``), a key, or ``None`` for a
    key from the stream seeded by ``jaxconv.manual_seed``.
    """
    from flax import nnx

    from .. import _rng

    return nnx.Rngs(dropout=_rng.key_from(rngs, "dropout"))


def xavier_uniform(key, shape, gain: float = 1.0, dtype=None) -> jax.Array:
    """torch's ``xavier_uniform_``: ``U(-b, b)``, ``b = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = fan_in_and_fan_out(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(key, shape, -bound, bound, dtype)


def xavier_normal(key, shape, gain: float = 1.0, dtype=None) -> jax.Array:
    """torch's ``xavier_normal_``: ``N(0, std^2)``, ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = fan_in_and_fan_out(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    dtype = default_dtype(dtype)
    draw = dtype if jnp.finfo(dtype).bits >= 32 else jnp.float32
    return (std * jax.random.normal(key, tuple(int(d) for d in shape), draw)).astype(dtype)
