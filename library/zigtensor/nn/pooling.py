"""Pooling: MaxPool1d/2d, AvgPool1d/2d and AdaptiveAvgPool1d/2d (the functional forms check the arguments), and
the sliding-block layers Unfold and Fold."""

from __future__ import annotations

from ..ops.conv import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    avg_pool1d,
    avg_pool2d,
    fold,
    max_pool1d,
    max_pool2d,
    unfold,
)
from .module import Module


class MaxPool2d(Module):
    """out[n, c, i, j] = max over the window at (i * stride, j * stride) of the (-inf padded) input.

    Args:
        kernel_size (int or tuple): window size.
        stride (int or tuple): step between windows. Default: kernel_size.
        padding (int or tuple): -inf padding on each side, at most half the kernel. Default: 0.
        dilation (int or tuple): spacing between window elements. Default: 1.
        return_indices (bool): also return the argmax positions (flat indices into H * W). Default: False.
        ceil_mode (bool): round the output size up, so a last partial window counts. Default: False.

    >>> nn.MaxPool2d(2)(zt.randn(1, 3, 8, 8)).shape
    (1, 3, 4, 4)
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, x):
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                          self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """out[n, c, i, j] = mean over the window at (i * stride, j * stride) of the (zero padded) input.

    Args:
        kernel_size (int or tuple): window size.
        stride (int or tuple): step between windows. Default: kernel_size.
        padding (int or tuple): zero padding on each side, at most half the kernel. Default: 0.
        ceil_mode (bool): round the output size up, so a last partial window counts. Default: False.
        count_include_pad (bool): count the padding zeros in the divisor. Default: True.
        divisor_override (int or None): divide by this instead of the window size. Default: None.

    >>> nn.AvgPool2d(2)(zt.randn(1, 3, 8, 8)).shape
    (1, 3, 4, 4)
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, x):
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """out[n, c, i, j] = mean of x[n, c, floor(i H/oH) : ceil((i+1) H/oH), floor(j W/oW) : ceil((j+1) W/oW)].

    Args:
        output_size (int or tuple): (oH, oW), or one int for both; None in the tuple keeps that input size.

    >>> nn.AdaptiveAvgPool2d(1)(zt.randn(2, 16, 7, 7)).shape
    (2, 16, 1, 1)
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class MaxPool1d(MaxPool2d):
    """MaxPool2d's window over (N, C, L) or (C, L)."""

    def forward(self, x):
        return max_pool1d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                          self.return_indices)


class AvgPool1d(Module):
    """The mean over each window of (N, C, L) or (C, L)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode, self.count_include_pad = padding, ceil_mode, count_include_pad

    def forward(self, x):
        return avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={_one(self.kernel_size)}, stride={_one(self.stride)}, padding={_one(self.padding)}"


class AdaptiveAvgPool1d(AdaptiveAvgPool2d):
    """Means over output_size windows covering (N, C, L) or (C, L)."""

    def forward(self, x):
        return adaptive_avg_pool1d(x, self.output_size)


class Unfold(Module):
    """Sliding blocks of (N, C, H, W) as columns (N, C * kH * kW, L): F.unfold with fixed arguments."""

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride

    def forward(self, x):
        return unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, "
                f"stride={self.stride}")


class Fold(Module):
    """Columns (N, C * kH * kW, L) summed back into (N, C, *output_size): F.fold with fixed arguments."""

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.output_size, self.kernel_size = output_size, kernel_size
        self.dilation, self.padding, self.stride = dilation, padding, stride

    def forward(self, x):
        return fold(x, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")


def _one(v):
    """A 1-d layer's argument as PyTorch prints it: a 1-tuple for an int."""
    return (v,) if isinstance(v, int) else v
