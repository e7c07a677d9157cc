"""torch's recurrent layers as functions: the cells and the multi-layer sequence loop.

Names, signatures and results are torch's (``torch.rnn_tanh_cell``, ``torch.lstm_cell``,
``torch.gru_cell``; ``torch.rnn_tanh``, ``torch.lstm``, ``torch.gru``, which are ATen's
``aten::lstm.input`` and friends, what ``torch.nn.LSTM.forward`` calls). The cells, with
torch's weight layouts (gate blocks stacked along the rows of ``weight_ih`` / ``weight_hh``)::

    RNN   h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)              act = tanh or relu
    LSTM  i, f, g, o = split(x W_ih^T + b_ih + h W_hh^T + b_hh, 4)  (torch's gate order)
          c' = sigmoid(f) c + sigmoid(i) tanh(g),  h' = sigmoid(o) tanh(c')
          with a projection (proj_size): h' = h' W_hr^T
    GRU   r, z, n blocks: gi = x W_ih^T + b_ih, gh = h W_hh^T + b_hh  (gate order r, z, n)
          r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r gh_n)
          h' = n + z (h - n)                                      (= (1 - z) n + z h)

The sequence functions run each layer over time with ``jax.lax.scan`` (the reverse direction
with ``reverse=True``), after one matmul for the input projection of every step. Layer
``l > 0`` reads the two directions of layer ``l - 1`` concatenated, through dropout when
training. Matmuls accumulate in float32 for float16/bfloat16 (:func:`~.linear.product`) at full
float32 precision by default; a step's gates and state update are computed in float32 and the
new state is rounded to the input's dtype once per step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _args
from ._sharding import lead_like
from .conv import DEFAULT_PRECISION
from .linear import _check_p, dropout as _dropout, product


def _affine(x, w, b, precision):
    """``x @ w.T + b`` in the accumulator dtype (float32 for float16/bfloat16), not rounded."""
    y = product(x, w.T, precision)
    return y if b is None else y + b.astype(y.dtype)


def _cell(mode: str, gi, state, w_hh, b_hh, w_hr, precision):
    """One step of ``mode`` from ``gi = x W_ih^T + b_ih`` (accumulated): the new state, in
    ``w_hh``'s dtype (``(h, c)`` for LSTM, ``h`` otherwise)."""
    dtype = w_hh.dtype
    if mode == "lstm":
        h, c = state
        i, f, g, o = jnp.split(gi + _affine(h, w_hh, b_hh, precision), 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = (jax.nn.sigmoid(o) * jnp.tanh(c)).astype(dtype)
        if w_hr is not None:
            h = product(h, w_hr.T, precision).astype(dtype)
        return h, c.astype(dtype)
    gh = _affine(state, w_hh, b_hh, precision)
    if mode == "gru":
        (ir, iz, i_n), (hr, hz, hn) = jnp.split(gi, 3, axis=-1), jnp.split(gh, 3, axis=-1)
        r, z = jax.nn.sigmoid(ir + hr), jax.nn.sigmoid(iz + hz)
        n = jnp.tanh(i_n + r * hn)
        return (n + z * (state - n)).astype(dtype)
    act = jnp.tanh if mode == "rnn_tanh" else jax.nn.relu
    return act(gi + gh).astype(dtype)


def _run_cell(mode, input, hx, w_ih, w_hh, b_ih, b_hh, precision):
    input, w_ih, w_hh = jnp.asarray(input), jnp.asarray(w_ih), jnp.asarray(w_hh)
    fn = f"{mode}_cell"
    if mode == "lstm":
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ValueError(f"{fn}: hx must be a tuple (h, c) of two arrays (lstm_cell expects two "
                             f"hidden states), got {type(hx).__name__}"
                             f"{f' of length {len(hx)}' if isinstance(hx, (tuple, list)) else ''}")
        state = tuple(jnp.asarray(h) for h in hx)
    else:
        state = jnp.asarray(hx)
    _args.check_cell(fn, mode, input, state if mode == "lstm" else (state,), w_ih, w_hh, b_ih, b_hh)
    return _cell(mode, _affine(input, w_ih, b_ih, precision), state, w_hh, b_hh, None, precision)


def rnn_tanh_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, precision=DEFAULT_PRECISION):
    """``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (``torch.rnn_tanh_cell``).

    **Arguments:**

    - ``input``: ``(batch, input_size)``; ``hx``: ``(batch, hidden_size)``.
    - ``w_ih``: ``(hidden_size, input_size)``; ``w_hh``: ``(hidden_size, hidden_size)``.
    - ``b_ih``, ``b_hh``: optional ``(hidden_size,)``.
    - ``precision``: ``lax.Precision`` of the matmuls; full float32 precision by default.

    **Returns:** ``h'`` ``(batch, hidden_size)``.
    """
    return _run_cell("rnn_tanh", input, hx, w_ih, w_hh, b_ih, b_hh, precision)


def rnn_relu_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, precision=DEFAULT_PRECISION):
    """``h' = relu(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (``torch.rnn_relu_cell``).

    **Arguments:** as :func:`rnn_tanh_cell`. **Returns:** ``h'`` ``(batch, hidden_size)``.
    """
    return _run_cell("rnn_relu", input, hx, w_ih, w_hh, b_ih, b_hh, precision)


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, precision=DEFAULT_PRECISION):
    """One LSTM step with torch's gate order ``i, f, g, o`` (``torch.lstm_cell``).

    **Arguments:**

    - ``input``: ``(batch, input_size)``; ``hx``: a tuple ``(h, c)``, each ``(batch, hidden_size)``.
    - ``w_ih``: ``(4 * hidden_size, input_size)``; ``w_hh``: ``(4 * hidden_size, hidden_size)``.
    - ``b_ih``, ``b_hh``: optional ``(4 * hidden_size,)``.
    - ``precision``: ``lax.Precision`` of the matmuls.

    **Returns:** ``(h', c')``.
    """
    return _run_cell("lstm", input, hx, w_ih, w_hh, b_ih, b_hh, precision)


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *, precision=DEFAULT_PRECISION):
    """One GRU step with torch's gate order ``r, z, n`` and ``n = tanh(W_in x + b_in + r (W_hn h
    + b_hn))`` (``torch.gru_cell``).

    **Arguments:**

    - ``input``: ``(batch, input_size)``; ``hx``: ``(batch, hidden_size)``.
    - ``w_ih``: ``(3 * hidden_size, input_size)``; ``w_hh``: ``(3 * hidden_size, hidden_size)``.
    - ``b_ih``, ``b_hh``: optional ``(3 * hidden_size,)``.
    - ``precision``: ``lax.Precision`` of the matmuls.

    **Returns:** ``h'``.
    """
    return _run_cell("gru", input, hx, w_ih, w_hh, b_ih, b_hh, precision)


def _sequence(mode, input, hx, params, has_biases, num_layers, dropout, train, bidirectional,
              batch_first, key, precision):
    """The multi-layer, optionally bidirectional loop of every sequence function: ``(output,
    final states)``, ``final states`` one ``(num_layers * num_directions, batch, size)`` array per
    state (``h``, and ``c`` for LSTM)."""
    fn = mode
    input = jnp.asarray(input)
    states = tuple(jnp.asarray(h) for h in (hx if isinstance(hx, (tuple, list)) else (hx,)))
    layers = _args.rnn_layers(fn, mode, input, states, [jnp.asarray(p) for p in params],
                              has_biases, num_layers, bidirectional, batch_first)
    _check_p(dropout)
    drop = train and dropout > 0 and num_layers > 1
    if drop and key is None:
        raise ValueError(f"{fn}: dropout={dropout} between layers in training needs a key "
                         f"(pass key=..., a jax.random key)")
    dirs = 2 if bidirectional else 1
    x = jnp.swapaxes(input, 0, 1) if batch_first else input
    finals = []
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            w_ih, w_hh, b_ih, b_hh, w_hr = layers[k]
            state = tuple(s[k] for s in states) if mode == "lstm" else states[0][k]
            state = jax.tree_util.tree_map(lambda s: lead_like(s, x, start=1), state)  # as the steps'

            def step(state, gi, w_hh=w_hh, b_hh=b_hh, w_hr=w_hr):
                new = _cell(mode, gi, state, w_hh, b_hh, w_hr, precision)
                return new, new[0] if mode == "lstm" else new

            state, y = jax.lax.scan(step, state, _affine(x, w_ih, b_ih, precision), reverse=d == 1)
            outs.append(y)
            finals.append(state if mode == "lstm" else (state,))
        x = outs[0] if dirs == 1 else jnp.concatenate(outs, axis=-1)
        if drop and layer < num_layers - 1:
            x = _dropout(x, dropout, True, key=jax.random.fold_in(key, layer))
    output = jnp.swapaxes(x, 0, 1) if batch_first else x
    return output, tuple(jnp.stack(s) for s in zip(*finals))


_SEQUENCE_DOC = """

    **Arguments** (torch's, as ``nn.{cls}.forward`` passes them):

    - ``input``: ``(seq_len, batch, input_size)``, or ``(batch, seq_len, input_size)`` with
      ``batch_first``; ``seq_len >= 1``.
    - ``hx``: {hx}, each ``(num_layers * num_directions, batch, hidden)``, layer ``l``'s
      direction ``d`` at index ``l * num_directions + d``.
    - ``params``: torch's flat weights (``nn.{cls}._flat_weights``): for each layer and
      direction ``weight_ih``, ``weight_hh``, then ``bias_ih``, ``bias_hh`` when
      ``has_biases``{proj}.
    - ``has_biases``, ``num_layers``, ``bidirectional``, ``batch_first``: as the module's.
    - ``dropout``, ``train``: dropout with probability ``dropout`` on the output of every layer
      but the last when ``train``; it needs ``key`` (a ``jax.random`` key; keyword-only).
    - ``precision``: ``lax.Precision`` of the matmuls; full float32 precision by default.

    **Returns:** {returns}; ``output`` ``(seq_len, batch, num_directions * hidden)`` (batch
    first with ``batch_first``), the forward and reverse directions concatenated.
"""


def lstm(input, hx, params, has_biases: bool, num_layers: int, dropout: float, train: bool,
         bidirectional: bool, batch_first: bool, *, key=None, precision=DEFAULT_PRECISION):
    """A multi-layer LSTM over a sequence (``torch.lstm``, ``aten::lstm.input``)."""
    output, (h, c) = _sequence("lstm", input, hx, params, has_biases, num_layers, dropout, train,
                               bidirectional, batch_first, key, precision)
    return output, h, c


def gru(input, hx, params, has_biases: bool, num_layers: int, dropout: float, train: bool,
        bidirectional: bool, batch_first: bool, *, key=None, precision=DEFAULT_PRECISION):
    """A multi-layer GRU over a sequence (``torch.gru``, ``aten::gru.input``)."""
    output, (h,) = _sequence("gru", input, hx, params, has_biases, num_layers, dropout, train,
                             bidirectional, batch_first, key, precision)
    return output, h


def rnn_tanh(input, hx, params, has_biases: bool, num_layers: int, dropout: float, train: bool,
             bidirectional: bool, batch_first: bool, *, key=None, precision=DEFAULT_PRECISION):
    """A multi-layer Elman RNN with ``tanh`` over a sequence (``torch.rnn_tanh``)."""
    output, (h,) = _sequence("rnn_tanh", input, hx, params, has_biases, num_layers, dropout,
                             train, bidirectional, batch_first, key, precision)
    return output, h


def rnn_relu(input, hx, params, has_biases: bool, num_layers: int, dropout: float, train: bool,
             bidirectional: bool, batch_first: bool, *, key=None, precision=DEFAULT_PRECISION):
    """A multi-layer Elman RNN with ``relu`` over a sequence (``torch.rnn_relu``)."""
    output, (h,) = _sequence("rnn_relu", input, hx, params, has_biases, num_layers, dropout,
                             train, bidirectional, batch_first, key, precision)
    return output, h


_args.share_doc(_SEQUENCE_DOC.format(
    cls="LSTM", hx="a tuple ``(h_0, c_0)``; ``h_0``'s hidden is ``proj_size`` with a projection, "
    "``c_0``'s ``hidden_size``", proj=", then ``weight_hr`` ``(proj_size, hidden_size)`` with a "
    "projection (found from the number of params)", returns="``(output, h_n, c_n)``"), lstm)
for _fn, _cls in ((gru, "GRU"), (rnn_tanh, "RNN"), (rnn_relu, "RNN")):
    _args.share_doc(_SEQUENCE_DOC.format(cls=_cls, hx="``h_0``", proj="",
                                         returns="``(output, h_n)``"), _fn)
