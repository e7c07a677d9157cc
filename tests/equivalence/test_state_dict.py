"""equivalence.state_dict / load_state_dict against torch's own state_dict and load_state_dict."""
import re
from collections import OrderedDict

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import equivalence
import jaxconv.nn as jnn
from tests._util import randn, t


# A twin pair that exercises every naming rule: nested Sequential, ModuleList, ModuleDict,
# a bias-less layer, and parameters/buffers registered in an order torch does not keep.
class TorchOdd(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("stat", torch.randn(3))
        self.scale = torch.nn.Parameter(torch.randn(2, 3))
        self.conv = torch.nn.Conv2d(2, 3, 3)
        self.rest = torch.nn.Parameter(torch.randn(4))
        self.register_buffer("count", torch.tensor(5, dtype=torch.int64))


class JaxOdd(jnn.Module):
    def __init__(self):
        self.rngs = nnx.Rngs(0)  # RNG state: never part of a state_dict
        self.stat = nnx.BatchStat(jnp.zeros(3, jnp.float32))
        self.scale = nnx.Param(jnp.zeros((2, 3), jnp.float32))
        self.conv = jnn.Conv2d(2, 3, 3)
        self.rest = nnx.Param(jnp.zeros(4, jnp.float32))
        self.count = nnx.BatchStat(jnp.zeros((), jnp.int32))
        self.cache = nnx.Cache(jnp.zeros(2))  # not persistent: skipped


def torch_net():
    torch.manual_seed(0)
    n = torch.nn
    net = n.Module()
    net.stem = n.Sequential(n.Conv2d(3, 4, 3, bias=False), n.Sequential(n.Conv2d(4, 4, 1)))
    net.layers = n.ModuleList([n.ConvTranspose2d(4, 2, 3, stride=2), TorchOdd()])
    net.heads = n.ModuleDict({"b": n.Conv2d(2, 1, 1), "a": n.Conv2d(2, 5, 1, bias=False)})
    return net


def jax_net():
    net = jnn.Module()
    net.stem = jnn.Sequential(jnn.Conv2d(3, 4, 3, bias=False), jnn.Sequential(jnn.Conv2d(4, 4, 1)))
    net.layers = jnn.ModuleList([jnn.ConvTranspose2d(4, 2, 3, stride=2), JaxOdd()])
    net.heads = jnn.ModuleDict({"b": jnn.Conv2d(2, 1, 1), "a": jnn.Conv2d(2, 5, 1, bias=False)})
    return net


def torch_state(module):
    return OrderedDict((k, v.detach().numpy()) for k, v in module.state_dict().items())


def assert_state_equal(actual, expected):
    assert list(actual) == list(expected)
    for k in expected:
        assert actual[k].shape == expected[k].shape, k
        assert actual[k].dtype == expected[k].dtype, (k, actual[k].dtype, expected[k].dtype)
        assert np.array_equal(actual[k], expected[k]), k


def snapshot(module):
    return {k: v.copy() for k, v in equivalence.state_dict(module).items()}


def test_names_order_and_values_match_torch():
    tm, jm = torch_net(), jax_net()
    tm.layers[1].count.fill_(7)
    expected = torch_state(tm)
    # the names and order of an untouched twin already equal torch's
    assert list(equivalence.state_dict(jm)) == list(expected)
    assert list(expected)[5:10] == ["layers.1.scale", "layers.1.rest", "layers.1.stat",
                                    "layers.1.count", "layers.1.conv.weight"]
    assert equivalence.load_state_dict(jm, tm.state_dict()).missing_keys == []
    got = equivalence.state_dict(jm)
    got["layers.1.count"] = got["layers.1.count"].astype(np.int64)  # int32 without x64 is fine too
    assert_state_equal(got, expected)
    assert jm.layers[1].count[...].dtype == jnp.int32  # the module keeps its dtype


def test_torch_loads_the_export_bit_exactly(rng):
    jm, tm = jax_net(), torch_net()
    for name, var in equivalence.named_variables(jm):
        if jnp.issubdtype(var.get_value().dtype, jnp.floating):
            var.set_value(jnp.asarray(randn(rng, *var.shape, dtype=np.float32)))
    exported = equivalence.state_dict(jm)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()})
    assert_state_equal(torch_state(tm), {k: v.astype(np.int64) if v.dtype == np.int32 else v
                                         for k, v in exported.items()})


def test_num_batches_tracked_is_int64():
    class BN(jnn.Module):
        def __init__(self):
            self.weight = nnx.Param(jnp.ones(2))
            self.num_batches_tracked = nnx.BatchStat(jnp.array(3, jnp.int32))

    sd = equivalence.state_dict(BN())
    assert sd["num_batches_tracked"].dtype == np.int64 and sd["num_batches_tracked"] == 3


def normalise(message):
    """torch prints shapes as torch.Size([a, b]); ours are tuples. Nothing else may differ."""
    return re.sub(r"torch\.Size\(\[([^\]]*)\]\)", lambda m: f"({m.group(1)}{',' if m.group(1).count(',') == 0 and m.group(1) else ''})", message)


def bad_source(tm):
    sd = tm.state_dict()
    del sd["stem.0.weight"], sd["heads.a.weight"]
    sd["stem.1.0.bias"] = torch.zeros(5)
    sd["layers.0.weight"] = torch.zeros(4, 2, 2, 3)
    sd["extra.weight"] = torch.zeros(1)
    sd["stem.9.bias"] = torch.zeros(1)
    return sd


@pytest.mark.parametrize("strict", [True, False])
def test_errors_are_torchs_all_at_once_and_leave_the_module_unchanged(strict):
    tm, jm = torch_net(), jax_net()
    sd = bad_source(tm)
    with pytest.raises(RuntimeError) as torch_err:
        torch_net().load_state_dict(sd, strict=strict)
    before = snapshot(jm)
    with pytest.raises(equivalence.StateDictError) as err:
        equivalence.load_state_dict(jm, sd, strict=strict)
    message = str(err.value)
    assert message == normalise(str(torch_err.value)).replace("for Module:", f"for {type(jm).__name__}:")
    assert ("Missing key(s)" in message) == strict
    assert set(err.value.mismatched) == {"stem.1.0.bias", "layers.0.weight"}
    assert err.value.mismatched["layers.0.weight"] == ((4, 2, 2, 3), (4, 2, 3, 3))
    if strict:
        assert err.value.missing_keys == ["stem.0.weight", "heads.a.weight"]
        assert err.value.unexpected_keys == ["extra.weight", "stem.9.bias"]
    assert isinstance(err.value, ValueError)
    assert_state_equal(snapshot(jm), before)


def test_message_format_names_every_problem():
    jm = jnn.Sequential(jnn.Conv2d(1, 2, 3))
    with pytest.raises(RuntimeError) as err:
        equivalence.load_state_dict(jm, {"0.weight": np.zeros((2, 1, 3, 1), np.float32), "x": np.zeros(1)})
    assert str(err.value) == (
        "Error(s) in loading state_dict for Sequential:\n"
        '\tMissing key(s) in state_dict: "0.bias". \n'
        '\tUnexpected key(s) in state_dict: "x". \n'
        "\tsize mismatch for 0.weight: copying a param with shape (2, 1, 3, 1) from checkpoint, "
        "the shape in current model is (2, 1, 3, 3).")


def test_non_strict_returns_torchs_incompatible_keys():
    tm, jm = torch_net(), jax_net()
    sd = tm.state_dict()
    del sd["layers.1.rest"], sd["heads.b.bias"]
    sd["foo.bar"] = torch.ones(2)
    expected = torch_net().load_state_dict(sd, strict=False)
    result = equivalence.load_state_dict(jm, sd, strict=False)
    assert (result.missing_keys, result.unexpected_keys) == (expected.missing_keys, expected.unexpected_keys)
    assert result == (["layers.1.rest", "heads.b.bias"], ["foo.bar"])
    # what was present is loaded
    assert np.array_equal(np.asarray(jm.heads["b"].weight[...]), tm.heads.b.weight.detach().numpy())
    ok = equivalence.load_state_dict(jm, tm.state_dict(), strict=False)
    assert repr(ok) == repr(torch_net().load_state_dict(tm.state_dict())) == "<All keys matched successfully>"


def test_dtype_kept_by_default_and_cast_on_request(rng):
    w64 = randn(rng, 2, 1, 3, 3)
    b64 = randn(rng, 2)
    jm = jnn.Conv2d(1, 2, 3)
    equivalence.load_state_dict(jm, {"weight": w64, "bias": b64})
    assert jm.weight[...].dtype == jnp.float32
    assert np.array_equal(np.asarray(jm.weight[...]), w64.astype(np.float32))
    # as torch: copying into a float32 parameter rounds the same way
    tc = torch.nn.Conv2d(1, 2, 3)
    tc.load_state_dict({"weight": t(w64), "bias": t(b64)})
    assert np.array_equal(np.asarray(jm.weight[...]), tc.weight.detach().numpy())
    equivalence.load_state_dict(jm, {"weight": w64, "bias": b64}, dtype=jnp.float64)
    assert jm.weight[...].dtype == jnp.float64 and np.array_equal(np.asarray(jm.weight[...]), w64)
    equivalence.load_state_dict(jm, {"weight": w64.astype(np.float32), "bias": b64}, dtype="bfloat16")
    assert jm.weight[...].dtype == jnp.bfloat16 and jm.bias[...].dtype == jnp.bfloat16


def test_integer_buffers_take_the_module_dtype_even_with_dtype():
    jm = JaxOdd()
    tm = TorchOdd()
    equivalence.load_state_dict(jm, tm.state_dict(), dtype=jnp.float64)
    assert jm.count[...].dtype == jnp.int32 and int(jm.count[...]) == 5
    assert jm.scale[...].dtype == jnp.float64


def test_data_parallel_prefix_is_stripped_only_when_every_key_has_it():
    tm, jm = torch_net(), jax_net()
    wrapped = torch.nn.DataParallel(tm)
    sd = wrapped.state_dict()
    assert all(k.startswith("module.") for k in sd)
    equivalence.load_state_dict(jm, sd)
    assert np.array_equal(np.asarray(jm.stem[0].weight[...]), tm.stem[0].weight.detach().numpy())
    partial = OrderedDict(sd)
    partial["other"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "module.stem.0.weight"'):
        equivalence.load_state_dict(jm, partial)
    # a module whose own names start with 'module.' is matched as is
    holder = jnn.Module()
    holder.module = jnn.Conv2d(1, 1, 1)
    equivalence.load_state_dict(holder, {"module.weight": np.ones((1, 1, 1, 1)), "module.bias": np.ones(1)})
    assert float(holder.module.weight[...].sum()) == 1.0


class TorchCounter(torch.nn.Module):
    """A buffer named num_batches_tracked in a versioned module, as torch's BatchNorm."""


def test_missing_num_batches_tracked_follows_torchs_version_rule():
    tbn = torch.nn.BatchNorm1d(3)

    class JBN(jnn.Module):
        def __init__(self):
            self.weight = nnx.Param(jnp.zeros(3, jnp.float32))
            self.bias = nnx.Param(jnp.zeros(3, jnp.float32))
            self.running_mean = nnx.BatchStat(jnp.zeros(3, jnp.float32))
            self.running_var = nnx.BatchStat(jnp.ones(3, jnp.float32))
            self.num_batches_tracked = nnx.BatchStat(jnp.array(4, jnp.int32))

    plain = {k: v for k, v in tbn.state_dict().items() if k != "num_batches_tracked"}
    torch.nn.BatchNorm1d(3).load_state_dict(plain)  # torch: no metadata, no error
    jm = JBN()
    assert equivalence.load_state_dict(jm, plain) == ([], [])
    assert int(jm.num_batches_tracked[...]) == 4  # kept
    versioned = tbn.state_dict()  # carries torch's _metadata: BatchNorm version 2
    del versioned["num_batches_tracked"]
    with pytest.raises(RuntimeError) as torch_err:
        torch.nn.BatchNorm1d(3).load_state_dict(versioned)
    with pytest.raises(RuntimeError) as err:
        equivalence.load_state_dict(jm, versioned)
    assert str(err.value) == str(torch_err.value).replace("BatchNorm1d", "JBN")


def test_non_array_values_and_bad_sources_are_reported():
    jm = jnn.Conv2d(1, 2, 1)
    with pytest.raises(RuntimeError, match="value for bias is not an array"):
        equivalence.load_state_dict(jm, {"weight": np.zeros((2, 1, 1, 1)), "bias": "zeros", "epoch": 3},
                                    strict=False)
    with pytest.raises(TypeError, match="source must be a mapping"):
        equivalence.load_state_dict(jm, 42)
    with pytest.raises(ValueError, match=r"'epoch': int"):
        equivalence.load_state_dict(jm, {"epoch": 3, "optimizer": {"lr": 0.1}})


def test_torch_module_as_source_and_nested_checkpoint_dict():
    tm, jm = torch_net(), jax_net()
    equivalence.load_state_dict(jm, tm)
    assert_state_equal(equivalence.state_dict(jm),
                       {k: (v.astype(np.int32) if k == "layers.1.count" else v) for k, v in torch_state(tm).items()})
    jm2 = jax_net()
    equivalence.load_state_dict(jm2, {"epoch": 2, "model": tm.state_dict(), "optimizer": {"state": {}}})
    assert np.array_equal(np.asarray(jm2.heads["a"].weight[...]), tm.heads.a.weight.detach().numpy())


def test_bfloat16_torch_tensors():
    tc = torch.nn.Conv2d(2, 3, 1).to(torch.bfloat16)
    jm = jnn.Conv2d(2, 3, 1, dtype=jnp.bfloat16)
    equivalence.load_state_dict(jm, tc.state_dict())
    assert jm.weight[...].dtype == jnp.bfloat16
    assert np.array_equal(np.asarray(jm.weight[...]).astype(np.float32), tc.weight.float().detach().numpy())


def test_torch_order_survives_nnx_transforms():
    """nnx's split/merge (inside nnx.jit, nnx.eval_shape, ...) sorts attributes by name; the
    state_dict order (and a Sequential's order) must still be torch's."""
    tm = torch.nn.Module()
    tm.z = torch.nn.Conv2d(1, 2, 1)
    tm.seq = torch.nn.Sequential(*[torch.nn.Conv2d(2, 2, 1) for _ in range(11)])
    tm.a = torch.nn.ConvTranspose2d(2, 1, 1)
    jm = nnx.eval_shape(lambda: _twin_of_ordered(nnx.Rngs(0)))
    assert [k for k, _ in equivalence.named_variables(jm)] == list(tm.state_dict())
    equivalence.load_state_dict(jm, tm.state_dict())

    @nnx.jit
    def run(m, x):
        return m.a(m.seq(m.z(x)))

    x = np.random.default_rng(0).standard_normal((1, 1, 3, 2)).astype(np.float32)
    with torch.no_grad():
        expected = tm.a(tm.seq(tm.z(t(x)))).numpy()
    np.testing.assert_allclose(np.asarray(run(jm, jnp.asarray(x))), expected, rtol=1e-5, atol=1e-6)
    assert list(equivalence.state_dict(jm)) == list(tm.state_dict())


def _twin_of_ordered(rngs):
    jm = jnn.Module()
    jm.z = jnn.Conv2d(1, 2, 1, rngs=rngs)
    jm.seq = jnn.Sequential(*[jnn.Conv2d(2, 2, 1, rngs=rngs) for _ in range(11)])
    jm.a = jnn.ConvTranspose2d(2, 1, 1, rngs=rngs)
    return jm
