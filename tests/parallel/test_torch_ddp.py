"""Real processes: jaxconv under ``jaxconv-run`` against torch's ``DistributedDataParallel``.

2 processes x 2 devices train :mod:`._scenarios`' network in float64 with
``data_parallel_step`` (:mod:`._jax_ddp`); torch trains it with 4 gloo ranks under its own
launcher (:mod:`._torch_ddp`). Plain BatchNorms must equal torch DDP (replica-local statistics,
averaged gradients, rank 0's buffers), SyncBatchNorm one torch process on the global batch (torch
refuses SyncBatchNorm on CPU), FSDP the replicated run; all within the float64 tolerance.
"""
import sys

import numpy as np
import pytest
import torch

from tests.parallel import _launch
from tests.parallel._scenarios import assert_same_run, batches, sgd, torch_net, torch_single

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    code, output = _launch.run(_launch.ROOT / "tests" / "parallel" / "_jax_ddp.py", out,
                               nproc=2, devices=2, args=[out], timeout=600)
    assert code == 0, output[-5000:]
    with np.load(out / "runs.npz") as f:
        jax_runs = dict(f)
    assert jax_runs["replicas"] == 4
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "4", "-m", "tests.parallel._torch_ddp", str(out / "torch.npz")]
    code, output = _launch.communicate(command, None, 600)
    assert code == 0, output[-5000:]
    with np.load(out / "torch.npz") as f:
        return jax_runs, dict(f)


def _run(runs, name):
    return {k.split("/", 1)[1]: v for k, v in runs.items() if k.startswith(name + "/")}


def test_replica_local_batchnorm_equals_torch_ddp(runs):
    jax_runs, ddp = runs
    assert_same_run(_run(jax_runs, "ddp"), ddp)


def test_syncbatchnorm_equals_one_torch_process_on_the_global_batch(runs):
    net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(torch_net())
    losses = torch_single(net, sgd(net), batches())
    want = {"loss": np.asarray(losses), **{k: v.numpy() for k, v in net.state_dict().items()}}
    assert_same_run(_run(runs[0], "sync"), want)


def test_fsdp_equals_the_replicated_run(runs):
    assert_same_run(_run(runs[0], "fsdp"), _run(runs[0], "replicated"))
