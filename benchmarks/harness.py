"""The harness's own cost (``--only harness``): ``equivalence.translate`` and ``compare``.

Two kinds of rows, each measured in a fresh process (:mod:`benchmarks.harness_worker`), so
that one's peak memory and warm caches do not count in the next:

- ``harness_<model>``: seconds to translate torchvision's resnet50 and vit_b_16 (capture,
  source, build, weights) and to ``compare`` the translation with torch on one 224x224 image
  (forward, every layer checked), the process's resident memory after its imports, and its
  peak (``ru_maxrss``) after each step;
- ``harness_series``: one timm or torchvision model after another translated and compared in
  one process, each dropped before the next; per model the resident memory after a collection
  and ``malloc_trim`` (what is still held), and whether the torch model and its translation
  were collected (weak references).

Left out of a plain ``--quick`` run (each row starts a process, ~1 min); ``--quick --only
harness`` runs tiny variants (what the slow test runs).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: row -> worker arguments, full and quick
MODELS = {"harness_resnet50": (["one", "tv:resnet50", "224"], ["one", "tv:resnet18", "32"]),
          "harness_vit_b_16": (["one", "tv:vit_b_16", "224"], ["one", "small:vit", "32"])}
SERIES = (["timm:resnet10t", "timm:regnetx_002", "timm:lcnet_050", "tv:resnet18", "tv:mobilenet_v3_small",
           "tv:efficientnet_b0", "timm:convnext_atto", "tv:shufflenet_v2_x0_5"],
          ["tv:resnet18", "timm:resnet10t", "tv:resnet18"])


def rows(quick: bool) -> list[str]:
    """Every row name of this group."""
    return [*MODELS, "harness_series"]


def selected(quick: bool, only) -> list[str]:
    """The rows a suite run includes: all in a full run, none in a plain ``--quick`` one, those
    whose name contains an ``--only`` word otherwise."""
    if only:
        return [r for r in rows(quick) if any(o in r for o in only)]
    return [] if quick else rows(quick)


def command(row: str, quick: bool) -> list[str]:
    """The worker's command line of one row."""
    if row == "harness_series":
        args = ["series", ",".join(SERIES[1] if quick else SERIES[0]), "32" if quick else "64"]
    else:
        args = MODELS[row][1 if quick else 0]
    return [sys.executable, "-m", "benchmarks.harness_worker", *args]


def run_row(row: str, quick: bool, timeout: float = 1800) -> dict:
    """Run one row's worker; its JSON result with the row name and group added."""
    proc = subprocess.run(command(row, quick), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{row}: worker failed\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not all(m.get("passed", True) for m in result.get("models", [result])):
        raise AssertionError(f"{row}: compare failed: {result}")
    return {"case": row, "group": "harness", **result}


def run(quick: bool, names: list[str], progress=None) -> list[dict]:
    """The selected rows, one fresh process each."""
    out = []
    for row in names:
        out.append(run_row(row, quick))
        if progress is not None:
            progress.step(row)
    return out


def table(rows_: list[dict]) -> str:
    """The terminal lines of the harness rows."""
    lines = []
    for r in rows_:
        if r["case"] == "harness_series":
            held = " ".join(f"{m['model']} {m['rss_mb']:.0f}" for m in r["models"])
            lines.append(f"{r['case']}: MB resident after gc per model: start {r['rss_start_mb']:.0f} {held}; "
                         f"collected: {all(m['collected'] for m in r['models'])}")
        else:
            lines.append(f"{r['case']} ({r['model']}, {r['input']}): translate {r['translate_s']:.2f} s, "
                         f"compare {r['compare_s']:.2f} s; MB resident after imports {r['rss_start_mb']:.0f}, "
                         f"peak after translate {r['peak_translate_mb']:.0f}, after compare {r['peak_compare_mb']:.0f}")
    return "\n".join(lines)
