"""Data-parallel scaling rows (``--only scaling``): images per second of a ResNet-18 training
step on 1, 2 and 4 replicas, jaxconv against torch ``DistributedDataParallel`` on the same cores.

Each ``scaling_r<R>`` row times one training step (forward, cross-entropy, backward, gradient
all-reduce, SGD update) of the benchmark ResNet-18 (:mod:`benchmarks.models`, torch's weights
copied in) on ``R`` replicas of a fixed per-replica batch, as

- ``jaxconv``: :func:`jaxconv.parallel.data_parallel_step` in one process with ``R`` forced
  host devices;
- ``jaxconv_2proc`` (``R >= 2``): the same in two processes of ``R / 2`` devices each, started by
  ``jaxconv-run`` and connected by JAX's distributed runtime (gloo collectives);
- ``torch``: torch DDP with ``R`` ranks (gloo), each with ``cores / R`` threads.

Every configuration is a fresh set of processes (:mod:`benchmarks.scaling_worker`), run one at a
time: torch DDP first, then each jaxconv configuration, whose first-step loss and averaged
``conv1.weight`` gradient are checked against torch DDP's (replica-local BatchNorm statistics,
averaged gradients) before it is timed. The rounds are not interleaved across configurations as
elsewhere in the suite: at 4 replicas of batch 8 each configuration holds 3.5-4 GB, and the
machine's load average when each one's timing starts is kept in the row instead. A row holds
images/s, the ratios to torch DDP, each configuration's number of processes and the machine's
cores; :func:`add_efficiency` adds the scaling efficiency ``images/s at R / (R * images/s at 1)``
of each implementation (``jaxconv_2proc`` against the one-process ``R = 1`` run). Replicas beyond
the cores cannot scale: they share them.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from .measure import check, summarise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPLS = ("jaxconv", "jaxconv_2proc", "torch")


def replica_counts(quick: bool) -> tuple[int, ...]:
    return (1, 2) if quick else (1, 2, 4)


def selected(quick: bool, only) -> list[int]:
    """The replica counts a suite run includes: every one in a full run, none in a plain
    ``--quick`` one (each configuration starts its own processes: ~1.5 min), those whose row
    name ``scaling_r<R>`` contains an ``--only`` word."""
    if only:
        return [R for R in replica_counts(quick) if any(o in f"scaling_r{R}" for o in only)]
    return [] if quick else list(replica_counts(quick))


def per_replica_batch(quick: bool) -> int:
    return 2 if quick else 8


def cores() -> int:
    """The cores this process may run on (what every configuration shares)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def has_launcher() -> bool:
    """Whether ``jaxconv-run`` (``jaxconv.parallel.launch``) is installed."""
    return importlib.util.find_spec("jaxconv.parallel.launch") is not None


def impls(replicas: int) -> list[str]:
    """The configurations timed at ``replicas``: two processes only from 2 replicas on."""
    return [i for i in IMPLS if i != "jaxconv_2proc" or (replicas >= 2 and has_launcher())]


def command(impl, replicas, control, batch, quick):
    """``(argv, environment)`` of one configuration's processes."""
    worker = ["-m", "benchmarks.scaling_worker", impl, str(replicas), control, "--batch", str(batch)]
    worker += ["--quick"] if quick else []
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    if impl == "jaxconv":
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={replicas}".strip()
        return [sys.executable, *worker], env
    if impl == "jaxconv_2proc":
        launch = ["-m", "jaxconv.parallel.launch", "--nproc", "2", "--devices-per-process",
                  str(replicas // 2)]
        return [sys.executable, *launch, *worker], env
    env["CUDA_VISIBLE_DEVICES"] = ""  # gloo on the CPU cores, whatever else the machine has
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(replicas)]
    return [sys.executable, *launch, *worker], env


class Config:
    """One configuration's processes, their control folder and log."""

    def __init__(self, impl, replicas, batch, quick, root):
        self.impl, self.replicas = impl, replicas
        self.control = tempfile.mkdtemp(prefix=f"{impl}-r{replicas}-", dir=root)
        argv, env = command(impl, replicas, self.control, batch, quick)
        self.log = open(os.path.join(self.control, "log.txt"), "w")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # its own group: stopped as one
        self.rounds = 0
        self.info = None

    def _path(self, name):
        return os.path.join(self.control, name)

    def wait_for(self, name, timeout):
        """The JSON that the configuration's process 0 writes as ``name``, or a clear error."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(self._path(name)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.flush()
                with open(self._path("log.txt")) as f:
                    tail = f.read()[-3000:]
                why = f"exited with {self.proc.returncode}" if self.proc.returncode is not None \
                    else f"wrote no {name} within {timeout:.0f} s"
                raise RuntimeError(f"scaling: {self.impl} on {self.replicas} replicas {why}:\n{tail}")
            time.sleep(0.02)
        with open(self._path(name)) as f:
            return json.load(f)

    def ready(self, timeout=900):
        """The first step's report (loss, seconds, processes) with its ``conv1.weight`` gradient."""
        if self.info is None:
            self.info = self.wait_for("ready.json", timeout)
            self.info["grad"] = np.load(self._path("grad.npy"))
        return self.info

    def measure(self, steps, timeout):
        """Seconds per step over ``steps`` steps."""
        k, self.rounds = self.rounds, self.rounds + 1
        tmp = self._path(f".go-{k}")
        with open(tmp, "w") as f:
            f.write(str(steps))
        os.replace(tmp, self._path(f"go-{k}"))
        return self.wait_for(f"done-{k}.json", timeout)["seconds_per_step"]

    def close(self):
        """Ask the processes to stop; terminate, then kill, the group of any that stay."""
        open(self._path("stop"), "w").close()
        for sig, grace in ((None, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if sig is not None and self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        self.log.close()


def _time_config(c, rounds, min_time, progress, label):
    """The first step's report and ``rounds`` measurements of seconds per step of ``c``."""
    info = c.ready()
    timeout = 60 + 50 * info["first_step_s"]
    dt = c.measure(1, timeout)  # calibrate: steps per measurement lasting at least min_time
    steps = max(1, int(min_time / max(dt, 1e-6)))
    info["load_average"] = os.getloadavg()
    times = []
    for r in range(rounds):
        times.append(c.measure(steps, timeout * steps))
        if progress is not None:
            progress.step(f"{label} {c.impl} round {r + 1}/{rounds}")
    return info, times


def run_replicas(replicas, quick, rounds, min_time, tol, progress, root):
    """The ``scaling_r<R>`` row: torch DDP first (the reference), then each jaxconv configuration,
    checked against it, then timed."""
    batch = per_replica_batch(quick)
    name = f"scaling_r{replicas}"
    info, times, errors = {}, {}, {"torch": 0.0}
    for impl in ("torch", *(i for i in impls(replicas) if i != "torch")):
        c = Config(impl, replicas, batch, quick, root)
        try:
            got = c.ready()
            if impl != "torch":  # DDP's semantics: replica-local BatchNorm, averaged gradients
                ref = info["torch"]
                errors[impl] = max(
                    check(name, f"{impl} (first-step loss)", np.array([got["loss"]]),
                          np.array([ref["loss"]]), tol),
                    check(name, f"{impl} (averaged grad of conv1.weight)", got["grad"], ref["grad"],
                          tol * 10))
            info[impl], times[impl] = _time_config(c, rounds, min_time, progress, name)
        finally:
            c.close()
    med = {k: float(np.median(v)) for k, v in times.items()}
    compile_s = {k: max(0.0, info[k]["first_step_s"] - med[k]) for k in med if k != "torch"}
    row = summarise(name, "data parallel", times, compile_s, errors, per_item=replicas * batch)
    row.update(replicas=replicas, per_replica_batch=batch, cores=cores(),
               processes={k: info[k].get("processes", 1) for k in med},
               torch_threads_per_rank=info["torch"].get("threads"),
               load_average={k: info[k]["load_average"] for k in med},
               vs_torch_ddp={k: med[k] / med["torch"] for k in med if k != "torch"})
    return row


def units(quick, rounds, replicas=None) -> int:
    """Progress steps of :func:`run`: one per measurement."""
    return rounds * sum(len(impls(R)) for R in (replicas or replica_counts(quick)))


def add_efficiency(rows):
    """Each row's ``scaling_efficiency``: images/s at R over R times images/s at 1 replica."""
    base = next((r["items_per_s"] for r in rows if r["replicas"] == 1), None)
    for row in rows:
        if base is None:
            continue
        ips, R = row["items_per_s"], row["replicas"]
        row["scaling_efficiency"] = {k: v / (R * base["jaxconv" if k == "jaxconv_2proc" else k])
                                     for k, v in ips.items()}
    return rows


def run(quick, rounds, min_time, tol, progress, replicas=None):
    """The ``scaling_r<R>`` rows for ``R`` in ``replicas`` (default: 1, 2, 4; 1, 2 when quick)."""
    root = tempfile.mkdtemp(prefix="jaxconv-scaling-")
    try:
        rows = [run_replicas(R, quick, rounds, min_time, tol, progress, root)
                for R in (replicas or replica_counts(quick))]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return add_efficiency(rows)
