"""``pad`` with torch's four modes and its argument rules, negative pads included."""
from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jax import lax

from .._autocast import cast
from . import _args

PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(input, pad: Sequence[int], mode: str = "constant", value=None):
    """Pads ``input`` as ``torch.nn.functional.pad``.

    **Arguments:**

    - ``input``: an array.
    - ``pad``: ``(left_last, right_last, left_2nd_last, right_2nd_last, ...)``: pairs for the
      trailing dimensions, the last dimension first. Negative entries crop.
    - ``mode``: ``'constant'`` (any rank, up to ``input.ndim`` dimensions padded),
      ``'reflect'`` (mirror without repeating the edge; each pad < the dimension's size),
      ``'replicate'`` (repeat the edge) or ``'circular'`` (wrap around; each pad <= size).
      The last three pad 1, 2 or 3 trailing dimensions of a ``(C, *s)`` or ``(N, C, *s)`` input.
    - ``value``: fill for ``'constant'`` (default 0); other modes accept only ``None`` or 0.

    As in torch, constant/reflect/replicate pad first and then crop negative entries, while
    circular crops first and then wraps.
    """
    pad = tuple(pad)
    if len(pad) % 2 or not all(_args.is_int(p) for p in pad):
        raise ValueError(f"pad must be a sequence of an even number of ints, got pad={pad!r}")
    pad = tuple(int(p) for p in pad)
    if mode not in PAD_MODES:
        raise ValueError(f"mode must be one of {PAD_MODES}, got mode={mode!r}")
    k = len(pad) // 2
    if k > input.ndim:
        raise ValueError(
            f"pad has {len(pad)} entries, which pad {k} dimensions, but the input has only "
            f"{input.ndim} dimensions (shape {tuple(input.shape)})"
        )
    pairs = tuple((pad[2 * i], pad[2 * i + 1]) for i in reversed(range(k)))
    if mode == "constant":
        return pad_pairs(input, pairs, mode, 0 if value is None else value)
    if value is not None and value != 0:
        raise ValueError(f"pad: mode={mode!r} takes no value argument, got value={value!r}")
    if k > 3 or input.ndim not in (k + 1, k + 2):
        raise ValueError(
            f"pad: mode={mode!r} pads 1, 2 or 3 trailing dimensions of a (C, *s) or (N, C, *s) "
            f"input: {len(pad)} pad entries need a {k + 1}D or {k + 2}D input, got shape "
            f"{tuple(input.shape)}"
        )
    if mode != "circular":  # torch's reflection_pad{k}d / replication_pad{k}d (autocast: float32)
        (input,) = cast(f"{'reflection' if mode == 'reflect' else 'replication'}_pad{k}d", input)
    return pad_pairs(input, pairs, mode)


def pad_pairs(x, pairs, mode: str, value=0):
    """Pad the trailing ``len(pairs)`` dimensions by ``(lo, hi)`` pairs, in natural order.

    ``mode`` is a ``pad`` mode, or a conv ``padding_mode`` (``'zeros'`` is ``'constant'``).
    """
    n = len(pairs)
    spatial = x.shape[x.ndim - n:]
    lead = [(0, 0)] * (x.ndim - n)
    if mode in ("constant", "zeros"):
        out = [s + lo + hi for s, (lo, hi) in zip(spatial, pairs)]
        _check_nonempty(out, spatial, pairs, mode)
        config = [(0, 0, 0)] * (x.ndim - n) + [(lo, hi, 0) for lo, hi in pairs]
        return lax.pad(x, jnp.asarray(value, x.dtype), config)
    if mode == "circular":
        cropped = tuple(s + min(lo, 0) + min(hi, 0) for s, (lo, hi) in zip(spatial, pairs))
        for dim, (c, (lo, hi)) in enumerate(zip(cropped, pairs)):
            if max(lo, hi) > c:
                raise ValueError(
                    f"pad: circular padding {(lo, hi)} of trailing dimension {dim} wraps around "
                    f"more than once: each pad must be <= the (cropped) size {c}"
                )
        x = _crop(x, pairs)
        return jnp.pad(x, lead + [(max(lo, 0), max(hi, 0)) for lo, hi in pairs], mode="wrap")
    for dim, (s, (lo, hi)) in enumerate(zip(spatial, pairs)):
        if mode == "reflect" and max(lo, hi) >= s:
            raise ValueError(
                f"pad: reflect padding {(lo, hi)} of trailing dimension {dim} must be smaller "
                f"than that dimension's size {s} (input shape {tuple(x.shape)})"
            )
        if mode == "replicate" and s == 0 and max(lo, hi) > 0:
            raise ValueError(f"pad: replicate padding needs a non-empty dimension, got shape {tuple(x.shape)}")
    _check_nonempty([s + lo + hi for s, (lo, hi) in zip(spatial, pairs)], spatial, pairs, mode)
    widths = lead + [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
    x = jnp.pad(x, widths, mode="reflect") if mode == "reflect" else _pad_edge(x, widths)
    return _crop(x, pairs)


def _pad_edge(x, widths):
    """``jnp.pad(x, widths, mode="edge")`` (the same concatenations), touching only the padded
    axes: ``jnp.pad`` slices every axis's edges, which JAX cannot shard when the batch axis is
    sharded over ``Explicit`` mesh axes."""
    for axis, (lo, hi) in enumerate(widths):
        if lo or hi:
            n = x.shape[axis]
            x = jnp.concatenate([jnp.repeat(lax.slice_in_dim(x, 0, 1, axis=axis), lo, axis),
                                 x, jnp.repeat(lax.slice_in_dim(x, n - 1, n, axis=axis), hi, axis)],
                                axis)
    return x


def _check_nonempty(out, spatial, pairs, mode):
    if any(o < (0 if mode in ("constant", "zeros") else 1) for o in out):
        raise ValueError(
            f"pad: pads {tuple(pairs)} (trailing dimensions, natural order) on sizes "
            f"{tuple(spatial)} leave output sizes {tuple(out)}; mode={mode!r} needs every size >= "
            f"{0 if mode in ('constant', 'zeros') else 1}"
        )


def _crop(x, pairs):
    n = len(pairs)
    index = [slice(None)] * (x.ndim - n) + [
        slice(-min(lo, 0), x.shape[x.ndim - n + i] + min(hi, 0)) for i, (lo, hi) in enumerate(pairs)
    ]
    return x[tuple(index)]
