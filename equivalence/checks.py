"""The local checks of one recorded torch call, each on torch's own values.

- a *leaf* layer (no submodules) runs in jaxconv on torch's recorded input of that call, on
  absolute values (for the magnitude ``S``) and, with a cotangent, backwards; its error model
  (:func:`equivalence.tolerance.kind_for`) turns that into tolerances. The leaf runs are
  jitted, one compilation per distinct leaf (:func:`run_leaves`). A leaf that is module code (a
  translated ``StdConv2d``) also gets the running error bound of its code (the kind's model says so).
- a *composite* module runs its own code with each child call answered by torch's recorded
  output of that child (:mod:`equivalence.glue`); its output and the inputs its code hands to
  the children are checked, which catches a wrong flatten order or a wrong ``F.pad`` in ``forward``.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from . import tolerance
from ._tree import arrays, first_array, floating_arrays, is_floating, to_device
from .state_dict import named_variables


@dataclass
class LeafInput:
    """A leaf layer split for a jitted run: a clone's graph, parameters and other state, torch's
    recorded positional array inputs (the array leaves of ``structure``: an LSTM's ``(h_0, c_0)``
    is a tuple), the others (``static``: ``(leaf position, value)`` pairs, such as torchvision
    MaxViT's window size) and (with gradients) torch's gradients of its floating outputs."""

    graphdef: Any
    params: Any
    rest: Any
    args: tuple
    cotangents: Any = None
    static: tuple = ()
    structure: Any = None

    @classmethod
    def of(cls, sub, call, grads: bool) -> LeafInput:
        """The input of ``sub``'s check for the recorded torch ``call``."""
        leaves, structure = jax.tree_util.tree_flatten(tuple(call.args))
        static = tuple((i, a) for i, a in enumerate(leaves) if not isinstance(a, np.ndarray))
        if call.kwargs or not all(isinstance(a, (int, float, bool, str)) for _, a in static):
            raise TypeError(f"{call.name}: only positional arrays (or tuples of them) and Python "
                            f"scalars are supported as inputs, got "
                            f"{[type(a).__name__ for a in call.args]} and kwargs {list(call.kwargs)}")
        graphdef, params, rest = nnx.split(nnx.clone(sub), nnx.Param, ...)
        found = call.cotangents() if grads else None
        g = None if found is None else [to_device(c) for c in found]
        arrays_in = tuple(to_device(a) for a in leaves if isinstance(a, np.ndarray))
        return cls(graphdef, params, rest, arrays_in, g, static, structure)

    def full(self, arrays_in) -> tuple:
        """The positional inputs: ``arrays_in`` with the static ones put back in place."""
        out, it = [], iter(arrays_in)
        fixed = dict(self.static)
        for i in range(len(arrays_in) + len(fixed)):
            out.append(fixed[i] if i in fixed else next(it))
        return tuple(out) if self.structure is None else jax.tree_util.tree_unflatten(self.structure, out)


@jax.tree_util.register_dataclass
@dataclass
class LeafRun:
    """A leaf layer's jaxconv results: its (first) output, the output of the absolute-valued
    layer on absolute inputs, and with cotangents both backward passes of all its floating
    outputs (the absolute-valued one with ``|cotangents|``)."""

    output: Any
    magnitude: Any
    param_grads: Any = None
    input_grads: Any = None
    param_magnitudes: Any = None
    input_magnitudes: Any = None


def _leaf_run(graphdef, leaf: LeafInput):
    """One run of a leaf on ``leaf``'s values: ``(first floating output, parameter gradients,
    input gradients, absolute values)``, the gradients (with cotangents) the backward pass of
    all its floating outputs, and the absolute values those of the parameters, arrays and
    cotangents: the inputs of the same run on absolute values (:func:`run_leaves`)."""
    def run(p, a):
        return floating_arrays(nnx.merge(graphdef, p, jax.tree.map(lambda v: v, leaf.rest))(*leaf.full(a)))

    absolute = jax.tree.map(jnp.abs, (leaf.params, leaf.args, leaf.cotangents))
    outs = run(leaf.params, leaf.args)
    if leaf.cotangents is None:
        return (outs[0] if outs else None), None, None, absolute
    _, vjp = jax.vjp(run, leaf.params, leaf.args)
    param_grads, input_grads = vjp(matched_cotangents(outs, leaf.cotangents))
    return (outs[0] if outs else None), param_grads, input_grads, absolute


def matched_cotangents(outs, cotangents) -> list:
    """torch's ``cotangents`` of a layer's floating outputs ``outs`` (jaxconv's), in their dtypes;
    ``ValueError`` where the two sides' floating outputs differ in number or shape."""
    if [tuple(o.shape) for o in outs] != [tuple(np.shape(g)) for g in cotangents]:
        raise ValueError(f"compare: a jaxconv layer returns floating outputs of shapes "
                         f"{[tuple(o.shape) for o in outs]} where torch's returns "
                         f"{[tuple(np.shape(g)) for g in cotangents]}")
    return [to_device(g).astype(o.dtype) for g, o in zip(cotangents, outs)]


def run_leaves(leaves: list) -> list:
    """:class:`LeafRun` of every :class:`LeafInput`, one compilation per *distinct* leaf: a
    ``jax.jit`` keyed by the leaf's graph, static inputs and input shapes, so a model's repeated
    blocks (ViT-B/16's twelve encoder layers) share one compiled program, run with each layer's
    own weights and torch's inputs. The jitted function is this call's own: nothing of it stays
    in JAX's caches once the comparison is dropped.

    The program is the layer's run alone (:func:`_leaf_run`), compiled ahead (a ``jax.jit``
    compiled again for the second call's committed arrays) and called twice: on the values, then
    on their absolute values (the magnitudes), which the first call returns. The reports are
    bit for bit those of one program holding both runs, which took longer to compile: vit_b_16's
    8 distinct leaves 1.12-1.20 s against 1.01-1.06 s, 4 rounds at load 5 (2-core VM).

    Measured on vit_b_16 (one 224x224 image, 100 leaf calls, 8 distinct; XLA's compile seconds
    from ``jax_log_compiles``, 2-core VM at load average 5-7, so taken relative to the free
    forward's compile in the same process): one jit of all leaves 1.4x the forward's compile,
    one per distinct leaf 0.8x."""
    def one(fixed, dynamic):
        graphdef, static, structure = fixed
        return _leaf_run(graphdef, LeafInput(graphdef, *dynamic, static=static, structure=structure))

    jitted, compiled, results = jax.jit(one, static_argnums=0), {}, []
    for leaf in leaves:
        fixed = (leaf.graphdef, leaf.static, leaf.structure)
        dynamic = (leaf.params, leaf.rest, leaf.args, leaf.cotangents)
        flat, tree = jax.tree.flatten(dynamic)
        key = (fixed, tree, tuple(jax.typeof(x) for x in flat))     # shapes, dtypes, weak types
        if key not in compiled:  # compiled ahead: a jit would compile again for the second call's
            compiled[key] = jitted.lower(fixed, dynamic).compile()  # committed arrays
        run = compiled[key]
        out, param_grads, input_grads, (p, a, c) = run(dynamic)
        magnitude, param_magnitudes, input_magnitudes, _ = run((p, leaf.rest, a, c))
        results.append(LeafRun(out, magnitude, param_grads, input_grads, param_magnitudes, input_magnitudes))
    return results


@dataclass
class Grad:
    """A local gradient (summed over the calls of a shared layer) and its error model."""

    value: np.ndarray
    bound: tolerance.Bound

    def __add__(self, other: Grad) -> Grad:
        """Two calls' gradients: values, magnitudes and running error bounds add, the longer
        length counts."""
        dtypes = [d for d in (self.bound.dtype, other.bound.dtype) if d is not None]
        errors = [e for e in (self.bound.error, other.bound.error) if e is not None]
        return Grad(self.value + other.value, tolerance.Bound(
            self.bound.scale + other.bound.scale, np.maximum(self.bound.n, other.bound.n),
            dtype=tolerance.compute_dtype(*dtypes) if dtypes else None,
            error=sum(errors[1:], errors[0]) if errors else None))


@dataclass
class LeafResult:
    """A leaf check: the forward's :func:`~equivalence.tolerance.errors`, and with gradients the
    local gradient of each parameter (by the layer's own names) and of each positional input
    (``None`` where it is not an array)."""

    errors: dict
    param_grads: dict = field(default_factory=dict)
    input_grads: list = field(default_factory=list)


def _named_params(graphdef, state, rest) -> dict:
    gm = nnx.merge(graphdef, state, rest)
    return {n: np.asarray(v[...]) for n, v in named_variables(gm) if isinstance(v, nnx.Param)}


def check_leaf(sub, torch_module, call, leaf: LeafInput, run: LeafRun, train: bool,
               c: float) -> LeafResult:
    """Check a leaf's :class:`LeafRun` against torch's recorded ``call``, with the tolerances of
    ``sub``'s error model."""
    expected = first_array(call.out)
    backward = {}
    if leaf.cotangents is not None:
        cots = tuple(np.asarray(g) for g in leaf.cotangents)
        backward = {"cotangent": cots[0], "cotangents": cots,
                    "param_grads": _named_params(leaf.graphdef, run.param_grads, leaf.rest),
                    "param_magnitudes": _named_params(leaf.graphdef, run.param_magnitudes, leaf.rest),
                    "input_grad": np.asarray(run.input_grads[0]),
                    "input_magnitude": np.asarray(run.input_magnitudes[0])}
    layer = tolerance.LayerCall(module=sub, torch_module=torch_module, inputs=tuple(call.args),
                                output=np.asarray(run.output), magnitude=np.asarray(run.magnitude),
                                train=train, **backward)
    kind = tolerance.kind_for(sub, torch_module)
    bounds = kind.model(layer)
    result = LeafResult(tolerance.errors(layer.output, expected,
                                         bounds.forward.tolerance(expected.dtype, c, value=expected)))
    if layer.cotangent is not None:
        floating = [is_floating(a) for a in leaf.args]     # the array leaves of the inputs
        missing = sorted(set(layer.param_grads) - set(bounds.params)) + (
            ["input"] if bounds.input is None and floating[:1] == [True] else [])
        if missing:
            raise ValueError(f"{call.name or '(root)'}: the error model of layer kind {kind.name!r} "
                             f"returned no gradient Bound for {missing}; with a cotangent it must "
                             f"bound every parameter gradient and the input gradient")
        # computed in the output's dtype at least (a float32 weight's gradient under autocast)
        at = functools.partial(dataclasses.replace, dtype=expected.dtype)
        result.param_grads = {k: Grad(v, at(bounds.params[k])) for k, v in layer.param_grads.items()}
        grads = [Grad(layer.input_grad, at(bounds.input)) if floating[0] else None]
        for k, (g, m) in enumerate(zip(run.input_grads[1:], run.input_magnitudes[1:]), start=1):
            if not floating[k]:             # class indices, lengths: no gradient
                grads.append(None)
            elif k - 1 < len(bounds.others) and bounds.others[k - 1] is not None:
                grads.append(Grad(np.asarray(g), at(bounds.others[k - 1])))
            else:                           # further inputs: the elementwise model by default
                grads.append(Grad(np.asarray(g), tolerance.Bound(
                    np.asarray(m), tolerance.reduction_ratio(layer.cotangents, g), dtype=expected.dtype)))
        starts = np.cumsum([0] + [len(arrays(a)) for a in call.args])  # grads: one per array leaf
        result.input_grads = [grads[k] if isinstance(a, np.ndarray) else None for a, k in zip(call.args, starts)]
    return result
