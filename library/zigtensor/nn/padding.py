"""Padding layers, as PyTorch's: ZeroPad{1,2,3}d, ConstantPad{1,2,3}d, ReflectionPad{1,2,3}d, ReplicationPad{1,2,3}d
and CircularPad{1,2,3}d, each F.pad over the last 1, 2 or 3 dims with fixed pads.

`padding` is one int (every side) or the pads in F.pad's order: (left, right[, top, bottom[, front, back]]).
"""

from __future__ import annotations

import numbers

from ..ops.padding import pad
from .module import Module


class _Pad(Module):
    dims = 1
    mode = "constant"

    def __init__(self, padding, value: float = 0.0):
        super().__init__()
        name = type(self).__name__
        if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
            padding = (int(padding),) * (2 * self.dims)
        padding = tuple(padding)
        if len(padding) != 2 * self.dims or not all(isinstance(p, numbers.Integral) for p in padding):
            raise ValueError(f"{name}: padding must be one int or {2 * self.dims} ints, got {padding!r}")
        self.padding = padding
        self.value = value

    def forward(self, x):
        return pad(x, self.padding, self.mode, self.value if self.mode == "constant" else None)

    def extra_repr(self) -> str:
        if type(self).__name__.startswith("Constant"):
            return f"padding={self.padding}, value={self.value}"
        return f"{self.padding}"


class _ZeroPad(_Pad):
    def __init__(self, padding):
        super().__init__(padding, 0.0)


def _layer(kind: str, mode: str, dims: int, base: type = _Pad) -> type:
    """The class {kind}Pad{dims}d: F.pad with `mode` over the last `dims` dims."""
    doc = f"F.pad(x, padding, mode={mode!r}) over the last {dims} dim{'s' if dims > 1 else ''}."
    return type(f"{kind}Pad{dims}d", (base,), {"dims": dims, "mode": mode, "__doc__": doc, "__module__": __name__})


ConstantPad1d, ConstantPad2d, ConstantPad3d = (_layer("Constant", "constant", d) for d in (1, 2, 3))
ZeroPad1d, ZeroPad2d, ZeroPad3d = (_layer("Zero", "constant", d, _ZeroPad) for d in (1, 2, 3))
ReflectionPad1d, ReflectionPad2d, ReflectionPad3d = (_layer("Reflection", "reflect", d) for d in (1, 2, 3))
ReplicationPad1d, ReplicationPad2d, ReplicationPad3d = (_layer("Replication", "replicate", d) for d in (1, 2, 3))
CircularPad1d, CircularPad2d, CircularPad3d = (_layer("Circular", "circular", d) for d in (1, 2, 3))
