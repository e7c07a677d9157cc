"""Argument rules of the recurrent layers, with torch's conditions (``RNNBase``, ``RNNCellBase``
and ATen's ``lstm`` / ``lstm_cell`` checks). Imported into ``_args``, the one home of argument
rules; the messages name the argument, the rule and the value.
"""
from __future__ import annotations

import numbers
import warnings

from ._dtypes import check_same_dtype

#: Gate blocks stacked in ``weight_ih`` / ``weight_hh`` per mode (torch's ``gate_size / hidden``).
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

#: torch's module modes and the functional each runs.
MODES = {"RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu", "LSTM": "lstm", "GRU": "gru"}


def check_nonlinearity(nonlinearity, name: str = "RNN") -> str:
    """``'tanh'`` or ``'relu'``, else torch's ``ValueError``."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{name}: Unknown nonlinearity {nonlinearity!r}. Select from 'tanh' or 'relu'.")
    return nonlinearity


def check_rnn_config(name: str, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                     proj_size) -> None:
    """torch's ``RNNBase.__init__`` checks: bool flags, positive int sizes, ``dropout`` in
    ``[0, 1]`` (with torch's warning when it can have no effect, ``num_layers == 1``),
    ``0 <= proj_size < hidden_size``."""
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
        raise ValueError(f"{name}: dropout should be a number in range [0, 1] representing the "
                         f"probability of an element being zeroed, got dropout={dropout!r}")
    for flag, value in (("bias", bias), ("batch_first", batch_first)):
        if not isinstance(value, bool):
            raise TypeError(f"{name}: {flag} should be of type bool, got: {type(value).__name__} ({value!r})")
    for arg, value in (("input_size", input_size), ("hidden_size", hidden_size),
                       ("num_layers", num_layers), ("proj_size", proj_size)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"{name}: {arg} should be of type int, got: {type(value).__name__} ({value!r})")
    for arg, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        if value <= 0:
            raise ValueError(f"{name}: {arg} must be greater than zero, got {arg}={value}")
    if proj_size < 0:
        raise ValueError(f"{name}: proj_size should be a positive integer or zero to disable "
                         f"projections, got proj_size={proj_size}")
    if proj_size >= hidden_size:
        raise ValueError(f"{name}: proj_size has to be smaller than hidden_size, got "
                         f"proj_size={proj_size} and hidden_size={hidden_size}")
    if dropout > 0 and num_layers == 1:
        warnings.warn(f"{name}: dropout option adds dropout after all but last recurrent layer, so "
                      f"non-zero dropout expects num_layers greater than 1, but got "
                      f"dropout={dropout} and num_layers={num_layers}", stacklevel=3)


def _shape(x) -> tuple:
    return tuple(getattr(x, "shape", ()))


def _expect(fn: str, what: str, x, shape) -> None:
    if _shape(x) != tuple(shape):
        raise ValueError(f"{fn}: expected {what} of shape {tuple(shape)}, got {_shape(x)}")


def _check_cell_weights(fn, gates, w_ih, w_hh, b_ih, b_hh, input_size=None):
    """``(hidden_size, hidden_out)`` from ``w_hh`` ``(gates * hidden, hidden_out)``, with the
    other weights checked against it."""
    if len(_shape(w_hh)) != 2 or _shape(w_hh)[0] % gates:
        raise ValueError(f"{fn}: weight_hh must be 2-D with a first dim of {gates} * hidden_size, "
                         f"got weight_hh of shape {_shape(w_hh)}")
    rows = _shape(w_hh)[0]
    if len(_shape(w_ih)) != 2 or _shape(w_ih)[0] != rows:
        raise ValueError(f"{fn}: weight_ih must be 2-D with a first dim of {rows} (the rows of "
                         f"weight_hh), got weight_ih of shape {_shape(w_ih)}")
    if input_size is not None and _shape(w_ih)[1] != input_size:
        raise ValueError(f"{fn}: weight_ih of shape {_shape(w_ih)} expects {_shape(w_ih)[1]} input "
                         f"features, got {input_size}")
    for name, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
        if b is not None:
            _expect(fn, name, b, (rows,))
    return rows // gates, _shape(w_hh)[1]


def check_cell(fn: str, mode: str, input, hx: tuple, w_ih, w_hh, b_ih, b_hh) -> None:
    """ATen's cell checks: a 2-D ``(batch, input_size)`` input matching ``weight_ih``, each
    hidden state ``(batch, hidden_size)``, weights of ``GATES[mode]`` blocks, one dtype."""
    if len(_shape(input)) != 2:
        raise ValueError(f"{fn}: expected a 2-D input (batch, input_size), got input of shape {_shape(input)}")
    hidden, _ = _check_cell_weights(fn, GATES[mode], w_ih, w_hh, b_ih, b_hh)
    if _shape(input)[1] != _shape(w_ih)[1]:
        raise ValueError(f"{fn}: input has inconsistent input_size: got {_shape(input)[1]} expected "
                         f"{_shape(w_ih)[1]} (weight_ih of shape {_shape(w_ih)})")
    for k, h in enumerate(hx):
        if len(_shape(h)) != 2 or _shape(h)[0] != _shape(input)[0]:
            raise ValueError(f"{fn}: Input batch size {_shape(input)[0]} doesn't match hidden{k} "
                             f"batch size (hidden{k} of shape {_shape(h)}, expected 2-D)")
        if _shape(h)[1] != hidden:
            raise ValueError(f"{fn}: hidden{k} has inconsistent hidden_size: got {_shape(h)[1]}, "
                             f"expected {hidden}")
    check_same_dtype(fn, input, **{f"hx[{k}]": h for k, h in enumerate(hx)}, weight_ih=w_ih,
                     weight_hh=w_hh, bias_ih=b_ih, bias_hh=b_hh)


def rnn_layers(fn: str, mode: str, input, hx: tuple, params, has_biases: bool, num_layers: int,
               bidirectional: bool, batch_first: bool) -> list:
    """Check a sequence call (``torch.lstm``'s arguments) and split ``params`` into one
    ``(w_ih, w_hh, b_ih, b_hh, w_hr)`` per layer and direction (``None`` where absent).

    ``params`` is torch's flat ``_flat_weights`` list: per layer, per direction, ``w_ih``,
    ``w_hh``, then ``b_ih``, ``b_hh`` when ``has_biases``, then ``w_hr`` (LSTM with
    ``proj_size``). ``input``: 3-D, ``(seq, batch, feature)`` or ``(batch, seq, feature)`` with
    ``batch_first``; ``hx``: ``(h_0,)`` or for LSTM ``(h_0, c_0)``, each
    ``(num_layers * num_directions, batch, size)``.
    """
    if len(_shape(input)) != 3:
        layout = "(batch, seq_len, input_size)" if batch_first else "(seq_len, batch, input_size)"
        raise ValueError(f"{fn}: expected a 3-D input {layout}, got input of shape {_shape(input)}")
    if not isinstance(num_layers, numbers.Integral) or num_layers < 1:
        raise ValueError(f"{fn}: num_layers must be a positive int, got num_layers={num_layers!r}")
    seq, batch = (_shape(input)[1], _shape(input)[0]) if batch_first else _shape(input)[:2]
    if seq == 0:
        raise ValueError(f"{fn}: Expected sequence length to be larger than 0 in RNN, got input of "
                         f"shape {_shape(input)} (batch_first={batch_first})")
    params = list(params)
    dirs = 2 if bidirectional else 1
    base = 4 if has_biases else 2
    count = num_layers * dirs
    per = base + 1 if mode == "lstm" and len(params) == count * (base + 1) else base
    if len(params) != count * per:
        extra = " (+ weight_hr with proj_size)" if mode == "lstm" else ""
        raise ValueError(
            f"{fn}: expected {base} params{extra} for each of num_layers * num_directions = {count} "
            f"layers (weight_ih, weight_hh{', bias_ih, bias_hh' if has_biases else ''}), got "
            f"{len(params)} params")
    layers, size = [], _shape(input)[2]
    for k in range(count):
        w = params[k * per:(k + 1) * per]
        w_ih, w_hh = w[0], w[1]
        b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
        w_hr = w[-1] if per > base else None
        where = f"{fn} (layer {k // dirs}{', reverse' if k % dirs else ''})"
        if k < dirs and _shape(w_ih)[1:] != (size,):
            raise ValueError(f"{fn}: input.size(-1) must be equal to input_size. Expected "
                             f"{_shape(w_ih)[1:2]}, got {size} (input of shape {_shape(input)})")
        hidden, out = _check_cell_weights(where, GATES[mode], w_ih, w_hh, b_ih, b_hh,
                                          None if k < dirs else dirs * layers[0][5])
        if w_hr is not None:
            _expect(where, "weight_hr", w_hr, (out, hidden))
        elif out != hidden:
            raise ValueError(f"{where}: weight_hh of shape {_shape(w_hh)} needs hidden_size "
                             f"{hidden} columns without a projection weight_hr")
        layers.append((w_ih, w_hh, b_ih, b_hh, w_hr, out, hidden))
    sizes = [layers[0][5]] + ([layers[0][6]] if mode == "lstm" else [])
    if len(hx) != len(sizes):
        raise ValueError(f"{fn}: expected hx of {len(sizes)} array(s), got {len(hx)}")
    for k, (h, s) in enumerate(zip(hx, sizes)):
        what = f"hidden[{k}]" if mode == "lstm" else "hidden"
        if _shape(h) != (count, batch, s):
            raise ValueError(f"{fn}: Expected {what} size {(count, batch, s)}, got {list(_shape(h))}")
    flat = {f"params[{i}]": p for i, p in enumerate(params)}
    check_same_dtype(fn, input, **{f"hx[{k}]": h for k, h in enumerate(hx)}, **flat)
    return [layer[:5] for layer in layers]
