"""``torch.optim.swa_utils``: weight averaging (SWA and EMA) and BatchNorm statistics refresh.

:class:`AveragedModel` holds a copy of a model and folds the model's parameters (and, with
``use_buffers=True``, its buffers) into a running average on each :meth:`~AveragedModel.
update_parameters`, with torch's arithmetic:

* the default (no ``avg_fn`` / ``multi_avg_fn``) is torch's SWA on CPU,
  ``averaged + (current - averaged) / (n_averaged + 1)`` per tensor (bit for bit);
* :func:`get_ema_multi_avg_fn` is torch's ``_foreach_lerp_`` with weight ``1 - decay``
  (torch's ``lerp``: ``start + w * (end - start)`` for ``|w| < 0.5``, otherwise
  ``end - (end - start) * (1 - w)``, in float32 for float32 / half / bfloat16 tensors);
  :func:`get_ema_avg_fn` is ``decay * averaged + (1 - decay) * current``;
* integer buffers (``num_batches_tracked``) are averaged in float32 and truncated toward zero on
  the way back, as torch's ``copy_`` into an int64 tensor does.

Parameters are ``nnx.Param`` variables and buffers ``nnx.BatchStat`` ones (jaxconv's BatchNorm
statistics), paired between the two models by their path. The averaging functions here are
functional: ``avg_fn(averaged, current, n_averaged) -> new`` and
``multi_avg_fn(averaged_list, current_list, n_averaged) -> new_list`` (torch's ``multi_avg_fn``
writes in place and returns nothing). ``update_parameters`` also runs inside ``nnx.jit``.

``SWALR`` (the SWA learning-rate scheduler) belongs with the schedulers of
:mod:`jaxconv.optim.lr_scheduler` and is not here.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from ..nn.module import Module
from ..nn.normalization import _BatchNorm, _long_zero

__all__ = ["AveragedModel", "get_ema_avg_fn", "get_ema_multi_avg_fn", "get_swa_avg_fn",
           "get_swa_multi_avg_fn", "update_bn"]


def _opmath(x):
    """``x`` in torch's compute dtype for it: float32 for integers (torch's default dtype, which
    an integer tensor times a Python float gives) and for half / bfloat16."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return x.astype(jnp.float32)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _lerp(start, end, weight):
    """torch's ``lerp`` kernel in float32 opmath, rounded back to ``start``'s dtype."""
    s, e = _opmath(start), _opmath(end)
    w = jnp.asarray(weight, s.dtype)
    out = jnp.where(jnp.abs(w) < 0.5, s + w * (e - s), e - (e - s) * (1 - w))
    return out.astype(jnp.asarray(start).dtype)


def _divide(x, scalar):
    """``x / scalar`` correctly rounded, as torch divides by a 0-d tensor.

    XLA's algebraic simplifier rewrites ``x / broadcast(s)`` into ``x * (1 / s)`` (two roundings;
    measured: 1 in 5 float32 elements off by an ulp for ``s = 3``); an optimization barrier on
    the broadcast divisor keeps the division."""
    x = jnp.asarray(x)
    return x / lax.optimization_barrier(jnp.broadcast_to(jnp.asarray(scalar, x.dtype), x.shape))


def _check_decay(decay):
    if decay < 0.0 or decay > 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in [0,1] "
                         f"range.")


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable:
    """torch's EMA over lists: ``lerp(averaged, current, 1 - decay)`` for floating tensors,
    ``averaged * decay + current * (1 - decay)`` (float32, truncated back) for integer ones.

    **Returns:** ``fn(averaged_list, current_list, n_averaged) -> new_list``.
    """
    _check_decay(decay)
    weight = 1 - decay  # in Python double, rounded once to float32 by the kernel, as torch's

    def ema_update(averaged, current, num_averaged):
        del num_averaged
        if jnp.issubdtype(jnp.asarray(averaged[0]).dtype, jnp.inexact):
            return [_lerp(a, c, weight) for a, c in zip(averaged, current, strict=True)]
        return [_opmath(a) * decay + _opmath(c) * weight for a, c in zip(averaged, current, strict=True)]

    return ema_update


def get_swa_multi_avg_fn() -> Callable:
    """torch's SWA over lists: ``lerp(averaged, current, 1 / (n_averaged + 1))`` (the weight a
    float32 value), as torch runs it on CUDA; integer tensors are refused, as torch refuses them.

    **Returns:** ``fn(averaged_list, current_list, n_averaged) -> new_list``.
    """
    def swa_update(averaged, current, num_averaged):
        if not jnp.issubdtype(jnp.asarray(averaged[0]).dtype, jnp.inexact):
            raise TypeError("get_swa_multi_avg_fn: integer tensors cannot be averaged (torch's "
                            "addcdiv refuses integer division); use the default averaging, "
                            "get_swa_avg_fn, or use_buffers=False")
        weight = 1 / _opmath(jnp.asarray(num_averaged) + 1)
        return [_lerp(a, c, weight) for a, c in zip(averaged, current, strict=True)]

    return swa_update


def get_ema_avg_fn(decay: float = 0.999) -> Callable:
    """torch's EMA of one tensor: ``decay * averaged + (1 - decay) * current``.

    **Returns:** ``fn(averaged, current, n_averaged) -> new``.
    """
    _check_decay(decay)

    def ema_update(ema_param, current_param, num_averaged):
        del num_averaged
        if jnp.issubdtype(jnp.asarray(ema_param).dtype, jnp.inexact):
            return decay * ema_param + (1 - decay) * current_param
        return decay * _opmath(ema_param) + (1 - decay) * _opmath(current_param)

    return ema_update


def get_swa_avg_fn() -> Callable:
    """torch's SWA of one tensor: ``averaged + (current - averaged) / (n_averaged + 1)``.

    **Returns:** ``fn(averaged, current, n_averaged) -> new``.
    """
    def swa_update(averaged_param, current_param, num_averaged):
        count = jnp.asarray(num_averaged) + 1
        averaged_param = jnp.asarray(averaged_param)
        if jnp.issubdtype(averaged_param.dtype, jnp.inexact):
            return averaged_param + _divide(current_param - averaged_param, count)
        diff = _opmath(current_param - averaged_param)  # torch: long / long -> float32
        return _opmath(averaged_param) + _divide(diff, count)
    return swa_update


def _variables(module, kinds) -> dict[tuple, nnx.Variable]:
    """``path -> Variable`` for the variables of ``kinds`` in ``module`` (shared ones once)."""
    return {path: node for path, node in nnx.iter_graph(module) if isinstance(node, kinds)}


def _pairs(mine, theirs, what: str) -> list[tuple[nnx.Variable, nnx.Variable]]:
    """The variables of the averaged copy and of the model, matched by path."""
    if mine.keys() != theirs.keys():
        missing = sorted(".".join(map(str, k)) for k in mine.keys() - theirs.keys())
        extra = sorted(".".join(map(str, k)) for k in theirs.keys() - mine.keys())
        raise ValueError(f"AveragedModel.update_parameters: the model's {what} do not match the "
                         f"averaged copy's (missing from the model: {missing}; not in the copy: "
                         f"{extra}); pass the model the AveragedModel was built from")
    out = []
    for path, var in mine.items():
        other = theirs[path]
        if var.get_value().shape != other.get_value().shape:
            raise ValueError(f"AveragedModel.update_parameters: {'.'.join(map(str, path))} has shape "
                             f"{other.get_value().shape} in the model but "
                             f"{var.get_value().shape} in the averaged copy")
        out.append((var, other))
    return out


def _concrete(x) -> bool | None:
    try:
        return bool(x)
    except jax.errors.ConcretizationTypeError:
        return None


def _average(avg_fn, multi_avg_fn, avg: list, cur: list, n) -> list:
    """The new averaged values (not yet cast to their dtypes), as torch's update_parameters."""
    if avg_fn is not None:
        return [avg_fn(a, c, n) for a, c in zip(avg, cur)]
    groups: dict[Any, list[int]] = {}
    for i, a in enumerate(avg):  # torch groups by (device, dtype), in first-seen order
        groups.setdefault(jnp.asarray(a).dtype, []).append(i)
    new = [None] * len(avg)
    for index in groups.values():
        a, c = [avg[i] for i in index], [cur[i] for i in index]
        if multi_avg_fn is not None:
            out = list(multi_avg_fn(a, c, n))
        else:  # torch on CPU: get_swa_avg_fn tensor by tensor
            swa = get_swa_avg_fn()
            out = [swa(x, y, n) for x, y in zip(a, c)]
        for i, value in zip(index, out):
            new[i] = value
    return new


class AveragedModel(Module):
    """A running average of a model's weights (``torch.optim.swa_utils.AveragedModel``).

    **Arguments:**

    - ``model``: the ``nnx.Module`` to average; ``module`` is a deep copy of it.
    - ``device``: optionally a ``jax.Device`` or sharding the copy is placed on.
    - ``avg_fn``: ``fn(averaged, current, n_averaged) -> new`` per tensor, e.g.
      :func:`get_ema_avg_fn`; ``None`` with no ``multi_avg_fn`` is SWA's equal average.
    - ``multi_avg_fn``: ``fn(averaged_list, current_list, n_averaged) -> new_list`` over the
      tensors of one dtype, e.g. :func:`get_ema_multi_avg_fn`. Not together with ``avg_fn``.
    - ``use_buffers``: also average the buffers (BatchNorm's running statistics and
      ``num_batches_tracked``); otherwise they are copied from ``model`` on every update.

    State: ``module`` (the averaged copy) and ``n_averaged`` (int buffer, torch's name, so the
    state_dict is torch's ``AveragedModel``'s). The first update copies the model.
    """

    def __init__(self, model: nnx.Module, device=None, avg_fn: Callable | None = None,
                 multi_avg_fn: Callable | None = None, use_buffers: bool = False):
        if avg_fn is not None and multi_avg_fn is not None:
            raise ValueError("AveragedModel: only one of avg_fn and multi_avg_fn should be "
                             "provided, got both")
        self.module = copy.deepcopy(model)
        if device is not None:
            nnx.update(self.module, jax.device_put(nnx.state(self.module), device))
        self.n_averaged = nnx.BatchStat(_long_zero())
        self.avg_fn, self.multi_avg_fn, self.use_buffers = avg_fn, multi_avg_fn, use_buffers

    def extra_repr(self) -> str:
        return f"use_buffers={self.use_buffers}" if self.use_buffers else ""

    def __call__(self, *args, **kwargs):
        """The averaged copy's forward: ``self.module(*args, **kwargs)``."""
        return self.module(*args, **kwargs)

    def update_parameters(self, model: nnx.Module) -> None:
        """Fold ``model``'s parameters (and buffers with ``use_buffers``) into the average.

        The first call (``n_averaged == 0``) copies them; later calls apply the averaging
        function. Without ``use_buffers`` the buffers are copied from ``model``. Then
        ``n_averaged`` grows by one. Works eagerly and inside ``nnx.jit``.
        """
        kinds = (nnx.Param, nnx.BatchStat) if self.use_buffers else nnx.Param
        pairs = _pairs(_variables(self.module, kinds), _variables(model, kinds),
                       "parameters and buffers" if self.use_buffers else "parameters")
        n = self.n_averaged.get_value()
        first = _concrete(n == 0)
        if first:
            new = [c.get_value() for _, c in pairs]
        else:
            new = _average(self.avg_fn, self.multi_avg_fn, [a.get_value() for a, _ in pairs],
                           [c.get_value() for _, c in pairs], n)
            if first is None:  # traced: choose at run time, copying exactly on the first update
                new = [jnp.where(n == 0, jnp.asarray(c.get_value()).astype(v.dtype), v.astype(
                    jnp.asarray(a.get_value()).dtype)) for (a, c), v in zip(pairs, map(jnp.asarray, new))]
        for (a, _), value in zip(pairs, new):
            a.set_value(jnp.asarray(value).astype(a.get_value().dtype))
        if not self.use_buffers:  # keep the buffers in sync with the source model
            for a, c in _pairs(_variables(self.module, nnx.BatchStat),
                               _variables(model, nnx.BatchStat), "buffers"):
                a.set_value(jnp.asarray(c.get_value()).astype(a.get_value().dtype))
        self.n_averaged.set_value(n + 1)


def _is_training(model) -> bool:
    """torch's ``model.training``: the model's own flag, else that of a submodule that has one
    (jaxconv's BatchNorm and Dropout do; ``model.train()`` / ``eval()`` set them all)."""
    if hasattr(model, "training"):
        return bool(model.training)
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module) and hasattr(node, "training"):
            return bool(node.training)
    return True


def update_bn(loader: Iterable, model: nnx.Module, device=None) -> None:
    """Recompute every BatchNorm's running statistics over ``loader`` (torch's ``update_bn``).

    Resets ``running_mean`` / ``running_var`` / ``num_batches_tracked``, sets ``momentum=None``
    (the cumulative average over the batches), runs the model in training mode over the loader,
    then restores the momenta and the model's previous training / eval mode (the whole model set
    to it, as torch's ``model.train(was_training)`` does).

    **Arguments:**

    - ``loader``: an iterable of batches: arrays, or tuples / lists whose first item is the input.
    - ``model``: an ``nnx.Module`` (an :class:`AveragedModel` too); without BatchNorm nothing runs.
    - ``device``: optionally a ``jax.Device`` or sharding each input is put on.
    """
    norms = [node for _, node in nnx.iter_graph(model) if isinstance(node, _BatchNorm)]
    if not norms:
        return
    for bn in norms:
        bn.reset_running_stats()
    momenta = [bn.momentum for bn in norms]
    was_training = _is_training(model)
    Module.train(model, True)
    for bn in norms:
        bn.momentum = None
    forward = nnx.jit(lambda m, x: m(x))  # the buffers' updates flow out of nnx.jit
    for batch in loader:
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        if device is not None:
            batch = jax.device_put(batch, device)
        forward(model, batch)
    for bn, momentum in zip(norms, momenta):
        bn.momentum = momentum
    Module.train(model, was_training)
