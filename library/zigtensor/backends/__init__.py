"""The backend registry: one module per device type, imported only when a tensor first lives there.

A backend supplies `xp` (an array module with NumPy's API) plus the few operations that `xp` alone does
not express well or alike on every device (scatter-add, random numbers, conversions). Ops never import
numpy or cupy themselves; they ask `tensor.device.backend`.
"""

from __future__ import annotations

import importlib

_MODULES = {"cpu": "zigtensor.backends.cpu", "cuda": "zigtensor.backends.cuda"}
_cache: dict = {}


def get_backend(dev):
    b = _cache.get(dev)
    if b is None:
        name = _MODULES.get(dev.type)
        if name is None:
            raise RuntimeError(f"no backend for device {dev}; known device types: {sorted(_MODULES)}")
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise RuntimeError(f"device {dev} is not available: {e}") from None
        b = _cache[dev] = module.create(dev)
    return b
