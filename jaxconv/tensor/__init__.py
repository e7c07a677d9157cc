"""torch's tensor-level functions and methods on jax arrays: torch's names, argument names
and semantics (``dim``, ``keepdim``, ``chunk``'s piece sizes, ``max``'s three forms, ...).

Used as ``from jaxconv import tensor as T``: ``T.chunk(x, 3, dim=1)`` for
``torch.chunk(x, 3, dim=1)`` and ``x.chunk(3, dim=1)`` alike (the tensor is the first
argument). dtypes have torch's names (``T.float32``, ``T.int64``, ``T.bool``). Where torch accepts both ``x.reshape(2, 3)`` and ``x.reshape((2, 3))``, both work.
Errors are raised where torch raises: ``ValueError`` (``TypeError`` where torch raises one)
naming the function, the argument, the rule and the value.
"""
from jax.numpy import (bfloat16, float16, float32, float64, int8, int16, int32, int64,  # noqa: F401
                       uint8)
from jax.numpy import bool_ as bool  # noqa: A001  (torch.bool's name)

from .creation import (arange, empty, empty_like, eye, full, full_like, meshgrid, new_empty,
                       new_full, new_ones, new_tensor, new_zeros, ones, ones_like, tensor, to,
                       type_as, zeros, zeros_like)
from .index import flip, gather, index_select, masked_fill, roll, tril, triu, where
from .join import cat, chunk, concat, concatenate, narrow, split, stack, tensor_split, unbind
from .linalg import addmm, baddbmm, bmm, einsum, matmul, mm
from .pointwise import (abs, add, addcdiv, addcmul, ceil, clamp, clamp_max, clamp_min, clip, cos, div, divide, erf,
                        exp, expm1, floor, floor_divide, fmod, log, log1p, log2, maximum, minimum,
                        mul, multiply, neg, pow, reciprocal, remainder, round, rsqrt, sigmoid,
                        sign, sin, sqrt, square, sub, subtract, tanh, true_divide, trunc)
from .random import bernoulli, rand, rand_like, randn, randn_like
from .reduce import (ValuesIndices, all, amax, amin, any, argmax, argmin, cumprod, cumsum,
                     logsumexp, max, mean, min, norm, prod, std, sum, var)
from .shape import (broadcast_to, clone, contiguous, detach, dim, expand, expand_as, flatten,
                    movedim, numel, permute, repeat, repeat_interleave, reshape, size, squeeze,
                    swapaxes, swapdims, t, tile, transpose, unflatten, unsqueeze, view)
from .sort import argsort, sort, topk

__all__ = [name for name in dir() if not name.startswith("_")
           and name not in ("creation", "index", "join", "linalg", "pointwise", "random", "reduce",
                            "shape", "sort")]
