"""Factories for the CLI tests that draw new random weights on every call (no seed) and keep a
copy of every torch model they build, in the folder named by ``EQUIVALENCE_TEST_BUILT``."""
import os

import torch

import jaxconv.nn as jnn


def torch_model():
    """Conv -> BatchNorm -> ReLU -> Conv with random weights and BatchNorm statistics."""
    n = torch.nn
    model = n.Sequential(n.Conv2d(3, 4, 3), n.BatchNorm2d(4), n.ReLU(), n.Conv2d(4, 2, 1))
    bn = model[1]
    with torch.no_grad():  # torch's global generator, never seeded here
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.num_batches_tracked.fill_(int(torch.randint(1, 100, ())))
    built = os.environ.get("EQUIVALENCE_TEST_BUILT")
    if built:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        torch.save(state, os.path.join(built, f"torch{len(os.listdir(built))}.pt"))
    return model


def jax_model():
    """The jaxconv twin of :func:`torch_model`."""
    return jnn.Sequential(jnn.Conv2d(3, 4, 3), jnn.BatchNorm2d(4), jnn.ReLU(), jnn.Conv2d(4, 2, 1))
