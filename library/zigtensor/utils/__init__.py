"""zigtensor.utils: training utilities that are not layers (checkpoint: recompute instead of store)."""

from . import checkpoint

__all__ = ["checkpoint"]
