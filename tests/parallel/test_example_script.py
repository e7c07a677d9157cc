"""The README's laptop run: ``equivalence.examples.train_data_parallel`` under ``jaxconv-run``
trains, checkpoints with 2 processes, and resumes with another number of processes and FSDP."""
import pytest

from tests.parallel import _launch

pytestmark = pytest.mark.slow

SCRIPT = _launch.ROOT / "equivalence" / "examples" / "train_data_parallel.py"


def test_train_checkpoint_and_resume_elsewhere(tmp_path):
    ckpt = tmp_path / "ckpt"
    code, out = _launch.run(SCRIPT, tmp_path, nproc=2, devices=1,
                            args=["--steps", "3", "--batch", "8", "--checkpoint", ckpt], timeout=400)
    assert code == 0, out[-4000:]
    assert "2 process(es), 2 replicas, from step 0" in out and "checkpoint: step 3" in out, out
    code, out = _launch.run(SCRIPT, tmp_path, nproc=1, devices=2,
                            args=["--steps", "2", "--batch", "8", "--fsdp", "--sync",
                                  "--checkpoint", ckpt], timeout=400)
    assert code == 0, out[-4000:]
    assert "1 process(es), 2 replicas, from step 3" in out and "checkpoint: step 5" in out, out
