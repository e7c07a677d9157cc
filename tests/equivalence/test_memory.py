"""Nothing of a model outlives its translation and comparison.

After ``translate`` and ``compare`` return and the caller drops its references, the torch
model, the translated module tree and the generated Python module are garbage: no registry,
cache, hook or compiled function of ``equivalence`` keeps them. (The generated classes stay:
flax registers every ``nnx.Module`` subclass with JAX's pytree registry, which never forgets
a type; they hold code, not weights.) JAX's own caches keep the compiled code of eager ops,
one per new shape, up to their LRU limits; ``jax.clear_caches()`` releases those, so the slow
test bounds memory across distinct models with it.
"""
import gc
import weakref

import jax
import numpy as np
import pytest
import torch

from equivalence import compare, translate, translator
from tests._util import rss_mb
from tests._zoo import randomize_batchnorm, timm


class Residual(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x))) + x


class Small(torch.nn.Module):
    """Leaves, a traced composite called twice (one instance) and a head."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 4, 3)
        self.block = Residual(4)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):
        x = self.block(self.block(self.stem(x)))
        return self.fc(x.mean((2, 3)))


def _translate_and_compare(monkeypatch, make, x, grads=True):
    """One round; weak references to the torch model, the translated module and the generated
    Python module, and the verdict."""
    loaded, load = [], translator._load_source
    with monkeypatch.context() as patch:
        patch.setattr(translator, "_load_source", lambda *a: loaded.append(load(*a)) or loaded[-1])
        model = randomize_batchnorm(make()).eval()
        jm = translate(model, x)
    passed = compare(model, jm, x, grads=grads).passed
    return [weakref.ref(model), weakref.ref(jm), *map(weakref.ref, loaded)], passed


def _alive(refs):
    gc.collect()
    return [r for r in refs if r() is not None]


def test_nothing_outlives_translate_and_compare(monkeypatch):
    """The forward comparison (the slow test adds gradients, which cost the time of both)."""
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    refs, passed = _translate_and_compare(monkeypatch, Small, x, grads=False)
    assert passed and len(refs) == 3
    assert not _alive(refs), [type(r()).__name__ for r in _alive(refs)]


@pytest.mark.slow
def test_memory_stays_bounded_across_models(monkeypatch):
    """The same small model ten times, then three timm models (one twice): each is garbage
    when its round ends, and memory (JAX's caches cleared) grows by at most a few MB a round."""
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    refs, rss = [], []
    for _ in range(10):
        more, passed = _translate_and_compare(monkeypatch, Small, x)
        assert passed and not _alive(more)
        rss.append(rss_mb())
    assert rss[-1] - rss[2] <= 5 * 8, rss
    names = ["resnet10t", "regnetx_002", "resnet10t", "lcnet_050"]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    rss = []
    for name in names:
        torch.manual_seed(0)
        more, passed = _translate_and_compare(
            monkeypatch, lambda name=name: timm().create_model(name, pretrained=False, num_classes=10), x)
        assert passed, name
        refs += more
        assert not _alive(more), name
        jax.clear_caches()
        rss.append(rss_mb())
    assert np.max(rss[1:]) - rss[0] <= 200, dict(zip(names, rss))
