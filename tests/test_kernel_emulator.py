"""The CPU kernel emulator (tests/kernel_emulator.py) that runs kernels/*.cu without a GPU: CUDA's block and
warp semantics on a reduction, and each kind of kernel bug it must report instead of passing silently."""

from __future__ import annotations

import kernel_emulator as emu
import numpy as np
import pytest

SOURCE = r"""
// zt-variants: |
extern "C" __global__ void block_sum(const float* x, float* out, int n) {
    __shared__ float partial[32];
    float v = 0.f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) v += x[i];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0.f;
        for (int w = 0; w < (int)(blockDim.x >> 5); ++w) t += partial[w];
        out[blockIdx.x] = t;
    }
}
extern "C" __global__ void split_warp(float* x) {
    if ((threadIdx.x & 31) < 16) __syncthreads();
    else x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}
extern "C" __global__ void write_past_end(float* x, int n) { x[n + threadIdx.x] = 1.f; }
extern "C" __global__ void write_const(const float* x) { const_cast<float*>(x)[threadIdx.x] = 2.f; }
struct alignas(16) Four { float v[4]; };
extern "C" __global__ void misaligned(const float* x, float* y) {
    y[threadIdx.x] = reinterpret_cast<const Four*>(x + 1)->v[0];
}
extern "C" __global__ void shuffle(float* x) { x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1); }
extern "C" __global__ void overflow(float* x, int scale) { int i = (int)threadIdx.x * scale; x[i % 4] = 1.f; }
extern "C" __global__ void missing_barrier(float* y) {
    __shared__ float s;
    if (threadIdx.x == 0) s = blockIdx.x + 1.0f;
    y[blockIdx.x * blockDim.x + threadIdx.x] = s;  // no __syncthreads() between the write and the reads
}
extern "C" __global__ void dynamic_smem(const float* x, float* y) {
    extern __shared__ float buffer[];
    buffer[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    y[threadIdx.x] = buffer[blockDim.x - 1 - threadIdx.x];
}
"""


@pytest.fixture
def lab(tmp_path, monkeypatch):
    why = emu.available()
    if why:
        pytest.skip(f"the kernel emulator cannot run here: {why}")
    (tmp_path / "lab.cu").write_text(SOURCE)
    monkeypatch.setattr(emu, "KERNEL_DIR", tmp_path)
    return lambda name: emu.load_kernel("lab", name)


def test_block_and_warp_semantics(lab):
    x = np.arange(1000, dtype=np.float32)
    out = np.zeros(3, np.float32)
    lab("block_sum")(3, 128, (x, out, 1000))
    assert out.sum() == x.sum()
    y = np.zeros(64, np.float32)
    lab("dynamic_smem")(1, 64, (np.arange(64, dtype=np.float32), y), shared_mem=64 * 4)
    np.testing.assert_array_equal(y, np.arange(64)[::-1])


@pytest.mark.parametrize("name,args,block,message", [
    ("split_warp", (np.zeros(64, np.float32),), 64, "deadlock"),
    ("write_past_end", (np.zeros(8, np.float32), 8), 32, "wrote outside argument 'x'"),
    ("write_const", (np.zeros(32, np.float32),), 32, "wrote to argument 'x', which is const"),
    ("misaligned", (np.zeros(64, np.float32), np.zeros(32, np.float32)), 32, "misaligned"),
    ("shuffle", (np.zeros(48, np.float32),), 48, "not a multiple of 32"),
    ("overflow", (np.zeros(4, np.float32), 2**30), 32, "signed integer overflow"),
])
def test_kernel_bugs_are_reported(lab, name, args, block, message):
    with pytest.raises(emu.EmulatorError, match=message):
        lab(name)(1, block, args)
    # the emulator stays usable after a failed launch
    out = np.zeros(1, np.float32)
    lab("block_sum")(1, 32, (np.ones(5, np.float32), out, 5))
    assert out[0] == 5


def test_a_missing_barrier_shows(lab):
    """Threads run in a different order each block: reads that no barrier orders after the write see stale
    shared memory in some block."""
    y = np.zeros(4 * 64, np.float32)
    lab("missing_barrier")(4, 64, (y,))
    want = np.repeat(np.arange(1, 5, dtype=np.float32), 64)
    assert not np.array_equal(y, want)
