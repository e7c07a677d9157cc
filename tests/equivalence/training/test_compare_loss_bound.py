"""The loss's trajectory bound follows from the parameters' (first order): a run whose parameters
stay within their trajectory bounds is not failed on its loss, a loss beyond what they allow is."""
import numpy as np
import pytest
import torch

import equivalence
from equivalence.training._bounds import loss_trajectory, start_allowance
from equivalence.training.training_report import FLOOR_ULPS

C = 4.0


def test_loss_bound_is_what_the_parameters_allow():
    """``R = sum_p ||dL/dp|| A_p / c + own``: the bound is ``sum_p ||dL/dp|| A_p + c own`` (+ 2
    ulps of the loss), however small the float64 sample ``|loss32 - loss64|``."""
    rng = np.random.default_rng(0)
    grads = {"w": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}
    allowed = {"w": 1e-5, "b": 3e-6}
    own = np.float64(2e-7)
    loss32 = np.float32(2.0)
    loss64 = np.float64(loss32) + 1e-9   # torch's float64 twin happens to land close
    moved = sum(float(np.linalg.norm(g.astype(np.float64))) * allowed[n] for n, g in grads.items())
    want = moved + C * own + FLOOR_ULPS * np.finfo(np.float32).eps * 2.0
    near = loss_trajectory(3, np.float32(loss32 + np.float32(0.9 * moved)), loss32, loss64, own, grads, allowed, C)
    assert near.passed and near.bound == pytest.approx(want, rel=1e-6)
    far = loss_trajectory(3, np.float32(loss32 + np.float32(3 * want)), loss32, loss64, own, grads, allowed, C)
    assert not far.passed and far.ratio > 2
    # before the first step: 2 ulps of each parameter's norm
    params = {"w": np.full((3, 4), 3.0, np.float32)}
    assert start_allowance(params)["w"] == pytest.approx(FLOOR_ULPS * np.finfo(np.float32).eps * np.sqrt(12) * 3.0)


@pytest.mark.slow
def test_residual_cnn_adamw_onecycle_loss_no_false_alarm():
    """The demo's recipe (AdamW with no-decay groups, OneCycleLR, label smoothing, clipping) on
    the bundled residual CNN, batch 4: every parameter's trajectory passes, and the loss, which
    the one float64 sample ``|loss32 - loss64|`` bounded to 8e-7 at step 6 (error 1.9e-6), too."""
    from equivalence.examples import EXAMPLES
    from equivalence.training import translate_optimizer

    ex = EXAMPLES["residual_cnn"]
    model = ex.torch_factory(seed=0)
    port = equivalence.translate(model, torch.randn(*ex.input_shape))
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=24)
    loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((4, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 4))
               for _ in range(4)]
    report = equivalence.compare_training(model, port, opt, translate_optimizer(opt, model, scheduler),
                                          batches, loss, scheduler=scheduler, max_grad_norm=1.0, steps=8)
    assert report.passed, report.verdict()
    losses = [c for c in report.checks if c.stage == "trajectory" and c.name == "(loss)"]
    assert len(losses) == 8 and max(c.error for c in losses) > 1e-6   # the divergence is there
