"""Many devices and processes on JAX's own runtime, with torch's data-parallel semantics."""
from .data_parallel import data_parallel_step, shard_batch
from .fsdp import fsdp, replicate

__all__ = ["data_parallel_step", "shard_batch", "fsdp", "replicate"]
