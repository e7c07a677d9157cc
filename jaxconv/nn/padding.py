"""Padding modules (``torch.nn.ZeroPad2d`` and friends) on top of ``jaxconv.functional.pad``."""
from __future__ import annotations

from ..functional import _args
from ..functional.padding import pad
from .module import Module


class _PadNd(Module):
    """The padding modules: pad the last ``_n`` dimensions with mode ``_mode``.

    Attribute ``padding`` holds the ``2*_n``-tuple.
    """

    _n: int
    _mode: str

    def __init__(self, padding):
        """Builds a padding module with torch's argument.

        **Arguments:**

        - ``padding``: an int (every side) or a tuple of two ints per padded dimension,
          ``(left, right, top, bottom, front, back)`` cut to the module's dimensions, the last
          dimension first, as ``jaxconv.functional.pad`` takes it.
        """
        self._setup(padding)

    def _setup(self, padding):
        m, name = 2 * self._n, type(self).__name__
        if _args.is_int(padding):
            padding = (int(padding),) * m
        if not (isinstance(padding, (tuple, list)) and len(padding) == m
                and all(_args.is_int(p) for p in padding)):
            raise ValueError(
                f"{name}: padding must be an int or a tuple of {m} ints (two per padded "
                f"dimension, the last dimension first), got padding={padding!r}"
            )
        self.padding = tuple(padding)

    def extra_repr(self) -> str:
        return f"{self.padding}"

    def __call__(self, x):
        """Pads the last 1, 2 or 3 dims of ``x`` by ``padding``, in the module's mode.

        **Arguments:** ``x``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``, ``*spatial``
        ``(L,)``, ``(H, W)`` or ``(D, H, W)``.

        **Returns:** ``(N, C, *spatial_out)`` (or unbatched): ``W + left + right``,
        ``H + top + bottom``, ``D + front + back``; a negative pad crops.
        """
        return pad(x, self.padding, self._mode)


class _ConstantPadNd(_PadNd):
    _mode = "constant"

    def __init__(self, padding, value: float):
        """``padding`` as for every padding module; ``value``: the fill value."""
        self._setup(padding)
        self.value = value

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"

    def __call__(self, x):
        """Pads the last 1, 2 or 3 dims of ``x`` by ``padding``, with ``value``.

        **Arguments:** ``x``: any array with at least that many dims, usually
        ``(N, C, *spatial)`` or ``(C, *spatial)``, ``*spatial`` ``(L,)``, ``(H, W)`` or
        ``(D, H, W)``.

        **Returns:** ``x``'s leading dims and ``W + left + right``, ``H + top + bottom``,
        ``D + front + back``; a negative pad crops.
        """
        return pad(x, self.padding, "constant", self.value)


class _ZeroPadNd(_ConstantPadNd):
    def __init__(self, padding):
        """``padding`` as for every padding module; the fill is 0."""
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _CircularPadNd(_PadNd):
    _mode = "circular"

    def __call__(self, x):
        """Pads the last 1, 2 or 3 dims of ``x`` by ``padding``, circularly.

        **Arguments:** ``x``: ``(N, C, *spatial)`` or unbatched ``(C, *spatial)``, ``*spatial``
        ``(L,)``, ``(H, W)`` or ``(D, H, W)``.

        **Returns:** ``(N, C, *spatial_out)`` (or unbatched): ``W + left + right``,
        ``H + top + bottom``, ``D + front + back``.
        """
        if x.ndim not in (self._n + 1, self._n + 2):
            raise ValueError(
                f"{type(self).__name__}: expected {self._n + 1}D or {self._n + 2}D input "
                f"(got {x.ndim}D input)"
            )
        return pad(x, self.padding, "circular")


class _ReflectionPadNd(_PadNd):
    _mode = "reflect"


class _ReplicationPadNd(_PadNd):
    _mode = "replicate"


class ZeroPad1d(_ZeroPadNd):
    """Pads the last dimension with zeros (``torch.nn.ZeroPad1d``); ``padding``: an int or ``(left,
    right)``."""

    _n = 1


class ZeroPad2d(_ZeroPadNd):
    """Pads the last 2 dimensions with zeros (``torch.nn.ZeroPad2d``); ``padding``: an int or
    ``(left, right, top, bottom)``."""

    _n = 2


class ZeroPad3d(_ZeroPadNd):
    """Pads the last 3 dimensions with zeros (``torch.nn.ZeroPad3d``); ``padding``: an int or
    ``(left, right, top, bottom, front, back)``."""

    _n = 3


class ConstantPad1d(_ConstantPadNd):
    """Pads the last dimension with a constant (``torch.nn.ConstantPad1d``); ``padding``: an int or
    ``(left, right)``."""

    _n = 1


class ConstantPad2d(_ConstantPadNd):
    """Pads the last 2 dimensions with a constant (``torch.nn.ConstantPad2d``); ``padding``: an int
    or ``(left, right, top, bottom)``."""

    _n = 2


class ConstantPad3d(_ConstantPadNd):
    """Pads the last 3 dimensions with a constant (``torch.nn.ConstantPad3d``); ``padding``: an int
    or ``(left, right, top, bottom, front, back)``."""

    _n = 3


class ReflectionPad1d(_ReflectionPadNd):
    """Pads the last dimension by reflection (mirror, edge not repeated; each pad < the size)
    (``torch.nn.ReflectionPad1d``); ``padding``: an int or ``(left, right)``."""

    _n = 1


class ReflectionPad2d(_ReflectionPadNd):
    """Pads the last 2 dimensions by reflection (mirror, edge not repeated; each pad < the size)
    (``torch.nn.ReflectionPad2d``); ``padding``: an int or ``(left, right, top, bottom)``."""

    _n = 2


class ReflectionPad3d(_ReflectionPadNd):
    """Pads the last 3 dimensions by reflection (mirror, edge not repeated; each pad < the size)
    (``torch.nn.ReflectionPad3d``); ``padding``: an int or ``(left, right, top, bottom, front,
    back)``."""

    _n = 3


class ReplicationPad1d(_ReplicationPadNd):
    """Pads the last dimension by replication (edge repeated) (``torch.nn.ReplicationPad1d``);
    ``padding``: an int or ``(left, right)``."""

    _n = 1


class ReplicationPad2d(_ReplicationPadNd):
    """Pads the last 2 dimensions by replication (edge repeated) (``torch.nn.ReplicationPad2d``);
    ``padding``: an int or ``(left, right, top, bottom)``."""

    _n = 2


class ReplicationPad3d(_ReplicationPadNd):
    """Pads the last 3 dimensions by replication (edge repeated) (``torch.nn.ReplicationPad3d``);
    ``padding``: an int or ``(left, right, top, bottom, front, back)``."""

    _n = 3


class CircularPad1d(_CircularPadNd):
    """Pads the last dimension circularly (wrap-around; each pad <= the size)
    (``torch.nn.CircularPad1d``); ``padding``: an int or ``(left, right)``."""

    _n = 1


class CircularPad2d(_CircularPadNd):
    """Pads the last 2 dimensions circularly (wrap-around; each pad <= the size)
    (``torch.nn.CircularPad2d``); ``padding``: an int or ``(left, right, top, bottom)``."""

    _n = 2


class CircularPad3d(_CircularPadNd):
    """Pads the last 3 dimensions circularly (wrap-around; each pad <= the size)
    (``torch.nn.CircularPad3d``); ``padding``: an int or ``(left, right, top, bottom, front,
    back)``."""

    _n = 3
