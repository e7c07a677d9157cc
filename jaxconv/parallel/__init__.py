"""Many devices and processes on JAX's own runtime, with torch's data-parallel semantics.

:func:`initialize` connects the processes that ``jaxconv-run`` (:mod:`jaxconv.parallel.launch`)
or a cluster manager started.
"""
from .data_parallel import data_parallel_step, shard_batch
from .fsdp import fsdp, replicate
from .runtime import Process, initialize

__all__ = ["data_parallel_step", "shard_batch", "fsdp", "replicate", "initialize", "Process"]
