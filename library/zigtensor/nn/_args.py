"""Checks of layer constructor arguments, shared by the layer files: each error names the layer, the
argument, the bad value and what was expected."""

from __future__ import annotations

import numbers


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_int(layer: str, name: str, value, minimum: int = 1) -> int:
    """An int >= minimum: TypeError for another type, ValueError for an int out of range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{layer}: {name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{layer}: {name} must be {what}, got {value!r}")
    return int(value)


def check_float(layer: str, name: str, value, low: float | None = None, high: float | None = None) -> float:
    """A real number within [low, high] (either bound may be None)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and ((low is not None and value < low) or (high is not None and value > high)):
        ok = False
    if not ok:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{layer}: {name} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def check_shape(layer: str, name: str, value) -> tuple:
    """An int or a sequence of positive ints -> a tuple."""
    shape = (value,) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    try:
        shape = tuple(shape)
    except TypeError:
        shape = None
    if not shape or not all(_is_int(s) and s > 0 for s in shape):
        raise ValueError(f"{layer}: {name} must be a positive int or a non-empty sequence of positive ints, "
                         f"got {value!r}")
    return tuple(int(s) for s in shape)
