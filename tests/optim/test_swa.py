"""jaxconv.optim.swa_utils against torch.optim.swa_utils: SWA and EMA averaging over several
updates (parameters, and buffers with use_buffers), under nnx.jit, and update_bn."""
import functools

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.optim.swa_utils as tswa
from flax import nnx

import equivalence
import jaxconv.nn as jnn
from jaxconv.optim import swa_utils
from tests._zoo import randomize_batchnorm


def _torch_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 2), torch.nn.BatchNorm1d(2))


def _jax_model(torch_model):
    r = nnx.Rngs(0)
    model = jnn.Sequential(jnn.Conv2d(3, 4, 3, rngs=r), jnn.BatchNorm2d(4), jnn.ReLU(),
                           jnn.AdaptiveAvgPool2d(1), jnn.Flatten(), jnn.Linear(4, 2, rngs=r),
                           jnn.BatchNorm1d(2))
    equivalence.load_state_dict(model, torch_model.state_dict())
    return model


@functools.lru_cache(maxsize=None)
def _states(n):
    """``n`` random training-time states of the model: weights, BatchNorm statistics, counts."""
    out = []
    for i in range(n):
        model = randomize_batchnorm(_torch_model(), seed=i + 1)
        g = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
            for k, m in enumerate((model[1], model[6])):
                m.num_batches_tracked.fill_(7 * i + 3 * k + 1)
        out.append({k: v.clone() for k, v in model.state_dict().items()})
    return tuple(out)


AVERAGING = {
    "swa": {},
    "swa_avg_fn": {"avg_fn": "swa"},
    "ema_multi": {"multi_avg_fn": 0.9},
    "ema_avg_fn": {"avg_fn": 0.8},
}


def _kwargs(spec, lib):
    out = {}
    for key, value in spec.items():
        if value == "swa":
            out[key] = lib.get_swa_avg_fn()
        elif key == "avg_fn":
            out[key] = lib.get_ema_avg_fn(value)
        else:
            out[key] = lib.get_ema_multi_avg_fn(value)
    return out


@pytest.mark.parametrize("use_buffers", [False, True])
@pytest.mark.parametrize("averaging", list(AVERAGING))
def test_averaging_matches_torch(averaging, use_buffers):
    spec = AVERAGING[averaging]
    t_model = _torch_model()
    j_model = _jax_model(t_model)
    t_avg = tswa.AveragedModel(t_model, use_buffers=use_buffers, **_kwargs(spec, tswa))
    j_avg = swa_utils.AveragedModel(j_model, use_buffers=use_buffers, **_kwargs(spec, swa_utils))
    for state in _states(4):
        t_model.load_state_dict(state)
        equivalence.load_state_dict(j_model, state)
        t_avg.update_parameters(t_model)
        j_avg.update_parameters(j_model)
    want, got = t_avg.state_dict(), equivalence.state_dict(j_avg)
    assert list(got) == list(want)  # n_averaged, then module.*: torch's names and order
    for name, value in want.items():
        if value.dtype.is_floating_point:
            np.testing.assert_allclose(got[name], value.numpy(), rtol=1e-6, atol=1e-7, err_msg=name)
        else:  # n_averaged, and num_batches_tracked averaged and truncated as torch's copy_ does
            np.testing.assert_array_equal(got[name], value.numpy(), err_msg=name)
    if use_buffers:  # averaged (and truncated), not the last model's count
        assert int(want["module.1.num_batches_tracked"]) != int(_states(4)[-1]["1.num_batches_tracked"])


def test_default_swa_is_bit_exact_and_runs_under_jit():
    """torch's CPU SWA, ``p + (m - p) / (n + 1)``, reproduced bit for bit; the same under
    ``nnx.jit``, where the first-update copy is chosen at run time."""
    t_model = _torch_model()
    j_model, j_jit_model = _jax_model(t_model), _jax_model(t_model)
    t_avg = tswa.AveragedModel(t_model, use_buffers=True)
    j_avg = swa_utils.AveragedModel(j_model, use_buffers=True)
    j_jit = swa_utils.AveragedModel(j_jit_model, use_buffers=True)
    update = nnx.jit(lambda avg, m: avg.update_parameters(m))
    for state in _states(3):
        t_model.load_state_dict(state)
        equivalence.load_state_dict(j_model, state)
        equivalence.load_state_dict(j_jit_model, state)
        t_avg.update_parameters(t_model)
        j_avg.update_parameters(j_model)
        update(j_jit, j_jit_model)
    want = t_avg.state_dict()
    for got in (equivalence.state_dict(j_avg), equivalence.state_dict(j_jit)):
        for name, value in want.items():
            np.testing.assert_array_equal(got[name], value.numpy(), err_msg=name)


def test_ema_multi_lerp_branches():
    """torch's lerp takes ``end - (end - start) * (1 - w)`` for ``w >= 0.5``: decay 0.3."""
    rng = np.random.default_rng(2)
    a, c = (rng.standard_normal(1000).astype(np.float32) * 10 for _ in range(2))
    for decay in (0.3, 0.9):
        ta = torch.from_numpy(a.copy())
        tswa.get_ema_multi_avg_fn(decay)([ta], [torch.from_numpy(c)], 0)
        got = swa_utils.get_ema_multi_avg_fn(decay)([jnp.asarray(a)], [jnp.asarray(c)], 0)[0]
        # torch's vectorised lerp uses a fused multiply-add: one rounding fewer, so 1 ulp apart
        np.testing.assert_allclose(np.asarray(got), ta.numpy(), rtol=2e-7, atol=2e-6)


def test_errors():
    model = jnn.Linear(3, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="only one of avg_fn and multi_avg_fn"):
        swa_utils.AveragedModel(model, avg_fn=swa_utils.get_swa_avg_fn(),
                                multi_avg_fn=swa_utils.get_swa_multi_avg_fn())
    with pytest.raises(ValueError, match=r"Invalid decay value 1.5"):
        swa_utils.get_ema_multi_avg_fn(1.5)
    avg = swa_utils.AveragedModel(model)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(avg(x)), np.asarray(model(x)))  # forwards to .module
    assert avg.module is not model and avg.module.weight is not model.weight  # a deep copy
    with pytest.raises(ValueError, match=r"has shape \(2, 4\) in the model but \(2, 3\)"):
        avg.update_parameters(jnn.Linear(4, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"missing from the model: \['bias'\]"):
        avg.update_parameters(jnn.Linear(3, 2, bias=False, rngs=nnx.Rngs(0)))
    # torch's SWA multi-average refuses integer buffers after the first (copying) update
    bn = jnn.BatchNorm1d(3)
    avg = swa_utils.AveragedModel(bn, multi_avg_fn=swa_utils.get_swa_multi_avg_fn(),
                                  use_buffers=True)
    avg.update_parameters(bn)
    with pytest.raises(TypeError, match="integer tensors cannot be averaged"):
        avg.update_parameters(bn)


def test_state_dict_round_trip_with_torch():
    t_model = _torch_model()
    t_avg = tswa.AveragedModel(t_model, multi_avg_fn=tswa.get_ema_multi_avg_fn(0.99))
    for state in _states(2):
        t_model.load_state_dict(state)
        t_avg.update_parameters(t_model)
    j_avg = swa_utils.AveragedModel(_jax_model(_torch_model()))
    equivalence.load_state_dict(j_avg, t_avg.state_dict())
    assert int(j_avg.n_averaged[...]) == 2
    back = tswa.AveragedModel(_torch_model())
    back.load_state_dict({k: torch.from_numpy(np.asarray(v))
                          for k, v in equivalence.state_dict(j_avg).items()})
    for k, v in t_avg.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


@pytest.mark.parametrize("averaged", [True])
def test_update_bn_matches_torch(averaged):
    """Reset, cumulative average (momentum=None) over the loader, momenta and mode restored."""
    t_model = randomize_batchnorm(_torch_model(), seed=5)
    j_model = _jax_model(t_model)
    if averaged:
        t_model, j_model = tswa.AveragedModel(t_model), swa_utils.AveragedModel(j_model)
    t_model.eval(), j_model.eval()
    rng = np.random.default_rng(4)
    loader = [(rng.standard_normal((5, 3, 7, 7)).astype(np.float32) * s + s, rng.integers(0, 2, 5))
              for s in (0.5, 1.0, 2.0)]
    tswa.update_bn([(torch.from_numpy(x), torch.from_numpy(y)) for x, y in loader], t_model)
    swa_utils.update_bn(loader, j_model)
    for name, value in t_model.state_dict().items():
        got = equivalence.state_dict(j_model)[name]
        np.testing.assert_allclose(got, value.numpy(), rtol=2e-6, atol=1e-7, err_msg=name)
    bns = [m for _, m in nnx.iter_graph(j_model) if isinstance(m, jnn.BatchNorm2d | jnn.BatchNorm1d)]
    assert [bn.momentum for bn in bns] == [0.1, 0.1]
    assert all(not bn.training for bn in bns)  # eval mode restored
    swa_utils.update_bn([loader[0][0]], jnn.Linear(2, 2, rngs=nnx.Rngs(0)))  # no BatchNorm: no-op
