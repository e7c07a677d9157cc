"""Mixed precision with ``torch.autocast``'s semantics, read at trace time.

Inside ``with jaxconv.autocast(jnp.bfloat16):`` (or ``jnp.float16``) the ops torch's CPU
autocast runs in low precision (:data:`LOWER`: convs, transposed convs, linear, the matrix
products, prelu, attention) cast their floating inputs to that dtype, and the ops it runs in
float32 (:data:`FLOAT32`: 3-d pooling, reflection and replication padding, most losses) cast them to
float32. float64 inputs are never cast, as in torch. Every other op runs in its inputs' dtype,
accumulating in float32 (a BatchNorm after a bfloat16 conv takes its bfloat16 output and
float32 parameters and returns bfloat16). Parameters stay as stored. How a bfloat16 conv is then
computed on CPU is a lowering choice, made for bfloat16 operands whether autocast or the model
made them (``functional/_lowering.py``, ``_BF16_TAPS_MIN_CIN``); the values are the same.

The setting is a JAX configuration state included in ``jax.jit``'s cache key, so a function
jitted outside the context and called inside is traced again rather than reused, and it is
read when a function is traced: wrap the call (or the whole jitted step), not the definition.
The lists were read from torch 2.13's CPU autocast (``tests/test_autocast.py`` checks every op
against it).
"""
from __future__ import annotations

import contextlib

import jax.numpy as jnp
import numpy as np
from jax._src import config as _config

#: Ops torch's CPU autocast runs in the autocast dtype (jaxconv's functional names).
LOWER = frozenset({
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "linear", "matmul", "mm", "bmm", "baddbmm", "addmm", "einsum", "prelu",
    "scaled_dot_product_attention",
})

#: Ops torch's CPU autocast runs in float32. Of the losses, the ones written in Python in torch
#: (``gaussian_nll_loss``, ``multilabel_soft_margin_loss``, ``triplet_margin_with_distance_loss``,
#: and ``mse_loss`` / ``l1_loss`` given a ``weight``) are not cast; ``huber_loss`` is, weight or not.
FLOAT32 = frozenset({
    "avg_pool3d", "max_pool3d", "adaptive_avg_pool3d", "adaptive_max_pool3d",
    "reflection_pad1d", "reflection_pad2d", "replication_pad1d", "replication_pad2d",
    "replication_pad3d",
    "cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "kl_div", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "poisson_nll_loss",
    "soft_margin_loss", "multilabel_margin_loss", "multi_margin_loss", "margin_ranking_loss",
    "hinge_embedding_loss", "cosine_embedding_loss", "triplet_margin_loss", "ctc_loss",
})

DTYPES = ("bfloat16", "float16")

_STATE = _config.optional_enum_state(
    name="jaxconv_autocast", enum_values=list(DTYPES), default=None,
    help="jaxconv.autocast's dtype (None: off); part of jit's cache key.",
    include_in_jit_key=True, include_in_trace_context=True)


def _name(dtype) -> str:
    """``'bfloat16'`` or ``'float16'`` from a string, a numpy/jnp dtype or a torch dtype."""
    name = str(getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or dtype)
    name = name.removeprefix("torch.")
    name = {"half": "float16", "bf16": "bfloat16", "fp16": "float16"}.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"autocast: dtype must be bfloat16 or float16 (torch's CPU autocast "
                         f"dtypes), got dtype={dtype!r}")
    return name


@contextlib.contextmanager
def autocast(dtype=jnp.bfloat16, enabled: bool = True):
    """Run the ops torch's autocast runs in low precision in ``dtype`` (``torch.autocast``).

    **Arguments:**

    - ``dtype``: ``bfloat16`` or ``float16``, as a string, a jnp/numpy dtype or a torch dtype.
    - ``enabled``: ``False`` turns autocast off inside (nested regions), as torch's flag.
    """
    value = _name(dtype) if enabled else None
    with _STATE(value):
        yield


def get_autocast_dtype():
    """The active autocast dtype as a numpy dtype, or ``None`` outside autocast."""
    return None if _STATE.value is None else jnp.dtype(_STATE.value)


def _cast_to(x, dtype):
    if x is None or not hasattr(x, "dtype") or jnp.dtype(x.dtype) == dtype:
        return x
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.dtype(x.dtype) == np.float64:
        return x  # torch casts floating tensors but float64 only
    return jnp.asarray(x).astype(dtype)


def cast(op: str, *arrays):
    """``arrays`` as op ``op`` takes them under the active autocast (unchanged outside it or
    for an op on neither list); ``None`` entries stay ``None``. Returns a tuple."""
    dtype = get_autocast_dtype()
    if dtype is None or (op not in LOWER and op not in FLOAT32):
        return arrays
    target = dtype if op in LOWER else jnp.dtype(jnp.float32)
    return tuple(_cast_to(x, target) for x in arrays)
