"""GPTQ (Frantar et al. 2022, as AutoGPTQ runs it): quantize a linear layer's weight one input column at a time,
spreading each column's rounding error onto the columns not yet quantized so that the layer's OUTPUT on
calibration inputs changes as little as possible.

>>> h = Hessian(in_features)
>>> h.add(x)                      # calibration inputs of the layer, (..., in_features); as many calls as batches
>>> qw = gptq_quantize(weight, h.matrix, bits=4, group_size=128, act_order=True)

The objective is ||X W^T - X Q^T||^2, whose Hessian in each row of W is H = 2 X^T X (the same for every row).
With the upper Cholesky factor U of H^-1 (H^-1 = U^T U), quantizing column i to q costs (w_i - q)^2 / U[i, i]^2,
and the optimal update of the remaining columns is -(w_i - q) / U[i, i] * U[i, i:]. Updates are applied lazily:
within a block of block_size columns at once, to the columns after the block with one matrix product.
act_order quantizes the columns by decreasing diag(H) (the inputs with the most energy first, while the most
columns remain to absorb their error); g_idx then records each column's group, which follows that order.
"""

from __future__ import annotations

import numpy as np

from .layouts import QuantizedWeight
from .rtn import check_settings, minmax_grid, quantize_codes


class Hessian:
    """Running H = 2 X^T X / n over calibration inputs X (n rows of in_features), in float64."""

    def __init__(self, in_features: int):
        self.in_features = int(in_features)
        self.matrix = np.zeros((self.in_features, self.in_features), dtype=np.float64)
        self.rows = 0

    def add(self, x) -> None:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Hessian.add: inputs have {x.shape[-1]} features, expected {self.in_features}")
        x = x.reshape(-1, self.in_features)
        n = x.shape[0]
        if n == 0:
            return
        total = self.rows + n
        self.matrix *= self.rows / total
        # NOTE: x.T @ x on the same buffer is one BLAS syrk in NumPy (half a GEMM), float32 then widened
        self.matrix += (x.T @ x).astype(np.float64) * (2.0 / total)
        self.rows = total


def _upper_cholesky_of_inverse(h: np.ndarray, percdamp: float, name: str) -> np.ndarray:
    """U upper-triangular with (H + damp I)^-1 = U^T U, damp = percdamp * mean(diag H); the damping grows tenfold
    (up to four times) when H is not positive definite enough for float64 Cholesky."""
    mean_diag = float(np.mean(np.diag(h)))
    for attempt in range(5):
        damp = percdamp * 10 ** attempt * mean_diag
        try:
            lower = np.linalg.cholesky(h + damp * np.eye(h.shape[0]))
            lower_inv = np.linalg.inv(lower)
            return np.linalg.cholesky(lower_inv.T @ lower_inv).T
        except np.linalg.LinAlgError:
            continue
    raise ValueError(f"layer {name!r}: the calibration Hessian is not positive definite even with damping "
                     f"{percdamp * 1e4:g} x mean(diag H); give more (or more varied) calibration samples")


def gptq_quantize(weight: np.ndarray, hessian: np.ndarray, bits: int = 4, group_size: int = 128, sym: bool = False,
                  act_order: bool = False, percdamp: float = 0.01, block_size: int = 128, min_zero: int = 0,
                  name: str = "") -> QuantizedWeight:
    """Quantize weight (out, in) with GPTQ against the calibration Hessian (in, in) (see the module docstring).

    percdamp: damping added to H's diagonal, as a fraction of its mean (AutoGPTQ's damp_percent). min_zero: as in
    rtn.minmax_grid (1 for AutoGPTQ's original checkpoint format).
    """
    w = np.array(weight, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"layer {name!r}: expected a 2-D (out_features, in_features) weight, got shape {w.shape}")
    out_f, in_f = w.shape
    width = check_settings(bits, group_size, in_f, name)
    h = np.array(hessian, dtype=np.float64)
    if h.shape != (in_f, in_f):
        raise ValueError(f"layer {name!r}: the Hessian has shape {h.shape}, expected ({in_f}, {in_f})")
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(h))):
        raise ValueError(f"layer {name!r}: the weight or its Hessian holds non-finite values")
    if not 0 <= percdamp < 1:
        raise ValueError(f"layer {name!r}: percdamp must be in [0, 1), got {percdamp!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"layer {name!r}: block_size must be a positive int, got {block_size!r}")

    dead = np.diag(h) == 0  # inputs that were always zero: nothing to preserve, quantize them as 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(in_f)
    h = h[perm][:, perm]
    hinv = _upper_cholesky_of_inverse(h, percdamp, name).astype(np.float32)
    # NOTE: columns of W as rows of wt (in, out), so that the per-column updates touch contiguous memory; float32
    # as AutoGPTQ (the Cholesky factor above is computed in float64)
    wt = np.ascontiguousarray(w[:, perm].T, dtype=np.float32)

    codes = np.empty((in_f, out_f), dtype=np.uint8)
    scales, zeros = [], []
    scale = zero = None
    for i1 in range(0, in_f, block_size):
        i2 = min(i1 + block_size, in_f)
        w1 = wt[i1:i2].copy()
        err1 = np.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if col % width == 0:  # a new group: its grid from the columns' current (error-updated) values
                # NOTE: columns of the group past this block have not had this block's updates yet, as in AutoGPTQ
                group = np.concatenate([w1[i:i + width], wt[i2:col + width]], axis=0)
                scale, zero = minmax_grid(group.T, bits, sym, min_zero)
                scales.append(scale)
                zeros.append(zero)
            q = quantize_codes(w1[i], scale, zero, bits)
            codes[col] = q
            e = (w1[i] - (q - zero) * scale) / hinv1[i, i]
            w1[i:] -= np.outer(hinv1[i, i:], e)
            err1[i] = e
        wt[i2:] -= hinv[i1:i2, i2:].T @ err1

    position_group = (np.arange(in_f) // width).astype(np.int32)  # the group of the k-th quantized column
    g_idx = np.empty(in_f, dtype=np.int32)
    g_idx[perm] = position_group
    ordered = np.empty((out_f, in_f), dtype=np.uint8)
    ordered[:, perm] = codes.T
    return QuantizedWeight(codes=ordered, scales=np.stack(scales), zeros=np.stack(zeros), g_idx=g_idx, bits=int(bits),
                           group_size=int(group_size), name=name)
