"""Joining JAX's multi-controller runtime: :func:`initialize`, and the environment contract
between ``jaxconv-run`` (:mod:`jaxconv.parallel.launch`) and the processes it starts.

The launcher sets, in each of the N processes it starts:

- ``JAXCONV_COORDINATOR``: ``host:port`` of the coordination service (process 0 serves it);
- ``JAXCONV_NUM_PROCESSES``: N;
- ``JAXCONV_PROCESS_ID``: this process's index, ``0 <= i < N``;
- ``JAXCONV_DEVICES_PER_PROCESS``: K, the host (CPU) devices each process gets.

Everything else is JAX's own: :func:`jax.distributed.initialize` connects the processes, global
arrays span their devices, and collectives between processes run on gloo on CPU.
"""
from __future__ import annotations

import os
from typing import NamedTuple

# jax is imported in the functions: the launcher reads this contract without loading JAX.

COORDINATOR = "JAXCONV_COORDINATOR"
NUM_PROCESSES = "JAXCONV_NUM_PROCESSES"
PROCESS_ID = "JAXCONV_PROCESS_ID"
DEVICES_PER_PROCESS = "JAXCONV_DEVICES_PER_PROCESS"
VARIABLES = (COORDINATOR, NUM_PROCESSES, PROCESS_ID, DEVICES_PER_PROCESS)

# JAX's message when jax.distributed.initialize() finds neither arguments nor a cluster
# (jax/_src/distributed.py): the one error that means "a single process".
_NO_CLUSTER = "coordinator_address should be defined."


class Process(NamedTuple):
    """This process's place in the run: ``index`` in ``range(count)``."""
    index: int
    count: int


class Launch(NamedTuple):
    """What ``jaxconv-run`` told this process (:data:`VARIABLES`)."""
    coordinator: str
    num_processes: int
    process_id: int
    devices_per_process: int


def launched() -> Launch | None:
    """The launcher's settings from the environment, or ``None`` outside ``jaxconv-run``.

    Raises ``ValueError`` naming the variable when one is missing or malformed."""
    if NUM_PROCESSES not in os.environ:
        return None

    def number(name: str, low: int) -> int:
        value = os.environ.get(name)
        if value is None:
            raise ValueError(f"{name} is not set, but {NUM_PROCESSES} is: run under jaxconv-run, "
                             f"which sets {', '.join(VARIABLES)}")
        try:
            n = int(value)
        except ValueError:
            n = low - 1
        if n < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        return n

    launch = Launch(os.environ.get(COORDINATOR, ""), number(NUM_PROCESSES, 1), number(PROCESS_ID, 0),
                    number(DEVICES_PER_PROCESS, 1))
    if launch.process_id >= launch.num_processes:
        raise ValueError(f"{PROCESS_ID} must be below {NUM_PROCESSES}={launch.num_processes}, "
                         f"got {launch.process_id}")
    if launch.num_processes > 1 and ":" not in launch.coordinator:
        raise ValueError(f"{COORDINATOR} must be host:port, got {launch.coordinator!r}")
    return launch


def initialize() -> Process:
    """Connect this process to the others of its run; call it first, before any JAX computation.

    - Under ``jaxconv-run`` (:data:`VARIABLES` set): gives the process K host devices (the CPU
      backend's ``jax_num_cpu_devices``; GPU and TPU backends keep theirs), gloo for collectives
      between processes on CPU, and calls ``jax.distributed.initialize(coordinator, N, i)``
      (without JAX's preemption service, which would catch the launcher's SIGTERM). With N == 1
      it only sets the device count.
    - Otherwise: ``jax.distributed.initialize()`` with JAX's own detection (SLURM, Open MPI,
      Cloud TPU, Kubernetes, ``JAX_COORDINATOR_ADDRESS``...). Where it finds no cluster, this is
      one process and nothing is done.

    Calling it again is harmless. After JAX's backend is initialised (any computation,
    ``jax.devices()``...) it can no longer change the devices: it then raises ``RuntimeError``
    saying so, unless there is nothing left to change.

    **Returns:** ``Process(index, count)``, this process's index and the number of processes.
    """
    launch = launched()
    if launch is None:
        return _initialize_from_cluster()
    import jax

    _set_host_devices(launch.devices_per_process)
    if launch.num_processes > 1 and not jax.distributed.is_initialized():
        if _backend_initialized():
            raise _too_late(f"join the {launch.num_processes} processes jaxconv-run started")
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        # JAX's preemption service catches SIGTERM; the launcher's SIGTERM must stop the process.
        jax.config.update("jax_enable_preemption_service", False)
        jax.distributed.initialize(launch.coordinator, launch.num_processes, launch.process_id,
                                   cluster_detection_method="deactivate")
    return Process(launch.process_id, launch.num_processes)


def _set_host_devices(k: int) -> None:
    """``jax_num_cpu_devices = k``, unless the configured platforms leave the CPU out."""
    import jax

    platforms = jax.config.jax_platforms
    if platforms and "cpu" not in platforms.split(","):
        return
    if not _backend_initialized():
        jax.config.update("jax_num_cpu_devices", k)
    elif len(jax.devices("cpu")) != k:
        raise _too_late(f"give this process the {k} host device(s) jaxconv-run asked for "
                        f"(it has {len(jax.devices('cpu'))})")


def _initialize_from_cluster() -> Process:
    """``jax.distributed.initialize()`` with JAX's detection; one process where it finds none."""
    import jax

    if not jax.distributed.is_initialized():
        if _backend_initialized():
            # jax.distributed.initialize() would refuse before looking for a cluster: look here.
            if _cluster_detected():
                raise _too_late("join the cluster JAX detects")
            return Process(0, 1)
        try:
            jax.distributed.initialize()
        except ValueError as e:
            if str(e) != _NO_CLUSTER:
                raise
            return Process(0, 1)
    return Process(jax.process_index(), jax.process_count())


def _backend_initialized() -> bool:
    from jax._src import xla_bridge  # the check jax.distributed.initialize itself makes

    return xla_bridge.backends_are_initialized()


def _too_late(what: str) -> RuntimeError:
    return RuntimeError(
        "jaxconv.parallel.initialize() must be called before any JAX computation (arrays, "
        f"jax.devices(), jit...): JAX's backend is already initialised, so it can no longer {what}. "
        "Call it first, right after the imports.")


def _cluster_detected() -> bool:
    """Whether ``jax.distributed.initialize()`` would find a cluster (its own detection)."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    from jax._src import clusters

    return any(not env.opt_in_only_method and env.is_env_present()
               for env in clusters.ClusterEnv._cluster_types)
