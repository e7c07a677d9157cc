"""Checkpoint files: .safetensors without torch, .pt via torch, training checkpoints, save."""
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import equivalence
import jaxconv.nn as jnn
from tests._util import randn


def torch_model():
    n = torch.nn
    return n.Sequential(n.Conv2d(2, 3, 3), n.BatchNorm2d(3), n.Sequential(n.ConvTranspose2d(3, 2, 2, stride=2)))


def jax_model():
    return jnn.Sequential(jnn.Conv2d(2, 3, 3), jnn.BatchNorm2d(3), jnn.Sequential(jnn.ConvTranspose2d(3, 2, 2, stride=2)))


def trained_torch_model():
    torch.manual_seed(1)
    tm = torch_model()
    with torch.no_grad():
        tm(torch.randn(4, 2, 6, 5))  # train-mode step: running stats and the counter move
        tm(torch.randn(4, 2, 6, 5))
    return tm


def assert_matches_torch(jm, tm):
    sd = equivalence.state_dict(jm)
    expected = tm.state_dict()
    assert list(sd) == list(expected)
    for k, v in expected.items():
        assert sd[k].dtype == v.numpy().dtype, k
        assert np.array_equal(sd[k], v.numpy()), k


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_save_then_load_is_bit_exact_and_torch_accepts_it(tmp_path, rng, suffix):
    jm = jax_model()
    for _, var in equivalence.named_variables(jm):
        if jnp.issubdtype(var.get_value().dtype, jnp.floating):
            var.set_value(jnp.asarray(randn(rng, *var.shape, dtype=np.float32)))
    jm[1].num_batches_tracked.set_value(jnp.array(11, jm[1].num_batches_tracked.get_value().dtype))
    path = tmp_path / f"w{suffix}"
    equivalence.save(jm, path)
    original = equivalence.state_dict(jm)

    jm2 = jax_model()
    equivalence.load_state_dict(jm2, path)
    back = equivalence.state_dict(jm2)
    assert list(back) == list(original)
    assert all(np.array_equal(back[k], original[k]) and back[k].dtype == original[k].dtype for k in original)

    tm = torch_model()
    if suffix == ".safetensors":
        weights = safetensors.torch.load_file(path)
    else:
        weights = torch.load(path, weights_only=True)
    tm.load_state_dict(weights)
    assert_matches_torch(jm, tm)
    assert tm[1].num_batches_tracked.dtype == torch.int64 and int(tm[1].num_batches_tracked) == 11


def test_reads_torch_written_files(tmp_path):
    tm = trained_torch_model()
    safetensors.torch.save_file(tm.state_dict(), tmp_path / "m.safetensors")
    torch.save(tm.state_dict(), tmp_path / "m.pth")
    for name in ("m.safetensors", "m.pth"):
        jm = jax_model()
        assert equivalence.load_state_dict(jm, tmp_path / name) == ([], [])
        assert_matches_torch(jm, tm)
        assert int(jm[1].num_batches_tracked[...]) == 2
    assert equivalence.io.read(str(tmp_path / "m.pth"))._metadata["1"]["version"] == 2


def test_training_checkpoints(tmp_path):
    tm = trained_torch_model()
    opt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    tm(torch.randn(2, 2, 6, 5)).sum().backward()
    opt.step()
    torch.save({"epoch": 7, "model_state_dict": tm.state_dict(),
                "optimizer_state_dict": opt.state_dict(), "loss": 0.25}, tmp_path / "ckpt.pt")
    jm = jax_model()
    equivalence.load_state_dict(jm, tmp_path / "ckpt.pt")
    assert_matches_torch(jm, tm)
    # Lightning nests under 'state_dict' and DataParallel prefixes 'module.'
    wrapped = {f"module.{k}": v for k, v in tm.state_dict().items()}
    torch.save({"state_dict": wrapped, "global_step": 3}, tmp_path / "lightning.ckpt")
    jm = jax_model()
    equivalence.load_state_dict(jm, tmp_path / "lightning.ckpt")
    assert_matches_torch(jm, tm)


def test_bad_paths_and_contents(tmp_path):
    jm = jax_model()
    with pytest.raises(ValueError, match=r"unknown checkpoint suffix '\.npz'"):
        equivalence.load_state_dict(jm, tmp_path / "w.npz")
    with pytest.raises(ValueError, match=r"unknown checkpoint suffix '\.txt'"):
        equivalence.save(jm, tmp_path / "w.txt")
    torch.save({"epoch": 1, "lr": 0.1}, tmp_path / "no_weights.pt")
    with pytest.raises(ValueError, match=r"nor a training checkpoint.*'epoch': int"):
        equivalence.load_state_dict(jm, tmp_path / "no_weights.pt")
    torch.save(torch.nn.Linear(1, 1), tmp_path / "pickled_module.pt")
    with pytest.raises(Exception, match="weights_only"):  # torch refuses arbitrary pickles
        equivalence.load_state_dict(jm, tmp_path / "pickled_module.pt")
    tm = torch_model()
    safetensors.torch.save_file({k: v for k, v in tm.state_dict().items() if k != "0.bias"},
                                tmp_path / "partial.safetensors")
    before = equivalence.state_dict(jm)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "0.bias"'):
        equivalence.load_state_dict(jm, tmp_path / "partial.safetensors")
    assert all(np.array_equal(v, equivalence.state_dict(jm)[k]) for k, v in before.items())


def test_safetensors_metadata(tmp_path):
    equivalence.save(jnn.Conv2d(1, 1, 1), tmp_path / "m.safetensors", metadata={"source": "test"})
    from safetensors import safe_open

    with safe_open(tmp_path / "m.safetensors", framework="numpy") as f:
        assert f.metadata() == {"format": "pt", "source": "test"}


NO_TORCH = textwrap.dedent("""
    import sys
    sys.modules['torch'] = None  # any `import torch` now raises ImportError
    import numpy as np, safetensors.numpy
    import equivalence, jaxconv.nn as jnn
    from equivalence import examples
    path, pt_path = sys.argv[1], sys.argv[2]
    w = np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1) / 7
    safetensors.numpy.save_file({'weight': w, 'bias': np.array([0.5, -1.5], np.float32)}, path)
    m = jnn.Conv2d(3, 2, 1)
    print(equivalence.load_state_dict(m, path))
    assert np.array_equal(np.asarray(m.weight[...]), w)
    equivalence.save(m, path)
    for call in (lambda: equivalence.load_state_dict(m, pt_path), lambda: equivalence.save(m, pt_path),
                 examples.residual_cnn_torch):
        try:
            call()
        except ImportError as e:
            assert "pip install 'jaxconv[torch]'" in str(e), e
            print('ImportError:', e)
        else:
            raise AssertionError('no ImportError')
    assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]
""")


def test_import_and_safetensors_without_torch(tmp_path):
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(tmp_path / "w.safetensors"),
                             str(tmp_path / "w.pt")], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr
    assert "<All keys matched successfully>" in result.stdout
    assert result.stdout.count("ImportError: ") == 3


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_honour_the_umask(tmp_path, suffix, umask):
    # safetensors writes a private temporary file and renames it: the mode must still be umask's
    old = os.umask(umask)
    try:
        equivalence.io.write({"w": np.arange(3.0)}, tmp_path / f"w{suffix}")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / f"w{suffix}").st_mode & 0o777 == 0o666 & ~umask
