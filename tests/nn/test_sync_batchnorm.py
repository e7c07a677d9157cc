"""SyncBatchNorm: statistics over every replica's shard, and torch's conversion.

The cross-replica statistics are checked under ``jax.vmap`` with an axis name (one device): the
replicas' shards stacked on a mapped axis must normalise as torch's BatchNorm does the whole
batch. ``tests/parallel`` checks the same inside ``data_parallel_step`` on several devices.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxconv.functional as F
import jaxconv.nn as J
from equivalence import tolerance


def _torch_bn(x, mean, var, weight, bias, momentum):
    rm, rv = torch.from_numpy(mean.copy()), torch.from_numpy(var.copy())
    y = torch.nn.functional.batch_norm(torch.from_numpy(x), rm, rv, torch.from_numpy(weight),
                                       torch.from_numpy(bias), True, momentum, 1e-5)
    return y.numpy(), rm.numpy(), rv.numpy()


@pytest.mark.parametrize("replicas", [(4,), (2, 3)])
def test_statistics_span_the_replicas(rng, replicas):
    """Shards on one or two named axes give the global batch's output and running statistics
    (the running variance's unbiased correction counts every shard's values)."""
    c, per = 3, 2
    n = int(np.prod(replicas)) * per
    x = rng.standard_normal((n, c, 4, 5)) * rng.uniform(0.5, 2, (n, 1, 1, 1)) + rng.standard_normal((n, 1, 1, 1))
    mean, var = rng.standard_normal(c) * 0.1, rng.uniform(0.5, 1.5, c)
    weight, bias = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    want = _torch_bn(x, mean, var, weight, bias, 0.3)
    names = tuple(f"r{i}" for i in range(len(replicas)))

    def shard(xs):
        return F.batch_norm(xs, jnp.asarray(mean), jnp.asarray(var), jnp.asarray(weight),
                            jnp.asarray(bias), True, 0.3, 1e-5, axis_name=names)

    f = shard
    for name in reversed(names):
        f = jax.vmap(f, axis_name=name)
    y, rm, rv = f(jnp.asarray(x).reshape(*replicas, per, c, 4, 5))
    got = (np.asarray(y).reshape(x.shape), np.asarray(rm).reshape(-1, c)[0],
           np.asarray(rv).reshape(-1, c)[0])
    for g, w in zip(got, want):
        tol = tolerance.tolerance(np.max(np.abs(w)) + np.max(np.abs(x)), x.size // c, np.float64)
        np.testing.assert_allclose(g, w, rtol=0, atol=tol)
    local = F.batch_norm(jnp.asarray(x[:per]), jnp.asarray(mean), jnp.asarray(var), training=True)
    assert np.abs(np.asarray(local[1]) - want[1]).max() > 1e-3  # the shards' statistics differ


def test_outside_replicas_it_is_torchs_syncbatchnorm_in_one_process(rng):
    """No replica axis: the module normalises the batch it is given, as torch's SyncBatchNorm
    does without a process group; eval uses the running statistics."""
    ours, theirs = J.SyncBatchNorm(4, momentum=None), torch.nn.SyncBatchNorm(4, momentum=None)
    ours.weight[...] = jnp.asarray(rng.uniform(0.5, 1.5, 4), jnp.float32)
    theirs.weight.data = torch.from_numpy(np.array(ours.weight[...]))
    for _ in range(2):
        x = rng.standard_normal((3, 4, 5)).astype(np.float32)
        y = np.asarray(ours(jnp.asarray(x)))
        np.testing.assert_allclose(y, theirs(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(np.asarray(getattr(ours, name)[...]),
                                   getattr(theirs, name).numpy(), rtol=1e-6)
    ours.eval(), theirs.eval()
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(x))),
                               theirs(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_input_dimensions():
    with pytest.raises(ValueError, match=r"expected at least 2D input \(got 1D input\)"):
        J.SyncBatchNorm(3)(jnp.zeros(3))


def test_convert_sync_batchnorm_as_torch():
    """Every BatchNorm (nested, in lists, shared) becomes a SyncBatchNorm holding the same
    variables and mode; the state_dict names are torch's after its own conversion."""
    shared = J.BatchNorm2d(4)
    net = J.Sequential(J.Conv2d(3, 4, 3), shared, J.ModuleList([J.BatchNorm1d(2, affine=False),
                                                                J.Sequential(shared)]))
    net[2][0].eval()
    weight = shared.weight
    out = J.SyncBatchNorm.convert_sync_batchnorm(net, process_group="data")
    assert out is net
    assert type(net[1]) is J.SyncBatchNorm and net[1].weight is weight
    assert net[2][1][0] is net[1] and net[1].process_group == "data"
    assert type(net[2][0]) is J.SyncBatchNorm and not net[2][0].training and net[2][0].weight is None
    bn = torch.nn.BatchNorm2d(4)
    tnet = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), bn, torch.nn.ModuleList(
        [torch.nn.BatchNorm1d(2, affine=False), torch.nn.Sequential(bn)]))
    tnet = torch.nn.SyncBatchNorm.convert_sync_batchnorm(tnet)
    assert ([(n, type(m).__name__) for n, m in J.named_modules(net, remove_duplicate=False)]
            == [(n, type(m).__name__) for n, m in tnet.named_modules(remove_duplicate=False)])
    top = J.SyncBatchNorm.convert_sync_batchnorm(J.BatchNorm3d(2))
    assert type(top) is J.SyncBatchNorm and top.num_features == 2


def test_a_converted_torch_model_translates_to_it():
    """torch's converted model becomes jaxconv SyncBatchNorms, and the port is proved."""
    import equivalence
    from tests._zoo import randomize_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4, momentum=None),
                              torch.nn.ReLU())
    net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(randomize_batchnorm(net))
    x = torch.randn(4, 3, 7, 6)
    model = equivalence.translate(net, x)
    assert type(model[1]) is J.SyncBatchNorm and model[1].momentum is None
    assert equivalence.compare(net, model, x).passed
