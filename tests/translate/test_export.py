"""The torch.export fallback: modules fx cannot trace, each ATen op against torch, output
structures (Hugging Face ``ModelOutput``), buffers left alone, and ``nnx.jit`` of the result."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from flax import nnx

from equivalence import state_dict
from equivalence import TranslationError, translate, translate_source

from tests._util import assert_close, randn, t


class ShapePad(torch.nn.Module):
    """Pads odd sizes to even ones, deciding from ``x.shape``: fx cannot trace that."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3, stride=2)
        self.bn = torch.nn.BatchNorm2d(5)
        self.fc = torch.nn.Linear(5, 4)
        self.scale = torch.nn.Parameter(torch.randn(5))

    def forward(self, x, scale_output=True):
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = TF.pad(x, (0, w % 2, 0, h % 2))
        y = self.bn(self.conv(x))
        if self.training:
            y = TF.dropout(y, 0.25)
        y = TF.silu(y) * self.scale[:, None, None]
        return {"features": y, "logits": self.fc(y.mean((2, 3)))}


def _randomized(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*m.parameters(), *(b for b in m.buffers() if b.is_floating_point())]:
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    return m


def test_fx_fails_and_the_error_names_the_fallback():
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(ShapePad())
    with pytest.raises(TranslationError, match=r"torch.fx cannot trace.*example inputs.*torch.export"):
        translate_source(ShapePad())


def test_shape_dependent_module(rng):
    m = _randomized(ShapePad()).double().eval()
    x = t(randn(rng, 2, 3, 9, 7))
    jm, source = translate(m, x), translate_source(m, x)
    assert "nn.Conv2d(3, 5, 3, stride=2" in source and "nn.BatchNorm2d(5" in source  # leaves kept
    assert "if self.training:" in source and "Captured by torch.export" in source
    y = jm(jnp.asarray(x.numpy()))
    ty = m(x)
    assert list(y) == ["features", "logits"]
    for k in ty:
        assert_close(y[k], ty[k].detach(), reduction=27)
    sd, tsd = state_dict(jm), m.state_dict()
    assert list(sd) == list(tsd)
    for k in tsd:
        np.testing.assert_array_equal(np.asarray(sd[k]), tsd[k].numpy())


def test_train_mode_capture_leaves_buffers_and_modes_alone(rng):
    m = _randomized(ShapePad()).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    modes = [sub.training for sub in m.modules()]
    jm = translate(m, t(randn(rng, 2, 3, 9, 7, dtype=np.float32)))
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [sub.training for sub in m.modules()] == modes
    assert jm.training
    x = randn(rng, 2, 3, 9, 7, dtype=np.float32)
    y = jm(jnp.asarray(x))              # train graph: batch statistics, dropout with a key
    assert y["features"].shape == (2, 5, 4, 3)
    m(t(x))
    sd, tsd = state_dict(jm), m.state_dict()
    for k in ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked"):
        assert_close(sd[k], tsd[k].numpy(), np.float32, reduction=50)


def test_gradients_and_nnx_jit(rng):
    m = _randomized(ShapePad()).double().eval()
    x = randn(rng, 2, 3, 9, 7)
    jm = translate(m, t(x))
    g = randn(rng, 2, 4)
    tx = t(x).requires_grad_(True)
    (m(tx)["logits"] * t(g)).sum().backward()
    _, vjp = jax.vjp(lambda a: jm(a)["logits"], jnp.asarray(x))
    assert_close(vjp(jnp.asarray(g))[0], tx.grad, reduction=27 * 5)
    out = nnx.jit(lambda model, a: model(a))(jm, jnp.asarray(x))
    assert_close(out["logits"], m(t(x))["logits"].detach(), reduction=27)


class Op(torch.nn.Module):
    """One torch call behind a shape check (so fx fails and export captures it)."""

    def __init__(self, fn, *shapes):
        super().__init__()
        self.fn = fn
        self.names = [f"p{i}" for i in range(len(shapes))]
        for name, s in zip(self.names, shapes):
            self.register_parameter(name, torch.nn.Parameter(torch.randn(s)))

    def forward(self, x):
        if x.shape[0] < 1:
            raise ValueError("empty batch")
        return self.fn(x, *(getattr(self, n) for n in self.names))


_X = (2, 4, 6, 8)
#: name -> (the ATen op export records, torch function, parameter shapes, input shape)
OPS = {
    "conv2d": ("conv2d.default", lambda x, w, b: TF.conv2d(x, w, b, 2, 1, 1, 2), [(6, 2, 3, 3), (6,)], _X),
    "conv_transpose2d": ("conv_transpose2d.input", lambda x, w: TF.conv_transpose2d(x, w, None, 2, 1, 1),
                         [(4, 3, 3, 3)], _X),
    "linear": ("linear.default", lambda x, w, b: TF.linear(x, w, b), [(5, 8), (5,)], _X),
    "layer_norm": ("layer_norm.default", lambda x, w, b: TF.layer_norm(x, (8,), w, b, 1e-3), [(8,), (8,)], _X),
    "group_norm": ("group_norm.default", lambda x, w, b: TF.group_norm(x, 2, w, b), [(4,), (4,)], _X),
    "batch_norm": ("batch_norm.default", lambda x, w, b, m: TF.batch_norm(x, m.detach(), w.detach().abs() + 0.5, w, b, False, 0.1, 1e-3),
                   [(4,), (4,), (4,)], _X),
    "max_pool2d": ("max_pool2d.default", lambda x: TF.max_pool2d(x, 3, 2, 1, ceil_mode=True), [], _X),
    "avg_pool2d": ("avg_pool2d.default", lambda x: TF.avg_pool2d(x, 3, 2, 1, True, False), [], _X),
    "adaptive_avg_pool2d": ("adaptive_avg_pool2d.default", lambda x: TF.adaptive_avg_pool2d(x, (2, 3)), [], _X),
    "mean": ("mean.dim", lambda x: x.mean((2, 3), keepdim=True), [], _X),
    "sum": ("sum.dim_IntList", lambda x: x.sum(1), [], _X),
    "amax": ("amax.default", lambda x: x.amax(1), [], _X),
    "silu": ("silu.default", TF.silu, [], _X),
    "hardswish": ("hardswish.default", TF.hardswish, [], _X),
    "hardsigmoid": ("hardsigmoid.default", TF.hardsigmoid, [], _X),
    "relu6": ("relu6.default", TF.relu6, [], _X),
    "gelu_tanh": ("gelu.default", lambda x: TF.gelu(x, approximate="tanh"), [], _X),
    "leaky_relu": ("leaky_relu.default", lambda x: TF.leaky_relu(x, 0.2), [], _X),
    "elu": ("elu.default", lambda x: TF.elu(x, 0.7), [], _X),
    "mish": ("mish.default", TF.mish, [], _X),
    "softplus": ("softplus.default", lambda x: TF.softplus(x, 2.0, 3.0), [], _X),
    "sigmoid": ("sigmoid.default", torch.sigmoid, [], _X),
    "softmax": ("softmax.int", lambda x: x.softmax(1), [], _X),
    "log_softmax": ("log_softmax.int", lambda x: x.log_softmax(-1), [], _X),
    "clamp": ("clamp.default", lambda x: x.clamp(-0.5, 0.7), [], _X),
    "add_alpha": ("add.Tensor", lambda x, w: torch.add(x, w, alpha=2.5), [(8,)], _X),
    "rsub": ("rsub.Scalar", lambda x: 1.5 - x, [], _X),
    "div_floor": ("div.Tensor_mode", lambda x: torch.div(x, 0.7, rounding_mode="floor"), [], _X),
    "pow": ("pow.Tensor_Scalar", lambda x: x ** 3, [], _X),
    "cat": ("cat.default", lambda x: torch.cat([x, 2 * x], 1), [], _X),
    "stack": ("stack.default", lambda x: torch.stack([x, -x], 2), [], _X),
    "permute": ("permute.default", lambda x: x.permute(0, 2, 3, 1), [], _X),
    "view": ("view.default", lambda x: x.view(2, -1, 4), [], _X),
    "reshape_as": ("reshape_as.default", lambda x: x.flatten(2).reshape_as(x), [], _X),
    "flatten": ("flatten.using_ints", lambda x: x.flatten(1), [], _X),
    "transpose": ("transpose.int", lambda x: x.transpose(1, 3), [], _X),
    "unsqueeze": ("unsqueeze.default", lambda x: x.unsqueeze(1), [], _X),
    "squeeze": ("squeeze.dim", lambda x: x[:, :1].squeeze(1), [], _X),
    "expand": ("expand.default", lambda x: x[:, :1].expand(2, 3, 6, 8), [], _X),
    "slice": ("slice.Tensor", lambda x: x[:, 1:, ::2, -3:], [], _X),
    "select": ("select.int", lambda x: x[:, 2], [], _X),
    "chunk": ("chunk.default", lambda x: x.chunk(2, 1)[1], [], _X),
    "split": ("split.Tensor", lambda x: x.split(3, -1)[-1], [], _X),
    "matmul": ("matmul.default", lambda x: x @ x.transpose(-1, -2), [], _X),
    "pad_reflect": ("pad.default", lambda x: TF.pad(x, (1, 2, 0, 1), mode="reflect"), [], _X),
    "pad_value": ("pad.default", lambda x: TF.pad(x, (1, 2, 0, 1), value=0.5), [], _X),
    "interpolate_bilinear": ("upsample_bilinear2d.vec",
                             lambda x: TF.interpolate(x, scale_factor=1.5, mode="bilinear"), [], _X),
    "interpolate_nearest": ("upsample_nearest2d.vec", lambda x: TF.interpolate(x, size=(9, 12)), [], _X),
    "sdpa": ("scaled_dot_product_attention.default", lambda x: TF.scaled_dot_product_attention(x, x, x), [], _X),
    "dropout_eval": ("dropout.default", lambda x: TF.dropout(x, 0.3, False), [], _X),
    "zeros": ("zeros.default", lambda x: x + torch.zeros(8, dtype=x.dtype), [], _X),
    "cast": ("to.dtype", lambda x: x.float().double() * 3, [], _X),
    "vector_norm": ("linalg_vector_norm.default", lambda x: torch.linalg.vector_norm(x, 2, (1, 2), True), [], _X),
}


def _aten_ops(m, x):
    graph = torch.export.export(m, (x,), strict=False).graph
    return {n.target.__name__ for n in graph.nodes if isinstance(n.target, torch._ops.OpOverload)}


#: no gradient check: ties or flat pieces, or torch's float64 backward rounds (hardsigmoid's
#: backward multiplies by a float32 1/6)
_NO_GRAD = {"zeros", "max_pool2d", "amax", "div_floor", "clamp", "hardsigmoid"}


@pytest.mark.parametrize("name", sorted(OPS))
def test_aten_op(name, rng):
    op, fn, shapes, shape = OPS[name]
    torch.manual_seed(len(name))
    m = Op(fn, *shapes).double().eval()
    x = randn(rng, *shape)
    assert op in _aten_ops(m, t(x))
    jm = translate(m, t(x))
    tx = t(x).requires_grad_(True)
    ty = m(tx)
    g = randn(rng, *ty.shape)
    (ty * t(g)).sum().backward()
    y, vjp = jax.vjp(jm, jnp.asarray(x))
    assert_close(y, ty.detach(), reduction=64)
    if name not in _NO_GRAD:
        assert_close(vjp(jnp.asarray(g))[0], tx.grad, reduction=64)


class Outputs(torch.nn.Module):
    """Returns a Hugging Face ``ModelOutput`` with one field left ``None``."""

    def forward(self, x):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        if x.shape[1] != 3:
            raise ValueError("three channels expected")
        return BaseModelOutputWithPooling(last_hidden_state=x * 2, pooler_output=x.mean((2, 3)))


def test_model_output_structure(rng):
    from equivalence._torch import import_torchvision

    import_torchvision()
    pytest.importorskip("transformers")
    m = Outputs()
    x = randn(rng, 2, 3, 4, 5, dtype=np.float32)
    jm = translate(m, t(x))
    ty, y = m(t(x)), jm(jnp.asarray(x))
    assert type(y).__name__ == type(ty).__name__ == "BaseModelOutputWithPooling"
    assert list(y.keys()) == list(ty.keys()) == ["last_hidden_state", "pooler_output"]
    assert y.hidden_states is None and ty.hidden_states is None
    assert_close(y.pooler_output, ty.pooler_output, np.float32, reduction=20)
    assert_close(y[0], ty[0], np.float32)
    assert_close(y["last_hidden_state"], ty["last_hidden_state"], np.float32)
    assert [a.shape for a in y.to_tuple()] == [tuple(a.shape) for a in ty.to_tuple()]
    with pytest.raises(AttributeError, match="no field"):
        y.logits  # noqa: B018
    leaves, treedef = jax.tree_util.tree_flatten(y)
    assert len(leaves) == 2 and type(jax.tree_util.tree_unflatten(treedef, leaves)) is type(y)
    out = nnx.jit(lambda model, a: model(a))(jm, jnp.asarray(x))
    assert type(out) is type(y) and list(out) == list(y)
    assert_close(out.last_hidden_state, ty.last_hidden_state, np.float32)


class Caller(torch.nn.Module):
    """fx traces this one; its child (not traceable) is exported with the arguments it gets."""

    def __init__(self):
        super().__init__()
        self.inner = ShapePad()
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.inner(x, scale_output=False)["logits"])


def test_exported_child_called_with_keywords(rng):
    m = _randomized(Caller()).eval()
    x = randn(rng, 2, 3, 8, 7, dtype=np.float32)
    jm = translate(m, t(x))
    assert "def __call__(self, x, scale_output=True):" in translate_source(m, t(x))
    assert_close(jm(jnp.asarray(x)), m(t(x)).detach(), np.float32, reduction=30)


class Partly(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.used = torch.nn.Linear(3, 3)
        self.unused = ShapePad()

    def forward(self, x):
        return self.used(x)


def test_module_not_called_by_the_example_is_a_stub():
    with pytest.warns(UserWarning, match=r"unused \(.*ShapePad\) was not translated.*reach it in neither"):
        jm = translate(Partly(), torch.randn(2, 3))
    with pytest.raises(RuntimeError, match="translate with example inputs that reach it"):
        jm.unused(jnp.ones((2, 3, 4, 4)))


class Shared(torch.nn.Module):
    """A child called twice, list items, ``*args`` and a nested output structure."""

    def __init__(self):
        super().__init__()
        self.act = torch.nn.GELU()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(2)])

    def forward(self, x, *extra, scale=2.0, **kwargs):
        if x.shape[0] > 1:
            x = self.act(x)
        for block in self.blocks:
            x = self.act(block(x)) + extra[0]
        return x, [x * scale]


def test_shared_child_star_args_and_nested_outputs(rng):
    m = Shared().eval()
    x, e = randn(rng, 3, 4, dtype=np.float32), randn(rng, 4, dtype=np.float32)
    jm = translate(m, t(x), t(e))
    assert "def __call__(self, x, *extra, scale=2.0, **kwargs):" in translate_source(m, t(x), t(e))
    y, ty = jm(jnp.asarray(x), jnp.asarray(e)), m(t(x), t(e))
    assert isinstance(y, tuple) and isinstance(y[1], list)
    assert_close(y[0], ty[0].detach(), np.float32, reduction=8)
    assert_close(y[1][0], ty[1][0].detach(), np.float32, reduction=8)
