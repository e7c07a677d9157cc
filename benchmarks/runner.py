"""Run the suite: build, check against torch, compile, time in interleaved rounds, report."""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import time

import numpy as np

from .measure import (TORCH_IMPLS, Progress, block, check, compile_rounds, grad_of, summarise, tf32,
                      time_rounds, torch_forward, torch_step)


def translation_time(quick: bool) -> dict:
    """Seconds to translate torchvision's resnet50 (capture + source + build, no compile)."""
    from equivalence._torch import import_torchvision
    from equivalence import translate

    import_torchvision()
    import torchvision

    model = torchvision.models.resnet18() if quick else torchvision.models.resnet50()
    translate(model)                      # warm: first jax dispatches and compiles of init
    t0 = time.perf_counter()
    translate(model)
    return {"model": "torchvision resnet18" if quick else "torchvision resnet50",
            "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- layers
def run_layer(case, rng, torch_device, rounds, min_time, tol, progress):
    import jax
    import torch

    from . import cases as C

    impls = C.build(case, rng, torch_device)
    f_ref, a_ref, conv_ref = impls["torch"]
    with torch.no_grad():
        torch_tf32 = tf32(False)
        ref = conv_ref(f_ref(*a_ref))
        tf32(torch_tf32)
    runners, compile_s, errors = {}, {}, {}
    for impl, (f, args, to_nchw) in impls.items():
        t0 = time.perf_counter()
        if impl in TORCH_IMPLS:
            with torch.no_grad():
                out = block(f(*args))
            fn = f
        else:
            fn = f.lower(*args).compile() if hasattr(f, "lower") else f
            compile_s[impl] = time.perf_counter() - t0
            out = block(fn(*args))
        errors[impl] = check(case.name, impl, to_nchw(out), ref, tol)

        def run(fn=fn, args=args, impl=impl):
            if impl in TORCH_IMPLS:
                with torch.no_grad():
                    return block(fn(*args))
            return block(fn(*args))
        runners[impl] = run
    del jax
    times = time_rounds(runners, rounds, min_time, progress, case.name)
    return summarise(case.name, case.group, times, compile_s, errors)


# ----------------------------------------------------------------------------- models
def run_model(name, quick, batch, torch_device, rounds, min_time, tol, progress):
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    import jaxconv
    from equivalence import translate

    from . import flax_models as FM
    from . import models as M
    from . import xla_options as XO

    tmodel, tmodel_cl, jmodel, x = M.build(name, quick, batch, torch_device)
    compile_n = 1 if quick else 3   # lower+compile rounds per implementation (median reported)
    translated = translate(tmodel)      # the same torch model through equivalence.translate
    fmodel = FM.load_torch(tmodel, FM.FLAX_MODELS[name](**M.size(quick)))
    tx = torch.from_numpy(x).to(torch_device)
    tx_cl = tx.contiguous(memory_format=torch.channels_last)
    xj = jnp.asarray(x)
    xj_nhwc = jnp.asarray(x.transpose(0, 2, 3, 1))
    # impl: (model, input, wrap, compiler options); jaxconv_cl is jaxconv under
    # jaxconv.channels_last; the *_ynn columns are the same functions compiled with XLA:CPU's
    # YNNPACK fusion of elementwise ops (xla_options.py; left out on other backends)
    ynn = XO.ynn_eltwise()
    jax_impls = {"jaxconv": (jmodel, xj, None, {}), "jaxconv_cl": (jmodel, xj, jaxconv.channels_last, {}),
                 "translated": (translated, xj, None, {}), "flax_nnx": (fmodel, xj_nhwc, None, {})}
    if ynn:
        jax_impls.update(jaxconv_ynn=(jmodel, xj, None, ynn), flax_nnx_ynn=(fmodel, xj_nhwc, None, ynn))
    rows = []

    # forward, eval mode
    for m in (tmodel, tmodel_cl, jmodel, translated, fmodel):
        m.eval()
    prev = tf32(False)
    with torch.no_grad():
        ref = tmodel(tx).cpu().numpy()
    tf32(prev)
    errors, runners = {}, {}

    def forward_maker(model, inp, wrap, opts):
        gd, state = nnx.split(model)

        def make():  # a fresh function each round: no trace cached from the round before
            fwd = lambda s, x: nnx.merge(gd, s)(x)  # noqa: E731
            return jax.jit(wrap(fwd) if wrap else fwd, compiler_options=opts), (state, inp)
        return make
    compiled, compile_s = compile_rounds({impl: forward_maker(*v) for impl, v in jax_impls.items()},
                                         compile_n)
    for impl, (model, inp, _, _) in jax_impls.items():
        fwd_c, state = compiled[impl], nnx.state(model)
        errors[impl] = check(f"{name}_forward", impl, FM.nchw(fwd_c(state, inp), impl), ref, tol)
        runners[impl] = lambda f=fwd_c, s=state, inp=inp: block(f(s, inp))

    for impl, m, inp in (("torch", tmodel, tx), ("torch_cl", tmodel_cl, tx_cl)):
        errors[impl] = check(f"{name}_forward", impl, torch_forward(m, inp)().float().cpu().numpy(), ref, tol)
    runners.update(torch=torch_forward(tmodel, tx), torch_cl=torch_forward(tmodel_cl, tx_cl))
    times = time_rounds(runners, rounds, min_time, progress, f"{name} forward")
    rows.append(summarise(f"{name}_forward", "model forward", times, compile_s, errors, per_item=batch))

    # training step: forward + backward of mean(output), train mode (batch statistics)
    for m in (tmodel, tmodel_cl, jmodel, translated, fmodel):
        m.train()
    first = next(iter(tmodel.parameters()))
    first_name = next(iter(dict(tmodel.named_parameters())))

    prev = tf32(False)
    t_loss, t_grad = torch_step(tmodel, tx)()
    ref_loss, ref_grad = t_loss.item(), first.grad.cpu().numpy()
    tf32(prev)
    errors, runners = {}, {}

    def step_maker(model, inp, wrap, opts):
        gd, params, rest = nnx.split(model, nnx.Param, ...)

        def make():
            def step(p, r, x):
                return nnx.value_and_grad(lambda m: jnp.mean(m(x)))(nnx.merge(gd, p, r))
            return jax.jit(wrap(step) if wrap else step, compiler_options=opts), (params, rest, inp)
        return make
    if quick:  # the *_ynn steps double the quick run's costliest compiles; their forward rows stay
        jax_impls = {k: v for k, v in jax_impls.items() if not k.endswith("_ynn")}
    compiled, compile_s = compile_rounds({impl: step_maker(*v) for impl, v in jax_impls.items()}, compile_n)
    for impl, (model, inp, _, _) in jax_impls.items():
        flax = impl.startswith("flax_nnx")
        step_c, (params, rest) = compiled[impl], nnx.split(model, nnx.Param, ...)[1:]
        loss, grads = step_c(params, rest, inp)
        g = grad_of(grads, FM.param_name(first_name, fmodel) if flax else first_name)
        g = FM.oihw(g) if flax else g
        errors[impl] = max(check(f"{name}_train_step", f"{impl} (loss)", np.array([float(loss)]),
                                  np.array([ref_loss]), tol),
                           check(f"{name}_train_step", f"{impl} (grad of {first_name})", g,
                                  ref_grad, tol * 10))
        runners[impl] = lambda f=step_c, p=params, r=rest, inp=inp: block(f(p, r, inp))
    for impl, m, inp in (("torch", tmodel, tx), ("torch_cl", tmodel_cl, tx_cl)):
        l_, g_ = torch_step(m, inp)()
        errors[impl] = max(check(f"{name}_train_step", impl, np.array([l_.item()]), np.array([ref_loss]), tol),
                           check(f"{name}_train_step", impl, g_.float().cpu().numpy(), ref_grad, tol * 10))
    runners.update(torch=torch_step(tmodel, tx), torch_cl=torch_step(tmodel_cl, tx_cl))
    times = time_rounds(runners, rounds, min_time, progress, f"{name} train step")
    rows.append(summarise(f"{name}_train_step", "model train step", times, compile_s, errors, per_item=batch))
    return rows


# ----------------------------------------------------------------------------- main
def environment(torch_device):
    import jax
    import torch

    import jaxconv

    dev = jax.devices()[0]
    versions = {"python": platform.python_version(), "jax": jax.__version__, "torch": torch.__version__,
                "jaxconv": jaxconv.__version__, "numpy": np.__version__}
    for mod in ("flax", "equinox", "jaxlib"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            versions[mod] = None
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    return {
        "jax_platform": dev.platform, "device_kind": dev.device_kind,
        "torch_device": torch_device if torch_device == "cpu" else torch.cuda.get_device_name(0),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": versions, "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_enable_x64": bool(jax.config.jax_enable_x64), "load_average_start": load,
    }


def run(quick=False, rounds=None, min_time=None, only=None, out_dir=None, progress=True, write_png=True):
    """Run the suite; returns the result dict (also written as JSON, and PNG when asked)."""
    import torch

    from . import cases as C
    from . import harness as H
    from . import kernel_layout as KL
    from . import losses as LS
    from . import low_precision as LP
    from . import optim as OP
    from . import report
    from . import scaling as SC

    torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    batch = 2 if quick else 8
    rounds = rounds or (2 if quick else 5)
    min_time = min_time if min_time is not None else (0.0 if quick else 0.1)
    env = environment(torch_device)
    gpu = env["jax_platform"] != "cpu" or torch_device != "cpu"
    tol = 2e-2 if gpu else 1e-3  # the speed runs keep each framework's default precision
    rng = np.random.default_rng(0)
    layer_list = [c for c in C.layer_cases(quick, batch) if not only or any(o in c.name for o in only)]
    model_list = [m for m in ("resnet18", "mobilenet_v2", "dcgan_generator")
                  if not only or any(o in m for o in only)]
    layout_list = [m for m in ("resnet18",) if not only or any(o in f"{m}_forward_kernel_layout" for o in only)]
    bf16_list = [(m, mode) for m in ("resnet18",) for mode in LP.MODES
                 if not only or any(o in f"{m}_{mode}" for o in only)]
    loss_list = [r for r in ("cross_entropy_ls",) if not only or any(o in r for o in only)]
    optim_list = [r for r in ("adamw_update", "resnet18_train_step_adamw") if not only or any(o in r for o in only)]
    # data-parallel scaling: fresh processes per configuration, so not in --quick unless asked
    replicas = SC.selected(quick, only)
    harness_rows = H.selected(quick, only)  # translate/compare cost: one fresh process a row
    timed = len(layer_list) + len(loss_list) + len(optim_list) + 2 * len(model_list) + len(layout_list) \
        + 2 * len(bf16_list)
    bar = Progress(timed * rounds + (SC.units(quick, rounds, replicas) if replicas else 0) + len(harness_rows),
                   progress)
    rows = []
    for case in layer_list:
        rows.append(run_layer(case, rng, torch_device, rounds, min_time, tol, bar))
    for _ in loss_list:
        rows.append(LS.run_cross_entropy(quick, rng, torch_device, rounds, min_time, tol, bar))
    for case in optim_list:
        rows.append(OP.run_update(quick, rng, torch_device, rounds, min_time, tol, bar) if case == "adamw_update"
                    else OP.run_train_step("resnet18", quick, batch, torch_device, rounds, min_time, tol * 5, bar))
    for name in model_list:
        rows.extend(run_model(name, quick, batch, torch_device, rounds, min_time, tol * 5, bar))
    for name in layout_list:
        rows.append(KL.run(name, quick, batch, torch_device, rounds, min_time, tol * 5, bar))
    for name, mode in bf16_list:  # tolerances from bfloat16's epsilon and the depth
        rows.extend(LP.run_model(name, mode, quick, batch, torch_device, rounds, min_time, bar))
    if replicas:
        rows.extend(SC.run(quick, rounds, min_time, tol * 5, bar, replicas))
    harness = H.run(quick, harness_rows, bar) if harness_rows else None
    bar.close()
    translation = translation_time(quick) if not only or "translate" in only else None
    try:
        env["load_average_end"] = os.getloadavg()
    except OSError:  # pragma: no cover
        pass
    result = {"quick": quick, "batch": batch, "rounds": rounds, "dtype": "float32 (rows named *_bf16*: bfloat16)",
              "date": _dt.datetime.now().isoformat(timespec="seconds"), "environment": env, "cases": rows,
              "translation": translation, "harness": harness}
    out_dir = out_dir or os.path.join(os.path.dirname(__file__), "results")
    os.makedirs(out_dir, exist_ok=True)
    stem = f"{report.slug(env)}-{_dt.date.today().isoformat()}" + ("-quick" if quick else "")
    result["json_path"] = report.write_json(result, os.path.join(out_dir, stem + ".json"))
    if write_png and rows:  # an --only harness run has no timed rows to chart
        result["png_path"] = report.write_png(result, os.path.join(out_dir, stem + ".png"))
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny shapes and 2 rounds (what the tests run)")
    ap.add_argument("--rounds", type=int, help="interleaved timed rounds (median reported)")
    ap.add_argument("--min-time", type=float, help="seconds each timed measurement lasts at least")
    ap.add_argument("--only", nargs="*", help="run only cases whose name contains one of these")
    ap.add_argument("--out", help="output folder (default benchmarks/results)")
    ap.add_argument("--no-png", action="store_true")
    args = ap.parse_args(argv)
    from . import report

    result = run(args.quick, args.rounds, args.min_time, args.only, args.out, True, not args.no_png)
    print(report.table(result))
    print(f"\nJSON: {result['json_path']}" + (f"\nPNG:  {result['png_path']}" if "png_path" in result else ""))
    return 0
