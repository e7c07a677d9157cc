"""Every loss against torch in float64: every reduction, the keywords, values and gradients
(input, and target / weight where torch differentiates them), one ``jax.jit`` per case, and
the ``'none'`` loss again sample by sample under ``jax.vmap``. (The eager calls, where value
checks run, are in ``test_loss_edges.py`` and the module tests.)"""
import inspect

import jax
import jax.numpy as jnp
import pytest

import jaxconv.functional as F
from tests.functional._loss_cases import CASES, SLOW, check_case


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in CASES])
def test_loss_matches_torch(name, rng):
    check_case(CASES[name], rng)


@pytest.mark.parametrize("name", [n for n in CASES if n not in SLOW and "size_average" in
                                  inspect.signature(getattr(F, n.split("-")[0])).parameters])
def test_legacy_arguments_reach_every_loss(name, rng):
    """``reduce=False`` gives the ``'none'`` loss and ``size_average=False`` a scalar, whatever
    ``reduction`` says, with torch's warning (shapes only: ``jax.eval_shape``)."""
    jfn, _, build = CASES[name][:3]
    args = [jnp.asarray(a) for a in build(rng)]
    none = jax.eval_shape(lambda *a: jfn(*a, reduction="none"), *args)
    with pytest.warns(UserWarning, match="reduction='none' instead"):
        assert jax.eval_shape(lambda *a: jfn(*a, reduction="sum", reduce=False), *args).shape == none.shape
    with pytest.warns(UserWarning, match="reduction='sum' instead"):
        assert jax.eval_shape(lambda *a: jfn(*a, reduction="none", size_average=False), *args).shape == ()
