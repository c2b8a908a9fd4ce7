"""Resizing layers: Upsample (F.interpolate as a module), PixelShuffle and PixelUnshuffle."""

from __future__ import annotations

from ..ops.interpolate import interpolate, pixel_shuffle, pixel_unshuffle
from .module import Module


class Upsample(Module):
    """F.interpolate(x, size, scale_factor, mode, align_corners, recompute_scale_factor) with fixed arguments.

    Args:
        size: the output spatial size (an int or one per spatial dim), or None with scale_factor.
        scale_factor: the multiplier of each spatial dim, or None with size.
        mode (str): 'nearest', 'nearest-exact', 'linear', 'bilinear', 'trilinear' or 'area'. Default: 'nearest'.
        align_corners (bool): for the linear modes, map corner pixels' centers onto each other.
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                 recompute_scale_factor: bool | None = None):
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, x):
        return interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                           self.recompute_scale_factor)

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else f"scale_factor={float(self.scale_factor)}" \
            if not isinstance(self.scale_factor, (tuple, list)) else f"scale_factor={self.scale_factor}"
        return f"{what}, mode='{self.mode}'"


class PixelShuffle(Module):
    """(*, C r^2, H, W) -> (*, C, H r, W r)."""

    def __init__(self, upscale_factor: int):
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, x):
        return pixel_shuffle(x, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """(*, C, H r, W r) -> (*, C r^2, H, W)."""

    def __init__(self, downscale_factor: int):
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, x):
        return pixel_unshuffle(x, self.downscale_factor)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"
