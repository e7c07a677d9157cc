"""Loss rows: a loss's value and its gradient with respect to the logits, jaxconv against torch
and against optax's equivalent, each checked against torch before it is timed.

``cross_entropy_ls``: ``cross_entropy(logits, labels, label_smoothing=0.1)`` on ``(256, 1000)``
float32 logits (``(16, 100)`` in quick mode); optax's equivalent is
``softmax_cross_entropy(logits, smooth_labels(one_hot(labels), 0.1)).mean()`` (without class
weights or ignored targets the two definitions agree).
"""
from __future__ import annotations

import time

import numpy as np

from .measure import block, check, summarise, time_rounds

SMOOTHING = 0.1


def shapes(quick: bool) -> tuple[int, int]:
    return (16, 100) if quick else (256, 1000)


def run_cross_entropy(quick, rng, torch_device, rounds, min_time, tol, progress):
    """The ``cross_entropy_ls`` row: median time per value-and-gradient call."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch
    import torch.nn.functional as TF

    import jaxconv.functional as F

    n, c = shapes(quick)
    logits = rng.standard_normal((n, c)).astype(np.float32) * 3
    labels = rng.integers(0, c, n)
    x, y = jnp.asarray(logits), jnp.asarray(labels, jnp.int32)

    def jaxconv_loss(x, y):
        return F.cross_entropy(x, y, label_smoothing=SMOOTHING)

    def optax_loss(x, y):
        targets = optax.smooth_labels(jax.nn.one_hot(y, x.shape[-1], dtype=x.dtype), SMOOTHING)
        return jnp.mean(optax.softmax_cross_entropy(x, targets))

    tx = torch.from_numpy(logits).to(torch_device).requires_grad_()
    ty = torch.from_numpy(labels).to(torch_device)

    def torch_step():
        tx.grad = None
        loss = TF.cross_entropy(tx, ty, label_smoothing=SMOOTHING)
        loss.backward()
        return block((loss, tx.grad))

    ref_loss, ref_grad = (t.detach().cpu().numpy() for t in torch_step())
    name = f"cross_entropy_ls_{n}x{c}"
    runners, compile_s, errors = {"torch": torch_step}, {}, {}
    errors["torch"] = 0.0
    for impl, loss in (("jaxconv", jaxconv_loss), ("optax", optax_loss)):
        t0 = time.perf_counter()
        step = jax.jit(jax.value_and_grad(loss)).lower(x, y).compile()
        compile_s[impl] = time.perf_counter() - t0
        value, grad = step(x, y)
        errors[impl] = max(check(name, f"{impl} (loss)", np.asarray(value).reshape(1), ref_loss.reshape(1), tol),
                           check(name, f"{impl} (grad)", grad, ref_grad, tol))
        runners[impl] = lambda step=step: block(step(x, y))
    times = time_rounds(runners, rounds, min_time, progress, name)
    row = summarise(name, "loss", times, compile_s, errors)
    row["jaxconv_vs_optax"] = row["median_s"]["jaxconv"] / row["median_s"]["optax"]
    return row
