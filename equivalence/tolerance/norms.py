"""The error models of normalizations: BatchNorm, InstanceNorm, GroupNorm, LayerNorm, RMSNorm.

Each normalizes ``x`` by statistics over its own axes, ``y = w (x - mean) / sigma + b`` with
``sigma = sqrt(var + eps)``. Rounding the mean costs about ``eps mean|x|``, so ``x - mean``
is off by ``eps a`` with ``a = |x| + mean|x|``. The variance is computed in two passes (or
Welford's way, as torch does): the mean's error is common to all terms and cancels to first
order, and what is left is about ``eps mean(a |x - mean|)``, which reaches ``xhat`` divided by
``sigma^2``; so the bound is

    S = |w| (a / sigma + |xhat| mean(a |x - mean|) / sigma^2) + |b|

with ``n`` the elements each statistic averages plus 4. With running statistics (eval-mode
BatchNorm) nothing is averaged: ``a = |x| + |mean|`` and the variance term goes. The models read torch's module
(its ``eps``, ``normalized_shape``, ``num_groups``, running buffers), so they also bound a
torch subclass whose forward the translator turned into code (``traced``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._torch import to_numpy
from ._policy import Bound, LayerBounds, LayerCall, register
from ._policy import eps as machine_eps

#: torch LayerNorm subclasses that normalize over the channel axis of an ``(N, C, *)`` input.
CHANNELS_FIRST = {"LayerNorm2d", "LayerNormAct2d", "LayerNorm3d"}


def _array(a):
    return None if a is None else np.asarray(to_numpy(a), np.float64)


@dataclass(frozen=True)
class Geometry:
    """Where a normalization's statistics and affine parameters live for one input.

    ``view``: the shape ``x`` is seen in for the statistics (GroupNorm's ``(N, G, -1)``);
    ``axes``: the axes of ``view`` they average; ``affine``: the shape the per-element weight and
    bias are reshaped to (broadcasting against ``x``); ``center``: whether the mean is subtracted
    (not for RMSNorm); ``running``: fixed ``(mean, var)`` per channel instead of this input's."""

    view: tuple
    axes: tuple
    affine: tuple
    center: bool = True
    running: tuple | None = None

    def average(self, a):
        """``a`` averaged over the statistics' axes, broadcast back to ``a``'s shape."""
        v = np.asarray(a).reshape(self.view)
        return np.broadcast_to(v.mean(self.axes, keepdims=True), v.shape).reshape(np.shape(a))

    def count(self) -> int:
        """Elements each statistic averages (0 for running statistics)."""
        return 0 if self.running else int(np.prod([self.view[a] for a in self.axes]))


def _batch_axes(x) -> tuple:
    """The axes a per-channel batch statistic averages: all but the channel axis 1."""
    return (0,) + tuple(range(2, x.ndim)) if x.ndim > 1 else (0,)


def _module(call: LayerCall):
    """torch's module of the call, or the jaxconv layer where there is none."""
    return call.torch_module if call.torch_module is not None else call.module


def _channel(x, axis: int) -> tuple:
    shape = [1] * x.ndim
    shape[axis] = -1
    return tuple(shape)


def _batchnorm_geometry(m, x, train: bool) -> Geometry:
    """BatchNorm (and timm's BatchNormAct2d, torchvision's FrozenBatchNorm2d): per channel over
    the batch and spatial axes; running statistics in eval (always, for a frozen one)."""
    axes = _batch_axes(x)
    running = None
    mean = getattr(m, "running_mean", None)
    if mean is not None and not (train and hasattr(m, "momentum")):
        running = (_array(mean), _array(m.running_var))
    return Geometry(x.shape, axes, _channel(x, 1 if x.ndim > 1 else 0), running=running)


def _geometry(m, x, train: bool) -> Geometry:
    """The geometry of every other normalization, read from torch's module."""
    names = {c.__name__ for c in type(m).__mro__}
    if "_InstanceNorm" in names:
        spatial = m._get_no_batch_dim() - 1 if hasattr(m, "_get_no_batch_dim") else x.ndim - 2
        c = x.ndim - spatial - 1
        running = None
        if getattr(m, "running_mean", None) is not None and not train:
            running = (_array(m.running_mean), _array(m.running_var))
        return Geometry(x.shape, tuple(range(c + 1, x.ndim)), _channel(x, c), running=running)
    if "GroupNorm" in names:
        g = int(m.num_groups)
        return Geometry((x.shape[0], g, -1), (2,), _channel(x, 1))
    if names & CHANNELS_FIRST or getattr(m, "data_format", None) == "channels_first":
        return Geometry(x.shape, (1,), _channel(x, 1))
    k = len(tuple(m.normalized_shape))
    return Geometry(x.shape, tuple(range(x.ndim - k, x.ndim)), x.shape[x.ndim - k:],
                    center="RMSNorm" not in names)


def _eps(m, x) -> float:
    eps = getattr(m, "eps", None)
    return machine_eps(x.dtype) if eps is None else float(eps)


def _bounds(call: LayerCall, m, geo: Geometry) -> LayerBounds:
    """The forward bound of the module docstring for module ``m``, and with a cotangent the
    same bound carried through the normalization's backward."""
    x = np.asarray(call.inputs[0], np.float64)
    if geo.running:
        mean, var = (np.reshape(a, geo.affine) for a in geo.running)
    else:
        mean = geo.average(x) if geo.center else np.zeros_like(x)
        var = geo.average((x - mean) ** 2)
    w, b = _array(getattr(m, "weight", None)), _array(getattr(m, "bias", None))
    w = np.ones(()) if w is None else w.reshape(geo.affine)
    b = np.zeros(()) if b is None else b.reshape(geo.affine)
    sigma = np.sqrt(var + _eps(m, call.inputs[0]))
    count = geo.count()
    xhat = (x - mean) / sigma  # a computed mean is off by about eps mean|x|, a running one by nothing
    spread = np.abs(x) + (geo.average(np.abs(x)) if count else np.abs(mean))
    s = spread / sigma
    if count:  # the variance's rounding, relative to it, carried into xhat: the mean's own
        # error cancels from a two-pass variance (torch's and jaxconv's), each term's does not
        s = s + np.abs(xhat) * geo.average(spread * np.abs(x - mean)) / sigma ** 2
    scale = np.abs(w) * s + np.abs(b)
    forward = Bound(scale, count + 4, rounding=scale)  # reduced torch rounds scale and shift
    if call.cotangent is None:
        return LayerBounds(forward)
    ag, xh = np.abs(call.cotangent), np.abs(xhat)
    params = {}
    for name, grad in call.param_grads.items():  # summed over the axes the parameter broadcasts on
        # the weight's terms are g * xhat, and xhat is off by eps * s, not eps * |xhat|
        terms, shape = (ag * s, np.shape(w)) if name == "weight" else (ag, np.shape(b))
        shape = (1,) * (x.ndim - len(shape)) + shape
        axes = tuple(i for i, d in enumerate(shape) if d == 1)
        n = x.size // max(np.size(grad), 1)  # terms summed; the weight's also carry xhat's rounding
        params[name] = Bound(terms.sum(axes).reshape(np.shape(grad)), n + (count + 4 if name == "weight" else 0))
    agw = ag * np.abs(w)
    sx = (agw + geo.average(agw) + xh * geo.average(xh * agw)) / sigma if count else agw / sigma
    return LayerBounds(forward, params, Bound(sx, count + 4))


def _bn_buffers(torch_module, inputs, before) -> dict:
    """Per channel ``S = |previous| + mean|x|`` (running mean) or ``|previous| + mean((|x| +
    |mean|)^2)`` (running variance), ``n`` the elements averaged; the counter must be equal."""
    if getattr(torch_module, "running_mean", None) is None or not hasattr(torch_module, "momentum"):
        return {}
    s_mean, s_var, m = 0.0, 0.0, 1
    for x in inputs:
        x = x.astype(np.float64)
        axes = _batch_axes(x)
        m = x.size // max(x.shape[1 if x.ndim > 1 else 0], 1)
        mu = x.mean(axes, keepdims=True)
        s_mean = s_mean + np.abs(x).mean(axes)
        s_var = s_var + ((np.abs(x) + np.abs(mu)) ** 2).mean(axes) * m / max(m - 1, 1)
    prev = lambda name: np.abs(before.get(name, 0.0))  # noqa: E731
    return {"running_mean": Bound(prev("running_mean") + s_mean, m),
            "running_var": Bound(prev("running_var") + s_var, m),
            "num_batches_tracked": 0.5}


@register("batchnorm", match=("_BatchNorm", "FrozenBatchNorm2d"), buffers=_bn_buffers, traced=True,
          when=lambda m: hasattr(m, "running_mean") and hasattr(m, "use_running_average"))
def batchnorm(call: LayerCall) -> LayerBounds:
    """BatchNorm: statistics per channel over the batch and spatial axes (the batch's in
    training, the running ones in eval), bounded as the module docstring says."""
    m = _module(call)
    return _bounds(call, m, _batchnorm_geometry(m, np.asarray(call.inputs[0]), call.train))


@register("normalization", match=("_InstanceNorm", "GroupNorm", "LayerNorm", "RMSNorm"),
          buffers=_bn_buffers, traced=True)
def normalization(call: LayerCall) -> LayerBounds:
    """InstanceNorm (per instance and channel over the spatial axes), GroupNorm (per instance
    and group), LayerNorm and RMSNorm (over the trailing ``normalized_shape`` axes, or the
    channel axis for timm's ``LayerNorm2d`` and a ``data_format='channels_first'`` module),
    bounded as the module docstring says."""
    m = _module(call)
    return _bounds(call, m, _geometry(m, np.asarray(call.inputs[0]), call.train))
