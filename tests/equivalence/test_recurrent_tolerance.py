"""Error models through loops: the running bound's scan rule holds (and is tight for a short
loop), but compounds its worst case over a recurrent layer's sequence; the sampled rounding
error stays at the real error's level and covers it; the recurrent layers get that model."""
import jax
import jax.numpy as jnp
import numpy as np
import torch

import jaxconv.functional as F
import jaxconv.nn as jnn
from equivalence import tolerance
from equivalence.tolerance.running import running_error
from equivalence.tolerance.sampled import sampled_error

RNG = np.random.default_rng(0)


def _normal(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _loop(h, xs):
    return jax.lax.scan(lambda c, x: (jnp.tanh(c * x + 0.3), jnp.exp(c)), h, xs, reverse=True)


def test_running_bound_through_a_short_scan_holds_and_is_tight():
    h, xs = _normal(7), _normal(5, 7)
    out, err = running_error(_loop, h, xs)
    exact = _loop(h.astype(np.float64), xs.astype(np.float64))
    worst = 0.0
    for o, e, r in zip(jax.tree.leaves(out), jax.tree.leaves(err), jax.tree.leaves(exact)):
        diff = np.abs(np.asarray(o, np.float64) - np.asarray(r))
        assert np.all(diff <= np.asarray(e, np.float64))
        worst = max(worst, float(np.max(diff / np.asarray(e, np.float64))))
    assert worst > 1e-2


def _rnn(steps, hidden=16):
    """A tanh RNN at torch's initialisation over ``steps`` steps, and its inputs."""
    b = 1 / np.sqrt(hidden)
    params = [RNG.uniform(-b, b, s).astype(np.float32) for s in ((hidden, 8), (hidden, hidden), (hidden,), (hidden,))]
    x, h = _normal(steps, 2, 8), np.zeros((1, 2, hidden), np.float32)

    def run(x, h, params):
        return F.rnn_tanh(x, h, params, True, 1, 0.0, False, False, False)[0]

    exact = run(*jax.tree.map(lambda a: a.astype(np.float64), (x, h, params)))
    return run, (x, h, params), np.asarray(exact)


def test_worst_case_compounds_over_a_sequence_where_the_sampled_error_does_not():
    run, args, exact = _rnn(48)
    out, bound = running_error(run, *args)
    _, sigma = sampled_error(run, *args)
    real = np.abs(np.asarray(out, np.float64) - exact)
    # the real error stays at a few ulps; the worst case multiplies |W_hh| every step
    assert np.max(real) < 1e-6 and np.max(np.asarray(bound)[-1]) > 1e3 * np.max(real)
    # c * sigma covers the real error everywhere, and not by orders of magnitude
    ratio = real / (tolerance.C * np.maximum(np.asarray(sigma, np.float64), 1e-30))
    assert np.max(ratio) < 1 and np.max(ratio) > 1e-2
    assert np.max(np.asarray(sigma)) < 1e-5 < np.max(np.asarray(bound)[-1])


def test_sampled_error_carries_an_error_across_a_relu_kink():
    # relu's input one ulp below 0, much less than the rounding of the dot product before it:
    # linearized on the side it lands on, relu would drop that rounding (sigma = 0)
    x, w = _normal(3, 64), _normal(64, 4)
    f = lambda x, w, c: jax.nn.relu(jnp.matmul(x, w, precision="highest") - c)  # noqa: E731
    c = np.nextafter(np.asarray(jnp.matmul(x, w, precision="highest")), np.float32(np.inf))
    _, sigma = sampled_error(f, x, w, c)
    assert np.all(np.asarray(sigma) > 1e-8)


def test_recurrent_layers_get_the_sampled_model():
    for m in (jnn.LSTM(3, 4), jnn.GRUCell(3, 4), torch.nn.RNN(3, 4), torch.nn.LSTMCell(3, 4)):
        assert tolerance.kind_of(m).name == "recurrent"
    assert "Recurrent layers" in tolerance.policy_text()
