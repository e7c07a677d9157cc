"""Checkpoint values of another dtype follow torch's ``load_state_dict`` (``param.copy_``):
cast where torch casts, an error naming the key where torch raises or where the module's dtype
cannot hold the value; loading under nnx.jit / eval_shape and keeping shardings."""
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
from flax import nnx

import equivalence
import jaxconv.nn as jnn
from equivalence import StateDictError
from equivalence._torch import to_numpy, to_torch


def random_values(rng, dtype, shape):
    """Random, asymmetric values of ``dtype`` (a torch dtype)."""
    if dtype == torch.bool:
        return torch.from_numpy(rng.random(shape) < 0.4)
    if dtype.is_floating_point or dtype.is_complex:
        real = torch.from_numpy(rng.standard_normal(shape) * 3)
        if dtype.is_complex:
            return torch.complex(real, torch.from_numpy(rng.standard_normal(shape))).to(dtype)
        return real.to(dtype)
    info = torch.iinfo(dtype)
    return torch.from_numpy(rng.integers(max(info.min, -50), min(info.max, 50), shape)).to(dtype)


def both(dtype_rng, dtype):
    """A torch Conv2d and its jaxconv twin (other weights), and a checkpoint of ``dtype``."""
    torch_conv, jax_conv = torch.nn.Conv2d(2, 3, 1), jnn.Conv2d(2, 3, 1)
    source = {"weight": random_values(dtype_rng, dtype, (3, 2, 1, 1)),
              "bias": random_values(dtype_rng, dtype, (3,))}
    return torch_conv, jax_conv, source


def snapshot(module):
    return {k: v.copy() for k, v in equivalence.state_dict(module).items()}


def assert_unchanged(module, before):
    for k, v in equivalence.state_dict(module).items():
        assert v.dtype == before[k].dtype and np.array_equal(v, before[k]), k


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8, torch.bool,
                                   torch.float16, torch.bfloat16, torch.float64],
                         ids=lambda d: str(d).split(".")[-1])
def test_other_number_dtypes_into_float_params_are_cast_as_torch(rng, dtype):
    torch_conv, jax_conv, source = both(rng, dtype)
    torch_conv.load_state_dict(source)  # torch casts silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert equivalence.load_state_dict(jax_conv, source) == ([], [])
    for name, value in equivalence.state_dict(jax_conv).items():
        expected = getattr(torch_conv, name).detach().numpy()
        assert value.dtype == np.float32 and np.array_equal(value, expected), name
    # the same through numpy arrays (bfloat16 as ml_dtypes)
    numpy_source = {k: to_numpy(v) for k, v in source.items()}
    assert dtype != torch.bfloat16 or numpy_source["bias"].dtype == ml_dtypes.bfloat16
    jax_conv2 = jnn.Conv2d(2, 3, 1)
    equivalence.load_state_dict(jax_conv2, numpy_source)
    assert np.array_equal(np.asarray(jax_conv2.weight[...]), torch_conv.weight.detach().numpy())


def test_complex_into_float_drops_the_imaginary_part_with_a_warning_as_torch(rng):
    torch_conv, jax_conv, source = both(rng, torch.complex64)
    with pytest.warns(UserWarning, match="imaginary part"):
        torch_conv.load_state_dict(source)
    with pytest.warns(UserWarning) as caught:
        equivalence.load_state_dict(jax_conv, source)
    assert [str(w.message) for w in caught] == [
        f"{name}: casting complex values to real discards the imaginary part (as torch's "
        "load_state_dict does)" for name in ("weight", "bias")]
    for name, value in equivalence.state_dict(jax_conv).items():
        assert np.array_equal(value, getattr(torch_conv, name).detach().numpy()), name


def bn_pair():
    return torch.nn.BatchNorm1d(3), jnn.BatchNorm1d(3)


@pytest.mark.parametrize("count", [torch.tensor(3.7), torch.tensor(-3.7), torch.tensor(41.0, dtype=torch.float64),
                                   torch.tensor(True), torch.tensor(9, dtype=torch.uint8),
                                   torch.tensor(2 ** 40)], ids=str)
def test_num_batches_tracked_from_other_dtypes_as_torch(count):
    tbn, jbn = bn_pair()
    sd = dict(tbn.state_dict(), num_batches_tracked=count)
    tbn.load_state_dict(sd)  # truncates floats toward zero, bool -> 1
    equivalence.load_state_dict(jbn, sd)
    exported = equivalence.state_dict(jbn)["num_batches_tracked"]
    assert exported.dtype == np.int64 and int(exported) == int(tbn.num_batches_tracked)


class Counter(jnn.Module):
    """An int32 counter, as a module built without x64 has."""

    def __init__(self):
        self.weight = nnx.Param(jnp.asarray(np.random.default_rng(5).standard_normal(3), jnp.float32))
        self.num_batches_tracked = nnx.BatchStat(jnp.array(7, jnp.int32))


@pytest.mark.parametrize("count, problem", [
    (np.array(np.nan), "holds NaN or infinity"), (np.array(-np.inf, np.float32), "holds NaN or infinity"),
    (np.array(2 ** 31, np.int64), r"ranges over \[2147483648, 2147483648\], outside the range "
                                  r"\[-2147483648, 2147483647\] of the module's dtype int32"),
    (np.array(-2.0 ** 31 - 1), r"ranges over \[-2147483649.0, -2147483649.0\], outside the range"),
])
def test_values_an_integer_buffer_cannot_hold_are_errors(count, problem):
    """torch's int64 counter would hold 2**31 (ours is int32) and turns NaN into garbage."""
    module = Counter()
    before = snapshot(module)
    weight = np.random.default_rng(6).standard_normal(3).astype(np.float32)
    with pytest.raises(StateDictError, match=f"value for num_batches_tracked {problem}"):
        equivalence.load_state_dict(module, {"weight": weight, "num_batches_tracked": count})
    assert_unchanged(module, before)
    equivalence.load_state_dict(module, {"weight": weight, "num_batches_tracked": np.array(2.0 ** 31 - 1)})
    assert int(module.num_batches_tracked[...]) == 2 ** 31 - 1


def test_non_number_arrays_and_failing_copies_are_named_and_change_nothing(monkeypatch):
    module = jnn.Conv2d(1, 2, 1)
    before = snapshot(module)
    with pytest.raises(StateDictError, match=r"value for bias has dtype <U1, not a number or bool type"):
        equivalence.load_state_dict(module, {"weight": np.ones((2, 1, 1, 1)), "bias": np.array(["a", "b"])})
    assert_unchanged(module, before)
    with pytest.raises(TypeError):  # torch cannot even hold such an array
        torch.from_numpy(np.array(["a", "b"]))

    def failing(*args, **kwargs):
        raise MemoryError("no room")

    monkeypatch.setattr(jax, "device_put", failing)  # any failure while copying: torch's wording
    with pytest.raises(StateDictError) as err:
        equivalence.load_state_dict(module, {"weight": np.ones((2, 1, 1, 1)), "bias": np.ones(2)})
    assert str(err.value).splitlines()[1:] == [
        f'\tWhile copying the parameter named "{name}", whose dimensions in the model are {shape} and '
        f"whose dimensions in the checkpoint are {shape}, an exception occurred : ('no room',)."
        for name, shape in (("weight", (2, 1, 1, 1)), ("bias", (2,)))]
    assert isinstance(err.value.__cause__, MemoryError)
    assert_unchanged(module, before)


def test_loading_under_nnx_jit_and_into_an_abstract_module(rng):
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    with torch.no_grad():
        tm(torch.randn(2, 2, 5, 5))
    weights = {k: to_numpy(v) for k, v in tm.state_dict().items()}

    @nnx.jit
    def load(module):  # the module's variables are tracers here
        equivalence.load_state_dict(module, weights)

    eager, traced = (jnn.Sequential(jnn.Conv2d(2, 3, 3), jnn.BatchNorm2d(3)) for _ in range(2))
    equivalence.load_state_dict(eager, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        load(traced)
        abstract = nnx.eval_shape(lambda: jnn.Sequential(jnn.Conv2d(2, 3, 3), jnn.BatchNorm2d(3)))
        assert isinstance(abstract[0].weight.get_value(), jax.ShapeDtypeStruct)
        equivalence.load_state_dict(abstract, weights)
    expected = equivalence.state_dict(eager)
    for module in (traced, abstract):
        got = equivalence.state_dict(module)
        for k, v in weights.items():
            assert np.array_equal(got[k], v) and np.array_equal(expected[k], v), k
        assert isinstance(module[0].weight.get_value(), jax.Array)


SHARDED = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import equivalence, jaxconv.nn as jnn

    mesh = Mesh(np.array(jax.devices()), ("x",))
    split = NamedSharding(mesh, P("x"))
    rng = np.random.default_rng(0)
    w = {"weight": rng.standard_normal((4, 3, 1, 1)).astype(np.float32),
         "bias": rng.standard_normal(4).astype(np.float32)}
    concrete = jnn.Conv2d(3, 4, 1)
    concrete.weight.set_value(jax.device_put(concrete.weight.get_value(), split))
    abstract = nnx.eval_shape(lambda: jnn.Conv2d(3, 4, 1))
    abstract.weight.set_value(jax.ShapeDtypeStruct((4, 3, 1, 1), jnp.float32, sharding=split))
    for m in (concrete, abstract):
        equivalence.load_state_dict(m, w)
        assert m.weight.get_value().sharding == split, m.weight.get_value().sharding
        assert len(m.bias.get_value().sharding.device_set) == 1
        assert np.array_equal(np.asarray(m.weight[...]), w["weight"])
    print("KEPT")
''')


def test_sharding_of_concrete_and_abstract_variables_is_kept():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0 and "KEPT" in proc.stdout, proc.stdout + proc.stderr


def test_to_torch_round_trips_bfloat16_and_0d(rng):
    for array in (rng.standard_normal((2, 3)).astype(ml_dtypes.bfloat16), np.array(5, np.int64),
                  rng.standard_normal((3, 2)).astype(np.float32).T):
        tensor = to_torch(array)
        assert tuple(tensor.shape) == array.shape
        back = to_numpy(tensor)
        assert back.dtype == array.dtype and np.array_equal(back, array)
