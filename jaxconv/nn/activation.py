"""Activation modules: torch's constructor signatures, defaults and reprs.

Each is a thin wrapper of the function of the same name in ``jaxconv.functional``;
``inplace=`` is accepted, shown in the repr where torch shows it, and ignored.
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from ..functional import activation as F
from . import init
from .module import Module


class _Activation(Module):
    """An elementwise activation with torch's repr: ``_fields`` are its configuration, in
    constructor order, and ``_show_inplace`` whether torch's repr shows ``inplace=True``."""

    _fields: tuple[str, ...] = ()
    _show_inplace = True

    def __init__(self, inplace: bool = False):
        self.inplace = inplace

    def extra_repr(self) -> str:
        parts = [f"{f}={getattr(self, f)!r}" for f in self._fields]
        if self._show_inplace and self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)

    def _kwargs(self):
        return {f: getattr(self, f) for f in self._fields}

    def __call__(self, x):
        """Applies the activation elementwise (the softmax modules: along ``dim``).

        **Arguments:** ``x``: any shape ``(*)``.

        **Returns:** ``(*)``, the shape of ``x`` (and its dtype, for a floating ``x``).
        """
        return self._fn(x, **self._kwargs())


class _NoArgs(_Activation):
    """An activation without arguments, not even ``inplace`` (``Sigmoid``, ``Tanh``)."""

    def __init__(self):
        self.inplace = False


class ReLU(_Activation):
    """``max(0, x)`` (``torch.nn.ReLU``). **Arguments:** ``inplace`` (ignored)."""

    _fn = staticmethod(F.relu)


class ReLU6(_Activation):
    """``min(max(0, x), 6)`` (``torch.nn.ReLU6``). **Arguments:** ``inplace`` (ignored)."""

    _fn = staticmethod(F.relu6)


class SELU(_Activation):
    """Scaled ELU with torch's constants (``torch.nn.SELU``). **Arguments:** ``inplace`` (ignored)."""

    _fn = staticmethod(F.selu)


class SiLU(_Activation):
    """``x * sigmoid(x)`` (``torch.nn.SiLU``). **Arguments:** ``inplace`` (ignored)."""

    _fn = staticmethod(F.silu)


class Mish(_Activation):
    """``x * tanh(softplus(x))`` (``torch.nn.Mish``). **Arguments:** ``inplace`` (ignored)."""

    _fn = staticmethod(F.mish)


class Hardswish(_Activation):
    """``x * relu6(x + 3) / 6`` (``torch.nn.Hardswish``).

    **Arguments:** ``inplace`` (ignored; not shown in the repr, as torch).
    """

    _show_inplace = False
    _fn = staticmethod(F.hardswish)


class Hardsigmoid(_Activation):
    """``relu6(x + 3) / 6`` (``torch.nn.Hardsigmoid``).

    **Arguments:** ``inplace`` (ignored; not shown in the repr, as torch).
    """

    _show_inplace = False
    _fn = staticmethod(F.hardsigmoid)


class Sigmoid(_NoArgs):
    """Logistic sigmoid (``torch.nn.Sigmoid``)."""

    _fn = staticmethod(F.sigmoid)


class Tanh(_NoArgs):
    """Hyperbolic tangent (``torch.nn.Tanh``)."""

    _fn = staticmethod(F.tanh)


class LeakyReLU(_Activation):
    """``x`` where ``x > 0``, else ``negative_slope * x`` (``torch.nn.LeakyReLU``).

    **Arguments:** ``negative_slope`` (0.01), ``inplace`` (ignored).
    """

    _fields = ("negative_slope",)
    _fn = staticmethod(F.leaky_relu)

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False):
        self.negative_slope, self.inplace = negative_slope, inplace


class ELU(_Activation):
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)`` (``torch.nn.ELU``).

    **Arguments:** ``alpha`` (1.0), ``inplace`` (ignored).
    """

    _fields = ("alpha",)
    _fn = staticmethod(F.elu)

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        self.alpha, self.inplace = alpha, inplace


class CELU(ELU):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`` (``torch.nn.CELU``).

    **Arguments:** ``alpha`` (1.0, not 0), ``inplace`` (ignored).
    """

    _fn = staticmethod(F.celu)


class GELU(_Activation):
    """Gaussian error linear unit (``torch.nn.GELU``).

    **Arguments:** ``approximate``: ``'none'`` (exact erf form, the default) or ``'tanh'``.
    """

    _fields = ("approximate",)
    _fn = staticmethod(F.gelu)

    def __init__(self, approximate: str = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(
                f"GELU: approximate argument must be either 'none' or 'tanh', got {approximate!r}"
            )
        self.approximate, self.inplace = approximate, False


class Hardtanh(_Activation):
    """Clamp to ``[min_val, max_val]`` (``torch.nn.Hardtanh``).

    **Arguments:** ``min_val`` (-1.0), ``max_val`` (1.0, greater than ``min_val``),
    ``inplace`` (ignored).
    """

    _fields = ("min_val", "max_val")
    _fn = staticmethod(F.hardtanh)

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        if not max_val > min_val:
            raise ValueError(f"Hardtanh: max_val ({max_val}) must be greater than min_val ({min_val})")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace


class Softplus(_Activation):
    """``log(1 + exp(beta * x)) / beta``, linear where ``beta * x > threshold`` (``torch.nn.Softplus``).

    **Arguments:** ``beta`` (1.0), ``threshold`` (20.0).
    """

    _fields = ("beta", "threshold")
    _fn = staticmethod(F.softplus)

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        self.beta, self.threshold, self.inplace = beta, threshold, False


class Softmax(_Activation):
    """Softmax along ``dim`` (``torch.nn.Softmax``).

    **Arguments:** ``dim``: the axis; ``None`` applies torch's deprecated implicit choice.
    """

    _fields = ("dim",)
    _fn = staticmethod(F.softmax)

    def __init__(self, dim: int | None = None):
        self.dim, self.inplace = dim, False


class LogSoftmax(Softmax):
    """Log of the softmax along ``dim`` (``torch.nn.LogSoftmax``).

    **Arguments:** ``dim``: the axis; ``None`` applies torch's deprecated implicit choice.
    """

    _fn = staticmethod(F.log_softmax)


class Softmin(Softmax):
    """Softmax of ``-x`` along ``dim`` (``torch.nn.Softmin``).

    **Arguments:** ``dim``: the axis; ``None`` applies torch's deprecated implicit choice.
    """

    _fn = staticmethod(F.softmin)


class PReLU(Module):
    """Leaky ReLU with a learned negative slope (``torch.nn.PReLU``).

    **Arguments:**

    - ``num_parameters``: 1 (one shared slope) or the channel count ``C`` (dim 1 of the input).
    - ``init``: initial slope (0.25).
    - ``dtype``: parameter dtype (float32 when ``None``); ``rngs`` is accepted and unused.

    Parameter: ``weight`` ``(num_parameters,)``.
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, dtype=None, *, rngs=None):
        self.num_parameters = num_parameters
        self.weight = nnx.Param(jnp.full((num_parameters,), init, _dtype(dtype)))

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"

    def __call__(self, x):
        """Computes ``max(0, x) + weight * min(0, x)``.

        **Arguments:** ``x``: any shape ``(*)``; with ``num_parameters = C`` it is ``(N, C, *)``
        and channel ``c`` (dim 1) uses ``weight[c]``; one shared slope otherwise.

        **Returns:** ``(*)``, the shape of ``x``.
        """
        return F.prelu(x, self.weight[...])


def _dtype(dtype):
    return init.default_dtype(dtype)
