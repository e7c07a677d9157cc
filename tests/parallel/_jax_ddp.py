"""jaxconv's side of the multi-process proof, run under ``jaxconv-run``.

``jaxconv-run --nproc P --devices-per-process K -m tests.parallel._jax_ddp OUT_DIR``: every
process builds the same port of :mod:`._scenarios`' network, takes its own contiguous slice of
each batch (:func:`jaxconv.parallel.shard_batch`) and trains 3 steps over the ``P * K`` replicas:
plain BatchNorms (to compare with torch DDP), the model converted to SyncBatchNorm (with one
torch process on the global batch) and FSDP (with the replicated run). Process 0 writes
``OUT_DIR/runs.npz``; every process checks that ``equivalence.state_dict`` gives it full arrays.
"""
from __future__ import annotations

import copy
import os
import sys

import jax
import numpy as np

import jaxconv.parallel

jaxconv.parallel.initialize()
jax.config.update("jax_enable_x64", True)

import torch  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

import equivalence  # noqa: E402
from jaxconv import parallel  # noqa: E402
from tests.parallel._scenarios import adamw, batches, jax_run, record, sgd, torch_net  # noqa: E402


def main(out_dir):
    mesh = Mesh(np.array(jax.devices()), ("data",))
    me, processes = jax.process_index(), jax.process_count()

    def batch(a):  # this process's slice of the global batch, as a global array
        return parallel.shard_batch(np.split(a, processes)[me], mesh)

    data, out = batches(), {}
    runs = (("ddp", torch_net(), sgd, parallel.replicate),
            ("sync", torch.nn.SyncBatchNorm.convert_sync_batchnorm(torch_net()), sgd,
             parallel.replicate),
            ("fsdp", torch_net(), adamw, parallel.fsdp),
            ("replicated", torch_net(), adamw, parallel.replicate))
    for name, net, opt, place in runs:
        model, _, losses = jax_run(copy.deepcopy(net), opt, data, mesh, place, batch)
        state = equivalence.state_dict(model)
        assert all(isinstance(v, np.ndarray) for v in state.values())
        record(out, name, losses, state)
    if me == 0:
        np.savez(os.path.join(out_dir, "runs.npz"), replicas=len(jax.devices()), **out)


if __name__ == "__main__":
    main(sys.argv[1])
