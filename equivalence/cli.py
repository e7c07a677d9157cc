"""``python -m equivalence`` / ``jaxconv-port``: port a torch checkpoint to jaxconv and prove it.

- ``port``: build both models, load the checkpoint into each, compare, write the jaxconv
  checkpoint (``.safetensors``) and the certificate (JSON) to ``--out``.
- ``check``: the same comparison, writing nothing unless ``--json`` / ``--plot`` ask.
- no arguments: the bundled residual CNN with random torch weights, saved to a temporary
  ``.safetensors``, loaded into the twin and compared forward and with gradients.

Exit status 0 when the verdict is PASS, 1 when it is FAIL, 2 on a usage error.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time


def _load_factory(spec: str):
    """``'package.module:factory'`` -> the callable."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise SystemExit(f"error: expected 'module:factory', got {spec!r}")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise SystemExit(f"error: cannot import {module!r} (from {spec!r}): {e}") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SystemExit(f"error: {module!r} has no attribute {attr!r} (from {spec!r})")
        obj = getattr(obj, part)
    return obj


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape must be comma-separated ints, got {text!r}")
    if not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"input shape must be positive ints, got {text!r}")
    return shape


class _Progress:
    """A text progress bar on stderr (tqdm when installed), shown for runs with many checks."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def __call__(self, done, total, label):
        if not self.enabled or total < 8:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            if self.bar is None:
                self.bar = tqdm(total=total, desc="checking layers", file=sys.stderr, leave=False)
            self.bar.n = done
            self.bar.set_postfix_str(label)
            self.bar.refresh()
            if done >= total:
                self.bar.close()
            return
        width = 30
        fill = int(width * done / max(total, 1))
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} {label[:30]:<30}{end}")
        sys.stderr.flush()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jaxconv-port",
        description="Port a torch checkpoint to a jaxconv model and prove the port layer by layer. "
                    "Without arguments: the bundled residual CNN example.")
    sub = p.add_subparsers(dest="command")
    for name, help_ in (("port", "compare and write the jaxconv checkpoint and certificate to --out"),
                        ("check", "compare only")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--torch", required=True, metavar="MODULE:FACTORY",
                       help="builds the torch model, e.g. equivalence.examples:residual_cnn_torch")
        s.add_argument("--jax", required=True, metavar="MODULE:FACTORY",
                       help="builds the jaxconv twin, e.g. equivalence.examples:residual_cnn_jax")
        s.add_argument("--checkpoint", metavar="PATH",
                       help=".safetensors or .pt/.pth/.bin; without it the torch model's own weights")
        s.add_argument("--input-shape", type=_shape, required=True, metavar="N,C,H,W")
        if name == "port":
            s.add_argument("--out", required=True, metavar="DIR",
                           help="writes model.safetensors and certificate.json")
        _common(s)
    return p


def _common(s):
    s.add_argument("--grads", action="store_true", help="also compare gradients")
    s.add_argument("--train", action="store_true", help="compare in training mode (default eval)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    s.add_argument("--json", metavar="PATH", help="write the certificate as JSON")
    s.add_argument("--plot", metavar="PATH", help="write a PNG of per-layer error vs tolerance")
    s.add_argument("--quiet", action="store_true", help="print only the verdict line")


def _finish(report, args, out_dir=None) -> int:
    print(report.verdict() if args.quiet else report.to_text())
    if args.json:
        report.to_json(args.json)
        print(f"certificate: {args.json}")
    if out_dir:
        path = os.path.join(out_dir, "certificate.json")
        report.to_json(path)
        print(f"certificate: {path}")
    if args.plot:
        report.plot(args.plot)
        print(f"plot: {args.plot}")
    return 0 if report.passed else 1


def _run(args) -> int:
    from . import compare, io, load_state_dict, state_dict
    from ._torch import to_torch

    torch_model = _load_factory(args.torch)()
    jax_model = _load_factory(args.jax)()
    if args.checkpoint:
        weights = io.read(args.checkpoint)
        load_state_dict(jax_model, weights, strict=True)  # first: its errors name the bad keys
        torch_model.load_state_dict({k: to_torch(v) for k, v in weights.items()}, strict=True)
    else:
        load_state_dict(jax_model, torch_model.state_dict(), strict=True)
    # What is compared is what gets exported: taken now, as a training forward moves BatchNorm's
    # running statistics (and building the model again would draw other weights).
    compared = state_dict(jax_model)
    torch_model.train(args.train)
    report = compare(torch_model, jax_model, args.input_shape, grads=args.grads, seed=args.seed,
                     train=args.train, progress=_Progress(sys.stderr.isatty()))
    out_dir = getattr(args, "out", None)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "model.safetensors")
        io.write(compared, path)
        print(f"jaxconv checkpoint: {path}")
    return _finish(report, args, out_dir)


def demo(args=None) -> int:
    """The bundled example: residual CNN, random torch weights via a temporary .safetensors."""
    from . import compare, load_state_dict
    from .examples import EXAMPLES
    from safetensors.torch import save_file

    ex = EXAMPLES["residual_cnn"]
    start = time.perf_counter()
    print(f"jaxconv-port demo: {ex.description}")
    torch_model = ex.torch_factory(seed=0 if args is None else args.seed).eval()
    jax_model = ex.jax_factory()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "residual_cnn.safetensors")
        save_file({k: v.detach().contiguous() for k, v in torch_model.state_dict().items()}, path)
        load_state_dict(jax_model, path, strict=True)
        print(f"torch weights -> {os.path.basename(path)} -> jaxconv twin (strict load)")
    report = compare(torch_model, jax_model, ex.input_shape, grads=True, seed=0,
                     progress=_Progress(sys.stderr.isatty()))
    print(report.to_text())
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0 if report.passed else 1


def main(argv=None) -> int:
    """Entry point of ``python -m equivalence`` and ``jaxconv-port``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        return demo()
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    return _run(args)
