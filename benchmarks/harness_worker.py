"""One harness row in a fresh process (see :mod:`benchmarks.harness`); prints its JSON last.

``python -m benchmarks.harness_worker one SRC:NAME SIDE``: translate and compare one model on one
``SIDE x SIDE`` image. ``python -m benchmarks.harness_worker series SRC:NAME,... SIDE``: each
model in turn (batch 2), dropped before the next. ``SRC``: ``tv`` (torchvision), ``timm``, or
``small`` (``small:vit``: a two-layer torchvision ViT).
"""
from __future__ import annotations

import ctypes
import gc
import json
import resource
import sys
import time
import weakref

import numpy as np


def rss_mb() -> float:
    """Resident MB now, after a collection and glibc's ``malloc_trim`` (freed heap handed back,
    so the allocator's free lists do not count)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # pragma: no cover - not glibc
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    """The process's peak resident MB so far (``ru_maxrss``, KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(spec: str, side: int, num_classes: int | None = None):
    """A torch model with random weights, BatchNorm statistics randomised, in eval mode."""
    import torch

    from equivalence._torch import import_torchvision

    import_torchvision()
    import torchvision

    torch.manual_seed(0)
    src, name = spec.split(":")
    kw = {} if num_classes is None else {"num_classes": num_classes}
    if src == "tv":
        model = getattr(torchvision.models, name)(**kw)
    elif src == "timm":
        import timm

        model = timm.create_model(name, pretrained=False, **kw)
    elif spec == "small:vit":
        model = torchvision.models.VisionTransformer(image_size=side, patch_size=16, num_layers=2, num_heads=2,
                                                     hidden_dim=32, mlp_dim=64, **kw)
    else:
        raise ValueError(f"model: SRC:NAME with SRC tv, timm or small (small:vit), got {spec!r}")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # an untrained BatchNorm is nearly the identity: statistics that matter
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    return model.eval()


def one(spec: str, side: int) -> dict:
    """Translate and compare one model on one image: seconds and memory."""
    import torch

    import equivalence

    start = rss_mb()
    model = build(spec, side)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, side, side)).astype(np.float32))
    t0 = time.perf_counter()
    jm = equivalence.translate(model, x)
    t1 = time.perf_counter()
    peak_translate = peak_mb()
    report = equivalence.compare(model, jm, x)
    t2 = time.perf_counter()
    return {"model": spec, "input": [1, 3, side, side], "translate_s": t1 - t0, "compare_s": t2 - t1,
            "passed": bool(report.passed), "rss_start_mb": start, "peak_translate_mb": peak_translate,
            "peak_compare_mb": peak_mb()}


def series(specs: list[str], side: int) -> dict:
    """Each model translated, compared and dropped in turn; what stays resident after each."""
    import torch

    import equivalence

    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    out = {"input": [2, 3, side, side], "rss_start_mb": rss_mb(), "models": []}
    for spec in specs:
        model = build(spec, side, num_classes=10)
        t0 = time.perf_counter()
        jm = equivalence.translate(model, x)
        passed = bool(equivalence.compare(model, jm, x).passed)
        seconds = time.perf_counter() - t0
        refs = [weakref.ref(model), weakref.ref(jm)]
        del model, jm
        out["models"].append({"model": spec, "seconds": seconds, "passed": passed, "rss_mb": rss_mb(),
                              "collected": all(r() is None for r in refs)})
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    kind, what, side = argv
    result = one(what, int(side)) if kind == "one" else series(what.split(","), int(side))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
