"""Fused softmax cross-entropy over class indices, on kernels/cross_entropy.cu.

    loss_rows, lse = cross_entropy_forward(logits, targets, ignore_index=-100, label_smoothing=0.0)
    dlogits = cross_entropy_backward(logits, targets, lse, grad, ignore_index=-100, label_smoothing=0.0)

logits are (..., C) with the classes last (the op layer moves PyTorch's class dim 1 there), targets the
leading shape (int64, int32 or uint8). loss_rows and lse come out float32 (float64 for float64 logits), one
per row; a row whose target is ignore_index has loss 0 and a zero gradient. The reduction ('mean', 'sum') is
the caller's: it passes the per-row gradient `grad` (a number for every row, e.g. 1 / count, or an array of
the leading shape). Class weights are not fused (the op layer composes them).
"""

from __future__ import annotations

import math

import numpy as np

from ._launch import WARP_ROWS, array_module, blocks, check_float, compute_ctype, ctype, kernel, vec_width

WARP_MAX_VECTORS = 32 * 8  # rows up to this many vectors take a warp each; longer rows a block
_TARGET_DTYPES = (np.dtype(np.int64), np.dtype(np.int32), np.dtype(np.uint8))


def _geometry(classes: int, vec: int) -> tuple[str, int, int]:
    """(variant, threads per block, rows per block)."""
    vectors = -(-classes // vec)
    if vectors <= WARP_MAX_VECTORS:
        return "warp", 32 * WARP_ROWS, WARP_ROWS
    return "block", 512 if vectors >= 4096 else 256, 1


def _check(op: str, logits, targets, ignore_index, label_smoothing):
    check_float(op, "logits", logits)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"{op}: logits must have a non-empty class dim last, got shape {tuple(logits.shape)}")
    if np.dtype(targets.dtype) not in _TARGET_DTYPES:
        raise TypeError(f"{op}: targets must be class indices of dtype int64, int32 or uint8, got {targets.dtype}")
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"{op}: targets of shape {tuple(targets.shape)} do not match logits {tuple(logits.shape)} "
                         f"(expected {tuple(logits.shape[:-1])}: one class index per row)")
    if not isinstance(ignore_index, (int, np.integer)) or isinstance(ignore_index, bool):
        raise TypeError(f"{op}: ignore_index must be an int, got {ignore_index!r}")
    if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing!r}")


def _defines(logits, targets, vec: int) -> dict:
    return {"T": ctype(logits.dtype), "CT": compute_ctype(logits.dtype), "TI": ctype(targets.dtype), "VEC": vec}


def cross_entropy_forward(logits, targets, ignore_index: int = -100, label_smoothing: float = 0.0):
    """(loss_rows, lse): per row lse = logsumexp(x) and loss = lse - (1 - eps) x_t - eps/C sum_c x_c
    (0 where the target is ignore_index), eps = label_smoothing."""
    op = "cross_entropy_forward"
    xp = array_module(logits)
    _check(op, logits, targets, ignore_index, label_smoothing)
    logits, targets = xp.ascontiguousarray(logits), xp.ascontiguousarray(targets)
    classes = logits.shape[-1]
    rows = math.prod(logits.shape[:-1])
    stat = np.float64 if logits.dtype == np.float64 else np.float32
    loss = xp.empty(logits.shape[:-1], dtype=stat)
    lse = xp.empty(logits.shape[:-1], dtype=stat)
    if rows:
        vec = vec_width(logits.dtype, logits, cols=classes)
        variant, threads, per_block = _geometry(classes, vec)
        k = kernel("cross_entropy", f"cross_entropy_forward_{variant}", _defines(logits, targets, vec))
        k(blocks(rows, per_block), threads, (logits, targets, loss, lse, rows, classes, int(ignore_index),
                                              float(label_smoothing)))
    return loss, lse


def cross_entropy_backward(logits, targets, lse, grad, ignore_index: int = -100, label_smoothing: float = 0.0):
    """dlogits = grad * (softmax(x) - (1 - eps) onehot(t) - eps / C) per row (0 where the target is
    ignore_index); grad is a number for every row or an array of the leading shape."""
    op = "cross_entropy_backward"
    xp = array_module(logits)
    _check(op, logits, targets, ignore_index, label_smoothing)
    lead = tuple(logits.shape[:-1])
    stat = np.dtype(np.float64 if logits.dtype == np.float64 else np.float32)
    if tuple(lse.shape) != lead or lse.dtype != stat:
        raise ValueError(f"{op}: lse must be the forward's {lead} {stat} array, got {tuple(lse.shape)} {lse.dtype}")
    if isinstance(grad, (int, float, np.integer, np.floating)) and not isinstance(grad, bool):
        grad_rows, grad_stride = xp.full((1,), grad, dtype=stat), 0
    elif hasattr(grad, "shape") and tuple(grad.shape) in (lead, ()):
        grad_rows = xp.ascontiguousarray(grad.astype(stat, copy=False)).reshape(-1)
        grad_stride = 1 if tuple(grad.shape) == lead and grad_rows.size != 1 else 0
    else:
        raise ValueError(f"{op}: grad must be a number or an array of shape {lead} (one per row), got "
                         f"{getattr(grad, 'shape', grad)!r}")
    logits, targets, lse = xp.ascontiguousarray(logits), xp.ascontiguousarray(targets), xp.ascontiguousarray(lse)
    classes = logits.shape[-1]
    rows = math.prod(lead)
    dlogits = xp.empty_like(logits)
    if rows:
        vec = vec_width(logits.dtype, logits, dlogits, cols=classes)
        variant, threads, per_block = _geometry(classes, vec)
        k = kernel("cross_entropy", f"cross_entropy_backward_{variant}", _defines(logits, targets, vec))
        k(blocks(rows, per_block), threads, (logits, targets, lse, grad_rows, grad_stride, dlogits, rows, classes,
                                              int(ignore_index), float(label_smoothing)))
    return dlogits
