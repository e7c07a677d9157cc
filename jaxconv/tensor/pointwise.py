"""Elementwise math: unary functions, ``pow``, ``div`` with ``rounding_mode``, ``clamp``, ...

Dtypes follow torch where it differs from jax's defaults: float functions of integer or
bool input compute in float32 (torch's default dtype), and an integer array with a Python
float operand gives float32 (jax with x64 would give float64).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ..functional import activation as _act
from . import _parse


def _promote(x, other):
    """``x`` as an array, cast to float32 if it is integer/bool and ``other`` a Python float."""
    if isinstance(x, (bool, int, float, complex)) and not hasattr(x, "dtype"):
        if isinstance(x, float) and not _parse.is_floating(other):
            return jnp.asarray(x, jnp.float32)
        return x
    x = jnp.asarray(x)
    if isinstance(other, float) and not jnp.issubdtype(x.dtype, jnp.inexact):
        return x.astype(jnp.float32)
    return x


def _unary(fn, doc):
    def f(input):
        return fn(_parse.to_float(input))
    f.__doc__ = doc
    return f


sqrt = _unary(jnp.sqrt, "Square root (``torch.sqrt``).")
rsqrt = _unary(lax.rsqrt, "``1 / sqrt(x)`` (``torch.rsqrt``).")
exp = _unary(jnp.exp, "``e^x`` (``torch.exp``).")
expm1 = _unary(jnp.expm1, "``e^x - 1`` (``torch.expm1``).")
log = _unary(jnp.log, "Natural logarithm (``torch.log``).")
log1p = _unary(jnp.log1p, "``log(1 + x)`` (``torch.log1p``).")
log2 = _unary(jnp.log2, "Base-2 logarithm (``torch.log2``).")
sin = _unary(jnp.sin, "Sine (``torch.sin``).")
cos = _unary(jnp.cos, "Cosine (``torch.cos``).")
erf = _unary(jax.scipy.special.erf, "Error function (``torch.erf``).")
tanh = _unary(_act.tanh, "Hyperbolic tangent (``torch.tanh``).")
sigmoid = _unary(_act.sigmoid, "``1 / (1 + exp(-x))`` (``torch.sigmoid``).")
reciprocal = _unary(lambda x: 1 / x, "``1 / x`` (``torch.reciprocal``).")


def square(input):
    """``input * input`` (``torch.square``): integers stay integers, bools become int64."""
    x = jnp.asarray(input)
    if x.dtype == jnp.bool_:
        x = x.astype(_parse.long_dtype())
    return x * x


def abs(input):
    """Absolute value (``torch.abs``)."""
    return jnp.abs(input)


def neg(input):
    """``-x`` (``torch.neg``)."""
    return jnp.negative(input)


def sign(input):
    """-1, 0 or 1 by the sign of each element (``torch.sign``)."""
    return jnp.sign(input)


def floor(input):
    """Round down (``torch.floor``); integers come back as they are."""
    return jnp.floor(input)


def ceil(input):
    """Round up (``torch.ceil``); integers come back as they are."""
    return jnp.ceil(input)


def trunc(input):
    """Round toward zero (``torch.trunc``)."""
    return jnp.trunc(input)


def round(input, *, decimals: int = 0):
    """Round half to even, to ``decimals`` places (``torch.round``): ``round(x * 10^d) / 10^d``
    for ``d > 0`` and ``round(x / 10^-d) * 10^-d`` for ``d < 0``, torch's formula."""
    if decimals == 0 or not _parse.is_floating(input):
        return jnp.round(input)
    scale = 10.0 ** abs(decimals)
    return jnp.round(input * scale) / scale if decimals > 0 else jnp.round(input / scale) * scale


def pow(input, exponent):
    """``input ** exponent`` (``torch.pow``); either may be a Python number. Integer tensors
    to negative integer powers are refused, as in torch."""
    if (_parse.is_int(exponent) and exponent < 0 and hasattr(input, "dtype")
            and not _parse.is_floating(input)):
        raise ValueError(f"pow: integers to negative integer powers are not allowed, got an "
                         f"{jnp.result_type(input)} input and exponent={exponent}")
    return jnp.power(_promote(input, exponent), _promote(exponent, input))


def add(input, other, *, alpha=1):
    """``input + alpha * other`` (``torch.add``)."""
    x, y = _promote(input, other), _promote(other, input)
    return x + y if alpha == 1 else x + alpha * y


def sub(input, other, *, alpha=1):
    """``input - alpha * other`` (``torch.sub``)."""
    x, y = _promote(input, other), _promote(other, input)
    if jnp.result_type(x) == jnp.bool_ and jnp.result_type(y) == jnp.bool_:
        raise TypeError("sub: subtraction of two bool tensors is not supported; use logical_xor")
    return x - y if alpha == 1 else x - alpha * y


subtract = sub


def mul(input, other):
    """``input * other`` (``torch.mul``)."""
    return _promote(input, other) * _promote(other, input)


multiply = mul


def addcmul(input, tensor1, tensor2, *, value=1):
    """``input + value * tensor1 * tensor2`` (``torch.addcmul``)."""
    input, tensor1, tensor2 = jnp.asarray(input), jnp.asarray(tensor1), jnp.asarray(tensor2)
    return input + (tensor1 * tensor2 if value == 1 else value * tensor1 * tensor2)


def addcdiv(input, tensor1, tensor2, *, value=1):
    """``input + value * tensor1 / tensor2`` (``torch.addcdiv``); integer operands are refused,
    as torch refuses them."""
    input, tensor1, tensor2 = jnp.asarray(input), jnp.asarray(tensor1), jnp.asarray(tensor2)
    if not (_parse.is_floating(tensor1) or _parse.is_floating(tensor2)):
        raise ValueError("addcdiv: integer division of tensors is not supported; give tensor1 "
                        f"or tensor2 a float dtype, got {jnp.result_type(tensor1)} and "
                        f"{jnp.result_type(tensor2)}")
    quotient = tensor1 / tensor2
    return input + (quotient if value == 1 else value * quotient)

ROUNDING_MODES = (None, "trunc", "floor")


def div(input, other, *, rounding_mode=None):
    """``input / other`` (``torch.div``): true division (integers give float32), or rounded
    toward zero (``'trunc'``) or down (``'floor'``, Python's ``//``) in the operands' dtype."""
    if rounding_mode not in ROUNDING_MODES:
        raise ValueError(f"div: rounding_mode must be one of {ROUNDING_MODES}, got "
                         f"rounding_mode={rounding_mode!r}")
    x, y = _promote(input, other), _promote(other, input)
    if rounding_mode is None:
        if not (_parse.is_floating(x) or _parse.is_floating(y)):
            x = jnp.asarray(x, jnp.float32)
        return jnp.true_divide(x, y)
    if rounding_mode == "floor":
        return jnp.floor_divide(x, y)
    if _parse.is_floating(jnp.result_type(x, y)):
        return jnp.trunc(jnp.true_divide(x, y))
    dtype = jnp.result_type(x, y)
    return lax.div(jnp.asarray(x, dtype), jnp.asarray(y, dtype))


divide = true_divide = div


def floor_divide(input, other):
    """``div(input, other, rounding_mode='floor')`` (``torch.floor_divide``)."""
    return div(input, other, rounding_mode="floor")


def remainder(input, other):
    """Python's ``%``: the result has the divisor's sign (``torch.remainder``)."""
    return jnp.remainder(_promote(input, other), _promote(other, input))


def fmod(input, other):
    """C's ``fmod``: the result has the dividend's sign (``torch.fmod``)."""
    return jnp.fmod(_promote(input, other), _promote(other, input))


def maximum(input, other):
    """Elementwise maximum, NaN-propagating; ties split the gradient (``torch.maximum``)."""
    return jnp.maximum(input, other)


def minimum(input, other):
    """Elementwise minimum, NaN-propagating; ties split the gradient (``torch.minimum``)."""
    return jnp.minimum(input, other)


def clamp(input, min=None, max=None):
    """Clip to ``[min, max]`` (scalars or arrays, one may be ``None``) (``torch.clamp``).

    As in torch: ``min`` is applied first, so ``min > max`` gives ``max`` everywhere; NaN
    input stays NaN (with a zero gradient); the gradient reaches ``input`` wherever
    ``min <= x <= max`` (bounds included) and a tensor bound where it replaced ``x``.
    """
    if min is None and max is None:
        raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
    bound = min if isinstance(min, float) or max is None else max
    x = _promote(input, bound)
    lo = None if min is None else _promote(min, input)
    hi = None if max is None else _promote(max, input)
    inside = jnp.ones(jnp.shape(x), bool)
    y = lax.stop_gradient(x)  # reached only off the bounds or at NaN: no gradient to x there
    if lo is not None:
        inside = inside & (x >= lo)
        y = jnp.where(x < lo, lo, y)
    if hi is not None:
        inside = inside & (x <= hi)
        y = jnp.where(y > hi, hi, y)
    return jnp.where(inside, x, y)


clip = clamp


def clamp_min(input, min):
    """``clamp(input, min=min)`` (``torch.clamp_min``)."""
    return clamp(input, min=min)


def clamp_max(input, max):
    """``clamp(input, max=max)`` (``torch.clamp_max``)."""
    return clamp(input, max=max)
