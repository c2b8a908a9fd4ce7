"""Embedding forward (a gather of weight rows) and backward (a scatter-add into the weight's gradient), on
kernels/embedding.cu.

    out = embedding_forward(weight, ids)                                  # ids.shape + (D,)
    grad_weight = embedding_backward(grad, ids, num_embeddings, padding_idx=None, deterministic=True)

The deterministic backward (the default) sorts (id, position) keys with our bitonic sort and sums each id's
gradient rows in position order, so the result is the same bits on every run; deterministic=False adds with
float atomics (faster, the order of additions not fixed).
"""

from __future__ import annotations

import math

import numpy as np

from ._launch import array_module, blocks, check_float, compute_ctype, ctype, kernel, sm_count, vec_width

THREADS = 256
SORT_TILE = 1024  # kernels/embedding.cu: bitonic tiles of 1024 keys, 512 threads per tile
_ID_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))


def _row_block(dim: int, vec: int) -> tuple[int, int]:
    """(TX, TY): TX threads along a row's vectors (a power of two up to 256), TY rows per block."""
    tx = 1
    while tx < min(dim // vec, THREADS):
        tx *= 2
    return tx, THREADS // tx


def _check_ids(op: str, ids):
    if np.dtype(ids.dtype) not in _ID_DTYPES:
        raise TypeError(f"{op}: ids must be int64 or int32, got {ids.dtype}")


def _defines(dtype, ids, vec: int) -> dict:
    return {"T": ctype(dtype), "CT": compute_ctype(dtype), "TI": ctype(ids.dtype), "VEC": vec}


def embedding_forward(weight, ids):
    """weight[ids]: rows of the (V, D) weight picked by integer ids, shape ids.shape + (D,)."""
    op = "embedding_forward"
    xp = array_module(weight)
    check_float(op, "weight", weight)
    _check_ids(op, ids)
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-d (num_embeddings, embedding_dim), got shape {tuple(weight.shape)}")
    weight, ids = xp.ascontiguousarray(weight), xp.ascontiguousarray(ids)
    v, dim = weight.shape
    out = xp.empty(tuple(ids.shape) + (dim,), dtype=weight.dtype)
    n = ids.size
    if n and dim:
        vec = vec_width(weight.dtype, weight, out, cols=dim)
        tx, ty = _row_block(dim, vec)
        kernel("embedding", "embedding_forward", _defines(weight.dtype, ids, vec))(
            blocks(n, ty), (tx, ty), (weight, ids.reshape(-1), out.reshape(n, dim), n, dim, v))
    return out


def sorted_keys(ids, num_embeddings: int, defines: dict | None = None):
    """(keys, P): the ids' (id << 32 | position) keys sorted ascending in an int64 array of P entries (a power of
    two >= max(n, 1024); padding after the n real keys); ids outside [0, num_embeddings) have id -1."""
    xp = array_module(ids)
    n = ids.size
    if n >= 2**32:
        raise ValueError(f"embedding: {n} ids exceed the 2**32 positions of the sort keys")
    padded = max(SORT_TILE, 1 << max(0, (n - 1).bit_length()))
    keys = xp.empty(padded, dtype=np.int64)
    defines = defines or {"TI": ctype(ids.dtype)}  # NOTE: the caller's define set reuses its compiled module
    kernel("embedding", "embedding_sort_keys", defines)(
        blocks(padded, THREADS, cap=sm_count(xp) * 8), THREADS, (ids.reshape(-1), keys, n, padded, num_embeddings))
    kernel("embedding", "bitonic_sort_tiles", defines)(padded // SORT_TILE, SORT_TILE // 2, (keys,))
    step = kernel("embedding", "bitonic_step", defines)
    merge = kernel("embedding", "bitonic_merge_tiles", defines)
    k = 2 * SORT_TILE
    while k <= padded:
        j = k // 2
        while j >= SORT_TILE:
            step(blocks(padded // 2, THREADS, cap=sm_count(xp) * 8), THREADS, (keys, padded, j, k))
            j //= 2
        merge(padded // SORT_TILE, SORT_TILE // 2, (keys, k))
        k *= 2
    return keys, padded


def embedding_backward(grad, ids, num_embeddings: int, padding_idx: int | None = None, deterministic: bool = True):
    """The (num_embeddings, D) gradient of the weight: row v sums grad[i, :] over the i with ids[i] == v
    (grad: ids.shape + (D,)); the padding_idx row stays zero."""
    op = "embedding_backward"
    xp = array_module(grad)
    check_float(op, "grad", grad)
    _check_ids(op, ids)
    if grad.ndim != ids.ndim + 1 or tuple(grad.shape[:-1]) != tuple(ids.shape):
        raise ValueError(f"{op}: grad of shape {tuple(grad.shape)} does not match ids {tuple(ids.shape)} (expected "
                         f"ids.shape + (embedding_dim,))")
    if not isinstance(num_embeddings, (int, np.integer)) or num_embeddings < 0:
        raise ValueError(f"{op}: num_embeddings must be a non-negative int, got {num_embeddings!r}")
    if padding_idx is not None and not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"{op}: padding_idx {padding_idx} must be within num_embeddings ({num_embeddings})")
    pad = -1 if padding_idx is None else int(padding_idx) % num_embeddings
    grad, ids = xp.ascontiguousarray(grad), xp.ascontiguousarray(ids)
    dim = grad.shape[-1]
    n = ids.size
    grad2 = grad.reshape(n, dim)
    vec = vec_width(grad.dtype, grad, cols=dim)
    defines = _defines(grad.dtype, ids, vec)
    tx, ty = _row_block(dim, vec)
    if deterministic:
        grad_weight = xp.zeros((num_embeddings, dim), dtype=grad.dtype)
        if n and dim and num_embeddings:
            keys, _ = sorted_keys(ids, num_embeddings, defines)
            kernel("embedding", "embedding_backward_sorted", defines)(
                blocks(n, ty), (tx, ty), (keys, grad2, grad_weight, n, dim, num_embeddings, pad))
        return grad_weight
    acc_dtype = np.float64 if grad.dtype == np.float64 else np.float32
    acc = xp.zeros((num_embeddings, dim), dtype=acc_dtype)
    if n and dim and num_embeddings:
        kernel("embedding", "embedding_backward_atomic", defines)(
            blocks(n, ty), (tx, ty), (grad2, ids.reshape(-1), acc, n, dim, num_embeddings, pad))
    if acc.dtype == grad.dtype:
        return acc
    grad_weight = xp.empty((num_embeddings, dim), dtype=grad.dtype)
    count = math.prod(acc.shape)
    if count:
        kernel("embedding", "embedding_cast", defines)(
            blocks(count, THREADS, cap=sm_count(xp) * 8), THREADS, (acc, grad_weight, count))
    return grad_weight
