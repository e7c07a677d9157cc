"""A small torch model (conv + BatchNorm + linear, randomised statistics) trained side by side in
torch and jaxconv, for the recipe tests."""
import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import equivalence
import jaxconv.functional as F
from tests._zoo import randomize_batchnorm

SHAPE = (4, 3, 6, 6)


def torch_model(seed=0):
    """conv -> BatchNorm -> ReLU -> linear, BatchNorm statistics and affine randomised."""
    torch.manual_seed(seed)
    # no conv bias: before a train-mode BatchNorm its gradient is rounding noise, which Adam-like
    # optimizers scale up to full steps in both frameworks, differently
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5))
    return randomize_batchnorm(model, seed).train()


def batches(n, seed=1):
    """``n`` random (input, target) pairs as numpy arrays."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(SHAPE).astype(np.float32), rng.integers(0, 5, SHAPE[0]))
            for _ in range(n)]


def torch_steps(model, optimizer, data, scheduler=None):
    """torch's training steps (cross-entropy) on ``data``, the scheduler stepped after each."""
    for x, y in data:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(loss.item())
        elif scheduler is not None:
            scheduler.step()


def translate(model):
    """The jaxconv twin of ``model`` at its current weights and statistics, in train mode."""
    jax_model = equivalence.translate(model, torch.zeros(SHAPE))
    jax_model.train()
    return jax_model


def jax_steps(model, optimizer, data, wrt=nnx.Param):
    """jaxconv's training steps (cross-entropy) on ``data``; the loss goes to the scheduler."""
    def loss_fn(m, x, y):
        return F.cross_entropy(m(x), y)

    for x, y in data:
        loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt))(
            model, jnp.asarray(x), jnp.asarray(y))
        optimizer.update(model, grads, value=loss)  # the metric of ReduceLROnPlateau


def max_relative_error(jax_model, torch_model) -> float:
    """The worst relative error over the parameters and buffers of the two models."""
    ours = equivalence.state_dict(jax_model)
    worst = 0.0
    for name, theirs in torch_model.state_dict().items():
        a, b = np.asarray(ours[name], np.float64), theirs.detach().numpy().astype(np.float64)
        worst = max(worst, float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)))
    return worst


def opt_leaves(optimizer):
    """The optimizer's state as numpy leaves (for bitwise comparisons)."""
    return [np.array(x) for x in jax.tree_util.tree_leaves(nnx.as_pure(optimizer.opt_state))]
