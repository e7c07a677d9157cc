"""Traced forwards specialised to their call sites (flag, optional and tensor-list arguments),
in-place buffer updates in a traced forward, and children whose names are not identifiers."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import equivalence
from equivalence import translate, translate_source
from tests._zoo import randomize_batchnorm, relative_error


class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x, pre_logits: bool = False, scale=None):
        x = x.mean((2, 3))
        if scale is not None:
            x = x * scale
        if pre_logits:
            return x
        return self.fc(x)


class Tree(torch.nn.Module):
    """timm's DlaTree pattern: an optional list argument, appended to, passed down."""

    def __init__(self, levels):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.sub = Tree(levels - 1) if levels > 1 else None

    def forward(self, x, children=None):
        if children is None:
            children = []
        y = self.conv(x)
        children.append(y)
        if self.sub is not None:
            return self.sub(y, children)
        return torch.cat([x] + children, 1)


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tree = Tree(3)
        self.head = Head()
        self.features = Head()

    def forward(self, x):
        t = self.tree(x)[:, :4]
        return self.head(t), self.features(t, pre_logits=True, scale=t.amax((2, 3)))


def _input(seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((2, 4, 5, 5)).astype(np.float32))


def test_arguments_are_specialised_to_what_the_parent_passes():
    torch.manual_seed(0)
    tm = Model().eval()
    x = _input()
    jm = translate(tm)
    out = jm(jnp.asarray(x.numpy()))
    with torch.no_grad():
        ref = tm(x)
    assert out[0].shape == (2, 3) and out[1].shape == (2, 4)
    for ours, theirs in zip(out, ref):
        assert relative_error(ours, theirs) < 1e-6
    source = translate_source(tm)
    assert "def __call__(self, x, pre_logits=False, scale=None):" in source
    assert "def __call__(self, x, children=None):" in source


def test_root_is_specialised_to_its_required_arguments_without_an_example():
    torch.manual_seed(0)
    tm = Head().eval()
    jm = translate(tm)
    x = _input()
    with torch.no_grad():
        assert relative_error(jm(jnp.asarray(x.numpy())), tm(x)) < 1e-6
    with pytest.raises(ValueError, match="translated for pre_logits=False only"):
        jm(jnp.asarray(x.numpy()), pre_logits=True)


class CountingNorm(torch.nn.BatchNorm2d):
    """timm's BatchNormAct2d pattern: ``forward`` overridden, buffers updated in place."""

    def forward(self, x):
        if self.training:
            self.num_batches_tracked.add_(1)
        return TF.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                             self.training, 0.1, self.eps)


def test_in_place_buffer_updates_are_translated_not_run_while_tracing():
    tm = randomize_batchnorm(torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), CountingNorm(4)))
    jm = translate(tm)
    assert int(tm[1].num_batches_tracked) == 0        # tracing changed nothing
    x = _input()
    out = jm(jnp.asarray(x.numpy()))
    with torch.no_grad():
        ref = tm(x)
    assert relative_error(out, ref) < 1e-6
    ours, theirs = equivalence.state_dict(jm), tm.state_dict()
    assert int(ours["1.num_batches_tracked"]) == int(theirs["1.num_batches_tracked"]) == 1
    for k in ("1.running_mean", "1.running_var"):
        assert relative_error(ours[k], theirs[k]) < 1e-6, k


class Split(torch.nn.ModuleDict):
    """timm's MixedConv2d pattern: a ModuleDict with its own forward and children '0', '1'."""

    def __init__(self):
        super().__init__({"0": torch.nn.Conv2d(2, 3, 3, padding=1), "1": torch.nn.Conv2d(2, 3, 5, padding=2)})

    def forward(self, x):
        parts = torch.split(x, [2, 2], 1)
        return torch.cat([c(parts[i]) for i, c in enumerate(self.values())], 1)


def test_children_named_by_numbers_in_a_traced_module():
    torch.manual_seed(0)
    tm = Split()
    x = _input()
    jm = translate(tm)
    assert list(equivalence.state_dict(jm)) == list(tm.state_dict())
    with torch.no_grad():
        ref = tm(x)
    assert relative_error(jm(jnp.asarray(x.numpy())), ref) < 1e-6
