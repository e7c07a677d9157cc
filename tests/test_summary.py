"""summary(): per-layer output shapes and parameter counts, checked against torch."""
import numpy as np
import pytest
import torch

import jaxconv
from equivalence.examples import cifar_net_jax, cifar_net_torch, residual_cnn_jax, residual_cnn_torch
from jaxconv import nn


def _torch_output_shapes(model, x):
    """Per-call output shapes of torch's named submodules, via forward hooks, batch dim dropped."""
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: shapes.append((name, tuple(o.shape[1:]))))
             for name, m in model.named_modules() if name]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return shapes


def test_seed_residual_cnn_shapes_and_params():
    model = residual_cnn_jax()
    s = jaxconv.summary(model, (1, 28, 28))
    assert s.row("conv1").output_shape == (32, 28, 28)
    assert s.row("pool", 0).output_shape == (32, 14, 14)
    assert s.row("resblock1").output_shape == (64, 14, 14)
    assert s.row("resblock2").output_shape == (128, 7, 7)
    assert s.row("pool", 2).output_shape == (128, 3, 3)
    tm = residual_cnn_torch()
    assert s.total_params == sum(p.numel() for p in tm.parameters())
    # Every call, in call order, as torch's forward hooks see them (hooks fire at return, so
    # compare as multisets of (name, shape) pairs, and the order of the leaf calls).
    torch_rows = _torch_output_shapes(tm, torch.zeros(2, 1, 28, 28))
    ours = [(r.name, r.output_shape) for r in s.rows]
    assert sorted(ours) == sorted(torch_rows)
    leaves = {n for n, m in tm.named_modules() if not list(m.children())}
    assert [r for r in ours if r[0] in leaves] == [r for r in torch_rows if r[0] in leaves]
    text = str(s)
    assert "resblock1.shortcut (Conv2d)" in text and f"Total params: {s.total_params:,}" in text


def test_seed_cifar_net_has_18090_params_and_torch_shapes():
    model = cifar_net_jax()
    s = jaxconv.summary(model, (3, 32, 32), batch_size=4)
    assert s.total_params == 18090 == sum(p.numel() for p in cifar_net_torch().parameters())
    assert [(r.name, r.output_shape) for r in s.rows] == _torch_output_shapes(cifar_net_torch(), torch.zeros(4, 3, 32, 32))
    assert all(r.params == sum(p.numel() for p in getattr(cifar_net_torch(), r.name).parameters()) for r in s.rows)


def test_summary_does_no_arithmetic_and_leaves_the_model_unchanged():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 1))
    before = np.asarray(model[0].weight[...]).copy()
    s = jaxconv.summary(model, (3, 4096, 4096))  # 200 MB of activations if it computed anything
    assert s.row("0").output_shape == (4, 4094, 4094)
    np.testing.assert_array_equal(np.asarray(model[0].weight[...]), before)
    assert type(model[0]) is nn.Conv2d


def test_summary_of_a_multi_input_model_and_a_tuple_output():
    class TwoIn(nn.Module):
        def __init__(self):
            self.a = nn.Conv1d(2, 3, 3)
            self.b = nn.Conv1d(2, 3, 1)

        def __call__(self, x, y):
            return self.a(x), self.b(y)

    s = jaxconv.summary(TwoIn(), [(2, 10), (2, 7)])
    assert [(r.name, r.output_shape) for r in s.rows] == [("a", (3, 8)), ("b", (3, 7))]
    assert s.total_params == (3 * 2 * 3 + 3) + (3 * 2 + 3)


@pytest.mark.parametrize("fn, args, torch_fn", [
    (jaxconv.functional.conv_output_size, ((50, 100), (3, 5), (2, 1), (4, 2), (3, 1)),
     lambda: torch.nn.Conv2d(1, 1, (3, 5), (2, 1), (4, 2), (3, 1))(torch.zeros(1, 1, 50, 100))),
    (jaxconv.functional.conv_transpose_output_size, ((7, 9), (4, 3), (2, 3), (1, 0), (1, 2), (1, 1)),
     lambda: torch.nn.ConvTranspose2d(1, 1, (4, 3), (2, 3), (1, 0), (1, 2))(torch.zeros(1, 1, 7, 9))),
])
def test_calculator_helpers_match_torch(fn, args, torch_fn):
    assert fn(*args) == tuple(torch_fn().shape[2:])


def test_a_shared_module_is_named_by_its_first_path_and_indented_where_it_runs():
    class Block(nn.Module):
        def __init__(self, pos):
            self.pos = pos                 # one module in both blocks
            self.conv = nn.Conv2d(2, 2, 1)

        def __call__(self, x):
            return self.conv(self.pos(x))

    class Net(nn.Module):
        def __init__(self):
            self.pos = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1))   # its first path
            self.blocks = nn.ModuleList([Block(self.pos), Block(self.pos)])

        def __call__(self, x):
            return self.blocks[1](self.blocks[0](x))

    s = jaxconv.summary(Net(), (2, 5, 5))
    assert [(r.name, r.depth) for r in s.rows] == [
        ("blocks.0", 1), ("pos", 2), ("pos.0", 3), ("blocks.0.conv", 2),
        ("blocks.1", 1), ("pos", 2), ("pos.0", 3), ("blocks.1.conv", 2)]
    assert s.total_params == 38 + 2 * 6 and s.row("blocks.1").params == 38 + 6   # as torch counts
