"""Containers: torch's child names, indexing, slicing, and forward against torch."""
from collections import OrderedDict

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxconv import nn
from tests._util import assert_close, randn, t


def _copy_convs(jax_model, torch_model):
    """Copy every torch conv's weight and bias into the jaxconv module of the same name."""
    jax_modules = dict(nn.named_modules(jax_model))
    for name, tm in torch_model.named_modules():
        if isinstance(tm, torch.nn.Conv2d):
            jm = jax_modules[name]
            jm.weight[...] = jnp.asarray(tm.weight.detach().numpy())
            jm.bias[...] = jnp.asarray(tm.bias.detach().numpy())


def _nested(lib):
    return lib.Sequential(
        lib.Conv2d(3, 4, 3, padding=1),
        lib.Sequential(OrderedDict(first=lib.Conv2d(4, 5, 1), second=lib.Conv2d(5, 4, 3))),
        lib.Conv2d(4, 2, 3, stride=2),
    )


def test_sequential_names_and_forward_match_torch(rng):
    tm, jm = _nested(torch.nn), _nested(nn)
    assert [n for n, _ in nn.named_modules(jm)] == [n for n, _ in tm.named_modules()]
    _copy_convs(jm, tm)
    x = randn(rng, 2, 3, 9, 8, dtype=np.float32)
    assert_close(jm(jnp.asarray(x)), tm(t(x)).detach().numpy(), np.float32, reduction=3 * 9 * 5 * 4)
    assert repr(jm) == repr(tm)


def test_sequential_indexing_slicing_len_iter():
    convs = [nn.Conv1d(1, 2, 3), nn.Conv1d(2, 3, 3), nn.Conv1d(3, 4, 1)]
    s = nn.Sequential(*convs)
    assert len(s) == 3 and list(s) == convs
    assert s[0] is convs[0] and s[-1] is convs[2]
    sliced = s[1:]
    assert isinstance(sliced, nn.Sequential) and list(sliced) == convs[1:]
    # torch keeps the original names in a slice
    assert [n for n, _ in sliced.named_children()] == ["1", "2"]
    assert [n for n, _ in torch.nn.Sequential(*[torch.nn.Identity() for _ in range(3)])[1:].named_children()] == ["1", "2"]
    with pytest.raises(IndexError, match="out of range"):
        s[3]
    s.append(nn.Conv1d(4, 4, 1))
    assert [n for n, _ in s.named_children()] == ["0", "1", "2", "3"]
    with pytest.raises(TypeError, match="must be an nnx.Module"):
        nn.Sequential(nn.Conv1d(1, 1, 1), lambda x: x)


def test_modulelist_and_moduledict_names_match_torch():
    jl = nn.ModuleList([nn.Conv1d(1, 2, 3), nn.Conv1d(2, 2, 1)])
    tl = torch.nn.ModuleList([torch.nn.Conv1d(1, 2, 3), torch.nn.Conv1d(2, 2, 1)])
    jl.insert(1, nn.Conv1d(2, 2, 1))
    tl.insert(1, torch.nn.Conv1d(2, 2, 1))
    assert [n for n, _ in jl.named_children()] == [n for n, _ in tl.named_children()] == ["0", "1", "2"]
    assert [n for n, _ in jl[1:].named_children()] == [n for n, _ in tl[1:].named_children()] == ["0", "1"]
    assert repr(jl) == repr(tl)  # torch collapses the equal children 1 and 2
    assert "(1-2): 2 x Conv1d" in repr(jl)
    jd = nn.ModuleDict({"b": nn.Conv1d(1, 2, 3), "a": nn.Conv1d(2, 2, 1)})
    td = torch.nn.ModuleDict({"b": torch.nn.Conv1d(1, 2, 3), "a": torch.nn.Conv1d(2, 2, 1)})
    assert jd.keys() == list(td.keys()) == ["b", "a"]
    assert "a" in jd and "c" not in jd and len(jd) == 2
    assert repr(jd) == repr(td)
    del jd["b"]
    assert jd.keys() == ["a"]
    with pytest.raises(KeyError):
        jd["b"]
    with pytest.raises(KeyError, match="without '.'"):
        jd["x.y"] = nn.Conv1d(1, 1, 1)


def test_containers_under_nnx_jit_grad_and_split_merge(rng):
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ModuleList([nn.Conv2d(3, 3, 1)])[0])
    x = jnp.asarray(randn(rng, 1, 2, 6, 6, dtype=np.float32))
    eager = model(x)
    # jitted, the model runs channels-last (jaxconv's plan on CPU): the same sums in another order
    assert_close(nnx.jit(lambda m, x: m(x))(model, x), np.asarray(eager), np.float32, reduction=2 * 18)
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
    assert set(grads.keys()) == {"0", "1"}
    graphdef, state = nnx.split(model)
    np.testing.assert_array_equal(np.asarray(nnx.merge(graphdef, state)(x)), np.asarray(eager))


def test_sequential_of_twelve_keeps_torch_order_through_nnx_jit(rng):
    # nnx's split/merge rebuilds attributes sorted by name ('10' < '2'); affine 1x1 convs
    # don't commute, so running them in that order would give a different answer.
    tm = torch.nn.Sequential(*[torch.nn.Conv1d(2, 2, 1) for _ in range(12)])
    jm = nn.Sequential(*[nn.Conv1d(2, 2, 1) for _ in range(12)])
    for i in range(12):
        jm[i].weight[...] = jnp.asarray(tm[i].weight.detach().numpy())
        jm[i].bias[...] = jnp.asarray(tm[i].bias.detach().numpy())
    x = randn(rng, 3, 2, 5, dtype=np.float32)
    expected = tm(t(x)).detach().numpy()
    f = nnx.jit(lambda m, x: m(x))
    for _ in range(2):  # the second call runs on the module as nnx.jit left it
        assert_close(f(jm, jnp.asarray(x)), expected, np.float32, reduction=2 * 12)
    assert [n for n, _ in jm.named_children()] == [str(i) for i in range(12)]
