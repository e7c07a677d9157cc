"""Run a script as N processes under ``jaxconv-run`` from a test, and read back what each saved.

In the test::

    from tests.parallel import _launch

    code, output = _launch.run('''
        import numpy as np
        import jaxconv
        from tests.parallel._launch import save

        p = jaxconv.parallel.initialize()
        ...
        save(loss=np.asarray(loss), weight=np.asarray(w))   # this process's rank{i}.npz
    ''', tmp_path, nproc=2, devices=2)
    assert code == 0, output
    ranks = _launch.results(tmp_path, 2)       # [{"loss": ..., "weight": ...}, {...}]

The script (text, dedented, or a path) runs in every process with this checkout first on
``PYTHONPATH``, so it imports this checkout's ``jaxconv``, ``equivalence`` and ``tests``.
``output`` is the launcher's stdout and stderr together, each line prefixed ``[process i] ``.
The launcher runs from its file (``python jaxconv/parallel/launch.py``), which starts it without
importing JAX; ``tests/parallel/test_launch.py`` covers ``python -m jaxconv.parallel.launch``.
A run past ``timeout`` seconds is killed with every process it started, and the test fails.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "jaxconv" / "parallel" / "launch.py"
#: Where :func:`save` writes (set by :func:`run` for the processes).
OUT = "JAXCONV_TEST_OUT"


def run(script: str | Path, out_dir: Path, nproc: int = 2, devices: int = 1, args=(),
        timeout: float = 180, launcher_args=()) -> tuple[int, str]:
    """Run ``script`` under ``jaxconv-run --nproc nproc --devices-per-process devices``.

    **Arguments:** ``script``: Python source (dedented and written to ``out_dir/script.py``) or
    a path; ``out_dir``: a folder (``tmp_path``) for the script and the processes' results;
    ``args``: the script's arguments; ``launcher_args``: more launcher options (``--grace 1``).

    **Returns:** ``(returncode, output)`` of the launcher.
    """
    out_dir = Path(out_dir)
    if isinstance(script, str):
        path = out_dir / "script.py"
        path.write_text(textwrap.dedent(script))
        script = path
    env = {**os.environ, OUT: str(out_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, str(LAUNCHER), "--nproc", str(nproc), "--devices-per-process",
               str(devices), *map(str, launcher_args), str(script), *map(str, args)]
    return communicate(command, env, timeout)


def communicate(command: list[str], env: dict, timeout: float) -> tuple[int, str]:
    """Run ``command`` in its own session; past ``timeout`` kill the session and fail."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=ROOT, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise AssertionError(f"{command[:6]}... did not finish in {timeout} s:\n{output}") from None
    return proc.returncode, output


def save(**arrays) -> None:
    """In a launched script: save this process's arrays as ``rank{i}.npz`` in the test's folder."""
    np.savez(Path(os.environ[OUT]) / f"rank{os.environ['JAXCONV_PROCESS_ID']}.npz",
             **{k: np.asarray(v) for k, v in arrays.items()})


def results(out_dir: Path, nproc: int) -> list[dict[str, np.ndarray]]:
    """What each of the ``nproc`` processes saved with :func:`save`, by process index."""
    out = []
    for i in range(nproc):
        with np.load(Path(out_dir) / f"rank{i}.npz") as f:
            out.append(dict(f))
    return out
