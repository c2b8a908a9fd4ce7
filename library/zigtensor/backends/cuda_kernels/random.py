"""Counter-based random numbers on kernels/random.cu (Philox4x32-10): uniform, normal, dropout.

    x = uniform((4, 5), np.float32, seed=0, offset=0)           # low=0.0, high=1.0
    z = normal((1024,), np.float16, seed=0, offset=1)            # mean=0.0, std=1.0
    y, mask = dropout(x, 0.1, seed=0, offset=2)
    dx = dropout_backward(dy, mask, 0.1)

Every value depends only on (seed, offset, element index): the same call gives the same numbers whatever the
grid, and a caller (the CUDA backend's generator) gets a fresh stream per call by advancing `offset` by one.
seed and offset are integers in [0, 2**64). `philox4x32_10` exposes the raw generator for known-answer tests.
"""

from __future__ import annotations

import math

import numpy as np

from ._launch import array_module, blocks, check_float, ctype, data_ptr, kernel, sm_count

THREADS = 256
_U64 = 2**64


def _u64_as_i64(op: str, name: str, v) -> int:
    """A 64-bit pattern as the long long the kernels take."""
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 0 <= int(v) < _U64:
        raise ValueError(f"{op}: {name} must be an integer in [0, 2**64), got {v!r}")
    v = int(v)
    return v - _U64 if v >= 2**63 else v


def _grid(xp, groups: int) -> int:
    return blocks(groups, THREADS, cap=sm_count(xp) * (2048 // THREADS) * 4)


def _module(xp):
    if xp is None:
        import cupy

        return cupy
    return xp


def _sample(op: str, name: str, shape, dtype, a: float, b: float, seed, offset, xp):
    xp = _module(xp)
    seed, offset = _u64_as_i64(op, "seed", seed), _u64_as_i64(op, "offset", offset)
    dtype = np.dtype(dtype)
    out = xp.empty(shape, dtype=dtype)
    check_float(op, "dtype", out)
    n = out.size
    if n:
        per_group = 2 if dtype == np.float64 else 4
        k = kernel("random", name, {"T": ctype(dtype)})
        k(_grid(xp, -(-n // per_group)), THREADS, (out.reshape(-1), n, float(a), float(b), seed, offset))
    return out


def uniform(shape, dtype, seed: int, offset: int, low: float = 0.0, high: float = 1.0, xp=None):
    """Samples of U[low, high) of `shape` and float `dtype` (xp: the array module, cupy by default)."""
    if not (math.isfinite(low) and math.isfinite(high)) or not low <= high:
        raise ValueError(f"uniform: expected finite low <= high, got low={low!r}, high={high!r}")
    return _sample("uniform", "random_uniform", shape, dtype, low, high, seed, offset, xp)


def normal(shape, dtype, seed: int, offset: int, mean: float = 0.0, std: float = 1.0, xp=None):
    """Samples of N(mean, std^2) of `shape` and float `dtype` (Box-Muller on Philox uniforms)."""
    if not (math.isfinite(mean) and math.isfinite(std)) or std < 0:
        raise ValueError(f"normal: expected a finite mean and std >= 0, got mean={mean!r}, std={std!r}")
    return _sample("normal", "random_normal", shape, dtype, mean, std, seed, offset, xp)


def _scale(op: str, p) -> float:
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: probability has to be between 0 and 1, but got {p!r}")
    return 0.0 if p == 1.0 else 1.0 / (1.0 - p)


def _aligned(*arrays) -> int:
    return int(all(data_ptr(a) % 16 == 0 for a in arrays[:-1]) and data_ptr(arrays[-1]) % 4 == 0)


def dropout(x, p: float, seed: int, offset: int):
    """(y, mask): mask[e] = (u_e >= p) for Philox uniforms u, y = x * mask / (1 - p) (zeros for p = 1)."""
    xp = array_module(x)
    check_float("dropout", "x", x)
    scale = _scale("dropout", p)
    seed, offset = _u64_as_i64("dropout", "seed", seed), _u64_as_i64("dropout", "offset", offset)
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)
    mask = xp.empty(x.shape, dtype=np.bool_)
    n = x.size
    if n:
        k = kernel("random", "dropout_forward", {"T": ctype(x.dtype)})
        k(_grid(xp, -(-n // 4)), THREADS, (x.reshape(-1), y.reshape(-1), mask.reshape(-1), n, float(p), scale, seed,
                                           offset, _aligned(x, y, mask)))
    return y, mask


def dropout_backward(dy, mask, p: float):
    """dx = dy * mask / (1 - p), with the forward's mask."""
    xp = array_module(dy)
    check_float("dropout_backward", "dy", dy)
    if tuple(mask.shape) != tuple(dy.shape) or mask.dtype != np.bool_:
        raise ValueError(f"dropout_backward: mask must be a bool array of dy's shape {tuple(dy.shape)}, got "
                         f"{tuple(mask.shape)} {mask.dtype}")
    scale = _scale("dropout_backward", p)
    dy, mask = xp.ascontiguousarray(dy), xp.ascontiguousarray(mask)
    dx = xp.empty_like(dy)
    n = dy.size
    if n:
        k = kernel("random", "dropout_backward", {"T": ctype(dy.dtype)})
        k(_grid(xp, -(-n // 4)), THREADS, (dy.reshape(-1), mask.reshape(-1), dx.reshape(-1), n, scale,
                                           _aligned(dy, dx, mask)))
    return dx


def philox4x32_10(counters, keys):
    """The raw generator: counters (n, 4) and keys (n, 2) uint32 arrays -> (n, 4) uint32 outputs."""
    xp = array_module(counters)
    if counters.dtype != np.uint32 or keys.dtype != np.uint32 or counters.ndim != 2 or counters.shape[1] != 4 \
            or tuple(keys.shape) != (counters.shape[0], 2):
        raise ValueError(f"philox4x32_10: expected uint32 counters (n, 4) and keys (n, 2), got "
                         f"{counters.dtype} {tuple(counters.shape)} and {keys.dtype} {tuple(keys.shape)}")
    counters, keys = xp.ascontiguousarray(counters), xp.ascontiguousarray(keys)
    out = xp.empty_like(counters)
    n = counters.shape[0]
    if n:
        kernel("random", "philox4x32_10", {})(_grid(xp, n), THREADS, (counters, keys, out, n))
    return out
