"""compare_training with parameters torch's optimizer never updates: frozen ones
(``requires_grad=False``) and ones in no group stay as they are on both sides; a parameter in a
group but unused in the forward (torch skips it: no gradient, no state, no weight decay) is
refused by name, as jaxconv's optimizer would decay it."""
import pytest
import torch

import equivalence
from equivalence.training import translate_optimizer
from tests.equivalence.training._recipe import SHAPE, batches, torch_model


class WithAux(torch.nn.Module):
    """The recipe model and an auxiliary head the forward does not use."""

    def __init__(self):
        super().__init__()
        self.body = torch_model()
        self.aux = torch.nn.Linear(5, 3)

    def forward(self, x):
        return self.body(x)


def _run(model, params, steps=2):
    port = equivalence.translate(model, torch.zeros(SHAPE))
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    return equivalence.compare_training(model, port, opt, translate_optimizer(opt, model),
                                        batches(2), torch.nn.CrossEntropyLoss(), steps=steps)


@pytest.mark.slow
def test_unused_parameter_refused():
    model = WithAux()
    with pytest.raises(ValueError, match=r"at step 0 torch left 2 parameter\(s\) of torch_optimizer "
                                         r"without a gradient .*'aux.weight', 'aux.bias'"):
        _run(model, model.parameters(), steps=1)


@pytest.mark.slow
def test_frozen_and_ungrouped_parameters_stay():
    """The unused head out of the optimizer, the first conv frozen: both sides train the rest."""
    model = WithAux()
    model.body[0].weight.requires_grad_(False)
    report = _run(model, model.body.parameters())
    assert report.passed, report.to_text()
    updated = {c.name for c in report.checks if c.stage == "update"}
    assert "body.4.weight" in updated and not updated & {"aux.weight", "body.0.weight"}
    assert {"aux.weight", "body.0.weight"} <= {c.name for c in report.checks if c.stage == "start"}
