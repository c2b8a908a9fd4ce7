"""2-d max and average pooling, forward and backward, on kernels/pool.cu; PyTorch's arguments and semantics.

    y, indices = max_pool2d_forward(x, kernel_size=2)                          # x: (N, C, H, W) or (C, H, W)
    dx = max_pool2d_backward(dy, indices, x.shape, kernel_size=2)
    y = avg_pool2d_forward(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    dx = avg_pool2d_backward(dy, x.shape, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)

The output size (ceil_mode included) is computed here and passed to the kernels as a PoolGeometry struct;
indices are int64 positions h * W + w in each (H, W) plane, as PyTorch returns them. The backward kernels
gather (one thread per input element, no atomics), so they are deterministic.
"""

from __future__ import annotations

import math

import numpy as np

from ._launch import array_module, blocks, check_float, compute_ctype, ctype, kernel, sm_count

THREADS = 256


def _pair(op: str, name: str, v) -> tuple[int, int]:
    t = (v, v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else tuple(v)
    if len(t) == 1:
        t = (t[0], t[0])
    if len(t) != 2 or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in t):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    return int(t[0]), int(t[1])


def output_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length; in ceil mode the last window must start inside the input or the left
    padding."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def geometry(op: str, shape, kernel_size, stride, padding, dilation, ceil_mode: bool, count_include_pad=True,
             divisor_override=None) -> dict:
    """The PoolGeometry of kernels/pool.cu for an input of `shape` (..., H, W), checked as PyTorch checks."""
    kh, kw = _pair(op, "kernel_size", kernel_size)
    sh, sw = (kh, kw) if stride is None or (isinstance(stride, (tuple, list)) and not stride) else \
        _pair(op, "stride", stride)
    ph, pw = _pair(op, "padding", padding)
    dh, dw = _pair(op, "dilation", dilation)
    if min(kh, kw) <= 0:
        raise ValueError(f"{op}: kernel_size must be greater than zero, got {(kh, kw)}")
    if min(sh, sw) <= 0:
        raise ValueError(f"{op}: stride must be greater than zero, got {(sh, sw)}")
    if min(dh, dw) <= 0:
        raise ValueError(f"{op}: dilation must be greater than zero, got {(dh, dw)}")
    if min(ph, pw) < 0 or ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{op}: pad should be non-negative and at most half of kernel size, got padding "
                         f"{(ph, pw)} and kernel_size {(kh, kw)}")
    if divisor_override is not None and (not isinstance(divisor_override, (int, np.integer))
                                         or isinstance(divisor_override, bool) or divisor_override == 0):
        raise ValueError(f"{op}: divisor_override must be a non-zero int (negative allowed, as in PyTorch), got "
                         f"{divisor_override!r}")
    h, w = int(shape[-2]), int(shape[-1])
    oh, ow = output_size(h, kh, sh, ph, dh, ceil_mode), output_size(w, kw, sw, pw, dw, ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(f"{op}: given input of shape {tuple(shape)}, the calculated output size ({oh}x{ow}) is too "
                         f"small (kernel_size={(kh, kw)}, stride={(sh, sw)}, padding={(ph, pw)}, "
                         f"dilation={(dh, dw)})")
    return dict(h=h, w=w, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw,
                count_include_pad=int(bool(count_include_pad)), divisor_override=int(divisor_override or 0))


def _check_input(op: str, x):
    check_float(op, "input", x)
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape {tuple(x.shape)}")


def _launch(name: str, dtype, work: int, args: tuple, xp) -> None:
    if work:
        k = kernel("pool", name, {"T": ctype(dtype), "CT": compute_ctype(dtype)})
        k(blocks(work, THREADS, cap=sm_count(xp) * (2048 // THREADS) * 8), THREADS, args)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False):
    """(y, indices): the maximum of each window (padding never wins) and its position h * W + w."""
    op = "max_pool2d_forward"
    xp = array_module(x)
    _check_input(op, x)
    g = geometry(op, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    x = xp.ascontiguousarray(x)
    planes = math.prod(x.shape[:-2])
    out_shape = tuple(x.shape[:-2]) + (g["oh"], g["ow"])
    y = xp.empty(out_shape, dtype=x.dtype)
    indices = xp.empty(out_shape, dtype=np.int64)
    _launch("max_pool2d_forward", x.dtype, y.size, (x, y, indices, planes, g), xp)
    return y, indices


def max_pool2d_backward(dy, indices, input_shape, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode: bool = False):
    """dx of input_shape: each dy goes to the position its window's maximum came from (indices)."""
    op = "max_pool2d_backward"
    xp = array_module(dy)
    check_float(op, "dy", dy)
    g = geometry(op, input_shape, kernel_size, stride, padding, dilation, ceil_mode)
    out_shape = tuple(input_shape[:-2]) + (g["oh"], g["ow"])
    if tuple(dy.shape) != out_shape or tuple(indices.shape) != out_shape or indices.dtype != np.int64:
        raise ValueError(f"{op}: dy {tuple(dy.shape)} and int64 indices {tuple(indices.shape)} {indices.dtype} must "
                         f"both have the output shape {out_shape}")
    dy, indices = xp.ascontiguousarray(dy), xp.ascontiguousarray(indices)
    dx = xp.empty(tuple(input_shape), dtype=dy.dtype)
    planes = math.prod(input_shape[:-2])
    _launch("max_pool2d_backward", dy.dtype, dx.size, (dy, indices, dx, planes, g), xp)
    return dx


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                       count_include_pad: bool = True, divisor_override: int | None = None):
    """The mean of each window: its sum over the divisor (see kernels/pool.cu)."""
    op = "avg_pool2d_forward"
    xp = array_module(x)
    _check_input(op, x)
    g = geometry(op, x.shape, kernel_size, stride, padding, 1, ceil_mode, count_include_pad, divisor_override)
    x = xp.ascontiguousarray(x)
    planes = math.prod(x.shape[:-2])
    y = xp.empty(tuple(x.shape[:-2]) + (g["oh"], g["ow"]), dtype=x.dtype)
    _launch("avg_pool2d_forward", x.dtype, y.size, (x, y, planes, g), xp)
    return y


def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                        count_include_pad: bool = True, divisor_override: int | None = None):
    """dx of input_shape: every input element gets dy / divisor of each window that covers it."""
    op = "avg_pool2d_backward"
    xp = array_module(dy)
    check_float(op, "dy", dy)
    g = geometry(op, input_shape, kernel_size, stride, padding, 1, ceil_mode, count_include_pad, divisor_override)
    out_shape = tuple(input_shape[:-2]) + (g["oh"], g["ow"])
    if tuple(dy.shape) != out_shape:
        raise ValueError(f"{op}: dy has shape {tuple(dy.shape)}, expected the output shape {out_shape}")
    dy = xp.ascontiguousarray(dy)
    dx = xp.empty(tuple(input_shape), dtype=dy.dtype)
    planes = math.prod(input_shape[:-2])
    _launch("avg_pool2d_backward", dy.dtype, dx.size, (dy, dx, planes, g), xp)
    return dx
