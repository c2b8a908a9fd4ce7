"""Round-to-nearest (RTN) quantization, and the min-max grid that GPTQ and AWQ quantize onto as well.

>>> qw = rtn_quantize(weight, bits=4, group_size=128)      # weight (out, in) float -> QuantizedWeight
>>> qw.dequantize()                                          # the weight the model will run with

Each group of group_size input columns of each output row gets its own grid (AutoGPTQ's Quantizer; when group_size
does not divide the inputs, the last group is shorter):
    xmin = min(w, 0), xmax = max(w, 0)                        the range always holds 0
    asymmetric: scale = (xmax - xmin) / maxq, zero = round(-xmin / scale)
    symmetric:  scale = 2 max(|xmin|, xmax) / maxq, zero = (maxq + 1) / 2
    code = clamp(round(w / scale) + zero, 0, maxq)            w ~ (code - zero) * scale
"""

from __future__ import annotations

import numpy as np

from .layouts import QuantizedWeight, default_g_idx

SUPPORTED_BITS = (4, 8)
_F16_TINY = float(np.finfo(np.float16).smallest_subnormal)


def check_settings(bits, group_size, in_features: int, name: str = "", allowed_bits: tuple = SUPPORTED_BITS,
                   whole_groups: bool = False) -> int:
    """Check bits and group_size for a layer with in_features inputs; returns the group width.

    A group size that does not divide in_features leaves a shorter last group (AutoGPTQ's ceil(in / group_size)
    groups); whole_groups (AutoAWQ's layout) makes that an error.
    """
    where = f"layer {name!r}" if name else "quantization"
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) not in allowed_bits:
        raise ValueError(f"{where}: bits={bits!r} is not supported; expected one of {list(allowed_bits)}")
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) \
            or (group_size != -1 and group_size < 1):
        raise ValueError(f"{where}: group_size={group_size!r} is not valid; expected -1 (one group over all inputs) "
                         "or a positive integer")
    if group_size == -1:
        return int(in_features)
    if whole_groups and in_features % group_size:
        raise ValueError(f"{where}: group_size={group_size} does not divide in_features={in_features}; the AWQ "
                         "layout needs whole groups: expected a group size that divides every quantized layer's "
                         "input width (or the GPTQ layout, which allows a shorter last group)")
    return int(group_size)


def minmax_grid(w: np.ndarray, bits: int, sym: bool = False, min_zero: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero) of the grid over w's last axis (one grid per leading index), scale float32, zero int32.

    Scales are rounded to float16 here, as the checkpoint stores them, so that what a quantizer optimizes for is
    exactly what runs. min_zero=1 keeps every zero point >= 1, which AutoGPTQ's original format needs (it stores
    zero - 1 in `bits` bits): a group that would get zero 0 (no negative values) is given zero 1 and a scale wide
    enough that its largest value still fits.
    """
    maxq = (1 << bits) - 1
    w = np.asarray(w, dtype=np.float32)
    xmin = np.minimum(w.min(axis=-1), 0.0)
    xmax = np.maximum(w.max(axis=-1), 0.0)
    if sym:
        xmax = np.maximum(-xmin, xmax)
        xmin = -xmax
    empty = (xmin == 0) & (xmax == 0)  # an all-zero group: any grid holds it; AutoGPTQ picks [-1, 1]
    xmin = np.where(empty, -1.0, xmin)
    xmax = np.where(empty, 1.0, xmax)
    scale = _f16_scale((xmax - xmin) / maxq)
    if sym:
        zero = np.full(scale.shape, (maxq + 1) // 2, dtype=np.int32)
    else:
        zero = np.clip(np.round(-xmin / scale), 0, maxq).astype(np.int32)
        low = zero < min_zero
        if low.any():
            scale = np.where(low, _f16_scale(xmax / (maxq - min_zero)), scale)
            zero = np.where(low, min_zero, zero).astype(np.int32)
    return scale.astype(np.float32), zero


def _f16_scale(scale: np.ndarray) -> np.ndarray:
    # NOTE: float16 rounding can round a tiny scale to 0 (then w / scale is inf); the smallest subnormal keeps it
    # positive and exactly storable
    s16 = np.asarray(scale, dtype=np.float32).astype(np.float16).astype(np.float32)
    return np.maximum(s16, _F16_TINY)


def quantize_codes(w: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int) -> np.ndarray:
    """Integer codes clamp(round(w / scale) + zero, 0, maxq) (scale and zero broadcast against w)."""
    maxq = (1 << bits) - 1
    return np.clip(np.round(w / scale) + zero, 0, maxq)


def grouped(w: np.ndarray, width: int) -> np.ndarray:
    """w (out, in) as (out, n_groups, width), a shorter last group padded with zeros (which change no group's
    min-max grid: the range always holds 0)."""
    out, inp = w.shape
    n_groups = -(-inp // width)
    if n_groups * width != inp:
        w = np.concatenate([w, np.zeros((out, n_groups * width - inp), dtype=w.dtype)], axis=1)
    return w.reshape(out, n_groups, width)


def fake_quantize(w: np.ndarray, bits: int, group_size: int, sym: bool = False, min_zero: int = 0) -> np.ndarray:
    """w (out, in) rounded onto its group grids and back to float32: what RTN would run with."""
    out_f, in_f = w.shape
    g = grouped(np.asarray(w, dtype=np.float32), check_settings(bits, group_size, in_f))
    scale, zero = minmax_grid(g, bits, sym, min_zero)
    codes = quantize_codes(g, scale[..., None], zero[..., None], bits)
    return ((codes - zero[..., None]) * scale[..., None]).reshape(out_f, -1)[:, :in_f].astype(np.float32)


def rtn_quantize(weight: np.ndarray, bits: int = 4, group_size: int = 128, sym: bool = False, min_zero: int = 0,
                 name: str = "") -> QuantizedWeight:
    """Quantize weight (out, in) by rounding each value to the nearest point of its group's min-max grid."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"layer {name!r}: expected a 2-D (out_features, in_features) weight, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"layer {name!r}: the weight holds non-finite values; cannot quantize it")
    width = check_settings(bits, group_size, w.shape[1], name)
    g = grouped(w, width)
    scale, zero = minmax_grid(g, bits, sym, min_zero)  # (out, n_groups)
    codes = quantize_codes(g, scale[..., None], zero[..., None], bits).reshape(w.shape[0], -1)[:, :w.shape[1]]
    return QuantizedWeight(codes=codes.astype(np.uint8), scales=np.ascontiguousarray(scale.T),
                           zeros=np.ascontiguousarray(zero.T), g_idx=default_g_idx(w.shape[1], group_size),
                           bits=int(bits), group_size=int(group_size), name=name)
