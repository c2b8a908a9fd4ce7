"""Row kernels of the array path (llm/array_forward.py) compiled by numba: RMSNorm and the gated SiLU, each one
pass over a row instead of the five to seven NumPy calls of their formulas.

>>> rms_norm(x, weight, eps, out)        # x, out: (rows, C); out = x / sqrt(mean(x^2) + eps) * weight
>>> silu_mul(h, hidden, out, scratch)    # h: (rows, 2 * hidden); out = silu(h[:, :hidden]) * h[:, hidden:]

Why: a SmolLM2 decode step makes 61 norms and 30 activations of 8 rows, where each NumPy call costs a few
microseconds whatever its size: measured on the 2-core VM, a norm 29 -> 3 us and an activation 74 -> 29 us, about
3 ms of a 46 ms batch-8 step. On this thread (no parallel region): the rows are few in decode, and in a prefill
NumPy's ufuncs ran on one thread as well.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..backends.numba_kernels import JIT, exp_


@njit(**JIT)
def rms_norm(x, weight, eps, out):
    """out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight for each row r of x (2-D, float32)."""
    n = x.shape[1]
    for r in range(x.shape[0]):
        s = np.float32(0.0)
        for j in range(n):
            s += x[r, j] * x[r, j]
        inv = np.float32(1.0) / np.sqrt(s / np.float32(n) + eps)
        for j in range(n):
            out[r, j] = x[r, j] * inv * weight[j]


@njit(**JIT)
def silu_mul(h, hidden, out, scratch):
    """out[r] = silu(gate) * up = gate / (1 + exp(-gate)) * up, gate = h[r, :hidden] and up = h[r, hidden:];
    scratch: int32 (2 * hidden,) (the exp's workspace). exp(-gate) is capped near 1.6e38 for gate < -88, where
    gate / (1 + it) is silu's limit, -0 or a tiny negative: no overflow."""
    e = scratch[:hidden].view(np.float32)
    bits = scratch[hidden:]
    for r in range(h.shape[0]):
        for j in range(hidden):
            e[j] = -h[r, j]
        exp_(e, bits)
        for j in range(hidden):
            out[r, j] = h[r, j] / (np.float32(1.0) + e[j]) * h[r, hidden + j]
