"""compare_training on a whole recipe (AdamW with no-decay groups, OneCycleLR, clipping, label
smoothing): from step 0, and resumed from a torch training checkpoint in the middle, the jaxconv
side starting from torch's optimizer state and scheduler position."""
import pytest
import torch
from flax import nnx

import equivalence
from equivalence.training import load_training_checkpoint, translate_optimizer
from tests.equivalence.training._recipe import batches, torch_model, translate

K, MORE, TOTAL = 4, 8, 16
CLIP = 1.0


def _recipe(model):
    """AdamW, no weight decay for biases and normalization weights (timm's groups), OneCycleLR
    cycling beta1."""
    decay = [p for _, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for _, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-2, total_steps=TOTAL, pct_start=0.3)
    return opt, sched


def _loss():
    return torch.nn.CrossEntropyLoss(label_smoothing=0.1)


def _train(model, opt, sched, data):
    loss_fn = _loss()
    for x, y in data:
        opt.zero_grad()
        loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        sched.step()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """torch's recipe after K steps, saved as torchvision's scripts do."""
    model = torch_model()
    opt, sched = _recipe(model)
    _train(model, opt, sched, batches(K, seed=3))
    path = tmp_path_factory.mktemp("resume") / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "lr_scheduler": sched.state_dict(), "epoch": 0}, path)
    return path


def _resumed(path):
    """A fresh torch recipe loaded from the checkpoint, and a jaxconv model and nnx.Optimizer
    (other weights, fresh state) loaded with load_training_checkpoint."""
    content = torch.load(path, weights_only=True)
    model = torch_model(seed=5)
    model.load_state_dict(content["model"])
    opt, sched = _recipe(model)
    opt.load_state_dict(content["optimizer"])
    sched.load_state_dict(content["lr_scheduler"])
    jax_model = translate(torch_model(seed=7))
    optimizer = nnx.Optimizer(jax_model, translate_optimizer(opt, model, sched), wrt=nnx.Param)
    return model, opt, sched, jax_model, optimizer


@pytest.mark.slow
def test_resumed_from_torch_checkpoint(checkpoint):
    """K steps in torch, saved; both sides load it; MORE steps side by side pass, from torch's
    exact optimizer state (step counts, moments) and OneCycleLR position."""
    model, opt, sched, jax_model, optimizer = _resumed(checkpoint)
    assert load_training_checkpoint(checkpoint, jax_model, optimizer) == {"epoch": 0}
    report = equivalence.compare_training(model, jax_model, opt, optimizer, batches(MORE, seed=4),
                                          _loss(), scheduler=sched, max_grad_norm=CLIP)
    assert report.passed, report.to_text()
    assert report.meta["resumed_at"] == K and len(report.steps) == MORE
    start = {(c.name, c.quantity) for c in report.checks if c.stage == "start"}
    assert {("group 0", "step"), ("group 1", "step"), ("4.weight", "exp_avg"),
            ("1.bias", "exp_avg_sq")} <= start
    assert {c.quantity for c in report.checks if c.stage == "schedule"} == {"lr", "beta1"}
    # the learning rates are OneCycleLR's from its K-th step on
    lrs = []
    for _ in range(MORE):
        lrs.append(sched.get_last_lr()[0])
        sched.step()
    assert [s.lr[0] for s in report.steps] == pytest.approx(lrs)


@pytest.mark.slow
def test_not_resumed_fails_at_start(checkpoint):
    """The jaxconv optimizer left fresh (the checkpoint's model loaded, its optimizer state not):
    the start check names the step count and the moments."""
    model, opt, sched, jax_model, optimizer = _resumed(checkpoint)
    load_training_checkpoint(checkpoint, jax_model)   # the model only
    report = equivalence.compare_training(model, jax_model, opt, optimizer, batches(1, seed=4),
                                          _loss(), scheduler=sched, max_grad_norm=CLIP)
    first = report.first_divergence
    assert (first.step, first.stage, first.quantity) == (0, "start", "step"), report.verdict()
    assert {c.quantity for c in report.checks if c.stage == "start" and not c.passed} >= {"exp_avg", "exp_avg_sq"}


@pytest.mark.slow
def test_resumed_with_translated_optimizer(checkpoint):
    """Given the bare translated optimizer, compare_training moves torch's state into it itself
    (as load_optimizer_state does)."""
    model, opt, sched, jax_model, _ = _resumed(checkpoint)
    load_training_checkpoint(checkpoint, jax_model)
    report = equivalence.compare_training(model, jax_model, opt, translate_optimizer(opt, model, sched),
                                          batches(MORE, seed=4), _loss(), scheduler=sched,
                                          max_grad_norm=CLIP)
    assert report.passed, report.to_text()
    assert all(c.passed for c in report.checks if c.stage == "start")


@pytest.mark.slow
def test_whole_recipe_from_step_0():
    """The recipe over TOTAL steps (the whole OneCycle) from a fresh start."""
    model = torch_model()
    opt, sched = _recipe(model)
    report = equivalence.compare_training(model, translate(model), opt,
                                          translate_optimizer(opt, model, sched), batches(TOTAL, seed=6),
                                          _loss(), scheduler=sched, max_grad_norm=CLIP)
    assert report.passed, report.to_text()
    assert report.meta["resumed_at"] is None
