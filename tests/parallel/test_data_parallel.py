"""``data_parallel_step``, ``SyncBatchNorm`` and ``fsdp`` on 4 forced host devices, in float64.

The runs are in :mod:`tests.parallel._scenarios` (one subprocess). Each jaxconv run must equal
its reference within the policy's float64 tolerance for the longest reduction over all steps:
a semantic slip (replica-local statistics where global ones belong, a buffer from the wrong
replica, gradients summed instead of averaged) is orders of magnitude above it.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.parallel._scenarios import assert_same_run

SCENARIOS = ("ddp", "explicit", "sync", "fsdp", "resume")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    path = tmp_path_factory.mktemp("dp") / "runs.npz"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-m", "tests.parallel._scenarios", str(path)],
                          capture_output=True, text=True, env=env, cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(np.load(path))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_training_equals_the_reference(runs, scenario):
    """Losses, parameters and buffers after every step's update, against the reference run:
    torch DDP's semantics (``ddp``, on Auto and ``explicit`` mesh axes), one torch process on the global batch (``sync``), the
    replicated jaxconv run (``fsdp``, and ``resume``d from an Orbax checkpoint)."""
    got = {k.split("/", 2)[2]: v for k, v in runs.items() if k.startswith(f"{scenario}/jax/")}
    want = {k.split("/", 2)[2]: v for k, v in runs.items() if k.startswith(f"{scenario}/ref/")}
    got.pop("sharded", None), want.pop("sharded", None)
    assert len(want) == 16, sorted(want)  # the losses and every entry of the state_dict
    assert_same_run(got, want)


def test_replica_local_statistics_differ_from_global_ones(runs):
    """The scenarios can tell DDP from SyncBatchNorm: the shards' statistics differ."""
    gap = np.abs(runs["ddp/ref/1.running_mean"] - runs["sync/ref/1.running_mean"]).max()
    assert gap > 1e-3, gap


def test_fsdp_shards_parameters_and_optimizer_state(runs):
    """Every weight and moment with a dimension divisible by 4 is split over the devices."""
    assert runs["fsdp/jax/sharded"] >= 8 and runs["fsdp/ref/sharded"] == 0


def test_errors_name_the_numbers(runs):
    assert str(runs["error/odd"]).startswith(
        "x: the batch size 7 is not divisible by the 4 replicas"), runs["error/odd"]
    assert "'model' is not an axis of the mesh" in str(runs["error/axis"]), runs["error/axis"]
