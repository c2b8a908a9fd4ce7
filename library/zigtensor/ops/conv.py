"""Convolution and pooling (1-d and 2-d), all through one mechanism.

Unfold (im2col) turns (N, C, H, W) into its sliding windows (N, C, kh, kw, oh, ow) with one strided view of
the padded array and one copy; Fold (col2im) adds windows back, looping only over the kh*kw kernel offsets.
Each is the other's backward, so gradients of any order come for free. On top of them:

    conv       = unfold laid out (C * kh * kw, N * oh * ow), then ONE matmul with the weight per group
    max_pool   = unfold with -inf padding, a running max over the window offsets; the gradient goes to the
                 first maximum of each window (a one-hot mask, folded back)
    avg_pool   = unfold with zero padding, sum over the window, divide by PyTorch's divisor
    adaptive   = averaging matrices on each side: P_h @ x @ P_w^T (windows of varying size, exactly separable)

1-d ops run as 2-d ops over a height of 1. Arguments and errors follow torch.nn.functional.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from ..autograd.function import Function
from ..autograd.grad_mode import GradMode
from ..dtypes import FLOAT, bool_
from .common import Tensor

# kernel, dilation, stride, out: (h, w) pairs; pads: ((top, bottom), (left, right)). The bottom/right pads may
# exceed the user's padding, so that ceil_mode's last window fits.
Geometry = namedtuple("Geometry", ["kernel", "dilation", "pads", "stride", "out"])


class Unfold(Function):
    """(N, C, H, W) -> (N, C, kh, kw, oh, ow) windows, or (C, kh, kw, N, oh, ow) with channels_outer.

    out[n, c, i, j, y, x] = padded[n, c, y*sh + i*dh, x*sw + j*dw]
    """

    def forward(self, a, geom, pad_value, channels_outer=False):
        return _windows(self.xp, a, geom, pad_value, channels_outer)

    def backward(self, g):
        x, geom, _, *layout = self.inputs
        return (Fold.apply(g, geom, x.shape[2:], *layout), None, None, *[None] * len(layout))


class Fold(Function):
    """(N, C, kh, kw, oh, ow) windows (or (C, kh, kw, N, oh, ow) with channels_outer) -> (N, C, H, W),
    overlapping windows summed: the adjoint of Unfold."""

    def forward(self, cols, geom, size, channels_outer=False):
        (kh, kw), (dh, dw), ((pt, _), (pl, _)), (sh, sw), (oh, ow) = geom
        n, c = (cols.shape[3], cols.shape[0]) if channels_outer else cols.shape[:2]
        h, w = size
        # Each window offset adds into the output directly, clipped to the part that falls inside the padding,
        # so the result is a fresh contiguous (N, C, H, W) array (no padded buffer, no cropped view).
        out = self.xp.zeros((n, c, h, w), dtype=cols.dtype)
        target = out.transpose(1, 0, 2, 3) if channels_outer else out  # indexed like cols: (C, N, ...) or not
        # NOTE: where windows do not overlap (a window spans at most the stride: 2x2 pooling), every element
        # is written once, and a plain copy is much cheaper than a strided add
        overlap = (oh > 1 and sh < dh * (kh - 1) + 1) or (ow > 1 and sw < dw * (kw - 1) + 1)
        for i in range(kh):
            src_rows, dst_rows = _clip(i * dh - pt, sh, oh, h)
            for j in range(kw):
                src_cols, dst_cols = _clip(j * dw - pl, sw, ow, w)
                if src_rows is None or src_cols is None:
                    continue
                if channels_outer:
                    window = cols[:, i, j, :, src_rows, src_cols]
                else:
                    window = cols[:, :, i, j, src_rows, src_cols]
                if overlap:
                    target[:, :, dst_rows, dst_cols] += window
                else:
                    target[:, :, dst_rows, dst_cols] = window
        return out

    def backward(self, g):
        _, geom, _, *layout = self.inputs
        return (Unfold.apply(g, geom, 0, *layout), None, None, *[None] * len(layout))


class Conv(Function):
    """(N, C, H, W) conv weight (O, C / groups, kh, kw) [+ bias (O,)] -> (N, O, oh, ow).

    im2col laid out (C * kh * kw, N * oh * ow): then each group is ONE large matmul in forward and in both
    backward products, and the weight gradient needs no sum over the batch. (For the 32->64 3x3 conv of
    bench/cnn.py on 2 cores the three products take ~11 ms instead of ~14 ms as N batched matmuls.) The
    output is written straight into a contiguous (N, O, oh, ow) array with the bias added on the way.
    Backward is written with Tensor ops (Fold, Unfold and matmul), so it is itself differentiable.
    """

    def forward(self, x, w, b, geom, groups):
        xp = self.xp
        n, c = x.shape[:2]
        o = w.shape[0]
        (oh, ow), k = geom.out, w[0].size
        cols = _windows(xp, x, geom, 0, True).reshape(groups, k, n * oh * ow)
        y = self.device.backend.matmul(w.reshape(groups, o // groups, k), cols)  # (g, O/g, N * oh * ow)
        out = xp.empty((n, o, oh, ow), dtype=y.dtype)
        y = y.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)
        if b is None:
            out[...] = y
        else:
            xp.add(y, b.reshape(1, o, 1, 1), out=out)
        self.cols = cols
        return out

    def backward(self, g):
        x, w, b, geom, groups = self.inputs
        n, c, h, wd = x.shape
        o, k = w.shape[0], math.prod(w.shape[1:])
        kh, kw = geom.kernel
        oh, ow = geom.out
        g2 = g.permute(1, 0, 2, 3).reshape(groups, o // groups, n * oh * ow)
        w2 = w.reshape(groups, o // groups, k)
        gx = gw = gb = None
        if w.requires_grad:
            if GradMode.enabled:  # create_graph: the windows as a function of x, for second derivatives
                cols = Unfold.apply(x, geom, 0, True).reshape(groups, k, n * oh * ow)
            else:
                cols = Tensor._wrap(self.cols, self.device)
            gw = (g2 @ cols.mT).reshape(w.shape)
        if b is not None and b.requires_grad:
            gb = g2.sum(-1).reshape(o)  # g2 is contiguous: a faster sum than over (N, oh, ow) of g
        if x.requires_grad:
            gx = Fold.apply((w2.mT @ g2).reshape(c, kh, kw, n, oh, ow), geom, (h, wd), True)
        return gx, gw, gb, None, None

    def release(self) -> None:
        super().release()
        self.cols = None


def _clip(offset: int, stride: int, count: int, size: int):
    """Positions offset + y * stride (y < count) that fall inside [0, size): (slice of y, slice of positions),
    or (None, None) when none does."""
    first = max(0, -(offset // stride))  # the smallest y with offset + y * stride >= 0
    last = min(count - 1, (size - 1 - offset) // stride)
    if last < first:
        return None, None
    return slice(first, last + 1), slice(offset + first * stride, offset + last * stride + 1, stride)


def _windows(xp, a, geom, pad_value, channels_outer=False):
    """The (N, C, kh, kw, oh, ow) windows of a (N, C, H, W) (or (C, kh, kw, N, oh, ow) with channels_outer),
    padded with pad_value: one strided view of the padded array and one copy into a fresh array (none where
    the windows are `a` itself: 1x1, stride 1)."""
    (kh, kw), (dh, dw), _, (sh, sw), (oh, ow) = geom
    n, c = a.shape[:2]
    p = _pad(xp, a, geom.pads, pad_value)
    s = p.strides
    if channels_outer:
        shape, strides = (c, kh, kw, n, oh, ow), (s[1], s[2] * dh, s[3] * dw, s[0], s[2] * sh, s[3] * sw)
    else:
        shape, strides = (n, c, kh, kw, oh, ow), (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw)
    return xp.ascontiguousarray(xp.lib.stride_tricks.as_strided(p, shape, strides))


def _pad(xp, a, pads, value):
    """a (N, C, H, W) with pads ((top, bottom), (left, right)) of `value` around it (a itself when none)."""
    ((pt, pb), (pl, pr)) = pads
    if not (pt or pb or pl or pr):
        return a
    n, c, h, w = a.shape
    p = xp.full((n, c, h + pt + pb, w + pl + pr), value, dtype=a.dtype)
    p[:, :, pt : pt + h, pl : pl + w] = a
    return p


def _window_max(xp, cols):
    """The max of each window of cols (N, C, kh, kw, oh, ow) and the position (i * kw + j) of its first
    maximum; a NaN is the maximum (and propagates), the last NaN where there are several: PyTorch's picks."""
    kh, kw = cols.shape[2:4]
    best = cols[:, :, 0, 0].copy()
    idx = xp.zeros(best.shape, dtype=xp.uint8 if kh * kw < 256 else xp.int32)
    for k in range(1, kh * kw):
        window = cols[:, :, k // kw, k % kw]  # each (oh, ow) plane contiguous: these passes are fast
        later = window > best  # strictly greater: a tie keeps the first maximum
        xp.maximum(best, window, out=best)
        # idx < k so far: max(idx, k * later) sets k where later (and is far cheaper than where())
        xp.maximum(idx, later * idx.dtype.type(k), out=idx)
    if best.dtype.kind in "fV" and xp.isnan(best).any():  # rare: the position of the last NaN instead
        nan = xp.isnan(best)
        for k in range(kh * kw):
            idx = xp.where(nan & xp.isnan(cols[:, :, k // kw, k % kw]), k, idx)
    return best, idx


class MaxPool(Function):
    """(N, C, H, W) -> (N, C, oh, ow): the max of each window; the gradient goes to its first maximum.

    The windows are copied once (as Unfold does), so that each of the kh*kw window offsets is a contiguous
    block, and a running maximum over them also records where each maximum is (one byte per output).
    Backward spreads the gradient with that one-hot position and folds it back into (N, C, H, W).
    """

    def forward(self, a, geom, pad_value):
        best, self.idx = _window_max(self.xp, _windows(self.xp, a, geom, pad_value))
        return best

    def backward(self, g):
        x, geom, _ = self.inputs
        n, c = g.shape[:2]
        kh, kw = geom.kernel
        k = self.xp.arange(kh * kw, dtype=self.idx.dtype).reshape(kh, kw, 1, 1)
        onehot = self.idx.reshape(n, c, 1, 1, *g.shape[2:]) == k  # (N, C, kh, kw, oh, ow)
        cols = g.reshape(n, c, 1, 1, *g.shape[2:]) * Tensor._wrap(onehot.astype(g.dtype.np), self.device)
        return Fold.apply(cols, geom, x.shape[2:]), None, None

    def release(self) -> None:
        super().release()
        self.idx = None


# ------------------------------------------------------------------------------------------ argument checks
def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _ints(op: str, name: str, v, n: int) -> tuple:
    """An int or a sequence of n ints (or of one int) -> a tuple of n ints."""
    if _is_int(v):
        return (int(v),) * n
    if isinstance(v, (tuple, list)) and all(_is_int(e) for e in v):
        if len(v) == n:
            return tuple(int(e) for e in v)
        if len(v) == 1:
            return (int(v[0]),) * n
    raise RuntimeError(f"{op}: expected {name} to be a single integer value or a list of {n} values, "
                       f"but got {name}={v!r}")


def _check_tensor(op: str, name: str, x) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected {name} to be a Tensor, got {type(x).__name__}")


def _check_input(op: str, x, nd: int) -> bool:
    """Check a (N, C, *spatial) or unbatched (C, *spatial) input; return True when it is unbatched."""
    _check_tensor(op, "input", x)
    if x.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{op}: expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input, got input of "
                           f"shape {x.shape}")
    if x.dtype is bool_:
        raise RuntimeError(f"{op}: expected a numeric input, got dtype {x.dtype}")
    if any(s == 0 for s in x.shape[-nd - 1 :]):
        raise RuntimeError(f"{op}: expected input with non-zero channel and spatial sizes, got shape "
                           f"{x.shape}")
    return x.ndim == nd + 1


def _to_2d(x: Tensor, nd: int, unbatched: bool) -> Tensor:
    """(C, *s) / (N, C, *s) with nd = 1 or 2 spatial dims -> (N, C, H, W)."""
    if unbatched:
        x = x.unsqueeze(0)
    return x.unsqueeze(2) if nd == 1 else x


def _from_2d(out: Tensor, nd: int, unbatched: bool) -> Tensor:
    if nd == 1:
        out = out.squeeze(2)
    return out.squeeze(0) if unbatched else out


def _lift(nd: int, v: tuple, fill) -> tuple:
    """Per-dim values of a 1-d op as 2-d values over a height of 1."""
    return (fill,) + v if nd == 1 else v


def _geometry(nd: int, kernel, dilation, pads, stride, out) -> Geometry:
    return Geometry(_lift(nd, kernel, 1), _lift(nd, dilation, 1), _lift(nd, pads, (0, 0)),
                    _lift(nd, stride, 1), _lift(nd, out, 1))


def _fmt(v: tuple) -> str:
    return " x ".join(str(e) for e in v)


# ------------------------------------------------------------------------------------------ convolution
def _conv(op: str, nd: int, x, weight, bias, stride, padding, dilation, groups) -> Tensor:
    unbatched = _check_input(op, x, nd)
    _check_tensor(op, "weight", weight)
    if weight.ndim != nd + 2:
        raise RuntimeError(f"{op}: expected weight of {nd + 2} dims (out_channels, in_channels / groups, "
                           f"{', '.join(['kH', 'kW'][-nd:])}), got weight of shape {weight.shape}")
    if not _is_int(groups) or groups <= 0:
        raise RuntimeError(f"{op}: groups must be a positive integer, got groups={groups!r}")
    groups = int(groups)
    stride = _ints(op, "stride", stride, nd)
    dilation = _ints(op, "dilation", dilation, nd)
    if any(s <= 0 for s in stride):
        raise RuntimeError(f"{op}: non-positive stride is not supported, got stride={stride}")
    if any(d <= 0 for d in dilation):
        raise RuntimeError(f"{op}: dilation must be positive, got dilation={dilation}")
    kernel = tuple(weight.shape[2:])
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0),) * nd
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise RuntimeError(f"{op}: padding='same' is not supported for strided convolutions, got "
                                   f"stride={stride}")
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            pads = tuple((t // 2, t - t // 2) for t in total)  # the odd element goes right, as in PyTorch
        else:
            raise RuntimeError(f"{op}: invalid padding string {padding!r}; expected 'valid' or 'same'")
    else:
        padding = _ints(op, "padding", padding, nd)
        if any(p < 0 for p in padding):
            raise RuntimeError(f"{op}: negative padding is not supported, got padding={padding}")
        pads = tuple((p, p) for p in padding)
    out_ch, cg = weight.shape[:2]
    c = x.shape[-nd - 1]
    if out_ch % groups:
        raise RuntimeError(f"{op}: groups={groups} must divide out_channels, but weight has shape "
                           f"{weight.shape} ({out_ch} output channels)")
    if c != cg * groups:
        raise RuntimeError(f"{op}: given groups={groups} and weight of shape {weight.shape}, expected input "
                           f"of shape {x.shape} to have {cg * groups} channels (weight.shape[1] * groups), "
                           f"got {c}")
    if bias is not None:
        _check_tensor(op, "bias", bias)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.device is not x.device:
            raise RuntimeError(f"{op}: expected input and {name} on the same device, got input on {x.device} "
                               f"and {name} on {t.device} (move one with .to(device))")
    if x.dtype is not weight.dtype:
        raise RuntimeError(f"{op}: input dtype {x.dtype} and weight dtype {weight.dtype} must be the same")
    if bias is not None:
        if bias.shape != (out_ch,):
            raise RuntimeError(f"{op}: expected bias of shape ({out_ch},) for weight of shape "
                               f"{weight.shape}, got bias of shape {bias.shape}")
        if bias.dtype is not x.dtype:
            raise RuntimeError(f"{op}: bias dtype {bias.dtype} must match input dtype {x.dtype}")
    spatial = x.shape[-nd:]
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, pads))
    effective = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    if any(p < e for p, e in zip(padded, effective)):
        raise RuntimeError(f"{op}: padded input size per channel ({_fmt(padded)}) is smaller than the "
                           f"dilated kernel size ({_fmt(effective)}); kernel size can't be greater than the "
                           "padded input")
    out = tuple((p - e) // s + 1 for p, e, s in zip(padded, effective, stride))

    x2 = _to_2d(x, nd, unbatched)
    w2 = weight.unsqueeze(2) if nd == 1 else weight
    geom = _geometry(nd, kernel, dilation, pads, stride, out)
    return _from_2d(Conv.apply(x2, w2, bias, geom, groups), nd, unbatched)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """1-d cross-correlation of (N, C_in, L) or (C_in, L) with weight (C_out, C_in / groups, k)."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-d cross-correlation of (N, C_in, H, W) or (C_in, H, W) with weight (C_out, C_in / groups, kH, kW)."""
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


# ------------------------------------------------------------------------------------------ pooling
def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size; in ceil mode the last window must start inside the input or the left
    padding."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (num + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_geom(op: str, x: Tensor, nd: int, kernel_size, stride, padding, dilation, ceil_mode) -> Geometry:
    kernel = _ints(op, "kernel_size", kernel_size, nd)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) else \
        _ints(op, "stride", stride, nd)
    padding = _ints(op, "padding", padding, nd)
    dilation = _ints(op, "dilation", dilation, nd)
    if any(k <= 0 for k in kernel):
        raise RuntimeError(f"{op}: kernel_size must be greater than zero, got kernel_size={kernel}")
    if any(s <= 0 for s in stride):
        raise RuntimeError(f"{op}: stride must be greater than zero, got stride={stride}")
    if any(d <= 0 for d in dilation):
        raise RuntimeError(f"{op}: dilation must be greater than zero, got dilation={dilation}")
    if any(p < 0 for p in padding):
        raise RuntimeError(f"{op}: padding must be non-negative, got padding={padding}")
    for k, p in zip(kernel, padding):
        if p > k // 2:  # PyTorch's check: (dilation does not widen the allowed padding)
            raise RuntimeError(f"{op}: pad should be at most half of kernel size, but got pad={p} and "
                               f"kernel_size={k}")
    spatial = x.shape[-nd:]
    out = tuple(_pool_out(*a, ceil_mode) for a in zip(spatial, kernel, stride, padding, dilation))
    if any(o < 1 for o in out):
        raise RuntimeError(f"{op}: given input of shape {x.shape}, the calculated output size "
                           f"({_fmt(out)}) is too small (kernel_size={kernel}, stride={stride}, "
                           f"padding={padding}, dilation={dilation})")
    # the bottom/right pad grows past the user's padding where a ceil_mode window runs over the end
    pads = tuple((p, max(p, (o - 1) * s + d * (k - 1) + 1 - n - p))
                 for n, k, s, p, d, o in zip(spatial, kernel, stride, padding, dilation, out))
    return _geometry(nd, kernel, dilation, pads, stride, out)


def _lowest(dtype):
    return float("-inf") if dtype.category == FLOAT else np.iinfo(dtype.np).min


def _max_pool(op, nd, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    unbatched = _check_input(op, x, nd)
    geom = _pool_geom(op, x, nd, kernel_size, stride, padding, dilation, ceil_mode)
    x2 = _to_2d(x, nd, unbatched)
    n, c, h, w = x2.shape
    kw, (oh, ow) = geom.kernel[1], geom.out
    lowest = _lowest(x.dtype)
    out = MaxPool.apply(x2, geom, lowest)
    if not return_indices:
        return _from_2d(out, nd, unbatched)
    # window position of the first maximum -> flat index into the input's (H * W) plane, as PyTorch returns
    xp = x.device.backend.xp
    idx = _window_max(xp, _windows(xp, x2.data, geom, lowest))[1].astype(np.int64)
    ki, kj = idx // kw, idx % kw
    (dh, dw), (sh, sw), ((pt, _), (pl, _)) = geom.dilation, geom.stride, geom.pads
    rows = xp.arange(oh).reshape(oh, 1) * sh - pt + ki * dh
    cols_ = xp.arange(ow) * sw - pl + kj * dw
    indices = Tensor._wrap((rows * w + cols_).astype(np.int64), x.device)
    return _from_2d(out, nd, unbatched), _from_2d(indices, nd, unbatched)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over sliding windows of (N, C, L) or (C, L); with return_indices, also the argmax positions."""
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over sliding windows of (N, C, H, W) or (C, H, W), with -inf padding.

    The gradient goes to one element per window (the first maximum); with return_indices, also the argmax
    positions as flat indices into H * W.
    """
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def _avg_divisor(size: int, k: int, s: int, p: int, out: int, include_pad: bool) -> np.ndarray:
    """Per output position along one dim: the window length PyTorch divides by."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)  # windows are clipped at the end of the right padding
    if include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


def _avg_pool(op, nd, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    unbatched = _check_input(op, x, nd)
    if divisor_override is not None and (not _is_int(divisor_override) or divisor_override == 0):
        raise RuntimeError(f"{op}: divisor_override must be a non-zero integer, got {divisor_override!r}")
    geom = _pool_geom(op, x, nd, kernel_size, stride, padding, 1, ceil_mode)
    x2 = _to_2d(x, nd, unbatched)
    n, c, h, w = x2.shape
    (kh, kw), (oh, ow) = geom.kernel, geom.out
    total = Unfold.apply(x2, geom, 0).reshape(n, c, kh * kw, oh, ow).sum(2)
    if divisor_override is not None:
        div = divisor_override
    else:
        (sh, sw), ((pt, _), (pl, _)) = geom.stride, geom.pads
        d = np.outer(_avg_divisor(h, kh, sh, pt, oh, count_include_pad),
                     _avg_divisor(w, kw, sw, pl, ow, count_include_pad))
        if (d == d.flat[0]).all():
            div = int(d.flat[0])
        else:
            d = d.astype(x.dtype.np if x.dtype.category == FLOAT else np.int64)
            div = Tensor._wrap(x.device.backend.from_numpy(d), x.device)
    out = total / div if x.dtype.category == FLOAT else total.div(div, rounding_mode="trunc").to(x.dtype)
    return _from_2d(out, nd, unbatched)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True) -> Tensor:
    """Mean over sliding windows of (N, C, L) or (C, L)."""
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None) -> Tensor:
    """Mean over sliding windows of (N, C, H, W) or (C, H, W).

    Zero padding is counted unless count_include_pad is False; divisor_override replaces the divisor.
    """
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def _adaptive_matrix(size: int, out: int, np_dtype) -> np.ndarray:
    """(out, size): row i averages input[floor(i*size/out) : ceil((i+1)*size/out)]."""
    m = np.zeros((out, size), dtype=np_dtype)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def _adaptive_avg_pool(op, nd, x, output_size) -> Tensor:
    unbatched = _check_input(op, x, nd)
    if x.dtype.category != FLOAT:
        raise RuntimeError(f"{op}: expected a floating-point input, got dtype {x.dtype}")
    if isinstance(output_size, (tuple, list)) and len(output_size) in (1, nd):
        sizes = tuple(output_size) * (nd // len(output_size))
    elif _is_int(output_size):
        sizes = (int(output_size),) * nd
    else:
        raise RuntimeError(f"{op}: output_size must be an int or a tuple of {nd} ints (None keeps that input "
                           f"size), got {output_size!r}")
    spatial = x.shape[-nd:]
    sizes = tuple(s if o is None else o for o, s in zip(sizes, spatial))
    if not all(_is_int(o) and o >= 0 for o in sizes):
        raise RuntimeError(f"{op}: output_size must hold non-negative ints or None, got {output_size!r}")
    x2 = _to_2d(x, nd, unbatched)
    n, c, h, w = x2.shape
    oh, ow = _lift(nd, tuple(int(o) for o in sizes), 1)
    wrap = x.device.backend.from_numpy
    # exactly separable: the mean over a rectangle is the mean over its columns of the means over its rows
    pw = Tensor._wrap(wrap(np.ascontiguousarray(_adaptive_matrix(w, ow, x.dtype.np).T)), x.device)
    y = (x2.reshape(n * c * h, w) @ pw).reshape(n * c, h, ow)
    if (oh, h) != (1, 1):
        ph = Tensor._wrap(wrap(_adaptive_matrix(h, oh, x.dtype.np)), x.device)
        y = ph @ y
    return _from_2d(y.reshape(n, c, oh, ow), nd, unbatched)


def adaptive_avg_pool1d(input, output_size) -> Tensor:
    """Mean over output_size windows of (N, C, L) or (C, L) that cover the input (PyTorch's window bounds)."""
    return _adaptive_avg_pool("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """Mean over output_size windows of (N, C, H, W) or (C, H, W): window i spans
    [floor(i * in / out), ceil((i + 1) * in / out)); None in output_size keeps that input size."""
    return _adaptive_avg_pool("adaptive_avg_pool2d", 2, input, output_size)


# ------------------------------------------------------------------------------------------ unfold / fold
def _block_args(op, kernel_size, dilation, padding, stride):
    kernel = _ints(op, "kernel_size", kernel_size, 2)
    dilation = _ints(op, "dilation", dilation, 2)
    padding = _ints(op, "padding", padding, 2)
    stride = _ints(op, "stride", stride, 2)
    for name, v, lo in (("kernel_size", kernel, 1), ("dilation", dilation, 1), ("padding", padding, 0),
                        ("stride", stride, 1)):
        if any(e < lo for e in v):
            what = "non-negative" if lo == 0 else "positive"
            raise RuntimeError(f"{op}: {name} must be {what}, got {name}={v}")
    return kernel, dilation, padding, stride


def _blocks(op, size, kernel, dilation, padding, stride) -> tuple:
    out = tuple((s + 2 * p - d * (k - 1) - 1) // st + 1
                for s, k, d, p, st in zip(size, kernel, dilation, padding, stride))
    if any(o < 1 for o in out):
        raise RuntimeError(f"{op}: given spatial size {tuple(size)}, kernel_size={kernel}, "
                           f"dilation={dilation}, padding={padding} and stride={stride}, the number of "
                           f"sliding blocks would be {_fmt(out)}; expected at least one in each dim")
    return out


def unfold(input, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """Sliding blocks of (N, C, H, W) or (C, H, W) as columns: (N, C * kH * kW, L), L the number of blocks."""
    op = "unfold"
    unbatched = _check_input(op, input, 2)
    kernel, dilation, padding, stride = _block_args(op, kernel_size, dilation, padding, stride)
    out = _blocks(op, input.shape[-2:], kernel, dilation, padding, stride)
    x = input.unsqueeze(0) if unbatched else input
    n, c = x.shape[:2]
    cols = Unfold.apply(x, Geometry(kernel, dilation, tuple((p, p) for p in padding), stride, out), 0)
    cols = cols.reshape(n, c * math.prod(kernel), math.prod(out))
    return cols.squeeze(0) if unbatched else cols


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """The adjoint of unfold: (N, C * kH * kW, L) or (C * kH * kW, L) columns summed into
    (N, C, *output_size) or (C, *output_size)."""
    op = "fold"
    _check_tensor(op, "input", input)
    if input.ndim not in (2, 3):
        raise RuntimeError(f"{op}: expected 2D (unbatched) or 3D (batched) input (N, C * kH * kW, L), got "
                           f"input of shape {input.shape}")
    size = _ints(op, "output_size", output_size, 2)
    kernel, dilation, padding, stride = _block_args(op, kernel_size, dilation, padding, stride)
    unbatched = input.ndim == 2
    x = input.unsqueeze(0) if unbatched else input
    n, ck, length = x.shape
    k = math.prod(kernel)
    if ck % k:
        raise RuntimeError(f"{op}: expected input's dimension {0 if unbatched else 1} ({ck}) to be divisible "
                           f"by the product of kernel_size {kernel} ({k})")
    out = _blocks(op, size, kernel, dilation, padding, stride)
    if length != math.prod(out):
        raise RuntimeError(f"{op}: given output_size={size}, kernel_size={kernel}, dilation={dilation}, "
                           f"padding={padding} and stride={stride}, expected input's last dimension to be "
                           f"the number of sliding blocks {out[0]} * {out[1]} = {math.prod(out)}, "
                           f"got {length}")
    cols = x.reshape(n, ck // k, kernel[0], kernel[1], out[0], out[1])
    y = Fold.apply(cols, Geometry(kernel, dilation, tuple((p, p) for p in padding), stride, out), size)
    return y.squeeze(0) if unbatched else y


__all__ = [
    "conv1d", "conv2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "unfold", "fold", "Unfold", "Fold",
]
