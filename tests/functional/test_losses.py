"""Every loss against torch in float64: every reduction, the keywords, values and gradients
(input, and target / weight where torch differentiates them), one ``jax.jit`` per case, and
the ``'none'`` loss again sample by sample under ``jax.vmap``. (The eager calls, where value
checks run, are in ``test_loss_edges.py`` and the module tests.)"""
import pytest

from tests.functional._loss_cases import CASES, SLOW, check_case


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in CASES])
def test_loss_matches_torch(name, rng):
    check_case(CASES[name], rng)
