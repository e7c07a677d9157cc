"""``SyncBatchNorm``: BatchNorm whose training statistics span every data-parallel replica."""
from __future__ import annotations

from flax import nnx

from .. import _replica
from .module import named_children
from .normalization import _BatchNorm


class SyncBatchNorm(_BatchNorm):
    """Batch normalization over the batch of every replica together (``torch.nn.SyncBatchNorm``).

    Inside :func:`jaxconv.parallel.data_parallel_step` (or any ``jax.shard_map`` given the axis as
    ``process_group``), a training call normalises with the mean and variance of all replicas'
    shards and updates the running statistics with them, the variance's unbiased correction
    counting every replica's values. Anywhere else it is a BatchNorm: under ``jax.jit`` with a
    sharded batch that already is the global batch's statistics. Eval mode uses the running
    statistics, as in torch. Input ``(N, C, *)``, at least 2D.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, process_group=None,
                 dtype=None, *, bias: bool = True, rngs=None):
        """Builds a ``SyncBatchNorm``: BatchNorm's arguments, and ``process_group``: the mesh
        axis name (or tuple of names) of the replicas; ``None``, torch's whole world, is the
        replica axis of the enclosing ``data_parallel_step``."""
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype,
                         bias=bias, rngs=rngs)
        self.process_group = process_group

    def _sync_axis(self):
        return _replica.current_axis() if self.process_group is None else self.process_group

    def _check_input_dim(self, x):
        if getattr(x, "ndim", 0) < 2:
            raise ValueError(f"SyncBatchNorm: expected at least 2D input (got {x.ndim}D input)")

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every BatchNorm replaced by a ``SyncBatchNorm`` (torch's classmethod).

        Each replacement takes over the BatchNorm's parameters and buffers (the same variables)
        and its mode; a BatchNorm reachable by several paths becomes one shared SyncBatchNorm.
        Returns the converted module: ``module`` itself, changed in place, or the new
        ``SyncBatchNorm`` when ``module`` is a BatchNorm.
        """
        return _convert(module, process_group, {})


def _convert(module, process_group, done):
    if id(module) in done:
        return done[id(module)]
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        new = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group)
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            setattr(new, name, getattr(module, name))  # the same variables, as torch shares them
        new.use_running_average = module.use_running_average
        done[id(module)] = new
        return new
    done[id(module)] = module
    for name, child in list(named_children(module)):
        converted = _convert(child, process_group, done)
        if converted is child:
            continue
        if isinstance(module, nnx.List):
            module[int(name)] = converted
        elif isinstance(module, nnx.Dict):
            module[name] = converted
        else:
            setattr(module, name, converted)
    return module
