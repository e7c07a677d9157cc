"""Compare a torch module with its jaxconv twin, layer by layer, with tolerances from the policy.

How it works (one forward on each side, plus local re-runs of single jaxconv layers):

1. torch runs once with forward pre-hooks and hooks on every named module
   (:mod:`equivalence.record`), recording each call's inputs, output, the enclosing call and
   (with ``grads``) the gradient of the loss with respect to the output.
2. jaxconv runs once, free-running, under ``jax.vjp`` (and ``jax.jit``) with every named
   submodule intercepted (:mod:`equivalence.free_run`). Train-mode BatchNorm buffers are
   updated once, as torch's are.
3. Each recorded torch call is checked *locally* (:mod:`equivalence.checks`): a leaf layer (a
   clone taken before step 2) runs on torch's recorded input; a composite module runs its own
   code with each child call answered by torch's recorded output of that child, and the inputs
   its code hands to the children are checked too. Each check's tolerance comes from its
   layer kind's error model in :mod:`equivalence.tolerance`.
4. With ``grads``: the loss is ``sum_k sum(output_k * cotangent_k)`` over every floating
   output, each cotangent drawn from the seed; gradients for the floating inputs and every
   parameter (torch names) are compared (:mod:`equivalence.rows`), and in train mode the
   updated buffers.
"""
from __future__ import annotations

import contextlib
import functools
import operator
import time
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxconv
from jaxconv.functional.conv import DEFAULT_PRECISION
from jaxconv.nn import named_children, named_modules

from . import tolerance as tol_mod
from ._torch import numpy_dtype, require_torch, to_numpy
from ._tree import first_array, is_floating
from .checks import LeafInput, check_leaf, run_leaves
from .glue import check_glue, glue_floor, glue_grads
from .free_run import JaxRun, run_jax
from .record import TorchCall, TorchRun, run_torch
from .report import Report, Row
from .rows import buffer_rows, grad_rows
from .state_dict import named_variables
from .tolerance.running import shared_programs


@contextlib.contextmanager
def _pinned_precision(torch):
    """float32 at full precision on both sides; restores torch's flags afterwards."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
           torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        with jax.default_matmul_precision("highest"):
            yield {"torch.backends.cuda.matmul.allow_tf32": False,
                   "torch.backends.cudnn.allow_tf32": False,
                   "torch.float32_matmul_precision": "highest",
                   "jax_default_matmul_precision": "highest",
                   "jaxconv.conv_precision": DEFAULT_PRECISION.name}
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old[:2]
        torch.set_float32_matmul_precision(old[2])


def _draw_inputs(inputs, seed, dtype):
    """The inputs as numpy arrays (standard-normal data drawn for shapes, float32 unless
    ``dtype``, which casts the floating ones: class indices stay integers) and their
    description."""
    rng = np.random.default_rng(seed)
    arrays, shapes = [], []
    for x in inputs:
        if isinstance(x, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in x):
            a, origin = rng.standard_normal(tuple(int(d) for d in x)).astype(np.float32), "drawn"
        else:
            a, origin = to_numpy(x), "given"
        if dtype is not None and is_floating(a):
            a = a.astype(dtype)
        arrays.append(a)
        shapes.append({"shape": list(a.shape), "dtype": str(a.dtype), "origin": origin})
    return arrays, shapes


def _check_dtypes(torch_module, jax_module) -> None:
    """Raise ``TypeError`` naming the floating parameters and buffers whose dtypes differ."""
    theirs = {n: str(v.dtype).removeprefix("torch.") for n, v in torch_module.state_dict().items()
              if v.is_floating_point()}
    ours = {n: v[...].dtype for n, v in named_variables(jax_module)}
    bad = [f"{n} (torch {d}, jaxconv {ours[n]})" for n, d in theirs.items()
           if n in ours and jnp.issubdtype(ours[n], jnp.inexact) and str(ours[n]) != d]
    if bad:
        raise TypeError(
            f"compare: the two models' weights must have the same dtypes, got {len(bad)} that "
            f"differ: {', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''}; load them with "
            f"load_state_dict(..., dtype=...) or cast the torch model (.to(dtype))")


def _autocast_contexts(torch, torch_module, autocast):
    """``(torch's, jaxconv's)`` autocast contexts for ``autocast`` (a dtype, or ``None``: off)."""
    if autocast is None:
        return contextlib.nullcontext(), contextlib.nullcontext()
    dtype = numpy_dtype(autocast).name
    if dtype not in ("bfloat16", "float16"):
        raise ValueError(f"compare: autocast must be bfloat16 or float16 (torch's autocast dtypes), "
                         f"got autocast={autocast!r}")
    device = next((p.device.type for p in torch_module.parameters()), "cpu")
    return torch.autocast(device, dtype=getattr(torch, dtype)), jaxconv.autocast(dtype)


#: The attributes that hold a jaxconv module's mode (``Module.train``).
_MODE_FLAGS = ("training", "deterministic", "use_running_average")


@contextlib.contextmanager
def _left_as_found(torch_module, jax_module):
    """Within the block, compare switches both models' modes, runs a training forward (which
    moves BatchNorm statistics) and a backward (which sets ``.grad``); on exit both are as they
    were: torch's modes, parameters and buffers (:func:`~equivalence.translator.state.preserved`)
    and gradients, jaxconv's modes and variables."""
    from .translator.state import preserved

    grads = [(p, p.grad) for p in torch_module.parameters()]
    variables = jax.tree.map(lambda a: a, nnx.state(jax_module))    # a copy: state holds the variables
    modes = [(m, {k: vars(m)[k] for k in _MODE_FLAGS if k in vars(m)}) for _, m in named_modules(jax_module)]
    try:
        with preserved(torch_module):
            yield
    finally:
        for p, g in grads:
            p.grad = g
        nnx.update(jax_module, variables)
        for m, flags in modes:
            for k, v in flags.items():
                setattr(m, k, v)


def _is_leaf(module) -> bool:
    return not any(True for _ in named_children(module))


@dataclass
class _Comparison:
    """The two recorded runs of one comparison and its settings; :meth:`rows` checks them.

    ``jax_named``: the jaxconv layers as they were before the free run, by name.
    """

    torch_run: TorchRun
    jax_run: JaxRun
    jax_module: Any
    jax_named: dict
    torch_named: dict
    grads: bool
    train: bool
    c: float
    torch_paths: list = field(default_factory=list)  # named_modules(remove_duplicate=False)
    structure: list = field(default_factory=list)
    param_grads: dict = field(default_factory=dict)  # local gradients by torch name
    input_parts: dict = field(default_factory=dict)  # {model input index: {call index: local Grad}}
    input_grad_of: dict = field(default_factory=dict)  # local input Grads by call index

    def __post_init__(self):
        self.calls = self.torch_run.finished()
        self.free = self.jax_run.outputs()
        self.count, self.ordinal = {}, {}  # calls per name; each call's number among them
        for cl in self.calls:
            self.ordinal[cl.index] = self.count.get(cl.name, 0)
            self.count[cl.name] = self.ordinal[cl.index] + 1
        self.children: dict = {}
        for cl in self.calls:
            self.children.setdefault(cl.parent, []).append(cl)
        self.parent_of = {cl.index: cl.parent for cl in self.calls}
        first: dict = {}    # a shared module's further paths -> its first, which names its calls
        self.first_path = {path: first.setdefault(id(m), path) for path, m in self.torch_paths}
        self.first_path = {p: f for p, f in self.first_path.items() if p != f}

    def children_of(self, cl: TorchCall) -> list:
        """torch's calls inside ``cl``, a shared module that torch names by a path outside
        ``cl``'s module renamed to the path by which ``cl``'s module reaches it
        (``blocks.1.cpe`` for ``blocks.0.cpe`` called by ``blocks.1``), as its code calls it."""
        prefix = f"{cl.name}." if cl.name else ""
        local: dict = {}
        for path, first in self.first_path.items():
            if path.startswith(prefix) and not first.startswith(prefix):
                local.setdefault(first, path)
        return [replace(ch, name=local[ch.name]) if ch.name in local else ch
                for ch in self.children.get(cl.index, [])]

    def check_structure(self) -> None:
        """Record every layer the two sides called a different number of times."""
        for name, outs in self.free.items():
            if name not in self.count and any(n.startswith(f"{name}.") for n in self.count if n):
                continue  # a container jaxconv calls whole where torch iterates its members
            if len(outs) != self.count.get(name, 0):
                self.structure.append(f"{name or '(root)'}: torch called it {self.count.get(name, 0)} "
                                      f"time(s), jaxconv {len(outs)}")
        for name in self.count:
            if name not in self.free and name in self.jax_named:
                self.structure.append(f"{name or '(root)'}: torch called it, jaxconv did not")
        self.check_tied()

    def check_tied(self) -> None:
        """Record every parameter or buffer that one side holds as one tensor under two names
        (weight tying, a shared module) and the other as two: training would update them
        apart."""
        ours = {name: id(v) for name, v in named_variables(self.jax_module)}
        theirs = {f"{p}.{n}" if p else n: id(t) for p, m in self.torch_paths
                  for n, t in [*m._parameters.items(), *m._buffers.items()] if t is not None}
        first_ours, first_theirs = {}, {}
        for name in [n for n in theirs if n in ours]:
            a, b = first_theirs.setdefault(theirs[name], name), first_ours.setdefault(ours[name], name)
            if a != b:
                self.structure.append(f"{name}: torch's is " + (f"{a}'s tensor" if a != name else "a tensor of its own")
                                      + ", jaxconv's " + (f"{b}'s variable" if b != name else "a variable of its own"))

    def label(self, cl: TorchCall) -> str:
        """The row name of a call: the module's name, ``#k`` for the k-th call of a shared one."""
        label = cl.name or "(root)"
        return f"{label}#{self.ordinal[cl.index]}" if self.count[cl.name] > 1 else label

    def end_to_end(self, cl: TorchCall, expected) -> float | None:
        """Max difference of jaxconv's free-running output of this call from torch's."""
        outs, i = self.free.get(cl.name, []), self.ordinal[cl.index]
        if i >= len(outs):
            return None
        got = np.asarray(first_array(outs[i]))
        return tol_mod.max_difference(got, expected) if got.shape == expected.shape else None

    def leaf_results(self, ordered, progress) -> dict:
        """Every leaf call's ``(LeafInput, LeafRun)`` by call index (:func:`~equivalence.checks.run_leaves`)."""
        leaves = {cl.index: LeafInput.of(self.jax_named[cl.name], cl, self.grads) for cl in ordered
                  if cl.name in self.jax_named and first_array(cl.out) is not None
                  and _is_leaf(self.jax_named[cl.name])}
        if progress:
            progress(0, len(ordered), "compiling the layer checks")
        return {k: (leaf, run) for (k, leaf), run in zip(leaves.items(), run_leaves(list(leaves.values())))}

    def layer_row(self, cl: TorchCall, leaf) -> Row | None:
        """The forward row of one call (``None`` for a call without an array output); a leaf's
        local gradients are collected for :meth:`rows`."""
        sub = self.jax_named.get(cl.name)
        if sub is None:
            self.structure.append(f"{cl.name or '(root)'}: no jaxconv submodule of that name")
            return None
        expected = first_array(cl.out)
        if expected is None:
            return None
        if leaf is None:
            tmod, children = self.torch_named.get(cl.name), self.children_of(cl)
            floor = glue_floor(sub, tmod, cl, self.train, self.c)
            err, check = check_glue(sub, cl, children, self.c, floor), "glue"
            if self.grads:
                for pname, grad in glue_grads(sub, tmod, cl, children, self.input_grad_of, self.train).items():
                    self._add(self.param_grads, f"{cl.name}.{pname}" if cl.name else pname, grad)
                self._input_grad(cl, self.input_grad_of.get(cl.index))
        else:
            result = check_leaf(sub, self.torch_named.get(cl.name), cl, *leaf, self.train, self.c)
            err, check = result.errors, "local"
            for pname, grad in result.param_grads.items():
                self._add(self.param_grads, f"{cl.name}.{pname}" if cl.name else pname, grad)
            if result.input_grads:
                self.input_grad_of[cl.index] = result.input_grads
                self._input_grad(cl, result.input_grads)
        return Row("layer", self.label(cl), cl.type, tuple(expected.shape),
                   e2e=self.end_to_end(cl, expected), check=check, dtype=str(expected.dtype), **err)

    def _input_grad(self, cl: TorchCall, grads) -> None:
        """Count a call's local gradients of its inputs (a list by position) that are model
        inputs. A composite's gradient already holds its descendants' (its code ran backwards on
        their input gradients), so it replaces theirs."""
        for k in {k for k in cl.input_ids if k is not None} if grads else ():
            mine = [g for g, i in zip(grads, cl.input_ids) if i == k]
            if any(g is None for g in mine):
                continue
            parts = self.input_parts.setdefault(k, {})
            for index in [i for i in parts if self._inside(i, cl.index)]:
                del parts[index]
            parts[cl.index] = functools.reduce(operator.add, mine)

    def _inside(self, index: int, ancestor: int) -> bool:
        while index is not None:
            index = self.parent_of.get(index)
            if index == ancestor:
                return True
        return False

    @staticmethod
    def _add(acc, key, grad):
        """Sum a call's local gradient into ``acc[key]`` (a layer called several times)."""
        acc[key] = grad if key not in acc else acc[key] + grad

    def rows(self, progress=None) -> list:
        """Every check's row: the layers in finishing order, then gradients, then buffers."""
        self.check_structure()
        ordered = sorted(self.calls, key=lambda cl: cl.order)
        leaves = self.leaf_results(ordered, progress)
        rows = []
        for k, cl in enumerate(ordered):
            if progress:
                progress(k, len(ordered), cl.name or "(root)")
            row = self.layer_row(cl, leaves.get(cl.index))
            if row is not None:
                rows.append(row)
        if progress:
            progress(len(ordered), len(ordered), "done")
        if self.grads:
            input_grads = {k: functools.reduce(operator.add, parts.values())
                           for k, parts in self.input_parts.items() if parts}
            rows += grad_rows(self.torch_run, self.jax_run, self.param_grads, input_grads, self.c)
        if self.train:
            rows += buffer_rows(self.torch_run, self.jax_module, self.jax_named, self.torch_named,
                                self.calls, self.c)
        return rows


def compare(torch_module, jax_module, *inputs, grads: bool = False, seed: int = 0, dtype=None,
            train: bool | None = None, c: float = tol_mod.C, jit: bool = True,
            progress=None, autocast=None) -> Report:
    """Run a torch module and its jaxconv twin on the same inputs and check every layer.

    **Arguments:**

    - ``torch_module``: the reference ``torch.nn.Module``.
    - ``jax_module``: the jaxconv twin (an ``nnx.Module`` with the same submodule names).
    - ``*inputs``: torch tensors, arrays, or shapes (tuples of ints) for which standard-normal
      data is drawn from ``seed``.
    - ``grads``: also compare gradients of ``sum_k sum(output_k * cotangent_k)`` over every
      floating output (cotangents drawn from ``seed``) with respect to the floating inputs and
      every parameter, by torch name.
    - ``seed``: seed of the drawn inputs and cotangent (recorded in the report).
    - ``dtype``: cast the floating inputs to this dtype (drawn inputs are float32 by default): a name
      (``'bfloat16'``), a numpy/jnp dtype or a torch dtype. The two models' floating weights
      must have the same dtypes (a ``TypeError`` names those that differ).
    - ``train``: the mode both run in; ``None`` takes the torch module's ``training`` flag.
    - ``c``: the tolerance policy's constant (see :mod:`equivalence.tolerance`).
    - ``jit``: run the free-running jaxconv forward under one ``jax.jit``.
    - ``progress``: an optional callable ``progress(done, total, label)``.
    - ``autocast``: ``'bfloat16'`` or ``'float16'`` (any dtype form) runs torch under
      ``torch.autocast`` on its device and jaxconv under :func:`jaxconv.autocast`.

    Each row is checked in its compute dtype (the ``dtype`` column): the output's, or for a
    gradient the lower precision of the gradient's and its layer's output (a float32
    parameter's gradient under bfloat16 autocast is checked as bfloat16).

    Train-mode BatchNorm buffers are updated once on each side, as one training forward would,
    and checked; afterwards both models are as compare found them (modes, parameters, buffers,
    torch's ``.grad``).
    A model's outputs pair up in ``jax.tree_util`` order (a dict's values by sorted key); the
    layer rows check each call's first array. Returns a
    :class:`~equivalence.report.Report`.
    """
    torch = require_torch("equivalence.compare")
    train = bool(torch_module.training) if train is None else bool(train)
    with _left_as_found(torch_module, jax_module):
        return _compare(torch, torch_module, jax_module, inputs, grads, seed, dtype, train, c, jit,
                        progress, autocast)


def _compare(torch, torch_module, jax_module, inputs, grads, seed, dtype, train, c, jit, progress,
             autocast) -> Report:
    """:func:`compare` on models it may change (its caller puts them back)."""
    start = time.perf_counter()
    torch_module.train(train)
    if train:
        jax_module.train()
    else:
        jax_module.eval()
    _check_dtypes(torch_module, jax_module)
    arrays, shapes = _draw_inputs(inputs, seed, None if dtype is None else numpy_dtype(dtype))
    meta = {"seed": seed, "inputs": shapes, "train": train, "grads": grads,
            "autocast": None if autocast is None else numpy_dtype(autocast).name,
            "torch_type": type(torch_module).__name__, "jax_type": type(jax_module).__name__}
    jax_named = dict(named_modules(nnx.clone(jax_module)))
    torch_cast, jax_cast = _autocast_contexts(torch, torch_module, autocast)
    with _pinned_precision(torch) as precision, shared_programs():
        with torch_cast:
            torch_run = run_torch(torch, torch_module, arrays, seed + 1, grads)
        with jax_cast:
            jax_run = run_jax(jax_module, arrays, torch_run.cotangents, grads, jit)
            comparison = _Comparison(torch_run, jax_run, jax_module, jax_named,
                                     dict(torch_module.named_modules()), grads, train, c,
                                     list(torch_module.named_modules(remove_duplicate=False)))
            rows = comparison.rows(progress)
    meta["precision"] = precision
    meta["seconds"] = round(time.perf_counter() - start, 3)
    return Report(rows=rows, meta=meta, c=c, structure=comparison.structure)


def assert_equivalent(torch_module, jax_module, *inputs, **kwargs) -> Report:
    """:func:`compare`, raising ``AssertionError`` with the report's text when any check fails."""
    report = compare(torch_module, jax_module, *inputs, **kwargs)
    if not report.passed:
        raise AssertionError(report.to_text())
    return report
