"""The two recorded runs (torch's calls, jaxconv's free run), their tree helpers and local gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn as tnn

import equivalence
from equivalence import _tree, tolerance
from equivalence.checks import Grad
from equivalence.free_run import JaxRun, run_jax
from equivalence.record import TorchCall, TorchRun, run_torch
from jaxconv import nn as jnn


def test_tree_helpers_keep_structure_none_and_other_leaves():
    t1, t2 = torch.randn(2, 3), torch.randn(4)
    value = {"b": (t1, None, [t2, 3]), "a": None, "c": "text"}
    out = _tree.torch_to_numpy(value, torch)
    assert set(out) == {"a", "b", "c"} and out["a"] is None and out["c"] == "text"
    assert isinstance(out["b"], tuple) and out["b"][1] is None and isinstance(out["b"][2], list)
    assert out["b"][2][1] == 3
    np.testing.assert_array_equal(out["b"][0], t1.numpy())
    t1.add_(1.0)  # a copy, not a view
    assert not np.array_equal(out["b"][0], t1.numpy())
    assert _tree.first_tensor(value, torch) is t1
    with pytest.raises(TypeError, match="output has no tensor: dict"):
        _tree.first_tensor({"a": None, "b": 3}, torch)
    x, y = np.ones(2), np.zeros(3)
    assert _tree.first_array({"z": x, "a": (None, y)}) is y  # dict values by sorted key
    assert _tree.first_array((None, 1)) is None
    assert [a.shape for a in _tree.arrays([x, {"k": y}, jnp.ones(4)])] == [(2,), (3,), (4,)]
    j = _tree.to_jax({"k": (np.array([-1.0, 2.0]), None, 5)}, np.abs)
    assert isinstance(j["k"][0], jax.Array) and j["k"][0].tolist() == [1.0, 2.0]
    assert j["k"][1] is None and j["k"][2] == 5


class TorchTwice(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(2, 3, 3, padding=1)
        self.act = tnn.Tanh()

    def forward(self, x):
        return self.act(self.conv(x)) + self.act(x.sum(1, keepdim=True))  # act is called twice


class JaxTwice(jnn.Module):
    def __init__(self):
        self.conv = jnn.Conv2d(2, 3, 3, padding=1)
        self.act = jnn.Tanh()

    def __call__(self, x):
        return self.act(self.conv(x)) + self.act(x.sum(1, keepdims=True))


def test_torch_run_records_calls_and_gradients():
    torch.manual_seed(0)
    tm = TorchTwice()
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    run = run_torch(torch, tm, [x], cotangent_seed=3, grads=True)
    assert isinstance(run, TorchRun) and all(isinstance(c, TorchCall) for c in run.calls)
    assert [(c.name, c.parent, c.input_ids) for c in run.calls] == [
        ("", None, [0]), ("conv", 0, [0]), ("act", 0, [None]), ("act", 0, [None])]
    assert [c.order for c in run.calls] == [3, 0, 1, 2] and all(c.done for c in run.calls)
    # the oracle: torch autograd on the same computation, written out
    xt = torch.from_numpy(x).requires_grad_(True)
    h = tm.conv(xt)
    out = tm.act(h) + tm.act(xt.sum(1, keepdim=True))
    cot = np.random.default_rng(3).standard_normal(out.shape).astype(np.float32)
    np.testing.assert_array_equal(run.cotangents[0], cot)
    np.testing.assert_allclose(run.out, out.detach().numpy(), rtol=1e-6)
    g_h, g_x = torch.autograd.grad((out * torch.from_numpy(cot)).sum(), [h, xt])
    np.testing.assert_allclose(run.calls[1].grad_out, g_h.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(run.input_grads[0], g_x.numpy(), rtol=1e-5, atol=1e-7)
    assert set(run.param_grads) == {"conv.weight", "conv.bias"} and run.buffers == {}
    np.testing.assert_array_equal(run.calls[1].args[0], x)


def test_jax_run_records_each_call_and_matches_torch_gradients():
    torch.manual_seed(0)
    tm, jm = TorchTwice(), JaxTwice()
    equivalence.load_state_dict(jm, tm.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    t = run_torch(torch, tm, [x], cotangent_seed=3, grads=True)
    j = run_jax(jm, [x], t.cotangents, grads=True, jit=True)
    assert isinstance(j, JaxRun)
    outs = j.outputs()
    assert {k: len(v) for k, v in outs.items()} == {"": 1, "conv": 1, "act": 2}
    for k, call in ((0, t.calls[2]), (1, t.calls[3])):
        np.testing.assert_allclose(np.asarray(outs["act"][k]), call.out, rtol=1e-5, atol=1e-6)
    assert set(j.param_grads) == set(t.param_grads)
    for name, want in t.param_grads.items():
        np.testing.assert_allclose(j.param_grads[name], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(j.input_grads[0], t.input_grads[0], rtol=1e-4, atol=1e-6)
    plain = run_jax(jm, [x], None, grads=False, jit=False)
    assert plain.param_grads == {} and plain.input_grads == []
    np.testing.assert_allclose(np.asarray(plain.out), t.out, rtol=1e-5, atol=1e-6)


def test_local_gradients_of_a_shared_layer_add_up():
    a = Grad(np.array([1.0, -2.0]), tolerance.Bound(np.array([1.0, 2.0]), 4))
    b = Grad(np.array([0.5, 0.5]), tolerance.Bound(np.array([3.0, 1.0]), 9))
    s = a + b
    assert s.value.tolist() == [1.5, -1.5] and s.bound.scale.tolist() == [4.0, 3.0] and s.bound.n == 9


def test_gradient_of_a_view_output_rewritten_in_place_is_recorded():
    # Linear on a 4-d input returns a view; ReLU(inplace=True) after it rewrites the view's history
    torch.manual_seed(0)
    model = tnn.Sequential(tnn.Linear(3, 5), tnn.ReLU(inplace=True), tnn.Linear(5, 2))
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 3)).astype(np.float32)
    run = run_torch(torch, model, [x], 1, True)
    calls = {c.name: c for c in run.finished()}
    assert calls["0"].grad_out is not None and calls["0"].grad_out.shape == (2, 4, 4, 5)
    relu_in = calls["0"].out
    np.testing.assert_array_equal(calls["1"].out, np.maximum(relu_in, 0))  # torch's values unchanged
    report = equivalence.compare(model, equivalence.translate(model, torch.from_numpy(x)), x, grads=True)
    rows = {row.name: row for row in report.rows}
    assert report.passed and "end-to-end" not in rows["0.weight"].note
