"""Test configuration: x64 for float64 references, hypothesis profiles, a seeded rng fixture."""
import os
import zlib

import jax

# float64 references need x64; every float32 test passes float32 arrays explicitly.
jax.config.update("jax_enable_x64", True)

import numpy as np
import pytest
import torch
from hypothesis import settings

torch.set_num_threads(1)
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("slow", max_examples=400, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's name: reproducible, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
