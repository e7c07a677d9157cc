"""The recurrent modules ``RNN``, ``LSTM``, ``GRU`` and their cells: torch's constructor
signatures, parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0``, ...),
layouts and calls; the math is in :mod:`jaxconv.functional.recurrent`."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import _rng
from ..functional import _args, recurrent as F
from ..functional.conv import DEFAULT_PRECISION
from . import init
from .module import Module, RandomInTraining


def _array(x, name: str, what: str):
    """``x`` as a jax array, or a ``TypeError`` naming what it is (a ``PackedSequence``...)."""
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        return jnp.asarray(x)
    kind = type(x).__name__
    hint = (" Packed sequences are not supported: pad them (torch.nn.utils.rnn.pad_packed_sequence) "
            "and pass the padded array" if "Packed" in kind else "")
    raise TypeError(f"{name}: {what} must be an array, got {kind}.{hint}")


def _uniform_params(owner, names_shapes, hidden_size, dtype, rngs):
    """Set each ``(name, shape)`` as an ``nnx.Param`` drawn from torch's ``U(-1/sqrt(hidden),
    1/sqrt(hidden))``, in order (torch's ``reset_parameters`` of every recurrent module). One
    draw for all of them, cut into the parameters: one compilation, not one per shape."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    sizes = [math.prod(shape) for _, shape in names_shapes]
    flat = init.uniform(_rng.key_from(rngs), (sum(sizes),), -bound, bound, dtype)
    try:  # cut in numpy where the draw is concrete (eager slices would compile one by one)
        flat = np.asarray(flat)
    except jax.errors.TracerArrayConversionError:  # built under a trace (nnx.eval_shape, jit)
        pass
    for (name, shape), start, size in zip(names_shapes, np.cumsum([0] + sizes), sizes):
        setattr(owner, name, nnx.Param(jnp.asarray(flat[start:start + size].reshape(shape))))


class RNNBase(RandomInTraining, Module):
    """The multi-layer recurrent modules' parameters, checks and call (torch's ``RNNBase``;
    ``mode``: ``'RNN_TANH'``, ``'RNN_RELU'``, ``'LSTM'`` or ``'GRU'``)."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, dtype=None, *,
                 precision=DEFAULT_PRECISION, rngs=None):
        name = type(self).__name__
        if mode not in _args.MODES:
            raise ValueError(f"{name}: Unrecognized RNN mode {mode!r}, expected one of {list(_args.MODES)}")
        _args.check_rnn_config(name, input_size, hidden_size, num_layers, bias, batch_first,
                               dropout, proj_size)
        self.mode, self.input_size, self.hidden_size = mode, int(input_size), int(hidden_size)
        self.num_layers, self.bias, self.batch_first = int(num_layers), bias, batch_first
        self.dropout, self.bidirectional, self.proj_size = float(dropout), bool(bidirectional), int(proj_size)
        self.precision = precision
        gates = _args.GATES[_args.MODES[mode]] * self.hidden_size
        out = self.proj_size or self.hidden_size
        dirs = 2 if self.bidirectional else 1
        params = []
        for layer in range(self.num_layers):
            for d in range(dirs):
                sfx = f"_l{layer}{'_reverse' if d else ''}"
                params += [(f"weight_ih{sfx}", (gates, self.input_size if layer == 0 else out * dirs)),
                           (f"weight_hh{sfx}", (gates, out))]
                if bias:
                    params += [(f"bias_ih{sfx}", (gates,)), (f"bias_hh{sfx}", (gates,))]
                if self.proj_size:
                    params.append((f"weight_hr{sfx}", (self.proj_size, self.hidden_size)))
        self._flat_weights_names = tuple(n for n, _ in params)
        _uniform_params(self, params, self.hidden_size, dtype, rngs)
        self.deterministic = False
        self.rngs = init.dropout_rngs(rngs)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += f", bidirectional={self.bidirectional}"
        return s + (f", precision={self.precision}" if self.precision != DEFAULT_PRECISION else "")

    @property
    def _flat_weights(self) -> list:
        """The parameters' values in torch's order (``params`` of the functional)."""
        return [getattr(self, n)[...] for n in self._flat_weights_names]

    def __call__(self, input, hx=None):
        """Runs the layers over the sequence ``input`` (torch's ``forward``).

        **Arguments:** (``L``: sequence length, ``D``: 2 if ``bidirectional`` else 1, ``H_out``:
        ``proj_size`` if set, else ``hidden_size``)

        - ``input``: ``(L, N, input_size)``, ``(N, L, input_size)`` with ``batch_first``, or
          unbatched ``(L, input_size)``.
        - ``hx``: the initial state, zeros when ``None``: ``h_0`` ``(D * num_layers, N, H_out)``;
          for LSTM a tuple ``(h_0, c_0)``, ``c_0`` ``(D * num_layers, N, hidden_size)``; without
          ``N`` for an unbatched input (``batch_first`` does not apply to the states).

        **Returns:** ``(output, h_n)``, for LSTM ``(output, (h_n, c_n))``: ``output``
        ``(L, N, D * H_out)`` in ``input``'s layout (the last layer's ``h`` at every step);
        ``h_n``, ``c_n`` the final states, shaped as ``h_0``, ``c_0``. Training (as built)
        applies dropout (probability ``dropout``) to every layer's output but the last, drawn
        from ``self.rngs``; eval (``model.eval()``) does not.
        """
        name, lstm = type(self).__name__, self.mode == "LSTM"
        input = _array(input, name, "input")
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D instead "
                             f"(input of shape {tuple(input.shape)})")
        batched, batch_dim = input.ndim == 3, 0 if self.batch_first else 1
        want = 3 if batched else 2
        if hx is not None:
            if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise TypeError(f"{name}: hx must be a tuple (h_0, c_0) of two arrays, got "
                                f"{type(hx).__name__}")
            hx = tuple(_array(h, name, f"hx[{k}]") for k, h in enumerate(hx if lstm else (hx,)))
            if any(h.ndim != want for h in hx):
                dims = ", ".join(f"{h.ndim}-D" for h in hx)
                raise ValueError(f"{name}: For {'batched 3' if batched else 'unbatched 2'}-D input, "
                                 f"hx should also be {want}-D but got ({dims}) array(s)")
        if not batched:
            input = jnp.expand_dims(input, batch_dim)
            hx = None if hx is None else tuple(h[:, None] for h in hx)
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input.size(-1) must be equal to input_size. Expected "
                             f"{self.input_size}, got {input.shape[-1]}")
        count = self.num_layers * (2 if self.bidirectional else 1)
        sizes = (self.proj_size or self.hidden_size,) + ((self.hidden_size,) if lstm else ())
        batch = input.shape[batch_dim]
        if hx is None:
            hx = tuple(jnp.zeros((count, batch, s), input.dtype) for s in sizes)
        for k, (h, s) in enumerate(zip(hx, sizes)):
            if tuple(h.shape) != (count, batch, s):
                what = f"hidden[{k}]" if lstm else "hidden"
                raise ValueError(f"{name}: Expected {what} size {(count, batch, s)}, got {list(h.shape)}")
        training = not self.deterministic
        drop = training and self.dropout > 0 and self.num_layers > 1
        fn = getattr(F, _args.MODES[self.mode])
        output, *states = fn(input, hx if lstm else hx[0], self._flat_weights, self.bias,
                             self.num_layers, self.dropout, training, self.bidirectional,
                             self.batch_first, key=self.rngs.dropout() if drop else None,
                             precision=self.precision)
        if not batched:
            output, states = jnp.squeeze(output, batch_dim), [s[:, 0] for s in states]
        return output, tuple(states) if lstm else states[0]


class RNN(RNNBase):
    """A multi-layer Elman RNN, ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``
    (``torch.nn.RNN``).

    **Arguments:**

    - ``input_size``, ``hidden_size``: features of the input and of the state.
    - ``num_layers``: stacked layers; layer ``l > 0`` reads layer ``l - 1``'s output.
    - ``nonlinearity``: ``'tanh'`` or ``'relu'``.
    - ``bias``: learn ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    - ``batch_first``: inputs and outputs are ``(batch, seq, feature)``; the states stay
      ``(num_layers * num_directions, batch, hidden)``.
    - ``dropout``: dropout on the output of every layer but the last, in training.
    - ``bidirectional``: a second, reverse direction per layer (``..._reverse`` parameters).
    - ``dtype``: parameter dtype (float32 when ``None``).
    - ``precision``: the ``lax.Precision`` of the matmuls; full float32 by default.
    - ``rngs``: ``nnx.Rngs`` or a key (its ``params`` and ``dropout`` streams); ``None`` draws
      from the stream seeded by ``jaxconv.manual_seed``.

    Parameters per layer ``k`` (and ``k_reverse``): ``weight_ih_l{k}`` ``(hidden, in)``,
    ``weight_hh_l{k}`` ``(hidden, hidden)``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, all drawn from
    ``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))`` as torch does.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, dtype=None, *,
                 precision=DEFAULT_PRECISION, rngs=None):
        self.nonlinearity = _args.check_nonlinearity(nonlinearity, "RNN")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype=dtype, precision=precision, rngs=rngs)


class LSTM(RNNBase):
    """A multi-layer LSTM with torch's gate order ``i, f, g, o`` (``torch.nn.LSTM``).

    **Arguments:** as :class:`RNN` (no ``nonlinearity``), and ``proj_size``: with
    ``0 < proj_size < hidden_size``, each step's ``h`` is projected by ``weight_hr_l{k}``
    ``(proj_size, hidden_size)``, and ``h`` (output and states) has ``proj_size`` features.

    Parameters per layer: ``weight_ih_l{k}`` ``(4*hidden, in)``, ``weight_hh_l{k}``
    ``(4*hidden, proj_size or hidden)``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(4*hidden,)``,
    ``weight_hr_l{k}``; torch's initialisation ``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, dtype=None, *, precision=DEFAULT_PRECISION, rngs=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, dtype=dtype, precision=precision, rngs=rngs)


class GRU(RNNBase):
    """A multi-layer GRU with torch's gate order ``r, z, n`` and ``n = tanh(W_in x + b_in +
    r (W_hn h + b_hn))`` (``torch.nn.GRU``).

    **Arguments:** as :class:`RNN` (no ``nonlinearity``). Parameters per layer:
    ``weight_ih_l{k}`` ``(3*hidden, in)``, ``weight_hh_l{k}`` ``(3*hidden, hidden)``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(3*hidden,)``, initialised as torch's.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype=None, *, precision=DEFAULT_PRECISION, rngs=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, precision=precision, rngs=rngs)


class RNNCellBase(Module):
    """The cells' parameters ``weight_ih`` ``(chunks*hidden, input_size)``, ``weight_hh``
    ``(chunks*hidden, hidden)``, ``bias_ih``, ``bias_hh`` and call (torch's ``RNNCellBase``)."""

    _mode: str
    _states = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, dtype=None,
                 *, precision=DEFAULT_PRECISION, rngs=None):
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.precision = precision
        rows = num_chunks * hidden_size
        params = [("weight_ih", (rows, input_size)), ("weight_hh", (rows, hidden_size))]
        if bias:
            params += [("bias_ih", (rows,)), ("bias_hh", (rows,))]
        else:
            self.bias_ih = self.bias_hh = None
        _uniform_params(self, params, hidden_size, dtype, rngs)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s + (f", precision={self.precision}" if self.precision != DEFAULT_PRECISION else "")

    def __call__(self, input, hx=None):
        """One step of the cell (torch's ``forward``).

        **Arguments:**

        - ``input``: ``(N, input_size)`` or unbatched ``(input_size,)``.
        - ``hx``: the state, zeros when ``None``: ``h`` ``(N, hidden_size)`` (``(hidden_size,)``
          unbatched); for ``LSTMCell`` a tuple ``(h, c)`` of two such arrays.

        **Returns:** the next state ``h'``, for ``LSTMCell`` the tuple ``(h', c')``, each
        ``(N, hidden_size)`` (``(hidden_size,)`` unbatched).
        """
        name = type(self).__name__
        input = _array(input, name, "input")
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead "
                             f"(input of shape {tuple(input.shape)})")
        if hx is not None:
            if self._states == 2 and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise TypeError(f"{name}: hx must be a tuple (h, c) of two arrays, got {type(hx).__name__}")
            hx = tuple(_array(h, name, f"hx[{k}]") for k, h in enumerate(hx if self._states == 2 else (hx,)))
            for k, h in enumerate(hx):
                if h.ndim not in (1, 2):
                    what = f"hx[{k}]" if self._states == 2 else "hidden"
                    raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {h.ndim}D instead")
        batched = input.ndim == 2
        if not batched:
            input = input[None]
            hx = None if hx is None else tuple(h[None] for h in hx)
        if hx is None:
            hx = (jnp.zeros((input.shape[0], self.hidden_size), input.dtype),) * self._states
        bias = (None, None) if self.bias_ih is None else (self.bias_ih[...], self.bias_hh[...])
        fn = getattr(F, f"{self._mode}_cell")
        out = fn(input, hx if self._states == 2 else hx[0], self.weight_ih[...], self.weight_hh[...], *bias,
                 precision=self.precision)
        if not batched:
            out = tuple(o[0] for o in out) if self._states == 2 else out[0]
        return out


class RNNCell(RNNCellBase):
    """An Elman RNN cell, ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (``torch.nn.RNNCell``).

    **Arguments:** ``input_size``, ``hidden_size``; ``bias``; ``nonlinearity``: ``'tanh'`` or
    ``'relu'``; ``dtype``; ``precision`` (of the matmuls, full float32 by default); ``rngs`` (its
    ``params`` stream, or a key). Parameters drawn from
    ``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))`` as torch's.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", dtype=None, *, precision=DEFAULT_PRECISION, rngs=None):
        self.nonlinearity = _args.check_nonlinearity(nonlinearity, "RNNCell")
        self._mode = f"rnn_{nonlinearity}"
        super().__init__(input_size, hidden_size, bias, 1, dtype, precision=precision, rngs=rngs)


class LSTMCell(RNNCellBase):
    """An LSTM cell with torch's gate order ``i, f, g, o`` (``torch.nn.LSTMCell``); called with
    ``hx = (h, c)`` it returns ``(h', c')``.

    **Arguments:** ``input_size``, ``hidden_size``; ``bias``; ``dtype``; ``rngs``. Parameters
    ``weight_ih`` ``(4*hidden, input_size)``, ``weight_hh`` ``(4*hidden, hidden)``, ``bias_ih``,
    ``bias_hh``, initialised as torch's.
    """

    _mode, _states = "lstm", 2

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=None, *,
                 precision=DEFAULT_PRECISION, rngs=None):
        super().__init__(input_size, hidden_size, bias, 4, dtype, precision=precision, rngs=rngs)


class GRUCell(RNNCellBase):
    """A GRU cell with torch's gate order ``r, z, n`` (``torch.nn.GRUCell``).

    **Arguments:** ``input_size``, ``hidden_size``; ``bias``; ``dtype``; ``rngs``. Parameters
    ``weight_ih`` ``(3*hidden, input_size)``, ``weight_hh`` ``(3*hidden, hidden)``, ``bias_ih``,
    ``bias_hh``, initialised as torch's.
    """

    _mode = "gru"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=None, *,
                 precision=DEFAULT_PRECISION, rngs=None):
        super().__init__(input_size, hidden_size, bias, 3, dtype, precision=precision, rngs=rngs)
