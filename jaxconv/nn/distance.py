"""Distance modules: torch's constructor signatures, attributes and reprs."""
from __future__ import annotations

from ..functional import distance as F
from .module import Module


class PairwiseDistance(Module):
    """The ``p``-norm of ``x1 - x2 + eps`` over the last dim (``torch.nn.PairwiseDistance``).

    **Arguments:** ``p`` (stored as ``norm``, as in torch), ``eps``, ``keepdim``.
    """

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False):
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def __call__(self, x1, x2):
        """The ``p``-norm of ``x1 - x2 + eps`` over the last dim.

        **Arguments:** ``x1``, ``x2``: ``(N, D)`` or ``(D,)`` (any ``(*, D)``), broadcastable
        against each other.

        **Returns:** the broadcast shape without ``D``: ``(N,)`` or ``()``; with ``keepdim``
        ``(N, 1)`` or ``(1,)``.
        """
        return F.pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)
