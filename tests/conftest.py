"""Test configuration: x64 for float64 references, hypothesis profiles, a seeded rng fixture,
JAX's persistent compilation cache, and JAX's in-memory caches bounded per worker."""
import os
import zlib

# Compiled programs are cached across runs (and by the subprocesses the tests start, which read
# the same variables) in a folder outside the checkout; JAXCONV_TEST_CACHE= (empty) turns it off.
_CACHE = os.environ.get("JAXCONV_TEST_CACHE", os.path.expanduser("~/.cache/jaxconv/jax-compilation"))
if _CACHE:
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))   # bytes; least recently used go

import jax  # noqa: E402 - after the cache settings it reads

# float64 references need x64; every float32 test passes float32 arrays explicitly.
jax.config.update("jax_enable_x64", True)

import numpy as np
import pytest
import torch
from hypothesis import settings

from tests._util import resident_mb, rss_mb

torch.set_num_threads(1)
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("slow", max_examples=400, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: A test worker above this resident size (MB) drops JAX's caches after the test.
RSS_LIMIT_MB = int(os.environ.get("JAXCONV_TEST_RSS_LIMIT_MB", "4096"))


@pytest.fixture(autouse=True)
def _bounded_jax_caches():
    """JAX keeps the compiled code of each eager op at each new shape up to its caches' LRU
    limits, a few hundred MB per zoo model: a worker running the whole zoo would grow to many
    GB. One that ends a test above :data:`RSS_LIMIT_MB`, even with its freed heap handed back,
    clears them (the next tests recompile)."""
    yield
    try:
        if resident_mb() > RSS_LIMIT_MB and rss_mb() > RSS_LIMIT_MB:
            jax.clear_caches()
    except OSError:  # no /proc: not Linux
        pass


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's name: reproducible, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
