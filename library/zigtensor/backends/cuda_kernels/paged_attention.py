"""Launcher of kernels/paged_attention.cu: the serving engine's attention over the paged KV cache, read through
block tables, for a step's mixed batch of decode tokens and prefill chunks in one launch.

    out = paged_attention_forward(q, k_cache, v_cache, block_tables, token_seqs, token_positions, scale,
                                  sliding_window=None)

q (num_tokens, num_heads, D) float (any strides with a unit-stride head dim are read in place); k_cache and
v_cache (num_blocks, block_size, kv_heads, D) of one float dtype, C-contiguous; block_tables (num_seqs,
max_blocks) int32; token_seqs and token_positions (num_tokens,) int32: the block-table row and the position of
each query. Query head h reads kv head h // (num_heads // kv_heads); the query at position p sees keys 0 .. p
(with sliding_window W: p - W + 1 .. p) of its sequence. out is float32 (num_tokens, num_heads, D), the math in
float32 whatever the storage. D up to 256.

The table contents are not read here (that would wait for the device): block ids must lie in the cache and
each position inside its sequence's table row. engine/paged_attention.py's AttentionMetadata.build checks them
on the host once per step.
"""

from __future__ import annotations

import math

import numpy as np

from . import strided as S
from ._launch import array_module, check_float, ctype, data_ptr, kernel

FAMILY = "paged_attention"
THREADS = 128  # kernels/paged_attention.cu: 4 warps per (token, head)
MAX_HEAD_DIM = 256
MAX_GRID_Y = 65535  # the grid's y dimension holds the query heads
_INT32 = np.dtype(np.int32)


def slice_alignment(head_dim: int, itemsize: int) -> int:
    """Bytes the cache must be aligned to: a lane reads its ceil(D / 32) elements of a row as one vector when
    D is 32 times a power of two (kVec in the kernel), else element by element."""
    per_lane = -(-head_dim // 32)
    if head_dim == 32 * per_lane and per_lane & (per_lane - 1) == 0:
        return min(16, per_lane * itemsize)
    return itemsize


def _check_index(op: str, name: str, x, ndim: int, shape: tuple | None = None) -> None:
    if np.dtype(x.dtype) != _INT32:
        raise TypeError(f"{op}: {name} must be int32, got {x.dtype}")
    if x.ndim != ndim or (shape is not None and tuple(x.shape) != shape):
        want = f"have shape {shape}" if shape is not None else f"be {ndim}-d"
        raise ValueError(f"{op}: {name} must {want}, got shape {tuple(x.shape)}")


def paged_attention_forward(q, k_cache, v_cache, block_tables, token_seqs, token_positions, scale: float,
                            sliding_window: int | None = None):
    """softmax(scale q k^T) v for each query over its sequence's cached keys; see the module docstring."""
    op = "paged_attention"
    xp = array_module(q)
    for name, x in (("k_cache", k_cache), ("v_cache", v_cache), ("block_tables", block_tables),
                    ("token_seqs", token_seqs), ("token_positions", token_positions)):
        if array_module(x) is not xp:
            raise TypeError(f"{op}: q and {name} must be arrays of one kind")
    check_float(op, "q", q)
    check_float(op, "k_cache", k_cache)
    if k_cache.dtype != v_cache.dtype:
        raise TypeError(f"{op}: k_cache and v_cache must have one dtype, got {k_cache.dtype} and {v_cache.dtype}")
    if q.ndim != 3:
        raise ValueError(f"{op}: q must be (num_tokens, num_heads, head_dim), got shape {tuple(q.shape)}")
    if k_cache.ndim != 4 or tuple(v_cache.shape) != tuple(k_cache.shape):
        raise ValueError(f"{op}: k_cache and v_cache must both be (num_blocks, block_size, kv_heads, head_dim), got "
                         f"{tuple(k_cache.shape)} and {tuple(v_cache.shape)}")
    num_tokens, num_heads, head_dim = (int(s) for s in q.shape)
    _, block_size, kv_heads, cache_dim = (int(s) for s in k_cache.shape)
    if cache_dim != head_dim:
        raise ValueError(f"{op}: q head_dim {head_dim} != cache head_dim {cache_dim}")
    if not 1 <= head_dim <= MAX_HEAD_DIM:
        raise ValueError(f"{op}: head_dim {head_dim} is not supported (1 .. {MAX_HEAD_DIM})")
    if kv_heads < 1 or num_heads % kv_heads:
        raise ValueError(f"{op}: {num_heads} query heads are not a multiple of {kv_heads} kv heads")
    if num_heads > MAX_GRID_Y:
        raise ValueError(f"{op}: {num_heads} query heads exceed the grid's {MAX_GRID_Y}")
    if block_size < 1:
        raise ValueError(f"{op}: block_size must be >= 1, got {block_size}")
    for name, x in (("k_cache", k_cache), ("v_cache", v_cache)):
        if not x.flags.c_contiguous:
            raise ValueError(f"{op}: {name} must be C-contiguous (the kernel computes row offsets from the shape), "
                             f"got strides {tuple(x.strides)}")
        align = slice_alignment(head_dim, x.dtype.itemsize)
        if data_ptr(x) % align:
            raise ValueError(f"{op}: {name} must start {align}-byte aligned (head_dim {head_dim}, "
                             f"{x.dtype}), got address {data_ptr(x):#x}")
    _check_index(op, "block_tables", block_tables, 2)
    _check_index(op, "token_seqs", token_seqs, 1, (num_tokens,))
    _check_index(op, "token_positions", token_positions, 1, (num_tokens,))
    if not math.isfinite(float(scale)):
        raise ValueError(f"{op}: scale must be a finite number, got {scale}")
    if sliding_window is not None and (isinstance(sliding_window, bool) or int(sliding_window) != sliding_window
                                       or sliding_window < 1):
        raise ValueError(f"{op}: sliding_window must be None or an int >= 1, got {sliding_window!r}")

    out = xp.empty((num_tokens, num_heads, head_dim), dtype=np.float32)
    if num_tokens == 0:
        return out
    if S.element_strides(q)[-1] != 1:
        q = xp.ascontiguousarray(q)
    q_st, q_sh, _ = S.element_strides(q)
    block_tables = xp.ascontiguousarray(block_tables)
    params = {"q_st": q_st, "q_sh": q_sh, "num_heads": num_heads, "kv_heads": kv_heads,
              "block_size": block_size, "max_blocks": int(block_tables.shape[1]),
              "sliding_window": int(sliding_window or 0), "scale": float(scale)}
    defines = {"PA_CACHE_T": ctype(k_cache.dtype), "PA_Q_T": ctype(q.dtype), "HEAD_DIM": head_dim}
    kernel(FAMILY, "paged_attention_fwd", defines)(
        (num_tokens, num_heads), THREADS,
        (q, k_cache, v_cache, block_tables, xp.ascontiguousarray(token_seqs), xp.ascontiguousarray(token_positions),
         out, params))
    return out
