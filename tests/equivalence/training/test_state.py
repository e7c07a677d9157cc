"""Optimizer state moved from torch to jaxconv and back: training continues where it stopped."""
import numpy as np
import pytest
import torch
from flax import nnx

from equivalence.training import (OptimizerStateError, RecipeError, load_optimizer_state,
                                  optimizer_state_dict, trainable, translate_optimizer)
from tests.equivalence.training._recipe import (batches, jax_steps, max_relative_error, opt_leaves,
                                                torch_model, torch_steps, translate)

#: float32 rounding over a few steps of a small model (errors seen: ~2e-7).
TOL = 2e-5


def _groups(model):
    """timm's split: no weight decay for biases and BatchNorm weights (1-d parameters)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay}, {"params": rest, "weight_decay": 0.0, "lr": 0.03}]


SGD_CASES = {
    "momentum": lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
    "nesterov_groups": lambda m: torch.optim.SGD(_groups(m), lr=0.1, momentum=0.8, nesterov=True,
                                                 weight_decay=1e-2),
    "dampening_maximize": lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.7,
                                                    dampening=0.3, weight_decay=1e-3, maximize=True),
    "plain": lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
}


#: The other optimizers, each with its options that keep more state (run where jaxconv has them).
FAMILY = {
    "Adam_amsgrad": lambda m: torch.optim.Adam(_groups(m), lr=0.01, weight_decay=1e-2, amsgrad=True),
    "AdamW": lambda m: torch.optim.AdamW(m.parameters(), lr=0.01, betas=(0.8, 0.99)),
    "RMSprop_centered": lambda m: torch.optim.RMSprop(m.parameters(), lr=0.01, momentum=0.5,
                                                      centered=True, weight_decay=1e-3),
    "Adagrad": lambda m: torch.optim.Adagrad(m.parameters(), lr=0.05, lr_decay=1e-2,
                                             initial_accumulator_value=0.1),
    "Adadelta": lambda m: torch.optim.Adadelta(m.parameters(), lr=0.5, rho=0.8),
    "Adamax": lambda m: torch.optim.Adamax(m.parameters(), lr=0.01),
    "NAdam": lambda m: torch.optim.NAdam(m.parameters(), lr=0.01, momentum_decay=3e-3),
    "RAdam_decoupled": lambda m: torch.optim.RAdam(m.parameters(), lr=0.01, weight_decay=1e-2,
                                                   decoupled_weight_decay=True),
}


def _needs_jaxconv(case):
    import jaxconv.optim

    name = type(FAMILY[case](torch_model())).__name__
    return pytest.mark.skipif(not hasattr(jaxconv.optim, name), reason=f"no jaxconv.optim.{name}")


def _resumed(make, steps_before=3):
    """torch trained ``steps_before`` steps, its twin and optimizer state moved to jaxconv."""
    model = torch_model()
    torch_opt = make(model)
    torch_steps(model, torch_opt, batches(steps_before))
    jax_model = translate(model)
    optimizer = nnx.Optimizer(jax_model, translate_optimizer(torch_opt, model), wrt=nnx.Param)
    load_optimizer_state(optimizer, torch_opt, model)
    return model, torch_opt, jax_model, optimizer


@pytest.mark.parametrize("case", sorted(SGD_CASES))
def test_training_continues_where_torch_stopped(case):
    model, torch_opt, jax_model, optimizer = _resumed(SGD_CASES[case])
    more = batches(3, seed=2)
    torch_steps(model, torch_opt, more)
    jax_steps(jax_model, optimizer, more)
    assert max_relative_error(jax_model, model) < TOL


@pytest.mark.parametrize("case", [pytest.param(c, marks=_needs_jaxconv(c)) for c in sorted(FAMILY)])
def test_every_optimizer_continues_and_round_trips(case):
    """Moments, accumulators, mu_product and step counts move both ways (RAdam's rectification
    starts at step 6: the resumed run crosses it)."""
    model, torch_opt, jax_model, optimizer = _resumed(FAMILY[case])
    more = batches(3, seed=2)
    torch_steps(model, torch_opt, more)
    jax_steps(jax_model, optimizer, more)
    assert max_relative_error(jax_model, model) < TOL
    fresh = FAMILY[case](model)
    fresh.load_state_dict(optimizer_state_dict(optimizer, model))
    last = batches(2, seed=4)
    torch_steps(model, fresh, last)
    jax_steps(jax_model, optimizer, last)
    assert max_relative_error(jax_model, model) < TOL


def test_fresh_state_is_not_the_resumed_one():
    """The check can fail: without the moved momentum, the runs part."""
    model = torch_model()
    torch_opt = SGD_CASES["momentum"](model)
    torch_steps(model, torch_opt, batches(3))
    jax_model = translate(model)
    optimizer = nnx.Optimizer(jax_model, translate_optimizer(torch_opt, model), wrt=nnx.Param)
    more = batches(3, seed=2)
    torch_steps(model, torch_opt, more)
    jax_steps(jax_model, optimizer, more)
    assert max_relative_error(jax_model, model) > 100 * TOL


@pytest.mark.parametrize("case", ["nesterov_groups", "dampening_maximize"])
def test_round_trip_to_torch_continues(case):
    """jaxconv's state back in torch's format: a fresh torch optimizer loads it and continues."""
    model, torch_opt, jax_model, optimizer = _resumed(SGD_CASES[case])
    jax_steps(jax_model, optimizer, batches(2, seed=3))
    torch_steps(model, torch_opt, batches(2, seed=3))
    exported = optimizer_state_dict(optimizer, model)
    reference = torch_opt.state_dict()
    assert [sorted(g) for g in exported["param_groups"]] == [sorted(g) for g in reference["param_groups"]]
    assert sorted(exported["state"]) == sorted(reference["state"])
    fresh = SGD_CASES[case](model)
    fresh.load_state_dict(exported)
    more = batches(2, seed=4)
    torch_steps(model, fresh, more)
    jax_steps(jax_model, optimizer, more)
    assert max_relative_error(jax_model, model) < TOL


def _other_model():
    return torch.nn.Sequential(torch.nn.Linear(3, 2))


def _broken_cases():
    """(torch optimizer factory, model factory, expected message) that must not load."""
    def shape_differs(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        torch_steps(model, opt, batches(1))
        buf = opt.state[model[4].bias]["momentum_buffer"]
        opt.state[model[4].bias]["momentum_buffer"] = torch.cat([buf, buf])
        return opt

    def missing(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        torch_steps(model, opt, batches(1))
        del opt.state[model[0].weight]
        return opt

    def other_model(model):
        return torch.optim.SGD(_other_model().parameters(), lr=0.1, momentum=0.9)

    def other_class(model):
        return torch.optim.SGD(model.parameters(), lr=0.1)  # no momentum: another hyperparameter

    def group_count(model):
        return torch.optim.SGD(_groups(model), lr=0.1, momentum=0.9)

    return {"shape": (shape_differs, "'4.bias' has shape (10,)"),
            "missing": (missing, "'0.weight' has no state"),
            "other_model": (other_model, "not a parameter of torch_model"),
            "hyperparameter": (other_class, "momentum=0"),
            "group_count": (group_count, "2 parameter groups")}


@pytest.mark.parametrize("case", sorted(_broken_cases()))
def test_bad_state_raises_and_leaves_optimizer_unchanged(case):
    model, torch_opt, jax_model, optimizer = _resumed(SGD_CASES["momentum"])
    before = opt_leaves(optimizer)
    make, message = _broken_cases()[case]
    with pytest.raises(OptimizerStateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_optimizer_state(optimizer, make(model), model)
    after = opt_leaves(optimizer)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(before, after))


def test_frozen_parameters_stay_as_torch_leaves_them():
    """A parameter in no group (a frozen backbone) is not updated: ``trainable`` leaves it out."""
    model = torch_model()
    model[0].weight.requires_grad_(False)
    torch_opt = torch.optim.SGD([p for n, p in model.named_parameters() if n != "0.weight"],
                                lr=0.1, momentum=0.9)
    torch_steps(model, torch_opt, batches(2))
    jax_model = translate(model)
    tx = translate_optimizer(torch_opt, model)
    with pytest.raises(ValueError, match="'0.weight' is selected by no parameter group"):
        nnx.Optimizer(jax_model, tx, wrt=nnx.Param)
    wrt = trainable(torch_opt, model)
    optimizer = nnx.Optimizer(jax_model, tx, wrt=wrt)
    load_optimizer_state(optimizer, torch_opt, model)
    more = batches(2, seed=5)
    torch_steps(model, torch_opt, more)
    jax_steps(jax_model, optimizer, more, wrt=wrt)
    assert max_relative_error(jax_model, model) < TOL
    exported = optimizer_state_dict(optimizer, model)
    torch.optim.SGD([p for n, p in model.named_parameters() if n != "0.weight"],
                    lr=0.1, momentum=0.9).load_state_dict(exported)


def test_untranslated_optimizer_and_option_are_refused():
    model = torch_model()
    with pytest.raises(RecipeError, match="LBFGS has no jaxconv translation"):
        translate_optimizer(torch.optim.LBFGS(model.parameters()), model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.param_groups[0]["mystery"] = 1
    with pytest.raises(RecipeError, match="option 'mystery'=1 has no translation"):
        translate_optimizer(opt, model)
