"""The one table from torch calls to the source of their jaxconv / jax.numpy equivalents.

A graph node is a torch function (``call_function``), a Tensor method (``call_method``) or an
operator. Most need no entry of their own: a ``torch.nn.functional`` function that
``jaxconv.functional`` has under the same name is emitted as ``F.name(...)`` with the same
arguments, and a ``torch`` function or Tensor method that ``jaxconv.tensor`` has as
``T.name(...)`` (those modules take torch's signatures and semantics, each tested against
torch). The entries below are the rest: Python operators, attribute reads (``x.shape``), casts,
in-place methods, calls that are dropped (``torch._assert``) and the few whose jaxconv form
differs (``F.batch_norm`` in training returns the new statistics, dropout needs a key).

An emitter is ``fn(e, *args, **kwargs) -> str | None``: ``e`` (an :class:`emit.Body`) formats
arguments (``e.fmt``), reads a buffer's path (``e.attr``), adds statements after the node's
assignment (``e.after``) and asks for a dropout stream (``e.rng()``); the return value is
the expression bound to the node (``None``: nothing to bind; :data:`BOUND`: the statements
it added bind the node's local, ``e.name``, themselves).
"""
from __future__ import annotations

import builtins
import inspect
import math
import operator

import torch
import torch.nn.functional as TF

import jaxconv.functional as jF
from jaxconv import tensor as jT

from . import unreached
from .graph import in_place_method


class _Bound:
    """What an emitter returns when the statements it added (``e.after``) bind the node."""

    def __repr__(self):
        return "BOUND"


#: An emitter's result: the node's local is bound already, by the statements it added.
BOUND = _Bound()

_FUNCTIONS: dict = {}
_METHODS: dict = {}
_USER: dict = {}

#: Python operators: ``operator.X`` -> infix (or prefix) form.
_BINARY = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
           operator.floordiv: "//", operator.mod: "%", operator.pow: "**",
           operator.eq: "==", operator.ne: "!=", operator.lt: "<", operator.le: "<=",
           operator.gt: ">", operator.ge: ">=", operator.and_: "&", operator.or_: "|",
           operator.xor: "^", operator.iadd: "+", operator.isub: "-", operator.imul: "*",
           operator.itruediv: "/", operator.lshift: "<<", operator.rshift: ">>"}
_UNARY = {operator.neg: "-", operator.pos: "+", operator.invert: "~", operator.not_: "not "}
_CASTS = {"float": "float32", "double": "float64", "half": "float16", "bfloat16": "bfloat16",
          "int": "int32", "long": "int64", "bool": "bool_"}
_ATTRIBUTES = {"shape": ".shape", "dtype": ".dtype", "ndim": ".ndim", "T": ".T", "mT": ".mT",
               "data": "", "real": ".real", "imag": ".imag"}
_DROPOUTS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout"}


def _register(table, *keys):
    def deco(fn):
        for k in keys:
            table[k] = fn
        return fn
    return deco


def _binary(symbol):
    return lambda e, a, b: f"{e.fmt(a)} {symbol} {e.fmt(b)}"


def _unary(symbol):
    return lambda e, a: f"{symbol}{e.fmt(a)}"


for _op, _sym in _BINARY.items():
    _FUNCTIONS[_op] = _binary(_sym)
for _op, _sym in _UNARY.items():
    _FUNCTIONS[_op] = _unary(_sym)
# ``a @ b`` as T.matmul: torch's precision and jaxconv.autocast, which jnp's ``@`` has not.
_FUNCTIONS[operator.matmul] = lambda e, a, b: f"T.matmul({e.fmt(a)}, {e.fmt(b)})"


def _index(e, idx) -> str:
    if isinstance(idx, tuple):
        return ", ".join(_index(e, i) for i in idx) if idx else "()"
    if isinstance(idx, slice):
        parts = ["" if v is None else e.fmt(v) for v in (idx.start, idx.stop, idx.step)]
        return ":".join(parts[:2]) + (f":{parts[2]}" if parts[2] else "")
    return "..." if idx is Ellipsis else e.fmt(idx)


@_register(_FUNCTIONS, operator.getitem)
def _getitem(e, x, idx):
    return f"{e.fmt(x)}[{_index(e, idx)}]"


@_register(_FUNCTIONS, builtins.getattr)
def _getattr(e, x, name):
    if name == "device":
        return "None"
    if name in _ATTRIBUTES:
        return e.fmt(x) + _ATTRIBUTES[name]
    if getattr(x, "op", None) == "call_module" and name.isidentifier():
        return f"{e.fmt(x)}.{name}"     # a field of a module's structured output (ModelOutput)
    raise KeyError(name)


@_register(_FUNCTIONS, torch._assert)
def _assert(e, *args, **kwargs):
    return None


def _with_alpha(symbol):
    def emit(e, input, other, *, alpha=1, out=None):
        other = e.fmt(other) if alpha == 1 else f"{e.fmt(alpha)} * {e.fmt(other)}"
        return f"{e.fmt(input)} {symbol} {other}"
    return emit


_register(_FUNCTIONS, torch.add)(_with_alpha("+"))
_register(_FUNCTIONS, torch.sub)(_with_alpha("-"))
_register(_METHODS, "add")(_with_alpha("+"))
_register(_METHODS, "sub")(_with_alpha("-"))


@_register(_FUNCTIONS, torch.mul)
@_register(_METHODS, "mul")
def _mul(e, input, other):
    return f"{e.fmt(input)} * {e.fmt(other)}"


@_register(_METHODS, "where")
def _where(e, x, condition, other):
    """``x.where(condition, other)`` is ``torch.where(condition, x, other)``."""
    return e.call("T.where", (condition, x, other), {})


@_register(_METHODS, "size")
def _size(e, x, dim=None):
    return f"{e.fmt(x)}.shape" + ("" if dim is None else f"[{e.fmt(dim)}]")


@_register(_METHODS, "dim")
def _ndim(e, x):
    return f"{e.fmt(x)}.ndim"


@_register(_METHODS, "numel")
def _numel(e, x):
    return f"{e.fmt(x)}.size"


@_register(_METHODS, "contiguous", "clone")
def _same(e, x, *args, **kwargs):
    return e.fmt(x)


@_register(_METHODS, "detach")
def _detach(e, x):
    return f"jax.lax.stop_gradient({e.fmt(x)})"


@_register(_METHODS, "type_as")
def _type_as(e, x, other):
    return f"{e.fmt(x)}.astype({e.fmt(other)}.dtype)"


@_register(_METHODS, "reshape_as", "view_as")
def _reshape_as(e, x, other):
    return f"{e.fmt(x)}.reshape({e.fmt(other)}.shape)"


for _name, _dtype in _CASTS.items():
    _METHODS[_name] = (lambda d: lambda e, x, *a, **k: f"{e.fmt(x)}.astype(jnp.{d})")(_dtype)


@_register(_FUNCTIONS, TF.batch_norm)
def _batch_norm(e, input, running_mean, running_var, weight=None, bias=None, training=False,
                momentum=0.1, eps=1e-5):
    call = e.call("F.batch_norm", (input, running_mean, running_var, weight, bias, training,
                                   momentum, eps), {})
    if not (training is True and e.attr(running_mean) and e.attr(running_var)):
        return call
    e.after(f"{e.name}, {e.fmt(running_mean)}, {e.fmt(running_var)} = {call}")
    return BOUND


def _dropout(fn):
    def emit(e, input, p=0.5, training=True, inplace=False):
        call = e.call(f"F.{fn}", (input, p, training), {})
        return call[:-1] + f", key={e.rng()})" if training is True and p != 0 else call
    return emit


for _name in _DROPOUTS:
    if hasattr(jF, _name):
        _FUNCTIONS[getattr(TF, _name)] = _dropout(_name)


def _random(name):
    """A draw of torch's random function ``name`` with a fresh key from the module's stream
    (the values differ from torch's, as dropout masks do; the distribution is torch's)."""
    def emit(e, *args, generator=None, **kwargs):
        call = passthrough(f"T.{name}", getattr(jT, name))(e, *args, **kwargs)
        return f"{call[:-1]}{'' if call.endswith('(') else ', '}key={e.rng()})"
    return emit


for _name in ("rand", "randn", "rand_like", "randn_like", "bernoulli"):
    _FUNCTIONS[getattr(torch, _name)] = _random(_name)
_METHODS["bernoulli"] = _random("bernoulli")


@_register(_FUNCTIONS, unreached.not_reached)
def _not_reached(e, message):
    """A stub's body (:mod:`.unreached`): raise, naming the module and what to do."""
    e.after(f"raise RuntimeError({message!r})")
    return None


def register_function(torch_function, target: str) -> None:
    """Translate calls of ``torch_function`` into calls of ``target`` with the same arguments.

    ``target`` is ``'package.module:function'``; the generated source imports it. Use it for a
    function of your own that a traced ``forward`` calls and that has no translation.
    """
    if not callable(torch_function):
        raise TypeError(f"register: expected a function, got {torch_function!r}")
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"register: target must be 'package.module:function', got {target!r}")
    _USER[torch_function] = (module, name)


def unregister_function(torch_function) -> None:
    """Undo :func:`register_function`."""
    _USER.pop(torch_function, None)


def _named(namespace, obj) -> str | None:
    name = getattr(obj, "__name__", None)
    return name if name and getattr(namespace, name, None) is obj else None


def _defaults(fn) -> dict:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def passthrough(name: str, fn):
    """``name(*args, **kwargs)``, leaving out keywords that equal ``fn``'s defaults."""
    defaults = _defaults(fn)

    def emit(e, *args, **kwargs):
        kept = {k: v for k, v in kwargs.items()
                if not (k in defaults and type(v) is type(defaults[k]) and v == defaults[k])}
        return e.call(name, args, kept)
    return emit


def _named_tuple(cls):
    """A NamedTuple output (torchvision's ``InceptionOutputs``) rebuilt as a namedtuple."""
    def emit(e, *args, **kwargs):
        namedtuple = e.imported("collections", "namedtuple")
        name = e.define(cls.__name__, f"{namedtuple}({cls.__name__!r}, {list(cls._fields)!r})")
        return e.call(name, args, kwargs)
    return emit


def function(target):
    """The emitter of a torch function, Python operator or NamedTuple class (a ``call_function``
    target of an fx graph), or ``None``; ATen overloads are :mod:`.aten`'s (:mod:`.dispatch`
    asks both)."""
    if isinstance(target, type) and issubclass(target, tuple) and hasattr(target, "_fields"):
        return _named_tuple(target)
    if target in _USER:
        module, name = _USER[target]
        return lambda e, *a, **k: e.call(e.imported(module, name), a, k)
    try:
        if target in _FUNCTIONS:
            return _FUNCTIONS[target]
    except TypeError:       # unhashable target
        return None
    name = _named(math, target)
    if name:        # on shapes (timm's volo: math.ceil(H / self.stride)): they are Python ints
        return lambda e, *a, **k: e.call(e.imported("math", name), a, k)
    name = _named(TF, target)
    if name and hasattr(jF, name):
        return passthrough(f"F.{name}", getattr(jF, name))
    name = _named(torch, target)
    for prefix, namespace in (("T", jT), ("F", jF)):
        if name and hasattr(namespace, name):
            return passthrough(f"{prefix}.{name}", getattr(namespace, name))
    return None


def method(name: str):
    """The emitter of a Tensor method, or ``None``; an in-place ``name_`` uses ``name``'s."""
    if in_place_method(name):
        name = name[:-1]
    if name in _METHODS:
        return _METHODS[name]
    for prefix, namespace in (("T", jT), ("F", jF)):
        if hasattr(namespace, name):
            return passthrough(f"{prefix}.{name}", getattr(namespace, name))
    return None


# --- export (Hugging Face models) ---
@_register(_FUNCTIONS, torch.linalg.vector_norm)
def _vector_norm(e, x, ord=2, dim=None, keepdim=False, *, dtype=None, out=None):
    """A numeric-order ``torch.norm`` is ``vector_norm`` (ConvNeXt V2's GRN)."""
    if isinstance(ord, str):
        raise TypeError(f"vector_norm: ord must be a number, got {ord!r}")
    return e.call("T.norm", (x, ord, dim, keepdim), {"dtype": dtype} if dtype is not None else {})


# --- torchvision zoo ---
@_register(_FUNCTIONS, operator.setitem)
def _setitem(e, x, idx, value):
    """``x[idx] = value`` as ``x.at[idx].set(value)``: a new array that later readers of ``x``
    read (this node's name; other names bound to the old array keep it, as a clone would)."""
    e.after(f"{e.name} = {e.fmt(x)}.at[{_index(e, idx)}].set({e.fmt(value)})")
    e.expr[x] = e.name
    return None


@_register(_METHODS, "zero")
def _zero(e, x):
    return f"jnp.zeros_like({e.fmt(x)})"


@_register(_FUNCTIONS, TF.normalize)
def _normalize(e, input, p=2.0, dim=1, eps=1e-12, out=None):
    """``input / max(||input||_p over dim, eps)``, as torch computes it."""
    x = e.fmt(input)
    return f"{x} / T.clamp_min(T.norm({x}, {e.fmt(p)}, {e.fmt(dim)}, keepdim=True), {e.fmt(eps)})"


# --- losses ---
@_register(_FUNCTIONS, torch.broadcast_tensors)
def _broadcast_tensors(e, *tensors):
    return f"jnp.broadcast_arrays({', '.join(e.fmt(t) for t in tensors)})"


@_register(_FUNCTIONS, TF.logsigmoid)
def _logsigmoid(e, input):
    return f"jax.nn.log_sigmoid({e.fmt(input)})"


@_register(_FUNCTIONS, TF.triplet_margin_with_distance_loss)
def _triplet_with_distance(e, anchor, positive, negative, *, distance_function=None, margin=1.0,
                           swap=False, reduction="mean"):
    """The ``distance_function`` as its jaxconv twin: ``None`` (pairwise distance), or a
    ``torch.nn.functional`` / ``torch`` function that ``jaxconv`` has (``F.cosine_similarity``)."""
    kwargs = {k: v for k, v, d in (("margin", margin, 1.0), ("swap", swap, False),
                                   ("reduction", reduction, "mean")) if v != d}
    call = e.call("F.triplet_margin_with_distance_loss", (anchor, positive, negative), kwargs)
    if distance_function is None:
        return call
    name = _named(TF, distance_function) or _named(torch, distance_function)
    prefix = ("F" if name and _named(TF, distance_function) and hasattr(jF, name) else
              "T" if name and hasattr(jT, name) else None)
    if prefix is None:
        raise TypeError(f"distance_function {getattr(distance_function, '__qualname__', distance_function)!r} "
                        "is not a torch function with a jaxconv twin")
    return f"{call[:-1]}, distance_function={prefix}.{name})"
