"""``jaxconv-run``: start N processes of a script on this machine, connected by JAX's distributed
runtime, like ``torchrun --nproc-per-node N``.

    jaxconv-run --nproc 2 --devices-per-process 4 train.py --epochs 3
    jaxconv-run --nproc 2 -m mypackage.train --epochs 3
    python -m jaxconv.parallel.launch --nproc 2 train.py

Each process runs the same Python (``sys.executable``) with the variables of
:mod:`jaxconv.parallel.runtime` set (a free localhost port for the coordinator); the script's
``jaxconv.parallel.initialize()`` reads them. Each line a process writes to stdout or stderr is
forwarded to the launcher's with the prefix ``[process i] ``. When a process exits with a
non-zero code the launcher stops the others (SIGTERM, then SIGKILL after ``--grace`` seconds:
a process blocked in a collective whose peer died does not hang the run), names the process,
its exit code and the last lines of its stderr, and exits with that code. Ctrl-C stops them all.

This module imports only the standard library (and the runtime's variable names), so the
launcher starts at once; it also runs as a file, ``python jaxconv/parallel/launch.py``.
"""
from __future__ import annotations

import argparse
import collections
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

if __package__:
    from .runtime import COORDINATOR, DEVICES_PER_PROCESS, NUM_PROCESSES, PROCESS_ID
else:  # run as a file: this folder is on sys.path, and runtime.py imports no JAX at the top
    from runtime import COORDINATOR, DEVICES_PER_PROCESS, NUM_PROCESSES, PROCESS_ID

PREFIX = "[process {}] "

#: What each process runs (``python -c``): the script, or with ``-m`` the module, as ``__main__``.
#: A failure (an exception, or ``sys.exit`` with a non-zero code) prints its traceback and exits at
#: once: an ordinary exit would run JAX's atexit shutdown barrier, which waits 5 minutes for the
#: processes still computing, and the launcher would see no failure until then.
RUNNER = r"""
import os, runpy, sys, traceback
module, target, sys.argv = sys.argv[1] == "-m", sys.argv[2], sys.argv[2:]
try:
    if module:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.path[0] = os.path.dirname(os.path.abspath(target))
        runpy.run_path(target, run_name="__main__")
except BaseException as e:
    if isinstance(e, SystemExit) and e.code in (None, 0):
        raise                                       # success: the ordinary exit
    if isinstance(e, SystemExit):
        code = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    elif isinstance(e, KeyboardInterrupt):
        code = 130
        print("KeyboardInterrupt", file=sys.stderr)
    else:                                           # the traceback from the script's own frames
        code, tb = 1, e.__traceback__
        while tb.tb_next and (tb.tb_frame.f_code.co_filename.startswith("<")
                              or tb.tb_frame.f_code.co_filename == runpy.__file__):
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if 0 < code < 256 else 1)
"""
#: Lines of a failed process's stderr repeated in the launcher's report.
TAIL_LINES = 20


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it; never a fixed one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def environment(nproc: int, devices: int, index: int, coordinator: str) -> dict[str, str]:
    """The environment of process ``index``: the launcher's, plus the runtime's contract."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", COORDINATOR: coordinator,
            NUM_PROCESSES: str(nproc), PROCESS_ID: str(index), DEVICES_PER_PROCESS: str(devices)}


class _Stop(Exception):
    """SIGTERM reached the launcher."""


def run(command: list[str], nproc: int, devices: int = 1, grace: float = 5.0) -> int:
    """Run ``command`` (an argv list) as ``nproc`` processes with ``devices`` host devices each.

    **Returns:** 0 when every process exited with 0; otherwise the first failure's exit code
    (128 + the signal for a process a signal ended), after stopping the others.
    """
    coordinator = f"localhost:{free_port()}"
    lock, exits = threading.Lock(), queue.Queue()
    procs, tails, threads = [], [], []
    previous = signal.signal(signal.SIGTERM, _raise_stop) if _main_thread() else None
    failed = interrupted = None
    try:
        for i in range(nproc):
            p = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=environment(nproc, devices, i, coordinator))
            procs.append(p)
            tails.append(collections.deque(maxlen=TAIL_LINES))
            prefix = PREFIX.format(i).encode()
            threads += [_thread(_forward, p.stdout, sys.stdout, prefix, lock, None),
                        _thread(_forward, p.stderr, sys.stderr, prefix, lock, tails[i]),
                        _thread(lambda i=i, p=p: exits.put((i, p.wait())))]
        done = 0
        while done < nproc:
            try:
                i, code = exits.get(timeout=0.2)
            except queue.Empty:
                continue
            done += 1
            if code != 0:
                failed = (i, code)
                break
    except (KeyboardInterrupt, _Stop) as e:
        interrupted = e
    finally:
        _stop(procs, grace)
        for t in threads:
            t.join(timeout=2.0)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if interrupted is not None:
        ctrl_c = isinstance(interrupted, KeyboardInterrupt)
        _say(f"{'interrupted' if ctrl_c else 'terminated'}: stopped {len(procs)} process(es)")
        return 130 if ctrl_c else 143
    if failed is None:
        return 0
    i, code = failed
    stopped = "; the others were stopped" if nproc > 1 else ""
    tail = "".join(PREFIX.format(i) + line.decode(errors="replace") for line in tails[i]).rstrip()
    _say(f"process {i} failed with exit code {code}{stopped}. "
         + (f"The last lines of its stderr:\n{tail}" if tail else "It wrote nothing to stderr."))
    return code if code > 0 else 128 - code


def _stop(procs, grace: float) -> None:
    """SIGTERM to the processes still running, SIGKILL to those left after ``grace`` seconds."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        p.terminate()
    deadline = time.monotonic() + grace
    for p in alive:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _forward(pipe, sink, prefix: bytes, lock, tail) -> None:
    """Copy ``pipe`` to ``sink`` line by line, each line prefixed; keep the last ones in ``tail``."""
    out = getattr(sink, "buffer", None)
    for line in iter(pipe.readline, b""):
        if not line.endswith(b"\n"):
            line += b"\n"
        if tail is not None:
            tail.append(line)
        with lock:
            if out is not None:
                out.write(prefix + line)
            else:
                sink.write((prefix + line).decode(errors="replace"))
            sink.flush()
    pipe.close()


def _thread(target, *args) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_stop(signum, frame):
    raise _Stop()


def _say(text: str) -> None:
    sys.stdout.flush()
    print(f"jaxconv-run: {text}", file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    """The command line: options, then the script (or ``-m module``) and its arguments."""
    p = argparse.ArgumentParser(
        prog="jaxconv-run", description="Run a script as N processes on this machine, connected "
        "by JAX's distributed runtime (CPU collectives on gloo), like torchrun. In the script, "
        "jaxconv.parallel.initialize() connects them.")
    p.add_argument("--nproc", type=int, default=1, metavar="N", help="processes to start (default 1)")
    p.add_argument("--devices-per-process", type=int, default=1, metavar="K",
                   help="host (CPU) devices each process gets (default 1)")
    p.add_argument("--grace", type=float, default=5.0, metavar="SECONDS",
                   help="after a failure, how long the others get between SIGTERM and SIGKILL (default 5)")
    p.add_argument("-m", "--module", action="store_true",
                   help="the script is a module name, run as `python -m module`")
    p.add_argument("script", help="the Python file (or module, with -m) to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")
    return p


def main(argv: list[str] | None = None) -> int:
    """``jaxconv-run``'s entry point. **Returns:** the exit code (see :func:`run`)."""
    p = parser()
    a = p.parse_args(argv)
    for flag, value in (("--nproc", a.nproc), ("--devices-per-process", a.devices_per_process)):
        if value < 1:
            p.error(f"argument {flag}: must be at least 1, got {value}")
    if a.grace < 0:
        p.error(f"argument --grace: must be at least 0 seconds, got {a.grace}")
    if not a.module and not os.path.isfile(a.script):
        p.error(f"argument script: no such file: {a.script!r}")
    command = [sys.executable, "-c", RUNNER, "-m" if a.module else "-", a.script, *a.args]
    return run(command, a.nproc, a.devices_per_process, a.grace)


if __name__ == "__main__":
    sys.exit(main())
