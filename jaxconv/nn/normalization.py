"""Normalization modules: torch's constructor signatures, parameter and buffer names.

BatchNorm and InstanceNorm hold their running statistics as ``nnx.BatchStat`` buffers
and update them in place in training mode (``use_running_average=False``, the state at
construction, like torch's train mode); ``model.eval()`` switches to the running
statistics. The updates are ordinary NNX state changes, so they propagate out of
``nnx.jit`` / ``nnx.grad``.
"""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
from flax import nnx

from ..functional import _args, normalization as F
from . import init
from .module import Module


def _long_zero():
    """torch's ``num_batches_tracked``: an int64 scalar (int32 when JAX's x64 is off)."""
    return jnp.zeros((), jax.dtypes.canonicalize_dtype(jnp.int64))


class _NormBase(Module):
    """Parameters, buffers, mode and repr shared by BatchNorm and InstanceNorm."""

    _n: int

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=None, *,
                 bias: bool = True, rngs=None):
        """Builds a ``BatchNorm{1,2,3}d`` with torch's arguments.

        **Arguments:**

        - ``num_features``: channels ``C`` of the ``(N, C, *spatial)`` input.
        - ``eps``: added to the variance.
        - ``momentum``: running-stat update factor; ``None`` is a cumulative average
          (factor ``1 / num_batches_tracked``).
        - ``affine``: learn ``weight`` (ones) and ``bias`` (zeros); ``bias=False`` drops the bias.
        - ``track_running_stats``: keep ``running_mean``, ``running_var`` and
          ``num_batches_tracked`` buffers; without them batch statistics are used in eval too.
        - ``dtype``: parameter and buffer dtype (float32 when ``None``).
        - ``rngs``: accepted for a uniform signature; nothing is random.
        """
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        dtype = init.default_dtype(dtype)
        self.weight = nnx.Param(jnp.ones((num_features,), dtype)) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_features,), dtype)) if affine and bias else None
        if track_running_stats:
            self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), dtype))
            self.running_var = nnx.BatchStat(jnp.ones((num_features,), dtype))
            self.num_batches_tracked = nnx.BatchStat(_long_zero())
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self.use_running_average = False

    @property
    def training(self) -> bool:
        """torch's ``training`` flag: ``not use_running_average`` (settable, as in torch)."""
        return not self.use_running_average

    @training.setter
    def training(self, mode: bool):
        self.use_running_average = not mode

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")

    def reset_running_stats(self) -> None:
        """torch's ``reset_running_stats``: running mean 0, running variance 1, no batches."""
        if self.track_running_stats:
            self.running_mean[...] = jnp.zeros_like(self.running_mean[...])
            self.running_var[...] = jnp.ones_like(self.running_var[...])
            self.num_batches_tracked[...] = jnp.zeros_like(self.num_batches_tracked[...])

    def _params(self):
        return (None if self.weight is None else self.weight[...],
                None if self.bias is None else self.bias[...])

    def _running(self):
        if self.running_mean is None:
            return None, None
        return self.running_mean[...], self.running_var[...]

    def _store(self, new_mean, new_var):
        self.running_mean[...] = new_mean
        self.running_var[...] = new_var


class _BatchNorm(_NormBase):
    """The batch normalization modules ``BatchNorm1d``, ``BatchNorm2d``, ``BatchNorm3d``.

    Mode: ``use_running_average`` (``False`` at construction = torch's train mode);
    ``model.eval()`` / ``model.train()`` set it. In training mode each call normalises with
    the batch statistics and updates the buffers in place.
    """

    def _sync_axis(self):
        """The replica axis whose statistics a training call shares: none for BatchNorm."""
        return None

    def _check_input_dim(self, x):
        n = self._n
        ok = (2, 3) if n == 1 else (n + 2,)
        if getattr(x, "ndim", None) not in ok:
            want = " or ".join(f"{d}D" for d in ok)
            raise ValueError(f"{type(self).__name__}: expected {want} input (got {x.ndim}D input)")

    def __call__(self, x):
        """Normalises each channel over the batch and spatial dims, then applies the affine.

        **Arguments:** ``x``: ``(N, C)`` or ``(N, C, L)`` (``BatchNorm1d``), ``(N, C, H, W)``
        (``BatchNorm2d``) or ``(N, C, D, H, W)`` (``BatchNorm3d``), ``C = num_features``.

        **Returns:** the shape of ``x``. Training (``use_running_average=False``, as built): the
        batch mean and biased variance, and ``running_mean``, ``running_var`` (with the unbiased
        variance) and ``num_batches_tracked`` updated in place. Eval (``model.eval()``): the
        running statistics, or the batch ones without ``track_running_stats``.
        """
        self._check_input_dim(x)
        training = not self.use_running_average
        update = training and self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if update:
            count = self.num_batches_tracked[...] + 1
            self.num_batches_tracked[...] = count
            if self.momentum is None:
                momentum = 1.0 / count
        running_mean, running_var = self._running()
        out = F.batch_norm(x, running_mean, running_var, *self._params(),
                           training or running_mean is None, momentum, self.eps,
                           axis_name=self._sync_axis() if training else None)
        if not update:
            return out
        y, new_mean, new_var = out
        self._store(new_mean, new_var)
        return y


class _InstanceNorm(_NormBase):
    """The instance normalization modules ``InstanceNorm1d``, ``InstanceNorm2d``, ``InstanceNorm3d``.

    Input ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``; each instance and channel is
    normalised over its spatial axes.

    **Arguments:** as the BatchNorm modules, with torch's defaults ``affine=False`` and
    ``track_running_stats=False``. With running statistics, training mode updates them
    (``momentum=None`` means no update, as in torch; ``num_batches_tracked`` is kept but not
    counted) and eval mode normalises with them.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False, dtype=None, *,
                 bias: bool = True, rngs=None):
        """Builds an ``InstanceNorm{1,2,3}d``: the arguments of the BatchNorm modules, with
        torch's defaults ``affine=False`` and ``track_running_stats=False``."""
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype,
                         bias=bias, rngs=rngs)

    def __call__(self, x):
        """Normalises each sample's channels over their spatial dims, then applies the affine.

        **Arguments:** ``x``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``, ``*spatial``
        ``(L,)``, ``(H, W)`` or ``(D, H, W)``; ``C`` must be ``num_features`` with ``affine``
        (otherwise a mismatch warns, as in torch).

        **Returns:** the shape of ``x``. With ``track_running_stats``, training updates the
        running statistics in place (not with ``momentum=None``) and eval normalises with them;
        without, both modes use the instance statistics.
        """
        n, name = self._n, type(self).__name__
        ndim = getattr(x, "ndim", None)
        if ndim not in (n + 1, n + 2):
            raise ValueError(f"{name}: expected {n + 1}D or {n + 2}D input (got {ndim}D input)")
        feature_dim = ndim - (n + 1)
        if x.shape[feature_dim] != self.num_features:
            if self.affine:
                raise ValueError(
                    f"{name}: expected input's size at dim={feature_dim} to match num_features "
                    f"({self.num_features}), but got: {x.shape[feature_dim]}."
                )
            warnings.warn(
                f"input's size at dim={feature_dim} does not match num_features. You can silence "
                "this warning by not passing in num_features, which is not used because affine=False",
                stacklevel=2)
        unbatched = ndim == n + 1
        if unbatched:
            x = x[None]
        weight, bias = self._params()
        running_mean, running_var = self._running()
        use_input_stats = not self.use_running_average or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        out = F.instance_norm(x, running_mean, running_var, weight, bias, use_input_stats,
                              momentum, self.eps)
        if isinstance(out, tuple):
            out, new_mean, new_var = out
            self._store(new_mean, new_var)
        return out[0] if unbatched else out


class GroupNorm(Module):
    """Group normalization (``torch.nn.GroupNorm``).

    **Arguments:**

    - ``num_groups``: groups the ``num_channels`` channels are split into (must divide it).
    - ``num_channels``: channels ``C`` of the ``(N, C, *)`` input.
    - ``eps``: added to the variance.
    - ``affine``: learn per-channel ``weight`` (ones) and ``bias`` (zeros); ``bias=False``
      drops the bias.
    - ``dtype``: parameter dtype (float32 when ``None``); ``rngs`` is accepted and unused.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, dtype=None, *, bias: bool = True, rngs=None):
        _args.check_num_groups(num_groups, num_channels)
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        dtype = init.default_dtype(dtype)
        self.weight = nnx.Param(jnp.ones((num_channels,), dtype)) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_channels,), dtype)) if affine and bias else None

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")

    def __call__(self, x):
        """Normalises each of the ``num_groups`` channel groups, then applies the affine.

        **Arguments:** ``x``: ``(N, C, *)``, ``C = num_channels``, at least 2 dims.

        **Returns:** the shape of ``x``.
        """
        return F.group_norm(x, self.num_groups, None if self.weight is None else self.weight[...],
                            None if self.bias is None else self.bias[...], self.eps)


def _shape_arg(normalized_shape) -> tuple[int, ...]:
    if _args.is_int(normalized_shape):
        return (int(normalized_shape),)
    return F._normalized_shape(normalized_shape, "normalized_shape")


class LayerNorm(Module):
    """Layer normalization over the trailing ``normalized_shape`` axes (``torch.nn.LayerNorm``).

    **Arguments:**

    - ``normalized_shape``: int or tuple of the trailing sizes.
    - ``eps``: added to the variance.
    - ``elementwise_affine``: learn ``weight`` (ones) and, with ``bias``, ``bias`` (zeros),
      both of ``normalized_shape``.
    - ``dtype``: parameter dtype (float32 when ``None``); ``rngs`` is accepted and unused.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype=None, *, rngs=None):
        self.normalized_shape = _shape_arg(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        dtype = init.default_dtype(dtype)
        shape = self.normalized_shape
        self.weight = nnx.Param(jnp.ones(shape, dtype)) if elementwise_affine else None
        self.bias = nnx.Param(jnp.zeros(shape, dtype)) if elementwise_affine and bias else None

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")

    def __call__(self, x):
        """Normalises ``x`` over its last ``len(normalized_shape)`` dims, then applies the affine.

        **Arguments:** ``x``: ``(*, *normalized_shape)``, any leading dims (torch writes
        ``(N, *)``).

        **Returns:** the shape of ``x``.
        """
        return F.layer_norm(x, self.normalized_shape,
                            None if self.weight is None else self.weight[...],
                            None if self.bias is None else self.bias[...], self.eps)


class RMSNorm(Module):
    """Root-mean-square normalization over the trailing axes (``torch.nn.RMSNorm``).

    **Arguments:**

    - ``normalized_shape``: int or tuple of the trailing sizes.
    - ``eps``: ``None`` means the machine epsilon of the input's dtype, as torch.
    - ``elementwise_affine``: learn ``weight`` (ones) of ``normalized_shape``.
    - ``dtype``: parameter dtype (float32 when ``None``); ``rngs`` is accepted and unused.
    """

    def __init__(self, normalized_shape, eps: float | None = None,
                 elementwise_affine: bool = True, dtype=None, *, rngs=None):
        self.normalized_shape = _shape_arg(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        dtype = init.default_dtype(dtype)
        self.weight = nnx.Param(jnp.ones(self.normalized_shape, dtype)) if elementwise_affine else None

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")

    def __call__(self, x):
        """Divides ``x`` by its RMS over the last ``len(normalized_shape)`` dims, times ``weight``.

        **Arguments:** ``x``: ``(*, *normalized_shape)``, any leading dims.

        **Returns:** the shape and dtype of ``x``.
        """
        return F.rms_norm(x, self.normalized_shape,
                          None if self.weight is None else self.weight[...], self.eps)


class LocalResponseNorm(Module):
    """Local response normalization across channels (``torch.nn.LocalResponseNorm``).

    **Arguments:** ``size`` (channels in the window), ``alpha``, ``beta``, ``k`` as in
    ``jaxconv.functional.local_response_norm``.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

    def __call__(self, x):
        """Divides ``x`` by ``(k + alpha * mean of x**2 over size neighbouring channels) ** beta``.

        **Arguments:** ``x``: ``(N, C, *)``, at least 3 dims.

        **Returns:** the shape of ``x``.
        """
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)


class BatchNorm1d(_BatchNorm):
    """Batch normalization of ``(N, C)`` or ``(N, C, L)`` input (``torch.nn.BatchNorm1d``)."""

    _n = 1


class BatchNorm2d(_BatchNorm):
    """Batch normalization of ``(N, C, H, W)`` input (``torch.nn.BatchNorm2d``)."""

    _n = 2


class BatchNorm3d(_BatchNorm):
    """Batch normalization of ``(N, C, D, H, W)`` input (``torch.nn.BatchNorm3d``)."""

    _n = 3


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization of ``(N, C, L)`` or ``(C, L)`` input (``torch.nn.InstanceNorm1d``)."""

    _n = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization of ``(N, C, H, W)`` or ``(C, H, W)`` input (``torch.nn.InstanceNorm2d``)."""

    _n = 2


class InstanceNorm3d(_InstanceNorm):
    """Instance normalization of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` input
    (``torch.nn.InstanceNorm3d``)."""

    _n = 3
