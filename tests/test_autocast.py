"""``jaxconv.autocast`` against ``torch.autocast("cpu")`` (torch 2.13): per op, the output dtype
and the value; under ``nnx.jit``; in a module's gradients; in a translated model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from flax import nnx

import equivalence
import jaxconv
import jaxconv.functional as JF
from equivalence._torch import to_numpy
from jaxconv import _autocast, nn
from jaxconv import tensor as T
from tests.functional._loss_cases import LOW_PRECISION as LOSSES  # (torch op, jaxconv op, build)

DTYPES = {"bfloat16": (torch.bfloat16, 2.0 ** -7), "float16": (torch.float16, 2.0 ** -10)}

X4, X3, X5 = (2, 6, 9, 9), (2, 6, 11), (1, 3, 5, 6, 6)
# name: (torch op, jaxconv op, argument shapes); torch.X / T.X for the tensor functions.
CASES = {
    "conv1d": (TF.conv1d, JF.conv1d, [X3, (4, 6, 3), (4,)]),
    "conv2d": (TF.conv2d, JF.conv2d, [X4, (4, 6, 3, 3), (4,)]),
    # >= 128 input channels: bfloat16 per-tap products on CPU (jaxconv.functional._lowering.conv_taps)
    "conv2d_taps": (lambda x, w, b: TF.conv2d(x, w, b, 2, 1), jax.jit(lambda x, w, b: JF.conv2d(x, w, b, 2, 1)),
                    [(1, 128, 6, 5), (4, 128, 3, 3), (4,)]),
    "conv3d": (TF.conv3d, JF.conv3d, [X5, (2, 3, 2, 2, 2), (2,)]),
    "conv_transpose1d": (TF.conv_transpose1d, JF.conv_transpose1d, [X3, (6, 4, 3), (4,)]),
    "conv_transpose2d": (TF.conv_transpose2d, JF.conv_transpose2d, [X4, (6, 4, 3, 3), (4,)]),
    "conv_transpose3d": (TF.conv_transpose3d, JF.conv_transpose3d, [X5, (3, 2, 2, 2, 2), (2,)]),
    "linear": (TF.linear, JF.linear, [(3, 7, 10), (5, 10), (5,)]),
    "prelu": (TF.prelu, JF.prelu, [X4, (6,)]),
    "matmul": (torch.matmul, T.matmul, [(2, 4, 10), (10, 3)]),
    "mm": (torch.mm, T.mm, [(4, 10), (10, 3)]),
    "bmm": (torch.bmm, T.bmm, [(2, 4, 10), (2, 10, 3)]),
    "baddbmm": (torch.baddbmm, T.baddbmm, [(2, 4, 3), (2, 4, 10), (2, 10, 3)]),
    "addmm": (torch.addmm, T.addmm, [(4, 3), (4, 10), (10, 3)]),
    "einsum": (lambda a, b: torch.einsum("bij,bjk->bik", a, b),
               lambda a, b: T.einsum("bij,bjk->bik", a, b), [(2, 4, 10), (2, 10, 3)]),
    "scaled_dot_product_attention": (TF.scaled_dot_product_attention, JF.scaled_dot_product_attention,
                                     [(2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8)]),
    "avg_pool3d": (lambda x: TF.avg_pool3d(x, 2), lambda x: JF.avg_pool3d(x, 2), [X5]),
    "max_pool3d": (lambda x: TF.max_pool3d(x, 2), lambda x: JF.max_pool3d(x, 2), [X5]),
    "adaptive_avg_pool3d": (lambda x: TF.adaptive_avg_pool3d(x, 2), lambda x: JF.adaptive_avg_pool3d(x, 2), [X5]),
    "adaptive_max_pool3d": (lambda x: TF.adaptive_max_pool3d(x, 2), lambda x: JF.adaptive_max_pool3d(x, 2), [X5]),
    "reflection_pad1d": (lambda x: TF.pad(x, (2, 1), "reflect"), lambda x: JF.pad(x, (2, 1), "reflect"), [X3]),
    "reflection_pad2d": (lambda x: TF.pad(x, (2, 1, 1, 2), "reflect"),
                         lambda x: JF.pad(x, (2, 1, 1, 2), "reflect"), [X4]),
    "replication_pad1d": (lambda x: TF.pad(x, (2, 1), "replicate"), lambda x: JF.pad(x, (2, 1), "replicate"), [X3]),
    "replication_pad2d": (lambda x: TF.pad(x, (2, 1, 1, 2), "replicate"),
                          lambda x: JF.pad(x, (2, 1, 1, 2), "replicate"), [X4]),
    "replication_pad3d": (lambda x: TF.pad(x, (1,) * 6, "replicate"), lambda x: JF.pad(x, (1,) * 6, "replicate"), [X5]),
    # on neither list: the inputs' dtype (float32 here; reduced after a lowered op below)
    "avg_pool2d": (lambda x: TF.avg_pool2d(x, 2), lambda x: JF.avg_pool2d(x, 2), [X4]),
    "max_pool2d": (lambda x: TF.max_pool2d(x, 2), lambda x: JF.max_pool2d(x, 2), [X4]),
    "softmax": (lambda x: TF.softmax(x, -1), lambda x: JF.softmax(x, -1), [X4]),
    "batch_norm": (lambda x, m, v: TF.batch_norm(x, m, v.abs()), lambda x, m, v: JF.batch_norm(x, m, jnp.abs(v)),
                   [X4, (6,), (6,)]),
    "layer_norm": (lambda x: TF.layer_norm(x, (9,)), lambda x: JF.layer_norm(x, (9,)), [X4]),
    "gelu": (TF.gelu, JF.gelu, [X4]),
    "interpolate": (lambda x: TF.interpolate(x, scale_factor=2, mode="bilinear"),
                    lambda x: JF.interpolate(x, scale_factor=2, mode="bilinear"), [X4]),
    "reflection_pad3d": (lambda x: TF.pad(x, (1,) * 6, "reflect"), lambda x: JF.pad(x, (1,) * 6, "reflect"), [X5]),
    "circular_pad": (lambda x: TF.pad(x, (1, 1), "circular"), lambda x: JF.pad(x, (1, 1), "circular"), [X3]),
}


# torch's float16/bfloat16 CPU attention works in blocks with a running softmax (an ulp of the
# output's magnitude from the rounded-once result); its float16 transposed conv (no oneDNN
# float16 on most CPUs) sums in float16. jaxconv is rounded-once in both
# (tests/functional/test_low_precision.py).
BLOCKWISE = {"scaled_dot_product_attention"}


def test_every_listed_op_is_checked():
    """The lists in jaxconv._autocast cannot drift from torch's without a case here failing."""
    assert _autocast.LOWER | _autocast.FLOAT32 <= set(CASES) | set(LOSSES)



@pytest.mark.parametrize("dtype,input_dtype", [
    ("bfloat16", "reduced"),
    pytest.param("float16", "reduced", marks=pytest.mark.slow),
    pytest.param("bfloat16", "float32", marks=pytest.mark.slow),
    pytest.param("float16", "float32", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", LOSSES)
def test_loss_follows_torch_autocast(rng, name, dtype, input_dtype):
    """Each loss's output dtype is torch's under its autocast (float32 for the ones it lists,
    the inputs' for the others: reduced inputs tell them apart), the value within an ulp."""
    t_op, j_op, build = LOSSES[name]
    t_dtype, eps = DTYPES[dtype]
    args = [torch.from_numpy(a) for a in build(rng)]
    args = [a.to(t_dtype) if a.is_floating_point() and input_dtype == "reduced" else a for a in args]
    with torch.autocast("cpu", dtype=t_dtype):
        want = t_op(*args)
    with jaxconv.autocast(dtype):
        got = jax.jit(j_op)(*[jnp.asarray(to_numpy(a)) for a in args])
    assert str(got.dtype) == str(want.dtype).removeprefix("torch.")
    theirs = to_numpy(want).astype(np.float64)
    ulp = eps if want.dtype != torch.float32 else 2.0 ** -23
    tol = ulp * np.abs(theirs) + 64 * 2.0 ** -23 * float(np.max(np.abs(theirs)))
    assert np.all(np.abs(np.asarray(got).astype(np.float64) - theirs) <= tol)


def _args(rng, shapes, dtype=torch.float32):
    return [torch.from_numpy(rng.standard_normal(s).astype(np.float32)).to(dtype) for s in shapes]


@pytest.mark.parametrize("input_dtype", ["float32", "reduced"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_op_follows_torch_autocast(rng, name, dtype, input_dtype):
    """Same output dtype as under torch.autocast, for float32 inputs and for reduced ones (the
    output of a lowered op feeding the next); values within an ulp of that dtype."""
    t_op, j_op, shapes = CASES[name]
    t_dtype, eps = DTYPES[dtype]
    args = _args(rng, shapes, torch.float32 if input_dtype == "float32" else t_dtype)
    with torch.autocast("cpu", dtype=t_dtype):
        want = t_op(*args)
    with jaxconv.autocast(dtype):
        got = j_op(*[jnp.asarray(to_numpy(a)) for a in args])
    assert str(got.dtype) == str(want.dtype).removeprefix("torch.")
    theirs = to_numpy(want).astype(np.float64)
    ulp = eps if want.dtype != torch.float32 else 2.0 ** -23
    scale = float(np.max(np.abs(theirs)))
    tol = ulp * np.abs(theirs) + 64 * 2.0 ** -23 * scale
    if name in BLOCKWISE or (dtype == "float16" and name.startswith("conv_transpose")):
        tol = 2 * ulp * scale
    assert np.all(np.abs(np.asarray(got).astype(np.float64) - theirs) <= tol)


def test_float64_and_integers_are_never_cast(rng):
    x, w = (jnp.asarray(rng.standard_normal(s)) for s in (X4, (4, 6, 3, 3)))
    with jaxconv.autocast():
        assert JF.conv2d(x, w).dtype == jnp.float64
        assert T.matmul(jnp.arange(6).reshape(2, 3), jnp.arange(3)).dtype == jnp.int64


def test_the_context_nests_and_names_its_dtypes():
    assert jaxconv.get_autocast_dtype() is None
    with jaxconv.autocast(torch.float16):  # torch's, numpy's and jnp's dtypes and the names
        assert jaxconv.get_autocast_dtype() == jnp.float16
        with jaxconv.autocast(enabled=False):
            assert jaxconv.get_autocast_dtype() is None
        with jaxconv.autocast("bfloat16"):
            assert jaxconv.get_autocast_dtype() == jnp.bfloat16
        assert jaxconv.get_autocast_dtype() == jnp.float16
    assert jaxconv.get_autocast_dtype() is None
    with pytest.raises(ValueError, match=r"autocast: dtype must be bfloat16 or float16.*float32"):
        with jaxconv.autocast(jnp.float32):
            pass


class _Net(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1, rngs=rngs)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4, rngs=rngs)

    def __call__(self, x):
        y = JF.relu(self.bn(self.conv(x)))
        return self.fc(JF.adaptive_avg_pool2d(y, 1).reshape(x.shape[0], -1))


def test_read_at_trace_time_under_nnx_jit(rng):
    """One jitted function gives float32 outside the context and bfloat16 inside: the setting
    is part of jit's cache key, so the second call traces again."""
    net, x = _Net(), jnp.asarray(rng.standard_normal((2, 3, 8, 8)), jnp.float32)
    f = nnx.jit(lambda m, x: m(x))
    assert f(net, x).dtype == jnp.float32
    with jaxconv.autocast(jnp.bfloat16):
        assert f(net, x).dtype == jnp.bfloat16
    assert f(net, x).dtype == jnp.float32


def test_parameters_stay_float32_and_get_float32_gradients(rng):
    net, x = _Net(), jnp.asarray(rng.standard_normal((2, 3, 8, 8)), jnp.float32)

    def loss(m):
        with jaxconv.autocast(jnp.bfloat16):
            return jnp.sum(JF.log_softmax(m(x), -1)[:, 1])

    grads = nnx.grad(loss)(net)
    leaves = jax.tree_util.tree_leaves(nnx.state(grads, nnx.Param))
    assert leaves and all(g.dtype == jnp.float32 for g in leaves)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(nnx.state(net, nnx.Param)))


class _Attention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x):
        t = self.bn(self.conv(x)).flatten(2).transpose(1, 2)
        scores = (self.proj(t) @ t.transpose(1, 2)).softmax(-1)
        return torch.nn.functional.avg_pool2d(scores[:, None], 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_translated_model_honours_autocast(rng, dtype):
    """The translated ``@``, conv, linear and pooling run as under torch.autocast."""
    t_dtype, eps = DTYPES[dtype]
    torch.manual_seed(0)
    model = _Attention().eval()
    x = torch.from_numpy(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    jmodel = equivalence.translate(model, x)
    with torch.autocast("cpu", dtype=t_dtype), torch.no_grad():
        want = model(x)
    with jaxconv.autocast(dtype):
        got = jmodel(jnp.asarray(x.numpy()))
    assert str(got.dtype) == dtype == str(want.dtype).removeprefix("torch.")
    np.testing.assert_allclose(np.asarray(got, np.float64), to_numpy(want).astype(np.float64),
                               rtol=0, atol=8 * eps * float(want.abs().max()))


@pytest.mark.parametrize("module,shape", [
    (lambda: nn.Conv2d(3, 4, 3), (1, 3, 6, 6)),
    (lambda: nn.ConvTranspose2d(3, 4, 3), (1, 3, 6, 6)),
    (lambda: nn.Linear(6, 4), (2, 6)),
    (lambda: nn.PReLU(), (2, 6)),
    (lambda: nn.MultiheadAttention(8, 2), (5, 2, 8)),
])
def test_a_reduced_input_to_a_float32_layer_needs_autocast(rng, module, shape):
    """Outside autocast: jaxconv's TypeError naming both dtypes (torch raises too); inside,
    the layer runs in bfloat16 on its float32 parameters."""
    m, x = module(), jnp.asarray(rng.standard_normal(shape), jnp.bfloat16)
    call = (lambda: m(x, x, x)[0]) if isinstance(m, nn.MultiheadAttention) else (lambda: m(x))
    with pytest.raises(TypeError, match=r"input \(bfloat16\) and weight \(float32\) must have the "
                                        r"same dtype \(for mixed precision, run it under jaxconv.autocast\)"):
        call()
    with jaxconv.autocast():
        assert call().dtype == jnp.bfloat16
