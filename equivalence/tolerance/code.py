"""Layers whose magnitude ``S`` (the layer on absolute values) says nothing about their rounding,
bounded by the running error bound of what they compute (:mod:`.running`) on torch's input.

The op on absolute values is a sound magnitude for sums of products. It is not for code that
cancels or rescales its inputs, where it can be far smaller than the values the computation
actually rounds:

- **module code**: a layer whose class brings its own ``__call__`` (:func:`is_module_code`):
  a translated torch class with its own ``forward`` (timm's ``StdConv2d`` standardises its
  weight on every call, so the conv it runs is not its stored weight's), a hand-written module,
  a subclass of a jaxconv layer that overrides ``__call__``. :func:`kind_for` gives it its kind's
  model, each tolerance at least ``c`` times the running error bound;
- **softmax** (``Softmax``, ``Softmin``, ``LogSoftmax``, ``Softmax2d``): on absolute values a
  masked logit (``-100``, ``-1e4``, ``-inf``) becomes the largest, and the other entries'
  magnitude 0 or NaN. The running bound follows the values the softmax sees: the rounding of
  ``x - max`` (``eps |x - max|``) through ``exp``, the sum and the division;
- **resize** (``Upsample`` and its 2D subclasses): bicubic weights are negative in places, and
  the weights themselves are rounded functions of the source coordinates (see
  :mod:`.running`'s rule for ``interpolate``).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._tree import floating_arrays
from ..state_dict import named_variables
from . import running
from ._policy import FALLBACK, Bound, Kind, LayerBounds, LayerCall, Model, elementwise, kind_of, register

#: Packages whose layers' ``__call__`` is a library layer's, not module code.
LIBRARIES = ("jaxconv", "flax")

#: Why a running bound may not exist: an op without a rule, or code that branches on values.
NO_RUNNING_BOUND = (running.Unsupported, jax.errors.ConcretizationTypeError,
                    jax.errors.TracerArrayConversionError, jax.errors.TracerIntegerConversionError)


def is_module_code(module, kind: Kind | None = None) -> bool:
    """Whether a jaxconv layer runs code of its own: the class in its MRO that defines
    ``__call__`` lives outside :data:`LIBRARIES` (a translated torch class, a hand-written module,
    a subclass of a jaxconv layer that overrides ``__call__``), and ``kind`` (its
    :func:`~equivalence.tolerance.kind_of` by default) was not registered for that very class
    (by the class or its name). Functional ops are not module code."""
    if not isinstance(module, nnx.Module):
        return False
    owner = next((c for c in type(module).__mro__ if "__call__" in vars(c)), None)
    if owner is None or owner.__module__.partition(".")[0] in LIBRARIES:
        return False
    kind = kind_of(module) if kind is None else kind
    own = {owner, owner.__name__, owner.__qualname__}
    return kind.name == FALLBACK or not any(isinstance(m, (type, str)) and m in own for m in kind.match)


def kind_for(module, torch_module=None) -> Kind:
    """The kind a jaxconv layer is checked as. Where its own kind is the fallback and its torch
    module's kind is ``traced``, that kind (a translated timm ``BatchNormAct2d`` is a
    normalization). Otherwise its :func:`~equivalence.tolerance.kind_of`; for module code
    (:func:`is_module_code`) that kind with each tolerance at least ``c`` times the running error
    bound of the layer's code (:func:`with_running_bound`), its buffer model kept."""
    kind = kind_of(module)
    if kind.name == FALLBACK and torch_module is not None:
        theirs = kind_of(torch_module)
        if theirs.traced:
            return theirs
    if is_module_code(module, kind):
        return dataclasses.replace(kind, name=f"{kind.name}, module code", model=with_running_bound(kind.model))
    return kind


def running_errors(call: LayerCall):
    """The running error bounds of a layer's code on torch's input (``call.inputs``):
    ``(forward, {parameter: gradient's}, first input's gradient's)``, the gradients' only with
    ``call.cotangent`` (as the layer's ``jax.vjp`` with torch's cotangents); ``None`` where the
    code has an op without a rule or cannot be traced."""
    graphdef, params, rest = nnx.split(nnx.clone(call.module), nnx.Param, ...)
    where = [i for i, a in enumerate(call.inputs) if isinstance(a, (np.ndarray, jax.Array))]

    def outputs(p, xs):
        args = list(call.inputs)
        for i, a in zip(where, xs):
            args[i] = a
        return floating_arrays(nnx.merge(graphdef, p, jax.tree.map(lambda v: v, rest))(*args))

    def forward(p, xs):
        return outputs(p, xs)[0]

    def backward(p, xs, gs):    # every floating output's cotangent
        outs, vjp = jax.vjp(outputs, p, xs)
        return vjp([g.astype(o.dtype) for g, o in zip(gs, outs)])

    xs = [jnp.asarray(call.inputs[i]) for i in where]
    try:
        e_out = np.asarray(running.running_error(forward, params, xs)[1])
        if call.cotangent is None:
            return e_out, {}, None
        cotangents = [jnp.asarray(g) for g in (call.cotangents or (call.cotangent,))]
        _, (e_params, e_xs) = running.running_error(backward, params, xs, cotangents)
    except NO_RUNNING_BOUND:
        return None
    merged = nnx.merge(graphdef, e_params, rest)
    named = {n: np.asarray(v[...]) for n, v in named_variables(merged) if isinstance(v, nnx.Param)}
    return e_out, named, np.asarray(e_xs[0]) if e_xs else None


def _with_error(bound: Bound | None, error) -> Bound | None:
    if bound is None or error is None:
        return bound
    return dataclasses.replace(bound, error=error)


def with_running_bound(model: Model) -> Model:
    """``model`` with the running error bound of the layer's code (:func:`running_errors`) as
    each :class:`~equivalence.tolerance.Bound`'s ``error``: every tolerance at least ``c``
    times it, and that alone where the magnitude model is not finite."""
    def code_model(call: LayerCall) -> LayerBounds:
        bounds = model(call)
        found = running_errors(call)
        if found is None:
            return bounds
        forward, params, first = found
        return LayerBounds(_with_error(bounds.forward, forward),
                           {k: _with_error(b, params.get(k)) for k, b in bounds.params.items()},
                           _with_error(bounds.input, first))
    code_model.__doc__ = f"{model.__doc__ or ''} At least c times the running error bound of the code."
    return code_model


def running_only(call: LayerCall) -> LayerBounds:
    """No magnitude model: each tolerance ``c`` times the running error bound of the layer's code
    (:func:`running_errors`); the elementwise model where the code has no running bound."""
    found = running_errors(call)
    if found is None:
        return elementwise(call)
    forward, params, first = found
    return LayerBounds(Bound(0.0, 1, error=forward), {k: Bound(0.0, 1, error=params[k]) for k in call.param_grads},
                       None if first is None else Bound(0.0, 1, error=first))


@register("softmax", match=("Softmax", "Softmin", "LogSoftmax", "Softmax2d"))
def softmax(call: LayerCall) -> LayerBounds:
    """Softmax and its kin along one axis: the running error bound of the layer on torch's input
    (``c`` times it), which follows the values it sees: ``eps |x - max|`` rounding in the
    exponent, the exponential's, the sum's and the division's, and with a cotangent the same
    through ``y (g - sum(g y))``. Masked entries (``-inf``, or large negative logits) contribute
    their tiny or zero values; the op on absolute values would make them the largest."""
    return running_only(call)


@register("resize", match=("Upsample",))
def resize(call: LayerCall) -> LayerBounds:
    """``Upsample`` (``interpolate``): the running error bound of the layer on torch's input,
    which includes the rounding of the interpolation weights as functions of the source
    coordinates (:mod:`.running`); bicubic weights are negative in places, so the op on absolute
    values is not a magnitude."""
    return running_only(call)
