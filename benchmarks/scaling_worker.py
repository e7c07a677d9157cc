"""One configuration of the data-parallel benchmark (:mod:`benchmarks.scaling`), in its own
process(es): device counts and process groups are fixed when a process starts.

``python -m benchmarks.scaling_worker IMPL REPLICAS CONTROL_DIR [--batch B] [--quick]``

- ``jaxconv``: one process whose ``XLA_FLAGS`` force ``REPLICAS`` host devices;
  ``jaxconv_2proc``: run by ``jaxconv-run --nproc 2 --devices-per-process REPLICAS/2``, which
  :func:`jaxconv.parallel.initialize` connects. Both train with
  :func:`jaxconv.parallel.data_parallel_step` on a mesh of every device.
- ``torch``: one rank of torch ``DistributedDataParallel`` (gloo) under
  ``python -m torch.distributed.run --nproc_per_node REPLICAS``, ``cores / REPLICAS`` threads.

Every configuration builds the same ResNet-18 (:mod:`benchmarks.models`, torch's weights copied
into the jaxconv twin), the same global batch of ``REPLICAS * B`` images and labels, and takes
replica ``r``'s contiguous slice of it. A step is the forward, cross-entropy, backward, gradient
all-reduce and SGD update (lr 0.1, momentum 0.9). After the first step, process 0 writes
``ready.json`` (the step's mean loss over the replicas, its seconds) and ``grad.npy`` (the
averaged gradient of ``conv1.weight``), which the parent checks against torch DDP's. Then each
process waits for the parent's ``go-K`` file, runs the number of steps written in it, and
process 0 writes ``done-K.json`` (seconds per step); ``stop`` (or ``IDLE_S`` without a word)
ends it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

LR, MOMENTUM = 0.1, 0.9
IDLE_S = 900          # a worker left waiting this long (its parent gone) exits
POLL_S = 0.01


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scaling_worker", description=__doc__)
    ap.add_argument("impl", choices=("jaxconv", "jaxconv_2proc", "torch"))
    ap.add_argument("replicas", type=int)
    ap.add_argument("control")
    ap.add_argument("--batch", type=int, default=8, help="images per replica")
    ap.add_argument("--quick", action="store_true", help="the quick suite's tiny ResNet-18")
    return ap.parse_args(argv)


def data(replicas, batch, quick):
    """The global batch ``(x, y)``: ``replicas * batch`` images (float32 NCHW) and labels.

    Replica ``r``'s slice is shifted by a different mean, so replica-local BatchNorm statistics
    (DDP's) differ from the global batch's (SyncBatchNorm's) and the check can tell them apart."""
    from . import models as M

    shape = M.MODELS["resnet18"][2]["quick" if quick else "full"]
    g = np.random.default_rng(1)
    x = g.standard_normal((replicas * batch, *shape)).astype(np.float32)
    x += np.repeat(np.linspace(-1.0, 1.0, replicas) if replicas > 1 else [0.0], batch)[:, None, None, None]
    y = g.integers(0, 1000, replicas * batch)
    return x.astype(np.float32), y


def torch_model(quick):
    """The benchmark's torch ResNet-18 (seed 0; width 8, one block per stage when quick)."""
    import torch

    from . import models as M

    torch.manual_seed(0)
    return M.TorchResNet18(**M.size(quick))


def _write(control, name, obj):
    tmp = os.path.join(control, f".{name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, os.path.join(control, name))


def serve(control, leader, step, sync):
    """Wait for ``go-K``; run the steps it asks for after a barrier; report; until ``stop``."""
    k, waited = 0, 0.0
    while waited < IDLE_S:
        if os.path.exists(os.path.join(control, "stop")):
            return
        go = os.path.join(control, f"go-{k}")
        if not os.path.exists(go):
            time.sleep(POLL_S)
            waited += POLL_S
            continue
        with open(go) as f:
            steps = int(f.read())
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = (time.perf_counter() - t0) / steps
        if leader:
            _write(control, f"done-{k}.json", {"seconds_per_step": seconds})
        k, waited = k + 1, 0.0


def run_jaxconv(args):
    """``data_parallel_step`` over every device (one process, or two under jaxconv-run)."""
    import jax

    if args.impl == "jaxconv_2proc":
        import jaxconv.parallel

        jaxconv.parallel.initialize()
    from flax import nnx
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh

    import jaxconv.functional as F
    import jaxconv.optim
    from jaxconv import parallel

    from . import models as M

    devices = jax.devices()
    if len(devices) != args.replicas:
        raise RuntimeError(f"{args.impl}: {len(devices)} devices, expected {args.replicas}")
    me, processes = jax.process_index(), jax.process_count()
    tmodel = torch_model(args.quick)
    model = M.copy_torch_state(tmodel, M.ResNet18(**M.size(args.quick)))
    model.train()
    del tmodel
    mesh = Mesh(np.array(devices), ("data",))
    parallel.replicate(model, mesh)
    optimizer = nnx.Optimizer(model, jaxconv.optim.SGD(lr=LR, momentum=MOMENTUM), wrt=nnx.Param)
    step_fn = parallel.data_parallel_step(lambda m, x, y: F.cross_entropy(m(x), y), mesh)
    x, y = data(args.replicas, args.batch, args.quick)
    xs = parallel.shard_batch(np.split(x, processes)[me], mesh)
    ys = parallel.shard_batch(np.split(y.astype(np.int32), processes)[me], mesh)

    def weight():
        return np.array(model.conv1.weight[...].addressable_data(0))

    before = weight()
    t0 = time.perf_counter()
    loss = float(step_fn(model, optimizer, xs, ys))
    first = time.perf_counter() - t0
    if me == 0:
        np.save(os.path.join(args.control, "grad.npy"), (before - weight()) / LR)  # step 1: lr * grad
        _write(args.control, "ready.json", {"loss": loss, "first_step_s": first,
                                            "devices": len(devices), "processes": processes})

    def sync():
        if processes > 1:
            multihost_utils.sync_global_devices("go")
    serve(args.control, me == 0, lambda: jax.block_until_ready(step_fn(model, optimizer, xs, ys)),
          sync)


def run_torch(args):
    """One rank of torch ``DistributedDataParallel`` (gloo), ``broadcast_buffers=True``."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as TF

    from .scaling import cores

    torch.set_num_threads(max(1, cores() // args.replicas))
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != args.replicas:
        raise RuntimeError(f"torch: world size {world}, expected {args.replicas}")
    net = torch.nn.parallel.DistributedDataParallel(torch_model(args.quick).train())
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    x, y = data(args.replicas, args.batch, args.quick)
    xs, ys = torch.from_numpy(np.split(x, world)[rank]), torch.from_numpy(np.split(y, world)[rank])

    def step():
        opt.zero_grad(set_to_none=True)
        loss = TF.cross_entropy(net(xs), ys)
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    loss = step().detach().clone()
    first = time.perf_counter() - t0
    dist.all_reduce(loss)
    if rank == 0:
        np.save(os.path.join(args.control, "grad.npy"), net.module.conv1.weight.grad.numpy())
        _write(args.control, "ready.json", {"loss": loss.item() / world, "first_step_s": first,
                                            "threads": torch.get_num_threads(), "processes": world})
    serve(args.control, rank == 0, step, dist.barrier)
    dist.destroy_process_group()


def main(argv=None):
    args = _parse(argv)
    (run_torch if args.impl == "torch" else run_jaxconv)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
