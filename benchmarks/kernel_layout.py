"""Where a model's forward gap to Flax comes from: the conv kernels' layout.

jaxconv keeps torch's ``(out, in, kH, kW)`` conv weights, while XLA:CPU's convolutions read
``(kH, kW, in, out)``. The CPU runtime lays every argument of a compiled function out row-major
(``jax.experimental.layout``'s ``Layout.AUTO`` resolves to the default layout there), so a
jitted forward that takes the weights as arguments relays them out on every call. The row
``<model>_forward_kernel_layout`` times, side by side:

- ``jaxconv`` and ``flax_nnx``, as in the model rows;
- ``flax_nnx_oihw``: the same Flax model given its kernels in torch's layout, transposed inside
  the jitted function; so its extra time over ``flax_nnx`` is the relayout alone;
- ``jaxconv_const``: the jaxconv model closed over by the jitted function, its weights
  compile-time constants, so XLA folds the relayout at compile time.
"""
from __future__ import annotations

from .measure import block, check, summarise, time_rounds, torch_forward


def _is_kernel(a):
    return getattr(a, "ndim", 0) == 4


def run(name, quick, batch, torch_device, rounds, min_time, tol, progress):
    """The ``{name}_forward_kernel_layout`` row (eval mode, float32)."""
    import time

    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from . import flax_models as FM
    from . import models as M

    tmodel, tmodel_cl, jmodel, x = M.build(name, quick, batch, torch_device)
    fmodel = FM.load_torch(tmodel, FM.FLAX_MODELS[name](**M.size(quick)))
    for m in (tmodel, tmodel_cl, jmodel, fmodel):
        m.eval()
    tx = torch.from_numpy(x).to(torch_device)
    xj, xj_nhwc = jnp.asarray(x), jnp.asarray(x.transpose(0, 2, 3, 1))
    gj, sj = nnx.split(jmodel)
    gf, sf = nnx.split(fmodel)
    # HWIO -> OIHW, materialised (a transposed view would be relaid out by device_put anyway)
    sf_torch = jax.tree.map(lambda a: jnp.transpose(a, (3, 2, 0, 1)).copy() if _is_kernel(a) else a, sf)

    def flax_torch_layout(s, x):
        return nnx.merge(gf, jax.tree.map(lambda a: jnp.transpose(a, (2, 3, 1, 0)) if _is_kernel(a) else a, s))(x)

    fns = {"jaxconv": (jax.jit(lambda s, x: nnx.merge(gj, s)(x)), (sj, xj)),
           "jaxconv_const": (jax.jit(lambda x: jmodel(x)), (xj,)),
           "flax_nnx": (jax.jit(lambda s, x: nnx.merge(gf, s)(x)), (sf, xj_nhwc)),
           "flax_nnx_oihw": (jax.jit(flax_torch_layout), (sf_torch, xj_nhwc))}
    with torch.no_grad():
        ref = tmodel(tx).cpu().numpy()
    compile_s, errors, runners = {}, {}, {}
    for impl, (f, args) in fns.items():
        t0 = time.perf_counter()
        c = f.lower(*args).compile()
        compile_s[impl] = time.perf_counter() - t0
        errors[impl] = check(f"{name}_forward_kernel_layout", impl, FM.nchw(c(*args), impl), ref, tol)
        runners[impl] = lambda c=c, args=args: block(c(*args))
    for impl, m, inp in (("torch", tmodel, tx), ("torch_cl", tmodel_cl,
                                                  tx.contiguous(memory_format=torch.channels_last))):
        runners[impl] = torch_forward(m, inp)
        errors[impl] = check(f"{name}_forward_kernel_layout", impl, runners[impl]().cpu().numpy(), ref, tol)
    times = time_rounds(runners, rounds, min_time, progress, f"{name} kernel layout")
    row = summarise(f"{name}_forward_kernel_layout", "model forward", times, compile_s, errors, per_item=batch)
    med = row["median_s"]
    row["kernel_layout"] = {"flax_nnx_oihw_vs_flax_nnx": med["flax_nnx_oihw"] / med["flax_nnx"],
                            "jaxconv_vs_flax_nnx_oihw": med["jaxconv"] / med["flax_nnx_oihw"],
                            "jaxconv_const_vs_flax_nnx": med["jaxconv_const"] / med["flax_nnx"]}
    return row
