"""Convolution and pooling (1-d and 2-d), all through one mechanism.

Unfold (im2col) turns (N, C, H, W) into its sliding windows (N, C, kh, kw, oh, ow): for each of the kh*kw
kernel offsets, one strided copy of the input part those windows see, and the padding written around it
(no padded copy of the input). Fold (col2im) adds windows back the same way. Each is the other's backward,
so gradients of any order come for free. On top of them:

    conv       = windows laid out (C * kh * kw, N * oh * ow), then ONE matmul with the weight per group; with
                 one group the bias rides in the same matmul (a row of ones under the windows)
    max_pool   = a running max over the kh*kw strided views of the input (no window copy), recording where
                 each window's first maximum is; the gradient goes there
    avg_pool   = unfold with zero padding, sum over the window, divide by PyTorch's divisor
    adaptive   = averaging matrices on each side: P_h @ x @ P_w^T (windows of varying size, exactly separable)

Forward and backward run on backend arrays; with create_graph=True the backward is written with Tensor ops
(Unfold, Fold, matmul) instead, so it is itself differentiable. 1-d ops run as 2-d ops over a height of 1.

On CUDA, max and average pooling (1-d and 2-d, forward and backward) run on kernels/pool.cu instead
(KernelMaxPool, KernelAvgPool), whose argmax indices are PyTorch's flat plane positions. NOTE: the
composition stays for what those kernels do not take: integer dtypes, planes of 2^31 elements or more, and
adaptive average pooling (its two small averaging matmuls already run on our GEMM kernels).

Arguments and errors follow torch.nn.functional.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from ..amp.autocast_mode import autocast_inputs
from ..autograd.function import Function
from ..autograd.grad_mode import GradMode
from ..dtypes import FLOAT, bool_
from .common import Tensor
from .index import Gather

# kernel, dilation, stride, out: (h, w) pairs; pads: ((top, bottom), (left, right)). The bottom/right pads may
# exceed the user's padding, so that ceil_mode's last window fits.
Geometry = namedtuple("Geometry", ["kernel", "dilation", "pads", "stride", "out"])

# NOTE: a conv whose windows have at most this many rows (C/groups * kh * kw, + 1 for the bias) multiplies
# each image's windows separately, writing straight into the (N, O, oh, ow) output: its matmul is so cheap
# (the first layer of a CNN: 9 or 27 rows) that the transposing copy of one big product's (O, N, oh, ow)
# result would cost more than the matmul itself (2.5x for a 1->32 3x3 conv on 64 28x28 images).
BATCHED_CONV_MAX_ROWS = 32
CONV_CHUNK_BYTES = 2 * 2**20  # windows per block of images (see _image_chunks)
_BLAS_FLOATS = (np.float32, np.float64)


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
        return _fold(self.xp, cols, geom, size, channels_outer)

    def backward(self, g):
        _, geom, _, *layout = self.inputs
        return (Unfold.apply(g, geom, 0, *layout), None, None, *[None] * len(layout))


class Conv(Function):
    """(N, C, H, W) conv weight (O, C / groups, kh, kw) [+ bias (O,)] -> (N, O, oh, ow).

    The windows are laid out (C * kh * kw, N * oh * ow): then each group is ONE large matmul in forward and
    in both backward products, and the weight gradient needs no sum over the batch. With one group and a
    bias, a row of ones under the windows and the bias as an extra weight column put the bias into the
    forward matmul and its gradient into the weight-gradient matmul (no pass over the output for either).
    The output is written straight into a contiguous (N, O, oh, ow) array: by one matmul per image when
    the windows have few rows (BATCHED_CONV_MAX_ROWS), else by one transposing copy of the product.
    """

    def forward(self, x, w, b, geom, groups):
        fused = getattr(self.device.backend, "conv2d_forward", None)  # CUDA: conv.cu's kernels (None: not this case)
        out = fused(x, w, b, geom, groups) if fused is not None and (b is None or b.dtype == x.dtype) else None
        self.fused = out is not None
        if self.fused:
            return out
        xp = self.xp
        n, c = x.shape[:2]
        o, k = w.shape[0], w[0].size
        (kh, kw), (oh, ow) = geom.kernel, geom.out
        self.ones_row = ones_row = b is not None and groups == 1
        rows, p = k + ones_row, oh * ow
        cols = xp.empty((groups, rows, n * p), dtype=x.dtype)
        windows = cols[0, :k] if ones_row else cols  # (C * kh * kw, N * oh * ow) per group
        windows = windows.reshape(c, kh, kw, n, oh, ow)  # a view: the windows of each image are columns
        if ones_row:
            cols[0, k] = 1
            wmat = xp.concatenate([w.reshape(o, k), b.reshape(o, 1)], axis=1).reshape(1, o, rows)
        else:
            wmat = w.reshape(groups, o // groups, k)
        self.cols = cols
        out = xp.empty((n, o, oh, ow), dtype=x.dtype)
        self.batched = batched = groups == 1 and rows <= BATCHED_CONV_MAX_ROWS and x.dtype in _BLAS_FLOATS
        backend = self.device.backend
        chunks = _image_chunks(n, rows * p * x.dtype.itemsize, _threads(backend))

        def run(c0, c1):
            for s, e in chunks[c0:c1]:
                _write_windows(x[s:e], geom, 0, windows[:, :, :, s:e].transpose(3, 0, 1, 2, 4, 5))
                chunk = cols[:, :, s * p : e * p]
                if batched:
                    images = chunk[0].reshape(rows, e - s, p).transpose(1, 0, 2)  # (images, rows, oh * ow)
                    xp.matmul(wmat[0], images, out=out[s:e].reshape(e - s, o, p))
                    continue
                y = backend.matmul(wmat, chunk).reshape(o, e - s, oh, ow).transpose(1, 0, 2, 3)
                if b is None or ones_row:
                    out[s:e] = y
                else:
                    xp.add(y, b.reshape(1, o, 1, 1), out=out[s:e])

        _over_chunks(backend, run, len(chunks))
        return out

    def backward(self, g):
        if GradMode.enabled:
            return self._backward_graph(g)
        x, w, b, geom, groups = self.inputs
        if self.fused:
            needs = (x.requires_grad, w.requires_grad, b is not None and b.requires_grad)
            grads = self.device.backend.conv2d_backward(g.data, x.data, w.data, geom, groups, needs)
            return (*(None if a is None else Tensor._wrap(a, self.device) for a in grads), None, None)
        xp, backend = self.xp, self.device.backend
        mm = backend.matmul
        n, c, h, wd = x.shape
        o, k = w.shape[0], math.prod(w.shape[1:])
        (kh, kw), (oh, ow) = geom.kernel, geom.out
        need_w, need_b = w.requires_grad, b is not None and b.requires_grad
        p, rows = oh * ow, self.cols.shape[1]
        g2 = None  # g as (groups, O/g, N * oh * ow), made when a product needs it
        if x.requires_grad or (need_w and not self.batched):
            g2 = xp.ascontiguousarray(g.data.transpose(1, 0, 2, 3)).reshape(groups, o // groups, n * p)
        gx = gw = gb = None
        if need_w:
            if self.batched:  # one product per image, summed: the windows have too few rows for one product
                images = self.cols[0].reshape(rows, n, p).transpose(1, 2, 0)  # (N, oh * ow, rows)
                gy = g.data.reshape(n, o, p)
                gwb = _summed_over_images(backend, lambda s, e: xp.matmul(gy[s:e], images[s:e]).sum(0), n)[None]
            else:  # (g, O/g, C/g * kh * kw [+ 1: the bias column]), each core the product over its images
                cols_t = self.cols.transpose(0, 2, 1)
                gwb = _summed_over_images(backend, lambda s, e: mm(g2[:, :, s * p : e * p], cols_t[:, s * p : e * p]),
                                          n)
            gw = xp.ascontiguousarray(gwb[..., :k]).reshape(w.shape)
            if need_b and self.ones_row:
                gb = gwb[0, :, k].copy()
        if need_b and gb is None:
            if g2 is None:
                g2 = xp.ascontiguousarray(g.data.transpose(1, 0, 2, 3)).reshape(groups, o // groups, n * p)
            gb = Tensor._wrap(g2, self.device).sum(-1).data.reshape(o)
        if x.requires_grad:
            gx = xp.empty((n, c, h, wd), dtype=g.dtype.np)
            w_t = w.data.reshape(groups, o // groups, k).transpose(0, 2, 1)
            chunks = _image_chunks(n, k * p * gx.itemsize, _threads(backend))

            def run(c0, c1):
                for s, e in chunks[c0:c1]:
                    gcols = mm(w_t, g2[:, :, s * p : e * p])  # (g, C/g * kh * kw, images * oh * ow)
                    _fold(xp, gcols.reshape(c, kh, kw, e - s, oh, ow), geom, (h, wd), True, gx[s:e], True)

            _over_chunks(backend, run, len(chunks))
        wrap = Tensor._wrap
        return (None if gx is None else wrap(gx, self.device), None if gw is None else wrap(gw, self.device),
                None if gb is None else wrap(gb, self.device), None, None)

    def _backward_graph(self, g):
        """The backward with Tensor ops (Unfold, Fold, matmul), for create_graph=True."""
        x, w, b, geom, groups = self.inputs
        n, c, h, wd = x.shape
        o, k = w.shape[0], math.prod(w.shape[1:])
        kh, kw = geom.kernel
        oh, ow = geom.out
        g2 = g.permute(1, 0, 2, 3).reshape(groups, o // groups, n * oh * ow)
        w2 = w.reshape(groups, o // groups, k)
        gx = gw = gb = None
        if w.requires_grad:
            cols = Unfold.apply(x, geom, 0, True).reshape(groups, k, n * oh * ow)
            gw = (g2 @ cols.mT).reshape(w.shape)
        if b is not None and b.requires_grad:
            gb = g2.sum(-1).reshape(o)
        if x.requires_grad:
            gx = Fold.apply((w2.mT @ g2).reshape(c, kh, kw, n, oh, ow), geom, (h, wd), True)
        return gx, gw, gb, None, None

    def release(self) -> None:
        super().release()
        self.cols = None


def _image_chunks(n: int, bytes_per_image: int, parts: int = 1):
    """(start, stop) ranges over n images, each about CONV_CHUNK_BYTES of windows (at least one image), and at
    least `parts` of them where there are that many images (one or more per core: _over_chunks).

    NOTE: the windows of a chunk are written and then read by its matmul (or, in backward, made by its
    matmul and then folded) while they are still in the CPU caches, instead of a round trip through memory
    for the whole batch: the 32->64 3x3 conv of a batch of 64 14x14 images does its forward about 15%
    faster, and its input gradient about 10% faster.
    """
    step = min(max(1, CONV_CHUNK_BYTES // max(1, bytes_per_image)), max(1, -(-n // parts)))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def _threads(backend) -> int:
    """The cores the backend splits work between (1 for a backend without a pool: CUDA)."""
    threads = getattr(backend, "threads", None)
    return threads() if threads is not None else 1


def _over_chunks(backend, run, chunks: int, grain: int = 1) -> None:
    """run(c0, c1) over [0, chunks) (chunks of images, or images), a run of at least `grain` per core where the
    backend has a pool (the CPU: NumPy's ufuncs and BLAS release the GIL), else at once.

    NOTE: a conv's products are 3-D (groups first), which the CPU backend's matmul runs on the calling
    thread: before, a conv ran its chunks one after another on one core (the 32->64 conv of the CNN recipe
    made 18 of its 41 ms a step that way), and pooling its images likewise."""
    parallel = getattr(backend, "parallel", None)
    if parallel is None or chunks < 2:
        run(0, chunks)
    else:
        parallel(run, chunks, grain=grain)


def _image_grain(image_elements: int) -> int:
    """Images per core at least, for elementwise work: about 64K elements (a hand-off costs tens of us)."""
    return max(1, (1 << 16) // max(1, image_elements))


def _summed_over_images(backend, product, n: int):
    """The sum of product(start, stop) over one range of the n images per core, added in range order (the same
    bits run after run on one machine)."""
    ranges = max(1, min(n, _threads(backend)))
    parts: dict = {}

    def run(c0, c1):
        parts[c0] = product(n * c0 // ranges, n * c1 // ranges)

    _over_chunks(backend, run, ranges)
    total = None
    for c in sorted(parts):
        total = parts[c] if total is None else total + parts[c]
    return total


def _clip(offset: int, stride: int, count: int, size: int):
    """Positions offset + y * stride (y < count) that fall inside [0, size): (slice of y, slice of positions),
    or (None, None) when none does."""
    first = max(0, -(offset // stride))  # the smallest y with offset + y * stride >= 0
    last = min(count - 1, (size - 1 - offset) // stride)
    if last < first:
        return None, None
    return slice(first, last + 1), slice(offset + first * stride, offset + last * stride + 1, stride)


def _write_windows(a, geom, pad_value, target) -> None:
    """target[n, c, i, j, y, x] = padded a[n, c, y*sh + i*dh, x*sw + j*dw], for a target indexed
    (N, C, kh, kw, oh, ow) (any strides): per kernel offset, one strided copy of the part of `a` inside the
    padding, and `pad_value` written into the border rows and columns that fall outside it."""
    (kh, kw), (dh, dw), ((pt, _), (pl, _)), (sh, sw), (oh, ow) = geom
    n, c, h, w = a.shape
    flat = _flat_rows(geom, w, target)
    a_flat = a.reshape(n, c, h * w) if flat else None
    for i in range(kh):
        ys, rows = _clip(i * dh - pt, sh, oh, h)
        for j in range(kw):
            dst = target[:, :, i, j]  # (N, C, oh, ow)
            if flat:  # one run over all rows, then the columns that wrapped into a neighbouring row
                dy, dx = i * dh - pt, j * dw - pl
                off, run = dy * w + dx, dst.reshape(n, c, oh * w)
                start, stop = max(0, -off), min(oh * w, h * w - off)
                if start < stop:
                    run[:, :, start:stop] = a_flat[:, :, start + off : stop + off]
                for border in (run[:, :, : max(0, start)], run[:, :, max(start, stop) :],
                               dst[..., : max(0, -dx)], dst[..., w - max(0, dx) :]):
                    if border.size:
                        border[...] = pad_value
                continue
            xs, cols = _clip(j * dw - pl, sw, ow, w)
            if ys is None or xs is None:
                dst[...] = pad_value
                continue
            dst[:, :, ys, xs] = a[:, :, rows, cols]
            for border in (dst[:, :, : ys.start], dst[:, :, ys.stop :], dst[:, :, ys, : xs.start],
                           dst[:, :, ys, xs.stop :]):
                if border.size:
                    border[...] = pad_value


def _flat_rows(geom, w: int, *arrays) -> bool:
    """Whether each kernel offset's windows can be handled as ONE run over whole rows: stride 1 and output
    rows as wide as the input's (a 'same' conv), with each array's (oh, ow) plane contiguous.

    NOTE: then the offset's windows are the input shifted by a constant flat offset dy * W + dx, except the
    |dx| columns at the row ends, which wrap into the neighbouring row and are fixed separately: one long
    run per (image, channel) instead of one short run per row (14 elements for a 14x14 image), which
    halves the time of im2col and col2im.
    """
    (sh, sw), ow = geom.stride, geom.out[1]
    if (sh, sw) != (1, 1) or ow != w:
        return False
    return all(a.strides[-1] == a.itemsize and a.strides[-2] == ow * a.itemsize for a in arrays)


def _windows(xp, a, geom, pad_value, channels_outer=False):
    """The (N, C, kh, kw, oh, ow) windows of a (N, C, H, W) (or (C, kh, kw, N, oh, ow) with channels_outer),
    padded with pad_value, in a fresh contiguous array."""
    (kh, kw), (oh, ow) = geom.kernel, geom.out
    n, c = a.shape[:2]
    if channels_outer:
        out = xp.empty((c, kh, kw, n, oh, ow), dtype=a.dtype)
        _write_windows(a, geom, pad_value, out.transpose(3, 0, 1, 2, 4, 5))
    else:
        out = xp.empty((n, c, kh, kw, oh, ow), dtype=a.dtype)
        _write_windows(a, geom, pad_value, out)
    return out


def _fold(xp, cols, geom, size, channels_outer=False, out=None, scratch=False):
    """Fold's forward on arrays: windows (N, C, kh, kw, oh, ow) (or (C, kh, kw, N, oh, ow) with
    channels_outer) added into a fresh contiguous (N, C, H, W) array, or written into `out`. scratch: cols
    may be overwritten (its padding columns zeroed), which allows runs over whole rows (see _flat_rows).

    Each window offset adds into the output directly, clipped to the part that falls inside the padding (no
    padded buffer, no cropped view). NOTE: the first offset whose windows reach every output element (the
    centre of a 3x3 'same' conv) is copied rather than added, and where windows do not overlap (a window
    spans at most the stride: 2x2 pooling) every offset is, so the output needs no zero fill and no
    read-modify-write for those offsets: a plain copy is much cheaper than a strided add.
    """
    (kh, kw), (dh, dw), ((pt, _), (pl, _)), (sh, sw), (oh, ow) = geom
    n, c = (cols.shape[3], cols.shape[0]) if channels_outer else cols.shape[:2]
    h, w = size
    overlap = (oh > 1 and sh < dh * (kh - 1) + 1) or (ow > 1 and sw < dw * (kw - 1) + 1)
    flat = scratch and _flat_rows(geom, w, cols)
    parts = []  # (window offset's values, destination index into the output, output elements it reaches)
    for i in range(kh):
        src_rows, dst_rows = _clip(i * dh - pt, sh, oh, h)
        for j in range(kw):
            src_cols, dst_cols = _clip(j * dw - pl, sw, ow, w)
            if src_rows is None or src_cols is None:
                continue
            window = cols[:, i, j] if channels_outer else cols[:, :, i, j]  # (C, N, oh, ow) or (N, C, ...)
            reach = len(range(h)[dst_rows]) * len(range(w)[dst_cols])
            if flat:
                dx, off = j * dw - pl, (i * dh - pt) * w + j * dw - pl
                window[..., : max(0, -dx)] = 0  # columns that would wrap into the neighbouring row
                window[..., w - max(0, dx) :] = 0
                start, stop = max(0, -off), min(oh * w, h * w - off)
                parts.append((window.reshape(window.shape[:2] + (-1,))[:, :, start:stop],
                              (slice(None), slice(None), slice(start + off, stop + off)), reach))
            else:
                parts.append((window[:, :, src_rows, src_cols], (slice(None), slice(None), dst_rows, dst_cols),
                              reach))
    first = next((p for p in parts if p[2] == h * w), None) if overlap else None
    covered = first is not None or (not overlap and sum(p[2] for p in parts) == h * w)
    if out is None:
        out = (xp.empty if covered else xp.zeros)((n, c, h, w), dtype=cols.dtype)
    elif not covered:
        out[...] = 0
    target = out.transpose(1, 0, 2, 3) if channels_outer else out  # indexed like cols: (C, N, ...) or not
    if flat:
        target = target.reshape(target.shape[:2] + (h * w,))  # a view: out's (H, W) planes are contiguous
    if first is not None:
        target[first[1]] = first[0]
    for part in parts:
        values, index, _ = part
        if not overlap:
            target[index] = values
        elif part is not first:
            target[index] += values
    return out


def _pad(xp, a, pads, value):
    """a (N, C, H, W) with pads ((top, bottom), (left, right)) of `value` around it (a itself when none)."""
    ((pt, pb), (pl, pr)) = pads
    if not (pt or pb or pl or pr):
        return a
    n, c, h, w = a.shape
    p = xp.full((n, c, h + pt + pb, w + pl + pr), value, dtype=a.dtype)
    p[:, :, pt : pt + h, pl : pl + w] = a
    return p


def _offset_view(p, geom, i: int, j: int):
    """The (N, C, oh, ow) strided view of the padded p (N, C, Hp, Wp) that the windows see at kernel offset
    (i, j): view[n, c, y, x] = p[n, c, y*sh + i*dh, x*sw + j*dw]."""
    (dh, dw), (sh, sw), (oh, ow) = geom.dilation, geom.stride, geom.out
    return p[:, :, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw]


def _window_max(xp, p, geom, need_index: bool = True, out=None):
    """The max of each window of the padded p (N, C, Hp, Wp), a running maximum over the kh*kw offset views,
    and (with need_index) the position i * kw + j of each window's first maximum, else None; written into out
    = (max, position) arrays when given. A NaN is the maximum (and propagates), the last NaN where there are
    several: PyTorch's picks."""
    kh, kw = geom.kernel
    views = [_offset_view(p, geom, i, j) for i in range(kh) for j in range(kw)]
    best = idx = later = step = None
    if out is not None:
        best, idx = out
    if len(views) == 1 and best is None:
        best = views[0].copy()
    elif len(views) == 1:
        best[...] = views[0]
    if need_index:
        if idx is None:
            idx = xp.zeros(views[0].shape, dtype=_window_index_dtype(xp, geom))
        else:
            idx[...] = 0
        later, step = xp.empty(idx.shape, dtype=bool), xp.empty_like(idx)
    for k in range(1, len(views)):
        prev = views[0] if k == 1 else best
        if need_index:
            xp.greater(views[k], prev, out=later)  # strictly greater: a tie keeps the first maximum
            # NOTE: idx < k so far, so max(idx, k * later) sets k where later: ~50x faster than a masked
            # copyto or where() over a mask that is true at random
            xp.multiply(later, idx.dtype.type(k), out=step)
            xp.maximum(idx, step, out=idx)
        best = xp.maximum(prev, views[k], out=best)
    if need_index and best.dtype.kind in "fV" and xp.isnan(best).any():  # rare: the position of the last NaN
        nan = xp.isnan(best)
        for k, view in enumerate(views):
            idx[...] = xp.where(nan & xp.isnan(view), k, idx)
    return best, idx


def _window_index_dtype(xp, geom):
    """The dtype of _window_max's positions: one byte for up to 256 taps."""
    return xp.uint8 if geom.kernel[0] * geom.kernel[1] <= 256 else xp.int32


def _max_unpool(xp, g, idx, geom, shape, backend=None):
    """MaxPool's gradient on arrays: g (N, C, oh, ow) sent to each window's first maximum (position idx) in
    a fresh (N, C, H, W) array: per window offset, one strided write of g where idx points there (windows
    that do not overlap), or one strided add (windows that do); the images split between the backend's cores
    (_over_chunks)."""
    n, c, h, w = shape
    (kh, kw), (dh, dw), ((pt, pb), (pl, pr)), (sh, sw), (oh, ow) = geom
    hp, wp = h + pt + pb, w + pl + pr
    overlap = (oh > 1 and sh < dh * (kh - 1) + 1) or (ow > 1 and sw < dw * (kw - 1) + 1)
    # NOTE: windows that tile the padded input exactly (2x2 pooling of an even size) write every element
    # once, so the result needs no zero fill
    tiles = (dh, dw) == (1, 1) and (sh, sw) == (kh, kw) and (oh * sh, ow * sw) == (hp, wp)
    dx = (xp.empty if tiles else xp.zeros)((n, c, hp, wp), dtype=g.dtype)

    def images(i, j):
        hit = xp.empty(g[i:j].shape, dtype=bool)
        for k in range(kh * kw):
            view = _offset_view(dx[i:j], geom, k // kw, k % kw)
            xp.equal(idx[i:j], k, out=hit)
            if overlap:
                view += g[i:j] * hit
            else:
                xp.multiply(g[i:j], hit, out=view)

    _over_chunks(backend, images, n, _image_grain(c * hp * wp))
    if (hp, wp) != (h, w):
        dx = xp.ascontiguousarray(dx[:, :, pt : pt + h, pl : pl + w])
    return dx


class MaxPool(Function):
    """(N, C, H, W) -> (N, C, oh, ow): the max of each window; the gradient goes to its first maximum.

    A running maximum over the kh*kw strided views of the (padded) input, which also records where each
    maximum is (one byte per output) when a gradient will be needed (need_index). Backward writes the
    gradient there, one strided pass per window offset.
    """

    def forward(self, a, geom, pad_value, need_index):
        xp = self.xp
        p = _pad(xp, a, geom.pads, pad_value)
        n, c = p.shape[:2]
        best = xp.empty((n, c) + tuple(geom.out), dtype=p.dtype)
        self.idx = xp.empty(best.shape, dtype=_window_index_dtype(xp, geom)) if need_index else None

        def images(i, j):
            _window_max(xp, p[i:j], geom, need_index, (best[i:j], None if self.idx is None else self.idx[i:j]))

        _over_chunks(self.device.backend, images, n, _image_grain(p[0].size))
        return best

    def backward(self, g):
        x, geom, _, _ = self.inputs
        if not GradMode.enabled:
            dx = _max_unpool(self.xp, g.data, self.idx, geom, x.shape, self.device.backend)
            return Tensor._wrap(dx, self.device), None, None, None
        # create_graph: a one-hot of each window's maximum times g, folded back: Tensor ops, differentiable
        n, c = g.shape[:2]
        kh, kw = geom.kernel
        k = self.xp.arange(kh * kw, dtype=self.idx.dtype).reshape(kh, kw, 1, 1)
        onehot = self.idx.reshape(n, c, 1, 1, *g.shape[2:]) == k  # (N, C, kh, kw, oh, ow)
        cols = g.reshape(n, c, 1, 1, *g.shape[2:]) * Tensor._wrap(onehot.astype(g.dtype.np), self.device)
        return Fold.apply(cols, geom, x.shape[2:]), None, None, None

    def release(self) -> None:
        super().release()
        self.idx = None


class KernelMaxPool(Function):
    """Max pooling on the backend's pooling kernels (CUDA: kernels/pool.cu). Their argmax indices are PyTorch's
    flat positions h * W + w in each (H, W) plane (not MaxPool's window offsets), so they serve return_indices
    as they are; the gradient goes there (MaxPoolScatter).

    NOTE: the kernel runs before apply and its (y, indices) come in as `result`: a case the backend does not
    take (None) can then still take MaxPool's composition, and return_indices needs no second pass.
    """

    def forward(self, a, geom, ceil_mode, result):
        y, self.indices = result
        return y

    def backward(self, g):
        x, geom, ceil_mode = self.inputs
        indices = Tensor._wrap(self.indices, self.device)
        return MaxPoolScatter.apply(g, indices, geom, ceil_mode, x.shape), None, None

    def release(self) -> None:
        super().release()
        self.indices = None


class MaxPoolScatter(Function):
    """KernelMaxPool's gradient: g (N, C, oh, ow) summed into a (N, C, H, W) at the flat plane positions
    `indices` (a kernel). Linear in g, its own gradient gathers from those positions, so higher orders work."""

    def forward(self, g, indices, geom, ceil_mode, shape):
        return self.device.backend.max_pool2d_backward(g, indices, shape, geom, ceil_mode)

    def backward(self, gg):
        _, indices, *_ = self.inputs
        n, c = indices.shape[:2]
        picked = Gather.apply(gg.reshape(n, c, -1), 2, indices.data.reshape(n, c, -1))
        return picked.reshape(indices.shape), None, None, None, None


def _kernel_avg_pool(x, geom, ceil_mode, include_pad, divisor_override):
    """Average pooling of x (N, C, H, W) on the backend's pooling kernels (CUDA: kernels/pool.cu), or None
    where the backend has none for this case (the CPU; integer dtypes)."""
    fused = getattr(x.device.backend, "avg_pool2d_forward", None)
    y = None if fused is None else fused(x.data, geom, ceil_mode, include_pad, divisor_override)
    if y is None:
        return None
    return KernelAvgPool.apply(x, geom, ceil_mode, include_pad, divisor_override, result=y)


class KernelAvgPool(Function):
    """Average pooling on the backend's kernels; `result` is the kernel's output (see _kernel_avg_pool).

    Forward and backward are adjoint linear maps (each window's sum over its divisor, and each input's share
    of the windows covering it), so each one's gradient is the other: higher orders come for free.
    """

    def forward(self, a, geom, ceil_mode, include_pad, divisor_override, result):
        return result

    def backward(self, g):
        x, *args = self.inputs
        return AvgPoolSpread.apply(g, x.shape, *args), None, None, None, None


class AvgPoolSpread(Function):
    """KernelAvgPool's gradient: each output's g / divisor spread over its window (a kernel)."""

    def forward(self, g, shape, geom, ceil_mode, include_pad, divisor_override):
        return self.device.backend.avg_pool2d_backward(g, shape, geom, ceil_mode, include_pad, divisor_override)

    def backward(self, gg):
        _, _, *args = self.inputs
        return _kernel_avg_pool(gg, *args), None, None, None, None, None


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
    x, weight, bias = autocast_inputs(op, x, weight, bias)
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
    fused = getattr(x.device.backend, "max_pool2d_forward", None)  # CUDA: pool.cu (None: not this case)
    result = fused(x2.data, geom, ceil_mode) if fused is not None else None
    if result is not None:
        out = KernelMaxPool.apply(x2, geom, ceil_mode, result=result)
        if not return_indices:
            return _from_2d(out, nd, unbatched)
        # a copy: the user may change the indices in place, which must not move the gradient
        return _from_2d(out, nd, unbatched), _from_2d(Tensor._wrap(result[1].copy(), x.device), nd, unbatched)
    n, c, h, w = x2.shape
    kw, (oh, ow) = geom.kernel[1], geom.out
    lowest = _lowest(x.dtype)
    out = MaxPool.apply(x2, geom, lowest, x.requires_grad and GradMode.enabled)
    if not return_indices:
        return _from_2d(out, nd, unbatched)
    # window position of the first maximum -> flat index into the input's (H * W) plane, as PyTorch returns
    xp = x.device.backend.xp
    idx = _window_max(xp, _pad(xp, x2.data, geom.pads, lowest), geom)[1].astype(np.int64)
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
    out = _kernel_avg_pool(x2, geom, ceil_mode, count_include_pad, divisor_override)
    if out is not None:
        return _from_2d(out, nd, unbatched)
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
