"""F.interpolate (and nn.Upsample): resizing the spatial dims of (N, C, *spatial) tensors, as PyTorch does; and
F.pixel_shuffle / pixel_unshuffle, which trade channels for resolution.

    F.interpolate(x, scale_factor=2)                                   # nearest
    F.interpolate(x, size=(32, 48), mode="bilinear", align_corners=False)

Every mode is separable: one spatial dim at a time, each output position reads one (nearest, nearest-exact) or
two (linear, bilinear, trilinear) input positions along that dim, found by PyTorch's source-index formulas.
A dim is resized by index_select (a gather, whose gradient sums back) and, for the linear modes, a weighted sum
of two gathers: the ops autograd already knows, on every device. 'area' is adaptive average pooling.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .common import Tensor

_MODES = {"nearest": None, "nearest-exact": None, "linear": 1, "bilinear": 2, "trilinear": 3, "area": None}


def _per_dim(name: str, value, k: int, kind) -> list | None:
    if value is None:
        return None
    values = list(value) if isinstance(value, (tuple, list)) else [value] * k
    if len(values) != k or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        what = "int" if kind is numbers.Integral else "number"
        raise ValueError(f"interpolate: {name} must be one {what} or {k} of them (one per spatial dim), got {value!r}")
    return values


def _source(mode: str, out_size: int, in_size: int, scale: float, align_corners: bool):
    """(i0, i1, weight of i1) per output position along one dim (i1 and the weight only for linear modes)."""
    dst = np.arange(out_size, dtype=np.float64)
    if mode in ("nearest", "nearest-exact"):
        src = np.floor((dst + 0.5) * scale) if mode == "nearest-exact" else np.floor(dst * scale)
        return np.minimum(src, in_size - 1).astype(np.int64), None, None
    if align_corners:
        src = dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src), in_size - 1).astype(np.int64)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, src - i0


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None, antialias: bool = False) -> Tensor:
    """input (N, C, *spatial) resized to `size`, or by `scale_factor`, with PyTorch's index conventions."""
    from ..creation import tensor
    from .conv import adaptive_avg_pool1d, adaptive_avg_pool2d

    if not isinstance(input, Tensor):
        raise TypeError(f"interpolate: expected a Tensor, got {type(input).__name__}")
    if mode not in _MODES:
        raise ValueError(f"interpolate: mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
    k = input.ndim - 2
    if k < 1:
        raise ValueError(f"interpolate: expected input of shape (N, C, *spatial), got shape {input.shape}")
    if _MODES[mode] is not None and _MODES[mode] != k:
        raise ValueError(f"interpolate: mode {mode!r} expects {_MODES[mode] + 2}-d input, got {input.ndim}-d")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    linear = _MODES[mode] is not None
    if align_corners is not None and not linear:
        raise ValueError(f"interpolate: align_corners is only for the linear modes, got it with mode {mode!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    in_sizes = list(input.shape[2:])
    sizes = _per_dim("size", size, k, numbers.Integral)
    scales = _per_dim("scale_factor", scale_factor, k, numbers.Real)
    if sizes is None:
        if not all(s > 0 for s in scales):
            raise ValueError(f"interpolate: scale_factor must be positive, got {scale_factor!r}")
        sizes = [int(math.floor(n * s)) for n, s in zip(in_sizes, scales)]
    if not all(s > 0 for s in sizes):
        raise ValueError(f"interpolate: the output size must be positive in every spatial dim, got {sizes}")
    if mode == "area":
        if k > 2:
            raise NotImplementedError("interpolate: mode 'area' supports 1 or 2 spatial dims")
        return (adaptive_avg_pool1d if k == 1 else adaptive_avg_pool2d)(input, sizes[0] if k == 1 else tuple(sizes))
    # the index scale: 1 / scale_factor when one was given (PyTorch's default), else in / out
    use_given = scales is not None and not recompute_scale_factor
    out = input
    for d, (n_in, n_out) in enumerate(zip(in_sizes, sizes)):
        if n_in == n_out and (not use_given or scales[d] == 1):
            continue
        scale = 1.0 / scales[d] if use_given else n_in / n_out
        i0, i1, w = _source(mode, n_out, n_in, scale, bool(align_corners))
        dim = d + 2
        first = out.index_select(dim, tensor(i0, device=input.device))
        if i1 is None:
            out = first
            continue
        shape = [1] * out.ndim
        shape[dim] = n_out
        w1 = tensor(w.reshape(shape), dtype=input.dtype, device=input.device)
        second = out.index_select(dim, tensor(i1, device=input.device))
        out = first + (second - first) * w1
    return out


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """(*, C r^2, H, W) -> (*, C, H r, W r): each group of r^2 channels becomes an r x r block (sub-pixel
    convolution's rearrangement)."""
    r = _factor("pixel_shuffle", upscale_factor)
    if not isinstance(input, Tensor) or input.ndim < 3 or input.shape[-3] % (r * r):
        raise ValueError(f"pixel_shuffle: expected (*, C * {r}^2, H, W) input, got shape "
                         f"{getattr(input, 'shape', type(input).__name__)}")
    *lead, c, h, w = input.shape
    x = input.reshape(-1, c // (r * r), r, r, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """(*, C, H r, W r) -> (*, C r^2, H, W): pixel_shuffle's inverse."""
    r = _factor("pixel_unshuffle", downscale_factor)
    if not isinstance(input, Tensor) or input.ndim < 3 or input.shape[-2] % r or input.shape[-1] % r:
        raise ValueError(f"pixel_unshuffle: expected (*, C, H * {r}, W * {r}) input, got shape "
                         f"{getattr(input, 'shape', type(input).__name__)}")
    *lead, c, h, w = input.shape
    x = input.reshape(-1, c, h // r, r, w // r, r).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(*lead, c * r * r, h // r, w // r)


def _factor(op: str, r) -> int:
    if not isinstance(r, numbers.Integral) or isinstance(r, bool) or r < 1:
        raise ValueError(f"{op}: the factor must be a positive int, got {r!r}")
    return int(r)
