"""The gradient and buffer rows of a report, from the local checks' gradients and both runs."""
from __future__ import annotations

import numpy as np
from flax import nnx

from . import tolerance
from ._tree import first_array, to_jax
from .report import Row
from .state_dict import named_variables


def _missing(section, name, typ, shape, what) -> Row:
    return Row(section, name, typ, shape, max_abs=float("inf"), max_rel=float("inf"),
               tol=float("nan"), ratio=float("inf"), note=f"no jaxconv {what} of that name")


def _max_diff(free, want) -> float | None:
    if free is None or np.shape(free) != want.shape:
        return None
    return tolerance.max_difference(free, want)


def grad_rows(torch_run, jax_run, local_params: dict, local_inputs: dict, c: float) -> list:
    """Each parameter's local gradient (its layer's backward on torch's input and cotangent,
    summed over calls; :class:`~equivalence.checks.Grad` by torch name) against torch's, and each
    input's; ``e2e`` is jaxconv's own full backward."""
    rows = []
    free_inputs = jax_run.input_grads
    wanted = [(name, want, "parameter", local_params.get(name), jax_run.param_grads.get(name))
              for name, want in torch_run.param_grads.items()]
    wanted += [(f"input[{k}]", want, "input", local_inputs.get(k),
                free_inputs[k] if k < len(free_inputs) else None)
               for k, want in enumerate(torch_run.input_grads) if want is not None]
    for name, want, typ, local, free in wanted:
        if local is None and free is None:
            rows.append(_missing("grad", name, typ, tuple(want.shape), "gradient"))
            continue
        if local is None:  # used outside any leaf layer: only the end-to-end gradient exists
            err = tolerance.errors(free, want, tolerance.tolerance(np.abs(want), want.size, want.dtype, c))
            err["note"] = "; ".join(filter(None, [err["note"], "end-to-end only (not used by a leaf layer)"]))
        else:
            err = tolerance.errors(local.value, want, local.bound.tolerance(want.dtype, c))
        dtype = want.dtype if local is None else local.bound.checked_dtype(want.dtype)
        rows.append(Row("grad", name, typ, tuple(want.shape), e2e=_max_diff(free, want),
                        check="local", dtype=str(dtype), **err))
    return rows


def _local_buffers(sub, calls: list) -> dict:
    """The buffers of a clone of the jaxconv layer ``sub`` (as it was before the forward) after
    it ran on torch's recorded inputs of each of its ``calls``, in order, by the layer's names."""
    clone = nnx.clone(sub)
    for cl in calls:
        clone(*to_jax(cl.args), **to_jax(cl.kwargs))
    return {n: np.asarray(v[...]) for n, v in named_variables(clone) if isinstance(v, nnx.BatchStat)}


def buffer_rows(torch_run, jax_module, jax_before: dict, torch_named: dict, calls: list,
                c: float) -> list:
    """The buffers a training forward updated (train-mode BatchNorm's), checked locally: the
    jaxconv layer's update on torch's recorded inputs of its calls against torch's, with the
    tolerances of each layer kind's buffer model (see
    :data:`equivalence.tolerance.BufferModel`), which bound the rounding of that one update;
    ``e2e`` is jaxconv's own forward's update, whose inputs carry the errors of every layer
    before (in a deep network normalising a few values per channel, as much as torch's own
    float32 differs from float64). ``jax_before``: the jaxconv layers before the forward, by
    name."""
    rows = []
    free_all = {n: np.asarray(v[...]) for n, v in named_variables(jax_module)
                if isinstance(v, nnx.BatchStat)}
    for name, tmod in torch_named.items():
        own = [cl for cl in calls if cl.name == name]
        if not own or name not in jax_before:
            continue
        model = tolerance.kind_for(jax_before[name], tmod).buffers
        if model is None:
            continue
        before = {n: np.asarray(v[...]).astype(np.float64) for n, v in named_variables(jax_before[name])}
        bounds = model(tmod, [first_array(cl.args) for cl in own], before)
        local = _local_buffers(jax_before[name], own) if bounds else {}
        prefix = f"{name}." if name else ""
        for buf, bound in bounds.items():
            full = prefix + buf
            want = torch_run.buffers.get(full)
            if want is None:
                continue
            got = local.get(buf)
            if got is None:
                rows.append(_missing("buffer", full, type(tmod).__name__, tuple(want.shape), "buffer"))
                continue
            tol = bound.tolerance(want.dtype, c, value=want) if isinstance(bound, tolerance.Bound) else bound
            rows.append(Row("buffer", full, type(tmod).__name__, tuple(want.shape), dtype=str(want.dtype),
                            e2e=_max_diff(free_all.get(full), want), check="local",
                            **tolerance.errors(got, want, tol)))
    return rows
