"""The error-model registry (a kind decides a layer's tolerance) and NaN/inf agreement in compare."""
import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn as tnn

import equivalence
from equivalence import tolerance
from jaxconv import functional as F
from jaxconv import nn as jnn

EPS32 = float(np.finfo(np.float32).eps)


class TorchScale(tnn.Module):
    """A layer no kind knows: a per-channel scale."""

    def __init__(self, c):
        super().__init__()
        self.weight = tnn.Parameter(torch.rand(c, generator=torch.Generator().manual_seed(2)) - 0.5)

    def forward(self, x):
        return x * self.weight[:, None, None]


class JaxScale(jnn.Module):
    def __init__(self, c):
        self.weight = nnx.Param(jnp.zeros((c,), jnp.float32))

    def __call__(self, x):
        return x * self.weight[...][:, None, None]


class ExactConv2d(jnn.Conv2d):
    """A conv whose kind a test registers."""


def _scale_pair():
    tm, jm = TorchScale(3), JaxScale(3)
    equivalence.load_state_dict(jm, tm.state_dict())
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    s = np.abs(x.astype(np.float64)) * np.abs(tm.weight.detach().numpy().astype(np.float64))[:, None, None]
    return tm, jm, x, s


def test_unknown_layer_falls_back_to_elementwise_and_a_registered_kind_replaces_it():
    tm, jm, x, s = _scale_pair()
    assert tolerance.kind_of(jm).name == tolerance.FALLBACK
    row = equivalence.compare(tm, jm, x).rows[0]
    assert row.max_abs == 0  # one multiply: exact; the tol shown is the check's largest
    tiny = float(np.finfo(np.float32).tiny)
    assert row.tol == pytest.approx(tolerance.C * EPS32 * 2 * s.max() + tiny, rel=1e-12)  # n = 4

    calls = []

    def model(call):
        calls.append(call)
        return tolerance.LayerBounds(tolerance.Bound(call.magnitude, 64))

    tolerance.register("scale", match=JaxScale, model=model)
    try:
        assert tolerance.kind_of(jm).name == "scale"
        row = equivalence.compare(tm, jm, x).rows[0]
    finally:
        tolerance.unregister("scale")
    assert row.tol == pytest.approx(tolerance.C * EPS32 * 8 * s.max() + tiny, rel=1e-12)  # n = 64
    (call,) = calls
    assert call.module is not jm and isinstance(call.module, JaxScale)  # a clone, run on torch's input
    assert call.torch_module is tm and call.train is tm.training and call.cotangent is None
    np.testing.assert_array_equal(call.inputs[0], x)
    np.testing.assert_allclose(call.magnitude, s, rtol=1e-6)
    assert tolerance.kind_of(jm).name == tolerance.FALLBACK


def test_registered_kind_sets_gradient_tolerances_and_wins_over_dot():
    torch.manual_seed(0)
    tm, jm = tnn.Conv2d(3, 4, 3), ExactConv2d(3, 4, 3)
    equivalence.load_state_dict(jm, tm.state_dict())
    shape = (4, 3, 10, 10)
    assert tolerance.kind_of(jm).name == "dot"
    assert equivalence.compare(tm, jm, shape, grads=True).passed

    def exact_weight_grad(call):  # the dot model, with no rounding allowed in the weight gradient
        bounds = tolerance.dot(call)
        params = {**bounds.params, "weight": tolerance.Bound(0.0, 1)}
        return dataclasses.replace(bounds, params=params)

    tolerance.register("exact-conv", match=ExactConv2d, model=exact_weight_grad)
    try:
        assert tolerance.kind_of(jm).name == "exact-conv"
        assert tolerance.kind_of(jnn.Conv2d(3, 4, 3)).name == "dot"  # the base class is not matched
        report = equivalence.compare(tm, jm, shape, grads=True)
    finally:
        tolerance.unregister("exact-conv")
    rows = {r.name: r for r in report.rows}
    assert rows["(root)"].passed and rows["bias"].passed and rows["input[0]"].passed
    assert not rows["weight"].passed and rows["weight"].max_abs > 0
    assert report.first_divergence.name == "weight"


def test_match_by_class_name_functional_op_and_predicate():
    def lookup(obj):
        return tolerance.kind_of(obj).name

    assert lookup(jnn.ConvTranspose3d(2, 2, 1)) == "dot" and lookup(jnn.Linear(2, 3)) == "dot"
    assert lookup(jnn.BatchNorm1d(3)) == "batchnorm" and lookup(jnn.ReLU()) == tolerance.FALLBACK
    assert lookup(F.conv2d) == tolerance.FALLBACK
    model = tolerance.elementwise
    tolerance.register("conv-op", match=(F.conv2d, "JaxScale"), model=model)
    tolerance.register("wide", when=lambda m: getattr(m, "in_features", 0) > 100, model=model)
    try:
        assert lookup(F.conv2d) == "conv-op" and lookup(F.conv1d) == tolerance.FALLBACK
        assert lookup(JaxScale(2)) == "conv-op" and lookup(JaxScale) == "conv-op"
        assert lookup(jnn.Linear(101, 2)) == "wide" and lookup(jnn.Linear(2, 2)) == "dot"
        assert list(tolerance.kinds())[-2:] == ["conv-op", "wide"]
    finally:
        tolerance.unregister("conv-op"), tolerance.unregister("wide")
    assert set(tolerance.kinds()) == {"elementwise", "dot", "batchnorm", "normalization", "recurrent", "softmax",
                                      "resize", "loss"}


def test_register_rejects_bad_arguments():
    with pytest.raises(TypeError, match="kind must be a non-empty str"):
        tolerance.register("", model=tolerance.elementwise)
    with pytest.raises(TypeError, match="match must hold classes, class names or functional ops"):
        tolerance.register("x", match=(3,), model=tolerance.elementwise)
    with pytest.raises(TypeError, match="model must be callable"):
        tolerance.register("x", match="Foo", model=3)
    with pytest.raises(ValueError, match="fallback kind 'elementwise' matches whatever"):
        tolerance.register("elementwise", match="Foo", model=tolerance.elementwise)
    with pytest.raises(ValueError, match="cannot be removed"):
        tolerance.unregister("elementwise")
    with pytest.raises(KeyError, match="no layer kind 'nope' is registered"):
        tolerance.unregister("nope")
    assert "x" not in tolerance.kinds()


def test_errors_nan_and_inf():
    nan, inf = np.nan, np.inf
    same = tolerance.errors([1.0, nan, inf, -inf], [1.0, nan, inf, -inf], 1e-6)
    assert same["ratio"] == 0 and same["max_abs"] == 0 and same["note"] == ""
    assert same["tol"] == 1e-6
    for got, want, where in (([1.0, nan], [1.0, 2.0], "in jaxconv only at 1"),
                             ([1.0, 2.0], [1.0, inf], "in torch only at 1"),
                             ([inf, 2.0], [-inf, 2.0], "different on the two sides at 1"),
                             ([nan, 2.0], [inf, 2.0], "different on the two sides at 1")):
        err = tolerance.errors(got, want, 1.0)
        assert err["ratio"] == inf and err["max_abs"] == inf and where in err["note"], (got, want, err)
    assert tolerance.max_difference([nan, 1.0], [nan, 1.5]) == 0.5
    assert tolerance.max_difference([nan, 1.0], [0.0, 1.0]) == inf


def test_exact_agreement_shows_the_largest_tolerance():
    x = np.array([0.0, -3.0, 1e-3])
    err = tolerance.errors(x, x, tolerance.tolerance(np.abs(x), 4, np.float32))
    assert err["tol"] == pytest.approx(tolerance.C * EPS32 * 2 * 3.0, rel=1e-6) and err["ratio"] == 0
    err = tolerance.errors([1.0, 2.0], [1.0, 2.5], [1.0, 0.1])  # with an error: at the worst ratio
    assert err["tol"] == 0.1 and err["ratio"] == pytest.approx(5.0) and err["err_at"] == 0.5


def test_errors_fast_path_gives_the_general_paths_numbers():
    """Finite values and positive tolerances take errors' block-by-block path; every number
    must be the general path's: exact agreement, zeros on torch's side, ties of the worst ratio
    in different blocks, a tolerance per element, one for all, one broadcast along an axis."""
    from equivalence.tolerance._errors import _BLOCK, _general_errors

    rng = np.random.default_rng(3)
    e = rng.standard_normal((3, 5, _BLOCK // 4 + 7)) * np.exp(rng.standard_normal((3, 5, _BLOCK // 4 + 7)))
    e[0, 0] = 0.0
    a = (e + rng.standard_normal(e.shape) * 1e-6).astype(np.float32)
    a[1] = e[1]
    a.flat[-1], e.flat[-1], a.flat[_BLOCK + 3], e.flat[_BLOCK + 3] = 1.0, 0.0, 2.0, 0.0
    tol = np.abs(e) * 1e-6 + 1e-9
    tol.flat[_BLOCK + 3] = 2e-9  # the same worst ratio in two blocks: the first counts
    cases = [(a, e, tol), (a, e, 3e-7), (e, e, tol), (e, e, 2.0), (a, e.astype(np.float32), tol[0, 0]),
             (a, e, np.full((3, 1, 1), 1e-7)), (a[:2, :3, :4], e[:2, :3, :4], -1.0), ([1.0, 2.0], [1.0, 2.5], [1.0, 0.0])]
    for got, want, t in cases:
        fast = tolerance.errors(got, want, t)
        general = _general_errors(np.asarray(got, np.float64), np.asarray(want, np.float64),
                                  np.broadcast_to(np.asarray(t, np.float64), np.shape(want)))
        assert fast == general, (fast, general)
        assert tolerance.max_difference(got, want) == general["max_abs"]


def _lp_models():
    torch.manual_seed(0)
    tm = tnn.Sequential(tnn.LPPool2d(1.5, 2), tnn.Flatten(), tnn.Linear(2 * 3 * 3, 4))
    jm = jnn.Sequential(jnn.LPPool2d(1.5, 2), jnn.Flatten(), jnn.Linear(2 * 3 * 3, 4))
    equivalence.load_state_dict(jm, tm.state_dict())
    return tm.eval(), jm


def test_nan_on_both_sides_agrees():
    tm, jm = _lp_models()
    x = np.abs(np.random.default_rng(0).standard_normal((2, 2, 6, 6))).astype(np.float32)
    x[1, 0, :2, :2] *= -1  # two windows of sample 1 see negative inputs: (negative) ** 1.5 is NaN
    x[1, 1, 3, 4] *= -1
    pooled = tm[0](torch.from_numpy(x)).numpy()
    assert np.isnan(pooled[1]).any() and not np.isnan(pooled[1]).all() and np.isfinite(pooled[0]).all()
    assert np.isnan(tm(torch.from_numpy(x)).detach().numpy()[1]).all()
    report = equivalence.compare(tm, jm, x)
    assert report.passed, report.to_text()
    rows = {r.name: r for r in report.rows}
    assert rows["0"].max_abs < 1e-5 and rows["0"].e2e < 1e-5  # the finite windows agree too
    assert all(r.e2e is not None and np.isfinite(r.e2e) for r in report.rows)


class NanWhereLargeReLU(jnn.ReLU):
    """Planted: NaN where the input exceeds 1 (torch is finite there)."""

    def __call__(self, x):
        return jnp.where(x > 1.0, jnp.nan, super().__call__(x))


def test_one_sided_nan_fails_and_names_the_layer():
    torch.manual_seed(0)
    tm = tnn.Sequential(tnn.Conv2d(2, 3, 3), tnn.ReLU(), tnn.Flatten(), tnn.Linear(3 * 4 * 4, 4))
    jm = jnn.Sequential(jnn.Conv2d(2, 3, 3), NanWhereLargeReLU(), jnn.Flatten(), jnn.Linear(3 * 4 * 4, 4))
    equivalence.load_state_dict(jm, tm.state_dict())
    report = equivalence.compare(tm.eval(), jm, (2, 2, 6, 6))
    assert not report.passed
    first = report.first_divergence
    assert first.name == "1" and first.type == "ReLU", report.to_text()  # torch's type
    assert "NaN/inf in jaxconv only at" in first.note and first.ratio == np.inf
    assert [r.name for r in report.rows if not r.passed] == ["1"]  # later layers run on torch's values
    assert "first divergence at 1 (ReLU, layer" in report.to_text()


def test_a_model_without_gradient_bounds_is_named():
    tm, jm, x, _ = _scale_pair()
    tolerance.register("scale", match=JaxScale,
                       model=lambda call: tolerance.LayerBounds(tolerance.Bound(call.magnitude, 4)))
    try:
        with pytest.raises(ValueError, match=r"\(root\): the error model of layer kind 'scale' returned "
                                             r"no gradient Bound for \['weight', 'input'\]"):
            equivalence.compare(tm, jm, x, grads=True)
    finally:
        tolerance.unregister("scale")
