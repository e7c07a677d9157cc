"""compare's gradients come from every floating output (an LSTM's ``h_n`` and ``c_n``, a second
head), and compare leaves both models as it found them (modes, parameters, buffers, ``.grad``)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import equivalence
from jaxconv import nn as jnn
from jaxconv.nn import named_modules

from tests._zoo import assert_unchanged, randomize_batchnorm, torch_state


def _x(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _modes(jm) -> list:
    return [(n, {k: v for k, v in vars(m).items() if k in ("training", "deterministic", "use_running_average")})
            for n, m in named_modules(jm)]


def test_compare_leaves_both_models_as_it_found_them():
    """A train-mode comparison with gradients of an eval-mode model: torch's BatchNorm
    statistics, modes and accumulated ``.grad`` come back bit-identical, and so do jaxconv's."""
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Dropout(0.0),
                             torch.nn.Linear(4, 3))
    tm = randomize_batchnorm(tm).eval()
    tm[0].weight.grad = torch.ones_like(tm[0].weight)       # the user's accumulated gradient
    x = _x(6, 5)
    jm = equivalence.translate(tm, x)
    before, grad = torch_state(tm), tm[0].weight.grad
    jax_before, jax_modes = equivalence.state_dict(jm), _modes(jm)
    report = equivalence.compare(tm, jm, x, train=True, grads=True)
    assert report.passed, report.to_text()
    assert {r.name for r in report.rows if r.section == "buffer"} >= {"1.running_mean", "1.running_var"}
    assert_unchanged(before, tm)
    assert tm[0].weight.grad is grad and bool((grad == 1).all())
    assert _modes(jm) == jax_modes
    after = equivalence.state_dict(jm)
    for k, v in jax_before.items():
        np.testing.assert_array_equal(np.asarray(after[k]), np.asarray(v), err_msg=k)


class TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.a(x), {"second": self.b(x)}


@pytest.mark.slow
def test_a_parameter_only_a_second_output_uses_has_its_gradient_checked():
    torch.manual_seed(0)
    tm = TwoHeads()
    x = _x(5, 4)
    report = equivalence.compare(tm, equivalence.translate(tm, x), x, grads=True)
    assert report.passed, report.to_text()
    assert {r.name for r in report.rows if r.section == "grad"} == {"a.weight", "a.bias", "b.weight",
                                                                      "b.bias", "input[0]"}


class Scale(torch.nn.Module):
    """``(x w, x w w)``: a layer with two outputs, both depending on ``w``."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(4, generator=torch.Generator().manual_seed(3)))

    def forward(self, x):
        y = x * self.w
        return y, y * self.w


class JaxScale(jnn.Module):
    """:class:`Scale`; with ``bug``, the second output's gradient misses ``w``'s second factor
    (its forward is the same)."""

    def __init__(self, bug: bool):
        self.w = nnx.Param(jnp.zeros(4, jnp.float32))
        self.bug = bug

    def __call__(self, x):
        w = self.w[...]
        y = x * w
        return y, y * (jax.lax.stop_gradient(w) if self.bug else w)


class Root(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = Scale()

    def forward(self, x):
        return self.scale(x)


class JaxRoot(jnn.Module):
    def __init__(self, bug: bool):
        self.scale = JaxScale(bug)

    def __call__(self, x):
        return self.scale(x)


def test_a_gradient_bug_in_a_second_output_fails():
    tm, x = Root(), _x(3, 4)
    for bug in (False, True):
        jm = JaxRoot(bug)
        equivalence.load_state_dict(jm, tm.state_dict())
        report = equivalence.compare(tm, jm, x, grads=True)
        assert report.passed is not bug, report.to_text()
        failed = {r.name for r in report.rows if r.ratio > 1}
        assert failed == ({"scale.w"} if bug else set()), report.to_text()


class DetachedState(jnn.LSTM):
    """An LSTM whose ``h_n`` passes no gradient back (its values are right)."""

    def __call__(self, x, hx=None):
        out, (h, c) = super().__call__(x, hx)
        return out, (jax.lax.stop_gradient(h), c)


@pytest.mark.slow
def test_lstm_gradients_through_h_n_and_c_n():
    torch.manual_seed(0)
    tm = torch.nn.LSTM(3, 4, batch_first=True)
    x = _x(2, 5, 3)
    jm = equivalence.translate(tm, x)
    report = equivalence.compare(tm, jm, x, grads=True)
    assert report.passed, report.to_text()
    bad = DetachedState(3, 4, batch_first=True)
    equivalence.load_state_dict(bad, tm.state_dict())
    report = equivalence.compare(tm, bad, x, grads=True)
    assert not report.passed and {r.name for r in report.rows if r.ratio > 1} >= {"weight_hh_l0"}
