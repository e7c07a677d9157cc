"""What the runners share: blocking on results, checking against torch, interleaved timing,
one row's summary, torch's training step and TF32 switch."""
from __future__ import annotations

import contextlib
import statistics
import sys
import time

import numpy as np

TORCH_IMPLS = ("torch", "torch_cl", "torch_fused")


class MismatchError(AssertionError):
    """An implementation disagreed with torch: the suite stops rather than time it."""


def block(out):
    import jax
    import torch

    if isinstance(out, torch.Tensor):
        if out.is_cuda:
            torch.cuda.synchronize()
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        if out[0].is_cuda:
            torch.cuda.synchronize()
        return out
    return jax.block_until_ready(out)


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled = max(total, 1), 0, enabled

    def step(self, label: str):
        self.done += 1
        if self.enabled:
            width = 30
            fill = int(width * self.done / self.total)
            sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} {label[:40]:<40}")
            sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")


def check(name, impl, got, ref, tol):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise MismatchError(f"{name}/{impl}: output shape {got.shape} != torch's {ref.shape}")
    scale = max(1.0, float(np.max(np.abs(ref))))
    err = float(np.max(np.abs(got - ref))) / scale
    if not err <= tol:
        raise MismatchError(f"{name}/{impl}: max error {err:.3g} (relative to max|torch| = {scale:.3g}) "
                            f"exceeds {tol:g}")
    return err


def time_rounds(runners: dict, rounds: int, min_time: float, progress=None, label=""):
    """Interleaved timing: each round times every implementation once, in a rotated order.

    ``runners`` maps impl -> zero-argument callable (blocks until done). Each measurement
    repeats the call enough times to last ``min_time``; returns impl -> list of seconds/call.
    """
    reps = {}
    for impl, f in runners.items():  # calibrate
        t0 = time.perf_counter()
        f()
        dt = time.perf_counter() - t0
        reps[impl] = max(1, int(min_time / max(dt, 1e-6)))
    times = {impl: [] for impl in runners}
    names = list(runners)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for impl in order:
            f, n = runners[impl], reps[impl]
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            times[impl].append((time.perf_counter() - t0) / n)
        if progress is not None:
            progress.step(f"{label} round {r + 1}/{rounds}")
    return times


def compile_rounds(makers: dict, rounds: int) -> tuple[dict, dict]:
    """Lower and compile each implementation ``rounds`` times, interleaved in a rotated order like
    :func:`time_rounds`. ``makers`` maps impl -> zero-argument callable returning ``jax.jit(f)``
    of a fresh ``f`` (so tracing is not cached from the round before). Returns ``(impl ->
    compiled, impl -> list of lower+compile seconds)``."""
    compiled, times = {}, {impl: [] for impl in makers}
    names = list(makers)
    for r in range(rounds):
        for impl in names[r % len(names):] + names[:r % len(names)]:
            jitted, args = makers[impl]()
            t0 = time.perf_counter()
            compiled[impl] = jitted.lower(*args).compile()
            times[impl].append(time.perf_counter() - t0)
    return compiled, times


def summarise(name, group, times, compile_s, errors, per_item=None):
    """One row: medians of ``times`` (impl -> seconds per call), ratios to the best torch,
    lax and Flax; ``compile_s`` is impl -> seconds or impl -> list of rounds (median reported,
    rounds kept in ``compile_rounds_s``)."""
    rounds = {k: v for k, v in compile_s.items() if isinstance(v, list)}
    compile_s = {k: statistics.median(v) if isinstance(v, list) else v for k, v in compile_s.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    best_torch = min(med[k] for k in TORCH_IMPLS if k in med)
    lax_keys = [k for k in ("lax_nchw", "lax_nhwc") if k in med]
    row = {
        "case": name, "group": group,
        "median_s": med, "rounds_s": times, "compile_s": compile_s, "max_rel_error_vs_torch": errors,
        "ratio_vs_best_torch": {k: v / best_torch for k, v in med.items()},
        "jaxconv_vs_best_torch": med["jaxconv"] / best_torch,
    }
    if lax_keys:
        row["jaxconv_vs_best_lax"] = med["jaxconv"] / min(med[k] for k in lax_keys)
    if "translated" in med:
        row["translated_vs_handwritten"] = med["translated"] / med["jaxconv"]
    if "flax_nnx" in med and row["group"].startswith("model"):
        row["jaxconv_vs_flax"] = {k: med[k] / med["flax_nnx"] for k in ("jaxconv", "jaxconv_cl", "translated")
                                  if k in med}
    if "flax_nnx" in compile_s and row["group"].startswith("model"):
        row["compile_vs_flax"] = {k: compile_s[k] / compile_s["flax_nnx"] for k in ("jaxconv", "jaxconv_cl",
                                                                                      "translated") if k in compile_s}
    if "jaxconv_ynn" in med and "flax_nnx_ynn" in med:  # the same functions under xla_options.ynn_eltwise()
        row["ynn"] = {"jaxconv_ynn_vs_flax_nnx_ynn": med["jaxconv_ynn"] / med["flax_nnx_ynn"],
                      "jaxconv_ynn_vs_best_torch": med["jaxconv_ynn"] / best_torch,
                      "jaxconv_ynn_vs_jaxconv": med["jaxconv_ynn"] / med["jaxconv"],
                      "flax_nnx_ynn_vs_flax_nnx": med["flax_nnx_ynn"] / med["flax_nnx"]}
    if rounds:
        row["compile_rounds_s"] = rounds
    if per_item:
        row["items_per_s"] = {k: per_item / v for k, v in med.items()}
    return row


def torch_forward(m, inp, ctx=contextlib.nullcontext):
    """A torch forward of ``m`` on ``inp`` without gradients, under ``ctx()``, blocking on its output."""
    import torch

    def f():
        with torch.no_grad(), ctx():
            return block(m(inp))
    return f


def torch_step(m, inp, ctx=contextlib.nullcontext):
    """A torch training step of ``m`` on ``inp`` (forward under ``ctx()``, backward of the mean)
    returning ``(loss, gradient of the first parameter)``."""
    params = list(m.parameters())

    def f():
        for p in params:
            p.grad = None
        with ctx():
            loss = m(inp).mean()
        loss.backward()
        return block((loss, params[0].grad))
    return f


def grad_of(grads, name):
    """The entry of an nnx gradient state at torch parameter name ``name``, as numpy."""
    from flax import nnx

    g = grads
    for part in name.split("."):
        g = g[part] if not part.isdigit() or part in g else g[int(part)]
    return np.asarray(g[...] if isinstance(g, nnx.Variable) else g)


def tf32(enabled):
    """Set torch's TF32 switches; return the previous setting (a no-op without CUDA)."""
    import torch

    prev = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if isinstance(enabled, tuple):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = enabled
    else:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    return prev
