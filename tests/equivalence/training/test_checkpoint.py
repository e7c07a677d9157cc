"""Whole training checkpoints (torchvision's and timm's layouts) load in one call, and jaxconv's
saved one resumes in torch."""
import copy

import numpy as np
import pytest
import torch
from flax import nnx

import equivalence
from equivalence.training import (OptimizerStateError, load_training_checkpoint,
                                  save_training_checkpoint, translate_optimizer)
from tests.equivalence.training._recipe import (batches, jax_steps, max_relative_error, opt_leaves,
                                                torch_model, torch_steps, translate)

TOL = 2e-5


def _trained():
    model = torch_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    torch_steps(model, opt, batches(3))
    return model, opt


def _fresh_twin(torch_opt, model):
    """A jaxconv model with other weights and a fresh translated optimizer."""
    jax_model = translate(torch_model(seed=7))
    return jax_model, nnx.Optimizer(jax_model, translate_optimizer(torch_opt, model), wrt=nnx.Param)


@pytest.mark.parametrize("layout", ["torchvision", "timm"])
def test_torch_checkpoint_resumes_in_jaxconv(tmp_path, layout):
    model, opt = _trained()
    path = tmp_path / "checkpoint.pt"
    if layout == "torchvision":
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, path)
    else:
        torch.save({"epoch": 3, "arch": "tiny", "state_dict": model.state_dict(),
                    "optimizer": opt.state_dict(), "version": 2}, path)
    jax_model, optimizer = _fresh_twin(opt, model)
    rest = load_training_checkpoint(path, jax_model, optimizer)
    assert rest == ({"epoch": 3} if layout == "torchvision" else {"epoch": 3, "arch": "tiny", "version": 2})
    assert max_relative_error(jax_model, model) == 0
    more = batches(3, seed=2)
    torch_steps(model, opt, more)
    jax_steps(jax_model, optimizer, more)
    assert max_relative_error(jax_model, model) < TOL


def test_jaxconv_checkpoint_resumes_in_torch(tmp_path):
    model, opt = _trained()
    jax_model = translate(model)
    optimizer = nnx.Optimizer(jax_model, translate_optimizer(opt, model), wrt=nnx.Param)
    equivalence.load_optimizer_state(optimizer, opt, model)
    jax_steps(jax_model, optimizer, batches(2, seed=3))
    save_training_checkpoint(tmp_path / "resume.pt", jax_model, optimizer, epoch=5)
    content = torch.load(tmp_path / "resume.pt", weights_only=True)
    assert sorted(content) == ["epoch", "model", "optimizer"] and content["epoch"] == 5
    resumed = torch_model(seed=7)
    resumed.load_state_dict(content["model"])
    resumed_opt = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    resumed_opt.load_state_dict(content["optimizer"])
    more = batches(2, seed=4)
    torch_steps(resumed, resumed_opt, more)
    jax_steps(jax_model, optimizer, more)
    assert max_relative_error(jax_model, resumed) < TOL


def test_bad_checkpoint_leaves_model_and_optimizer_unchanged(tmp_path):
    model, opt = _trained()
    bad = copy.deepcopy(opt.state_dict())  # state_dict() shares the live per-parameter dicts
    index = [n for n, _ in model.named_parameters()].index("4.bias")   # 5 elements
    bad["state"][index]["momentum_buffer"] = torch.zeros(3)
    jax_model, optimizer = _fresh_twin(opt, model)
    weights, state = equivalence.state_dict(jax_model), opt_leaves(optimizer)
    with pytest.raises(OptimizerStateError, match=r"'4.bias' has shape \(3,\)"):
        load_training_checkpoint({"model": model.state_dict(), "optimizer": bad}, jax_model, optimizer)
    wrong_model = {k: v for k, v in model.state_dict().items() if k != "1.running_var"}
    with pytest.raises(equivalence.StateDictError, match="1.running_var"):
        load_training_checkpoint({"model": wrong_model, "optimizer": opt.state_dict()}, jax_model,
                                 optimizer)
    assert all(np.array_equal(a, b) for a, b in zip(state, opt_leaves(optimizer)))
    assert all(np.array_equal(v, equivalence.state_dict(jax_model)[k]) for k, v in weights.items())
