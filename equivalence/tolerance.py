"""The tolerance policy: how far a correct float port may differ from torch, from the dtype and the reduction.

Every check compares one computation done by both sides on the *same* inputs (torch's recorded
inputs; see :mod:`equivalence.compare`), so the only legitimate difference is rounding in that
one computation. Its size follows the standard probabilistic rounding-error model of a sum of
``n`` products (errors of about ``eps`` per operation, accumulating like a random walk):

    |jax - torch|  <=  c * eps(dtype) * sqrt(n) * S        (elementwise)

with ``S`` the magnitude of the computation, i.e. the same op evaluated on absolute values:

- dot-product ops (Conv*, ConvTranspose*, Linear): ``S = |W| (*) |x| + |b|`` computed by
  running the layer itself with ``|weight|``, ``|bias|`` on ``|x|``; ``n`` is the number of
  products summed into each output element, counted by running the layer on ones.
- BatchNorm: ``S = |w| (|x| + |mean|) / sqrt(var + eps) + |b|`` with torch's statistics
  (batch statistics in training, running statistics in eval); ``n`` is the number of elements
  each statistic averages (0 in eval) plus the four elementwise operations.
- everything else (activations, pooling, resampling, flatten, and the glue code of a composite
  module such as a residual add): ``S`` is the op on absolute inputs (and absolute
  parameters); ``n`` is the number of operands or the reduction ratio
  ``max numel(input) / numel(output)``, whichever is larger, and at least 4 for a leaf layer
  (transcendental functions differ by up to ~2 ulp per side).
- gradients: the same rule for the backward of each layer: ``S`` is the vector-Jacobian product
  of the absolute-valued layer at ``|x|`` with the absolute cotangent ``|g|`` (torch's gradient
  of the loss with respect to that layer's output), ``n`` the number of terms it sums.

``c`` (:data:`C`) was chosen by measurement (tests/equivalence/test_sensitivity.py): float32
ports of the seed models reach at most a few percent of the tolerance while each planted bug
exceeds it by orders of magnitude.
"""
from __future__ import annotations

import numpy as np

#: The constant in ``c * eps * sqrt(n) * S``.
C = 4.0

#: The least ``n`` of an elementwise layer: library ``tanh``/``exp``/``erf`` are accurate to
#: about 2 ulp on each side, so two correct implementations may differ by ~4 eps relative.
ELEMENTWISE_N = 4.0

POLICY = (
    "tolerance = c * eps(dtype) * sqrt(n) * S elementwise, c = {c:g}. Each layer is checked locally: "
    "the jaxconv layer runs on torch's recorded input of that call, so the only allowed difference "
    "is the rounding of that one layer; composite modules are checked on their own code (the "
    "children's outputs replaced by torch's), so errors never propagate into a later check. "
    "S = magnitude of the computation: |W|*|x|+|b| for conv/linear (the layer run on absolute "
    "values), |w|(|x|+|mean|)/sqrt(var+eps)+|b| for BatchNorm, the op on absolute values otherwise; "
    "n = number of terms summed per element (conv/linear fan-in, BatchNorm reduction, pooling "
    "window or operand count). Gradients: S = the layer's vector-Jacobian product on absolute "
    "values with torch's |cotangent|, n its reduction length. ratio = max(|jax - torch| / tolerance); "
    "a check passes when ratio <= 1. The 'end-to-end' column is the free-running difference "
    "(jaxconv on its own inputs), for information."
)


def policy_text(c: float = C) -> str:
    """The policy as one paragraph, for reports and certificates."""
    return POLICY.format(c=c)


def eps(dtype) -> float:
    """Machine epsilon of a floating dtype (float32 for integer or unknown dtypes)."""
    dtype = np.dtype(dtype)
    return float(np.finfo(dtype if np.issubdtype(dtype, np.floating) else np.float32).eps)


def tolerance(scale, n, dtype, c: float = C) -> np.ndarray:
    """``c * eps(dtype) * sqrt(n) * scale`` (elementwise, float64), floored at the smallest normal.

    **Arguments:**

    - ``scale``: the magnitude ``S`` of the computation (array).
    - ``n``: reduction length (scalar or array broadcastable to ``scale``).
    - ``dtype``: the dtype the computation ran in.
    - ``c``: the policy constant.
    """
    scale = np.abs(np.asarray(scale, np.float64))
    n = np.maximum(np.asarray(n, np.float64), 1.0)
    tiny = float(np.finfo(np.dtype(dtype) if np.issubdtype(np.dtype(dtype), np.floating)
                          else np.float32).tiny)
    return c * eps(dtype) * np.sqrt(n) * scale + tiny


def reduction_ratio(inputs, output, operands: int = 1, floor: float = 1.0) -> float:
    """``n`` for non-dot ops: the operand count or ``max numel(input) / numel(output)``, at least ``floor``."""
    size = max(int(np.asarray(output).size), 1)
    ratio = max((int(np.asarray(a).size) / size for a in inputs), default=1.0)
    return max(float(operands), ratio, float(floor))


def errors(actual, expected, tol) -> dict:
    """Max abs error, max relative error, the worst error/tolerance ratio and its tolerance."""
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    if a.shape != e.shape:
        return {"max_abs": float("inf"), "max_rel": float("inf"), "tol": float("nan"),
                "ratio": float("inf"), "err_at": float("inf"), "note": f"shape {a.shape} != torch's {e.shape}"}
    if a.size == 0:
        return {"max_abs": 0.0, "max_rel": 0.0, "tol": 0.0, "ratio": 0.0, "err_at": 0.0, "note": ""}
    diff = np.abs(a - e)
    tol = np.broadcast_to(np.asarray(tol, np.float64), diff.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.isnan(diff), np.inf, diff / tol)
        # relative to |torch|, floored at eps * max|torch| so exact zeros do not divide by zero
        floor = max(float(np.max(np.abs(e))) * np.finfo(np.float32).eps, np.finfo(np.float64).tiny)
        rel = diff / np.maximum(np.abs(e), floor)
    i = int(np.argmax(ratio))
    return {"max_abs": float(np.nanmax(diff)) if not np.all(np.isnan(diff)) else float("nan"),
            "max_rel": float(np.max(np.where(diff == 0, 0.0, rel))),
            "tol": float(tol.flat[i]), "ratio": float(ratio.flat[i]), "err_at": float(diff.flat[i]),
            "note": ""}
