"""Bad checkpoint files: each raises our own error naming the file (and the key, where there is
one), with the original error as ``__cause__``, and leaves the module bit-identical."""
import ast
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch

import equivalence
import jaxconv.nn as jnn
from equivalence import CheckpointError, StateDictError, io


def torch_model():
    torch.manual_seed(4)
    n = torch.nn
    model = n.Sequential(n.Conv2d(2, 3, 3), n.BatchNorm2d(3))
    with torch.no_grad():
        model(torch.randn(2, 2, 5, 6))  # running statistics and the counter move
    return model


def jax_model():
    """A twin holding random weights of its own, so that 'unchanged' is a real check."""
    model = jnn.Sequential(jnn.Conv2d(2, 3, 3), jnn.BatchNorm2d(3))
    equivalence.load_state_dict(model, torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3),
                                                           torch.nn.BatchNorm2d(3)))
    return model


def refused(path, error=CheckpointError, **kwargs):
    """Load ``path`` into a twin: the error names the file and the twin is bit-identical."""
    model = jax_model()
    before = equivalence.state_dict(model)
    with pytest.raises(error) as err:
        equivalence.load_state_dict(model, path, **kwargs)
    after = equivalence.state_dict(model)
    assert list(after) == list(before)
    for k in before:
        assert after[k].dtype == before[k].dtype and np.array_equal(after[k], before[k]), k
    assert str(path) in str(err.value), err.value
    if error is CheckpointError:
        assert err.value.path == str(path)
    return err.value


@pytest.fixture
def safetensors_file(tmp_path):
    path = tmp_path / "good.safetensors"
    safetensors.torch.save_file(torch_model().state_dict(), path)
    return path


@pytest.fixture
def pt_file(tmp_path):
    path = tmp_path / "good.pt"
    torch.save(torch_model().state_dict(), path)
    return path


def test_the_good_files_load(safetensors_file, pt_file):
    for path in (safetensors_file, pt_file):
        model = jax_model()
        equivalence.load_state_dict(model, path)
        expected = torch_model().state_dict()
        for k, v in equivalence.state_dict(model).items():
            assert np.array_equal(v, expected[k].numpy()), (path, k)


@pytest.mark.parametrize("keep", [0, 7, 8, 60, -1], ids=["empty", "7-bytes", "8-bytes", "header", "last-byte"])
def test_truncated_safetensors(tmp_path, safetensors_file, keep):
    data = safetensors_file.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    err = refused(path)
    assert "truncated, corrupt or not in that format" in str(err)
    assert isinstance(err.__cause__, safetensors.SafetensorError)


def test_garbage_safetensors(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    assert isinstance(refused(path).__cause__, safetensors.SafetensorError)


@pytest.mark.parametrize("kind", ["half", "last-byte", "empty", "garbage", "legacy-half"])
def test_truncated_or_corrupt_pt(tmp_path, pt_file, kind):
    data = pt_file.read_bytes()
    if kind == "legacy-half":  # torch's pre-zip format
        torch.save(torch_model().state_dict(), pt_file, _use_new_zipfile_serialization=False)
        data = pt_file.read_bytes()
    path = tmp_path / "bad.pt"
    path.write_bytes({"half": data[:len(data) // 2], "legacy-half": data[:len(data) // 2],
                      "last-byte": data[:-1], "empty": b"",
                      "garbage": np.random.default_rng(1).integers(0, 256, 400, dtype=np.uint8).tobytes(),
                      }[kind])
    err = refused(path)
    assert "cannot read" in str(err) and "truncated, corrupt" in str(err)
    assert err.__cause__ is not None


class RunsCode:
    """Unpickling this calls os.system: a file that would run code on load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo ran > '{self.marker}'",))


class BuildsObject:
    """Unpickling this imports a class of this test module and builds it."""

    def __reduce__(self):
        return (BuildsObject, ())


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"0.weight": torch.randn(3, 2, 3, 3), "payload": RunsCode(marker)}, path)
    assert not marker.exists()
    err = refused(path)
    message = str(err)
    assert "refused to load" in message and "run code" in message and "weights_only=True" in message
    assert "system" in message  # what it would have called
    assert isinstance(err.__cause__, pickle.UnpicklingError)
    assert not marker.exists()
    torch.save([BuildsObject()], tmp_path / "object.pt")
    assert "refused to load" in str(refused(tmp_path / "object.pt"))
    # the file is real: a trusting load does run its code
    torch.load(path, weights_only=False)
    assert marker.read_text().strip() == "ran"


@pytest.mark.parametrize("content, described", [
    ([torch.randn(2)], "holds a list"),
    (torch.randn(3, 2, 3, 3), "holds a Tensor"),
    (7, "holds a int"),
    ({"epoch": 1, "lr": 0.1}, "holds no weights.*'epoch': int, 'lr': float"),
    ({"model": {"depth": 3}}, "holds no weights.*'depth': int"),
])
def test_pt_that_holds_no_state_dict(tmp_path, content, described):
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    assert re.search(described, str(refused(path)))


def test_non_string_key(tmp_path):
    path = tmp_path / "intkeys.pt"
    torch.save({0: torch.randn(3), "0.bias": torch.randn(3)}, path)
    err = refused(path)
    assert err.key == 0 and "the key 0 is a int, not a str" in str(err)


def test_non_tensor_entries_are_named_with_the_file(tmp_path):
    sd = dict(torch_model().state_dict())
    sd["0.bias"] = "hello"
    sd["1.running_var"] = [1.0, 2.0, 3.0]
    path = tmp_path / "strings.pt"
    torch.save(sd, path)
    with pytest.raises(RuntimeError) as torch_err:  # torch refuses the same entries
        torch_model().load_state_dict(torch.load(path, weights_only=True))
    assert '"0.bias"' in str(torch_err.value) and '"1.running_var"' in str(torch_err.value)
    for strict in (True, False):
        err = refused(path, StateDictError, strict=strict)
        lines = str(err).splitlines()
        assert lines[0] == f"Error(s) in loading state_dict for Sequential from {str(path)!r}:"
        assert lines[1:] == ["\tvalue for 0.bias is not an array (got str).",
                             "\tvalue for 1.running_var is not an array (got list)."]
    # a non-tensor entry the module does not expect is only an unexpected key, as in torch
    sd = dict(torch_model().state_dict(), epoch=3)
    torch.save(sd, path)
    result = equivalence.load_state_dict(jax_model(), path, strict=False)
    assert result == ([], ["epoch"]) == tuple(torch_model().load_state_dict(
        torch.load(path, weights_only=True), strict=False))


def test_unknown_suffix_and_missing_file(tmp_path):
    for call in (lambda p: equivalence.load_state_dict(jax_model(), p),
                 lambda p: equivalence.save(jax_model(), p), io.read,
                 lambda p: io.write({"a": np.zeros(1)}, p)):
        with pytest.raises(CheckpointError, match=r"unknown checkpoint suffix '\.npz' of '.*w\.npz'"):
            call(tmp_path / "w.npz")
    with pytest.raises(FileNotFoundError, match="nothere"):
        io.read(tmp_path / "nothere.safetensors")
    with pytest.raises(FileNotFoundError, match="nothere"):
        io.read(tmp_path / "nothere.pt")


def test_write_names_the_bad_entry(tmp_path):
    for bad in ({"a": np.zeros(2), "b": "text"}, {"a": np.zeros(2), 3: np.zeros(1)}):
        path = tmp_path / "w.safetensors"
        with pytest.raises(CheckpointError, match=r"cannot write '.*w\.safetensors': the entry ('b'|3)"):
            io.write(bad, path)
        assert not path.exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_read_write_round_trip(tmp_path, suffix):
    import ml_dtypes

    rng = np.random.default_rng(2)
    weights = {"z.weight": rng.standard_normal((3, 2, 2)).astype(np.float32),
               "a.half": rng.standard_normal(5).astype(ml_dtypes.bfloat16),
               "m.count": np.array(12, np.int64),
               "m.wide": rng.standard_normal((2, 3)).T}  # not C-contiguous
    path = tmp_path / f"w{suffix}"
    io.write(weights, path)
    back = io.read(path)
    assert sorted(back) == sorted(weights)
    if suffix == ".pt":
        assert list(back) == list(weights)  # torch files keep the order
    for k, v in weights.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v), k


def test_io_depends_on_no_other_part_of_equivalence():
    """No cycle: io imports only the torch helpers; state_dict imports io, never the reverse."""
    for name, allowed in (("io", {"_torch"}), ("_torch", set())):
        tree = ast.parse((Path(equivalence.__file__).parent / f"{name}.py").read_text())
        local = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
        local |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level
                  and not n.module for a in n.names}
        assert local <= allowed, (name, local)
    assert equivalence.CheckpointError is io.CheckpointError and issubclass(CheckpointError, ValueError)
