"""What every numba kernel of zigtensor shares: its compile options, loads of 16-bit floats held as their bits,
and an exp that vectorizes. Kernels: quant/cpu_kernels.py (packed weights), engine/paged_attention_cpu.py (decode
attention), llm/array_kernels.py (the array path's RMSNorm and gated SiLU).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

# float16 bits -> float32, every one of the 65536 patterns (numba has no float16 on the CPU)
HALF_TO_FLOAT = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
# numba options of every CPU kernel. NOTE: error_model "numpy" (division by zero gives inf or nan, as NumPy's) drops
# the zero test Python's semantics put before every division, a branch that kept LLVM from vectorizing any loop
# with a division in it (measured: 1 / (1 + e) over a float32 array 1.0 -> 0.13 ns an element)
JIT = dict(nogil=True, fastmath=True, boundscheck=False, cache=True, error_model="numpy")


def load(v, lut):
    """A stored value as float32 (numba-only): a uint16 is the bits of a 16-bit float, looked up in lut
    (HALF_TO_FLOAT, or another 65536-entry table); floats are themselves."""
    raise NotImplementedError


@overload(load)
def _load_impl(v, lut):
    if isinstance(v, types.Integer) and v.bitwidth == 16:
        return lambda v, lut: lut[v]
    return lambda v, lut: np.float32(v)


# exp's range reduction: x = n ln2 + r, ln2 in two parts so that n * LN2_HI is exact (Cody and Waite)
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)


@njit(inline="always", **JIT)
def exp_reduce(v):
    """exp's first half for v <= 88 (smaller than -87 taken as -87): (r, bits) with exp(v) = exp(r) 2^n, r in
    [-ln2 / 2, ln2 / 2] and bits the float32 bit pattern of 2^n (as int32: read it back through a float32 view).
    exp_ says why in two halves; a kernel that indexes its own arrays calls the halves itself (see cpu_fused)."""
    v = min(max(v, np.float32(-87.0)), np.float32(88.0))
    n = np.floor(v * _LOG2E + np.float32(0.5))
    return v - n * _LN2_HI - n * _LN2_LO, (np.int32(n) + np.int32(127)) << np.int32(23)


@njit(inline="always", **JIT)
def expm1_poly(r):
    """exp(r) - 1 for exp_reduce's r, by the Taylor polynomial of degree 7 without its constant term: accurate
    to a few ulp relative even for tiny r, where exp(r) - 1 would cancel."""
    p = np.float32(1 / 5040) * r + np.float32(1 / 720)
    p = p * r + np.float32(1 / 120)
    p = p * r + np.float32(1 / 24)
    p = p * r + np.float32(1 / 6)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    return p * r


@njit(inline="always", **JIT)
def exp_poly(r):
    """exp(r) for exp_reduce's r (the first term left out of the polynomial is under 6e-9)."""
    return expm1_poly(r) + np.float32(1.0)


@njit(inline="always", **JIT)
def tanh_parts(r, scaled):
    """tanh(x) from exp_reduce's (r, 2^n as a float) of 2x: e / (e + 2), e = expm1(2x) = 2^n (expm1(r) + 1) - 1
    (no cancellation near 0, where 1 - 2 / (exp(2x) + 1) loses the relative accuracy); +-1 for large |x|."""
    e = scaled * expm1_poly(r) + (scaled - np.float32(1.0))
    return e / (e + np.float32(2.0))


@njit(**JIT)
def exp_(x, bits):
    """x = exp(x) in place for x <= 88 (below -87, 2^-126 times the polynomial: exp's value there is under
    float32's normal range and a softmax weight of 0 either way); bits: int32 scratch of x's length.

    Why not np.exp: numba calls libm's scalar expf for it (5 ns an element here, no SVML), while these two
    loops vectorize: 2^n is built as float bits in `bits` and read back through a float32 view, the one bit
    cast the vectorizer takes. Relative error under 3.1e-7 over [-87, 88] (float64 oracle, in the tests)."""
    scaled = bits.view(np.float32)
    for j in range(x.shape[0]):
        x[j], bits[j] = exp_reduce(x[j])
    for j in range(x.shape[0]):
        x[j] = exp_poly(x[j]) * scaled[j]
