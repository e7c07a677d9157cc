"""Terminal table, JSON and PNG chart of a suite run."""
from __future__ import annotations

import json
import re

IMPL_ORDER = ("jaxconv", "jaxconv_cl", "jaxconv_ynn", "jaxconv_const", "jaxconv_2proc", "translated", "torch",
              "torch_cl", "torch_fused", "lax_nchw", "lax_nhwc", "flax_nnx", "flax_nnx_ynn", "flax_nnx_oihw",
              "equinox", "optax")

COMPILE_IMPLS = ("jaxconv", "translated", "flax_nnx")  # lower+compile seconds shown side by side


def slug(env) -> str:
    name = env["device_kind"] if env["jax_platform"] != "cpu" else f"cpu{env['cpu_count']}"
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def _fmt_time(s):
    return f"{s * 1e3:9.3f}" if s is not None else f"{'-':>9}"


def table(result) -> str:
    env = result["environment"]
    impls = [i for i in IMPL_ORDER if any(i in r["median_s"] for r in result["cases"])]
    head = (f"jaxconv benchmarks  device={env['device_kind']} ({env['jax_platform']})  "
            f"torch={env['torch_device']}  batch={result['batch']}  rounds={result['rounds']}  "
            f"load={env.get('load_average_start')}\nmedian ms per call; ratio = jaxconv / best torch, "
            "jaxconv / best plain lax; compile = jaxconv lower+compile s\n")
    width = {i: max(10, len(i) + 2) for i in impls}
    cols = f"{'case':<34}" + "".join(f"{i:>{width[i]}}" for i in impls) + f"{'vs torch':>10}{'vs lax':>8}{'compile':>9}"
    lines = [head, cols, "-" * len(cols)]
    for r in result["cases"]:
        med = r["median_s"]
        line = f"{r['case']:<34}" + "".join(f"{_fmt_time(med.get(i)):>{width[i]}}" for i in impls)
        lax = r.get("jaxconv_vs_best_lax")
        line += f"{r['jaxconv_vs_best_torch']:>10.2f}" + (f"{lax:>8.2f}" if lax else f"{'-':>8}")
        line += f"{r['compile_s'].get('jaxconv', float('nan')):>9.2f}"
        if "jaxconv_vs_optax" in r:
            line += f"   jaxconv/optax {r['jaxconv_vs_optax']:.2f}"
        if "translated_vs_handwritten" in r:
            line += f"   translated/hand-written {r['translated_vs_handwritten']:.2f}"
        if "jaxconv_vs_flax" in r:
            line += "   / flax: " + " ".join(f"{k} {v:.2f}" for k, v in r["jaxconv_vs_flax"].items())
        if "ynn" in r:
            y, cs = r["ynn"], r["compile_s"]
            line += (f"   ynn: jaxconv/flax {y['jaxconv_ynn_vs_flax_nnx_ynn']:.2f} jaxconv/torch "
                     f"{y['jaxconv_ynn_vs_best_torch']:.2f} vs no options: jaxconv {y['jaxconv_ynn_vs_jaxconv']:.2f}"
                     f" flax {y['flax_nnx_ynn_vs_flax_nnx']:.2f} (compile s {cs['jaxconv_ynn']:.2f} / "
                     f"{cs['flax_nnx_ynn']:.2f})")
        if "kernel_layout" in r:
            k = r["kernel_layout"]
            line += (f"   flax given torch-layout kernels / flax {k['flax_nnx_oihw_vs_flax_nnx']:.2f}, jaxconv / it "
                     f"{k['jaxconv_vs_flax_nnx_oihw']:.2f}, jaxconv closed over / flax "
                     f"{k['jaxconv_const_vs_flax_nnx']:.2f}")
        if "compile_vs_flax" in r:
            line += "   compile s: " + " ".join(f"{k} {r['compile_s'][k]:.2f}" for k in COMPILE_IMPLS
                                           if k in r["compile_s"])
        if "items_per_s" in r:
            ips = r["items_per_s"]
            unit = "params" if r["group"] == "optimizer" else "img"
            line += f"   {unit}/s " + " ".join(f"{k} {ips[k]:.3g}" for k in ("jaxconv", "jaxconv_2proc", "torch",
                                                                          "torch_cl") if k in ips)
        if "vs_torch_ddp" in r:
            line += "   / torch DDP: " + " ".join(f"{k} {v:.2f}" for k, v in r["vs_torch_ddp"].items())
        if "scaling_efficiency" in r:
            line += (f"   efficiency ({r['replicas']} replicas, {r['cores']} cores) "
                     + " ".join(f"{k} {v:.2f}" for k, v in r["scaling_efficiency"].items()))
        lines.append(line)
    if result.get("translation"):
        t = result["translation"]
        lines.append(f"\ntranslating {t['model']} (capture + source + build, no compile): {t['seconds']:.2f} s")
    if result.get("harness"):
        from .harness import table as harness_table

        lines.append("\nthe harness's own cost (fresh process per row):\n" + harness_table(result["harness"]))
    return "\n".join(lines)


def write_json(result, path) -> str:
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=str)
    return path


def write_png(result, path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["cases"]
    torch_impls = ("torch", "torch_cl", "torch_fused")
    impls = [i for i in IMPL_ORDER if i not in torch_impls and any(i in r["median_s"] for r in rows)]
    fig, ax = plt.subplots(figsize=(11, 0.35 * len(rows) * len(impls) / 3 + 2))
    h = 0.8 / len(impls)
    for j, impl in enumerate(impls):
        ys = [i + j * h for i in range(len(rows))]
        vals = [r["ratio_vs_best_torch"].get(impl, 0.0) for r in rows]
        ax.barh(ys, vals, height=h, label=impl)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_xscale("log")
    ax.set_yticks([i + 0.4 - h / 2 for i in range(len(rows))])
    ax.set_yticklabels([r["case"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time / best of torch NCHW and channels_last (log; < 1 is faster than torch)")
    env = result["environment"]
    ax.set_title(f"{env['device_kind']} ({env['jax_platform']}), batch {result['batch']}, float32 (*_bf16*: bfloat16)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(result) -> str:
    """A Markdown table of a run: median ms and the two ratios per case."""
    lines = ["| case | jaxconv ms | torch NCHW ms | torch channels_last ms | best plain lax ms | "
             "jaxconv / best torch | jaxconv / best lax | jaxconv / flax | channels_last / flax | "
             "compile s jaxconv / translated / flax |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["cases"]:
        med = r["median_s"]
        lax = [med[k] for k in ("lax_nchw", "lax_nhwc") if k in med]
        lax_s = f"{min(lax) * 1e3:.2f}" if lax else "-"
        ratio_lax = f"{r['jaxconv_vs_best_lax']:.2f}" if "jaxconv_vs_best_lax" in r else "-"
        vs_flax = r.get("jaxconv_vs_flax", {})
        flax_s = " | ".join(f"{vs_flax[k]:.2f}" if k in vs_flax else "-" for k in ("jaxconv", "jaxconv_cl"))
        cl = f"{med['torch_cl'] * 1e3:.2f}" if "torch_cl" in med else "-"
        comp = (" / ".join(f"{r['compile_s'][k]:.2f}" for k in COMPILE_IMPLS if k in r["compile_s"])
                if "compile_vs_flax" in r else "-")
        lines.append(f"| {r['case']} | {med['jaxconv'] * 1e3:.2f} | {med['torch'] * 1e3:.2f} | "
                     f"{cl} | {lax_s} | {r['jaxconv_vs_best_torch']:.2f} | {ratio_lax} | {flax_s} | {comp} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m benchmarks.report RESULT.json
    import sys

    with open(sys.argv[1]) as f:
        res = json.load(f)
    print(table(res))
    print()
    print(markdown(res))
