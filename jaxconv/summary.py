"""``summary(model, input_size)``: every layer's output shape and parameter count, computed
with ``jax.eval_shape`` (shapes only, no arithmetic)."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from .trace import record_calls
from .nn.module import named_modules


def count_params(module) -> int:
    """Number of parameter elements (``nnx.Param``) in ``module`` and its submodules."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(nnx.state(module, nnx.Param)))


@dataclass(frozen=True)
class Row:
    name: str
    type: str
    output_shape: tuple
    params: int
    depth: int


@dataclass(frozen=True)
class Summary:
    """The table of a model: ``rows`` in call order, ``total_params`` counted once per parameter."""

    model_type: str
    input_shapes: tuple
    rows: tuple[Row, ...]
    total_params: int

    def row(self, name: str, call: int = 0) -> Row:
        """The ``call``-th call of the submodule called ``name``."""
        return [r for r in self.rows if r.name == name][call]

    def __str__(self) -> str:
        header = ("Layer (type)", "Output shape", "Param #")
        body = [("  " * r.depth + f"{r.name} ({r.type})", _fmt(r.output_shape), f"{r.params:,}")
                for r in self.rows]
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(3)]
        rule = "-" * (sum(widths) + 4)
        fmt = lambda line: f"{line[0]:<{widths[0]}}  {line[1]:<{widths[1]}}  {line[2]:>{widths[2]}}"
        return "\n".join([
            f"{self.model_type} on input {', '.join(map(_fmt, self.input_shapes))} (batch dim omitted)",
            rule, fmt(header), rule, *map(fmt, body), rule,
            f"Total params: {self.total_params:,}",
        ])


def _fmt(shape) -> str:
    if isinstance(shape, tuple) and shape and isinstance(shape[0], tuple):
        return ", ".join(map(_fmt, shape))
    return str(tuple(shape))


def summary(model, input_size, *, batch_size: int = 1, dtype=jnp.float32) -> Summary:
    """Shape and parameter table of ``model`` for inputs of per-example shape ``input_size``.

    **Arguments:**

    - ``model``: any ``nnx.Module``; rows are its named submodules' calls, in call order
      (a module called three times gives three rows), named as torch names them.
    - ``input_size``: per-example shape, e.g. ``(1, 28, 28)``, or a list of shapes for a
      model taking several inputs. A batch dim of ``batch_size`` is prepended for the run
      and omitted from the reported shapes.
    - ``dtype``: dtype of the abstract inputs.

    ``print(summary(...))`` gives the table; nothing is computed but shapes.
    """
    sizes = [tuple(input_size)] if all(isinstance(s, int) for s in input_size) else [tuple(s) for s in input_size]
    specs = [jax.ShapeDtypeStruct((batch_size, *s), dtype) for s in sizes]
    graphdef, state = nnx.split(model)
    found = []

    def run(state, *xs):
        m = nnx.merge(graphdef, state)
        with record_calls(m) as calls:
            out = m(*xs)
        found.extend((c.name, c.type.__name__, _shape(c.output), c.parent) for c in calls)
        return out

    jax.eval_shape(run, state, *specs)
    params = {name: count_params(m) for name, m in named_modules(model)}
    depths: list[int] = []
    for name, _, _, parent in found:
        depths.append(_depth(name, None if parent is None else found[parent][0],
                             None if parent is None else depths[parent]))
    rows = tuple(Row(n, t, s, params[n], d) for (n, t, s, _), d in zip(found, depths))
    return Summary(type(model).__name__, tuple(sizes), rows, count_params(model))


def _depth(name: str, parent: str | None, parent_depth: int | None) -> int:
    """A row's indentation: its name's depth, shifted where it runs inside a call it is not
    named under (a shared module, named by its first path, called from another parent)."""
    if parent is None:
        return name.count(".")
    if name.startswith(f"{parent}."):
        return parent_depth + name.count(".") - parent.count(".")
    return parent_depth + 1


def _shape(out):
    if isinstance(out, (tuple, list)):
        return tuple(_shape(o) for o in out)
    return tuple(out.shape[1:])
