// Tensor-core primitives that the mma kernels share (kernels/gemm.cu, kernels/quant.cu): ldmatrix, mma.sync
// m16n8k16 (f16 / bf16) and m16n8k8 (tf32), the tf32 rounding, and 16-byte cp.async, as inline PTX; with
// portable C++ stand-ins that follow the PTX ISA's fragment tables element by element (PTX ISA 9.7.14.5.7-8,
// "Matrix fragments for mma.m16n8k8 / mma.m16n8k16"), used where __CUDA_ARCH__ is undefined, i.e. under the
// CPU kernel emulator (tests/kernel_emulator.py), or with ZT_MMA_EMULATE on a GPU, which checks the fragment
// layouts written here against the hardware's.
//
// A kernel file includes it with `#include "zt_mma.cuh"`. The one macro read here is ZT_MMA_EMULATE (a
// loader define, not a file's default), and ZT_PTX is defined here for the files: 1 when these run as PTX. As
// in zt_device.cuh, no `extern "C" __global__` kernel and no type a kernel signature uses lives here (the
// loader's signature parser reads only the .cu file); the loader compiles with `-I kernels/` (NVRTC, nvcc in
// tests/test_kernels_compile.py, g++ in the kernel emulator) and hashes this file's text into the disk cache
// key, so editing it recompiles every kernel that includes it.
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>

#if defined(__CUDA_ARCH__) && !defined(ZT_MMA_EMULATE)
#define ZT_PTX 1
#else
#define ZT_PTX 0
#endif

typedef unsigned int u32;

// The 16-bit mma operand type for an element type X: bf16 for __nv_bfloat16, f16 otherwise (a float X compiles
// as f16 where a kernel's mma path is instantiated but never launched for float).
template <typename X> struct ZtMma16 {
    typedef __half type;
    static constexpr int is_bf16 = 0;
};
template <> struct ZtMma16<__nv_bfloat16> {
    typedef __nv_bfloat16 type;
    static constexpr int is_bf16 = 1;
};

// Shared memory is addressed by SmemAddr: a 32-bit shared-window address for PTX (cheaper than 64-bit generic
// pointers: offsets fold into the instructions), a byte pointer in the stand-ins. `base + bytes` works for both.
#if ZT_PTX
typedef u32 SmemAddr;
__device__ __forceinline__ SmemAddr smem_addr(const void* p) { return (u32)__cvta_generic_to_shared(p); }
#else
typedef const unsigned char* SmemAddr;
__device__ __forceinline__ SmemAddr smem_addr(const void* p) { return static_cast<const unsigned char*>(p); }

// ------------------------------------------------------------------------------------------ stand-ins
// Per-warp exchange slots of the stand-ins (a block has at most 32 warps).
struct ZtWarpSlots {
    const unsigned short* rows[32][32];
    u32 a[32][32][4];
    u32 b[32][32][2];
};
__device__ __forceinline__ ZtWarpSlots& zt_slots() {
    __shared__ ZtWarpSlots slots;
    return slots;
}
__device__ __forceinline__ int zt_linear_tid() {
    return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}
__device__ __forceinline__ float zt_bits_to_float(u32 bits, int is_bf16) {
    if (is_bf16) return __uint_as_float(bits << 16);
    __half_raw raw;
    raw.x = (unsigned short)bits;
    return __half2float(__half(raw));
}
// Every lane publishes its row address, then reads the rows it needs (non-transposed or transposed).
__device__ __forceinline__ void zt_ldmatrix_emulated(u32 (&r)[4], SmemAddr row, int trans) {
    ZtWarpSlots& s = zt_slots();
    const int w = zt_linear_tid() / 32, l = zt_linear_tid() % 32;
    s.rows[w][l] = reinterpret_cast<const unsigned short*>(row);
    __syncwarp();
    for (int j = 0; j < 4; ++j) {
        unsigned short lo, hi;
        if (!trans) {
            lo = s.rows[w][8 * j + l / 4][2 * (l % 4)];
            hi = s.rows[w][8 * j + l / 4][2 * (l % 4) + 1];
        } else {
            lo = s.rows[w][8 * j + 2 * (l % 4)][l / 4];
            hi = s.rows[w][8 * j + 2 * (l % 4) + 1][l / 4];
        }
        r[j] = (u32)lo | ((u32)hi << 16);
    }
    __syncwarp();
}
// D = A B + C over one warp's fragments: every lane publishes its A and B registers, then computes its own four
// accumulators from the published ones. a_at(row, k) / b_at(k, col) give (lane, register, 16-bit half).
template <int K, int IS_TF32, int IS_BF16>
__device__ __forceinline__ void zt_mma_emulated(float (&d)[4], const u32 (&a)[4], const u32 (&b)[2]) {
    ZtWarpSlots& s = zt_slots();
    const int w = zt_linear_tid() / 32, l = zt_linear_tid() % 32;
    for (int i = 0; i < 4; ++i) s.a[w][l][i] = a[i];
    for (int i = 0; i < 2; ++i) s.b[w][l][i] = b[i];
    __syncwarp();
    for (int i = 0; i < 4; ++i) {
        const int row = l / 4 + 8 * (i / 2), col = 2 * (l % 4) + (i % 2);
        float acc = d[i];
        for (int k = 0; k < K; ++k) {
            float av, bv;
            if (IS_TF32) {  // A(row, k): lane 4 (row % 8) + k % 4, register row / 8 + 2 (k / 4); B(k, col): lane
                            // 4 col + k % 4, register k / 4. The tensor core reads only the tf32 bits.
                av = __uint_as_float(s.a[w][4 * (row % 8) + k % 4][row / 8 + 2 * (k / 4)] & 0xffffe000u);
                bv = __uint_as_float(s.b[w][4 * col + k % 4][k / 4] & 0xffffe000u);
            } else {  // A(row, k): lane 4 (row % 8) + (k % 8) / 2, register row / 8 + 2 (k / 8), half k % 2;
                      // B(k, col): lane 4 col + (k % 8) / 2, register k / 8, half k % 2
                const u32 ar = s.a[w][4 * (row % 8) + (k % 8) / 2][row / 8 + 2 * (k / 8)];
                const u32 br = s.b[w][4 * col + (k % 8) / 2][k / 8];
                av = zt_bits_to_float((ar >> (16 * (k % 2))) & 0xffffu, IS_BF16);
                bv = zt_bits_to_float((br >> (16 * (k % 2))) & 0xffffu, IS_BF16);
            }
            acc += av * bv;
        }
        d[i] = acc;
    }
    __syncwarp();
}
#endif

// ------------------------------------------------------------------------------------------ ldmatrix
// Four 8x8 matrices of 16-bit elements (or 8x4 of 32-bit ones); lane l gives the address of row l % 8 of
// matrix l / 8 (16 contiguous bytes, 16-byte aligned). Non-transposed: register j of lane l holds row l / 4,
// 16-bit columns 2 (l % 4) and 2 (l % 4) + 1 of matrix j (the lower column in the low half). Transposed: rows
// 2 (l % 4) and 2 (l % 4) + 1 of column l / 4.
__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], SmemAddr row) {
#if ZT_PTX
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(row));
#else
    zt_ldmatrix_emulated(r, row, 0);
#endif
}

__device__ __forceinline__ void ldmatrix_x4_trans(u32 (&r)[4], SmemAddr row) {
#if ZT_PTX
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(row));
#else
    zt_ldmatrix_emulated(r, row, 1);
#endif
}

// ------------------------------------------------------------------------------------------ mma.sync
// d += a @ b for one 16x8x16 tile, 16-bit inputs (IS_BF16: bf16, else f16), fp32 accumulators. With
// g = lane / 4, t = lane % 4: a = A(g, 2t..2t+1), A(g+8, 2t..), A(g, 2t+8..), A(g+8, 2t+8..);
// b = B(2t..2t+1, g), B(2t+8.., g); d = D(g, 2t), D(g, 2t+1), D(g+8, 2t), D(g+8, 2t+1). The lower k (or
// column) in the low 16 bits.
template <int IS_BF16>
__device__ __forceinline__ void mma_16816(float (&d)[4], const u32 (&a)[4], const u32 (&b)[2]) {
#if ZT_PTX
    if (IS_BF16) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                     "{%8, %9}, {%0, %1, %2, %3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                     "{%8, %9}, {%0, %1, %2, %3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
#else
    zt_mma_emulated<16, 0, IS_BF16>(d, a, b);
#endif
}

// fp32 -> tf32 bits, round to nearest with ties away from zero (cvt.rna.tf32.f32).
__device__ __forceinline__ u32 to_tf32(float v) {
#if ZT_PTX
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
    return r;
#else
    const u32 bits = __float_as_uint(v);
    if ((bits & 0x7f800000u) == 0x7f800000u) return bits;  // inf / nan unchanged
    return (bits + 0x1000u) & 0xffffe000u;
#endif
}

// d += a @ b for one 16x8x8 tile of tf32: a = A(g, t), A(g+8, t), A(g, t+4), A(g+8, t+4); b = B(t, g),
// B(t+4, g); d as in mma_16816.
__device__ __forceinline__ void mma_1688_tf32(float (&d)[4], const u32 (&a)[4], const u32 (&b)[2]) {
#if ZT_PTX
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    zt_mma_emulated<8, 1, 0>(d, a, b);
#endif
}

// ------------------------------------------------------------------------------------------ cp.async
// 16-byte global -> shared copy that completes asynchronously (cp.async.cg: cached in L2 only); the bytes past
// src_bytes (0..16) are zero-filled and not read. Both addresses 16-byte aligned.
__device__ __forceinline__ void cp_async_16(SmemAddr dst, const void* src, int src_bytes) {
#if ZT_PTX
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
#else
    unsigned char* d = const_cast<unsigned char*>(dst);
    const unsigned char* s = static_cast<const unsigned char*>(src);
    for (int i = 0; i < 16; ++i) d[i] = i < src_bytes ? s[i] : 0;
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if ZT_PTX
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Wait until at most N of this thread's committed groups are still in flight (the stand-ins copy at once).
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if ZT_PTX
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}
