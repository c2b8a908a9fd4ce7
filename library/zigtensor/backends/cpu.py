"""The CPU backend: NumPy arrays, NumPy's PCG64 generator, BLAS through numpy.matmul."""

from __future__ import annotations

import ml_dtypes
import numpy as np

_HALF = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


class CPUBackend:
    name = "cpu"
    xp = np
    array_type = np.ndarray

    def __init__(self, device):
        self.device = device
        from ..random import initial_seed

        self.seed(initial_seed())

    # --- conversion -------------------------------------------------------------------------------------
    def asarray(self, data, np_dtype=None):
        return np.asarray(data, dtype=np_dtype)

    def to_numpy(self, arr) -> np.ndarray:
        return arr

    def from_numpy(self, arr: np.ndarray):
        return arr

    # --- the few ops xp does not cover the same way on every device --------------------------------------
    def matmul(self, a, b):
        # NOTE: NumPy has no BLAS for 16-bit floats; compute in float32 and round once, as PyTorch's CPU does.
        if a.dtype in _HALF:
            return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(a.dtype)
        return np.matmul(a, b)

    def index_add(self, target, index, values) -> None:
        """target[index] += values, accumulating over repeated indices."""
        first = index[0] if len(index) == 1 else None
        if isinstance(first, np.ndarray) and first.dtype.kind in "iu" and first.size and target.ndim:
            # NOTE: one integer array over dim 0 (embedding and row-gather backwards): sum the values of
            # repeated rows with a sort and reduceat, several times faster than np.add.at.
            idx = first.reshape(-1)
            idx = np.where(idx < 0, idx + target.shape[0], idx)
            rows = values.reshape((idx.size,) + target.shape[1:])
            order = np.argsort(idx, kind="stable")
            sorted_idx = idx[order]
            starts = np.flatnonzero(np.concatenate(([True], sorted_idx[1:] != sorted_idx[:-1])))
            target[sorted_idx[starts]] += np.add.reduceat(rows[order], starts, axis=0)
            return
        np.add.at(target, index, values)

    def rms_norm_forward(self, x, weight, eps: float):
        """(x * rstd * weight, rstd) over the last axis, rstd = 1 / sqrt(mean(x^2) + eps), in one pass of NumPy
        calls (ops.nn.RMSNorm uses it instead of six recorded ops; 16-bit inputs are computed in float32)."""
        xf = x.astype(np.float32) if x.dtype in _HALF else x
        rstd = np.einsum("...i,...i->...", xf, xf)[..., None]
        rstd *= 1.0 / xf.shape[-1]
        rstd += eps
        np.sqrt(rstd, out=rstd)
        np.divide(1.0, rstd, out=rstd)
        out = xf * rstd
        if weight is not None:
            out *= weight
        return out.astype(x.dtype, copy=False), rstd

    def rms_norm_backward(self, g, x, weight, rstd):
        """(dx, dweight) of rms_norm_forward: dx = rstd (gw - x rstd^2 mean(gw x)), gw = g * weight;
        dweight = the sum over rows of g x rstd (None without a weight)."""
        gf, xf = (a.astype(np.float32) if a.dtype in _HALF else a for a in (g, x))
        xhat = xf * rstd
        gw = gf if weight is None else gf * weight
        dot = np.einsum("...i,...i->...", gw, xhat)[..., None]
        dot *= 1.0 / xf.shape[-1]
        dx = (gw - xhat * dot) * rstd
        dw = None if weight is None else (gf * xhat).reshape(-1, xf.shape[-1]).sum(0).astype(weight.dtype)
        return dx.astype(x.dtype, copy=False), dw

    def erf(self, x):
        # NOTE: NumPy has no erf; SciPy's is exact to float64 rounding, which finite-difference checks need.
        from scipy.special import erf

        return erf(x.astype(np.float32) if x.dtype in _HALF else x).astype(x.dtype, copy=False)

    # --- random numbers -----------------------------------------------------------------------------------
    def seed(self, seed: int) -> None:
        self.generator = np.random.Generator(np.random.PCG64(seed))

    def get_rng_state(self):
        return self.generator.bit_generator.state

    def set_rng_state(self, state) -> None:
        self.generator.bit_generator.state = state

    def rand(self, shape, np_dtype):
        if np_dtype in (np.float32, np.float64):
            return self.generator.random(shape, dtype=np_dtype)
        return self.generator.random(shape, dtype=np.float32).astype(np_dtype)

    def randn(self, shape, np_dtype):
        if np_dtype in (np.float32, np.float64):
            return self.generator.standard_normal(shape, dtype=np_dtype)
        return self.generator.standard_normal(shape, dtype=np.float32).astype(np_dtype)

    def permutation(self, n: int):
        return self.generator.permutation(n)

    def randint(self, low, high, shape, np_dtype):
        return self.generator.integers(low, high, size=shape, dtype=np_dtype)

    def __repr__(self) -> str:
        return "CPUBackend()"


def _keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory for reuse instead of giving it back to the OS at once.

    NOTE: a training step allocates and frees the same few-MiB activation and gradient arrays hundreds of
    times. By default glibc serves blocks above a (dynamic) threshold with mmap and trims the heap top,
    so most of them come back as fresh pages, and each first touch page-faults: that doubled the time of
    a small GPT's backward. Blocks up to 32 MiB (glibc's cap) now come from the heap, which is never
    trimmed, as a caching allocator would. ZT_MALLOC_TUNE=0 leaves malloc as it was.
    """
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("ZT_MALLOC_TUNE", "1") == "0":
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl): nothing to tune
        pass


def create(device) -> CPUBackend:
    _keep_freed_memory()
    return CPUBackend(device)
