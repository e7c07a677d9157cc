"""Data-parallel training runs on forced host devices, with the torch runs they must equal.

Run as ``python -m tests.parallel._scenarios OUT.npz`` with ``XLA_FLAGS`` giving the devices; it
writes, per scenario, jaxconv's and the reference's losses, parameters and buffers after
:data:`STEPS` steps, all in float64, and ``test_data_parallel.py`` compares them.

- ``ddp``: ``data_parallel_step`` with plain BatchNorms against torch's DDP semantics written
  out in one process (each replica's forward and loss on its shard from rank 0's buffers, the
  gradients averaged, rank 0's buffers kept). ``test_torch_ddp.py`` checks that against torch's
  real ``DistributedDataParallel``.
- ``sync``: a torch model converted to ``SyncBatchNorm``, translated, trained with
  ``data_parallel_step``, against one torch process on the global batch.
- ``explicit``: ``ddp`` on a mesh with ``Explicit`` axes (``jax.make_mesh``'s default).
- ``resume``: 2 FSDP steps, an Orbax checkpoint, restored into another replicated port (other
  weights), one more step: the ``fsdp`` reference run.
- ``fsdp``: ``fsdp`` against ``replicate``, AdamW with a no-decay group from
  ``translate_optimizer``.
"""
from __future__ import annotations

import copy
import os
import sys
import tempfile

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import AxisType, Mesh  # noqa: E402

import equivalence  # noqa: E402
import jaxconv.functional as F  # noqa: E402
from jaxconv import parallel  # noqa: E402
from tests._zoo import randomize_batchnorm  # noqa: E402

STEPS = 3
BATCH = 8
#: The longest reduction in the model: the first BatchNorm's values per channel.
REDUCTION = BATCH * 8 * 8


def torch_net(seed=0):
    """A small CNN whose BatchNorms see different statistics on different shards."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
        torch.nn.Conv2d(6, 8, 3, stride=2, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5))
    return randomize_batchnorm(net, seed).double()


def batches(seed=1):
    g = np.random.default_rng(seed)
    # shards with different means, so replica-local and global statistics differ
    shift = np.repeat(np.linspace(-1.0, 1.0, 4), BATCH // 4)[:, None, None, None]
    return [(g.standard_normal((BATCH, 3, 8, 8)) * (1 + 0.3 * t) + shift, g.integers(0, 5, BATCH))
            for t in range(STEPS)]


def sgd(net):
    return torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)


def adamw(net):
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=1e-2, weight_decay=0.05)


def loss_fn(model, x, y):
    return F.cross_entropy(model(x), y)


def torch_ddp(net, opt, data, replicas):
    """torch DDP's semantics in one process: per-replica forwards from rank 0's buffers, the
    mean of the replicas' gradients, rank 0's buffers kept."""
    losses = []
    buffers = [b for _, b in net.named_buffers()]
    for x, y in data:
        start = [b.clone() for b in buffers]
        grads, kept, loss = None, None, 0.0
        for r, (xs, ys) in enumerate(zip(np.split(x, replicas), np.split(y, replicas))):
            with torch.no_grad():
                for b, s in zip(buffers, start):
                    b.copy_(s)
            opt.zero_grad()
            out = torch.nn.functional.cross_entropy(net(torch.from_numpy(xs)), torch.from_numpy(ys))
            out.backward()
            loss += out.item() / replicas
            g = [p.grad.clone() / replicas for p in net.parameters()]
            grads = g if grads is None else [a + b for a, b in zip(grads, g)]
            if r == 0:
                kept = [b.clone() for b in buffers]
        with torch.no_grad():
            for p, g in zip(net.parameters(), grads):
                p.grad.copy_(g)
            for b, k in zip(buffers, kept):
                b.copy_(k)
        opt.step()
        losses.append(loss)
    return losses


def torch_single(net, opt, data):
    losses = []
    for x, y in data:
        opt.zero_grad()
        out = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
        out.backward()
        opt.step()
        losses.append(out.item())
    return losses


def jax_run(net, make_opt, data, mesh, place, batch=lambda a: a, resume=None):
    """Translate ``net`` and its optimizer, place the model, ``resume(model, optimizer)`` if
    given, train with data_parallel_step on ``batch(x), batch(y)`` (a process's shard as a
    global array, under several processes)."""
    model = equivalence.translate(net, torch.zeros(2, 3, 8, 8, dtype=torch.float64))
    equivalence.load_state_dict(model, net.state_dict(), dtype=jnp.float64)
    tx = equivalence.translate_optimizer(make_opt(net), net)
    place(model, mesh)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    if resume is not None:
        resume(model, optimizer)
    step = parallel.data_parallel_step(loss_fn, mesh)
    losses = [float(step(model, optimizer, batch(x), batch(y))) for x, y in data]
    return model, optimizer, losses


def assert_same_run(got, want, n=REDUCTION * STEPS):
    """Every entry of ``want`` (name -> array) equals ``got``'s within the policy's float64
    tolerance for ``n`` reduced terms, relative to the entry's largest value."""
    from equivalence import tolerance

    assert set(got) == set(want), sorted(set(got) ^ set(want))
    for key, w in want.items():
        g = np.asarray(got[key])
        tol = tolerance.tolerance(np.max(np.abs(w)), n, np.float64)
        assert np.all(np.abs(g - w) <= tol), (key, np.max(np.abs(g - w)), tol)


def record(out, name, losses, state):
    out[f"{name}/loss"] = np.asarray(losses)
    for key, value in state.items():
        out[f"{name}/{key}"] = np.asarray(value)


def main(path):
    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicas = len(jax.devices())
    data = batches()
    out = {"replicas": np.asarray(replicas), "reduction": np.asarray(REDUCTION * STEPS)}

    net = torch_net()
    model, _, losses = jax_run(copy.deepcopy(net), sgd, data, mesh, parallel.replicate)
    record(out, "ddp/jax", losses, equivalence.state_dict(model))
    explicit = jax.make_mesh((replicas,), ("data",), axis_types=(AxisType.Explicit,))
    model, _, losses = jax_run(copy.deepcopy(net), sgd, data, explicit, parallel.replicate)
    record(out, "explicit/jax", losses, equivalence.state_dict(model))
    losses = torch_ddp(net, sgd(net), data, replicas)
    record(out, "ddp/ref", losses, net.state_dict())
    record(out, "explicit/ref", losses, net.state_dict())

    net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(torch_net())
    model, _, losses = jax_run(copy.deepcopy(net), sgd, data, mesh, parallel.replicate)
    assert type(model[1]).__name__ == "SyncBatchNorm", model
    record(out, "sync/jax", losses, equivalence.state_dict(model))
    losses = torch_single(net, sgd(net), data)
    record(out, "sync/ref", losses, net.state_dict())

    net = torch_net()
    for name, place in (("fsdp/jax", parallel.fsdp), ("fsdp/ref", parallel.replicate)):
        model, optimizer, losses = jax_run(copy.deepcopy(net), adamw, data, mesh, place)
        record(out, name, losses, equivalence.state_dict(model))
        specs = [str(v.sharding.spec) for v in jax.tree.leaves(nnx.state(optimizer))
                 if hasattr(v, "sharding") and v.ndim]
        out[f"{name}/sharded"] = np.asarray(sum("data" in s for s in specs))
    record(out, "resume/ref", losses, equivalence.state_dict(model))
    ckpt = os.path.join(tempfile.mkdtemp(), "ckpt")
    model, optimizer, first = jax_run(copy.deepcopy(net), adamw, data[:-1], mesh, parallel.fsdp)
    equivalence.save_checkpoint(ckpt, model, optimizer)
    model, optimizer, last = jax_run(
        torch_net(seed=5), adamw, data[-1:], mesh, parallel.replicate,
        resume=lambda m, o: equivalence.restore_checkpoint(ckpt, m, o))
    record(out, "resume/jax", first + last, equivalence.state_dict(model))

    step = parallel.data_parallel_step(loss_fn, mesh)
    optimizer = nnx.Optimizer(model, equivalence.translate_optimizer(sgd(net), net), wrt=nnx.Param)
    x, y = data[0]
    for name, args in (("odd", (x[:BATCH - 1], y[:BATCH - 1])), ("axis", None)):
        try:
            if args is None:
                parallel.data_parallel_step(loss_fn, mesh, axis="model")
            else:
                step(model, optimizer, *args)
        except ValueError as e:
            out[f"error/{name}"] = np.asarray(str(e))
    np.savez(path, **out)


if __name__ == "__main__":
    main(sys.argv[1])
