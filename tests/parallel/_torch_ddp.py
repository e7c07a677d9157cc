"""torch's real ``DistributedDataParallel`` on the gloo backend: the run jaxconv's must equal.

Run under torch's launcher: ``python -m torch.distributed.run --standalone --nproc_per_node N
-m tests.parallel._torch_ddp OUT.npz``. Each rank trains :mod:`._scenarios`' network in float64
on its shard of every batch: rank ``r`` takes the ``r``-th of ``N`` equal contiguous slices, the
layout of a global batch sharded over a mesh axis. Rank 0 writes the mean loss of every step and
its state_dict (``broadcast_buffers=True``: its running statistics are the ones that survive).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from tests.parallel._scenarios import batches, sgd, torch_net


def main(path):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    net = torch.nn.parallel.DistributedDataParallel(torch_net())  # broadcast_buffers=True
    opt = sgd(net)
    losses = []
    for x, y in batches():
        xs, ys = np.split(x, world)[rank], np.split(y, world)[rank]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(xs)), torch.from_numpy(ys))
        loss.backward()
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
    if rank == 0:
        state = {k: v.numpy() for k, v in net.module.state_dict().items()}
        np.savez(path, loss=np.asarray(losses), **state)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("WORLD_SIZE", "1"))))
    main(sys.argv[1])
