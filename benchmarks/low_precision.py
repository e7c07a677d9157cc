"""bfloat16 rows: a model's forward and training step in two precision modes, against torch.

- ``bf16_autocast``: float32 parameters; jaxconv under ``jaxconv.autocast(jnp.bfloat16)``
  (entered inside the traced function, so the compiled step holds it), torch under
  ``torch.autocast(device_type, torch.bfloat16)``.
- ``bf16``: parameters, buffers and input in bfloat16 (torch's ``model.to(torch.bfloat16)``).

The reference is torch NCHW in the same mode; every implementation, torch channels_last
included, is checked against it with :func:`tolerance` before it is timed.
"""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np

from .measure import block, check, grad_of, summarise, tf32, time_rounds, torch_forward, torch_step

MODES = ("bf16_autocast", "bf16")
EPS = 2.0 ** -7  # bfloat16's machine epsilon: 8 significant bits
# Train-mode BatchNorm normalizes N*H*W values per channel. The quick ResNet's last stage sees
# 1x1 maps of a 32x32 input, so at batch 2 it normalizes two values whose bfloat16 difference
# is rounding noise; a 64x64 input gives 2x2 maps (8 values) and a well-posed comparison.
QUICK_SHAPES = {"resnet18": (3, 64, 64)}


def depth(tmodel) -> int:
    """Layers that round to bfloat16 on the way through: convs and linears."""
    import torch

    return sum(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))
               for m in tmodel.modules())


def tolerance(tmodel) -> float:
    """Allowed error of one bfloat16 network against another, relative to max|torch|.

    Each of the ``L = depth(tmodel)`` layers rounds its input and its output to bfloat16, a
    relative error of up to ``EPS / 2`` each, so about ``EPS`` per layer; the two frameworks
    round at the same points but land on neighbouring values wherever their float32
    accumulations differ. Independent roundings add up as ``EPS * sqrt(L)`` (a standard
    deviation), and the largest of the ~10^4 outputs checked lies within 4 of them:
    ``4 * EPS * sqrt(L)`` (ResNet-18: L = 21, 14%; the quick model: L = 13, 11%). The
    training step's gradient crosses every layer twice, so it gets ``sqrt(2)`` times that.
    """
    return 4 * EPS * math.sqrt(depth(tmodel))


def _cast_state(model, dtype):
    """``model`` with every floating parameter and buffer cast to ``dtype``."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    gd, state = nnx.split(model)
    cast = lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
    return nnx.merge(gd, jax.tree.map(cast, state))


def run_model(name, mode, quick, batch, torch_device, rounds, min_time, progress):
    """``[forward row, train step row]`` of model ``name`` in precision ``mode``."""
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    import jaxconv

    from . import models as M

    shape = QUICK_SHAPES.get(name) if quick else None
    tmodel, tmodel_cl, jmodel, x = M.build(name, quick, batch, torch_device, shape)
    tol = tolerance(tmodel)
    tx = torch.from_numpy(x).to(torch_device)
    xj = jnp.asarray(x)
    if mode == "bf16":
        tmodel, tmodel_cl = tmodel.to(torch.bfloat16), tmodel_cl.to(torch.bfloat16)
        tx, xj = tx.to(torch.bfloat16), xj.astype(jnp.bfloat16)
        jmodel = _cast_state(jmodel, jnp.bfloat16)
        jctx = tctx = contextlib.nullcontext
    else:
        jctx = lambda: jaxconv.autocast(jnp.bfloat16)  # noqa: E731
        tctx = lambda: torch.autocast(torch.device(torch_device).type, dtype=torch.bfloat16)  # noqa: E731
    tx_cl = tx.contiguous(memory_format=torch.channels_last)
    tmodels = (("torch", tmodel, tx), ("torch_cl", tmodel_cl, tx_cl))
    row = f"{name}_{mode}"
    rows = []

    def to_np(t):
        return t.detach().float().cpu().numpy()

    # forward, eval mode
    tmodel.eval(), tmodel_cl.eval(), jmodel.eval()

    prev = tf32(False)
    ref = to_np(torch_forward(tmodel, tx, tctx)())
    tf32(prev)
    gd, state = nnx.split(jmodel)

    def fwd(s, x):
        with jctx():
            return nnx.merge(gd, s)(x)
    t0 = time.perf_counter()
    fwd_c = jax.jit(fwd).lower(state, xj).compile()
    compile_s = {"jaxconv": time.perf_counter() - t0}
    errors = {"jaxconv": check(f"{row}_forward", "jaxconv", fwd_c(state, xj), ref, tol)}
    runners = {"jaxconv": lambda: block(fwd_c(state, xj))}
    for impl, m, inp in tmodels:
        runners[impl] = torch_forward(m, inp, tctx)
        errors[impl] = check(f"{row}_forward", impl, to_np(runners[impl]()), ref, tol)
    times = time_rounds(runners, rounds, min_time, progress, f"{row} forward")
    rows.append(summarise(f"{row}_forward", "model forward bf16", times, compile_s, errors, per_item=batch))

    # training step: forward + backward of mean(output), train mode (batch statistics)
    tmodel.train(), tmodel_cl.train(), jmodel.train()
    first_name = next(iter(dict(tmodel.named_parameters())))

    prev = tf32(False)
    ref_loss, ref_grad = (to_np(t) for t in torch_step(tmodel, tx, tctx)())
    tf32(prev)
    gd, params, rest = nnx.split(jmodel, nnx.Param, ...)

    def step(p, r, x):
        with jctx():
            return nnx.value_and_grad(lambda m: jnp.mean(m(x)))(nnx.merge(gd, p, r))
    t0 = time.perf_counter()
    step_c = jax.jit(step).lower(params, rest, xj).compile()
    compile_s = {"jaxconv": time.perf_counter() - t0}
    loss, grads = step_c(params, rest, xj)
    results = {"jaxconv": (np.asarray(loss, np.float64), grad_of(grads, first_name))}
    runners = {"jaxconv": lambda: block(step_c(params, rest, xj))}
    for impl, m, inp in tmodels:
        runners[impl] = torch_step(m, inp, tctx)
        results[impl] = tuple(to_np(t) for t in runners[impl]())
    errors = {impl: max(check(f"{row}_train_step", f"{impl} (loss)", lo.reshape(1), ref_loss.reshape(1), tol),
                        check(f"{row}_train_step", f"{impl} (grad of {first_name})", g, ref_grad,
                               tol * math.sqrt(2)))
              for impl, (lo, g) in results.items()}
    times = time_rounds(runners, rounds, min_time, progress, f"{row} train step")
    rows.append(summarise(f"{row}_train_step", "model train step bf16", times, compile_s, errors,
                           per_item=batch))
    return rows
