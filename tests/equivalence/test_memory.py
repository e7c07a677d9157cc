"""Nothing of a model outlives its translation and comparison.

After ``translate`` and ``compare`` return and the caller drops its references, the torch
model and the translated module tree are garbage: no registry, cache, hook or compiled
function of ``equivalence`` keeps them. The generated classes stay: flax registers every
``nnx.Module`` subclass with JAX's pytree registry, which never forgets a type (they hold
code, not weights). So the generated module is kept by its source text, and translating the
same model again makes no new class, registry entry, hooking subclass (``jaxconv.trace``) or
linecache entry. JAX's own caches keep the compiled code of eager ops, one per new shape, up
to their LRU limits; ``jax.clear_caches()`` releases those, so the slow test bounds memory
across distinct models with it.
"""
import gc
import linecache
import weakref

import jax
import numpy as np
import pytest
import torch
from flax.nnx import graphlib
from jax._src import tree_util

from equivalence import compare, translate
from jaxconv import trace
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


def _translate_and_compare(make, x, grads=True):
    """One round; weak references to the torch model and the translated module, the
    translated module's class, and the verdict."""
    model = randomize_batchnorm(make()).eval()
    jm = translate(model, x)
    passed = compare(model, jm, x, grads=grads).passed
    return [weakref.ref(model), weakref.ref(jm)], type(jm), passed


def _alive(refs):
    gc.collect()
    return [r for r in refs if r() is not None]


def _registries():
    """How many classes flax, JAX's pytree registry (Python side), ``jaxconv.trace`` and
    linecache hold."""
    return (len(graphlib.GRAPH_REGISTRY), len(tree_util._registry), len(trace._hooked),
            len(linecache.cache))


def _ours_in_jax_caches() -> set:
    """The functions of ``equivalence`` that key entries of JAX's jit cache (``pjit``'s
    ``_infer_params_cached``, weakly keyed by the jitted function: an entry lives as long as
    its function, and holds its traced program and, through it, the compiled executable)."""
    from jax._src import pjit

    found = set()
    for key in pjit._infer_params_cached.cache_keys():
        f = key[0]() if isinstance(key[0], weakref.ref) else key[0]
        f = getattr(f, "func", f)       # functools.partial
        if getattr(f, "__module__", None) and f.__module__.startswith("equivalence"):
            found.add((id(f), f.__qualname__))
    return found


def test_nothing_outlives_translate_and_compare():
    """The forward comparison (the slow test adds gradients, which cost the time of both);
    nothing the comparison jitted (the leaf checks, the composite's running-bound program, the
    free run) stays in JAX's caches; translating the same model again makes no new class."""
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    before = _ours_in_jax_caches()
    refs, cls, passed = _translate_and_compare(Small, x, grads=False)
    assert passed and len(refs) == 2
    assert not _alive(refs), [type(r()).__name__ for r in _alive(refs)]
    assert _ours_in_jax_caches() <= before, _ours_in_jax_caches() - before
    before = _registries()
    again = translate(randomize_batchnorm(Small()).eval(), x)
    assert type(again) is cls and _registries() == before


@pytest.mark.slow
def test_memory_stays_bounded_across_models():
    """The same small model ten times, then three timm models (one twice): each is garbage
    when its round ends, and memory (JAX's caches cleared) grows by at most a few MB a round."""
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    refs, rss = [], []
    for _ in range(10):
        more, _, passed = _translate_and_compare(Small, x)
        assert passed and not _alive(more)
        rss.append(rss_mb())
    assert rss[-1] - rss[2] <= 5 * 8, rss
    names = ["resnet10t", "regnetx_002", "resnet10t", "lcnet_050"]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    rss = []
    for name in names:
        torch.manual_seed(0)
        more, _, passed = _translate_and_compare(
            lambda name=name: timm().create_model(name, pretrained=False, num_classes=10), x)
        assert passed, name
        refs += more
        assert not _alive(more), name
        jax.clear_caches()
        rss.append(rss_mb())
    assert np.max(rss[1:]) - rss[0] <= 200, dict(zip(names, rss))
