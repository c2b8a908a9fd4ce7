"""quant/cpu_kernels.py (numba) against a float64 reference written here from the int-part layout: 4-bit codes
planar within each group (byte j: column j low, column j + group_len/2 high) or 8-bit, float16 or float32 scales,
integer zero points (W = (code - zero) * scale) or mins (W = code * scale + min); odd row counts, a last 16-byte
span, 1 to 9 and 33 input rows, the rows split into several chunks, a strided output."""

from __future__ import annotations

import os

import numpy as np
import pytest

from zigtensor.quant import cpu_kernels
from zigtensor.quant.qlinear import KERNEL_MAX_ROWS, QuantLinear


def _reference(codes, scales, offsets, has_mins, bits, group_len):
    """float64 W (rows, in_pad) from the stored arrays, straight from the layout definition."""
    rows = codes.shape[0]
    if bits == 4:
        half = group_len // 2
        g = codes.reshape(rows, -1, half)
        q = np.concatenate([g & 15, g >> 4], axis=2).reshape(rows, -1)
    else:
        q = codes
    as_float = (lambda a: a.view(np.float16).astype(np.float64)) if scales.dtype == np.uint16 else \
        (lambda a: a.astype(np.float64))
    s = np.repeat(as_float(scales), group_len, axis=1)
    if has_mins:
        return q * s + np.repeat(as_float(offsets), group_len, axis=1)
    return (q - np.repeat(offsets.astype(np.float64), group_len, axis=1)) * s


def _part(rng, rows, in_pad, bits, group_len, has_mins, half_scales, zero_dtype=np.uint8):
    n_groups = in_pad // group_len
    codes = rng.integers(0, 256, (rows, in_pad * bits // 8), dtype=np.uint8)
    scales = rng.uniform(0.01, 0.1, (rows, n_groups))
    scales = scales.astype(np.float16).view(np.uint16) if half_scales else scales.astype(np.float32)
    if has_mins:
        mins = rng.uniform(-1, 1, (rows, n_groups))
        offsets = mins.astype(np.float16).view(np.uint16) if half_scales else mins.astype(np.float32)
    else:
        offsets = rng.integers(0, 1 << bits, (rows, n_groups)).astype(zero_dtype)
    return codes, scales, offsets


@pytest.mark.parametrize("bits,group_len,in_pad", [(4, 32, 576), (4, 32, 96), (4, 64, 1536), (4, 128, 384),
                                                   (4, 96, 288), (8, 32, 576), (8, 16, 48), (8, 128, 256)])
@pytest.mark.parametrize("has_mins,half_scales", [(False, True), (True, True), (False, False), (True, False)])
def test_matmul_against_the_layout_definition(bits, group_len, in_pad, has_mins, half_scales):
    rng = np.random.default_rng(bits * 1000 + group_len + in_pad + 2 * has_mins + half_scales)
    assert cpu_kernels.supports(bits, group_len)
    for rows in (1, 7, 65):
        codes, scales, offsets = _part(rng, rows, in_pad, bits, group_len, has_mins, half_scales)
        w = _reference(codes, scales, offsets, has_mins, bits, group_len)
        order = cpu_kernels.kernel_order(bits, in_pad, group_len)   # the kernel gathers x's columns itself
        for m in (1, 2, 3, 8, 9, 33):
            x = rng.standard_normal((m, in_pad)).astype(np.float32)
            want = x.astype(np.float64) @ w.T
            for chunks in (1, 2, 3):
                out = np.full((m, rows), np.nan, np.float32)
                cpu_kernels.matmul(x, order, codes, scales, offsets, has_mins, bits, group_len, out, chunks)
                np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(),
                                           err_msg=f"rows {rows} m {m} chunks {chunks}")


@pytest.mark.parametrize("bits,group_len,has_mins", [(4, 32, True), (4, 64, False), (8, 32, False)])
def test_dequantize_rows_in_the_kernel_order(bits, group_len, has_mins):
    rng = np.random.default_rng(bits + group_len)
    codes, scales, offsets = _part(rng, 23, 192, bits, group_len, has_mins, True)
    order = cpu_kernels.input_order(bits, 192, group_len)
    want = _reference(codes, scales, offsets, has_mins, bits, group_len)[5:19]
    out = np.full((14, 192), np.nan, np.float32)
    cpu_kernels.dequantize(codes, scales, offsets, has_mins, bits, group_len, 5, 19, out)
    np.testing.assert_allclose(out, want if order is None else want[:, order], rtol=1e-6, atol=1e-7)


def test_int32_zero_points_and_a_strided_output():
    rng = np.random.default_rng(5)
    codes, scales, offsets = _part(rng, 10, 256, 8, 64, False, True, zero_dtype=np.int32)
    offsets[:] += 300   # zero points past uint8 (stored as int32)
    x = rng.standard_normal((4, 256)).astype(np.float32)
    full = np.zeros((4, 25), np.float32)
    out = full[:, 3:13]   # a view with the row stride of the whole
    cpu_kernels.matmul(x, cpu_kernels.kernel_order(8, 256, 64), codes, scales, offsets, False, 8, 64, out, 2)
    want = x.astype(np.float64) @ _reference(codes, scales, offsets, False, 8, 64).T
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert not full[:, :3].any() and not full[:, 13:].any()


@pytest.mark.parametrize("bits,group_len,ok", [(4, 32, True), (4, 128, True), (4, 16, False), (4, 40, False),
                                               (8, 16, True), (8, 32, True), (8, 8, False), (8, 24, False)])
def test_supported_layouts(bits, group_len, ok):
    assert cpu_kernels.supports(bits, group_len) is ok


def test_a_row_computes_the_same_alone_or_batched():
    """Each output is one row's dot with one input row, in an order that does not depend on the batch: the engine's
    promise that a greedy request decodes the same tokens alone or batched holds on the quantized path too."""
    rng = np.random.default_rng(11)
    codes, scales, offsets = _part(rng, 37, 576, 4, 32, True, True)
    order = cpu_kernels.kernel_order(4, 576, 32)
    x = rng.standard_normal((9, 576)).astype(np.float32)
    batched = np.empty((9, 37), np.float32)
    cpu_kernels.matmul(x, order, codes, scales, offsets, True, 4, 32, batched, 2)
    for m in range(9):
        alone = np.empty((1, 37), np.float32)
        cpu_kernels.matmul(x[m:m + 1], order, codes, scales, offsets, True, 4, 32, alone, 1)
        np.testing.assert_array_equal(alone[0], batched[m])


def test_quantlinear_names_the_kernel_it_runs():
    from zigtensor.quant import QuantizedWeight

    rng = np.random.default_rng(2)
    w = QuantizedWeight(rng.integers(0, 16, (8, 64)), rng.uniform(0.01, 0.1, (2, 8)), rng.integers(0, 16, (2, 8)),
                        np.arange(64, dtype=np.int32) // 32, 4, 32, name="w")
    layer = QuantLinear.from_weights([w])
    assert layer.kernel_for(1) == layer.kernel_for(KERNEL_MAX_ROWS) == \
        "cpu int4 dequantize-multiply kernel (cpu_kernels.py)"
    assert layer.kernel_for(KERNEL_MAX_ROWS + 1) == "cpu int4 tiles dequantized by cpu_kernels.py + blas gemm"


def test_the_kernels_stay_on_one_thread_under_numbas_workqueue_layer():
    """Where numba falls back to its workqueue layer (no OpenMP, no TBB), a region costs ~270 us and the layer
    must not be entered from two threads at once: threads() says 1 there, numba's pool size elsewhere."""
    import os
    import subprocess
    import sys

    code = "from zigtensor.quant import cpu_kernels; print(cpu_kernels.threads())"
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "1"
    assert cpu_kernels.threads() >= 1


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through Linux's /proc")
def test_asking_for_the_thread_count_starts_no_openmp_team():
    """threads() runs on the main thread (the engine's runner calls it at load); an OpenMP team started there would
    sit beside the engine thread's, and libgomp then parks its workers between regions (a batch-8 SmolLM2 step
    40-47 ms instead of 26-34): it must load the threading layer without starting threads."""
    import subprocess
    import sys

    code = ("import os, numpy; from zigtensor.quant import cpu_kernels; before = len(os.listdir('/proc/self/task')); "
            "n = cpu_kernels.threads(); print(n, before, len(os.listdir('/proc/self/task')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n, before, after = map(int, out.stdout.split()[-3:])
    assert n >= 1 and after == before
