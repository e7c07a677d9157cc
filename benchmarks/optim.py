"""Optimizer rows: torch's AdamW as jaxconv.optim, optax and torch run it, and a training step
with the optimizer inside, each checked against torch before it is timed.

``adamw_update_<model>``: one AdamW update (lr 1e-3, weight decay 0.05) of every parameter of
torchvision's ResNet-50 (25.6 M parameters; four small tensors in quick mode): jaxconv's
``jaxconv.optim.AdamW`` and ``optax.adamw`` jitted with the parameters and state donated,
torch's ``AdamW`` with ``foreach=True`` and ``fused=True``.

``<model>_train_step_adamw``: forward, backward of the mean output and the AdamW update of the
benchmark ResNet-18 in train mode: jaxconv (``nnx.Optimizer`` over ``jaxconv.optim.AdamW``), the
idiomatic Flax NNX model with ``optax.adamw``, and torch with ``foreach=True``.
"""
from __future__ import annotations

import time

import numpy as np

from .measure import block, check, summarise, time_rounds

LR, WEIGHT_DECAY = 1e-3, 0.05


def _shapes(quick: bool) -> list[tuple[int, ...]]:
    if quick:
        return [(64, 3, 7, 7), (64,), (256, 64, 1, 1), (1000, 2048)][:3] + [(10, 64)]
    from equivalence._torch import import_torchvision

    return [tuple(p.shape) for p in import_torchvision().models.resnet50().parameters()]


def run_update(quick, rng, torch_device, rounds, min_time, tol, progress):
    """The ``adamw_update`` row: median time of one update of every parameter."""
    import jax
    import optax
    import torch

    import jaxconv.optim

    shapes = _shapes(quick)
    params = {str(i): rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
    grads = {k: rng.standard_normal(v.shape).astype(np.float32) * 1e-2 for k, v in params.items()}
    name = f"adamw_update_{'4_tensors' if quick else 'resnet50'}"
    count = sum(v.size for v in params.values())

    def torch_runner(**flags):
        ps = [torch.tensor(v, device=torch_device, requires_grad=True) for v in params.values()]
        for p, g in zip(ps, grads.values()):
            p.grad = torch.tensor(g, device=torch_device)
        opt = torch.optim.AdamW(ps, lr=LR, weight_decay=WEIGHT_DECAY, **flags)

        def step():
            opt.step()
            return block(ps[0])
        return ps, step

    ref_params, ref_step = torch_runner(foreach=False)
    ref_step()
    ref = np.concatenate([p.detach().cpu().numpy().ravel() for p in ref_params])
    runners, compile_s, errors = {}, {}, {}
    for impl, flags in (("torch", {"foreach": True}), ("torch_fused", {"fused": True})):
        ps, step = torch_runner(**flags)
        step()
        errors[impl] = check(name, impl, np.concatenate([p.detach().cpu().numpy().ravel() for p in ps]),
                             ref, tol)
        runners[impl] = step
    transforms = {"jaxconv": jaxconv.optim.AdamW(lr=LR, weight_decay=WEIGHT_DECAY),
                  "optax": optax.adamw(LR, b1=0.9, b2=0.999, eps=1e-8, weight_decay=WEIGHT_DECAY)}
    g = jax.tree_util.tree_map(jax.numpy.asarray, grads)
    for impl, tx in transforms.items():
        def update(p, s, tx=tx):
            updates, s = tx.update(g, s, p)
            return optax.apply_updates(p, updates), s
        p = jax.tree_util.tree_map(jax.numpy.asarray, params)
        s = tx.init(p)
        t0 = time.perf_counter()
        update_c = jax.jit(update, donate_argnums=(0, 1)).lower(p, s).compile()
        compile_s[impl] = time.perf_counter() - t0
        p, s = update_c(p, s)
        errors[impl] = check(name, impl, np.concatenate([np.asarray(p[k]).ravel() for k in params]),
                             ref, tol)
        box = [p, s]

        def run(f=update_c, box=box):
            box[0], box[1] = f(box[0], box[1])
            return block(box[0])
        runners[impl] = run
    times = time_rounds(runners, rounds, min_time, progress, name)
    row = summarise(name, "optimizer", times, compile_s, errors, per_item=count)
    row["jaxconv_vs_optax"] = row["median_s"]["jaxconv"] / row["median_s"]["optax"]
    return row


def run_train_step(name, quick, batch, torch_device, rounds, min_time, tol, progress):
    """The ``<model>_train_step_adamw`` row: forward, backward and AdamW update."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch
    from flax import nnx

    import jaxconv.optim

    from . import flax_models as FM
    from . import models as M

    tmodel, _, jmodel, x = M.build(name, quick, batch, torch_device)
    fmodel = FM.load_torch(tmodel, FM.FLAX_MODELS[name](**M.size(quick)))
    for m in (tmodel, jmodel, fmodel):
        m.train()
    tx_ = torch.from_numpy(x).to(torch_device)
    opt = torch.optim.AdamW(tmodel.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, foreach=True)

    def torch_train():
        opt.zero_grad(set_to_none=True)
        loss = tmodel(tx_).mean()
        loss.backward()
        opt.step()
        return block(loss)

    ref_loss = torch_train().item()   # the loss before the first update
    case = f"{name}_train_step_adamw"
    runners, compile_s, errors = {"torch": torch_train}, {}, {"torch": 0.0}
    impls = {"jaxconv": (jmodel, jnp.asarray(x), jaxconv.optim.AdamW(lr=LR, weight_decay=WEIGHT_DECAY)),
             "flax_nnx": (fmodel, jnp.asarray(x.transpose(0, 2, 3, 1)),
                          optax.adamw(LR, eps=1e-8, weight_decay=WEIGHT_DECAY))}
    for impl, (model, inp, tx) in impls.items():
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        gd, state = nnx.split((model, optimizer))

        def step(state, inp, gd=gd):
            model, optimizer = nnx.merge(gd, state)
            loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(inp)))(model)
            optimizer.update(model, grads)
            return loss, nnx.state((model, optimizer))
        t0 = time.perf_counter()
        step_c = jax.jit(step, donate_argnums=0).lower(state, inp).compile()
        compile_s[impl] = time.perf_counter() - t0
        loss, state = step_c(state, inp)
        errors[impl] = check(case, f"{impl} (loss)", np.array([float(loss)]), np.array([ref_loss]), tol)
        box = [state]

        def run(f=step_c, box=box, inp=inp):
            loss, box[0] = f(box[0], inp)
            return block(loss)
        runners[impl] = run
    times = time_rounds(runners, rounds, min_time, progress, case)
    row = summarise(case, "optimizer train step", times, compile_s, errors, per_item=batch)
    row["jaxconv_vs_flax"] = {"jaxconv": row["median_s"]["jaxconv"] / row["median_s"]["flax_nnx"]}
    return row
