"""The framework RNG: one seeded generator per device, reproducible across runs (zt.manual_seed)."""

from __future__ import annotations

_seed = 0


def manual_seed(seed: int) -> None:
    """Seed every device's generator (those already open and those opened later)."""
    global _seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"manual_seed: expected an int, got {type(seed).__name__} ({seed!r})")
    if seed < 0:
        raise ValueError(f"manual_seed: expected a non-negative seed, got {seed}")
    _seed = seed
    from .backends import _cache

    for backend in _cache.values():
        backend.seed(seed)


def initial_seed() -> int:
    return _seed


def get_rng_state(device="cpu"):
    from .device import device as as_device

    return as_device(device).backend.get_rng_state()


def set_rng_state(state, device="cpu") -> None:
    from .device import device as as_device

    as_device(device).backend.set_rng_state(state)
