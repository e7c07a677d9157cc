"""The replica axis a data-parallel step is tracing: the one rule SyncBatchNorm reads.

:func:`jaxconv.parallel.data_parallel_step` traces each replica's loss inside
``with replica_axis(axis):``; a ``SyncBatchNorm`` built with ``process_group=None`` (torch's
"the whole world") averages its statistics over that axis. Outside such a step there are no
replicas to synchronise: under ``jax.jit`` with a sharded batch, a BatchNorm's statistics are
already those of the global batch.
"""
from __future__ import annotations

import contextlib
import contextvars

_AXIS: contextvars.ContextVar = contextvars.ContextVar("jaxconv_replica_axis", default=None)


def current_axis():
    """The mesh axis name (or tuple of names) of the replicas being traced, or ``None``."""
    return _AXIS.get()


@contextlib.contextmanager
def replica_axis(axis):
    """Within the block, ``current_axis()`` is ``axis``."""
    token = _AXIS.set(axis)
    try:
        yield
    finally:
        _AXIS.reset(token)
