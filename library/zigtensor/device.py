"""Devices: 'cpu', 'cuda', 'cuda:N'. Device objects are interned, so ops compare them with `is`."""

from __future__ import annotations

_KNOWN_TYPES = ("cpu", "cuda")


class Device:
    __slots__ = ("type", "index", "_backend")

    def __init__(self, type: str, index: int | None):
        self.type = type
        self.index = index
        self._backend = None

    @property
    def backend(self):
        """The module-level backend object for this device, imported on first use."""
        if self._backend is None:
            from .backends import get_backend

            self._backend = get_backend(self)
        return self._backend

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, Device) and other.type == self.type and other.index == self.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __reduce__(self):
        return (device, (str(self),))


_interned: dict = {}


def device(spec: str | Device | None = None, index: int | None = None) -> Device:
    """Parse 'cpu', 'cuda' or 'cuda:N' (or pass a Device through). None means the CPU."""
    if isinstance(spec, Device):
        return spec
    if spec is None:
        spec = "cpu"
    key = (spec, index)
    d = _interned.get(key)
    if d is not None:
        return d
    if not isinstance(spec, str):
        raise TypeError(f"device: expected a string like 'cpu' or 'cuda:0', got {spec!r}")
    type_, _, idx = spec.partition(":")
    if type_ not in _KNOWN_TYPES:
        raise RuntimeError(f"unknown device {spec!r}; expected one of 'cpu', 'cuda', 'cuda:N'")
    if idx:
        if not idx.isdigit() or index is not None:
            raise RuntimeError(f"invalid device string {spec!r}; expected 'cuda:N' with N a non-negative "
                               "integer")
        index = int(idx)
    if type_ == "cpu" and index not in (None, 0):
        raise RuntimeError(f"invalid device {spec!r}: the CPU has no index other than 0")
    if type_ == "cpu":
        index = None
    elif index is None:
        index = 0  # NOTE: 'cuda' means the current device, always 0 here: 'cuda' and 'cuda:0' tensors mix
    d = _interned.setdefault(("canon", type_, index), Device(type_, index))
    _interned[key] = d
    return d


cpu = device("cpu")


_default_device = None  # None: the CPU


def set_default_device(spec) -> None:
    """The device creation functions (zt.tensor, zt.zeros, zt.randn, ...) use when given device=None, as
    torch.set_default_device. None restores the CPU."""
    global _default_device
    _default_device = None if spec is None else device(spec)


def get_default_device() -> Device:
    return cpu if _default_device is None else _default_device
