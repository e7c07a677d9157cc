"""Matrix products: ``matmul``, ``mm``, ``bmm``, ``baddbmm``, ``addmm``, ``einsum``.

All run at full float32 precision (``DEFAULT_PRECISION``, as ``F.linear`` and the convs);
XLA's default on GPU/TPU would use TF32/bf16 passes. Operands must share a dtype, as in
torch (which refuses float32 @ float64).
"""
from __future__ import annotations

import jax.numpy as jnp

from ..functional.conv import DEFAULT_PRECISION
from . import _parse
from .shape import expand


def _shapes(fn, a, b):
    return f"{fn}: {'x'.join(map(str, a.shape))} and {'x'.join(map(str, b.shape))}"


def matmul(input, other):
    """torch's (and numpy's) ``@``: 1-D operands gain then lose a dim, batch dims broadcast
    (``torch.matmul``)."""
    a, b = jnp.asarray(input), jnp.asarray(other)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both arguments need to be at least 1D, got {a.ndim}D and {b.ndim}D")
    _parse.check_same_dtype("matmul", a, other=b)
    k = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != k:
        raise ValueError(f"matmul: shapes cannot be multiplied ({_shapes('input, other', a, b)}): "
                         f"input's last dim ({a.shape[-1]}) must equal other's "
                         f"{'first' if b.ndim == 1 else 'second-to-last'} dim ({k})")
    try:
        jnp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dims must broadcast, got input of shape {a.shape} and "
                         f"other of shape {b.shape}") from None
    return jnp.matmul(a, b, precision=DEFAULT_PRECISION)


def mm(input, mat2):
    """``(n, m) @ (m, p)`` (``torch.mm``)."""
    a, b = jnp.asarray(input), jnp.asarray(mat2)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"mm: input and mat2 must be matrices, got input of shape {a.shape} and "
                         f"mat2 of shape {b.shape}")
    _parse.check_same_dtype("mm", a, mat2=b)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"mm: shapes cannot be multiplied ({_shapes('input, mat2', a, b)})")
    return jnp.matmul(a, b, precision=DEFAULT_PRECISION)


def bmm(input, mat2):
    """``(b, n, m) @ (b, m, p)``, no broadcasting (``torch.bmm``)."""
    a, b = jnp.asarray(input), jnp.asarray(mat2)
    if a.ndim != 3 or b.ndim != 3:
        raise ValueError(f"bmm: input and mat2 must be 3-D, got input of shape {a.shape} and mat2 "
                         f"of shape {b.shape}")
    _parse.check_same_dtype("bmm", a, mat2=b)
    if b.shape[:2] != (a.shape[0], a.shape[2]):
        raise ValueError(f"bmm: expected the first two dims of mat2 to be {[a.shape[0], a.shape[2]]}, "
                         f"got mat2 of shape {b.shape} for input of shape {a.shape}")
    return jnp.matmul(a, b, precision=DEFAULT_PRECISION)


def _scaled_add(fn, input, product, beta, alpha):
    """``beta * input + alpha * product``; ``input`` must expand to the product's shape and is
    ignored (NaN included) when ``beta == 0``, as in torch."""
    bias = expand(jnp.asarray(input), product.shape)
    _parse.check_same_dtype(fn, bias, product=product)
    out = product if alpha == 1 else alpha * product
    if beta == 0:
        return out
    return out + (bias if beta == 1 else beta * bias)


def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """``beta * input + alpha * bmm(batch1, batch2)`` (``torch.baddbmm``)."""
    return _scaled_add("baddbmm", input, bmm(batch1, batch2), beta, alpha)


def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """``beta * input + alpha * mm(mat1, mat2)`` (``torch.addmm``)."""
    return _scaled_add("addmm", input, mm(mat1, mat2), beta, alpha)


def einsum(equation, *operands):
    """Einstein summation (``torch.einsum``): ``einsum('ij,jk->ik', a, b)``, torch's list form
    ``einsum('ij,jk', [a, b])``, and the sublist form ``einsum(a, [0, 1], b, [1, 2])``."""
    if not isinstance(equation, str):
        return jnp.einsum(equation, *operands, precision=DEFAULT_PRECISION)
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise ValueError(f"einsum: must provide at least one operand, got equation {equation!r}")
    arrays = [jnp.asarray(x) for x in operands]
    _parse.check_same_dtype("einsum", arrays[0], **{f"operand {i}": x for i, x in enumerate(arrays[1:], 1)})
    return jnp.einsum(equation.replace(" ", ""), *arrays, precision=DEFAULT_PRECISION)
