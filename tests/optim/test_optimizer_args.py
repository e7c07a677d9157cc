"""jaxconv.optim's constructors: torch's signatures, torch's argument errors (with messages
naming argument, rule and value), and what is refused: differentiable=True, complex parameters."""
import inspect

import jax.numpy as jnp
import pytest
import torch

import jaxconv.optim as jopt

NAMES = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam"]


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_torchs(name):
    """torch's parameter names, order, kinds and defaults (``params`` optional here: None is
    one group of every parameter)."""
    ours = inspect.signature(getattr(jopt, name)).parameters
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    assert list(ours) == list(theirs)
    for key, param in theirs.items():
        assert ours[key].kind == param.kind, key
        if key != "params":
            assert ours[key].default == param.default, key
    assert ours["params"].default is None


BAD = [("Adam", {"lr": -1e-3}, "lr must be >= 0, got -0.001"),
       ("Adam", {"lr": float("nan")}, "lr must be >= 0, got nan"),
       ("Adam", {"eps": -1e-8}, "eps must be >= 0"),
       ("Adam", {"betas": (1.0, 0.999)}, r"betas\[0\] must be in \[0, 1\), got 1.0"),
       ("AdamW", {"betas": (0.9, -0.1)}, r"betas\[1\] must be in \[0, 1\), got -0.1"),
       ("AdamW", {"weight_decay": -0.1}, "weight_decay must be >= 0"),
       ("Adam", {"betas": (0, 0.999)}, "betas must both be floats"),
       ("RMSprop", {"alpha": -0.5}, "alpha must be >= 0"),
       ("RMSprop", {"momentum": -0.5}, "momentum must be >= 0"),
       ("RMSprop", {"eps": -1.0}, "eps must be >= 0"),
       ("Adagrad", {"lr_decay": -0.1}, "lr_decay must be >= 0"),
       ("Adagrad", {"initial_accumulator_value": -0.1}, "initial_accumulator_value must be >= 0"),
       ("Adagrad", {"weight_decay": -0.1}, "weight_decay must be >= 0"),
       ("Adadelta", {"rho": 1.5}, r"rho must be in \[0, 1\], got 1.5"),
       ("Adadelta", {"eps": -1.0}, "eps must be >= 0"),
       ("Adamax", {"betas": (0.9, 1.0)}, r"betas\[1\] must be in \[0, 1\)"),
       ("NAdam", {"momentum_decay": -1e-3}, "momentum_decay must be >= 0"),
       ("NAdam", {"betas": (-0.1, 0.9)}, r"betas\[0\] must be in \[0, 1\)"),
       ("RAdam", {"weight_decay": -1.0}, "weight_decay must be >= 0"),
       ("SGD", {"momentum": -0.1}, "momentum must be >= 0"),
       ("SGD", {"nesterov": True}, "nesterov requires momentum > 0")]


@pytest.mark.parametrize("name, kwargs, message", BAD)
def test_invalid_arguments_raise_as_torch(name, kwargs, message):
    with pytest.raises(ValueError):
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError, match=f"{name}: {message}"):
        getattr(jopt, name)(**kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_refused_differentiable_and_complex(name):
    with pytest.raises(ValueError, match=f"{name}: differentiable=True .* no translation"):
        getattr(jopt, name)(differentiable=True)
    tx = getattr(jopt, name)()
    with pytest.raises(ValueError, match=r"parameter 'w' is complex \(complex64\)"):
        tx.init({"w": jnp.ones(2, jnp.complex64), "b": jnp.ones(2)})
    if "fused" in inspect.signature(getattr(jopt, name)).parameters:
        with pytest.raises(ValueError, match="fused and foreach cannot both be True"):
            getattr(jopt, name)(fused=True, foreach=True)
