"""Padding modules (``torch.nn.ZeroPad2d`` and friends) on top of ``jaxconv.functional.pad``."""
from __future__ import annotations

from ..functional.padding import pad
from .module import Module, with_dims


class _PadNd(Module):
    """Pads the last ``_n`` dimensions: {mode} (``torch.nn.{name}{1,2,3}d``).

    **Arguments:**

    - ``padding``: an int (every side) or a ``2*_n``-tuple ``{sides}``, the last
      dimension first, as ``jaxconv.functional.pad`` takes it.{value}

    Attribute ``padding`` holds the ``2*_n``-tuple.
    """

    _n: int
    _mode: str

    def __init__(self, padding):
        self._setup(padding)

    def _setup(self, padding):
        m, name = 2 * self._n, type(self).__name__
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = (padding,) * m
        if not (isinstance(padding, (tuple, list)) and len(padding) == m
                and all(isinstance(p, int) and not isinstance(p, bool) for p in padding)):
            raise ValueError(
                f"{name}: padding must be an int or a tuple of {m} ints (two per padded "
                f"dimension, the last dimension first), got padding={padding!r}"
            )
        self.padding = tuple(padding)

    def extra_repr(self) -> str:
        return f"{self.padding}"

    def __call__(self, x):
        return pad(x, self.padding, self._mode)


class _ConstantPadNd(_PadNd):
    _mode = "constant"

    def __init__(self, padding, value: float):
        self._setup(padding)
        self.value = value

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"

    def __call__(self, x):
        return pad(x, self.padding, "constant", self.value)


class _ZeroPadNd(_ConstantPadNd):
    def __init__(self, padding):
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class _CircularPadNd(_PadNd):
    _mode = "circular"

    def __call__(self, x):
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


_WHAT = {
    "ZeroPad": ("with zeros", ""),
    "ConstantPad": ("with a constant", "\n    - ``value``: the fill value."),
    "ReflectionPad": ("by reflection (mirror, edge not repeated; each pad < the size)", ""),
    "ReplicationPad": ("by replication (edge repeated)", ""),
    "CircularPad": ("circularly (wrap-around; each pad <= the size)", ""),
}


_SIDES = {1: "(left, right)", 2: "(left, right, top, bottom)",
          3: "(left, right, top, bottom, front, back)"}


def _padding_dims(base, name: str):
    mode, value = _WHAT[name]
    template = (_PadNd.__doc__.replace("{mode}", mode).replace("{name}", name)
                .replace("{value}", value))
    return with_dims(base, name, __name__,
                     doc=lambda n: template.replace("{sides}", _SIDES[n]).replace("2*_n", str(2 * n)))


ZeroPad1d, ZeroPad2d, ZeroPad3d = _padding_dims(_ZeroPadNd, "ZeroPad")
ConstantPad1d, ConstantPad2d, ConstantPad3d = _padding_dims(_ConstantPadNd, "ConstantPad")
ReflectionPad1d, ReflectionPad2d, ReflectionPad3d = _padding_dims(_ReflectionPadNd, "ReflectionPad")
ReplicationPad1d, ReplicationPad2d, ReplicationPad3d = _padding_dims(_ReplicationPadNd, "ReplicationPad")
CircularPad1d, CircularPad2d, CircularPad3d = _padding_dims(_CircularPadNd, "CircularPad")
