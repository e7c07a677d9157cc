"""jaxconv's ops on a batch sharded over ``Explicit`` mesh axes, on 4 forced host devices.

The runs are in :mod:`tests.parallel._explicit_cases` (one subprocess). Every op, forward and
gradient, must equal its unsharded run within float32 rounding of sums taken in another order
(the gaps seen are below 2e-6 of the largest value; a wrong shard, a gradient summed over one
shard only, is orders of magnitude above); a hand-written ``nnx.jit`` training step (conv,
BatchNorm, max pool, strided depthwise, 1x1 and transposed convs, channels-last plan) on
``Explicit`` axes must equal the same step on ``Auto`` axes.
"""
import json
import os
import subprocess
import sys

import pytest

TOL = 1e-5


def _run(tmp_path, *flags):
    path = tmp_path / "explicit.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-m", "tests.parallel._explicit_cases", str(path), *flags],
                          capture_output=True, text=True, env=env, cwd=root, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(path.read_text())


def _failures(results):
    return {name: r for name, r in results.items() if not name.startswith("error:")
            and ("error" in r or r["fwd"] > TOL or r["grad"] > TOL)}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("explicit"))


def test_ops_and_a_training_step_on_explicit_axes(default_run):
    """Max pooling (which raised ``ShardingTypeError`` before) against the unsharded run, and
    the training step (its max pool, strided depthwise and phase transposed convs raised it)."""
    assert "training step" in default_run and len(default_run) >= 3, sorted(default_run)
    assert not _failures(default_run), _failures(default_run)
    assert default_run["training step"] == {"fwd": 0.0, "grad": 0.0}  # the same program


def test_depthwise_refuses_sharded_spatial_axes(default_run):
    message = default_run["error: depthwise sharded spatially"]["error"]
    assert message.startswith("ShardingError: depthwise conv (groups == in_channels): the spatial "
                              "axes of the input must not be sharded"), message
    assert "float32[2,4,8@data,8]" in message, message


@pytest.mark.slow
def test_every_op_on_explicit_axes(tmp_path):
    """The whole sweep: convolutions of every lowering, pools, norms, resizing, rearranging,
    padding, losses, attention, recurrent modules, modules under their channels-last plan."""
    results = _run(tmp_path, "--all")
    assert len(results) >= 80, len(results)
    assert set(_failures(results)) == {"ctc_loss"}, _failures(results)  # see README: Mesh axes
