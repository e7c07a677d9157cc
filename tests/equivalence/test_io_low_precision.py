"""bfloat16 / float16 checkpoints: ``.safetensors`` and ``.pt`` round trips keep every bit
(subnormals, infinities, signed zeros, NaN payloads, signalling NaNs), with and without torch,
in both directions between jaxconv and torch."""
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.torch
import torch

import equivalence
import jaxconv.nn as jnn

DTYPES = {"bfloat16": (jnp.bfloat16, torch.bfloat16), "float16": (jnp.float16, torch.float16)}
#: +0, -0, +inf, -inf, smallest subnormal, -largest subnormal, quiet NaN, quiet NaN with a
#: payload, negative signalling NaN with a payload, signalling NaN.
SPECIAL = {"bfloat16": [0x0000, 0x8000, 0x7F80, 0xFF80, 0x0001, 0x807F, 0x7FC0, 0x7FC1, 0xFFA5, 0x7F81],
           "float16": [0x0000, 0x8000, 0x7C00, 0xFC00, 0x0001, 0x83FF, 0x7E00, 0x7E01, 0xFD55, 0x7C01]}
SPECIAL32 = [0x80000000, 0x7FC00123, 0xFF800001, 0x00000001, 0xFF800000]  # -0, NaNs, subnormal, -inf


def special(rng, shape, name):
    """Random normal values of ``name``'s dtype with every special value at random places
    (``shape`` holds at least 10 elements)."""
    jdtype = DTYPES[name][0] if name in DTYPES else np.float32
    flat = (rng.standard_normal(int(np.prod(shape))) * 3).astype(jdtype)
    bits = flat.view(np.uint32 if name == "float32" else np.uint16)
    specials = SPECIAL32 if name == "float32" else SPECIAL[name]
    bits[rng.choice(bits.size, len(specials), replace=False)] = specials
    return flat.reshape(shape)


def bits(array):
    """The raw bit patterns of a numpy array or torch tensor, as unsigned integers."""
    if isinstance(array, torch.Tensor):
        array = array.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[array.element_size()]).numpy()
    array = np.asarray(array)
    return array.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[array.itemsize])


def jax_model(name, conv_dtype=None):
    """A conv of the dtype under test and a float32 BatchNorm: mixed dtypes in one file."""
    dtype = DTYPES[name][0] if conv_dtype is None else conv_dtype
    return jnn.Sequential(jnn.Conv2d(3, 12, 3, dtype=dtype), jnn.BatchNorm2d(12))


def filled(rng, name):
    """A :func:`jax_model` holding special values; returns it and its state_dict."""
    model = jax_model(name)
    for key, var in equivalence.named_variables(model):
        if key.startswith("0."):
            var.set_value(jnp.asarray(special(rng, var.shape, name)))
        elif "num_batches" not in key:
            var.set_value(jnp.asarray(special(rng, var.shape, "float32")))
    model[1].num_batches_tracked.set_value(jnp.array(9, model[1].num_batches_tracked.get_value().dtype))
    return model, equivalence.state_dict(model)


def assert_same_bits(actual, expected, ordered=True):
    """Same names (in the same order, where ``ordered``), dtypes and bit patterns."""
    assert (list(actual) == list(expected)) if ordered else (sorted(actual) == sorted(expected))
    for key, value in expected.items():
        got = actual[key]
        got_dtype = np.dtype(str(got.dtype).removeprefix("torch.")) if isinstance(got, torch.Tensor) else got.dtype
        assert got_dtype == value.dtype, (key, got_dtype, value.dtype)
        assert np.array_equal(bits(got), bits(value)), key


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_jaxconv_round_trip_and_torch_reads_it(tmp_path, rng, name, suffix):
    model, expected = filled(rng, name)
    assert expected["0.weight"].dtype == DTYPES[name][0] and expected["1.running_var"].dtype == np.float32
    path = tmp_path / f"w{suffix}"
    equivalence.save(model, path)
    fresh = jax_model(name)
    assert equivalence.load_state_dict(fresh, path) == ([], [])
    assert_same_bits(equivalence.state_dict(fresh), expected)
    ordered = suffix == ".pt"  # a .safetensors header lists its tensors sorted by name
    assert_same_bits(equivalence.io.read(path), expected, ordered)
    loaded = safetensors.torch.load_file(path) if suffix == ".safetensors" else torch.load(path, weights_only=True)
    assert loaded["0.weight"].dtype == DTYPES[name][1] and loaded["0.bias"].dtype == DTYPES[name][1]
    assert_same_bits(loaded, expected, ordered)


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_jaxconv_reads_torch_written_files(tmp_path, rng, name, suffix):
    torch.manual_seed(3)
    tm = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3), torch.nn.BatchNorm2d(12))
    tm[0].to(DTYPES[name][1])
    with torch.no_grad():
        for key, tensor in tm.state_dict().items():
            if key.startswith("0."):
                tensor.view(torch.int16).copy_(torch.from_numpy(special(rng, tensor.shape, name).view(np.int16)))
            elif "num_batches" not in key:
                tensor.copy_(torch.from_numpy(special(rng, tensor.shape, "float32")))
    path = tmp_path / f"t{suffix}"
    (safetensors.torch.save_file if suffix == ".safetensors" else torch.save)(tm.state_dict(), path)
    model = jax_model(name)
    assert equivalence.load_state_dict(model, path) == ([], [])
    assert_same_bits(tm.state_dict(), equivalence.state_dict(model))


NO_TORCH = textwrap.dedent("""
    import sys
    sys.modules['torch'] = None  # any `import torch` now raises ImportError
    import jax.numpy as jnp, ml_dtypes, numpy as np
    import equivalence, jaxconv.nn as jnn
    weight_bits, path, pt_path = np.load(sys.argv[1]), sys.argv[2], sys.argv[3]
    model = jnn.Conv2d(3, 4, 3, dtype=jnp.bfloat16)
    model.weight.set_value(jnp.asarray(weight_bits.view(ml_dtypes.bfloat16)))
    equivalence.save(model, path)
    fresh = jnn.Conv2d(3, 4, 3, dtype=jnp.bfloat16)
    print(equivalence.load_state_dict(fresh, path))
    back = np.asarray(fresh.weight[...])
    assert back.dtype == ml_dtypes.bfloat16 and np.array_equal(back.view(np.uint16), weight_bits)
    try:
        equivalence.load_state_dict(fresh, pt_path)
    except ImportError as err:
        print('ImportError:', err)
    assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]
""")


def test_bfloat16_safetensors_without_torch(tmp_path, rng):
    weight_bits = bits(special(rng, (4, 3, 3, 3), "bfloat16"))
    np.save(tmp_path / "bits.npy", weight_bits)
    torch.save({"weight": torch.zeros(4, 3, 3, 3, dtype=torch.bfloat16)}, tmp_path / "w.pt")
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *(str(tmp_path / f) for f in
                             ("bits.npy", "w.safetensors", "w.pt"))], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr
    assert "<All keys matched successfully>" in result.stdout
    assert f"reading the torch checkpoint {str(tmp_path / 'w.pt')!r} needs PyTorch" in result.stdout
    assert "pip install 'jaxconv[torch]'" in result.stdout
    written = safetensors.torch.load_file(tmp_path / "w.safetensors")
    assert written["weight"].dtype == torch.bfloat16
    assert np.array_equal(bits(written["weight"]), weight_bits)


@pytest.mark.parametrize("name", DTYPES)
def test_low_precision_into_float32_widens_as_torch_copy(tmp_path, rng, name):
    _, source = filled(rng, name)
    path = tmp_path / "w.safetensors"
    equivalence.io.write(source, path)
    model = jax_model(name, conv_dtype=jnp.float32)
    equivalence.load_state_dict(model, path)
    for key in ("0.weight", "0.bias"):
        got = equivalence.state_dict(model)[key]
        assert got.dtype == np.float32
        assert np.array_equal(bits(got), bits(source[key].astype(np.float32))), key  # exact widening
        reference = torch.empty(got.shape, dtype=torch.float32)
        reference.copy_(torch.from_numpy(bits(source[key]).view(np.int16)).view(DTYPES[name][1]))
        nan = np.isnan(got)
        assert np.array_equal(nan, torch.isnan(reference).numpy()) and nan.sum() == 4, key
        # torch's float16 -> float32 copy_ makes every NaN 0x7FFFFFFF; bfloat16 keeps NaN bits
        same = ~nan if name == "float16" else np.ones_like(nan)
        assert np.array_equal(bits(got)[same], bits(reference)[same]), key
    # dtype= makes the module's floating variables that dtype instead: bit-exact again
    with np.errstate(invalid="ignore"):  # the float32 BatchNorm NaNs narrow to bfloat16/float16
        equivalence.load_state_dict(model, path, dtype=DTYPES[name][0])
    assert np.array_equal(bits(equivalence.state_dict(model)["0.weight"]), bits(source["0.weight"]))
