"""The policy's formula, its comparison of two arrays, the registry of layer kinds and the
elementwise and dot-product error models (see :mod:`equivalence.tolerance`)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The constant in ``c * eps * sqrt(n) * S``.
C = 4.0

#: The least ``n`` of an elementwise layer: library ``tanh``/``exp``/``erf`` are accurate to
#: about 2 ulp on each side, so two correct implementations may differ by ~4 eps relative.
ELEMENTWISE_N = 4.0

POLICY = (
    "tolerance = c * eps(dtype) * sqrt(n) * S elementwise, c = {c:g}. Each layer is checked locally: "
    "the jaxconv layer runs on torch's recorded input of that call, so the only allowed difference "
    "is the rounding of that one layer; composite modules are checked on their own code (the "
    "children's outputs replaced by torch's), so errors never propagate into a later check. "
    "S = magnitude of the computation: |W|*|x|+|b| for conv/linear (the layer run on absolute "
    "values), |w|a/sqrt(var+eps)+|b| for normalizations (BatchNorm, InstanceNorm, GroupNorm, "
    "LayerNorm, RMSNorm, each with statistics over its own axes; a = |x|+|running mean|, or with "
    "statistics of the input a = |x|+mean|x| plus |w||xhat|mean(a^2)/var for the variance), the "
    "op on absolute "
    "values otherwise; n = number of terms summed per element (conv/linear: numel(weight)/"
    "out_channels, the fan-in read from the weight's shape; normalizations: the elements each "
    "statistic averages + 4; otherwise the pooling "
    "ratio or operand count, at least 4). Gradients: S = the layer's vector-Jacobian product on "
    "absolute values with torch's |cotangent|, n its reduction length. A composite's own code "
    "(forward and backward), and a layer whose class brings its own __call__ (module code: a "
    "translated StdConv2d), gets the larger of that and c times its running error bound: each "
    "op's rounding carried to first order through the code's jaxpr (attention's softmax); a "
    "softmax layer (masked logits) and a resize (Upsample: weights rounded from the source "
    "coordinates) get c times that bound alone. "
    "Recurrent layers (RNN, LSTM, GRU and their cells), whose loop over time would compound a "
    "worst-case bound, get c times their sampled rounding error: the root mean square, over 16 "
    "draws of random signs, of every op's rounding carried through the layer's signed "
    "linearization, step by step (at least 2 ulps of the value); their gradients the same of "
    "their backward pass. Losses (CrossEntropyLoss, MSELoss, ..., CTCLoss) get S = |loss| and n "
    "= the entries reduced into each value (N*C for a mean cross entropy), at least c times "
    "their running error bound (which sees logsumexp(x) - x[t] cancel); their gradients the "
    "same. Train-mode buffers are checked locally too: jaxconv's update on "
    "torch's recorded input of each call. "
    "NaN/inf at the same "
    "positions on both sides agrees; on one side only it fails. ratio = max(|jax - torch| / "
    "tolerance); a check passes when ratio <= 1. The 'end-to-end' column is the free-running "
    "difference (jaxconv on its own inputs), for information. float16/bfloat16 rows (the dtype "
    "column: the output's, or for a gradient the lower precision of it and its layer's output) "
    "accumulate in float32 and round once: tolerance = {r:g} * eps(dtype) * R + c * eps(float32) * "
    "sqrt(n) * S, R = |torch's value| (S for normalizations, whose reduced torch kernels round "
    "their scale and shift; S * taps for float16 transposed convs, which torch sums in float16); "
    "their gradients, which torch's reduced backward kernels partly accumulate in the reduced "
    "dtype, get c * eps(dtype) * sqrt(n) * S."
)


#: Ulps of the value by which two float16/bfloat16 results that each round a float32
#: accumulation once may differ: half an ulp on each side, doubled for a kernel that rounds
#: twice (a bias added after the rounded product).
ROUNDING = 2.0

REDUCED = frozenset({"float16", "bfloat16"})


def policy_text(c: float = C) -> str:
    """The policy as one paragraph, for reports and certificates."""
    return POLICY.format(c=c, r=ROUNDING)


def _finfo(dtype):
    """``finfo`` of a floating dtype (``ml_dtypes``' for bfloat16), float32's for other dtypes."""
    import ml_dtypes

    dtype = np.dtype(dtype)
    return ml_dtypes.finfo(dtype if dtype.name in REDUCED or np.issubdtype(dtype, np.floating)
                           else np.float32)


def eps(dtype) -> float:
    """Machine epsilon of a floating dtype, bfloat16 included (float32's for integer or unknown dtypes)."""
    return float(_finfo(dtype).eps)


def compute_dtype(*dtypes) -> np.dtype:
    """The least precise of the given floating dtypes (largest eps): the dtype a value computed
    from all of them was rounded to (``None`` entries are skipped)."""
    return max((np.dtype(d) for d in dtypes if d is not None), key=eps)


def tolerance(scale, n, dtype, c: float = C, rounding=None) -> np.ndarray:
    """``c * eps(dtype) * sqrt(n) * scale`` (elementwise, float64), floored at the smallest normal.

    With ``rounding`` and a float16/bfloat16 ``dtype``, the model of a computation accumulated
    in float32 and rounded once: ``ROUNDING * eps(dtype) * |rounding| + c * eps(float32) *
    sqrt(n) * scale``.

    **Arguments:**

    - ``scale``: the magnitude ``S`` of the computation (array).
    - ``n``: reduction length (scalar or array broadcastable to ``scale``).
    - ``dtype``: the dtype the computation ran in.
    - ``c``: the policy constant.
    - ``rounding``: the magnitude the final rounding applies to (torch's value, array).
    """
    scale = np.abs(np.asarray(scale, np.float64))
    n = np.maximum(np.asarray(n, np.float64), 1.0)
    tiny = float(_finfo(dtype).tiny)
    if rounding is not None and np.dtype(dtype).name in REDUCED:
        rounded = ROUNDING * eps(dtype) * np.abs(np.asarray(rounding, np.float64))
        return rounded + c * eps(np.float32) * np.sqrt(n) * scale + tiny
    factor = c * eps(dtype) * np.sqrt(n)
    if scale.ndim and np.broadcast_shapes(scale.shape, factor.shape) == scale.shape:
        scale *= factor     # in place, the same numbers: fresh float64 temporaries page-fault
        scale += tiny       # (np.abs made scale a new array)
        return scale
    return factor * scale + tiny


def reduction_ratio(inputs, output, operands: int = 1, floor: float = 1.0) -> float:
    """``n`` for non-dot ops: the operand count or ``max numel(input) / numel(output)``, at least ``floor``."""
    size = max(int(np.asarray(output).size), 1)
    ratio = max((int(np.asarray(a).size) / size for a in inputs), default=1.0)
    return max(float(operands), ratio, float(floor))


# ----------------------------------------------------------------------------------------
# the registry of error models


@dataclass(frozen=True)
class Bound:
    """The error model of one computation: its magnitude ``scale`` (``S``) and length ``n``.

    ``rounding``: for float16/bfloat16, the magnitude the final rounding applies to where it
    is not the checked value (a normalization's ``S``). ``dtype``: the dtype it was computed
    in where less precise than the value's (a float32 parameter's gradient under autocast).
    ``error``: an absolute error bound of the computation from its own code (the running error
    bound, :mod:`.running`), where the magnitude alone may miss cancellation (module code,
    softmax, resampling; see :mod:`.code`).
    """

    scale: Any
    n: Any
    rounding: Any = None
    dtype: Any = None
    error: Any = None

    def tolerance(self, dtype, c: float = C, value=None) -> np.ndarray:
        """The :func:`tolerance` of a value of ``dtype`` (computed in :attr:`dtype` where set).
        ``value``: torch's result of a forward, whose rounding bounds a reduced dtype's (see
        :func:`tolerance`); without it (gradients) the full ``c * eps * sqrt(n) * S``. With
        :attr:`error`, at least ``c * error``, and ``c * error`` alone where the magnitude model
        is not finite (the op on absolute values overflowed, or met an inf)."""
        rounding = value if self.rounding is None else self.rounding
        tol = tolerance(self.scale, self.n, self.checked_dtype(dtype), c, rounding)
        if self.error is None:
            return tol
        e = c * np.asarray(self.error, np.float64)
        e = np.where(np.isfinite(e), e, np.nan)  # a bound that broke down bounds nothing
        return np.where(np.isfinite(tol), np.fmax(tol, e), np.where(np.isnan(e), tol, e))

    def checked_dtype(self, dtype) -> np.dtype:
        """The dtype a value of ``dtype`` is checked in: the less precise of it and :attr:`dtype`."""
        return compute_dtype(dtype, self.dtype)


@dataclass(frozen=True)
class LayerCall:
    """One call of a leaf layer as its error model sees it (numpy arrays, torch's inputs):
    ``module`` the jaxconv layer (or functional op) that ran, ``torch_module`` torch's; ``magnitude``
    the layer with ``|parameters|`` on ``|inputs|``. With gradients: ``cotangent`` (torch's
    gradient of the output; ``cotangents``: of each floating output, an LSTM's ``h_n`` and
    ``c_n`` too), jaxconv's local backward of all of them (``param_grads``, ``input_grad``) and
    the absolute-valued layer's with ``|cotangents|`` (``param_magnitudes``, ``input_magnitude``)."""

    module: Any
    torch_module: Any
    inputs: tuple
    output: np.ndarray
    magnitude: np.ndarray
    train: bool
    cotangent: np.ndarray | None = None
    param_grads: dict = field(default_factory=dict)
    param_magnitudes: dict = field(default_factory=dict)
    input_grad: np.ndarray | None = None
    input_magnitude: np.ndarray | None = None
    cotangents: tuple = ()


@dataclass(frozen=True)
class LayerBounds:
    """What an error model returns: the forward's :class:`Bound`, and with gradients one per
    parameter (by name) and one for the first input; optionally ``others``, one for each
    further floating array input (a loss's target) by position, where the elementwise model
    would not do (``None`` entries and those left out get it)."""

    forward: Bound
    params: dict = field(default_factory=dict)
    input: Bound | None = None
    others: tuple = ()


Model = Callable[[LayerCall], LayerBounds]
"""``model(call) -> LayerBounds``; backward bounds only when ``call.cotangent`` is set."""

BufferModel = Callable[..., dict]
"""``buffers(torch_module, inputs, before) -> {buffer name: Bound, or a float (absolute
tolerance)}`` for the buffers a training forward updates; ``inputs``: torch's recorded first
input of each call, ``before``: the jaxconv layer's variables before the forward (float64)."""


@dataclass(frozen=True)
class Kind:
    """A registered layer kind: what it matches and its error models (see :func:`register`)."""

    name: str
    match: tuple
    when: Callable[[Any], bool] | None
    model: Model
    buffers: BufferModel | None = None
    traced: bool = False

    def matches(self, obj) -> bool:
        """Whether ``obj`` (a module, a module class or a functional op) is of this kind."""
        cls = obj if isinstance(obj, type) else type(obj)
        names = {c.__name__ for c in cls.__mro__} | {getattr(obj, "__qualname__", None)}
        return any(issubclass(cls, m) if isinstance(m, type) else m in names if isinstance(m, str)
                   else obj is m for m in self.match) or bool(self.when and self.when(obj))


FALLBACK = "elementwise"
_KINDS: dict[str, Kind] = {}


def register(kind: str, *, match=(), when=None, model: Model | None = None,
             buffers: BufferModel | None = None, traced: bool = False):
    """Register (or replace) the error model of a layer kind; without ``model``, a decorator.

    **Arguments:**

    - ``kind``: the kind's name; registering an existing name replaces it.
    - ``match``: what is of this kind: classes (instances and subclasses match), class names
      (matched anywhere in the class's MRO, or a function's ``__qualname__``) and functional
      ops (matched by identity), one or a tuple.
    - ``when``: optionally, a predicate ``when(obj) -> bool`` matching further objects.
    - ``model``: the :data:`Model` of a call.
    - ``buffers``: optionally, the :data:`BufferModel` of a training forward's buffer updates.
    - ``traced``: the model reads only torch's module and the call's inputs (never
      ``call.magnitude``), so it also bounds a torch module of this kind whose forward was
      translated as code rather than matched to a jaxconv layer (timm's ``BatchNormAct2d``,
      ``LayerNorm2d``): :func:`kind_for` then finds it by the torch module.

    The kind registered last is tried first; objects no kind matches get :data:`FALLBACK`.
    Returns ``model``.
    """
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"kind must be a non-empty str, got {kind!r}")
    match = match if isinstance(match, tuple) else (match,)
    bad = [m for m in match if not (isinstance(m, (type, str)) or callable(m))]
    if bad:
        raise TypeError(f"match must hold classes, class names or functional ops, got {bad!r}")
    if when is not None and not callable(when):
        raise TypeError(f"when must be callable, got {when!r}")
    if kind == FALLBACK and (match or when):
        raise ValueError(f"the fallback kind {FALLBACK!r} matches whatever no other kind matches; "
                         f"it takes no match or when, got match={match!r}, when={when!r}")
    if model is None:
        return lambda fn: register(kind, match=match, when=when, model=fn, buffers=buffers, traced=traced)
    if not callable(model):
        raise TypeError(f"model must be callable, got {model!r}")
    _KINDS.pop(kind, None)
    _KINDS[kind] = Kind(kind, match, when, model, buffers, traced)
    return model


def unregister(kind: str) -> Kind:
    """Remove a registered kind and return it (the fallback cannot be removed)."""
    if kind == FALLBACK:
        raise ValueError(f"the fallback kind {FALLBACK!r} cannot be removed; register a new model for it")
    if kind not in _KINDS:
        raise KeyError(f"no layer kind {kind!r} is registered; registered: {sorted(_KINDS)}")
    return _KINDS.pop(kind)


def kinds() -> dict[str, Kind]:
    """The registered kinds by name, in registration order."""
    return dict(_KINDS)


def kind_of(obj) -> Kind:
    """The kind of a module or functional op: the last registered that matches, else the fallback."""
    for kind in reversed(_KINDS.values()):
        if kind.name != FALLBACK and kind.matches(obj):
            return kind
    return _KINDS[FALLBACK]


# ----------------------------------------------------------------------------------------
# the built-in kinds


@register(FALLBACK)
def elementwise(call: LayerCall) -> LayerBounds:
    """``S``: the op on absolute inputs and parameters. ``n``: the operand count or the reduction
    ratio ``max numel(input) / numel(output)``, at least :data:`ELEMENTWISE_N`; for gradients
    the reduction ratio between the cotangent and the gradient."""
    forward = Bound(call.magnitude, reduction_ratio(call.inputs, call.output, len(call.inputs),
                                                    floor=ELEMENTWISE_N))
    if call.cotangent is None:
        return LayerBounds(forward)
    g = call.cotangent
    params = {k: Bound(call.param_magnitudes[k], reduction_ratio([g], v))
              for k, v in call.param_grads.items()}
    return LayerBounds(forward, params, Bound(call.input_magnitude, reduction_ratio([g], call.inputs[0])))


def fan(module, for_input: bool = False) -> int:
    """Terms summed per element by a dot-product layer, read from its weight's shape:
    ``numel(weight) / out_channels`` (the forward's fan-in: ``in_channels / groups`` times the
    kernel size, ``in_features`` for Linear; for a transposed conv every kernel tap counts, an
    upper bound when the stride exceeds 1), or with ``for_input`` ``numel(weight) / in_channels``."""
    w = module.weight[...]
    if for_input:
        inner = getattr(module, "in_channels", None) or getattr(module, "in_features", None) or w.shape[1]
    else:
        inner = getattr(module, "out_channels", None) or getattr(module, "out_features", None) or w.shape[0]
    return max(int(w.size) // max(int(inner), 1), 1)


@register("dot", match=("_ConvNd", "Linear", "LazyLinear"))
def dot(call: LayerCall) -> LayerBounds:
    """``S``: the layer with ``|weight|``, ``|bias|`` on ``|x|``. ``n``: :func:`fan` forward and
    for the input gradient; ``numel(g) / out_channels`` (batch x output positions) for weight
    and bias gradients."""
    forward = Bound(call.magnitude, fan(call.module))
    if "Transpose" in type(call.module).__name__ and np.dtype(call.output.dtype) == np.float16:
        # torch's CPU float16 transposed conv (col2im, where oneDNN has no float16) adds each
        # output's kernel taps in float16
        taps = int(np.prod(call.module.weight.shape[2:]))
        forward = Bound(call.magnitude, fan(call.module), rounding=taps * np.abs(call.magnitude))
    if call.cotangent is None:
        return LayerBounds(forward)
    g, y = call.cotangent, call.output
    n_w = g.size // max(y.shape[1] if y.ndim > 2 else y.shape[-1], 1)
    params = {k: Bound(call.param_magnitudes[k], n_w if k == "weight" else g.size // max(v.size, 1))
              for k, v in call.param_grads.items()}
    return LayerBounds(forward, params, Bound(call.input_magnitude, fan(call.module, for_input=True)))
