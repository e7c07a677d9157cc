"""ATen entries of the tensor vocabulary whose schema differs from the ``torch`` function's:
Python operators, reductions over dim lists, shapes and views, indexing, the functional forms
of in-place writes (``copy``, ``fill``, ``slice_scatter``, ``index_put``), creation, casts.
"""
from __future__ import annotations

import torch

from .. import ops
from ._table import TABLE, keyed, kw, lead, op, span, tup


# --- pointwise -------------------------------------------------------------------------------
def _unary(name):
    return lambda e, input: e.call(name, (input,), {})


for _name in ("sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "abs", "neg", "erf", "sin", "cos",
              "floor", "ceil", "reciprocal"):
    TABLE[f"{_name}.default"] = _unary(f"T.{_name}")


def _arith(symbol):
    def emit(e, input, other, alpha=1):
        other = e.fmt(other) if alpha == 1 else f"{e.fmt(alpha)} * {e.fmt(other)}"
        return f"{e.fmt(input)} {symbol} {other}"
    return emit


for _name, _sym in (("add", "+"), ("sub", "-"), ("subtract", "-")):
    TABLE[f"{_name}.Tensor"] = TABLE[f"{_name}.Scalar"] = _arith(_sym)
for _name, _sym in (("mul", "*"), ("div", "/"), ("pow", "**"), ("eq", "=="), ("ne", "!="),
                    ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="),
                    ("bitwise_and", "&"), ("bitwise_or", "|"), ("logical_and", "&"), ("logical_or", "|")):
    for _kind in ("Tensor", "Scalar", "Tensor_Tensor", "Tensor_Scalar", "default"):
        TABLE[f"{_name}.{_kind}"] = (lambda s: lambda e, a, b: f"{e.fmt(a)} {s} {e.fmt(b)}")(_sym)
TABLE["bitwise_not.default"] = TABLE["logical_not.default"] = lambda e, a: f"~{e.fmt(a)}"


@op("rsub.Scalar", "rsub.Tensor")
def _rsub(e, input, other, alpha=1):
    return _arith("-")(e, other, input, alpha)


@op("div.Tensor_mode", "div.Scalar_mode")
def _div_mode(e, input, other, rounding_mode=None):
    return e.call("T.div", (input, other), kw(rounding_mode=rounding_mode))


TABLE["max.other"] = TABLE["maximum.default"] = lambda e, input, other: e.call("T.maximum", (input, other), {})
TABLE["min.other"] = TABLE["minimum.default"] = lambda e, input, other: e.call("T.minimum", (input, other), {})


@op("clamp.default", "clamp.Tensor", "clip.default", "clip.Tensor")
def _clamp(e, input, min=None, max=None):
    return e.call("T.clamp", (input,), kw(min=min, max=max))


TABLE["clamp_min.default"] = TABLE["clamp_min.Tensor"] = lambda e, input, min: e.call("T.clamp", (input,), {"min": min})
TABLE["clamp_max.default"] = TABLE["clamp_max.Tensor"] = lambda e, input, max: e.call("T.clamp", (input,), {"max": max})


# --- reductions ------------------------------------------------------------------------------
def _reduce(name):
    def emit(e, input, dim=None, keepdim=False, dtype=None):
        return e.call(f"T.{name}", (input,), kw(dim=tup(dim) if dim != [] else None,
                                                keepdim=keepdim or None, dtype=dtype))
    return emit


for _name in ("mean", "sum", "amax", "amin"):
    TABLE[f"{_name}.dim"] = TABLE[f"{_name}.dim_IntList"] = TABLE[f"{_name}.default"] = _reduce(_name)


def _moment(name):
    def emit(e, input, dim=None, unbiased=None, keepdim=False, *, correction=None):
        if isinstance(dim, bool):           # std.default(self, unbiased)
            dim, unbiased = None, dim
        if unbiased is not None:
            correction = int(unbiased)
        return e.call(f"T.{name}", (input,), kw(dim=tup(dim), correction=correction,
                                                keepdim=keepdim or None))
    return emit


for _name in ("var", "std"):
    TABLE[f"{_name}.default"] = TABLE[f"{_name}.dim"] = TABLE[f"{_name}.correction"] = _moment(_name)


@op("linalg_vector_norm.default")
def _vector_norm(e, input, ord=2, dim=None, keepdim=False, dtype=None):
    return ops.function(torch.linalg.vector_norm)(e, input, ord, tup(dim), keepdim, dtype=dtype)


@op("norm.Scalar", "norm.ScalarOpt_dim", "norm.ScalarOpt_dim_dtype", "norm.ScalarOpt_dtype")
def _norm(e, input, p=2, dim=None, keepdim=False, *, dtype=None):
    return e.call("T.norm", (input, 2 if p is None else p, tup(dim), keepdim), kw(dtype=dtype))


# --- joins, shapes, views --------------------------------------------------------------------
@op("cat.default", "concat.default", "concatenate.default")
def _cat(e, tensors, dim=0):
    return e.call("T.cat", (list(tensors), dim), {})


@op("meshgrid.default", "meshgrid.indexing")
def _meshgrid(e, tensors, *, indexing="ij"):
    return e.call("T.meshgrid", tuple(tensors), {"indexing": indexing})


@op("stack.default")
def _stack(e, tensors, dim=0):
    return e.call("T.stack", (list(tensors), dim), {})


@op("permute.default")
def _permute(e, input, dims):
    return e.call("T.permute", (input, tup(dims)), {})


@op("view.default", "reshape.default", "_unsafe_view.default")
def _reshape(e, input, size):
    return e.call("T.reshape", (input, tup(size)), {})


@op("reshape_as.default", "view_as.default")
def _reshape_as(e, input, other):
    return f"{e.fmt(input)}.reshape({e.fmt(other)}.shape)"


@op("flatten.using_ints")
def _flatten(e, input, start_dim=0, end_dim=-1):
    return e.call("T.flatten", (input, start_dim, end_dim), {})


@op("transpose.int", "swapaxes.default", "swapdims.default")
def _transpose(e, input, dim0, dim1):
    return e.call("T.transpose", (input, dim0, dim1), {})


@op("unsqueeze.default")
def _unsqueeze(e, input, dim):
    return e.call("T.unsqueeze", (input, dim), {})


@op("squeeze.dim", "squeeze.dims", "squeeze.default")
def _squeeze(e, input, dim=None):
    return e.call("T.squeeze", (input,) if dim is None else (input, tup(dim)), {})


@op("expand.default", "broadcast_to.default")
def _expand(e, input, size, implicit=False):
    return e.call("T.expand", (input, tup(size)), {})


@op("broadcast_tensors.default")
def _broadcast_tensors(e, tensors):
    """A list of the tensors broadcast together (``F.mse_loss`` and its kin call it)."""
    return f"jnp.broadcast_arrays({', '.join(e.fmt(t) for t in tensors)})"


@op("split.Tensor", "split_with_sizes.default", "split.sizes", "split.default")
def _split(e, input, split_size, dim=0):
    return e.call("T.split", (input, tup(split_size), dim), {})


@op("chunk.default")
def _chunk(e, input, chunks, dim=0):
    return e.call("T.chunk", (input, chunks, dim), {})


@op("unbind.int")
def _unbind(e, input, dim=0):
    return e.call("T.unbind", (input, dim), {})


@op("roll.default")
def _roll(e, input, shifts, dims=()):
    return e.call("T.roll", (input, tup(shifts), tup(dims) or None), {})


@op("tensor_split.sections", "tensor_split.indices", "tensor_split.tensor_indices_or_sections")
def _tensor_split(e, input, sections, dim=0):
    return e.call("T.tensor_split", (input, tup(sections), dim), {})


@op("flip.default")
def _flip(e, input, dims):
    return e.call("T.flip", (input, tup(dims)), {})


@op("repeat.default")
def _repeat(e, input, repeats):
    return e.call("T.repeat", (input, tup(repeats)), {})


@op("tile.default")
def _tile(e, input, dims):
    return e.call("T.tile", (input, tup(dims)), {})


@op("movedim.int", "movedim.intlist")
def _movedim(e, input, source, destination):
    return e.call("T.movedim", (input, tup(source), tup(destination)), {})


@op("repeat_interleave.self_int", "repeat_interleave.self_Tensor")
def _repeat_interleave(e, input, repeats, dim=None, *, output_size=None):
    return e.call("T.repeat_interleave", (input, repeats), kw(dim=dim))


@op("pad.default")
def _pad(e, input, pad, mode="constant", value=None):
    return e.call("F.pad", (input, tup(pad)), kw(mode=None if mode == "constant" else mode, value=value or None))


@op("constant_pad_nd.default")
def _constant_pad(e, input, pad, value=0):
    return e.call("F.pad", (input, tup(pad)), kw(value=value or None))


# --- indexing and the functional forms of writes -------------------------------------------------
@op("slice.Tensor")
def _slice(e, input, dim=0, start=None, end=None, step=1):
    return f"{e.fmt(input)}[{lead(dim)}{span(e, start, end, step)}]"


@op("select.int")
def _select(e, input, dim, index):
    return f"{e.fmt(input)}[{lead(dim)}{e.fmt(index)}]"


def _indices(e, indices) -> str:
    """ATen's ``Tensor?[] indices`` as a Python index: ``None`` is a whole dimension."""
    return ", ".join(":" if i is None else e.fmt(i) for i in indices) or "()"


@op("index.Tensor")
def _index(e, input, indices):
    """Advanced indexing (``table[index.view(-1)]``): torch's rules are numpy's."""
    return f"{e.fmt(input)}[{_indices(e, indices)}]"


@op("index_put.default", "index_put_.default")
def _index_put(e, input, indices, values, accumulate=False):
    return f"{e.fmt(input)}.at[{_indices(e, indices)}].{'add' if accumulate else 'set'}({e.fmt(values)})"


@op("slice_scatter.default")
def _slice_scatter(e, input, src, dim=0, start=None, end=None, step=1):
    """``input`` with ``src`` written into ``input[..., start:end:step]`` (a slice assignment)."""
    return f"{e.fmt(input)}.at[{lead(dim)}{span(e, start, end, step)}].set({e.fmt(src)})"


@op("select_scatter.default")
def _select_scatter(e, input, src, dim, index):
    return f"{e.fmt(input)}.at[{lead(dim)}{e.fmt(index)}].set({e.fmt(src)})"


@op("copy.default", "copy_.default")
def _copy(e, input, src, non_blocking=False):
    """``src`` in ``input``'s shape and dtype (``copy_`` into a buffer is written back by emit)."""
    x = e.fmt(input)
    return f"jnp.broadcast_to({e.fmt(src)}, {x}.shape).astype({x}.dtype)"


@op("fill.Scalar", "fill.Tensor", "fill_.Scalar", "fill_.Tensor")
def _fill(e, input, value):
    x = e.fmt(input)
    return f"jnp.broadcast_to(jnp.asarray({e.fmt(value)}, {x}.dtype), {x}.shape)"


TABLE["zero.default"] = TABLE["zero_.default"] = lambda e, input: f"jnp.zeros_like({e.fmt(input)})"


# --- products, creation ----------------------------------------------------------------------
for _name in ("matmul", "bmm", "mm"):
    TABLE[f"{_name}.default"] = (lambda n: lambda e, a, b: e.call(f"T.{n}", (a, b), {}))(_name)


@op("addmm.default")
def _addmm(e, input, mat1, mat2, beta=1, alpha=1):
    return e.call("T.addmm", (input, mat1, mat2), kw(beta=None if beta == 1 else beta,
                                                     alpha=None if alpha == 1 else alpha))


@op("einsum.default")
def _einsum(e, equation, tensors, path=None):
    return e.call("T.einsum", (equation, *tensors), {})


def _creation(name, n_args):
    def emit(e, *args, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None,
             requires_grad=False):
        return e.call(f"T.{name}", tuple(tup(a) for a in args[:n_args]), kw(dtype=dtype))
    return emit


for _name, _n in (("zeros", 1), ("ones", 1), ("full", 2), ("zeros_like", 1), ("ones_like", 1),
                  ("full_like", 2), ("arange", 1), ("eye", 1), ("empty_like", 1), ("new_zeros", 2),
                  ("new_ones", 2), ("new_empty", 2), ("new_full", 3)):
    TABLE[f"{_name}.default"] = _creation(_name, _n)
TABLE["arange.start"] = _creation("arange", 2)
TABLE["arange.start_step"] = _creation("arange", 3)
TABLE["eye.m"] = _creation("eye", 2)
TABLE["empty.memory_format"] = _creation("empty", 1)


def _random(name, n_args):
    """A draw with a fresh key from the module's stream (see :func:`..ops._random`)."""
    def emit(e, *args, dtype=None, generator=None, layout=None, device=None, pin_memory=None,
             memory_format=None):
        return keyed(e, e.call(f"T.{name}", tuple(tup(a) for a in args[:n_args]), kw(dtype=dtype)), "key")
    return emit


for _name, _n in (("rand", 1), ("randn", 1), ("rand_like", 1), ("randn_like", 1)):
    TABLE[f"{_name}.default"] = TABLE[f"{_name}.generator"] = _random(_name, _n)
TABLE["bernoulli.default"] = _random("bernoulli", 1)
TABLE["bernoulli.p"] = TABLE["bernoulli.Tensor"] = _random("bernoulli", 2)


# --- casts, identities, asserts, shapes ----------------------------------------------------------
def _cast(e, input, *args, dtype=None, **kwargs):
    dtype = next((a for a in args if isinstance(a, torch.dtype)), dtype)
    return e.fmt(input) if dtype is None else f"{e.fmt(input)}.astype({e.fmt(dtype)})"


for _name in ("to.dtype", "to.dtype_layout", "_to_copy.default", "to.device"):
    TABLE[_name] = _cast
TABLE["type_as.default"] = TABLE["to.other"] = lambda e, input, other, *a, **k: f"{e.fmt(input)}.astype({e.fmt(other)}.dtype)"
for _name in ("contiguous.default", "clone.default", "alias.default", "lift_fresh_copy.default"):
    TABLE[_name] = lambda e, input, *a, **k: e.fmt(input)
TABLE["detach.default"] = lambda e, input: f"jax.lax.stop_gradient({e.fmt(input)})"
for _name in ("_assert_tensor_metadata.default", "_assert_scalar.default", "sym_constrain_range_for_size.default"):
    TABLE[_name] = lambda e, *a, **k: None
TABLE["sym_size.int"] = TABLE["size.int"] = lambda e, input, dim: f"{e.fmt(input)}.shape[{e.fmt(dim)}]"
TABLE["sym_numel.default"] = TABLE["numel.default"] = lambda e, input: f"{e.fmt(input)}.size"
TABLE["dim.default"] = lambda e, input: f"{e.fmt(input)}.ndim"
