"""The local checks of one recorded torch call, each on torch's own values.

- a *leaf* layer (no submodules) runs in jaxconv on torch's recorded input of that call, on
  absolute values (for the magnitude ``S``) and, with a cotangent, backwards; its error model
  (:func:`equivalence.tolerance.kind_for`) turns that into tolerances. All leaf runs of a
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
    kind = tolerance.kind_for(sub, torch_module)
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


def _glue_run(sub, call, children, scale: bool, first=None):
    """Run a composite's own code with its children answered by torch's recorded outputs.

    Returns ``(output, [(child call, (args, kwargs) the code passed)], problems)``; with
    ``scale`` the run is on absolute values (inputs and children's outputs), giving magnitudes.
    ``first`` replaces the first input (a traced value, for gradients).
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
        args = to_jax(call.args, fn)
        if first is not None:
            args = (first, *args[1:])
        out = sub(*args, **to_jax(call.kwargs, fn))
    if pending:
        problems.append("torch called " + ", ".join(repr(c.name) for c in pending)
                        + " which jaxconv's code did not call")
    return out, seen, problems


def glue_floor(sub, torch_module, call, train: bool, c: float):
    """The tolerance a composite's own code gets beyond the elementwise model's, or ``None``:
    where its torch module is of a ``traced`` kind (timm's ``BatchNormAct2d`` computes its
    batch norm in its own code), that kind's forward bound on torch's recorded input."""
    kind = tolerance.kind_for(sub, torch_module)
    if not kind.traced or first_array(call.args) is None:
        return None
    layer = _traced_call(sub, torch_module, call, train)
    return kind.model(layer).forward.tolerance(layer.output.dtype, c)


def _traced_call(sub, torch_module, call, train: bool, **backward) -> tolerance.LayerCall:
    """The :class:`~equivalence.tolerance.LayerCall` a ``traced`` kind's model reads for a
    composite: torch's module, recorded input and output, no magnitude."""
    return tolerance.LayerCall(module=sub, torch_module=torch_module, inputs=tuple(call.args),
                               output=first_array(call.out), magnitude=None, train=train, **backward)


def check_glue(sub, call, children, c: float, floor=None) -> dict:
    """Check a composite module's own code (see the module docstring): the worst of its output
    and the inputs it hands to its children, as :func:`~equivalence.tolerance.errors` with a
    ``note`` saying where; a call-structure problem fails the check. ``floor``
    (:func:`glue_floor`) raises the tolerance of every value of its shape."""
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
        tol = tolerance.tolerance(np.asarray(mag), n, want.dtype, c)
        if floor is not None and np.shape(floor) == np.shape(want):
            tol = np.maximum(tol, floor)
        err = tolerance.errors(np.asarray(got), want, tol)
        if worst is None or err["ratio"] > worst["ratio"]:
            worst, where = err, what
    notes = problems + ([worst["note"]] if worst["note"] else [])
    if where != "output" and worst["ratio"] > 1:
        notes.append(f"worst at {where}")
    if problems:
        worst["ratio"] = float("inf")
    worst["note"] = "; ".join(notes)
    return worst


def glue_grads(sub, torch_module, call, children, child_input_grads: dict, train: bool) -> dict:
    """Local gradients of the parameters a composite uses in its own code (ConvNeXt's layer
    scale, the affine of timm's ``BatchNormAct2d``), as :class:`Grad` by the composite's names;
    ``{}`` where that cannot be done locally. The composite's own local input gradient goes into
    ``child_input_grads`` under its call's index, for its parent's check (calls are checked
    children first).

    The composite's code runs on torch's recorded input, its children answered by torch's
    outputs, under ``jax.vjp``: the cotangent of its output is torch's, that of each child's
    input the child's local input gradient (``child_input_grads`` by call index; every child
    must have one). The bounds: for a ``traced`` kind its backward model, with the cotangents of
    every value of the input's shape summed in absolute value (an upper bound of the one that
    reaches the normalization's output); otherwise the elementwise model's, the same run on
    absolute values with absolute cotangents."""
    x, g_out = first_array(call.args), call.grad_out
    if x is None or g_out is None or not np.issubdtype(x.dtype, np.floating) or any(
            ch.index not in child_input_grads for ch in children):
        return {}
    child_names = {n for n, _ in named_children(sub)}
    graphdef, params, rest = nnx.split(nnx.clone(sub), nnx.Param, ...)
    cots = [child_input_grads[ch.index] for ch in children]

    def backward(p, scale):
        def run(p, a):
            out, seen, _ = _glue_run(nnx.merge(graphdef, p, rest), call, children, scale, first=a)
            return first_array(out), [first_array(passed) for _, passed in seen]

        f = np.abs if scale else (lambda a: a)
        (out, passed), vjp = jax.vjp(run, p, jnp.asarray(f(x)))
        if out is None or any(a is None or np.shape(c) != a.shape for c, a in zip(cots, passed)):
            return None, None
        grads, x_grad = vjp((jnp.asarray(f(g_out)).astype(out.dtype),
                             [jnp.asarray(f(c)).astype(a.dtype) for c, a in zip(cots, passed)]))
        return {n: v for n, v in _named_params(graphdef, grads, rest).items()
                if n.split(".")[0] not in child_names}, np.asarray(x_grad)

    own, x_grad = backward(params, False)
    if x_grad is not None:
        child_input_grads[call.index] = x_grad
    if not own:
        return {}
    kind = tolerance.kind_for(sub, torch_module)
    if kind.traced:
        cotangent = sum((np.abs(np.asarray(c, np.float64)) for c in [g_out, *cots] if np.shape(c) == x.shape),
                        np.zeros(x.shape))
        layer = _traced_call(sub, torch_module, call, train, cotangent=cotangent, param_grads=own)
        bounds = kind.model(layer).params
    else:
        mags, _ = backward(jax.tree.map(jnp.abs, params), True)
        bounds = {k: tolerance.Bound(mags[k], tolerance.reduction_ratio([g_out, *cots], v)) for k, v in own.items()}
    return {k: Grad(v, bounds[k]) for k, v in own.items() if k in bounds}
