"""ATen entries of the layer vocabulary: convolution, linear, normalisation, pooling,
activations, attention, resampling, dropout.

ATen argument orders differ from the ``torch.nn.functional`` ones in places (``batch_norm``
takes ``weight, bias`` before the statistics; ``softmax`` has no ``_stacklevel``); the entries
put them in jaxconv's order. Ops with several results (``_native_batch_norm_legit_no_training``,
``adaptive_max_pool2d``'s values and indices) return a tuple whose unused items are ``None``
where jaxconv does not compute them: the graph reads only item 0.
"""
from __future__ import annotations

import torch

from .. import ops
from ._table import TABLE, keyed, kw, op, tup


# --- convolution, linear, normalisation ----------------------------------------------------
def _conv(n):
    def emit(e, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        return e.call(f"F.conv{n}d", (input, weight, bias, tup(stride), tup(padding),
                                       tup(dilation), groups), {})
    return emit


def _conv_transpose(n):
    def emit(e, input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        return e.call(f"F.conv_transpose{n}d", (input, weight, bias, tup(stride), tup(padding),
                                                 tup(output_padding), groups, tup(dilation)), {})
    return emit


for _n in (1, 2, 3):
    TABLE[f"conv{_n}d.default"] = TABLE[f"conv{_n}d.padding"] = _conv(_n)
    TABLE[f"conv_transpose{_n}d.input"] = TABLE[f"conv_transpose{_n}d.default"] = _conv_transpose(_n)


@op("convolution.default")
def _convolution(e, input, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    n = len(stride)
    if transposed:
        return _conv_transpose(n)(e, input, weight, bias, stride, padding, output_padding, groups, dilation)
    return _conv(n)(e, input, weight, bias, stride, padding, dilation, groups)


@op("linear.default")
def _linear(e, input, weight, bias=None):
    return e.call("F.linear", (input, weight, bias), {})


@op("layer_norm.default")
def _layer_norm(e, input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    return e.call("F.layer_norm", (input, tup(normalized_shape), weight, bias, eps), {})


@op("group_norm.default")
def _group_norm(e, input, num_groups, weight=None, bias=None, eps=1e-5, cudnn_enabled=True):
    return e.call("F.group_norm", (input, num_groups, weight, bias, eps), {})


@op("instance_norm.default")
def _instance_norm(e, input, weight, bias, running_mean, running_var, use_input_stats, momentum,
                   eps, cudnn_enabled=True):
    return e.call("F.instance_norm", (input, running_mean, running_var, weight, bias,
                                      use_input_stats, momentum, eps), {})


@op("batch_norm.default")
def _batch_norm(e, input, weight, bias, running_mean, running_var, training, momentum, eps,
                cudnn_enabled=True):
    return ops.function(torch.nn.functional.batch_norm)(e, input, running_mean, running_var, weight,
                                                    bias, training, momentum, eps)


@op("_native_batch_norm_legit_no_training.default")
def _batch_norm_eval(e, input, weight, bias, running_mean, running_var, momentum, eps):
    call = e.call("F.batch_norm", (input, running_mean, running_var, weight, bias, False, momentum, eps), {})
    return f"({call}, None, None)"


@op("_native_batch_norm_legit_functional.default")
def _batch_norm_functional(e, input, weight, bias, running_mean, running_var, training, momentum, eps):
    """A functionalised train-mode batch norm: ``(output, _, _, new_mean, new_var)``."""
    call = e.call("F.batch_norm", (input, running_mean, running_var, weight, bias, training, momentum, eps), {})
    if not training:
        return f"({call}, None, None, {e.fmt(running_mean)}, {e.fmt(running_var)})"
    e.after(f"{e.name} = {call}")
    e.after(f"{e.name} = ({e.name}[0], None, None, {e.name}[1], {e.name}[2])")
    return ops.BOUND


@op("_native_batch_norm_legit.no_stats")
def _batch_norm_no_stats(e, input, weight, bias, training, momentum, eps):
    call = e.call("F.batch_norm", (input, None, None, weight, bias, training, momentum, eps), {})
    return f"({call}, None, None)"


# --- pooling -------------------------------------------------------------------------------
def _max_pool(n, indices=False):
    def emit(e, input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
        return e.call(f"F.max_pool{n}d", (input, tup(kernel_size), tup(stride) or None, tup(padding),
                                           tup(dilation), ceil_mode), kw(return_indices=indices or None))
    return emit


def _avg_pool(n):
    def emit(e, input, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None):
        return e.call(f"F.avg_pool{n}d", (input, tup(kernel_size), tup(stride) or None, tup(padding),
                                           ceil_mode, count_include_pad),
                      kw(divisor_override=divisor_override))
    return emit


def _adaptive(kind, n):
    def emit(e, input, output_size):
        extra = {"return_indices": True} if kind == "max" else {}
        return e.call(f"F.adaptive_{kind}_pool{n}d", (input, tup(output_size)), extra)
    return emit


for _n in (1, 2, 3):
    TABLE[f"max_pool{_n}d.default"] = _max_pool(_n)
    TABLE[f"avg_pool{_n}d.default"] = _avg_pool(_n)
    TABLE[f"adaptive_avg_pool{_n}d.default"] = TABLE[f"_adaptive_avg_pool{_n}d.default"] = _adaptive("avg", _n)
    TABLE[f"adaptive_max_pool{_n}d.default"] = _adaptive("max", _n)     # (values, indices)
TABLE["max_pool2d_with_indices.default"] = _max_pool(2, indices=True)
TABLE["max_pool3d_with_indices.default"] = _max_pool(3, indices=True)


# --- activations ---------------------------------------------------------------------------
def _unary(name):
    return lambda e, input: e.call(name, (input,), {})


for _name in ("relu", "relu6", "silu", "hardswish", "hardsigmoid", "mish", "selu"):
    TABLE[f"{_name}.default"] = _unary(f"F.{_name}")


@op("gelu.default")
def _gelu(e, input, approximate="none"):
    return e.call("F.gelu", (input,), {} if approximate == "none" else {"approximate": approximate})


@op("hardtanh.default")
def _hardtanh(e, input, min_val=-1.0, max_val=1.0):
    return e.call("F.hardtanh", (input, min_val, max_val), {})


@op("leaky_relu.default")
def _leaky_relu(e, input, negative_slope=0.01):
    return e.call("F.leaky_relu", (input, negative_slope), {})


@op("elu.default")
def _elu(e, input, alpha=1.0, scale=1.0, input_scale=1.0):
    if scale != 1 or input_scale != 1:
        raise TypeError("elu with scale or input_scale other than 1")
    return e.call("F.elu", (input, alpha), {})


@op("celu.default")
def _celu(e, input, alpha=1.0):
    return e.call("F.celu", (input, alpha), {})


@op("softplus.default")
def _softplus(e, input, beta=1.0, threshold=20.0):
    return e.call("F.softplus", (input, beta, threshold), {})


@op("prelu.default", "_prelu_kernel.default")
def _prelu(e, input, weight):
    return e.call("F.prelu", (input, weight), {})


def _softmax(name):
    def emit(e, input, dim, dtype=None):
        if isinstance(dtype, bool):     # _softmax's half_to_float
            dtype = None
        return e.call(f"F.{name}", (input,), kw(dim=dim, dtype=dtype))
    return emit


for _name in ("softmax", "log_softmax"):
    TABLE[f"{_name}.int"] = TABLE[f"_{_name}.default"] = _softmax(_name)


# --- recurrent layers (a forward calling torch.lstm itself; nn.LSTM is a leaf) --------------------
def _recurrent(name):
    def emit(e, input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
        hx = list(hx) if isinstance(hx, (list, tuple)) else hx
        call = e.call(f"F.{name}", (input, hx, list(params), has_biases, num_layers, dropout, train,
                                    bidirectional, batch_first), {})
        return keyed(e, call, "key") if train and dropout else call
    return emit


for _name in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
    TABLE[f"{_name}.input"] = _recurrent(_name)       # (output, h[, c]), as jaxconv's
TABLE["lstm_cell.default"] = lambda e, *args: e.call("F.lstm_cell", (args[0], list(args[1]), *args[2:]), {})


# --- attention, resampling, dropout ------------------------------------------------------------
@op("scaled_dot_product_attention.default")
def _sdpa(e, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
          enable_gqa=False):
    kwargs = kw(attn_mask=attn_mask, dropout_p=dropout_p or None, is_causal=is_causal or None,
                scale=scale, enable_gqa=enable_gqa or None)
    call = e.call("F.scaled_dot_product_attention", (query, key, value), kwargs)
    return keyed(e, call, "dropout_key") if dropout_p else call


def _upsample(mode):
    def emit(e, input, output_size, *rest):
        align_corners = rest[0] if len(rest) == 2 else None
        scale_factors = rest[-1] if rest else None
        return e.call("F.interpolate", (input,), kw(size=tup(output_size), scale_factor=tup(scale_factors),
                                                    mode=mode, align_corners=align_corners))
    return emit


for _name, _mode in (("nearest", "nearest"), ("bilinear", "bilinear"), ("bicubic", "bicubic")):
    TABLE[f"upsample_{_name}2d.vec"] = _upsample(_mode)


@op("dropout.default")
def _dropout(e, input, p, train):
    call = e.call("F.dropout", (input, p, train), {})
    return keyed(e, call, "key") if train and p else call


@op("native_dropout.default")
def _native_dropout(e, input, p, train):
    """Functionalised dropout: ``(output, mask)``; the graph reads the output only."""
    return f"({_dropout(e, input, p, train)}, None)"
