"""The command line's training check (equivalence.cli_training): the recipe options parsed
without evaluating anything, the random batches, and a small model trained through the CLI,
passing and failing."""
import json

import numpy as np
import pytest
import torch

from equivalence import cli, cli_training
from equivalence.cli import UsageError
from tests.equivalence import _training_twins as twins

TWINS = ["--torch", "tests.equivalence._training_twins:torch_model", "--input-shape", twins.SHAPE]


@pytest.mark.parametrize("option, text, cls, args, kwargs", [
    ("--optimizer", "AdamW(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.05)", torch.optim.AdamW, [],
     {"lr": 1e-3, "betas": (0.9, 0.99), "weight_decay": 0.05}),
    ("--optimizer", " SGD ", torch.optim.SGD, [], {}),
    ("--scheduler", "StepLR(10, gamma=-0.5e-1)", torch.optim.lr_scheduler.StepLR, [10], {"gamma": -0.05}),
    ("--scheduler", "ReduceLROnPlateau(mode='min', patience=2)",
     torch.optim.lr_scheduler.ReduceLROnPlateau, [], {"mode": "min", "patience": 2}),
    ("--loss", "CrossEntropyLoss(label_smoothing=0.1, weight=None)", torch.nn.CrossEntropyLoss, [],
     {"label_smoothing": 0.1, "weight": None}),
])
def test_parse_call_accepts_class_calls_with_literals(option, text, cls, args, kwargs):
    assert cli_training.parse_call(text, option) == (cls, args, kwargs)


@pytest.mark.parametrize("option, text, message", [
    ("--optimizer", "AdamW(lr=1e-3", "--optimizer 'AdamW(lr=1e-3': not a Python expression ("),
    ("--optimizer", "AdamW(lr=__import__('os').getpid())",
     "argument \"lr=__import__('os').getpid()\" is not a literal"),
    ("--optimizer", "AdamW(**{'lr': 1e-3})", "argument \"**={'lr': 0.001}\" is not a literal"),
    ("--optimizer", "AdamW(x)", "argument 'x' is not a literal"),
    ("--optimizer", "torch.optim.AdamW(lr=1e-3)",
     "expected a torch.optim class called with literal arguments, e.g. 'AdamW(lr=1e-3, weight_decay=0.05)'"),
    ("--optimizer", "Adamw(lr=1e-3)", "'Adamw' is not a Optimizer class of torch.optim"),
    ("--optimizer", "Optimizer({})", "'Optimizer' is not a Optimizer class of torch.optim"),
    ("--optimizer", "lr_scheduler(1)", "'lr_scheduler' is not a Optimizer class of torch.optim"),
    ("--scheduler", "AdamW()", "'AdamW' is not a scheduler class of torch.optim.lr_scheduler"),
    ("--loss", "Linear(2, 3)", "'Linear' is not a loss class of torch.nn"),
    ("--loss", "1 + 2", "--loss '1 + 2': expected a torch.nn class"),
])
def test_parse_call_refuses_everything_else_naming_the_option(option, text, message):
    with pytest.raises(UsageError) as e:
        cli_training.parse_call(text, option)
    assert e.value.message.startswith(f"{option} {text!r}: ") and message in e.value.message


def test_build_recipe_no_decay_groups_and_torchs_own_refusals():
    model = twins.torch_model()
    opt, sched, loss = cli_training.build_recipe(
        model, "AdamW(lr=1e-3, weight_decay=0.05)", "OneCycleLR(max_lr=1e-2, total_steps=5)",
        "CrossEntropyLoss(label_smoothing=0.1)", no_decay=True)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [([names[id(p)] for p in g["params"]], g["weight_decay"]) for g in opt.param_groups] == [
        (["1.weight", "1.bias", "4.bias"], 0.0), (["0.weight", "4.weight"], 0.05)]
    assert isinstance(sched, torch.optim.lr_scheduler.OneCycleLR) and loss.label_smoothing == 0.1
    _, _, _ = cli_training.build_recipe(model, "Adam", None, "MSELoss()", no_decay=True)  # default wd
    with pytest.raises(UsageError, match=r"^--optimizer 'AdamW\(lr=-1.0\)': torch's AdamW refuses "
                                         r"it: Invalid learning rate: -1.0"):
        cli_training.build_recipe(model, "AdamW(lr=-1.0)", None, "MSELoss()", no_decay=False)
    with pytest.raises(UsageError, match=r"^--scheduler 'StepLR\(gamma=0.5\)': torch's StepLR "
                                         r"refuses it: .*step_size"):
        cli_training.build_recipe(model, "SGD(lr=0.1)", "StepLR(gamma=0.5)", "MSELoss()", no_decay=False)
    with pytest.raises(UsageError, match="^--no-decay: torch.optim.LBFGS has no weight_decay"):
        cli_training.build_recipe(model, "LBFGS()", None, "MSELoss()", no_decay=True)


def test_random_targets_fit_the_loss():
    rng = np.random.default_rng(0)
    y = cli_training.random_targets(torch.nn.CrossEntropyLoss(), (6, 5, 3), rng)
    assert y.shape == (6, 3) and y.dtype.kind == "i" and y.min() >= 0 and y.max() <= 4 and len(set(y.flat)) > 2
    y = cli_training.random_targets(torch.nn.MSELoss(), (6, 5), rng)
    assert y.shape == (6, 5) and y.dtype == np.float32 and y.min() < 0 < y.max()
    y = cli_training.random_targets(torch.nn.BCEWithLogitsLoss(), (6, 5), rng)
    assert y.dtype == np.float32 and 0 <= y.min() and y.max() < 1
    with pytest.raises(UsageError, match=r"^--loss NLLLoss: needs an output with a class dimension "
                                         r"\(N, C, ...\), the model gives shape \(6,\)"):
        cli_training.random_targets(torch.nn.NLLLoss(), (6,), rng)
    with pytest.raises(UsageError, match="^--loss KLDivLoss: the training check draws random "
                                         "targets only for CrossEntropyLoss, NLLLoss, MSELoss"):
        cli_training.random_targets(torch.nn.KLDivLoss(), (6, 5), rng)


def test_training_options_need_each_other(capsys):
    jax = ["--jax", "tests.equivalence._training_twins:jax_model"]
    assert cli.main(["check", *TWINS, *jax, "--optimizer", "SGD(lr=0.1)", "--no-decay"]) == 2
    assert capsys.readouterr().err == ("error: --optimizer, --no-decay given without --train-steps N "
                                       "(N > 0): the training check runs only with --train-steps\n")
    assert cli.main(["check", *TWINS, *jax, "--train-steps", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: --train-steps 2 needs --optimizer, e.g. --optimizer")
    with pytest.raises(SystemExit):  # argparse's own usage errors
        cli.main(["check", *TWINS, *jax, "--train-steps", "-1"])
    with pytest.raises(SystemExit):
        cli.main(["check", *TWINS, *jax, "--train-steps", "2", "--max-grad-norm", "0"])


RECIPE = ["--train-steps", "3", "--optimizer", "AdamW(lr=1e-2, weight_decay=0.05)", "--no-decay",
          "--scheduler", "OneCycleLR(max_lr=1e-2, total_steps=3, div_factor=4.0)",
          "--loss", "CrossEntropyLoss(label_smoothing=0.1)", "--max-grad-norm", "0.5", "--batches", "2"]


def test_port_with_a_training_check_passes_and_writes_its_certificate(tmp_path, capsys):
    out = tmp_path / "out"
    status = cli.main(["port", *TWINS, "--jax", "tests.equivalence._training_twins:jax_model",
                       "--out", str(out), "--train", *RECIPE])
    text = capsys.readouterr().out
    assert status == 0, text
    assert "compare_training: Sequential (torch) vs Sequential (jaxconv), AdamW, scheduler OneCycleLR, " \
           "loss CrossEntropyLoss, max_grad_norm 0.5, 3 steps" in text
    assert f"training certificate: {out / 'training_certificate.json'}" in text
    cert = json.loads((out / "training_certificate.json").read_text())
    assert cert["verdict"] == "PASS" and len(cert["steps"]) == 3
    assert cert["recipe"]["max_grad_norm"] == 0.5 and cert["recipe"]["scheduler"] == "OneCycleLR"
    sched = torch.optim.lr_scheduler.OneCycleLR(torch.optim.SGD([torch.zeros(1)]), max_lr=1e-2,
                                                total_steps=3, div_factor=4.0)
    lrs = []
    for _ in range(3):
        lrs.append(sched.get_last_lr() * 2)   # two groups: with and without weight decay
        sched.optimizer.step(), sched.step()
    assert [s["lr"] for s in cert["steps"]] == lrs
    assert json.loads((out / "certificate.json").read_text())["verdict"] == "PASS"


def test_check_with_a_planted_bug_fails_at_the_buffer(tmp_path, capsys):
    """A twin with BatchNorm momentum inverted passes the (eval) forward check; the training
    check fails at step 0's running statistics, exit status 1, certificates beside --json/--plot."""
    js, plot = tmp_path / "c.json", tmp_path / "p.png"
    status = cli.main(["check", *TWINS, "--jax", "tests.equivalence._training_twins:jax_model_inverted_momentum",
                       "--json", str(js), "--plot", str(plot), "--quiet", *RECIPE])
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    verdicts = [line for line in out if line.startswith(("PASS", "FAIL"))]
    assert verdicts[0].startswith("PASS: ") and verdicts[1].startswith("FAIL: ")  # forward, training
    assert "first divergence at step 0, buffer of 1.running_mean (running_mean)" in verdicts[1]
    cert = json.loads((tmp_path / "c.training.json").read_text())
    assert cert["verdict"] == "FAIL" and cert["first_divergence"]["name"] == "1.running_mean"
    assert (tmp_path / "p.training.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(js.read_text())["verdict"] == "PASS"
