"""Launchers of kernels/quant.cu: W4A16 products on packed 4-bit weights, and QuantLinear's CUDA forward.

    y = w4a16_matmul(x, codes, scales, zeros, group_len)     # x (M, K) -> (M, N), W dequantized in registers
    y = quant_linear_forward(layer, x)                        # a QuantLinear on a CuPy array (..., in_features)

Kernels (see `plan`): w4a16_gemv (SIMT) for at most GEMV_MAX_ROWS rows, and for float32 activations at any batch;
w4a16_gemm (mma.sync, fp32 accumulation) for more rows of float16 / bfloat16 when the groups are whole 16-byte
chunks (group_len % 32 == 0). `kernel=` forces one. Written against NumPy's API (the array module is taken from
the inputs), so tests run them under tests/kernel_emulator.py on NumPy arrays.
"""

from __future__ import annotations

import numpy as np

from ._launch import array_module, ctype, kernel

FAMILY = "quant"
GEMV_MAX_ROWS = 8
GEMV_WARPS = 4
GEMM_TILE = 64
_SIXTEEN_BIT = (np.dtype(np.float16), np.dtype("bfloat16"))


def plan(rows: int, group_len: int, dtype) -> str:
    """Which kernel runs x (rows, K) of dtype against weights with groups of group_len columns."""
    if rows <= GEMV_MAX_ROWS or np.dtype(dtype) not in _SIXTEEN_BIT or group_len % 32:
        return "gemv"
    return "gemm"


def w4a16_matmul(x, codes, scales, zeros, group_len: int, kernel_name: str | None = None):
    """x (M, K) float16 / bfloat16 / float32, C-contiguous -> (M, N) of x's dtype, where the weight (N, K) is
    codes (N, K / 2) uint8 (planar 4-bit pairs within each group, as quant/qlinear.py stores them), scales (N, G)
    float32 and zeros (N, G) uint8, G = K / group_len."""
    xp = array_module(x)
    if x.ndim != 2 or np.dtype(x.dtype) not in (*_SIXTEEN_BIT, np.dtype(np.float32)):
        raise TypeError(f"w4a16_matmul: x must be a 2-D float16, bfloat16 or float32 array, got {x.dtype} "
                        f"{x.shape}")
    m, k = x.shape
    n = codes.shape[0]
    if group_len < 8 or group_len % 8 or k % group_len:
        raise ValueError(f"w4a16_matmul: group_len={group_len} must be a multiple of 8 dividing K={k}")
    groups = k // group_len
    if codes.shape != (n, k // 2) or codes.dtype != np.uint8:
        raise ValueError(f"w4a16_matmul: codes {codes.dtype} {codes.shape}; expected uint8 ({n}, {k // 2})")
    if scales.shape != (n, groups) or scales.dtype != np.float32:
        raise ValueError(f"w4a16_matmul: scales {scales.dtype} {scales.shape}; expected float32 ({n}, {groups})")
    if zeros.shape != (n, groups) or zeros.dtype != np.uint8:
        raise ValueError(f"w4a16_matmul: zeros {zeros.dtype} {zeros.shape}; expected uint8 ({n}, {groups})")
    which = kernel_name or plan(m, group_len, x.dtype)
    if which == "gemm" and (np.dtype(x.dtype) not in _SIXTEEN_BIT or group_len % 32):
        raise ValueError(f"w4a16_matmul: the gemm kernel needs float16 / bfloat16 x and group_len % 32 == 0, got "
                         f"{x.dtype} and group_len={group_len}")
    x = xp.ascontiguousarray(x)
    y = xp.empty((m, n), dtype=x.dtype)
    if m == 0 or n == 0:
        return y
    args = (x, xp.ascontiguousarray(codes), xp.ascontiguousarray(scales), xp.ascontiguousarray(zeros), y, m, n, k,
            group_len)
    defines = {"T": ctype(x.dtype)}
    if which == "gemv":
        kernel(FAMILY, "w4a16_gemv", defines)(min(-(-n // GEMV_WARPS), 65535), GEMV_WARPS * 32, args)
    elif which == "gemm":
        kernel(FAMILY, "w4a16_gemm", defines)((-(-n // GEMM_TILE), -(-m // GEMM_TILE)), 128, args)
    else:
        raise ValueError(f"w4a16_matmul: kernel_name must be None, 'gemv' or 'gemm', got {which!r}")
    return y


def _device_tables(layer, i: int, part):
    """float32 scales and uint8 zeros of a part on the device, made once per part (the checkpoint's float16
    scales are widened: the kernels read one scale per 8 codes)."""
    cache = layer.__dict__.setdefault("_cuda_tables", {})
    codes = layer._get(i, "codes")
    hit = cache.get(i)
    if hit is None or hit[0] is not codes:  # first use, or the layer moved since (new arrays)
        xp = array_module(codes)
        hit = cache[i] = (codes, xp.ascontiguousarray(layer._get(i, "scales").astype(np.float32)),
                          xp.ascontiguousarray(layer._get(i, "zeros").astype(np.uint8)))
    return hit[1], hit[2]


def _dequantized(layer, i: int, part, xp):
    """An int part as a float32 (rows, in_pad) device array, for the parts no kernel of ours reads packed: 8-bit
    codes, and GGUF Q4_1's mins (W = code * scale + min) in place of zero points."""
    codes, scales = layer._get(i, "codes"), layer._get(i, "scales").astype(np.float32)[:, :, None]
    if part.bits == 4:  # planar nibbles: the low ones are each group's first half of columns
        g = codes.reshape(part.rows, part.n_groups, part.group_len // 2)
        w = xp.concatenate([g & 0xF, g >> 4], axis=2).astype(np.float32)
    else:
        w = codes.reshape(part.rows, part.n_groups, part.group_len).astype(np.float32)
    mins = layer._get(i, "mins")
    if mins is None:
        w -= layer._get(i, "zeros").astype(np.float32)[:, :, None]
        w *= scales
    else:
        w *= scales
        w += mins.astype(np.float32)[:, :, None]
    return w.reshape(part.rows, part.in_pad)


def quant_linear_forward(layer, x):
    """QuantLinear.forward on a device array x (..., in_features): 4-bit parts on quant.cu's kernels, 8-bit parts
    dequantized on the device and multiplied; GGUF blocks are decoded on the CPU only (an error here)."""
    xp = array_module(x)
    lead = x.shape[:-1]
    x2 = xp.ascontiguousarray(x.reshape(-1, layer.in_features))
    m = x2.shape[0]
    out = xp.empty((m, layer.out_features), dtype=x.dtype)
    x_ext = None
    row = 0
    for i, part in enumerate(layer.parts):
        if part.kind != "int":
            raise NotImplementedError(f"QuantLinear {list(part.names)}: GGUF {part.ggml_type} blocks run on the CPU "
                                      "only; load the GGUF file with keep_quantized=False to run it on CUDA")
        cols = layer._get(i, "cols")
        xp_in = x2
        if cols is not None:
            if x_ext is None:  # one zero column for the padding columns to read
                x_ext = xp.concatenate([x2, xp.zeros((m, 1), dtype=x2.dtype)], axis=1)
            xp_in = xp.ascontiguousarray(xp.take(x_ext, cols, axis=1))
        if part.bits == 4 and layer._get(i, "mins") is None:
            scales, zeros = _device_tables(layer, i, part)
            y = w4a16_matmul(xp_in, layer._get(i, "codes"), scales, zeros, part.group_len)
        else:
            y = (xp_in.astype(np.float32) @ _dequantized(layer, i, part, xp).T).astype(x.dtype)
        out[:, row:row + part.rows] = y
        row += part.rows
    if layer.bias is not None:
        bias = layer.bias.data
        out += getattr(bias, "_a", bias).astype(out.dtype)  # the CuPy array under the parameter's DeviceArray
    return out.reshape(*lead, layer.out_features)
