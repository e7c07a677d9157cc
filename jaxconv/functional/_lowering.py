"""Faster lowerings of particular convolutions, chosen per case by ``conv.py``.

Each function here computes exactly what the default lowering in ``conv.py`` computes
(the same sums, in another order), on already-validated arguments: ``x`` batched
``(N, C, *spatial)``, torch's weight layouts, ``pads`` as ``(lo, hi)`` pairs. The rules
in :func:`pick_conv` and :func:`pick_conv_transpose` say when each one is used; they
were set by measurement (``python -m benchmarks``) on XLA:CPU, where

* a depthwise conv through ``feature_group_count`` runs 30-150x slower than the same
  work as k*k shifted multiply-adds, which XLA fuses into one loop over the output; its
  gradient is given in the same form (the transpose rule of the primitive in
  ``_depthwise.py``: automatic transposition of the slices was another 10-40x slower);
* a 1x1 conv is a matrix product, which in torch's channels-first layout needs no
  transposes at all (one product per sample on large images, so that the gradients
  need none either);
* a strided transposed conv through ``lhs_dilation`` multiplies mostly inserted zeros;
  the sub-pixel (phase) decomposition below does only the useful products;
* a bfloat16 conv is computed in float32 (XLA converts its operands first), while a bfloat16
  matrix product runs natively; so a bfloat16 conv with many input channels is faster as one
  product per kernel tap (:func:`conv_taps`).
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax._src import config as _config
from jax.custom_derivatives import SymbolicZero

from . import _args
from ._depthwise import depthwise_conv
from ._sharding import reshape

_TAPS_MIN_CIN = 16
"""Convs with fewer input channels than this (a network's first conv) keep XLA's own weight
gradient, which is then faster than the per-tap products (measured 1.2-3x on the ResNet and
MobileNetV2 stems). So do convs whose kernel is odd in every dimension: XLA:CPU's kernel
gradient is 1.2-3x faster than the per-tap products for ResNet's 3x3 convs at 56..7, but
15-70x slower for even kernels (the 2x2 sub-kernels of the phase transposed convs)."""

_POINTWISE_BATCHED_MIN = 512
"""1x1 convs over at least this many pixels per image use one matrix product per sample."""

_MAX_SHIFTS = 49
"""Depthwise kernels with more taps than this use the default lowering (graph size)."""

_BF16_TAPS_MIN_CIN = 128
"""bfloat16 convs (``groups == 1``) with at least this many input channels are computed as one
bfloat16 matrix product per kernel tap, accumulated in float32 and rounded once
(:func:`conv_taps`).

XLA:CPU (jaxlib 0.10.2) has no bfloat16 convolution: its float normalization converts a bfloat16
conv's operands to float32 and YNNPACK runs a float32 conv, whose optimized HLO is the same as
that of "float32 inside on the bfloat16 operands, rounded once" (so that form gains nothing), and
no flag (``xla_cpu_use_onednn``, ``xla_cpu_experimental_onednn_custom_call``, the ynn / xnn /
onednn fusion types; in ``XLA_FLAGS``, or per function in ``jax.jit``'s ``compiler_options``,
which refuses the fusion-type lists) changes that. A bfloat16 ``dot_general`` with a float32
``preferred_element_type``, however, stays bfloat16 into YNNPACK (the CPU's avx512_bf16), 2.0x
faster than the float32 product (8x512@512x1000, 6272x1152@1152x128, 1024x768@768x3072). Per-tap
products, batch 8, median of 9 interleaved rounds on the shared 2-core VM (ms; XLA's conv vs
taps): 3x3 128@28 26 vs 17 (0.66x), 3x3/2 128->256@28 17.8 vs 8.5 (0.48x), 3x3 256@14 36 vs 14
(0.39x), 3x3/2 256->512@14 23.8 vs 10.1 (0.42x), 3x3 512@7 31 vs 12.8 (0.41x); with 64 input
channels the products are too thin: 3x3 64@56 45 vs 85 (1.9x slower), 3x3/2 64->128@56 15.4 vs
12.9 (0.84x); the 7x7/2 stem (3 channels) is 20x slower as taps. Two more runs gave 0.63x and
0.80x at 28, 0.57x at 14, 0.42x at 7, 1.8x and 2.6x at 56 with 64 channels, and 0.63x and 1.18x
for the 64-channel stride-2 conv (so no rule for it: within the spread). Single rounds spread by
about +-30% (other processes share the cores); every ratio adopted is beyond it. Folding the
kernel's rows or the whole window into the channels (im2col: one product with ``K = k*k*C_in``)
was no faster than the taps and 3.3x slower at 56x56; a 2x2 space-to-depth (2x2 taps with 4x the
channels, 1.8x the multiply-adds) was 1.7x slower than XLA's conv there. 1x1 convs already are one
product (:func:`pointwise`). float16 products are converted to float32 like the convs, so float16
keeps the conv. ResNet-18 forward, batch 8, 11-15 interleaved rounds (load 2-8): 0.76-1.05x the
time before under autocast (five runs, median 0.83x), 0.78x and 0.83x as a bfloat16 model; a
threshold of 64 was no better."""


# ---------------------------------------------------------------------------- selection
MODES = ("auto", "xla", "jaxconv")

_MODE = _config.optional_enum_state(
    name="jaxconv_lowering", enum_values=list(MODES), default=None,
    help="jaxconv.functional.lowering's mode (None: auto); part of jit's cache key.",
    include_in_jit_key=True, include_in_trace_context=True)


@contextlib.contextmanager
def lowering(mode: str = "auto"):
    """Choose how convolutions lower within the block (read when a function is traced).

    - ``"auto"`` (the default): on CPU the lowerings below, chosen by measurement on XLA:CPU;
      on any other backend (GPU, TPU) XLA's own convolution, whose libraries those measurements
      do not describe.
    - ``"xla"``: XLA's own ``conv_general_dilated`` everywhere (groups, 1x1 and strided
      transposed convs included).
    - ``"jaxconv"``: the measured lowerings on every backend.

    The values are the same up to the order of float sums. Wrap the call (or the whole jitted
    step), not the definition: like ``jaxconv.autocast``, the mode is part of jit's cache key.
    """
    if mode not in MODES:
        raise ValueError(f"lowering: mode must be one of {MODES}, got mode={mode!r}")
    with _MODE(None if mode == "auto" else mode):
        yield


def measured() -> bool:
    """Whether the lowerings measured on XLA:CPU apply to what is being traced."""
    mode = _MODE.value
    return mode == "jaxconv" or (mode is None and jax.default_backend() == "cpu")


def pick_conv(x_shape, weight_shape, pads, groups, dtype=None) -> str:
    """Name of the lowering for a conv of ``dtype`` operands: ``'depthwise'``, ``'pointwise'``,
    ``'taps'`` (bfloat16, many input channels), ``'nhwc'`` (groups == 1, a faster weight
    gradient) or ``'default'`` (XLA's conv)."""
    if not measured():
        return "default"
    c_in = x_shape[1]
    kernel = weight_shape[2:]
    if groups > 1 and groups == c_in and math.prod(kernel) <= _MAX_SHIFTS:
        return "depthwise"
    if groups == 1 and all(k == 1 for k in kernel) and all(p == (0, 0) for p in pads):
        return "pointwise"
    if groups == 1 and str(dtype) == "bfloat16" and c_in >= _BF16_TAPS_MIN_CIN:
        return "taps"
    return "nhwc" if groups == 1 else "default"


def pick_conv_transpose(stride, dilation, groups) -> str:
    """Name of the lowering for a transposed conv: ``'phase'`` or ``'default'``."""
    if measured() and groups == 1 and any(s > 1 for s in stride) and all(d == 1 for d in dilation):
        return "phase"
    return "default"


# ---------------------------------------------------------------------------- depthwise
def depthwise(x, weight, stride, pads, dilation):
    r"""Depthwise conv (``groups == C_in``, any channel multiplier) as shifted multiply-adds.

    Output channel ``o`` reads input channel ``o // m`` (``m = C_out / C_in``), so
    ``y[:, o] = sum_k w[o, 0, k] * xpad[:, o // m, s*i + d*k]``: one strided slice of the
    padded input per kernel tap, scaled per channel and summed. Everything stays in
    torch's ``(N, C, *spatial)`` layout. The padded input is materialised once
    (``optimization_barrier``) so that the fused loop reads it without bounds checks.

    With a stride, the padded input is first split into its ``s`` phases per dimension
    (``xph[r][m] = xpad[s*m + r]``), so that every tap reads a contiguous slice.

    It is one primitive (:mod:`._depthwise`) whose transpose is given in the same form
    (automatic transposition of the slices gives k*k bounds-checked pads in one loop, 20-40x
    slower on XLA:CPU): the input gradient is, per phase, a sum of stride-1 shifted slices of
    the output gradient times the taps of that phase, interleaved back; the weight gradient is
    one variadic reduction that reads the padded input and the output gradient once for all
    k*k taps. Its JVP is two more depthwise convs, so ``jax.jvp``, ``jacfwd`` and ``hessian``
    work as well as ``jax.grad``.

    float16/bfloat16 operands are computed in float32 (:func:`~._dtypes.opmath`); the caller
    rounds the result.
    """
    c_out = weight.shape[0]
    m = c_out // x.shape[1]
    dtype = _args.opmath(jnp.result_type(x, weight))  # float16/bfloat16 products are exact in float32
    if m > 1:
        x = jnp.repeat(x, m, axis=1)
    return depthwise_conv(x.astype(dtype), weight[:, 0].astype(dtype), stride, pads, dilation)


# ---------------------------------------------------------------------------- pointwise
def pointwise(x, weight, stride, precision=None, acc=None):
    """1x1 conv (no padding, ``groups == 1``) as one matrix product in channels-first layout.

    ``y[n, o, *p] = sum_c w[o, c] * x[n, c, *(s*p)]``: subsample by the stride, then contract
    channels with a batched matrix product; no transposes around it. ``acc``: the
    ``preferred_element_type`` (float32 for float16/bfloat16).
    """
    if any(s > 1 for s in stride):
        x = x[(slice(None), slice(None), *(slice(None, None, s) for s in stride))]
    n_batch, c_in, *spatial = x.shape
    w = weight.reshape(weight.shape[:2]).astype(jnp.result_type(x, weight))
    size = math.prod(spatial)
    x = reshape(x, (n_batch, c_in, size))
    if size >= _POINTWISE_BATCHED_MIN:
        # one (o, c) @ (c, S) product per sample: output and both gradients come out in
        # (N, C, S) layout without transposes (2-4x faster at 56x56 and 112x112)
        wb = jnp.broadcast_to(w, (n_batch, *w.shape))
        y = lax.dot_general(wb, x, (((2,), (1,)), ((0,), (0,))), precision=precision,
                            preferred_element_type=acc)
    else:
        # small images: one (o, c) @ (c, N*S) product is better than N small ones
        y = jnp.matmul(w, x, precision=precision, preferred_element_type=acc)
    return reshape(y, (n_batch, weight.shape[0], *spatial))


# ---------------------------------------------------------------------------- phase
def conv_transpose_phase(x, weight, stride, padding, out_size, precision=None, acc=None):
    r"""Strided transposed conv (``groups == 1``, ``dilation == 1``) by sub-pixel phases.

    Per dimension, the uncropped output index ``q = o + p`` collects ``x[i] * w[k]`` with
    ``i*s + k = q``. Writing ``q = m*s + r`` (phase ``r`` in ``[0, s)``) and ``k = r + s*t``
    gives ``y[m*s + r] = sum_t x[m - t] * w[r + s*t]``: for each phase, a stride-1 "full"
    correlation of ``x`` with the sub-kernel ``w[r::s]``, flipped. All ``prod(s)`` phases
    share one conv whose output channels are ``(phase, C_out)`` (sub-kernels zero-padded
    to ``K_c = ceil(K/s)`` taps); the phases are then interleaved (depth-to-space) and the
    result cropped by ``p`` at the start. No multiplication by an inserted zero happens.
    """
    n = x.ndim - 2
    c_in, c_out, *kernel = weight.shape
    kc = [-(-k // s) for k, s in zip(kernel, stride)]
    # w_sub[t..., c_in, phase..., c_out] = w[c_in, c_out, r + s*t] (zero beyond K), flipped in t.
    w = jnp.pad(weight, ((0, 0), (0, 0), *((0, kk * s - k) for kk, s, k in zip(kc, stride, kernel))))
    w = w.reshape(c_in, c_out, *itertools.chain.from_iterable((kk, s) for kk, s in zip(kc, stride)))
    # axes now: c_in, c_out, t1, r1, t2, r2, ...
    t_axes = [2 + 2 * i for i in range(n)]
    r_axes = [3 + 2 * i for i in range(n)]
    w = jnp.flip(w, t_axes)
    w = jnp.transpose(w, (*t_axes, 0, *r_axes, 1))  # (t..., c_in, r..., c_out)
    rhs = w.reshape(*kc, c_in, math.prod(stride) * c_out)
    # Number of phase rows needed to cover o + p for every output o.
    rows = [-(-(p + o) // s) for p, o, s in zip(padding, out_size, stride)]
    pads = [(kk - 1, r - i) for kk, r, i in zip(kc, rows, x.shape[2:])]
    z = conv_nhwc(jnp.moveaxis(x, 1, -1), rhs, (1,) * n, pads, (1,) * n, precision, acc)
    # z: (N, *rows, r..., c_out) with the last axis flattened
    N = x.shape[0]
    z = reshape(z, (N, *rows, *stride, c_out))
    # interleave: (N, m1, m2, r1, r2, C) -> (N, C, m1, r1, m2, r2)
    perm = [0, 2 * n + 1]
    for i in range(n):
        perm += [1 + i, 1 + n + i]
    z = reshape(jnp.transpose(z, perm), (N, c_out, *(r * s for r, s in zip(rows, stride))))
    crop = tuple(slice(p, p + o) for p, o in zip(padding, out_size))
    return z[(slice(None), slice(None), *crop)]


# ---------------------------------------------------------------------------- fast kernel gradient
def conv_nhwc(x, rhs, stride, pads, dilation, precision=None, acc=None):
    """``lax.conv_general_dilated`` (NHWC / HWIO, ``groups == 1``) with a faster weight gradient.

    The value is XLA's conv. Its derivative is given as a custom JVP whose part linear in
    the weight is one matrix product per kernel tap,
    ``dy[n, p] = sum_k xpad[n, s*p + d*k, :] @ dw[k]``; reverse mode transposes it into
    ``gw[k] = sum_{n,p} xpad[n, s*p + d*k, :]^T gy[n, p, :]``, again matrix products.
    XLA:CPU otherwise computes the weight gradient as a convolution whose window is the
    whole output, measured 15-70x slower for even kernels. With fewer than ``_TAPS_MIN_CIN``
    input channels (a network's first conv), or a kernel odd in every dimension, XLA's own
    gradient is the faster one and is kept. The input gradient stays XLA's: for a strided conv
    an ``lhs_dilation`` conv, which XLA:CPU leaves to Eigen. Its phase form (a stride-1 conv over
    the input's phases, which YNNPACK takes) was measured slower and not adopted
    (benchmarks/README.md, "XLA:CPU library paths"). Symbolic-zero tangents are skipped (no conv
    of zeros for an undifferentiated input).
    ``acc``: the ``preferred_element_type`` (float32 for float16/bfloat16 operands).
    """
    args = (tuple(stride), tuple(map(tuple, pads)), tuple(dilation), precision, acc)
    if x.shape[-1] < _TAPS_MIN_CIN or all(k % 2 for k in rhs.shape[:x.ndim - 2]):
        return _plain_conv(x, rhs, *args)
    return _conv_nhwc(x, rhs, *args)


def _plain_conv(x, rhs, stride, pads, dilation, precision, acc):
    return lax.conv_general_dilated(x, rhs, stride, pads, rhs_dilation=dilation,
                                    dimension_numbers=_args.dimension_numbers(x.ndim - 2),
                                    precision=precision, preferred_element_type=acc)


def _taps_matmul(x, rhs, stride, pads, dilation, precision, acc):
    """The same conv as a sum over kernel taps of ``(N*P, C_in) @ (C_in, C_out)`` products."""
    n = x.ndim - 2
    xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)))
    kernel = rhs.shape[:n]
    out = _args.window_count(x.shape[1:-1], pads, kernel, stride, dilation)
    total = None
    for taps in itertools.product(*(range(k) for k in kernel)):
        start = (0, *(t * d for t, d in zip(taps, dilation)), 0)
        limit = (xp.shape[0], *(t * d + (o - 1) * s + 1 for t, d, o, s in zip(taps, dilation, out, stride)),
                 xp.shape[-1])
        piece = lax.slice(xp, start, limit, (1, *stride, 1))
        term = lax.dot_general(piece, rhs[taps], (((n + 1,), (0,)), ((), ())), precision=precision,
                               preferred_element_type=acc)
        total = term if total is None else total + term
    return total


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv_nhwc(x, rhs, stride, pads, dilation, precision, acc):
    return _plain_conv(x, rhs, stride, pads, dilation, precision, acc)


def _tangent(y, x, rhs, dx, drhs, args, weight_part):
    """The conv's tangent: XLA's conv of ``dx`` plus ``weight_part`` of ``drhs``. Symbolic zeros
    are skipped: a network's first conv has no input tangent, and a zero tangent instantiated
    here would cost a whole forward conv of zeros."""
    terms = []
    if not isinstance(dx, SymbolicZero):
        terms.append(_plain_conv(dx, rhs, *args))
    if not isinstance(drhs, SymbolicZero):
        terms.append(weight_part(x, drhs, *args))
    if not terms:
        return y, jnp.zeros_like(y)
    return y, functools.reduce(jnp.add, terms)


def _conv_nhwc_jvp(stride, pads, dilation, precision, acc, primals, tangents):
    args = (stride, pads, dilation, precision, acc)
    y = _plain_conv(*primals, *args)
    return _tangent(y, *primals, *tangents, args, _taps_matmul)


_conv_nhwc.defjvp(_conv_nhwc_jvp, symbolic_zeros=True)


# ---------------------------------------------------------------------------- bfloat16 taps
def conv_taps(x, rhs, stride, pads, dilation, precision=None, acc=None):
    """A bfloat16 conv (NHWC / HWIO, ``groups == 1``) as one bfloat16 product per kernel tap.

    ``y[n, p] = sum_k xpad[n, s*p + d*k, :] @ w[k]``: each product multiplies bfloat16 operands
    and accumulates in float32 (``acc``), the taps are summed in float32 and the caller rounds
    once, so the value is XLA's conv (float32 on the same operands) up to the order of the
    float32 sums. XLA:CPU runs these products in bfloat16 (:data:`_BF16_TAPS_MIN_CIN` has the
    measurements) but converts a conv to float32. The derivative is the one of
    :func:`conv_nhwc` (XLA's conv for the input; per-tap products for an even kernel's weight),
    given as a custom JVP, so the gradients are unchanged and forward mode works.
    """
    args = (tuple(stride), tuple(map(tuple, pads)), tuple(dilation), precision, acc)
    return _conv_taps(x, rhs, *args)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv_taps(x, rhs, stride, pads, dilation, precision, acc):
    return _taps_matmul(x, rhs, stride, pads, dilation, precision, acc)


def _conv_taps_jvp(stride, pads, dilation, precision, acc, primals, tangents):
    args = (stride, pads, dilation, precision, acc)
    x, rhs = primals
    y = _taps_matmul(x, rhs, *args)
    odd = all(k % 2 for k in rhs.shape[:x.ndim - 2])
    return _tangent(y, x, rhs, *tangents, args, _plain_conv if odd else _taps_matmul)


_conv_taps.defjvp(_conv_taps_jvp, symbolic_zeros=True)
