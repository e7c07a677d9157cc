"""``jaxconv-port translate``: source, weights and certificate; exit 0 / 1 / 2."""
import json
import os
import subprocess
import sys

import torch


ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def _run(*args):
    return subprocess.run([sys.executable, "-m", "equivalence", "translate", *args],
                          capture_output=True, text=True, env=ENV, timeout=300)


def test_translate_writes_source_weights_and_a_passing_certificate(tmp_path):
    from equivalence import examples, io

    ckpt = tmp_path / "dcgan.pt"
    torch.save(examples.dcgan_generator_torch(seed=4).state_dict(), ckpt)
    out = tmp_path / "out"
    proc = _run("--torch", "equivalence.examples:dcgan_generator_torch", "--checkpoint", str(ckpt),
                "--input-shape", "2,100,1,1", "--out", str(out), "--train")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "class Generator(nn.Module)" in (out / "model.py").read_text()
    cert = json.loads((out / "certificate.json").read_text())
    assert cert["verdict"] == "PASS" and cert["mode"] == "train"
    weights = io.read(out / "model.safetensors")
    for k, v in torch.load(ckpt).items():   # the compared weights, from the checkpoint
        assert (weights[k] == v.numpy()).all(), k


def test_a_wrong_translation_fails_with_exit_1(tmp_path):
    out = tmp_path / "out"
    proc = _run("--torch", "tests.translate._user:wrongly_registered", "--input-shape", "1,3,8,8",
                "--out", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert json.loads((out / "certificate.json").read_text())["verdict"] == "FAIL"
    assert "first divergence at 1 (TorchScale" in proc.stdout     # the layer is named


def test_an_untranslatable_model_exits_2_listing_the_ops(tmp_path):
    proc = _run("--torch", "tests.translate._user:untranslatable", "--input-shape", "1,3,8,8",
                "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "torch.fft.fft2" in proc.stderr and not (tmp_path / "out").exists()


def test_a_bad_checkpoint_exits_2_naming_it(tmp_path, capsys):
    from equivalence import cli, examples

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    wrong = tmp_path / "wrong.pt"
    torch.save(examples.cifar_net_torch().state_dict(), wrong)
    cases = [(tmp_path / "missing.pt", "missing.pt"), (corrupt, "corrupt.safetensors"),
             (wrong, "does not fit equivalence.examples:dcgan_generator_torch")]
    for path, said in cases:
        status = cli.main(["translate", "--torch", "equivalence.examples:dcgan_generator_torch",
                           "--checkpoint", str(path), "--input-shape", "2,100,1,1",
                           "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert status == 2 and err.startswith("error: --checkpoint") and said in err, err
        assert "Traceback" not in err and not (tmp_path / "out").exists()
