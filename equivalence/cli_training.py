"""The training check of ``jaxconv-port``: a torch recipe given on the command line, trained side
by side with its jaxconv port by :func:`equivalence.compare_training`.

Options (``translate``, ``port`` and ``check``)::

    --train-steps 24 --optimizer "AdamW(lr=1e-3, weight_decay=0.05)" --no-decay
    --scheduler "OneCycleLR(max_lr=1e-2, total_steps=24)"
    --loss "CrossEntropyLoss(label_smoothing=0.1)" --max-grad-norm 1.0

``--optimizer``, ``--scheduler`` and ``--loss`` are class calls parsed with :mod:`ast`, never
evaluated: a class name of ``torch.optim``, ``torch.optim.lr_scheduler`` or ``torch.nn`` (a
loss) called with literal arguments only (numbers, strings, tuples, lists, ``True``, ``None``).
The optimizer is built on the torch model's parameters (with ``--no-decay``, timm's two groups:
no weight decay for 1-d parameters and biases), the scheduler on the optimizer; both are
translated with :func:`~equivalence.training.translate_optimizer`. The batches are random, drawn
from ``--seed``: inputs of ``--input-shape`` and targets that fit the loss
(:func:`random_targets`), one per step or ``--batches K`` cycled. The report is printed; the certificate ``training_certificate.json``
goes to ``--out`` (``check``: beside ``--json`` as ``<name>.training.json``), and with
``--plot`` a PNG beside it (``<name>.training.png``).
"""
from __future__ import annotations

import argparse
import ast
import os

import numpy as np

from ._usage import UsageError

#: The losses :func:`random_targets` draws targets for: class indices, or floats like the output.
CLASS_LOSSES = ("CrossEntropyLoss", "NLLLoss")
FLOAT_LOSSES = ("MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss")
PROBABILITY_LOSSES = ("BCEWithLogitsLoss",)

#: --option -> (the torch namespace searched, the base class required, an example)
_KINDS = {
    "--optimizer": ("torch.optim", "Optimizer", "AdamW(lr=1e-3, weight_decay=0.05)"),
    "--scheduler": ("torch.optim.lr_scheduler", "scheduler", "OneCycleLR(max_lr=1e-2, total_steps=24)"),
    "--loss": ("torch.nn", "loss", "CrossEntropyLoss(label_smoothing=0.1)"),
}


def add_options(parser: argparse.ArgumentParser) -> None:
    """The training check's options, as an argument group of ``parser``."""
    g = parser.add_argument_group(
        "training check", "train torch and jaxconv side by side from the compared weights on random "
                          "batches and check every step (equivalence.compare_training)")
    g.add_argument("--train-steps", type=_steps, default=0, metavar="N",
                   help="steps to train (default 0: no training check)")
    g.add_argument("--optimizer", metavar="EXPR",
                   help="a torch.optim class call with literal arguments, "
                        "e.g. \"AdamW(lr=1e-3, weight_decay=0.05)\" (needed with --train-steps)")
    g.add_argument("--scheduler", metavar="EXPR",
                   help="a torch.optim.lr_scheduler class call without the optimizer, "
                        "e.g. \"OneCycleLR(max_lr=1e-2, total_steps=24)\"; stepped once per step")
    g.add_argument("--loss", metavar="EXPR",
                   help="a torch.nn loss class call, e.g. \"CrossEntropyLoss(label_smoothing=0.1)\" "
                        f"(default CrossEntropyLoss()); targets are drawn for {', '.join(CLASS_LOSSES)} "
                        f"(class indices), {', '.join(FLOAT_LOSSES + PROBABILITY_LOSSES)}")
    g.add_argument("--max-grad-norm", type=_positive, metavar="NORM",
                   help="clip gradients with clip_grad_norm_ to this total 2-norm before each step")
    g.add_argument("--batches", type=lambda t: _steps(t, 1), metavar="K",
                   help="draw K random batches and cycle through them (default: one per step)")
    g.add_argument("--no-decay", action="store_true",
                   help="timm's parameter groups: no weight decay for 1-d parameters and biases")


def _steps(text: str, least: int = 0) -> int:
    try:
        n = int(text)
    except ValueError:
        n = least - 1
    if n < least:
        raise argparse.ArgumentTypeError(f"must be an int >= {least}, got {text!r}")
    return n


def _positive(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = float("nan")
    if not x > 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return x


def parse_call(text: str, option: str):
    """``"AdamW(lr=1e-3, betas=(0.9, 0.99))"`` -> ``(AdamW class, args, kwargs)``, without
    evaluating anything: a class name of the option's torch namespace (:data:`_KINDS`), called
    (or not) with literal arguments. Raises :class:`~equivalence.cli.UsageError` naming the
    option, the rule and the text."""
    import importlib

    from ._torch import require_torch

    torch = require_torch(f"jaxconv-port {option}")
    namespace, kind, example = _KINDS[option]
    rule = f"expected a {namespace} class called with literal arguments, e.g. {example!r}"
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise UsageError(f"{option} {text!r}: not a Python expression ({e.msg}); {rule}") from None
    call = node if isinstance(node, ast.Call) else ast.Call(node, [], [])
    if not isinstance(call.func, ast.Name):
        raise UsageError(f"{option} {text!r}: {rule}")
    name = call.func.id
    cls = getattr(importlib.import_module(namespace), name, None)
    bases = {"Optimizer": (torch.optim.Optimizer,),
             "scheduler": (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau),
             "loss": (torch.nn.modules.loss._Loss,)}[kind]
    abstract = (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.nn.modules.loss._Loss,
                torch.nn.modules.loss._WeightedLoss)
    if name.startswith("_") or not isinstance(cls, type) or not issubclass(cls, bases) or cls in abstract:
        raise UsageError(f"{option} {text!r}: {name!r} is not a {kind} class of {namespace}; {rule}")
    args, kwargs = [], {}
    for k in [None] * len(call.args) + call.keywords:
        value = call.args[len(args)] if k is None else k.value
        try:
            if k is not None and k.arg is None:
                raise ValueError
            literal = ast.literal_eval(value)
        except ValueError:
            what = ast.unparse(value) if k is None else f"{k.arg or '**'}={ast.unparse(value)}"
            raise UsageError(f"{option} {text!r}: argument {what!r} is not a literal (numbers, "
                             f"strings, tuples, lists, True/False/None); {rule}") from None
        if k is None:
            args.append(literal)
        else:
            kwargs[k.arg] = literal
    return cls, args, kwargs


def _build(option: str, text: str, first, extra: dict | None = None):
    """``cls(*first, *args, **kwargs)`` of the parsed ``text``; a constructor's complaint (an
    unknown or invalid argument) as a UsageError naming the option."""
    cls, args, kwargs = parse_call(text, option)
    try:
        return cls(*first, *args, **kwargs, **(extra or {}))
    except (TypeError, ValueError, KeyError) as e:
        raise UsageError(f"{option} {text!r}: torch's {cls.__name__} refuses it: {e}") from None


def no_decay_groups(torch_model, weight_decay: float) -> list[dict]:
    """timm's ``param_groups_weight_decay``: 1-d parameters and biases without weight decay,
    the rest with ``weight_decay`` (frozen parameters left out; empty groups dropped)."""
    decay, no_decay = [], []
    for name, p in torch_model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]
    return [g for g in groups if g["params"]]


def build_recipe(torch_model, optimizer: str, scheduler: str | None, loss: str, no_decay: bool):
    """The torch ``(optimizer, scheduler or None, loss)`` of the three expressions, on
    ``torch_model``'s parameters (:func:`no_decay_groups` with ``no_decay``)."""
    params = list(torch_model.parameters())
    if no_decay:
        cls, args, kwargs = parse_call(optimizer, "--optimizer")
        import inspect

        default = inspect.signature(cls).parameters.get("weight_decay")
        wd = kwargs.get("weight_decay", None if default is None else default.default)
        if wd is None:
            raise UsageError(f"--no-decay: torch.optim.{cls.__name__} has no weight_decay argument")
        params = no_decay_groups(torch_model, wd)
    opt = _build("--optimizer", optimizer, [params])
    sched = None if scheduler is None else _build("--scheduler", scheduler, [opt])
    return opt, sched, _build("--loss", loss, [])


def random_targets(loss, output_shape, rng) -> np.ndarray:
    """Targets for ``loss`` and a model output of ``output_shape``: class indices below the
    output's class dimension (dim 1) for :data:`CLASS_LOSSES`, standard normal floats of the
    output's shape for :data:`FLOAT_LOSSES`, probabilities in ``[0, 1)`` for
    :data:`PROBABILITY_LOSSES`; any other loss is refused by name."""
    name = type(loss).__name__
    shape = tuple(output_shape)
    if name in CLASS_LOSSES:
        if len(shape) < 2:
            raise UsageError(f"--loss {name}: needs an output with a class dimension (N, C, ...), "
                             f"the model gives shape {shape}")
        return rng.integers(0, shape[1], (shape[0],) + shape[2:])
    if name in FLOAT_LOSSES:
        return rng.standard_normal(shape).astype(np.float32)
    if name in PROBABILITY_LOSSES:
        return rng.random(shape).astype(np.float32)
    raise UsageError(f"--loss {name}: the training check draws random targets only for "
                     f"{', '.join(CLASS_LOSSES + FLOAT_LOSSES + PROBABILITY_LOSSES)}")


def random_batches(torch_model, loss, input_shape, n: int, seed: int) -> list:
    """``n`` random ``(input, target)`` pairs from ``seed``: standard normal inputs of
    ``input_shape``, targets from :func:`random_targets` for the model's output (one forward in
    eval mode, which moves no statistics)."""
    import torch

    rng = np.random.default_rng([seed, 23])   # not the forward check's stream of the same seed
    inputs = [rng.standard_normal(input_shape).astype(np.float32) for _ in range(n)]
    was = torch_model.training
    with torch.no_grad():
        shape = torch_model.eval()(torch.from_numpy(inputs[0])).shape
    torch_model.train(was)
    return [(x, random_targets(loss, shape, rng)) for x in inputs]


def _beside(path: str, suffix: str) -> str:
    stem, ext = os.path.splitext(path)
    return f"{stem}.training{ext or suffix}"


def training_check(torch_model, jax_model, input_shape, *, steps: int, optimizer: str,
                   scheduler: str | None = None, loss: str = "CrossEntropyLoss()",
                   max_grad_norm: float | None = None, no_decay: bool = False, seed: int = 0,
                   n_batches: int | None = None, quiet: bool = False):
    """Build the recipe on ``torch_model``, translate it, train ``steps`` steps on random
    batches (``n_batches`` of them, cycled; default one per step) and print the report; the
    :class:`~equivalence.training.TrainingReport`."""
    from .training import RecipeError, compare_training, translate_optimizer

    opt, sched, loss_module = build_recipe(torch_model, optimizer, scheduler, loss, no_decay)
    try:
        tx = translate_optimizer(opt, torch_model, scheduler=sched)
    except RecipeError as e:
        raise UsageError(f"--optimizer/--scheduler: {e}") from None
    batches = random_batches(torch_model, loss_module, input_shape, n_batches or steps, seed)
    try:
        report = compare_training(torch_model, jax_model, opt, tx, batches, loss_module, steps=steps,
                                  scheduler=sched, max_grad_norm=max_grad_norm)
    except (RecipeError, ValueError) as e:
        raise UsageError(f"training check: {e}") from None
    print(report.verdict() if quiet else report.to_text())
    return report


#: The options that describe a training checkpoint's optimizer for ``port --orbax``.
_RECIPE = ("--optimizer", "--scheduler", "--no-decay")


def check_options(args) -> bool:
    """Whether ``args`` ask for the training check; raises on training options without
    ``--train-steps`` (but for ``--optimizer``, ``--scheduler`` and ``--no-decay`` with
    ``--orbax``, where they describe the checkpoint's optimizer) or ``--train-steps`` without
    ``--optimizer``."""
    given = [o for o, v in (("--optimizer", args.optimizer), ("--scheduler", args.scheduler),
                            ("--loss", args.loss), ("--max-grad-norm", args.max_grad_norm),
                            ("--no-decay", args.no_decay or None), ("--batches", args.batches))
             if v is not None]
    orbax = getattr(args, "orbax", None)
    stray = [o for o in given if not (orbax and o in _RECIPE)]
    if not args.train_steps and stray:
        also = f" ({', '.join(_RECIPE)} alone describe the optimizer for --orbax)" if orbax else ""
        raise UsageError(f"{', '.join(stray)} given without --train-steps N (N > 0): the training "
                         f"check runs only with --train-steps{also}")
    if args.train_steps and args.optimizer is None:
        raise UsageError(f"--train-steps {args.train_steps} needs --optimizer, e.g. "
                         f"--optimizer {_KINDS['--optimizer'][2]!r}")
    return bool(args.train_steps)


def run(args, torch_model, jax_model, out_dir=None) -> int:
    """The training check of the parsed ``args`` (``--train-steps`` > 0), its certificate
    written; the exit status (0 PASS, 1 FAIL)."""
    report = training_check(torch_model, jax_model, args.input_shape, steps=args.train_steps,
                            optimizer=args.optimizer, scheduler=args.scheduler,
                            loss=args.loss or "CrossEntropyLoss()",
                            max_grad_norm=args.max_grad_norm, no_decay=args.no_decay,
                            seed=args.seed, n_batches=args.batches, quiet=args.quiet)
    write(report, out_dir, json_path=args.json, plot_path=args.plot)
    return 0 if report.passed else 1


def write(report, out_dir=None, *, json_path=None, plot_path=None) -> None:
    """Write the training certificate to ``out_dir/training_certificate.json`` and beside
    ``json_path``, and the plot beside ``plot_path``; print where."""
    paths = ([os.path.join(out_dir, "training_certificate.json")] if out_dir else []) + \
        ([_beside(json_path, ".json")] if json_path else [])
    for path in paths:
        report.to_json(path)
        print(f"training certificate: {path}")
    if plot_path:
        report.plot(_beside(plot_path, ".png"))
        print(f"training plot: {_beside(plot_path, '.png')}")


#: Entries of a torch training checkpoint that count optimizer updates, for ``--orbax``'s step.
STEP_KEYS = ("step", "global_step")


def _updates(checkpoint, torch_state) -> int:
    """The update count of a training checkpoint: its ``step`` / ``global_step`` entry, else
    the optimizer state's per-parameter ``step`` (Adam and the like; 0 for SGD, which keeps no
    count)."""
    for key in STEP_KEYS:
        if isinstance(checkpoint.get(key), int) and not isinstance(checkpoint[key], bool):
            return checkpoint[key]
    steps = [float(entry["step"]) for entry in torch_state.get("state", {}).values()
             if "step" in entry]
    return int(max(steps, default=0))


def write_orbax(args, torch_model, jax_model) -> None:
    """``port --orbax DIR``: the ported weights, as an Orbax checkpoint that
    :func:`equivalence.restore_checkpoint` reads. With ``--optimizer`` (``--scheduler``,
    ``--no-decay``) naming the recipe, the torch training checkpoint's optimizer and scheduler
    state go with them (:func:`~equivalence.load_training_checkpoint`), the step is its update
    count (:func:`_updates`, also ``optimizer.step``) and its other number and string entries
    (``epoch``) are the step's metadata (:func:`equivalence.checkpoint_metadata`); else the
    step is 0."""
    from flax import nnx

    from . import io, save_checkpoint
    from .state_dict import StateDictError
    from .training import (OptimizerStateError, RecipeError, load_training_checkpoint, trainable,
                           translate_optimizer)
    from .training.checkpoint import OPTIMIZER_KEYS, find_entry

    optimizer, metadata, step = None, {}, 0
    if args.optimizer is None:
        if args.scheduler or args.no_decay:
            raise UsageError("--orbax: --scheduler and --no-decay describe the checkpoint's "
                             "optimizer, which --optimizer names; give it too")
    elif not args.checkpoint:
        raise UsageError(f"--orbax with --optimizer {args.optimizer!r} needs --checkpoint, a torch "
                         f"training checkpoint holding the optimizer's state")
    else:
        opt, sched, _ = build_recipe(torch_model, args.optimizer, args.scheduler,
                                     args.loss or "CrossEntropyLoss()", args.no_decay)
        try:
            tx = translate_optimizer(opt, torch_model, scheduler=sched)
            checkpoint = io._torch_load(args.checkpoint)
            optimizer = nnx.Optimizer(jax_model, tx, wrt=trainable(opt, torch_model))
            extra = load_training_checkpoint(checkpoint, jax_model, optimizer,
                                             torch_model=torch_model)
        except (RecipeError, OptimizerStateError, StateDictError, io.CheckpointError) as e:
            raise UsageError(f"--orbax: --checkpoint {args.checkpoint} with --optimizer "
                             f"{args.optimizer!r}: {e}") from None
        _, torch_state = find_entry(checkpoint, OPTIMIZER_KEYS, "optimizer state_dict",
                                    args.checkpoint)
        step = _updates(checkpoint, torch_state)
        optimizer.step.set_value(np.asarray(step, optimizer.step.get_value().dtype))
        metadata = {k: v for k, v in extra.items()
                    if isinstance(k, str) and isinstance(v, (bool, int, float, str))}
    try:
        save_checkpoint(args.orbax, jax_model, optimizer, step, metadata=metadata)
    except FileExistsError as e:
        raise UsageError(f"--orbax {args.orbax}: {e}") from None
    held = "model" + (f" and {type(optimizer.tx).__name__} state" if optimizer else "")
    more = "".join(f", {k} {v}" for k, v in metadata.items())
    print(f"orbax checkpoint: {args.orbax} step {step} ({held}{more})")
