"""Data-parallel training of the bundled residual CNN, ported from torch, on many processes.

On a laptop::

    jaxconv-run --nproc 2 --devices-per-process 2 -m equivalence.examples.train_data_parallel \\
        --steps 20 --checkpoint /tmp/residual-ckpt

Every process ports the same torch model (seed 0) and builds the same optimizer; the model is
replicated (or, with ``--fsdp``, sharded) over every device of every process. Each step, each
process takes its own slice of the global batch, as a ``DistributedSampler`` gives a rank its
share, and :func:`jaxconv.parallel.data_parallel_step` trains with torch DDP's semantics
(``--sync``: the BatchNorms converted to ``SyncBatchNorm`` first). Process 0 prints the loss. With
``--checkpoint`` every process writes its part of an Orbax checkpoint at the end, and a later run
(with any number of processes) resumes from its latest step. The same script runs unchanged under
a cluster manager or on TPU and GPU hosts, where ``jaxconv.parallel.initialize()`` connects the
processes with ``jax.distributed``'s own detection.
"""
from __future__ import annotations

import argparse
import os

import jaxconv.parallel

jaxconv.parallel.initialize()  # first: it may set this process's devices and connect the others

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

import equivalence  # noqa: E402
import jaxconv.functional as F  # noqa: E402
from equivalence import examples  # noqa: E402
from jaxconv import parallel  # noqa: E402
from jaxconv.optim import SGD  # noqa: E402


def batch(step: int, size: int):
    """The global batch of ``step``, the same in every process: digits-sized noise whose label is
    the quadrant holding the brightest pixel (something to learn)."""
    rng = np.random.default_rng(step)
    x = rng.standard_normal((size, 1, 28, 28)).astype(np.float32)
    flat = x.reshape(size, -1).argmax(1)
    y = (flat // 28 >= 14) * 2 + (flat % 28 >= 14)
    return x, y


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=32, help="global batch size")
    p.add_argument("--sync", action="store_true", help="convert BatchNorm to SyncBatchNorm")
    p.add_argument("--fsdp", action="store_true", help="shard the parameters (FSDP)")
    p.add_argument("--checkpoint", help="an Orbax checkpoint directory to resume from and save to")
    args = p.parse_args(argv)

    net = examples.residual_cnn_torch(seed=0)
    if args.sync:
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    model = equivalence.translate(net, torch.zeros(2, 1, 28, 28))
    mesh = Mesh(np.array(jax.devices()), ("data",))
    (parallel.fsdp if args.fsdp else parallel.replicate)(model, mesh)
    optimizer = nnx.Optimizer(model, SGD(lr=0.05, momentum=0.9, weight_decay=1e-4), wrt=nnx.Param)
    start = 0
    if args.checkpoint and os.path.isdir(args.checkpoint) and os.listdir(args.checkpoint):
        start = equivalence.restore_checkpoint(args.checkpoint, model, optimizer)
    step = parallel.data_parallel_step(lambda m, x, y: F.cross_entropy(m(x), y), mesh)
    me, processes = jax.process_index(), jax.process_count()
    if me == 0:
        print(f"{processes} process(es), {len(jax.devices())} replicas, from step {start}",
              flush=True)
    for t in range(start, start + args.steps):
        x, y = batch(t, args.batch)
        local = np.split(x, processes)[me], np.split(y, processes)[me]   # this process's share
        loss = step(model, optimizer, *parallel.shard_batch(local, mesh))
        if me == 0:
            print(f"step {t}: loss {float(loss):.4f}", flush=True)
    if args.checkpoint:
        saved = equivalence.save_checkpoint(args.checkpoint, model, optimizer)
        if me == 0:
            print(f"checkpoint: step {saved} in {args.checkpoint}", flush=True)


if __name__ == "__main__":
    main()
