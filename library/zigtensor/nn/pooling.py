"""Pooling: MaxPool2d, AvgPool2d and AdaptiveAvgPool2d (the functional forms check the arguments)."""

from __future__ import annotations

from ..ops.conv import adaptive_avg_pool2d, avg_pool2d, max_pool2d
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
