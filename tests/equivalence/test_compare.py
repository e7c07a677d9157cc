"""compare / assert_equivalent on the seed models; the certificate; the plot; interception."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import equivalence
from equivalence import examples
from jaxconv.trace import intercept
from jaxconv import nn as jnn


def _port(name, **kwargs):
    ex = examples.EXAMPLES[name]
    tm = ex.torch_factory(seed=0, **kwargs)
    jm = ex.jax_factory(**kwargs)
    equivalence.load_state_dict(jm, tm.state_dict())
    return tm, jm


@pytest.mark.parametrize("name,shape,kwargs,train", [
    # residual_cnn with grads runs end to end in test_cli.py::test_no_arguments_runs_the_demo
    ("cifar_net", (2, 3, 32, 32), {}, True),
    ("dcgan_generator", (2, 16, 1, 1), {"nz": 16, "ngf": 4}, True),
    ("dcgan_generator", (2, 16, 1, 1), {"nz": 16, "ngf": 4}, False),
])
def test_seed_models_forward_and_grads(name, shape, kwargs, train):
    tm, jm = _port(name, **kwargs)
    report = equivalence.compare(tm, jm, shape, grads=True, train=train)
    assert report.passed, report.to_text()
    assert report.worst_ratio() < 0.5, report.to_text()
    names = {r.name for r in report.rows if r.section == "grad"}
    assert names == {n for n, _ in tm.named_parameters()} | {"input[0]"}
    layer_names = {r.name.split("#")[0] for r in report.rows if r.section == "layer"}
    assert layer_names == {n or "(root)" for n, _ in tm.named_modules()}
    if train:  # BatchNorm statistics were updated once on each side, and checked
        assert {r.name for r in report.rows if r.section == "buffer"} >= {
            n for n, _ in tm.named_buffers() if n.endswith("running_mean")}
    # compare leaves both models in the modes it found them in (test_compare_outputs.py: and
    # their values)
    modes = _modes(jm)
    assert len(modes) == sum(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Dropout)) for m in tm.modules())
    assert modes == [True] * len(modes) and tm.training


def _modes(jm):
    """The train flags of ``jm``'s mode-dependent layers (BatchNorm, Dropout), in order."""
    from jaxconv.nn import named_modules

    return [not m.use_running_average if hasattr(m, "use_running_average") else not m.deterministic
            for _, m in named_modules(jm) if hasattr(m, "use_running_average") or hasattr(m, "deterministic")]


def test_mode_follows_torch_and_shared_layer_compared_per_call():
    tm, jm = _port("residual_cnn")
    tm.eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32))
    report = equivalence.compare(tm, jm, x)
    assert report.meta["train"] is False
    pools = [r.name for r in report.rows if r.name.startswith("pool")]
    assert pools == ["pool#0", "pool#1", "pool#2"]  # one shared MaxPool2d, three calls in order
    assert report.meta["inputs"][0] == {"shape": [1, 1, 28, 28], "dtype": "float32", "origin": "given"}


def test_json_certificate_has_every_field(tmp_path):
    tm, jm = _port("cifar_net")
    report = equivalence.compare(tm.eval(), jm, (2, 3, 32, 32), grads=True, seed=7)
    path = tmp_path / "cert.json"
    report.to_json(path)
    cert = json.loads(path.read_text())
    assert cert["verdict"] == "PASS" and cert["passed"] is True
    assert cert["seed"] == 7 and cert["inputs"][0]["shape"] == [2, 3, 32, 32]
    assert set(cert["versions"]) >= {"torch", "jax", "flax", "jaxconv", "numpy"}
    assert all(cert["versions"][k] for k in ("torch", "jax", "flax", "jaxconv", "numpy"))
    assert cert["devices"]["jax"] and cert["devices"]["torch"] == "cpu"
    assert cert["precision"]["torch.backends.cudnn.allow_tf32"] is False
    assert cert["precision"]["jax_default_matmul_precision"] == "highest"
    assert "sqrt(n)" in cert["policy"]["text"] and cert["policy"]["c"] == equivalence.tolerance.C
    row = cert["rows"][0]
    assert set(row) >= {"name", "type", "shape", "max_abs", "max_rel", "tol", "ratio", "passed", "section"}
    assert {r["section"] for r in cert["rows"]} == {"layer", "grad"}


def test_precision_flags_restored():
    before = (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("medium")
    try:
        tm, jm = _port("cifar_net")
        report = equivalence.compare(tm.eval(), jm, (1, 3, 32, 32))
        assert report.meta["precision"]["torch.float32_matmul_precision"] == "highest"
        assert torch.backends.cudnn.allow_tf32 is True
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.backends.cudnn.allow_tf32 = before[0]
        torch.set_float32_matmul_precision(before[1])


def test_assert_equivalent_raises_with_report_and_plot(tmp_path):
    tm, jm = _port("cifar_net")
    equivalence.assert_equivalent(tm.eval(), jm, (1, 3, 32, 32))
    w = equivalence.state_dict(jm)["3.weight"]
    bad = dict(equivalence.state_dict(jm))
    bad["3.weight"] = w[:, :, ::-1, :].copy()  # a vertically flipped kernel
    equivalence.load_state_dict(jm, bad)
    with pytest.raises(AssertionError, match=r"FAIL: .*first divergence at 3 "):
        equivalence.assert_equivalent(tm, jm, (1, 3, 32, 32))
    report = equivalence.compare(tm, jm, (1, 3, 32, 32))
    png = tmp_path / "errors.png"
    report.plot(png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_interception_restores_classes_and_leaks_no_tracers():
    conv = jnn.Conv2d(2, 3, 3)
    seen = []

    def hook(self, cls, args, kwargs):
        out = cls.__call__(self, *args, **kwargs)
        seen.append(out)
        return out

    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 2, 5, 5)), jnp.float32)
    with intercept({conv: hook}):
        assert type(conv).__name__ == "Conv2d" and type(conv) is not jnn.Conv2d
        jax.jit(lambda x: conv(x))(x)
    assert type(conv) is jnn.Conv2d
    with pytest.raises(jax.errors.TracerArrayConversionError):  # recorded inside the trace only
        np.asarray(seen[0])
    y = conv(x)  # eager call after restore: the plain class, no recording
    assert len(seen) == 1 and y.shape == (1, 3, 3, 3)


def test_structure_mismatch_fails():
    tm, jm = _port("cifar_net")
    original = type(jm)

    class Skipping(type(jm)):
        def __call__(self, x):  # skips the first Tanh
            for i, m in enumerate(self):
                if i != 1:
                    x = m(x)
            return x

    jm.__class__ = Skipping
    try:
        report = equivalence.compare(tm.eval(), jm, (1, 3, 32, 32))
    finally:
        jm.__class__ = original
    assert not report.passed
    assert "1: torch called it, jaxconv did not" in report.structure
    root = next(r for r in report.rows if r.name == "(root)")
    assert not root.passed and "where torch called '1'" in root.note


class _TwoAlike(torch.nn.Module):
    """Two attention blocks and two norms of the same shapes: the check of each kind compiles
    once and runs with each layer's own weights (:func:`equivalence.checks.run_leaves`, the
    composite's running-bound program)."""

    def __init__(self):
        super().__init__()
        self.attn = torch.nn.ModuleList([torch.nn.MultiheadAttention(8, 2, batch_first=True) for _ in range(2)])
        self.norm = torch.nn.ModuleList([torch.nn.LayerNorm(8) for _ in range(2)])

    def forward(self, x):
        for attn, norm in zip(self.attn, self.norm):
            x = norm(x + attn(x, x, x, need_weights=False)[0])
        return x


def test_alike_layers_share_a_compilation_and_keep_their_own_weights():
    """A planted error in the second of two alike layers fails that layer's row and no other:
    the shared compiled check runs each layer with its own weights."""
    torch.manual_seed(0)
    tm = _TwoAlike().eval()
    with torch.no_grad():
        for n in tm.norm:
            n.weight.copy_(torch.rand(8) + 0.5)
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))
    jm = equivalence.translate(tm, x)
    assert equivalence.compare(tm, jm, x).passed
    jm.attn[1].in_proj_weight[...] = jm.attn[1].in_proj_weight[...].at[3, 2].multiply(1 + 1e-3)
    jm.norm[1].weight[...] = jm.norm[1].weight[...].at[5].multiply(1 + 1e-3)
    report = equivalence.compare(tm, jm, x)
    assert {r.name for r in report.rows if not r.passed} == {"attn.1", "norm.1"}, report.to_text()
