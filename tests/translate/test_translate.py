"""The translator on models written for the test: every construct a custom forward uses,
train/eval, gradients, jit, the generated source on its own, errors and registration."""
import os
import subprocess
import sys
import tempfile
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from flax import nnx

import equivalence
from equivalence import TranslationError, translate, translate_source
from tests._zoo import randomize_batchnorm, relative_error
from tests.translate import _user


class Custom(torch.nn.Module):
    """Residual, cat, chunk, view/permute/flatten, interpolate, pad, slicing, self.training."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.branch = torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")
        self.head = torch.nn.Linear(8 * 5 * 5, 6)

    def forward(self, x):
        y = TF.relu(self.bn(self.stem(x)))
        a, b = y.chunk(2, dim=1)
        b = self.branch(b) + b
        y = torch.cat([a, b], dim=1)
        y = TF.pad(y, (1, 0, 0, 1), mode="replicate")
        y = TF.interpolate(y, scale_factor=0.5, mode="bilinear", align_corners=False)
        y = y[:, :, 1:, :-1]
        if self.training:
            y = y * 0.5
        n = y.shape[0]
        z = y.permute(0, 2, 3, 1).reshape(n, -1)
        return {"pooled": torch.flatten(y, 1).mean(dim=1, keepdim=True), "logits": self.head(z.view(n, -1))}


def _input(shape=(2, 3, 12, 12), seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _custom():
    torch.manual_seed(0)
    return randomize_batchnorm(Custom())


def _out(d):
    return {k: np.asarray(v) for k, v in d.items()}


def test_custom_model_eval_matches_torch_and_keeps_the_output_structure():
    tm = _custom().eval()
    x = _input()
    jm = translate(tm, x)
    out = jm(jnp.asarray(x.numpy()))
    assert list(out) == ["pooled", "logits"]        # torch's order, not sorted
    assert list(nnx.jit(lambda m, x: m(x))(jm, jnp.asarray(x.numpy()))) == ["pooled", "logits"]
    with torch.no_grad():
        ref = tm(x)
    for k in ref:
        assert relative_error(out[k], ref[k]) < 1e-5, k


def test_state_dict_is_torchs_names_order_shapes_and_bits():
    tm = _custom()
    jm = translate(tm)
    ours, theirs = equivalence.state_dict(jm), tm.state_dict()
    assert list(ours) == list(theirs)
    for k in theirs:
        assert ours[k].shape == tuple(theirs[k].shape), k
        np.testing.assert_array_equal(ours[k], theirs[k].numpy(), err_msg=k)


def test_train_mode_branch_and_batchnorm_buffers_follow_torch():
    tm = _custom().train()
    jm = translate(tm)
    assert "if self.training:" in translate_source(tm)
    x = _input()
    out = jm(jnp.asarray(x.numpy()))
    ref = tm(x)
    assert relative_error(out["logits"], ref["logits"].detach()) < 1e-5
    np.testing.assert_allclose(np.asarray(jm.bn.running_mean[...]), tm.bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jm.bn.running_var[...]), tm.bn.running_var.numpy(), rtol=1e-5, atol=1e-6)
    assert int(jm.bn.num_batches_tracked[...]) == int(tm.bn.num_batches_tracked) == 1
    jm.eval()
    tm.eval()
    with torch.no_grad():
        ref = tm(x)
    assert relative_error(jm(jnp.asarray(x.numpy()))["logits"], ref["logits"]) < 1e-5


def test_gradients_under_nnx_jit_match_torch():
    tm = _custom().eval()
    jm = translate(tm)
    x = _input()
    loss = lambda m, x: jnp.sum(m(x)["logits"] ** 2) + jnp.sum(m(x)["pooled"])
    grads = nnx.jit(nnx.grad(loss))(jm, jnp.asarray(x.numpy()))
    out = tm(x)
    (out["logits"].pow(2).sum() + out["pooled"].sum()).backward()
    flat = {".".join(str(k) for k in path): v for path, v in nnx.to_flat_state(grads)}
    for name, p in tm.named_parameters():
        assert relative_error(flat[name], p.grad) < 1e-5, name


def test_inplace_ops_alias_as_in_torch():
    class InPlace(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.act = torch.nn.ReLU(inplace=True)

        def forward(self, x):
            skip = x
            y = self.act(x)          # also rewrites skip: they are one tensor
            y.mul_(2)
            return y + skip

    tm = InPlace()
    x = _input()
    out = translate(tm)(jnp.asarray(x.numpy()))
    np.testing.assert_allclose(np.asarray(out), tm(x.clone()).numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out), 4 * np.maximum(x.numpy(), 0), rtol=1e-6)


def test_generated_source_runs_without_torch():
    tm = _custom().eval()
    source = translate_source(tm)
    assert "torch" not in "\n".join(l for l in source.splitlines() if "import" in l)
    x = _input()
    with torch.no_grad():
        ref = tm(x)["logits"].numpy()
    script = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None   # any import of torch now fails
        import numpy as np, jax.numpy as jnp
        namespace = {}
        exec(compile(open(sys.argv[1]).read(), "model.py", "exec"), namespace)
        model = namespace["build"]()
        import equivalence
        equivalence.load_state_dict(model, sys.argv[2], strict=True)
        model.eval()
        np.save(sys.argv[3], np.asarray(model(jnp.asarray(np.load(sys.argv[4])))["logits"]))
    """)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, n) for n in ("model.py", "w.safetensors", "out.npy", "x.npy")]
        open(paths[0], "w").write(source)
        equivalence.io.write(dict(tm.state_dict()), paths[1])
        np.save(paths[3], x.numpy())
        subprocess.run([sys.executable, "-c", script, *paths], check=True)
        assert relative_error(np.load(paths[2]), ref) < 1e-5


def test_one_class_per_torch_class():
    class Block(torch.nn.Module):
        def __init__(self, c, down):
            super().__init__()
            self.conv = torch.nn.Conv2d(c, c, 3, padding=1)
            self.down = torch.nn.Conv2d(c, c, 1) if down else None

        def forward(self, x):
            y = self.conv(x)
            if self.down is not None:
                x = self.down(x)
            return y + x

    tm = torch.nn.Sequential(Block(3, True), Block(3, False), Block(3, False))
    source = translate_source(tm)
    assert source.count("class Block") == 1
    x = _input()
    with torch.no_grad():
        assert relative_error(translate(tm)(jnp.asarray(x.numpy())), tm(x)) < 1e-5


class Unsupported(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.conv = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x, ids):
        y = torch.fft.fft2(self.conv(x)).real
        return y.sum() + self.embed(ids).sum() + torch.special.i0(y).sum()


def test_unsupported_ops_are_all_listed_with_their_lines_before_anything_is_built():
    from jaxconv import _rng

    before = dict(_rng._stream)
    with pytest.raises(TranslationError) as err:
        translate(Unsupported())
    text = str(err.value)
    for what in ("torch.fft.fft2", "torch.special.i0", "embedding"):
        assert what in text, (what, text)
    assert "test_translate.py:" in text                    # the user's source line
    assert "embed (torch.nn.modules.sparse.Embedding)" in text
    assert len(err.value.problems) == 3
    assert dict(_rng._stream) == before                    # nothing was built


def test_registered_module_and_function():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.scale = _user.TorchScale(4)

        def forward(self, x):
            return _user.soft_clip(self.scale(self.conv(x)), 0.5)

    tm = Net()
    with pytest.raises(TranslationError):
        translate(tm)
    equivalence.register(_user.TorchScale, "tests.translate._user:Scale")
    equivalence.register(_user.soft_clip, "tests.translate._user:soft_clip_jax")
    try:
        source = translate_source(tm)
        assert "from tests.translate._user import Scale, soft_clip_jax" in source
        x = _input((1, 3, 8, 8))
        with torch.no_grad():
            assert relative_error(translate(tm)(jnp.asarray(x.numpy())), tm(x)) < 1e-5
    finally:
        equivalence.unregister(_user.TorchScale)
        equivalence.unregister(_user.soft_clip)


@pytest.mark.parametrize("name", ["residual_cnn", "cifar_net", "dcgan_generator"])
def test_seed_models_match_their_hand_written_twins(name):
    from equivalence.examples import EXAMPLES

    ex = EXAMPLES[name]
    tm = randomize_batchnorm(ex.torch_factory(seed=0)).eval()
    jm = translate(tm)
    twin = ex.jax_factory()
    equivalence.load_state_dict(twin, tm.state_dict(), strict=True)
    twin.eval()
    assert list(equivalence.state_dict(jm)) == list(equivalence.state_dict(twin))
    x = jnp.asarray(_input(ex.input_shape).numpy())
    np.testing.assert_allclose(np.asarray(jm(x)), np.asarray(twin(x)), rtol=1e-6, atol=1e-6)
    assert equivalence.compare(tm, jm, ex.input_shape).passed


def test_functional_dropout_in_a_traced_forward_draws_from_the_modules_stream():
    class Drop(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return TF.dropout(self.conv(x), p=0.5, training=self.training)

    tm = Drop()
    jm = translate(tm, rngs=nnx.Rngs(3))
    x = jnp.asarray(_input().numpy())
    a, b = jm(x), jm(x)
    y = np.asarray(jm.conv(x))
    for out in (a, b):                          # torch's rule: zero, or scaled by 1/(1-p)
        out = np.asarray(out)
        kept = out != 0
        assert 0.3 < kept.mean() < 0.7
        np.testing.assert_allclose(out[kept], 2 * y[kept], rtol=1e-6)
    assert (np.asarray(a) != np.asarray(b)).any()   # a fresh mask per call
    jm.eval()
    np.testing.assert_array_equal(np.asarray(jm(x)), y)


class _Checked(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        n, c, h, w = x.shape
        torch._assert(h * 2 == w + 7, "odd shape")
        return self.conv(x) * c


def _dead_locals(src: str) -> set:
    """Locals of the generated ``__call__`` methods assigned and never read."""
    import ast

    dead = set()
    for fn in ast.walk(ast.parse(src)):
        if isinstance(fn, ast.FunctionDef) and fn.name == "__call__":
            names = [n for n in ast.walk(fn) if isinstance(n, ast.Name)]
            dead |= ({n.id for n in names if isinstance(n.ctx, ast.Store)}
                     - {n.id for n in names if isinstance(n.ctx, ast.Load)})
    return dead


def test_a_dropped_assert_leaves_no_dead_line():
    x = torch.randn(1, 3, 9, 11)
    src = translate_source(_Checked(), x)
    assert "_assert" not in src and "== " not in src and "* 2" not in src and "+ 7" not in src, src
    assert not _dead_locals(src), src       # nor the unused n of n, c, h, w = x.shape
    tm = _Checked()
    y = translate(tm, x)(jnp.asarray(x.numpy()))
    assert relative_error(y, tm(x).detach()) <= 1e-5
