"""A test-only second device: the CPU backend registered under device type 'cuda'.

zigtensor has only a CPU backend here, so the device checks (mixing devices is an error, .to(device) copies
and carries gradients back) are tested against this stand-in. Use the `fake_cuda` fixture; it undoes the
registration afterwards so no other test sees it.
"""

from __future__ import annotations

import sys

import pytest

import zigtensor.backends as backends
from zigtensor.backends.cpu import CPUBackend

device_mod = sys.modules["zigtensor.device"]  # the package attribute `device` is the function, not the module


class FakeCUDABackend(CPUBackend):
    name = "cuda"

    def __repr__(self) -> str:
        return f"FakeCUDABackend({self.device})"


def create(device) -> FakeCUDABackend:
    return FakeCUDABackend(device)


def _forget_fake_devices() -> None:
    for dev in [d for d in backends._cache if d.type == "cuda"]:
        del backends._cache[dev]
    for key in [k for k, d in device_mod._interned.items() if d.type == "cuda"]:
        del device_mod._interned[key]


@pytest.fixture
def fake_cuda(monkeypatch):
    """Register the fake 'cuda' device type for one test; yields the device 'cuda:0'."""
    _forget_fake_devices()
    monkeypatch.setitem(backends._MODULES, "cuda", __name__)
    if "cuda" not in device_mod._KNOWN_TYPES:
        monkeypatch.setattr(device_mod, "_KNOWN_TYPES", device_mod._KNOWN_TYPES + ("cuda",))
    try:
        yield device_mod.device("cuda:0")
    finally:
        _forget_fake_devices()
