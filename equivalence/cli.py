"""``python -m equivalence`` / ``jaxconv-port``: port a torch model to jaxconv and prove it.

- ``translate``: translate the torch model (no hand-written twin), write the generated source
  ``model.py``, the weights ``model.safetensors`` and the certificate ``certificate.json``
  (the comparison of the translated model against torch) to ``--out``.
- ``port``: build torch model and a hand-written twin, load the checkpoint into each, compare,
  write the jaxconv checkpoint (``.safetensors``) and the certificate (JSON) to ``--out``.
- ``check``: the same comparison, writing nothing unless ``--json`` / ``--plot`` ask.
- no arguments (or ``demo``): the demo. The bundled residual CNN with random torch weights is
  translated, its source written to ``translated/residual_cnn/``, compared forward and with
  gradients, then trained 24 steps in both frameworks with a realistic recipe and checked step
  by step (:func:`demo`).

Each of ``translate``, ``port`` and ``check`` also runs a training check with ``--train-steps N
--optimizer EXPR`` (:mod:`equivalence.cli_training`): from the compared weights, torch and the
port train side by side and :func:`equivalence.compare_training` checks every step.

Exit status 0 when every verdict is PASS, 1 when one is FAIL, 2 on a usage error or a model that
cannot be translated.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

from . import cli_training
from ._usage import UsageError


def _load_factory(spec: str):
    """``'package.module:factory'`` -> the callable."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise UsageError(f"expected 'module:factory', got {spec!r}")
    if module.split(".")[0] in ("torchvision", "timm"):
        from ._torch import import_torchvision

        import_torchvision()
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise UsageError(f"cannot import {module!r} (from {spec!r}): {e}") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{module!r} has no attribute {attr!r} (from {spec!r})")
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
    d = sub.add_parser("demo", help="the bundled residual CNN: translate, prove, train (the default)")
    d.add_argument("--out", default=DEMO_OUT, metavar="DIR", help=f"default {DEMO_OUT}")
    d.add_argument("--train-steps", type=int, default=DEMO_STEPS, metavar="N",
                   help=f"training steps after the port (default {DEMO_STEPS}; 0: none)")
    t = sub.add_parser("translate", help="translate a torch model; write model.py, model.safetensors "
                                         "and certificate.json to --out")
    t.add_argument("--torch", required=True, metavar="MODULE:FACTORY",
                   help="builds the torch model, e.g. torchvision.models:resnet18")
    t.add_argument("--input-shape", type=_shape, required=True, metavar="N,C,H,W")
    t.add_argument("--out", required=True, metavar="DIR")
    t.add_argument("--checkpoint", metavar="PATH",
                   help=".safetensors or .pt/.pth/.bin; without it the torch model's own weights")
    _common(t)
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
            s.add_argument("--orbax", metavar="DIR",
                           help="also write an Orbax checkpoint (equivalence.restore_checkpoint); "
                                "with --optimizer (--scheduler, --no-decay) naming the recipe, the "
                                "training checkpoint's optimizer state and step go with the weights")
        _common(s)
    return p


def _common(s):
    s.add_argument("--grads", action="store_true", help="also compare gradients")
    s.add_argument("--train", action="store_true", help="compare in training mode (default eval)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    s.add_argument("--autocast", choices=("bfloat16", "float16"),
                   help="compare under torch.autocast / jaxconv.autocast in this dtype (weights as they are)")
    s.add_argument("--json", metavar="PATH", help="write the certificate as JSON")
    s.add_argument("--plot", metavar="PATH", help="write a PNG of per-layer error vs tolerance")
    s.add_argument("--quiet", action="store_true", help="print only the verdict line")
    cli_training.add_options(s)


def _finish(report, args, out_dir=None, trained=None) -> int:
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
    status = 0 if report.passed else 1
    if trained is not None:   # (torch model, jax model) at the compared weights
        status = max(status, cli_training.run(args, *trained, out_dir))
    return status


def _torch_model(args):
    """The torch model of ``--torch``, with ``--checkpoint`` loaded (strict) when given."""
    from ._torch import to_torch

    model = _load_factory(args.torch)()
    if args.checkpoint:
        weights = _read_checkpoint(args.checkpoint)
        try:
            model.load_state_dict({k: to_torch(v) for k, v in weights.items()}, strict=True)
        except RuntimeError as e:  # torch's message lists the missing and unexpected keys
            raise UsageError(f"--checkpoint {args.checkpoint} does not fit {args.torch}: {e}") from e
    return model


def _read_checkpoint(path):
    """``io.read(path)``, a missing or corrupt file as a :class:`UsageError` naming it."""
    from . import io

    try:
        return io.read(path)
    except (OSError, io.CheckpointError) as e:
        raise UsageError(f"--checkpoint {path}: {e}") from e


def translate_to(torch_model, input_shape, out_dir, *, train=False, grads=False, seed=0,
                 progress=None, autocast=None):
    """Translate ``torch_model``, write ``model.py`` and ``model.safetensors`` to ``out_dir`` and
    return the :func:`~equivalence.compare` report of the translation against torch, and the
    translated model at the weights compared (before a training forward moved statistics)."""
    import numpy as np

    from . import compare, io, state_dict
    from ._torch import require_torch
    from .translator import build_from_source, translate_source

    torch = require_torch("jaxconv-port translate")
    torch_model.train(train)
    example = torch.from_numpy(np.random.default_rng(seed).standard_normal(input_shape)
                               .astype(np.float32))
    start = time.perf_counter()
    source = translate_source(torch_model, example)
    model = build_from_source(source, torch_model)
    took = time.perf_counter() - start
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "model.py"), "w") as f:
        f.write(source)
    io.write(state_dict(model), os.path.join(out_dir, "model.safetensors"))
    print(f"translated {type(torch_model).__name__} in {took:.1f} s: "
          f"{os.path.join(out_dir, 'model.py')} ({source.count(chr(10))} lines, "
          f"{source.count(chr(10) + 'class ')} classes), weights {os.path.join(out_dir, 'model.safetensors')}")
    weights = {k: v.detach().clone() for k, v in torch_model.state_dict().items()}
    report = compare(torch_model, model, input_shape, grads=grads, seed=seed, train=train,
                     progress=progress, autocast=autocast)
    return report, _restored(torch_model, model, weights)


def _restored(torch_model, jax_model, weights):
    """``(torch_model, jax_model)`` both holding ``weights`` again (a train-mode comparison moves
    BatchNorm's statistics on each side by its own rounding)."""
    from . import load_state_dict

    torch_model.load_state_dict(weights, strict=True)
    load_state_dict(jax_model, weights, strict=True)
    return torch_model, jax_model


def _translate(args) -> int:
    from .translator import TranslationError

    train = cli_training.check_options(args)
    try:
        report, models = translate_to(_torch_model(args), args.input_shape, args.out,
                                      train=args.train, grads=args.grads, seed=args.seed,
                                      autocast=args.autocast, progress=_Progress(sys.stderr.isatty()))
    except TranslationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _finish(report, args, args.out, models if train else None)


def _run(args) -> int:
    from . import compare, io, load_state_dict, state_dict
    from ._torch import to_torch
    from .state_dict import StateDictError

    train = cli_training.check_options(args)
    torch_model = _load_factory(args.torch)()
    jax_model = _load_factory(args.jax)()
    if args.checkpoint:
        weights = _read_checkpoint(args.checkpoint)
        try:
            load_state_dict(jax_model, weights, strict=True)  # first: its errors name the bad keys
        except StateDictError as e:
            raise UsageError(f"--checkpoint {args.checkpoint} does not fit {args.jax}: {e}") from e
        torch_model.load_state_dict({k: to_torch(v) for k, v in weights.items()}, strict=True)
    else:
        load_state_dict(jax_model, torch_model.state_dict(), strict=True)
    if getattr(args, "orbax", None):
        cli_training.write_orbax(args, torch_model, jax_model)
    # What is compared is what gets exported: taken now, as a training forward moves BatchNorm's
    # running statistics (and building the model again would draw other weights).
    compared = state_dict(jax_model)
    weights = {k: v.detach().clone() for k, v in torch_model.state_dict().items()}
    torch_model.train(args.train)
    report = compare(torch_model, jax_model, args.input_shape, grads=args.grads, seed=args.seed,
                     train=args.train, autocast=args.autocast, progress=_Progress(sys.stderr.isatty()))
    out_dir = getattr(args, "out", None)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "model.safetensors")
        io.write(compared, path)
        print(f"jaxconv checkpoint: {path}")
    return _finish(report, args, out_dir, _restored(torch_model, jax_model, weights) if train else None)


DEMO_OUT = os.path.join("translated", "residual_cnn")
DEMO_STEPS = 24
#: The demo's training recipe, as the command-line options of the training check: timm's AdamW
#: with no weight decay for biases, OneCycleLR over the run, label smoothing, gradient clipping.
DEMO_RECIPE = dict(optimizer="AdamW(lr=1e-3, weight_decay=0.05)", no_decay=True,
                   scheduler="OneCycleLR(max_lr=3e-3, total_steps={steps})",
                   loss="CrossEntropyLoss(label_smoothing=0.1)", max_grad_norm=1.0)
DEMO_BATCH = 8     # batch size of the training check, and of its 4 random batches, cycled


def demo(out_dir: str = DEMO_OUT, train_steps: int = DEMO_STEPS) -> int:
    """The main job: translate the bundled residual CNN (random torch weights) and prove it, then
    train it ``train_steps`` steps in torch and jaxconv with :data:`DEMO_RECIPE` and check every
    step; both certificates go to ``out_dir``."""
    from .examples import EXAMPLES

    ex = EXAMPLES["residual_cnn"]
    start = time.perf_counter()
    print(f"jaxconv-port demo: {ex.description}")
    print(f"torch model {ex.torch_spec} -> equivalence.translate (no hand-written twin)")
    report, models = translate_to(ex.torch_factory(seed=0), ex.input_shape, out_dir, grads=True,
                                  progress=_Progress(sys.stderr.isatty()))
    print(report.to_text())
    path = os.path.join(out_dir, "certificate.json")
    report.to_json(path)
    print(f"certificate: {path}")
    passed = report.passed
    if train_steps:
        recipe = dict(DEMO_RECIPE, scheduler=DEMO_RECIPE["scheduler"].format(steps=train_steps))
        shape = (DEMO_BATCH,) + tuple(ex.input_shape[1:])
        print(f"\ntraining {train_steps} steps in both frameworks on 4 random batches, the training "
              f"check of\n  jaxconv-port translate --torch {ex.torch_spec} --input-shape "
              f"{','.join(map(str, shape))} --out {out_dir} --train-steps {train_steps} --batches 4 "
              f"--optimizer {recipe['optimizer']!r} --no-decay --scheduler {recipe['scheduler']!r} "
              f"--loss {recipe['loss']!r} --max-grad-norm {recipe['max_grad_norm']}")
        training = cli_training.training_check(*models, shape, steps=train_steps,
                                               n_batches=4, **recipe)
        cli_training.write(training, out_dir)
        passed = passed and training.passed
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0 if passed else 1


def main(argv=None) -> int:
    """Entry point of ``python -m equivalence`` and ``jaxconv-port``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        return demo()
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    try:
        if args.command == "demo":
            return demo(args.out, args.train_steps)
        return _translate(args) if args.command == "translate" else _run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
