"""The main job end to end, in subprocesses: no arguments (the demo), port and check."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from equivalence import cli, examples
from tests.equivalence import _unseeded

# this checkout's packages first, also where another checkout is the one installed (worktrees)
ROOT = str(Path(__file__).resolve().parents[2])
ENV = {**os.environ, "JAX_PLATFORMS": "cpu",
       "PYTHONPATH": os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])}


def _run(*args, timeout=240, cwd=None):
    return subprocess.run([sys.executable, "-m", "equivalence", *args], capture_output=True,
                          text=True, env=ENV, timeout=timeout, cwd=cwd)


def test_the_demo_without_its_training(tmp_path):
    """``python -m equivalence`` is ``demo``; its port and proof (training: the slow test below
    and tests/equivalence/test_cli_training.py)."""
    proc = _run("demo", "--train-steps", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "residual CNN" in out and "equivalence.translate (no hand-written twin)" in out
    source = tmp_path / "translated" / "residual_cnn" / "model.py"
    assert f"{os.path.join('translated', 'residual_cnn', 'model.py')}" in out and source.exists()
    assert "class ResidualBlock(nn.Module)" in source.read_text()
    assert json.loads((source.parent / "certificate.json").read_text())["verdict"] == "PASS"
    assert "gradients of sum(output * cotangent)" in out and "resblock2.conv2.weight" in out
    verdict = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert verdict and verdict[-1].startswith("PASS: ")
    assert "compare_training" not in out and not (source.parent / "training_certificate.json").exists()


@pytest.mark.slow
def test_no_arguments_runs_the_demo_with_its_training(tmp_path):
    """The whole main job: port, proof, then 24 steps of AdamW (no-decay groups), OneCycleLR,
    label smoothing and clipping in both frameworks, every step checked (about 3 min)."""
    proc = _run(cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "--no-decay --scheduler 'OneCycleLR(max_lr=3e-3, total_steps=24)'" in out
    assert ("compare_training: ResidualCNN (torch) vs ResidualCNN (jaxconv), AdamW, scheduler "
            "OneCycleLR, loss CrossEntropyLoss, max_grad_norm 1.0, 24 steps") in out
    folder = tmp_path / "translated" / "residual_cnn"
    cert = json.loads((folder / "training_certificate.json").read_text())
    assert cert["verdict"] == "PASS" and len(cert["steps"]) == 24
    assert len(cert["steps"][0]["lr"]) == 2      # the no-decay groups
    assert json.loads((folder / "certificate.json").read_text())["verdict"] == "PASS"
    verdict = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert [v.split(":")[0] for v in verdict] == ["PASS", "PASS"]
    assert verdict[1].startswith("PASS: 24 steps, ")


@pytest.fixture
def cifar_checkpoint(tmp_path):
    model = examples.cifar_net_torch(seed=3)
    path = tmp_path / "cifar.pt"
    torch.save({"epoch": 3, "state_dict": model.state_dict()}, path)  # a training checkpoint
    return path, model


def test_port_writes_checkpoint_and_certificate(tmp_path, cifar_checkpoint):
    ckpt, model = cifar_checkpoint
    out = tmp_path / "out"
    plot = tmp_path / "plot.png"
    proc = _run("port", "--torch", "equivalence.examples:cifar_net_torch",
                "--jax", "equivalence.examples:cifar_net_jax", "--checkpoint", str(ckpt),
                "--input-shape", "2,3,32,32", "--out", str(out), "--grads", "--seed", "5",
                "--plot", str(plot))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cert = json.loads((out / "certificate.json").read_text())
    assert cert["verdict"] == "PASS" and cert["seed"] == 5 and cert["grads"] is True
    assert cert["inputs"][0]["shape"] == [2, 3, 32, 32]
    # the written jaxconv checkpoint is the torch checkpoint, loadable by torch
    from safetensors.torch import load_file

    exported = load_file(str(out / "model.safetensors"))
    fresh = examples.cifar_net_torch(seed=99)
    fresh.load_state_dict(exported, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(exported[k], v), k
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_compares_and_writes_only_what_is_asked(tmp_path, cifar_checkpoint):
    ckpt, _ = cifar_checkpoint
    js = tmp_path / "c.json"
    proc = _run("check", "--torch", "equivalence.examples:cifar_net_torch",
                "--jax", "equivalence.examples:cifar_net_jax", "--checkpoint", str(ckpt),
                "--input-shape", "1,3,32,32", "--json", str(js), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("PASS") and json.loads(js.read_text())["verdict"] == "PASS"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "cifar.pt"]


def test_check_under_autocast(tmp_path, cifar_checkpoint):
    ckpt, _ = cifar_checkpoint
    js = tmp_path / "c.json"
    proc = _run("check", "--torch", "equivalence.examples:cifar_net_torch",
                "--jax", "equivalence.examples:cifar_net_jax", "--checkpoint", str(ckpt),
                "--input-shape", "1,3,32,32", "--json", str(js), "--autocast", "bfloat16")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "autocast bfloat16" in proc.stdout.splitlines()[0]
    cert = json.loads(js.read_text())
    assert cert["verdict"] == "PASS" and cert["autocast"] == "bfloat16"
    assert "bfloat16" in {r["dtype"] for r in cert["rows"]}


def test_usage_errors(capsys):
    assert cli.main(["check", "--torch", "nocolon", "--jax", "a:b", "--input-shape", "1,2"]) == 2
    assert capsys.readouterr().err == "error: expected 'module:factory', got 'nocolon'\n"
    assert cli.main(["check", "--torch", "a:b", "--jax", "a:b", "--input-shape", "1,2"]) == 2
    assert "error: cannot import 'a' (from 'a:b')" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's own usage error
        cli.main(["check", "--torch", "a:b", "--jax", "a:b", "--input-shape", "1,-2"])
    with pytest.raises(SystemExit, match="has no attribute"):
        cli._load_factory("equivalence.examples:nope")


def test_text_progress_bar(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the fallback bar, without tqdm
    bar = cli._Progress(True)
    for i in range(11):
        bar(i, 10, f"layer{i}")
    err = capsys.readouterr().err
    assert "[" + "#" * 30 + "] 10/10" in err and "0/10" in err


def test_console_script_jaxconv_port_is_installed_and_runs():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "jaxconv-port"]
    from equivalence.cli import main
    assert ep.load() is main
    script = Path(sys.executable).with_name("jaxconv-port")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "port" in proc.stdout and "check" in proc.stdout


def test_port_train_exports_the_weights_it_compared(tmp_path, monkeypatch, capsys):
    """Without --checkpoint and with --train: the exported file holds the torch model's weights
    as they were compared (before the training forward moved BatchNorm's statistics), from the
    one model built, even when the factory draws new weights on every call."""
    from safetensors.torch import load_file

    built = tmp_path / "built"
    built.mkdir()
    monkeypatch.setenv("EQUIVALENCE_TEST_BUILT", str(built))
    out = tmp_path / "out"
    status = cli.main(["port", "--torch", "tests.equivalence._unseeded:torch_model",
                       "--jax", "tests.equivalence._unseeded:jax_model", "--train",
                       "--input-shape", "3,3,7,6", "--out", str(out), "--quiet"])
    assert status == 0, capsys.readouterr().out
    (compared_file,) = sorted(built.iterdir())  # one torch model: the one compared
    compared = torch.load(compared_file, weights_only=True)
    exported = load_file(str(out / "model.safetensors"))
    assert sorted(exported) == sorted(compared)  # safetensors files do not keep the order
    for k, v in compared.items():
        assert exported[k].dtype == v.dtype and torch.equal(exported[k], v), k
    # the training forward did move the statistics, so the test can tell the two apart
    monkeypatch.delenv("EQUIVALENCE_TEST_BUILT")
    model = _unseeded.torch_model()
    model.load_state_dict(compared)
    with torch.no_grad():
        model.train()(torch.randn(3, 3, 7, 6))
    assert not torch.equal(model.state_dict()["1.running_mean"], compared["1.running_mean"])
