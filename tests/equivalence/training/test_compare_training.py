"""equivalence.compare_training: a correct recipe passes; each planted recipe bug fails at the
step, stage, parameter and optimizer quantity where it first acts."""
import copy
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import equivalence
import jaxconv.optim as jopt
from jaxconv.nn import utils as clip_utils
from jaxconv.optim.optimizer import Hyper
from tests._zoo import randomize_batchnorm


def _model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    return randomize_batchnorm(model)


@pytest.fixture(scope="module")
def recipe():
    """A conv + BatchNorm + linear classifier (random BatchNorm statistics), its translation and
    four random batches."""
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((6, 3, 10, 10)).astype(np.float32), rng.integers(0, 4, 6))
               for _ in range(4)]
    model = _model()
    return model, equivalence.translate(model, torch.as_tensor(batches[0][0])), batches


SGD_ARGS = dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-2)


def _sgd(model, **kw):
    return torch.optim.SGD(model.parameters(), **dict(SGD_ARGS, **kw))


def _with(hyper, **values) -> Hyper:
    """A copy of an update's hyperparameters with ``values`` replaced (statically too)."""
    out = Hyper(hyper, **values)
    out.static = dict(hyper.static, **values)
    return out


class NoDampening(jopt.SGD):
    """Planted: torch's dampening ignored."""

    def step_leaf(self, grad, param, slots, hyper, step):
        return super().step_leaf(grad, param, slots, _with(hyper, dampening=0.0), step)


class DecoupledSGD(jopt.SGD):
    """Planted: weight decay decoupled (AdamW-style) where torch's SGD couples it."""

    def step_leaf(self, grad, param, slots, hyper, step):
        decayed = param * (1 - hyper["lr"] * hyper.static["weight_decay"])
        return super().step_leaf(grad, decayed, slots, _with(hyper, weight_decay=0.0), step)


def test_sgd_recipe_passes(recipe, tmp_path):
    """SGD with momentum, dampening, weight decay and clipping, 6 steps over 4 batches (cycled):
    every local check and the trajectory within their bounds; the table, JSON and plot."""
    model, port, batches = recipe
    report = equivalence.compare_training(model, port, _sgd(model), jopt.SGD(**SGD_ARGS), batches,
                                          torch.nn.CrossEntropyLoss(), steps=6, max_grad_norm=0.5)
    assert report.passed, report.to_text()
    assert report.first_divergence is None
    assert len(report.steps) == 6
    stages = {c.stage for c in report.checks}
    assert stages == {"start", "loss", "grad", "buffer", "clip", "update", "schedule", "trajectory"}
    assert {c.quantity for c in report.checks if c.stage == "update"} == {"param", "momentum_buffer"}
    assert {c.name for c in report.checks if c.stage == "buffer"} >= {"1.running_mean", "1.running_var"}
    # the bounds are not vacuous: the worst check of each stage uses a good part of its bound
    # somewhere, and a relative error of 1e-4 would exceed every update bound
    worst = [c for c in report.checks if c.stage == "update" and c.quantity == "param"]
    assert all(c.bound < 1e-4 * 1.0 for c in worst)
    text = report.to_text()
    assert "loss torch" in text and "PASS" in text.splitlines()[-1]
    data = json.loads(report.to_json(tmp_path / "training.json"))
    assert data["passed"] and len(data["steps"]) == 6 and data["failing"] == []
    assert (tmp_path / "training.json").exists()
    report.plot(tmp_path / "training.png")
    assert (tmp_path / "training.png").read_bytes()[:4] == b"\x89PNG"
    # the originals are untouched
    torch.testing.assert_close(dict(model.state_dict()), dict(_model().state_dict()))


def _located(report, step, stage, quantity, name=None):
    first = report.first_divergence
    assert not report.passed
    assert (first.step, first.stage, first.quantity) == (step, stage, quantity), report.verdict()
    if name is not None:
        assert first.name == name, report.verdict()
    assert first.where() in report.verdict() and first.ratio > 10, report.verdict()
    return first


def test_dampening_ignored(recipe):
    """torch applies no dampening to the first step's buffer, so the bug acts at step 1, in
    the momentum buffer."""
    model, port, batches = recipe
    report = equivalence.compare_training(model, port, _sgd(model), NoDampening(**SGD_ARGS),
                                          batches, torch.nn.CrossEntropyLoss(), steps=3)
    _located(report, 1, "update", "momentum_buffer")
    # the free run catches it on its own too (its bounds carry only what the local checks allow)
    assert max(c.ratio for c in report.checks if c.stage == "trajectory" and c.step == 1) > 10


@pytest.mark.slow
def test_batchnorm_momentum_inverted(recipe):
    """flax's convention (momentum = the part kept) in a torch port: the running statistics
    after the first forward."""
    model, port, batches = recipe
    port = nnx.clone(port)
    port[1].momentum = 1 - model[1].momentum
    report = equivalence.compare_training(model, port, _sgd(model), jopt.SGD(**SGD_ARGS), batches,
                                          torch.nn.CrossEntropyLoss(), steps=2)
    _located(report, 0, "buffer", "running_mean", "1.running_mean")


@pytest.mark.slow
def test_weight_decay_decoupled(recipe):
    """Decoupled decay where torch's SGD couples it: the momentum buffer of the first step."""
    model, port, batches = recipe
    report = equivalence.compare_training(model, port, _sgd(model, weight_decay=0.1),
                                          DecoupledSGD(**dict(SGD_ARGS, weight_decay=0.1)), batches,
                                          torch.nn.CrossEntropyLoss(), steps=2)
    _located(report, 0, "update", "momentum_buffer")


def _clip_without_eps(grads, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Planted: torch's ``max_norm / (total_norm + 1e-6)`` without the ``1e-6``."""
    norm = clip_utils.get_total_norm(grads, norm_type)
    coef = jnp.minimum(max_norm / norm, 1.0)
    return jax.tree.map(lambda g: g * coef.astype(g.dtype), grads), norm


@pytest.mark.slow
def test_clipping_eps_missing(recipe, monkeypatch):
    """The clipped gradients of the first step (the total norm itself is right). The eps moves
    the coefficient by 1e-6 / norm relative, so it shows where the gradients are small: an MSE
    to targets near the model's output (residuals ~1e-3, gradient norm ~1e-3)."""
    model, port, batches = recipe
    rng = np.random.default_rng(1)
    with torch.no_grad():
        frozen = copy.deepcopy(model)       # train mode, as the run; its statistics move, not model's
        near = [(x, frozen(torch.as_tensor(x)).numpy() + 1e-3 * rng.standard_normal((6, 4), np.float32))
                for x, _ in batches]
    monkeypatch.setattr(clip_utils, "clip_grad_norm", _clip_without_eps)
    report = equivalence.compare_training(model, port, _sgd(model), jopt.SGD(**SGD_ARGS), near,
                                          torch.nn.MSELoss(), steps=2, max_grad_norm=1e-4)
    assert report.steps[0].grad_norm > 1e-4
    first = _located(report, 0, "clip", "grad")
    assert all(c.passed for c in report.checks if c.quantity == "total_norm")
    assert first.name in dict(model.named_parameters())


class Exponential:
    """A test-only scheduler rule of torch's ExponentialLR (``lr *= gamma`` per step); ``early``
    plants a schedule one step ahead (an extra step at construction)."""

    cycles_momentum = False

    def __init__(self, gamma, early=False):
        self.gamma, self.early = gamma, early

    def init(self, hyper, momentum_key):
        if self.early:
            hyper = dict(hyper, lr=hyper["lr"] * self.gamma)
        return jnp.zeros((), jnp.int32), hyper

    def step(self, state, hyper, value=None):
        return state + 1, dict(hyper, lr=hyper["lr"] * self.gamma)


@pytest.mark.parametrize("early", [pytest.param(False, marks=pytest.mark.slow), True])
def test_schedule(recipe, early):
    """ExponentialLR stepped once per step follows torch; one step ahead fails at step 0 on
    the learning rate (and the optimizer's update, given torch's lr, still passes)."""
    model, port, batches = recipe
    opt = _sgd(model)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.7)
    tx = jopt.SGD(**SGD_ARGS).with_scheduler(Exponential(0.7, early))
    report = equivalence.compare_training(model, port, opt, tx, batches, torch.nn.CrossEntropyLoss(),
                                          steps=4, scheduler=scheduler)
    assert [s.lr[0] for s in report.steps] == pytest.approx([0.1 * 0.7 ** t for t in range(4)])
    if not early:
        assert report.passed, report.to_text()
        return
    _located(report, 0, "schedule", "lr", "group 0")
    assert all(c.passed for c in report.checks if c.stage == "update")


def test_bad_arguments(recipe):
    model, port, batches = recipe
    loss = torch.nn.CrossEntropyLoss()
    with pytest.raises(TypeError, match="jax_optimizer must be a jaxconv.optim optimizer"):
        equivalence.compare_training(model, port, _sgd(model), object(), batches, loss)
    with pytest.raises(ValueError, match=r"batches\[0\] must be an \(input, target\) pair"):
        equivalence.compare_training(model, port, _sgd(model), jopt.SGD(lr=0.1), [batches[0][0]], loss)
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        equivalence.compare_training(model, port, _sgd(model), jopt.SGD(lr=0.1), batches, loss, steps=0)
    dropped = torch.nn.Sequential(model, torch.nn.AlphaDropout(0.2))
    with pytest.raises(ValueError, match=r"'1' \(AlphaDropout, p=0.2\) adds noise that is not a mask"):
        equivalence.compare_training(dropped, port, _sgd(model), jopt.SGD(lr=0.1), batches, loss)


@pytest.mark.slow
def test_weight_decay_coupled_for_decoupled(recipe):
    """torch's AdamW (decoupled decay) ported as Adam(weight_decay=...) (coupled, an L2 penalty
    in the gradient): the first moment of the first step."""
    model, port, batches = recipe
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    report = equivalence.compare_training(model, port, opt, jopt.Adam(lr=1e-2, weight_decay=0.1),
                                          batches, torch.nn.CrossEntropyLoss(), steps=2)
    _located(report, 0, "update", "exp_avg")


@pytest.mark.slow
@pytest.mark.parametrize("torch_cls, ours", [
    (torch.optim.Adam, lambda: jopt.Adam(lr=1e-2, weight_decay=1e-2, amsgrad=True)),
    (torch.optim.AdamW, lambda: jopt.AdamW(lr=1e-2, weight_decay=1e-2, amsgrad=True)),
    (torch.optim.RMSprop, lambda: jopt.RMSprop(lr=1e-3, weight_decay=1e-2, momentum=0.5, centered=True)),
])
def test_adaptive_recipes_pass(recipe, torch_cls, ours):
    """Adam, AdamW (amsgrad) and RMSprop (centered, momentum) over 5 steps: every slot checked."""
    model, port, batches = recipe
    tx = ours()
    opt = torch_cls(model.parameters(), **{k: v for k, v in tx.defaults.items()
                                           if k in ("lr", "weight_decay", "amsgrad", "momentum", "centered")})
    report = equivalence.compare_training(model, port, opt, tx, batches, torch.nn.CrossEntropyLoss(),
                                          steps=5, max_grad_norm=1.0)
    assert report.passed, report.to_text()
    slots = {c.quantity for c in report.checks if c.stage == "update"} - {"param"}
    assert slots == set(tx.slots), slots


class EpsInsideSqrt(jopt.RMSprop):
    """Planted: optax's default, ``g / sqrt(v + eps)``, where torch has ``g / (sqrt(v) + eps)``."""

    def step_leaf(self, grad, param, slots, hyper, step):
        alpha = hyper.static["alpha"]
        square_avg = slots["square_avg"] * alpha + (1 - alpha) * grad * grad
        lr = hyper["lr"].astype(param.dtype)
        return param - lr * grad / jnp.sqrt(square_avg + hyper.static["eps"]), dict(slots, square_avg=square_avg)


@pytest.mark.slow
def test_rmsprop_eps_inside_sqrt(recipe):
    """The parameters of the first step (the slot is right)."""
    model, port, batches = recipe
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, eps=1e-6)
    report = equivalence.compare_training(model, port, opt, EpsInsideSqrt(lr=1e-3, eps=1e-6), batches,
                                          torch.nn.CrossEntropyLoss(), steps=2)
    _located(report, 0, "update", "param")
    assert all(c.passed for c in report.checks if c.quantity == "square_avg" and c.step == 0)


class OneStepEarly:
    """Planted: a scheduler rule stepped once more at construction (the schedule one step ahead)."""

    def __init__(self, rule):
        self.rule, self.cycles_momentum = rule, rule.cycles_momentum

    def init(self, hyper, momentum_key):
        return self.rule.step(*self.rule.init(hyper, momentum_key))

    def step(self, state, hyper, value=None):
        return self.rule.step(state, hyper, value)


@pytest.mark.slow
@pytest.mark.parametrize("early", [False, True])
def test_cosine_schedule(recipe, early):
    """torch's CosineAnnealingLR and jaxconv's over 5 steps; one step ahead fails at step 0 on
    the learning rate."""
    model, port, batches = recipe
    from jaxconv.optim import lr_scheduler

    opt = _sgd(model)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=1e-3)
    tx = lr_scheduler.CosineAnnealingLR(jopt.SGD(**SGD_ARGS), T_max=4, eta_min=1e-3)
    if early:
        tx = copy.copy(tx)
        tx.scheduler = OneStepEarly(tx.scheduler)
    report = equivalence.compare_training(model, port, opt, tx, batches, torch.nn.CrossEntropyLoss(),
                                          steps=5, scheduler=scheduler)
    if not early:
        assert report.passed, report.to_text()
        return
    _located(report, 0, "schedule", "lr", "group 0")
