"""Convolutions: Conv1d, Conv2d and ConvTranspose2d."""

from __future__ import annotations

import math

from ..creation import empty
from ..ops.conv import conv1d, conv2d
from ..ops.conv_transpose import conv_transpose2d
from . import init
from ._args import _is_int, check_int
from .module import Module, Parameter

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _tuple(layer: str, name: str, value, n: int, minimum: int) -> tuple:
    """An int or a sequence of n ints (each >= minimum) -> a tuple of n ints."""
    v = (value,) * n if _is_int(value) else value
    if not isinstance(v, (tuple, list)) or len(v) != n or not all(_is_int(e) and e >= minimum for e in v):
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{layer}: {name} must be a {what} int or a tuple of {n} {what} ints, got {value!r}")
    return tuple(int(e) for e in v)


class _ConvNd(Module):
    """What Conv1d, Conv2d and ConvTranspose2d share: argument checks, parameters, init and repr."""

    _nd = 2
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 padding_mode, device, dtype, output_padding=0):
        super().__init__()
        layer, n = type(self).__name__, self._nd
        self.in_channels = check_int(layer, "in_channels", in_channels)
        self.out_channels = check_int(layer, "out_channels", out_channels)
        self.groups = check_int(layer, "groups", groups)
        if in_channels % groups:
            raise ValueError(f"{layer}: in_channels ({in_channels}) must be divisible by groups ({groups})")
        if out_channels % groups:
            raise ValueError(f"{layer}: out_channels ({out_channels}) must be divisible by groups ({groups})")
        self.kernel_size = _tuple(layer, "kernel_size", kernel_size, n, 1)
        self.stride = _tuple(layer, "stride", stride, n, 1)
        self.dilation = _tuple(layer, "dilation", dilation, n, 1)
        if isinstance(padding, str):
            if self._transposed or padding not in ("same", "valid"):
                allowed = "an int or a tuple" if self._transposed else "'same', 'valid', an int or a tuple"
                raise ValueError(f"{layer}: padding must be {allowed}, got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{layer}: padding='same' is not supported for strided convolutions, got "
                                 f"stride={self.stride}")
            self.padding = padding
        else:
            self.padding = _tuple(layer, "padding", padding, n, 0)
        self.output_padding = _tuple(layer, "output_padding", output_padding, n, 0)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{layer}: padding_mode must be one of {list(_PADDING_MODES)}, "
                             f"got {padding_mode!r}")
        if padding_mode != "zeros":
            raise NotImplementedError(f"{layer}: only padding_mode='zeros' is implemented, "
                                      f"got {padding_mode!r}")
        self.padding_mode = padding_mode
        if self._transposed:
            shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        else:
            shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(empty(*shape, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(self.out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # PyTorch's rule: weight ~ U(-b, b) with b = 1 / sqrt(fan_in), fan_in = weight.shape[1] * prod(kernel)
        # (for the transposed weight that is out_channels / groups * prod(kernel)); the bias uses the same b.
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        n = self._nd
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv1d(_ConvNd):
    """out[n, o, l] = bias[o] + sum_{c, k} weight[o, c, k] * x_pad[n, c, l * stride + k * dilation].

    Args:
        in_channels (int): channels of the (N, C_in, L) or (C_in, L) input.
        out_channels (int): channels of the output.
        kernel_size (int or tuple): window length.
        stride (int or tuple): step between windows. Default: 1.
        padding (int, tuple, 'same' or 'valid'): zeros added on both sides ('same' keeps L at stride 1).
            Default: 0.
        dilation (int or tuple): spacing between kernel taps. Default: 1.
        groups (int): split the channels into groups convolved separately; divides both channel counts.
            Default: 1.
        bias (bool): learn a per-channel bias. Default: True.
        padding_mode (str): only 'zeros'. Default: 'zeros'.
        device, dtype: where and as what the parameters are made.

    >>> nn.Conv1d(4, 8, 3, padding=1)(zt.randn(2, 4, 10)).shape
    (2, 8, 10)
    """

    _nd = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)

    def forward(self, x):
        return conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv2d(_ConvNd):
    """out[n, o] = bias[o] + sum_c weight[o, c] (star) x[n, c]: 2-d cross-correlation over (N, C_in, H, W).

    Args:
        in_channels (int): channels of the (N, C_in, H, W) or (C_in, H, W) input.
        out_channels (int): channels of the output.
        kernel_size (int or tuple): window size (kH, kW).
        stride (int or tuple): step between windows. Default: 1.
        padding (int, tuple, 'same' or 'valid'): zeros added on each side ('same' keeps H, W at stride 1).
            Default: 0.
        dilation (int or tuple): spacing between kernel taps. Default: 1.
        groups (int): split the channels into groups convolved separately; divides both channel counts.
            Default: 1.
        bias (bool): learn a per-channel bias. Default: True.
        padding_mode (str): only 'zeros'. Default: 'zeros'.
        device, dtype: where and as what the parameters are made.

    Weight (C_out, C_in / groups, kH, kW) and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    fan_in = C_in / groups * kH * kW, as in PyTorch.

    >>> nn.Conv2d(1, 32, 3, padding=1)(zt.randn(8, 1, 28, 28)).shape
    (8, 32, 28, 28)
    """

    _nd = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    """The adjoint of Conv2d (each input pixel scatters a weighted kernel): upsamples (N, C_in, H, W) to
    H_out = (H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1 (likewise W_out).

    Args:
        in_channels (int): channels of the input.
        out_channels (int): channels of the output.
        kernel_size (int or tuple): window size (kH, kW).
        stride (int or tuple): step between windows in the output. Default: 1.
        padding (int or tuple): rows/columns cropped from each side of the output. Default: 0.
        output_padding (int or tuple): extra rows/columns on the bottom/right (smaller than stride or
            dilation). Default: 0.
        groups (int): channel groups; divides both channel counts. Default: 1.
        bias (bool): learn a per-channel bias. Default: True.
        dilation (int or tuple): spacing between kernel taps. Default: 1.
        padding_mode (str): only 'zeros'. Default: 'zeros'.
        device, dtype: where and as what the parameters are made.

    Weight (C_in, C_out / groups, kH, kW); init as PyTorch's (fan_in = C_out / groups * kH * kW).

    >>> nn.ConvTranspose2d(8, 4, 2, stride=2)(zt.randn(1, 8, 5, 5)).shape
    (1, 4, 10, 10)
    """

    _nd = 2
    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype, output_padding)
        for o, s, d in zip(self.output_padding, self.stride, self.dilation):
            if o >= s and o >= d:
                raise ValueError(f"ConvTranspose2d: output_padding must be smaller than either stride or "
                                 f"dilation, got output_padding={self.output_padding}, stride={self.stride}, "
                                 f"dilation={self.dilation}")

    def _output_padding(self, x, output_size) -> tuple:
        """output_padding, or the one that gives the requested output_size (PyTorch's rule)."""
        if output_size is None:
            return self.output_padding
        size = tuple(output_size)
        if len(size) == x.ndim:
            size = size[-2:]
        if len(size) != 2:
            raise ValueError(f"ConvTranspose2d: output_size must have 2 or {x.ndim} elements, "
                             f"got {output_size!r}")
        lo = tuple((n - 1) * s - 2 * p + d * (k - 1) + 1 for n, s, p, d, k in
                   zip(x.shape[-2:], self.stride, self.padding, self.dilation, self.kernel_size))
        hi = tuple(m + s - 1 for m, s in zip(lo, self.stride))
        if any(not lo_ <= o <= hi_ for o, lo_, hi_ in zip(size, lo, hi)):
            raise ValueError(f"ConvTranspose2d: requested an output size of {size}, but valid sizes range "
                             f"from {lo} to {hi} (for an input of spatial size {x.shape[-2:]})")
        return tuple(o - m for o, m in zip(size, lo))

    def forward(self, x, output_size=None):
        output_padding = self._output_padding(x, output_size)
        return conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, output_padding,
                                self.groups, self.dilation)
