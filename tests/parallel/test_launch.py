"""``jaxconv-run`` and ``jaxconv.parallel.initialize``: real processes on JAX's distributed runtime.

The default suite runs one two-process run (a collective over both processes' devices) and the
launcher's argument checks in-process; the failure, interruption, one-process and no-launcher
behaviours start processes and are ``slow``.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib

import pytest

from jaxconv.parallel import launch
from tests.parallel import _launch

PSUM = """
    import numpy as np
    import jaxconv
    from tests.parallel._launch import save

    p = jaxconv.parallel.initialize()
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    assert (jax.process_index(), jax.process_count()) == tuple(p), (p, jax.process_index())
    assert (jax.local_device_count(), jax.device_count()) == (2, 4), jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("d",))
    local = np.array([1.0, 2.0], np.float32) * 10.0 ** (2 * p.index)    # 1, 2 | 100, 200
    x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("d")), local)
    total = jax.jit(jax.shard_map(lambda v: jax.lax.psum(v, "d"), mesh=mesh,
                                  in_specs=P("d"), out_specs=P()))(x)
    total = total.addressable_data(0)
    print(f"process {p.index} of {p.count}: sum {float(total[0])}")
    save(index=p.index, count=p.count, total=total)
"""


def test_two_processes_of_two_devices_sum_over_all_four(tmp_path):
    """A ``psum`` over the 4 devices of 2 processes gives every process the sum of both
    processes' data, and each line of output carries its process's prefix."""
    code, output = _launch.run(PSUM, tmp_path, nproc=2, devices=2)
    assert code == 0, output
    for i, r in enumerate(_launch.results(tmp_path, 2)):
        assert (r["index"], r["count"], r["total"].tolist()) == (i, 2, [303.0]), (i, r)
        assert f"[process {i}] process {i} of 2: sum 303.0\n" in output, output


@pytest.mark.parametrize("argv, message", [
    (["--nproc", "0", "x.py"], "argument --nproc: must be at least 1, got 0"),
    (["--devices-per-process", "-2", "x.py"], "argument --devices-per-process: must be at least 1, got -2"),
    (["--nproc", "two", "x.py"], "argument --nproc: invalid int value: 'two'"),
    (["--grace", "-1", "x.py"], "argument --grace: must be at least 0 seconds, got -1.0"),
    (["--nproc", "2", "no/such/script.py"], "argument script: no such file: 'no/such/script.py'"),
    (["--nproc", "2"], "the following arguments are required: script"),
])
def test_bad_arguments_are_named_with_their_value(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        launch.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_the_console_script_is_the_launcher():
    meta = tomllib.loads((_launch.ROOT / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["jaxconv-run"] == "jaxconv.parallel.launch:main"


FAIL = """
    import signal, sys, time
    import numpy as np
    import jaxconv

    p = jaxconv.parallel.initialize()
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()), ("d",))
    x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("d")), np.ones(1, np.float32))
    total = jax.jit(jax.shard_map(lambda v: jax.lax.psum(v, "d"), mesh=mesh, in_specs=P("d"),
                                  out_specs=P()))
    total(x).block_until_ready()                      # both processes are up and connected
    if p.index == 1:
        with open(sys.argv[1], "w") as f:
            f.write(repr(time.time()))
        {failure}
    if {ignore_sigterm}:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("waiting for process 1", flush=True)
    try:
        total(x).block_until_ready()                  # process 1 is gone: blocks, or gloo raises
    except Exception:
        pass
    time.sleep(600)                                   # blocked either way: only the launcher ends it
"""


@pytest.mark.slow
@pytest.mark.parametrize("failure, code, error, ignore_sigterm", [
    ("raise ValueError('process 1 gives up')", 1, "ValueError: process 1 gives up", False),
    ("sys.exit(3)", 3, "It wrote nothing to stderr.", True),
])
def test_a_failing_process_takes_the_run_down_at_once(tmp_path, failure, code, error, ignore_sigterm):
    """Process 1 fails while process 0 is blocked waiting for it: the launcher ends process 0
    within seconds (SIGTERM; SIGKILL after ``--grace`` for one that ignores it), not after JAX's
    5-minute shutdown barrier, names process 1, its exit code and its error, and exits with
    that code."""
    failed_at = tmp_path / "failed_at"
    script = FAIL.replace("{failure}", failure).replace("{ignore_sigterm}", str(ignore_sigterm))
    got, output = _launch.run(script, tmp_path, nproc=2, args=[failed_at], timeout=120,
                              launcher_args=["--grace", 1 if ignore_sigterm else 60])
    ended = time.time()
    assert got == code, output
    report = output.split(f"jaxconv-run: process 1 failed with exit code {code}; the others were "
                          "stopped.")[1]
    assert error in report, output
    assert "[process 0] waiting for process 1" in output
    assert ended - float(failed_at.read_text()) < 15, output


@pytest.mark.slow
def test_one_process_only_gets_its_devices(tmp_path):
    """``--nproc 1``: no distributed runtime, ``K`` host devices, process 0 of 1."""
    code, output = _launch.run("""
        import jaxconv
        p = jaxconv.parallel.initialize()
        import jax
        assert not jax.distributed.is_initialized()
        print(tuple(p), jax.process_count(), jax.device_count(), tuple(jaxconv.parallel.initialize()))
    """, tmp_path, nproc=1, devices=3)
    assert code == 0 and "[process 0] (0, 1) 1 3 (0, 1)\n" in output, output


NO_LAUNCHER = """
    import os, sys
    import jaxconv
    assert "jaxconv.parallel" not in sys.modules            # import jaxconv stays cheap
    import jax

    print(tuple(jaxconv.parallel.initialize()), tuple(jaxconv.parallel.initialize()))
    print(jax.distributed.is_initialized(), jax.device_count(), tuple(jaxconv.parallel.initialize()))

    def error(**env):
        os.environ.update({"JAXCONV_NUM_PROCESSES": "1", "JAXCONV_PROCESS_ID": "0",
                           "JAXCONV_DEVICES_PER_PROCESS": "1", "JAXCONV_COORDINATOR": "localhost:1",
                           **env})
        try:
            jaxconv.parallel.initialize()
        except (RuntimeError, ValueError) as e:
            return f"{type(e).__name__}: {e}"

    print(error())                               # one device asked, one there: nothing to change
    print(error(JAXCONV_DEVICES_PER_PROCESS="3"))
    print(error(JAXCONV_NUM_PROCESSES="2"))
    print(error(JAXCONV_PROCESS_ID="2"))
    print(error(JAXCONV_DEVICES_PER_PROCESS="four"))
"""


@pytest.mark.slow
def test_initialize_outside_a_launcher_does_nothing_and_too_late_is_an_error():
    """Without ``jaxconv-run`` or a cluster, ``initialize()`` is one process and changes nothing
    (twice, and after JAX started); under the launcher's variables after JAX started, it names
    what it can no longer do; malformed variables are named with their value."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAXCONV_", "SLURM_", "OMPI_", "JAX_COORDINATOR"))}
    env["PYTHONPATH"] = str(_launch.ROOT)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(NO_LAUNCHER)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:3] == ["(0, 1) (0, 1)", "False 1 (0, 1)", "None"], proc.stdout
    too_late = ("RuntimeError: jaxconv.parallel.initialize() must be called before any JAX "
                "computation (arrays, jax.devices(), jit...): JAX's backend is already initialised, "
                "so it can no longer ")
    assert lines[3] == too_late + ("give this process the 3 host device(s) jaxconv-run asked for "
                                   "(it has 1). Call it first, right after the imports.")
    assert lines[4] == too_late + ("join the 2 processes jaxconv-run started. Call it first, "
                                   "right after the imports.")
    assert lines[5] == "ValueError: JAXCONV_PROCESS_ID must be below JAXCONV_NUM_PROCESSES=1, got 2"
    assert lines[6] == "ValueError: JAXCONV_DEVICES_PER_PROCESS must be an integer >= 1, got 'four'"


@pytest.mark.slow
def test_module_entry_points_and_arguments(tmp_path):
    """``python -m jaxconv.parallel.launch ... -m package.module args``: the module runs as
    ``__main__`` in each process with its arguments (the launcher's options after the script
    belong to the script)."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "hello.py").write_text(
        "import os, sys\nprint(__name__, sys.argv[1:], os.environ['JAXCONV_PROCESS_ID'])\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_launch.ROOT), str(tmp_path)])}
    code, output = _launch.communicate(
        [sys.executable, "-m", "jaxconv.parallel.launch", "--nproc", "2", "-m", "pkg.hello",
         "--nproc", "5"], env, timeout=120)
    assert code == 0, output
    for i in range(2):
        assert f"[process {i}] __main__ ['--nproc', '5'] {i}\n" in output, output


@pytest.mark.slow
def test_ctrl_c_stops_every_process(tmp_path):
    """SIGINT to the launcher's process group (Ctrl-C in a terminal) ends the launcher and its
    processes at once, with 130."""
    script = tmp_path / "wait.py"
    script.write_text("import time\nprint('ready', flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, str(_launch.LAUNCHER), "--nproc", "2", str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        ready = [proc.stdout.readline() for _ in range(2)]
        assert sorted(ready) == ["[process 0] ready\n", "[process 1] ready\n"], ready
        os.killpg(proc.pid, signal.SIGINT)
        output = proc.stdout.read()
        assert proc.wait(timeout=20) == 130, output
        assert "jaxconv-run: interrupted: stopped 2 process(es)" in output, output
        left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout
        assert not left.split(), left
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
