"""jaxconv.trace: intercepting and recording named submodule calls."""
import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxconv import nn
from jaxconv.trace import intercept, record_calls


class Shared(nn.Module):
    def __init__(self, lib=nn):
        self.conv = lib.Conv1d(2, 2, 3, padding=1)
        self.again = self.conv  # the same module under a second name
        self.out = lib.Conv1d(2, 1, 1)

    def __call__(self, x):
        return self.out(self.again(self.conv(x)))


class TorchShared(torch.nn.Module):
    def __init__(self):
        super().__init__()
        Shared.__init__(self, torch.nn)


def test_named_modules_lists_a_shared_module_once_like_torch():
    assert [n for n, _ in nn.named_modules(Shared())] == [n for n, _ in TorchShared().named_modules()] == ["", "conv", "out"]


def test_record_calls_in_call_order_eagerly_and_under_jit_and_restores_classes():
    model = Shared()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 2, 5)), jnp.float32)
    with record_calls(model) as calls:
        y = model(x)
    assert [c.name for c in calls] == ["conv", "conv", "out"]
    np.testing.assert_array_equal(np.asarray(calls[-1].output), np.asarray(y))
    np.testing.assert_array_equal(np.asarray(calls[1].inputs[0]), np.asarray(calls[0].output))
    assert type(model.conv) is nn.Conv1d and type(model) is Shared

    shapes = []

    def traced(x):
        with record_calls(model) as calls:
            out = model(x)
        shapes.extend(c.output.shape for c in calls)
        return out

    np.testing.assert_allclose(np.asarray(jax.jit(traced)(x)), np.asarray(y), rtol=1e-6)
    assert shapes == [(1, 2, 5), (1, 2, 5), (1, 1, 5)]


def test_intercept_can_replace_a_call():
    model = Shared()
    x = jnp.ones((1, 2, 4), jnp.float32)

    def zero(module, cls, args, kwargs):
        return jnp.zeros_like(cls.__call__(module, *args, **kwargs))

    with intercept({model.out: zero}):
        assert not np.any(np.asarray(model(x)))
    assert np.any(np.asarray(model(x)))  # restored
