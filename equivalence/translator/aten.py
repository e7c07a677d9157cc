"""ATen operators (``torch.export``'s pre-decomposition graph) -> jaxconv source.

One entry per ATen overload, keyed ``'name.overload'`` (``'conv2d.default'``), each an emitter
``fn(e, *args, **kwargs)`` like those of :mod:`.ops`, whose parameters are the ATen schema's
(``aten::conv2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=[1, 1], ...)``)
so that positional and keyword calls both bind. ATen argument orders differ from the
``torch.nn.functional`` ones in places (``batch_norm`` takes ``weight, bias`` before the
statistics; ``softmax`` has no ``_stacklevel``); the entries put them in jaxconv's order.
Ops with several results (``_native_batch_norm_legit_no_training``) return a tuple whose unused
items are ``None``: the graph reads only item 0.

Output classes (Hugging Face's ``ModelOutput``) live in :mod:`.outputs`.
"""
from __future__ import annotations

import torch

from . import outputs
from .ops import _register

_ATEN: dict = {}
_INT64_MAX = 2 ** 63 - 1


def _op(*names):
    """Register an emitter for these ATen overload names (the registrar of :mod:`.ops`)."""
    return _register(_ATEN, *names)


def _tup(v):
    """Lists of constants (ATen's ``int[2]``) as tuples, for readable calls."""
    return tuple(v) if isinstance(v, list) else v


def _kw(**kwargs):
    """Keyword arguments that are not ``None``."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _keyed(e, call: str, name: str) -> str:
    """``call`` with a fresh rng key passed as ``name`` (an expression, so not through ``e.fmt``)."""
    return f"{call[:-1]}{'' if call.endswith('(') else ', '}{name}={e.rng()})"


# --- convolution, linear, normalisation ----------------------------------------------------
def _conv(n):
    def emit(e, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        return e.call(f"F.conv{n}d", (input, weight, bias, _tup(stride), _tup(padding),
                                       _tup(dilation), groups), {})
    return emit


for _n in (1, 2, 3):
    _ATEN[f"conv{_n}d.default"] = _ATEN[f"conv{_n}d.padding"] = _conv(_n)


def _conv_transpose(n):
    def emit(e, input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        return e.call(f"F.conv_transpose{n}d", (input, weight, bias, _tup(stride), _tup(padding),
                                                 _tup(output_padding), groups, _tup(dilation)), {})
    return emit


for _n in (1, 2, 3):
    _ATEN[f"conv_transpose{_n}d.input"] = _conv_transpose(_n)


@_op("convolution.default")
def _convolution(e, input, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    n = len(stride)
    if transposed:
        return _conv_transpose(n)(e, input, weight, bias, stride, padding, output_padding, groups, dilation)
    return _conv(n)(e, input, weight, bias, stride, padding, dilation, groups)


@_op("linear.default")
def _linear(e, input, weight, bias=None):
    return e.call("F.linear", (input, weight, bias), {})


@_op("layer_norm.default")
def _layer_norm(e, input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    return e.call("F.layer_norm", (input, _tup(normalized_shape), weight, bias, eps), {})


@_op("group_norm.default")
def _group_norm(e, input, num_groups, weight=None, bias=None, eps=1e-5, cudnn_enabled=True):
    return e.call("F.group_norm", (input, num_groups, weight, bias, eps), {})


@_op("batch_norm.default")
def _batch_norm(e, input, weight, bias, running_mean, running_var, training, momentum, eps,
                cudnn_enabled=True):
    from .ops import function

    return function(torch.nn.functional.batch_norm)(e, input, running_mean, running_var, weight,
                                                    bias, training, momentum, eps)


@_op("_native_batch_norm_legit_no_training.default")
def _batch_norm_eval(e, input, weight, bias, running_mean, running_var, momentum, eps):
    call = e.call("F.batch_norm", (input, running_mean, running_var, weight, bias, False, momentum, eps), {})
    return f"({call}, None, None)"


# --- pooling -------------------------------------------------------------------------------
def _max_pool(n):
    def emit(e, input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
        return e.call(f"F.max_pool{n}d", (input, _tup(kernel_size), _tup(stride) or None, _tup(padding),
                                           _tup(dilation), ceil_mode), {})
    return emit


def _avg_pool(n):
    def emit(e, input, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None):
        return e.call(f"F.avg_pool{n}d", (input, _tup(kernel_size), _tup(stride) or None, _tup(padding),
                                           ceil_mode, count_include_pad),
                      _kw(divisor_override=divisor_override))
    return emit


for _n in (1, 2, 3):
    _ATEN[f"max_pool{_n}d.default"] = _max_pool(_n)
    _ATEN[f"avg_pool{_n}d.default"] = _avg_pool(_n)
    _ATEN[f"adaptive_avg_pool{_n}d.default"] = _ATEN[f"_adaptive_avg_pool{_n}d.default"] = (
        lambda n: lambda e, input, output_size: e.call(f"F.adaptive_avg_pool{n}d", (input, _tup(output_size)), {}))(_n)


# --- activations and pointwise ---------------------------------------------------------------
def _unary(name):
    return lambda e, input: e.call(name, (input,), {})


for _name in ("relu", "relu6", "silu", "hardswish", "hardsigmoid", "mish", "selu", "celu"):
    _ATEN[f"{_name}.default"] = _unary(f"F.{_name}")
for _name in ("sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "abs", "neg", "erf", "sin", "cos",
              "floor", "ceil", "reciprocal"):
    _ATEN[f"{_name}.default"] = _unary(f"T.{_name}")


@_op("gelu.default")
def _gelu(e, input, approximate="none"):
    return e.call("F.gelu", (input,), {} if approximate == "none" else {"approximate": approximate})


@_op("hardtanh.default")
def _hardtanh(e, input, min_val=-1.0, max_val=1.0):
    return e.call("F.hardtanh", (input, min_val, max_val), {})


@_op("leaky_relu.default")
def _leaky_relu(e, input, negative_slope=0.01):
    return e.call("F.leaky_relu", (input, negative_slope), {})


@_op("elu.default")
def _elu(e, input, alpha=1.0, scale=1.0, input_scale=1.0):
    if scale != 1 or input_scale != 1:
        raise TypeError("elu with scale or input_scale other than 1")
    return e.call("F.elu", (input, alpha), {})


@_op("softplus.default")
def _softplus(e, input, beta=1.0, threshold=20.0):
    return e.call("F.softplus", (input, beta, threshold), {})


def _softmax(name):
    def emit(e, input, dim, dtype=None):
        if isinstance(dtype, bool):     # _softmax's half_to_float
            dtype = None
        return e.call(f"F.{name}", (input,), _kw(dim=dim, dtype=dtype))
    return emit


for _name in ("softmax", "log_softmax"):
    _ATEN[f"{_name}.int"] = _ATEN[f"_{_name}.default"] = _softmax(_name)


def _arith(symbol):
    def emit(e, input, other, alpha=1):
        other = e.fmt(other) if alpha == 1 else f"{e.fmt(alpha)} * {e.fmt(other)}"
        return f"{e.fmt(input)} {symbol} {other}"
    return emit


for _name, _sym in (("add", "+"), ("sub", "-")):
    _ATEN[f"{_name}.Tensor"] = _ATEN[f"{_name}.Scalar"] = _arith(_sym)
for _name, _sym in (("mul", "*"), ("div", "/"), ("pow", "**"), ("eq", "=="), ("ne", "!="),
                    ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">=")):
    for _kind in ("Tensor", "Scalar", "Tensor_Tensor", "Tensor_Scalar"):
        _ATEN[f"{_name}.{_kind}"] = (lambda s: lambda e, a, b: f"{e.fmt(a)} {s} {e.fmt(b)}")(_sym)


@_op("rsub.Scalar", "rsub.Tensor")
def _rsub(e, input, other, alpha=1):
    return _arith("-")(e, other, input, alpha)


@_op("div.Tensor_mode", "div.Scalar_mode")
def _div_mode(e, input, other, rounding_mode=None):
    return e.call("T.div", (input, other), _kw(rounding_mode=rounding_mode))


@_op("clamp.default", "clamp.Tensor")
def _clamp(e, input, min=None, max=None):
    return e.call("T.clamp", (input,), _kw(min=min, max=max))


_ATEN["clamp_min.default"] = lambda e, input, min: e.call("T.clamp", (input,), {"min": min})
_ATEN["clamp_max.default"] = lambda e, input, max: e.call("T.clamp", (input,), {"max": max})


# --- reductions, shapes, joins --------------------------------------------------------------
def _reduce(name):
    def emit(e, input, dim=None, keepdim=False, dtype=None):
        return e.call(f"T.{name}", (input,), _kw(dim=_tup(dim) if dim != [] else None,
                                                  keepdim=keepdim or None, dtype=dtype))
    return emit


for _name in ("mean", "sum", "amax", "amin"):
    _ATEN[f"{_name}.dim"] = _ATEN[f"{_name}.dim_IntList"] = _ATEN[f"{_name}.default"] = _reduce(_name)


@_op("linalg_vector_norm.default")
def _vector_norm(e, input, ord=2, dim=None, keepdim=False, dtype=None):
    from .ops import function

    return function(torch.linalg.vector_norm)(e, input, ord, _tup(dim), keepdim, dtype=dtype)


@_op("cat.default", "concat.default")
def _cat(e, tensors, dim=0):
    return e.call("T.cat", (list(tensors), dim), {})


@_op("stack.default")
def _stack(e, tensors, dim=0):
    return e.call("T.stack", (list(tensors), dim), {})


@_op("permute.default")
def _permute(e, input, dims):
    return e.call("T.permute", (input, _tup(dims)), {})


@_op("view.default", "reshape.default", "_unsafe_view.default")
def _reshape(e, input, size):
    return e.call("T.reshape", (input, _tup(size)), {})


@_op("reshape_as.default", "view_as.default")
def _reshape_as(e, input, other):
    return f"{e.fmt(input)}.reshape({e.fmt(other)}.shape)"


@_op("flatten.using_ints")
def _flatten(e, input, start_dim=0, end_dim=-1):
    return e.call("T.flatten", (input, start_dim, end_dim), {})


@_op("transpose.int")
def _transpose(e, input, dim0, dim1):
    return e.call("T.transpose", (input, dim0, dim1), {})


@_op("unsqueeze.default")
def _unsqueeze(e, input, dim):
    return e.call("T.unsqueeze", (input, dim), {})


@_op("squeeze.dim", "squeeze.dims", "squeeze.default")
def _squeeze(e, input, dim=None):
    return e.call("T.squeeze", (input,) if dim is None else (input, _tup(dim)), {})


@_op("expand.default")
def _expand(e, input, size, implicit=False):
    return e.call("T.expand", (input, _tup(size)), {})


@_op("split.Tensor", "split_with_sizes.default")
def _split(e, input, split_size, dim=0):
    return e.call("T.split", (input, split_size, dim), {})


@_op("chunk.default")
def _chunk(e, input, chunks, dim=0):
    return e.call("T.chunk", (input, chunks, dim), {})


@_op("unbind.int")
def _unbind(e, input, dim=0):
    return e.call("T.unbind", (input, dim), {})


@_op("slice.Tensor")
def _slice(e, input, dim=0, start=None, end=None, step=1):
    start = None if start in (0, None) else e.fmt(start)
    end = None if end is None or (isinstance(end, int) and end >= _INT64_MAX) else e.fmt(end)
    text = f"{start or ''}:{end or ''}" + ("" if step == 1 else f":{e.fmt(step)}")
    lead = ":, " * dim if dim >= 0 else "..., " + ":, " * (-dim - 1)
    return f"{e.fmt(input)}[{lead}{text}]"


@_op("select.int")
def _select(e, input, dim, index):
    lead = ":, " * dim if dim >= 0 else "..., " + ":, " * (-dim - 1)
    return f"{e.fmt(input)}[{lead}{e.fmt(index)}]"


@_op("pad.default")
def _pad(e, input, pad, mode="constant", value=None):
    return e.call("F.pad", (input, _tup(pad)), _kw(mode=None if mode == "constant" else mode, value=value or None))


@_op("constant_pad_nd.default")
def _constant_pad(e, input, pad, value=0):
    return e.call("F.pad", (input, _tup(pad)), _kw(value=value or None))


# --- products, attention, resampling ----------------------------------------------------------
for _name in ("matmul", "bmm", "mm"):
    _ATEN[f"{_name}.default"] = (lambda n: lambda e, a, b: e.call(f"T.{n}", (a, b), {}))(_name)


@_op("addmm.default")
def _addmm(e, input, mat1, mat2, beta=1, alpha=1):
    return e.call("T.addmm", (input, mat1, mat2), _kw(beta=None if beta == 1 else beta,
                                                       alpha=None if alpha == 1 else alpha))


@_op("scaled_dot_product_attention.default")
def _sdpa(e, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
          enable_gqa=False):
    kw = _kw(attn_mask=attn_mask, dropout_p=dropout_p or None, is_causal=is_causal or None,
             scale=scale, enable_gqa=enable_gqa or None)
    call = e.call("F.scaled_dot_product_attention", (query, key, value), kw)
    return _keyed(e, call, "dropout_key") if dropout_p else call


def _upsample(mode):
    def emit(e, input, output_size, *rest):
        align_corners = rest[0] if len(rest) == 2 else None
        scale_factors = rest[-1] if rest else None
        return e.call("F.interpolate", (input,), _kw(size=_tup(output_size), scale_factor=_tup(scale_factors),
                                                      mode=mode, align_corners=align_corners))
    return emit


for _name, _mode in (("nearest", "nearest"), ("bilinear", "bilinear"), ("bicubic", "bicubic")):
    _ATEN[f"upsample_{_name}2d.vec"] = _upsample(_mode)


# --- creation ---------------------------------------------------------------------------------
def _creation(name, n_args):
    def emit(e, *args, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None,
             requires_grad=False):
        return e.call(f"T.{name}", tuple(_tup(a) for a in args[:n_args]), _kw(dtype=dtype))
    return emit


for _name, _n in (("zeros", 1), ("ones", 1), ("full", 2), ("zeros_like", 1), ("ones_like", 1),
                  ("full_like", 2), ("arange", 1)):
    _ATEN[f"{_name}.default"] = _creation(_name, _n)
_ATEN["arange.start"] = _creation("arange", 2)
_ATEN["arange.start_step"] = _creation("arange", 3)


# --- dropout, casts, identities, asserts, shapes ------------------------------------------------
@_op("dropout.default")
def _dropout(e, input, p, train):
    call = e.call("F.dropout", (input, p, train), {})
    return _keyed(e, call, "key") if train and p else call


def _cast(e, input, *args, dtype=None, **kwargs):
    dtype = next((a for a in args if isinstance(a, torch.dtype)), dtype)
    return e.fmt(input) if dtype is None else f"{e.fmt(input)}.astype({e.fmt(dtype)})"


for _name in ("to.dtype", "to.dtype_layout", "_to_copy.default", "to.device"):
    _ATEN[_name] = _cast
for _name in ("contiguous.default", "clone.default", "alias.default", "lift_fresh_copy.default"):
    _ATEN[_name] = lambda e, input, *a, **k: e.fmt(input)
_ATEN["detach.default"] = lambda e, input: f"jax.lax.stop_gradient({e.fmt(input)})"
for _name in ("_assert_tensor_metadata.default", "_assert_scalar.default", "sym_constrain_range_for_size.default"):
    _ATEN[_name] = lambda e, *a, **k: None
_ATEN["sym_size.int"] = lambda e, input, dim: f"{e.fmt(input)}.shape[{e.fmt(dim)}]"
_ATEN["sym_numel.default"] = lambda e, input: f"{e.fmt(input)}.size"


def function(target):
    """The emitter of an ATen overload or an output class, or ``None`` when it has neither."""
    if outputs.is_output_class(target):
        return outputs.emitter(target)
    if isinstance(target, torch._ops.OpOverload) and target.namespace == "aten":
        return _ATEN.get(target.__name__)
    return None
