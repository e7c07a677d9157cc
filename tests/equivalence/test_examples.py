"""The bundled seed models: torch weights -> jaxconv twin -> back, forward, gradients, BatchNorm training."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import equivalence
from equivalence import examples
from tests._util import assert_close, randn, t

SMALL = {"dcgan_generator": {"nz": 16, "ngf": 8}}  # the classic ngf=64 is slow to test on CPU
SHAPES = {"residual_cnn": (3, 1, 28, 28), "cifar_net": (3, 3, 32, 32), "dcgan_generator": (3, 16, 1, 1)}
OUT = {"residual_cnn": (3, 10), "cifar_net": (3, 2), "dcgan_generator": (3, 3, 64, 64)}
FAN_IN = {"residual_cnn": 4608, "cifar_net": 512, "dcgan_generator": 16 * 8 * 8}  # longest reduction


def abstract_twin(name, **kwargs):
    """The jaxconv twin built abstractly (no random init, no compiles): loading fills it."""
    factory = examples.EXAMPLES[name].jax_factory
    return nnx.eval_shape(lambda: factory(**kwargs, rngs=nnx.Rngs(0)))


def pair(name, seed=0):
    ex = examples.EXAMPLES[name]
    return ex.torch_factory(**SMALL.get(name, {}), seed=seed), abstract_twin(name, **SMALL.get(name, {}))


@nnx.jit
def forward(model, x):
    return model(x)


@pytest.mark.parametrize("name", sorted(examples.EXAMPLES))
def test_round_trip_is_bit_exact(name):
    tm, jm = pair(name)
    with torch.no_grad():  # make buffers non-trivial where there are any
        tm.train()(torch.randn(*SHAPES[name]))
    expected = {k: v.numpy() for k, v in tm.state_dict().items()}
    assert equivalence.load_state_dict(jm, tm.state_dict()) == ([], [])
    back = equivalence.state_dict(jm)
    assert list(back) == list(expected)
    for k, v in expected.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        assert np.array_equal(back[k], v), k


@pytest.mark.parametrize("name", sorted(examples.EXAMPLES))
def test_forward_float32_matches_torch(name, rng):
    tm, jm = pair(name, seed=1)
    equivalence.load_state_dict(jm, tm.state_dict())
    tm.eval(), jm.eval()
    x = randn(rng, *SHAPES[name], dtype=np.float32)
    y = forward(jm, jnp.asarray(x))
    assert y.dtype == jnp.float32 and y.shape == OUT[name]
    with torch.no_grad():
        expected = tm(t(x)).numpy()
    assert_close(y, expected, dtype=np.float32, reduction=FAN_IN[name])


@pytest.mark.parametrize("name", ["residual_cnn", "cifar_net"])
def test_forward_and_gradients_float64_match_torch(name, rng):
    tm, jm = pair(name, seed=2)
    tm = tm.double()
    equivalence.load_state_dict(jm, tm.state_dict(), dtype=jnp.float64)
    x = randn(rng, *SHAPES[name])
    w = randn(rng, *OUT[name])  # an asymmetric loss: sum(w * y)

    def loss(model, x):
        return jnp.sum(jnp.asarray(w) * model(x))

    (value, (g_model, g_x)) = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1)))(jm, jnp.asarray(x))
    xt = t(x).requires_grad_()
    lt = (t(w) * tm(xt)).sum()
    lt.backward()
    assert_close(value, lt.item(), reduction=FAN_IN[name] * 10)
    assert_close(g_x, xt.grad.numpy(), reduction=FAN_IN[name])
    # gradients by torch name: a module whose parameters hold the gradients
    graphdef, _, rest = nnx.split(jm, nnx.Param, ...)
    grads = equivalence.state_dict(nnx.merge(graphdef, g_model, rest))
    for pname, p in tm.named_parameters():
        assert_close(grads[pname], p.grad.numpy(), reduction=FAN_IN[name] * 10)
    assert set(n for n, _ in tm.named_parameters()) == {n for n in grads}


def test_dcgan_batchnorm_training_statistics_match_torch(rng):
    tm, jm = pair("dcgan_generator", seed=3)
    tm = tm.double()
    equivalence.load_state_dict(jm, tm.state_dict(), dtype=jnp.float64)
    tm.train(), jm.train()
    for _ in range(3):
        x = randn(rng, 4, 16, 1, 1)
        y = forward(jm, jnp.asarray(x))
        with torch.no_grad():
            expected = tm(t(x)).numpy()
        assert_close(y, expected, reduction=8 * 8 * 16)
    theirs, ours = tm.state_dict(), equivalence.state_dict(jm)
    stats = [k for k in theirs if "running" in k or "num_batches" in k]
    assert len(stats) == 12
    for k in stats:
        if k.endswith("num_batches_tracked"):
            assert ours[k].dtype == np.int64 and ours[k] == theirs[k].item() == 3
        else:
            assert_close(ours[k], theirs[k].numpy(), reduction=4 * 64 * 64)
    # eval mode now uses those running statistics, on both sides
    tm.eval(), jm.eval()
    x = randn(rng, 2, 16, 1, 1)
    with torch.no_grad():
        expected = tm(t(x)).numpy()
    assert_close(forward(jm, jnp.asarray(x)), expected, reduction=8 * 8 * 16)


def test_registry_specs_and_parameter_counts():
    for name, ex in examples.EXAMPLES.items():
        for spec, factory in ((ex.torch_spec, ex.torch_factory), (ex.jax_spec, ex.jax_factory)):
            module, attr = spec.split(":")
            assert getattr(importlib.import_module(module), attr) is factory
        assert len(ex.input_shape) == 4
    tm, jm = examples.cifar_net_torch(), abstract_twin("cifar_net")
    assert sum(p.numel() for p in tm.parameters()) == 18090
    assert sum(v.size for _, v in equivalence.named_variables(jm)) == 18090
    tm, jm = examples.dcgan_generator_torch(), abstract_twin("dcgan_generator")  # the classic size
    shapes = {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in equivalence.named_variables(jm)} == shapes
    assert list(shapes) == [k for k, _ in equivalence.named_variables(jm)]
    assert shapes["main.0.weight"] == (100, 512, 4, 4)
    x = jax.ShapeDtypeStruct(examples.EXAMPLES["dcgan_generator"].input_shape, jnp.float32)
    assert nnx.eval_shape(lambda m, x: m(x), jm.eval(), x).shape == (2, 3, 64, 64)


def test_repr_reads_like_torch():
    assert repr(abstract_twin("cifar_net")) == repr(examples.cifar_net_torch())
    tm, jm = pair("residual_cnn")
    assert repr(jm) == repr(tm)


def test_torch_factory_seed_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = examples.residual_cnn_torch(seed=5).state_dict()
    b = examples.residual_cnn_torch(seed=5).state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = examples.residual_cnn_torch(seed=6).state_dict()
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])
