"""A torch scheduler translated and its position moved: the learning rate and the parameters
continue as torch's (needs jaxconv.optim.lr_scheduler)."""
import numpy as np
import pytest
import torch
from flax import nnx

from equivalence.training import (RecipeError, load_optimizer_state, scheduler_state_dict,
                                  translate_optimizer)
from equivalence.training.scheduler import scheduler_arguments
from tests.equivalence.training._recipe import (batches, jax_steps, max_relative_error, torch_model,
                                                torch_steps, translate)

S = torch.optim.lr_scheduler
TOL = 2e-5

CASES = {
    "step": lambda o: S.StepLR(o, step_size=2, gamma=0.5),
    "one_cycle": lambda o: S.OneCycleLR(o, max_lr=0.2, total_steps=12, pct_start=0.4),
    "plateau": lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=0, threshold=0.5),
    "sequential": lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.1, total_iters=3),
                                               S.CosineAnnealingLR(o, T_max=8)], milestones=[3]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_scheduler_position_moves(case):
    pytest.importorskip("jaxconv.optim.lr_scheduler")
    model = torch_model()
    torch_opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = CASES[case](torch_opt)
    torch_steps(model, torch_opt, batches(4), scheduler)
    jax_model = translate(model)
    optimizer = nnx.Optimizer(jax_model, translate_optimizer(torch_opt, model, scheduler),
                              wrt=nnx.Param)
    load_optimizer_state(optimizer, torch_opt, model, scheduler)
    more = batches(4, seed=2)
    torch_steps(model, torch_opt, more, scheduler)
    jax_steps(jax_model, optimizer, more)
    lr = np.asarray(nnx.as_pure(optimizer.opt_state).hyper["lr"])
    np.testing.assert_allclose(lr, [g["lr"] for g in torch_opt.param_groups], rtol=1e-12)
    assert max_relative_error(jax_model, model) < TOL
    exported = scheduler_state_dict(optimizer, CASES[case](torch.optim.SGD(
        torch_model(seed=3).parameters(), lr=0.1, momentum=0.9)))
    assert exported["last_epoch"] == scheduler.state_dict()["last_epoch"]
    np.testing.assert_allclose(exported["_last_lr"], scheduler.state_dict()["_last_lr"], rtol=1e-12)


def test_scheduler_without_translation_is_refused():
    model = torch_model()
    torch_opt = torch.optim.SGD(model.parameters(), lr=0.1)

    class Mine(S.LRScheduler):
        def get_lr(self):
            return [g["lr"] for g in self.optimizer.param_groups]

    with pytest.raises(RecipeError, match="Mine has no jaxconv translation"):
        translate_optimizer(torch_opt, model, Mine(torch_opt))


READ_BACK = {
    "StepLR": dict(step_size=3, gamma=0.3),
    "MultiStepLR": dict(milestones=[2, 5, 5], gamma=0.4),
    "ConstantLR": dict(factor=0.3, total_iters=4),
    "LinearLR": dict(start_factor=0.2, end_factor=0.9, total_iters=5),
    "ExponentialLR": dict(gamma=0.9),
    "PolynomialLR": dict(total_iters=6, power=1.7),
    "CosineAnnealingLR": dict(T_max=7, eta_min=1e-3),
    "CosineAnnealingWarmRestarts": dict(T_0=3, T_mult=2, eta_min=1e-3),
    "CyclicLR": dict(base_lr=0.01, max_lr=0.1, step_size_up=3, step_size_down=5, mode="exp_range",
                     gamma=0.9),
    "OneCycleLR": dict(max_lr=0.3, total_steps=20, pct_start=0.35, div_factor=7.0,
                       final_div_factor=300.0, three_phase=True, anneal_strategy="linear"),
    "ReduceLROnPlateau": dict(mode="max", factor=0.3, patience=2, threshold=0.01, cooldown=1,
                              min_lr=1e-4),
}


@pytest.mark.parametrize("name", sorted(READ_BACK))
def test_arguments_read_back_rebuild_the_schedule(name):
    """A torch scheduler rebuilt from the arguments read back from another gives its rates."""
    def built(**kwargs):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05, momentum=0.9)
        return opt, getattr(S, name)(opt, **kwargs)

    opt, original = built(**READ_BACK[name])
    copy_opt, copy = built(**scheduler_arguments(original))
    metrics = [3.0, 2.0, 2.5, 2.4, 1.0, 1.1, 1.2, 0.5] * 2
    for metric in metrics:
        rates = [[(g["lr"], g["momentum"]) for g in o.param_groups] for o in (opt, copy_opt)]
        assert rates[0] == rates[1]
        for o, s in ((opt, original), (copy_opt, copy)):
            o.step()
            s.step(metric) if name == "ReduceLROnPlateau" else s.step()
