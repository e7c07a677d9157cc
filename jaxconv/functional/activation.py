"""Activations with torch.nn.functional's names, defaults and exact semantics.

Piecewise functions are written with ``jnp.where`` on torch's own conditions, so that
the value and the gradient at the knees are torch's: ``hardtanh``/``relu6``/``hardsigmoid``
pass gradient only strictly inside their linear region, ``hardswish`` takes the outer
branches (0 and 1) at -3 and 3, ``leaky_relu``/``prelu``/``elu`` take the negative
branch at 0, and ``softplus`` is the identity where ``beta * x > threshold``. NaN inputs
propagate. ``inplace=`` is accepted and ignored (JAX arrays are immutable).

On float16/bfloat16 input the smooth activations and softmax compute in float32 and round
once (:func:`_in_float32`), as torch's CPU kernels do.
"""
from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
from jax import lax

from .._autocast import cast
from . import _args

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _in_float32(fn):
    """``fn`` computed in torch's opmath dtype (float32 for float16/bfloat16 input) and rounded
    back once (:func:`~._dtypes.in_opmath`)."""
    @functools.wraps(fn)
    def wrapper(input, *args, **kwargs):
        return _args.in_opmath(fn, input, *args, **kwargs)
    return wrapper


def relu(input, inplace: bool = False):
    """``max(0, x)``; gradient 0 at 0 (torch's ``F.relu``)."""
    return jax.nn.relu(input)


def hardtanh(input, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
    """Clamp to ``[min_val, max_val]``; gradient 1 strictly inside, else 0 (``F.hardtanh``).

    **Arguments:** ``min_val``, ``max_val`` with ``min_val <= max_val``.
    """
    if min_val > max_val:
        raise ValueError(
            f"hardtanh: min_val cannot be greater than max_val, got min_val={min_val}, max_val={max_val}"
        )
    lo, hi = jnp.asarray(min_val, input.dtype), jnp.asarray(max_val, input.dtype)
    return jnp.where(input <= lo, lo, jnp.where(input >= hi, hi, input))


def relu6(input, inplace: bool = False):
    """``min(max(0, x), 6)``, i.e. ``hardtanh(x, 0, 6)`` (``F.relu6``)."""
    return hardtanh(input, 0.0, 6.0)


@_in_float32
def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False):
    """``x`` where ``x > 0``, else ``negative_slope * x`` (``F.leaky_relu``)."""
    return jnp.where(input > 0, input, input * jnp.asarray(negative_slope, input.dtype))


def prelu(input, weight):
    """Leaky ReLU with a learned slope, one per channel (dim 1) or one shared (``F.prelu``).

    **Arguments:**

    - ``input``: any shape; its channel dimension is dim 1 (size 1 for a 0-D or 1-D input).
    - ``weight``: a scalar or 1-D array with 1 or ``C`` entries.
    """
    input, weight = cast("prelu", input, weight)
    if weight.ndim > 1:
        raise ValueError(
            f"prelu: Expected `weight` to be a scalar or 1D tensor, but got: ndim = {weight.ndim}"
        )
    _args.check_same_dtype("prelu", input, weight=weight)
    _args.check_floating("prelu", "input", input)
    channels = input.shape[1] if input.ndim >= 2 else 1
    if weight.size not in (1, channels):
        raise ValueError(
            "Mismatch of parameter numbers and input channel size. Found parameter numbers = "
            f"{weight.size} and channel size = {channels}."
        )
    if weight.size == 1:
        w = weight.reshape(())
    else:
        w = weight.reshape((channels,) + (1,) * (input.ndim - 2))
    return jnp.where(input > 0, input, w.astype(input.dtype) * input)


def _elu(x, alpha, scale=1.0, input_scale=1.0):
    # expm1 of x clipped to <= 0 by where (not minimum, whose gradient at 0 is 1/2): no
    # overflow in the discarded branch, whose gradient would otherwise be inf * 0 = nan.
    neg = alpha * jnp.expm1(jnp.where(x > 0, jnp.zeros((), x.dtype), x) * input_scale)
    return jnp.where(x > 0, x * scale, neg * scale)


@_in_float32
def elu(input, alpha: float = 1.0, inplace: bool = False):
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)`` (``F.elu``)."""
    return _elu(input, alpha)


@_in_float32
def selu(input, inplace: bool = False):
    """``scale * elu(x, alpha)`` with torch's constants (``F.selu``)."""
    return _elu(input, _SELU_ALPHA, _SELU_SCALE)


@_in_float32
def celu(input, alpha: float = 1.0, inplace: bool = False):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`` (``F.celu``); ``alpha`` must not be 0."""
    if alpha == 0:
        raise ValueError("celu: alpha cannot be 0 for CELU, got alpha=0")
    return _elu(input, alpha, 1.0, 1.0 / alpha)


@_in_float32
def gelu(input, approximate: str = "none"):
    """GELU: ``x * Phi(x)`` with the exact erf form by default (``F.gelu``).

    **Arguments:** ``approximate``: ``'none'`` (exact, torch's default; note that
    ``jax.nn.gelu`` defaults to the tanh form) or ``'tanh'``.
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(
            f"gelu: approximate argument must be either 'none' or 'tanh', got {approximate!r}"
        )
    if approximate == "none":
        return input * (lax.erf(input * (1 / math.sqrt(2))) + 1) / 2
    inner = math.sqrt(2 / math.pi) * (input + 0.044715 * input ** 3)
    return 0.5 * input * (1 + jnp.tanh(inner))


@_in_float32
def silu(input, inplace: bool = False):
    """``x * sigmoid(x)`` (``F.silu``)."""
    return input * jax.nn.sigmoid(input)


@_in_float32
def mish(input, inplace: bool = False):
    """``x * tanh(softplus(x))`` (``F.mish``)."""
    return input * jnp.tanh(jax.nn.softplus(input))


@_in_float32
def hardswish(input, inplace: bool = False):
    """``x * relu6(x + 3) / 6`` (``F.hardswish``); gradient 0 up to -3, ``x/3 + 1/2`` on
    ``(-3, 3)``, 1 from 3 on (torch's choice at the knees)."""
    return jnp.where(input <= -3, jnp.zeros((), input.dtype),
                     jnp.where(input < 3, input * (input + 3) / 6, input))


@_in_float32
def hardsigmoid(input, inplace: bool = False):
    """``relu6(x + 3) / 6`` (``F.hardsigmoid``); gradient ``1/6`` strictly inside ``(-3, 3)``."""
    zero, one = jnp.zeros((), input.dtype), jnp.ones((), input.dtype)
    return jnp.where(input <= -3, zero, jnp.where(input >= 3, one, (input + 3) / 6))


@_in_float32
def sigmoid(input):
    """``1 / (1 + exp(-x))`` (``F.sigmoid``)."""
    return jax.nn.sigmoid(input)


@_in_float32
def tanh(input):
    """Hyperbolic tangent (``F.tanh``)."""
    return jnp.tanh(input)


@_in_float32
def softplus(input, beta: float = 1.0, threshold: float = 20.0):
    """``log(1 + exp(beta * x)) / beta``, and ``x`` where ``beta * x > threshold`` (``F.softplus``)."""
    bx = input * beta
    above = bx > threshold
    safe = jnp.where(above, jnp.zeros((), bx.dtype), bx)
    return jnp.where(above, input, jnp.log1p(jnp.exp(safe)) / beta)


def _softmax_dim(name: str, ndim: int, dim):
    if dim is None:
        warnings.warn(
            f"Implicit dimension choice for {name} has been deprecated. "
            "Change the call to include dim=X as an argument.", stacklevel=3)
        return 0 if ndim in (0, 1, 3) else 1
    return _args.dim_index(dim, ndim, name)


def _softmax_input(input, dtype):
    return input if dtype is None else input.astype(dtype)


def softmax(input, dim=None, _stacklevel: int = 3, dtype=None):
    """``exp(x) / sum(exp(x))`` along ``dim`` (``F.softmax``).

    **Arguments:** ``dim`` (``None`` applies torch's deprecated implicit choice, with its
    warning: 0 for 0-, 1- and 3-D input, else 1); ``dtype`` casts the input first.
    """
    d = _softmax_dim("softmax", input.ndim, dim)
    x = _softmax_input(input, dtype)
    return _args.in_opmath(jax.nn.softmax, x, axis=d) if x.ndim else jnp.ones_like(x)


def softmin(input, dim=None, _stacklevel: int = 3, dtype=None):
    """``softmax(-x)`` along ``dim`` (``F.softmin``)."""
    d = _softmax_dim("softmin", input.ndim, dim)
    x = _softmax_input(input, dtype)
    return _args.in_opmath(jax.nn.softmax, -x, axis=d) if x.ndim else jnp.ones_like(x)


def log_softmax(input, dim=None, _stacklevel: int = 3, dtype=None):
    """``x - logsumexp(x)`` along ``dim`` (``F.log_softmax``); arguments as ``softmax``."""
    d = _softmax_dim("log_softmax", input.ndim, dim)
    x = _softmax_input(input, dtype)
    return _args.in_opmath(jax.nn.log_softmax, x, axis=d) if x.ndim else jnp.zeros_like(x)
