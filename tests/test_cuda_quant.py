"""kernels/quant.cu (W4A16 gemv and mma.sync gemm) and QuantLinear on CUDA against dequantize-then-matmul: odd sizes,
every group size, act-order, float16 / bfloat16 / float32 activations. The GPU cases are marked `cuda`; a subset of
the kernel cases runs on the CPU kernel emulator (the tensor-core fragments through zt_mma.cuh's stand-ins)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_util import BF16, kernel_device, on_devices, why_no_gpu
from llm_fixtures import random_blocks

from zigtensor.backends.cuda_kernels import quant as Q
from zigtensor.quant import QuantizedWeight
from zigtensor.quant.qlinear import QuantLinear

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)
# rtol of a product whose weights and inputs are rounded to dtype, accumulated in float32, against float64
TOL = {F16: 2e-3, BF16: 2e-2, F32: 1e-5}


def _packed(rng, n, k, group_len):
    """codes (n, k/2) uint8 (planar pairs per group), float32 scales, uint8 zeros, and W (n, k) float64."""
    codes = rng.integers(0, 16, (n, k)).astype(np.uint8)
    groups = k // group_len
    scales = rng.uniform(0.01, 0.1, (n, groups)).astype(np.float32)
    zeros = rng.integers(0, 16, (n, groups)).astype(np.uint8)
    g = codes.reshape(n, groups, group_len)
    h = group_len // 2
    packed = (g[:, :, :h] | (g[:, :, h:] << 4)).reshape(n, k // 2)
    w = (codes.astype(np.float64) - np.repeat(zeros, group_len, axis=1)) * np.repeat(scales, group_len, axis=1)
    return np.ascontiguousarray(packed), scales, zeros, w


def _reference(x, w, dtype):
    """x @ W.T in float64 with W rounded to dtype first (what the kernels multiply: 16-bit weights into the mma,
    float32 weights in the SIMT kernel)."""
    wd = w.astype(dtype).astype(np.float64) if dtype != F32 else w
    return x.astype(np.float64) @ wd.T


def _check(name, got, want, dtype):
    scale = np.abs(want).max() + 1e-6
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=name)


CASES = [((m, n, k, gl), kernel, dtype)
         for (m, n, k, gl) in [(1, 37, 64, 32), (3, 130, 256, 128), (8, 96, 96, 96), (7, 17, 48, 8),
                               (33, 70, 128, 32), (65, 129, 256, 64), (100, 64, 512, 512)]
         for kernel, dtype in [("gemv", F16), ("gemv", BF16), ("gemv", F32), ("gemm", F16), ("gemm", BF16)]
         if not (kernel == "gemm" and gl % 32)]
EMULATED = [((1, 37, 64, 32), "gemv", F16), ((7, 17, 48, 8), "gemv", F32), ((3, 40, 128, 64), "gemv", BF16),
            ((33, 70, 128, 32), "gemm", F16), ((17, 72, 64, 64), "gemm", BF16)]


@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_w4a16_kernels_against_dequantize_then_matmul(device, case, monkeypatch):
    (m, n, k, group_len), kernel, dtype = case
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(m * 7 + n + k)
    codes, scales, zeros, w = _packed(rng, n, k, group_len)
    x = rng.uniform(-2, 2, (m, k)).astype(dtype)
    got = Q.w4a16_matmul(dev.asarray(x), dev.asarray(codes), dev.asarray(scales), dev.asarray(zeros), group_len,
                         kernel_name=kernel)
    assert got.dtype == dtype and got.shape == (m, n)
    _check(f"{kernel} {dtype} {m}x{n}x{k} g{group_len}", dev.numpy(got), _reference(x, w, dtype), dtype)


def test_plan_and_argument_errors():
    assert Q.plan(1, 128, F16) == "gemv" and Q.plan(8, 128, BF16) == "gemv"
    assert Q.plan(9, 128, F16) == "gemm" and Q.plan(9, 128, F32) == "gemv" and Q.plan(64, 48, F16) == "gemv"
    rng = np.random.default_rng(0)
    codes, scales, zeros, _ = _packed(rng, 8, 64, 32)
    x = np.zeros((2, 64), F16)
    with pytest.raises(ValueError, match=r"group_len=12 must be a multiple of 8 dividing K=64"):
        Q.w4a16_matmul(x, codes, scales, zeros, 12)
    with pytest.raises(ValueError, match=r"codes uint8 \(8, 32\); expected uint8 \(8, 16\)"):
        Q.w4a16_matmul(np.zeros((2, 32), F16), codes, scales, zeros, 32)
    with pytest.raises(ValueError, match=r"scales float16 \(8, 2\); expected float32 \(8, 2\)"):
        Q.w4a16_matmul(x, codes, scales.astype(F16), zeros, 32)
    with pytest.raises(ValueError, match=r"the gemm kernel needs float16 / bfloat16 x"):
        Q.w4a16_matmul(x.astype(F32), codes, scales, zeros, 32, kernel_name="gemm")
    with pytest.raises(TypeError, match=r"x must be a 2-D float16, bfloat16 or float32 array, got float64"):
        Q.w4a16_matmul(x.astype(np.float64), codes, scales, zeros, 32)


def _weight(rng, out_f, in_f, bits, group_size, act_order):
    n_groups = 1 if group_size == -1 else -(-in_f // group_size)
    g_idx = np.zeros(in_f, np.int32) if group_size == -1 else np.arange(in_f, dtype=np.int32) // group_size
    if act_order:
        g_idx = g_idx[rng.permutation(in_f)]
    maxq = (1 << bits) - 1
    return QuantizedWeight(rng.integers(0, maxq + 1, (out_f, in_f)),
                           rng.uniform(0.01, 0.1, (n_groups, out_f)).astype(np.float16).astype(np.float32),
                           rng.integers(0, maxq + 1, (n_groups, out_f)), g_idx, bits, group_size)


@pytest.mark.cuda
@pytest.mark.skipif(bool(why_no_gpu()), reason=why_no_gpu() or "GPU present")
@pytest.mark.parametrize("group_size", [-1, 32, 64, 128])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_quantlinear_on_cuda_equals_the_cpu_layer(group_size, act_order, dtype):
    import zigtensor as zt

    rng = np.random.default_rng(group_size + 3 * act_order)
    parts = [_weight(rng, 72, 200, 4, group_size, act_order), _weight(rng, 40, 200, 8, group_size, act_order)]
    layer = QuantLinear.from_weights(parts, bias=rng.standard_normal(112).astype(np.float32))
    w = layer.dequantize().astype(np.float64)
    gpu = QuantLinear.from_weights(parts, bias=layer.bias.numpy()).to("cuda")
    for batch in (1, 7, 40):
        x = rng.uniform(-1, 1, (batch, 200)).astype(np.float32)
        xt = zt.tensor(x).to(dtype=dtype).to("cuda")
        got = gpu(xt).float().cpu().numpy()
        want = xt.float().cpu().numpy().astype(np.float64) @ w.T + layer.bias.numpy()
        tol = {"float16": 1e-2, "bfloat16": 5e-2, "float32": 1e-4}[dtype]
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max(), err_msg=f"batch {batch}")


@pytest.mark.parametrize("device,case", on_devices([], [(1, F16), (20, F16), (3, F32), (20, BF16)]))
def test_quant_linear_forward_gathers_pads_and_dispatches(device, case, monkeypatch):
    """QuantLinear's device forward (act-order gather, padded groups, 4-bit parts on the kernels, an 8-bit part
    dequantized, bias) on the emulator, where the layer's arrays are NumPy ones."""
    batch, dtype = case
    kernel_device(device, monkeypatch)
    rng = np.random.default_rng(batch)
    parts = [_weight(rng, 24, 64, 4, 32, act_order=True), _weight(rng, 16, 64, 4, -1, act_order=False),
             _weight(rng, 8, 64, 8, 32, act_order=False), _weight(rng, 8, 64, 4, 16, act_order=True)]
    layer = QuantLinear(64, 56 + 16, bias=True)
    layer.bias.data = rng.standard_normal(72).astype(np.float32)
    for w in parts:
        layer.add_int_part(w)
    for ggml_type in ("Q4_0", "Q4_1"):   # GGUF blocks as int parts: zero points (the kernels) and mins (dequantized)
        layer.add_gguf_part(random_blocks(ggml_type, 8 * 2, rng), ggml_type, 8, name=ggml_type)
    layer.check_complete()
    x = rng.uniform(-1, 1, (batch, 64)).astype(dtype)
    want = x.astype(np.float64) @ layer.dequantize().astype(dtype).astype(np.float64).T + layer.bias.numpy()
    got = Q.quant_linear_forward(layer, x)
    assert got.dtype == dtype and got.shape == (batch, 72)
    _check(f"batch {batch} {dtype}", got, want, dtype)
    # as on a GPU, where the layer's buffers, its bias and x are DeviceArrays over the device's arrays
    from zigtensor.backends.cuda_array import DeviceArray

    for t in [*layer._buffers.values(), layer.bias]:
        if t is not None:
            t.data = DeviceArray(t.data)
    got = layer._array_forward(DeviceArray(x), layer.bias)
    assert isinstance(got, DeviceArray)
    _check(f"batch {batch} {dtype}, DeviceArrays", got._a, want, dtype)


def test_zt_info_names_the_kernel_the_launcher_picks():
    from zigtensor.quant.qlinear import kernel_name

    for rows in (1, 8, 9, 64):
        for group_len in (32, 48, 128):
            for dtype in ("float16", "bfloat16", "float32"):
                picked = Q.plan(rows, group_len, np.dtype(dtype if dtype != "bfloat16" else BF16))
                assert f"w4a16_{picked}" in kernel_name("int", 4, rows, "cuda", dtype, group_len=group_len)
    assert kernel_name("int", 8, 1, "cuda") == "cuda dequantize + gemm"
    assert kernel_name("int", 4, 64, "cuda", zero_point=False) == "cuda dequantize + gemm"
