"""A small model, its optimizer and a jitted training step shared by the checkpoint tests and the
subprocesses they start (no torch import: each process pays only for jax)."""
import numpy as np
import optax
from flax import nnx

import jaxconv.nn as nn
from jaxconv.optim import AdamW
from jaxconv.optim.lr_scheduler import OneCycleLR

X = np.random.default_rng(0).standard_normal((6, 3, 6, 6)).astype(np.float32)
Y = np.array([0, 4, 1, 3, 2, 1])


def build(seed=0, classes=5):
    """conv -> BatchNorm -> ReLU -> flatten -> linear; ``seed`` draws the weights."""
    rngs = nnx.Rngs(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, rngs=rngs), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(64, classes, rngs=rngs))


def adamw():
    """jaxconv's AdamW with timm's two groups and a OneCycleLR (which also cycles beta1)."""
    no_decay = lambda name, p: p.ndim <= 1  # noqa: E731
    tx = AdamW([{"params": no_decay, "weight_decay": 0.0},
                {"params": lambda name, p: not no_decay(name, p)}], lr=1e-3, weight_decay=0.05)
    return OneCycleLR(tx, max_lr=1e-2, total_steps=10)


@nnx.jit
def train_step(model, optimizer, x, y):
    """One AdamW step on the cross-entropy of ``model(x)`` (a fresh model is in train mode)."""
    grads = nnx.grad(lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
    optimizer.update(model, grads)
