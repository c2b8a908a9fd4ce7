"""Mixed precision, as torch.amp: `autocast` runs matrix products in bfloat16 or float16 and keeps the
precision-sensitive ops in float32, with the parameters (master weights) in float32; `GradScaler` scales the
loss so that float16 gradients keep their small values, and skips the steps whose gradients overflowed."""

from __future__ import annotations

from .autocast_mode import autocast, get_autocast_dtype, is_autocast_enabled
from .grad_scaler import GradScaler

__all__ = ["autocast", "GradScaler", "is_autocast_enabled", "get_autocast_dtype"]
