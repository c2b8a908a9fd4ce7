"""Transposed convolution (the gradient of conv2d with respect to its input, used as an upsampling layer).

Each input pixel scatters a weighted copy of the kernel into the output:

    cols = weight^T @ input        per group: (C_out/g * kH * kW, C_in/g) @ (C_in/g, H * W)
    out  = fold(cols)              col2im: windows at stride s summed into the (dilated, cropped) output

so it runs on the same Fold (col2im) as conv2d's backward, and its own gradients (conv2d of the output
gradient, and the matching weight product) come from autograd through matmul and Fold.
"""

from __future__ import annotations

from ..amp.autocast_mode import autocast_inputs
from .common import Tensor
from .conv import Fold, Geometry, _check_input, _check_tensor, _ints, _is_int


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> Tensor:
    """2-d transposed convolution of (N, C_in, H, W) or (C_in, H, W) with weight (C_in, C_out/groups, kH, kW).

    H_out = (H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1 (and likewise W_out).
    """
    op = "conv_transpose2d"
    input, weight, bias = autocast_inputs(op, input, weight, bias)
    unbatched = _check_input(op, input, 2)
    _check_tensor(op, "weight", weight)
    if weight.ndim != 4:
        raise RuntimeError(f"{op}: expected weight of 4 dims (in_channels, out_channels / groups, kH, kW), "
                           f"got weight of shape {weight.shape}")
    if not _is_int(groups) or groups <= 0:
        raise RuntimeError(f"{op}: groups must be a positive integer, got groups={groups!r}")
    groups = int(groups)
    if isinstance(padding, str):
        raise RuntimeError(f"{op}: padding must be an int or a tuple of 2 ints, got padding={padding!r} "
                           "(string padding is only defined for conv2d)")
    stride = _ints(op, "stride", stride, 2)
    padding = _ints(op, "padding", padding, 2)
    output_padding = _ints(op, "output_padding", output_padding, 2)
    dilation = _ints(op, "dilation", dilation, 2)
    if any(s <= 0 for s in stride):
        raise RuntimeError(f"{op}: non-positive stride is not supported, got stride={stride}")
    if any(d <= 0 for d in dilation):
        raise RuntimeError(f"{op}: dilation must be positive, got dilation={dilation}")
    if any(p < 0 for p in padding):
        raise RuntimeError(f"{op}: negative padding is not supported, got padding={padding}")
    if any(op_ < 0 or (op_ >= s and op_ >= d) for op_, s, d in zip(output_padding, stride, dilation)):
        raise RuntimeError(f"{op}: output padding must be non-negative and smaller than either stride or "
                           f"dilation, got output_padding={output_padding}, stride={stride}, "
                           f"dilation={dilation}")
    c_in, cg_out = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    c = input.shape[-3]
    if c_in % groups:
        raise RuntimeError(f"{op}: groups={groups} must divide in_channels, but weight has shape "
                           f"{weight.shape} ({c_in} input channels)")
    if c != c_in:
        raise RuntimeError(f"{op}: given weight of shape {weight.shape}, expected input of shape "
                           f"{input.shape} to have {c_in} channels (weight.shape[0]), got {c}")
    out_ch = cg_out * groups
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.device is not input.device:
            raise RuntimeError(f"{op}: expected input and {name} on the same device, got input on "
                               f"{input.device} and {name} on {t.device} (move one with .to(device))")
    if input.dtype is not weight.dtype:
        raise RuntimeError(f"{op}: input dtype {input.dtype} and weight dtype {weight.dtype} must be the "
                           "same")
    if bias is not None:
        _check_tensor(op, "bias", bias)
        if bias.shape != (out_ch,):
            raise RuntimeError(f"{op}: expected bias of shape ({out_ch},) for weight of shape {weight.shape} "
                               f"and groups={groups}, got bias of shape {bias.shape}")
        if bias.dtype is not input.dtype:
            raise RuntimeError(f"{op}: bias dtype {bias.dtype} must match input dtype {input.dtype}")
    h, w = input.shape[-2:]
    # the full extent the windows cover, then the output: cropped by padding, extended by output_padding
    extent = tuple((n_ - 1) * s + d * (k - 1) + 1 for n_, s, d, k in zip((h, w), stride, dilation, kernel))
    out = tuple(e - 2 * p + o for e, p, o in zip(extent, padding, output_padding))
    if any(o <= 0 for o in out):
        raise RuntimeError(f"{op}: given input of shape {input.shape}, weight {weight.shape}, "
                           f"stride={stride}, padding={padding}, dilation={dilation} and "
                           f"output_padding={output_padding}, the output size ({out[0]} x {out[1]}) is too "
                           "small")

    x = input.unsqueeze(0) if unbatched else input
    n = x.shape[0]
    kh, kw = kernel
    if groups == 1:
        cols = weight.reshape(c_in, out_ch * kh * kw).mT @ x.reshape(n, c_in, h * w)  # (N, C_out*kh*kw, H*W)
    else:
        wg = weight.reshape(groups, c_in // groups, cg_out * kh * kw).mT  # (g, C_out/g*kh*kw, C_in/g)
        cols = wg @ x.reshape(n, groups, c_in // groups, h * w)  # (N, g, C_out/g*kh*kw, H*W)
    cols = cols.reshape(n, out_ch, kh, kw, h, w)
    # Fold crops `padding` off the top/left and `padding - output_padding` off the bottom/right; where
    # output_padding exceeds padding, the rows/columns past the last window are zeros appended below.
    bottom = tuple(max(p - o, 0) for p, o in zip(padding, output_padding))
    folded = tuple(e - p - b for e, p, b in zip(extent, padding, bottom))
    geom = Geometry(kernel, dilation, tuple(zip(padding, bottom)), stride, (h, w))
    y = Fold.apply(cols, geom, folded)
    for axis, (have, want) in enumerate(zip(folded, out), start=2):
        if want > have:
            from .shape import cat

            shape = list(y.shape)
            shape[axis] = want - have
            y = cat([y, y.new_zeros(*shape)], dim=axis)
    if bias is not None:
        y = y + bias.reshape(1, out_ch, 1, 1)
    return y.squeeze(0) if unbatched else y


__all__ = ["conv_transpose2d"]
