"""Matrix products: ``matmul``, ``mm``, ``bmm``, ``baddbmm``, ``addmm``, ``einsum``.

All run at full float32 precision (``DEFAULT_PRECISION``, as ``F.linear`` and the convs);
XLA's default on GPU/TPU would use TF32/bf16 passes. Operands must share a dtype, as in
torch (which refuses float32 @ float64). float16/bfloat16 products accumulate in float32 and
round once (``baddbmm``/``addmm`` after the scaled add), as torch's CPU kernels do; under
:func:`jaxconv.autocast` the operands are cast first.
"""
from __future__ import annotations

import jax.numpy as jnp

from .._autocast import cast
from ..functional._dtypes import accumulator
from ..functional.conv import DEFAULT_PRECISION
from ..functional.linear import product
from . import _parse
from .shape import expand


def _shapes(fn, a, b):
    return f"{fn}: {'x'.join(map(str, a.shape))} and {'x'.join(map(str, b.shape))}"


def matmul(input, other):
    """torch's (and numpy's) ``@``: 1-D operands gain then lose a dim, batch dims broadcast
    (``torch.matmul``)."""
    a, b = cast("matmul", jnp.asarray(input), jnp.asarray(other))
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
    return product(a, b).astype(a.dtype)


def mm(input, mat2):
    """``(n, m) @ (m, p)`` (``torch.mm``)."""
    out, dtype = _mm("mm", input, mat2)
    return out.astype(dtype)


def _mm(fn, input, mat2):
    """The checked, autocast ``mm`` of ``fn`` (``mm``/``addmm``) before rounding, and its dtype."""
    a, b = cast(fn, jnp.asarray(input), jnp.asarray(mat2))
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{fn}: input and mat2 must be matrices, got input of shape {a.shape} and "
                         f"mat2 of shape {b.shape}")
    _parse.check_same_dtype(fn, a, mat2=b)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"{fn}: shapes cannot be multiplied ({_shapes('input, mat2', a, b)})")
    return product(a, b), a.dtype


def bmm(input, mat2):
    """``(b, n, m) @ (b, m, p)``, no broadcasting (``torch.bmm``)."""
    out, dtype = _bmm("bmm", input, mat2)
    return out.astype(dtype)


def _bmm(fn, input, mat2):
    """The checked, autocast ``bmm`` of ``fn`` (``bmm``/``baddbmm``) before rounding, and its dtype."""
    a, b = cast(fn, jnp.asarray(input), jnp.asarray(mat2))
    if a.ndim != 3 or b.ndim != 3:
        raise ValueError(f"{fn}: input and mat2 must be 3-D, got input of shape {a.shape} and mat2 "
                         f"of shape {b.shape}")
    _parse.check_same_dtype(fn, a, mat2=b)
    if b.shape[:2] != (a.shape[0], a.shape[2]):
        raise ValueError(f"{fn}: expected the first two dims of mat2 to be {[a.shape[0], a.shape[2]]}, "
                         f"got mat2 of shape {b.shape} for input of shape {a.shape}")
    return product(a, b), a.dtype


def _scaled_add(fn, input, product, dtype, beta, alpha):
    """``beta * input + alpha * product`` rounded once to ``dtype``; ``input`` must expand to the
    product's shape and is ignored (NaN included) when ``beta == 0``, as in torch."""
    bias = expand(cast(fn, jnp.asarray(input))[0], product.shape)
    _parse.check_same_dtype(fn, bias, product=jnp.zeros((), dtype))
    out = product if alpha == 1 else alpha * product
    if beta != 0:
        out = out + (bias if beta == 1 else beta * bias)
    return out.astype(dtype)


def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """``beta * input + alpha * bmm(batch1, batch2)`` (``torch.baddbmm``)."""
    return _scaled_add("baddbmm", input, *_bmm("baddbmm", batch1, batch2), beta, alpha)


def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """``beta * input + alpha * mm(mat1, mat2)`` (``torch.addmm``)."""
    return _scaled_add("addmm", input, *_mm("addmm", mat1, mat2), beta, alpha)


def einsum(equation, *operands):
    """Einstein summation (``torch.einsum``): ``einsum('ij,jk->ik', a, b)``, torch's list form
    ``einsum('ij,jk', [a, b])``, and the sublist form ``einsum(a, [0, 1], b, [1, 2])``."""
    if not isinstance(equation, str):
        arrays = cast("einsum", *(x for x in (equation, *operands) if hasattr(x, "dtype")))
        it = iter(arrays)
        args = [next(it) if hasattr(x, "dtype") else x for x in (equation, *operands)]
        return _einsum(*args, dtype=arrays[0].dtype)
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise ValueError(f"einsum: must provide at least one operand, got equation {equation!r}")
    arrays = cast("einsum", *(jnp.asarray(x) for x in operands))
    _parse.check_same_dtype("einsum", arrays[0], **{f"operand {i}": x for i, x in enumerate(arrays[1:], 1)})
    return _einsum(equation.replace(" ", ""), *arrays, dtype=arrays[0].dtype)


def _einsum(*args, dtype):
    return jnp.einsum(*args, precision=DEFAULT_PRECISION,
                      preferred_element_type=accumulator(dtype)).astype(dtype)
