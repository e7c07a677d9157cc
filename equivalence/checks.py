"""The local checks of one recorded torch call, each on torch's own values.

- a *leaf* layer (no submodules) runs in jaxconv on torch's recorded input of that call, on
  absolute values (for the magnitude ``S``) and, with a cotangent, backwards; its error model
  (:func:`equivalence.tolerance.kind_of`) turns that into tolerances. All leaf runs of a
  comparison go through one ``jax.jit`` (:func:`run_leaves`).
- a *composite* module runs its own code with each child call answered by torch's recorded
  output of that child (:func:`check_glue`); its output and the inputs its code hands to the
  children are checked, which catches a wrong flatten order or a wrong ``F.pad`` in ``forward``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.nn import named_children
from jaxconv.trace import intercept

from . import tolerance
from ._tree import arrays, first_array, to_jax
from .state_dict import named_variables


@dataclass
class LeafInput:
    """A leaf layer split for a jitted run: a clone's graph, parameters and other state, torch's
    recorded positional inputs and (with gradients) torch's gradient of the output."""

    graphdef: Any
    params: Any
    rest: Any
    args: tuple
    cotangent: Any = None

    @classmethod
    def of(cls, sub, call, grads: bool) -> LeafInput:
        """The input of ``sub``'s check for the recorded torch ``call``."""
        args = tuple(call.args)
        if call.kwargs or not all(isinstance(a, np.ndarray) for a in args):
            raise TypeError(f"{call.name}: only array positional inputs are supported, got "
                            f"{[type(a).__name__ for a in args]} and kwargs {list(call.kwargs)}")
        graphdef, params, rest = nnx.split(nnx.clone(sub), nnx.Param, ...)
        g = jnp.asarray(call.grad_out) if grads and call.grad_out is not None else None
        return cls(graphdef, params, rest, tuple(jnp.asarray(a) for a in args), g)


@jax.tree_util.register_dataclass
@dataclass
class LeafRun:
    """A leaf layer's jaxconv results: its output, the output of the absolute-valued layer on
    absolute inputs, and with a cotangent both backward passes (the absolute-valued one with
    ``|cotangent|``)."""

    output: Any
    magnitude: Any
    param_grads: Any = None
    input_grads: Any = None
    param_magnitudes: Any = None
    input_magnitudes: Any = None


def _leaf_run(graphdef, leaf: LeafInput) -> LeafRun:
    def run(p, a):
        return first_array(nnx.merge(graphdef, p, jax.tree.map(lambda v: v, leaf.rest))(*a))

    absp, absa = jax.tree.map(jnp.abs, leaf.params), jax.tree.map(jnp.abs, leaf.args)
    result = LeafRun(run(leaf.params, leaf.args), run(absp, absa))
    if leaf.cotangent is not None:
        _, vjp = jax.vjp(run, leaf.params, leaf.args)
        result.param_grads, result.input_grads = vjp(leaf.cotangent)
        _, vjp = jax.vjp(run, absp, absa)
        result.param_magnitudes, result.input_magnitudes = vjp(jnp.abs(leaf.cotangent))
    return result


def run_leaves(leaves: list) -> list:
    """:class:`LeafRun` of every :class:`LeafInput`, in one ``jax.jit`` (one compilation instead
    of one per layer)."""
    if not leaves:
        return []
    graphdefs = [leaf.graphdef for leaf in leaves]
    dynamic = [(leaf.params, leaf.rest, leaf.args, leaf.cotangent) for leaf in leaves]

    def f(dynamic):
        return [_leaf_run(gd, LeafInput(gd, *dyn)) for gd, dyn in zip(graphdefs, dynamic)]

    return jax.jit(f)(dynamic)


@dataclass
class Grad:
    """A local gradient (summed over the calls of a shared layer) and its error model."""

    value: np.ndarray
    bound: tolerance.Bound

    def __add__(self, other: Grad) -> Grad:
        """Two calls' gradients: values and magnitudes add, the longer length counts."""
        return Grad(self.value + other.value, tolerance.Bound(self.bound.scale + other.bound.scale,
                                                              np.maximum(self.bound.n, other.bound.n)))


@dataclass
class LeafResult:
    """A leaf check: the forward's :func:`~equivalence.tolerance.errors`, and with gradients the
    local gradient of each parameter (by the layer's own names) and of the first input."""

    errors: dict
    param_grads: dict = field(default_factory=dict)
    input_grad: Grad | None = None


def _named_params(graphdef, state, rest) -> dict:
    gm = nnx.merge(graphdef, state, rest)
    return {n: np.asarray(v[...]) for n, v in named_variables(gm) if isinstance(v, nnx.Param)}


def check_leaf(sub, torch_module, call, leaf: LeafInput, run: LeafRun, train: bool,
               c: float) -> LeafResult:
    """Check a leaf's :class:`LeafRun` against torch's recorded ``call``, with the tolerances of
    ``sub``'s error model."""
    expected = first_array(call.out)
    backward = {}
    if leaf.cotangent is not None:
        backward = {"cotangent": np.asarray(leaf.cotangent),
                    "param_grads": _named_params(leaf.graphdef, run.param_grads, leaf.rest),
                    "param_magnitudes": _named_params(leaf.graphdef, run.param_magnitudes, leaf.rest),
                    "input_grad": np.asarray(run.input_grads[0]),
                    "input_magnitude": np.asarray(run.input_magnitudes[0])}
    layer = tolerance.LayerCall(module=sub, torch_module=torch_module, inputs=tuple(call.args),
                                output=np.asarray(run.output), magnitude=np.asarray(run.magnitude),
                                train=train, **backward)
    kind = tolerance.kind_of(sub)
    bounds = kind.model(layer)
    result = LeafResult(tolerance.errors(layer.output, expected,
                                         bounds.forward.tolerance(expected.dtype, c)))
    if layer.cotangent is not None:
        missing = sorted(set(layer.param_grads) - set(bounds.params)) + (["input"] if bounds.input is None else [])
        if missing:
            raise ValueError(f"{call.name or '(root)'}: the error model of layer kind {kind.name!r} "
                             f"returned no gradient Bound for {missing}; with a cotangent it must "
                             f"bound every parameter gradient and the input gradient")
        result.param_grads = {k: Grad(v, bounds.params[k]) for k, v in layer.param_grads.items()}
        result.input_grad = Grad(layer.input_grad, bounds.input)
    return result


def _glue_run(sub, call, children, scale: bool):
    """Run a composite's own code with its children answered by torch's recorded outputs.

    Returns ``(output, [(child call, (args, kwargs) the code passed)], problems)``; with
    ``scale`` the run is on absolute values (inputs and children's outputs), giving magnitudes.
    """
    fn = np.abs if scale else None
    pending = list(children)
    seen, problems = [], []
    prefix = f"{call.name}." if call.name else ""

    def hook_for(cname):
        def hook(self, cls, args, kwargs):
            full = prefix + cname
            if not pending or pending[0].name != full:
                want = pending[0].name if pending else "nothing"
                problems.append(f"jaxconv called {full!r} where torch called {want!r}")
                return cls.__call__(self, *args, **kwargs)
            c = pending.pop(0)
            seen.append((c, (args, kwargs)))
            return to_jax(c.out, fn)
        return hook

    with intercept({m: hook_for(n) for n, m in named_children(sub)}):
        out = sub(*to_jax(call.args, fn), **to_jax(call.kwargs, fn))
    if pending:
        problems.append("torch called " + ", ".join(repr(c.name) for c in pending)
                        + " which jaxconv's code did not call")
    return out, seen, problems


def check_glue(sub, call, children, c: float) -> dict:
    """Check a composite module's own code (see the module docstring): the worst of its output
    and the inputs it hands to its children, as :func:`~equivalence.tolerance.errors` with a
    ``note`` saying where; a call-structure problem fails the check."""
    out, seen, problems = _glue_run(nnx.clone(sub), call, children, scale=False)
    out_abs, seen_abs, _ = _glue_run(nnx.clone(sub), call, children, scale=True)
    operands = len(arrays(call.args)) + len(children)
    sizes = arrays(call.args) + [a for child in children for a in arrays(child.out)]
    targets = [(first_array(out), first_array(call.out), first_array(out_abs), "output")]
    for (child, passed), (_, passed_abs) in zip(seen, seen_abs):
        wanted = arrays((child.args, child.kwargs))
        for got, want, mag in zip(arrays(passed), wanted, arrays(passed_abs)):
            targets.append((got, want, mag, f"input of {child.name}"))
    worst, where = None, "output"
    for got, want, mag, what in targets:
        n = tolerance.reduction_ratio(sizes, want, operands)
        err = tolerance.errors(np.asarray(got), want, tolerance.tolerance(np.asarray(mag), n, want.dtype, c))
        if worst is None or err["ratio"] > worst["ratio"]:
            worst, where = err, what
    notes = problems + ([worst["note"]] if worst["note"] else [])
    if where != "output" and worst["ratio"] > 1:
        notes.append(f"worst at {where}")
    if problems:
        worst["ratio"] = float("inf")
    worst["note"] = "; ".join(notes)
    return worst
