"""Failure classes of the torch.export fallback and its ATen graphs, met on models no other test
names (issue 20), each reduced to the smallest torch module that shows it.

Every module here branches on its input's shape, so torch.fx cannot trace it and
``torch.export`` captures it. Each is checked four ways against torch (float64, random
asymmetric data): the translated module, the same under ``nnx.jit``, the standalone source
(``translate_source`` run on its own) and ``equivalence.compare``.
"""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import equivalence
from equivalence import TranslationError, translate, translate_source
from equivalence.translator import build_from_source

from tests._util import assert_close, randn, t


def _randomized(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return m


def check(m, *inputs, reduction=64, compare=True):
    """``m`` (eval, float64) translated, jitted and rebuilt from its source, against torch;
    then ``equivalence.compare``. Returns the translated module."""
    m = _randomized(m).double().eval()
    xs = [t(x) for x in inputs]
    with torch.no_grad():
        ref = m(*xs)
    jm = translate(m, *xs)
    args = [jnp.asarray(x) for x in inputs]
    standalone = build_from_source(translate_source(m, *xs), m)
    for y in (jm(*args), nnx.jit(lambda model, *a: model(*a))(jm, *args), standalone(*args)):
        assert_close(y, ref, reduction=reduction)
    if compare:
        report = equivalence.compare(m, jm, *xs)
        assert report.passed, str(report)
    return jm


class _ShapeCheck(torch.nn.Module):
    """A base whose ``forward`` first branches on the input's shape: fx cannot trace it."""

    def crop(self, x):
        if x.shape[-1] % 2:
            x = x[..., :-1]
        return x


# --- 1. children whose calls record no op of their own ---------------------------------------
class IdentityChildren(_ShapeCheck):
    """timm's blocks keep ``nn.Identity`` placeholders (``drop_path1``, ``pool``, ``se``) that
    the call does use; export records no op for them, so unflatten cannot rebuild their calls.
    ``unused`` is never called, ``absent`` is ``None``."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.drop_path1 = torch.nn.Identity()
        self.se = torch.nn.Identity()
        self.pool = torch.nn.Identity()
        self.unused = torch.nn.Conv2d(4, 4, 1)
        self.absent = None

    def forward(self, x):
        x = self.crop(x)
        y = self.conv(x)
        if self.absent is not None:
            y = self.absent(y)
        y = x + self.drop_path1(y * self.se(y))
        return self.pool(y) - self.drop_path1(x)      # a second call of the same identity


def test_identity_children_keep_their_calls(rng):
    jm = check(IdentityChildren(), randn(rng, 2, 4, 6, 7))
    assert {"drop_path1", "se", "pool"} <= set(jm.__dict__)
