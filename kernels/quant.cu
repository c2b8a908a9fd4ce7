// W4A16: y = x @ W^T with W stored as 4-bit codes, per-(row, group) scales and zero points, dequantized in
// registers (the weight is never written out in 16 or 32 bits).
//
// Layout (quant/qlinear.py writes it; QuantLinear's "int" parts with bits=4):
//   x      (M, K) T, row-major: the layer input with its columns already in the weight's stored order (act-order
//          gathered, groups padded: the launcher does it), K = n_groups * GROUP_LEN.
//   codes  (N, K / 2) bytes, row n of the weight. Within each group of GROUP_LEN columns, byte j (0 <= j < H,
//          H = GROUP_LEN / 2) holds column j in its low nibble and column j + H in its high nibble ("planar":
//          the low nibbles of a run of bytes are consecutive columns, so are the high ones).
//   scales (N, G) float, zeros (N, G) unsigned char, G = K / GROUP_LEN: W[n, k] = (code - zero) * scale of k's
//          group.
//   y      (M, N) T, row-major; fp32 accumulation everywhere.
// Requirements (the launcher checks): GROUP_LEN % 8 == 0 (so a 4-byte word never straddles two groups and rows
// start 4-byte aligned); for w4a16_gemm also GROUP_LEN % 32 == 0 and a 16-bit T.
//
// Defines (defaults compile standalone):
//   T     activation type: __half | __nv_bfloat16 | float
//   ZT_MMA_EMULATE  portable C++ for mma.sync (kernels/zt_mma.cuh; automatic without __CUDA_ARCH__, e.g.
//                   tests/kernel_emulator.py)
//
// Kernels (both: x, codes, scales, zeros, y, M, N, K, group_len):
//   w4a16_gemv   SIMT, for few rows (the launcher uses it for M <= 8, and for float T at any M). Block 128 = 4
//                warps, grid ceil(N / 4) (grid-stride over rows). Warp w of block b owns weight row n = 4b + w:
//                lane l reads the row's 4-byte words l, l + 32, ... (coalesced: a warp reads 128 contiguous
//                bytes per step), each word 8 codes of one group (low nibbles: columns c..c+3, high: c+H..
//                c+H+3), so one scale and zero per word and two 4-wide vector loads of each row of x (read
//                through the L1 cache, shared by the 4 warps); the products with up to 8 rows are summed per
//                lane, then over the warp with shuffles, and scaled once per word: acc += scale *
//                sum((code - zero) * x). Rows of x past 8 run in further passes over the same weight row (L2).
//   w4a16_gemm   tensor cores, mma.sync m16n8k16 (16-bit T, fp32 accumulators). Block 128 = 4 warps in 2 x 2,
//                block tile 64 (rows of x) x 64 (weight rows), warp tile 32 x 32 = 2 x 4 mma tiles; grid
//                (ceil(N / 64), ceil(M / 64)). The k loop walks 16-byte chunks of the weight rows, two per
//                step (64 columns). A chunk is 32 codes: low nibbles = columns c..c+15, high = c+H..c+H+15,
//                all in one group. Lane (g, t) = (lane / 4, lane % 4) of an n8 tile loads the 4-byte word t of
//                row g's chunk straight into registers and dequantizes it there: its low nibbles 0, 1 become
//                the B fragment's k-slots 2t, 2t+1 and nibbles 2, 3 slots 2t+8, 2t+9 of one mma (the high
//                nibbles likewise of a second mma). So k-slot s of the low mma is column c + 4 (s % 8 / 2) +
//                2 (s / 8) + s % 2, and the A fragment (x) must follow the same order: slots 2t, 2t+1 read x
//                columns c + 4t, c + 4t + 1 and slots 2t+8, 2t+9 columns c + 4t + 2, c + 4t + 3: one 8-byte
//                shared-memory read per row. x's 64 columns of the step are staged in shared memory (block:
//                64 x (64 + 8) T, rows padded against bank conflicts); the edges (rows of x or weight past M,
//                N) read as zeros and are not stored. Each dequantized weight, (code - zero) * scale, is rounded
//                once to T before the mma. NOTE: a first version: the weight words go from global memory to
//                registers with no shared-memory stage or cp.async pipeline (x is single-buffered), which is
//                where to look first once it can be timed on a GPU.
//
// Registers (nvcc 13.0 ptxas, sm_80 / sm_90a, no spills): w4a16_gemv 62 / 55 (float T: 64 / 56), w4a16_gemm
// 94 / 89 with 9 KB of shared memory.
// Verified without a GPU: tests/test_cuda_quant.py runs both kernels under tests/kernel_emulator.py (the mma
// stand-in of kernels/zt_mma.cuh follows the PTX ISA fragment tables) against dequantize-then-matmul; speed is
// unmeasured here.
//
// zt-variants: | T=__half | T=__nv_bfloat16

#include "zt_device.cuh"
#include "zt_mma.cuh"

#ifndef T
#define T float
#endif

// The mma operand type: T itself when 16-bit; float activations are never sent to the mma kernel (the launcher
// runs them on w4a16_gemv), but the kernel still compiles for them, as __half.
typedef ZtMma16<T>::type mt;
constexpr int kIsBf16 = ZtMma16<T>::is_bf16;

__device__ __forceinline__ unsigned short mt_bits(float v) {
    if (kIsBf16) return __bfloat16_as_ushort(__float2bfloat16_rn(v));
    return __half_as_ushort(__float2half_rn(v));
}
__device__ __forceinline__ u32 pack2(float lo, float hi) { return (u32)mt_bits(lo) | ((u32)mt_bits(hi) << 16); }
// Four activations into the mma's shared tile: a raw 8-byte copy when T is the mma type (the launcher's case),
// converted from float otherwise (float T compiles the kernel but never runs it).
__device__ __forceinline__ void stage4(const mt* src, mt* dst) {
    *reinterpret_cast<uint2*>(dst) = *reinterpret_cast<const uint2*>(src);
}
__device__ __forceinline__ void stage4(const float* src, mt* dst) {
    const float4 v = *reinterpret_cast<const float4*>(src);
    *reinterpret_cast<uint2*>(dst) = make_uint2(pack2(v.x, v.y), pack2(v.z, v.w));
}

// Four consecutive activations x[0..3] as floats in one 8-byte (16-bit T) or 16-byte (float) load: the caller's
// column is a multiple of 4 in a row of K % 8 == 0 elements, so the address is aligned to the load. NOTE: not
// zt_device.cuh's load_pack, which gives the same values but makes nvcc 13.0 spill w4a16_gemv for sm_80 (16-bit T).
__device__ __forceinline__ void load4(const float* p, float (&v)[4]) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
}
__device__ __forceinline__ float half_bits_to_float(unsigned bits) {
    return __half2float(__ushort_as_half((unsigned short)bits));
}
__device__ __forceinline__ void load4(const __half* p, float (&v)[4]) {
    const uint2 q = *reinterpret_cast<const uint2*>(p);  // element i in 16-bit half i % 2 of word i / 2
    v[0] = half_bits_to_float(q.x & 0xffffu); v[1] = half_bits_to_float(q.x >> 16);
    v[2] = half_bits_to_float(q.y & 0xffffu); v[3] = half_bits_to_float(q.y >> 16);
}
__device__ __forceinline__ void load4(const __nv_bfloat16* p, float (&v)[4]) {
    const uint2 q = *reinterpret_cast<const uint2*>(p);  // a bfloat16 is the top half of a float
    v[0] = __uint_as_float(q.x << 16); v[1] = __uint_as_float(q.x & 0xffff0000u);
    v[2] = __uint_as_float(q.y << 16); v[3] = __uint_as_float(q.y & 0xffff0000u);
}

// ------------------------------------------------------------------------------------------ w4a16_gemv
constexpr int kGemvWarps = 4;
constexpr int kGemvRows = 8;  // rows of x per pass

extern "C" __global__ void __launch_bounds__(kGemvWarps * 32)
w4a16_gemv(const T* x, const unsigned char* codes, const float* scales, const unsigned char* zeros, T* y, int M,
           int N, int K, int group_len) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int words = K / 8, half_len = group_len / 2, groups = K / group_len;
    for (int n = blockIdx.x * kGemvWarps + warp; n < N; n += gridDim.x * kGemvWarps) {
        const u32* row = reinterpret_cast<const u32*>(codes + (long long)n * (K / 2));
        for (int m0 = 0; m0 < M; m0 += kGemvRows) {
            const int rows = min(kGemvRows, M - m0);
            float acc[kGemvRows];
#pragma unroll
            for (int r = 0; r < kGemvRows; ++r) acc[r] = 0.f;
            for (int w = lane; w < words; w += 32) {
                const u32 word = row[w];
                const int byte = 4 * w, g = byte / half_len, j = byte % half_len;
                const float scale = scales[(long long)n * groups + g];
                const float zero = (float)zeros[(long long)n * groups + g];
                const int col_lo = g * group_len + j, col_hi = col_lo + half_len;
                float w_lo[4], w_hi[4];
#pragma unroll
                for (int b = 0; b < 4; ++b) {
                    w_lo[b] = (float)((word >> (8 * b)) & 0xFu) - zero;
                    w_hi[b] = (float)((word >> (8 * b + 4)) & 0xFu) - zero;
                }
                const T* xr = x + (long long)m0 * K;
#pragma unroll
                for (int r = 0; r < kGemvRows; ++r, xr += K) {
                    if (r < rows) {
                        float x_lo[4], x_hi[4];
                        load4(xr + col_lo, x_lo);
                        load4(xr + col_hi, x_hi);
                        float s = 0.f;
#pragma unroll
                        for (int b = 0; b < 4; ++b) s += w_lo[b] * x_lo[b] + w_hi[b] * x_hi[b];
                        acc[r] += scale * s;
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < kGemvRows; ++r) {
                const float v = warp_sum(acc[r]);
                if (lane == 0 && r < rows) store_as(v, y[(long long)(m0 + r) * N + n]);
            }
        }
    }
}

// ------------------------------------------------------------------------------------------ w4a16_gemm
constexpr int kBM = 64, kBN = 64, kWM = 32, kWN = 32;
constexpr int kChunks = 2;                   // 16-byte weight chunks (32 columns each) per k step
constexpr int kStepCols = 32 * kChunks;      // x columns staged per k step
constexpr int kXPitch = kStepCols + 8;       // shared row pitch (elements): 16 bytes of padding per row
constexpr int kGemmThreads = (kBM / kWM) * (kBN / kWN) * 32;

extern "C" __global__ void __launch_bounds__(kGemmThreads)
w4a16_gemm(const T* x, const unsigned char* codes, const float* scales, const unsigned char* zeros, T* y, int M,
           int N, int K, int group_len) {
    __align__(16) __shared__ mt xs[kBM][kXPitch];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane / 4, t = lane % 4;
    const int wm = (warp / (kBN / kWN)) * kWM, wn = (warp % (kBN / kWN)) * kWN;
    const int m_block = blockIdx.y * kBM, n_block = blockIdx.x * kBN;
    const int half_len = group_len / 2, groups = K / group_len;
    float acc[kWM / 16][kWN / 8][4];
#pragma unroll
    for (int i = 0; i < kWM / 16; ++i)
#pragma unroll
        for (int j = 0; j < kWN / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

    for (int chunk0 = 0; chunk0 < K / 32; chunk0 += kChunks) {
        // stage x: row r, step column c = 32 * (chunk - chunk0) + 16 * half + i holds x column
        // group * group_len + j + H * half + i of that chunk (j: the chunk's byte offset in its group); four
        // consecutive columns per thread and step, one 8-byte copy (16-bit T)
        for (int idx = threadIdx.x; idx < kBM * kStepCols / 4; idx += kGemmThreads) {
            const int r = idx / (kStepCols / 4), c = 4 * (idx % (kStepCols / 4));
            const int chunk = chunk0 + c / 32, half = (c % 32) / 16, i = c % 16;
            if (m_block + r < M && chunk < K / 32) {
                const int byte = 16 * chunk, grp = byte / half_len, j = byte % half_len;
                stage4(x + (long long)(m_block + r) * K + grp * group_len + j + half_len * half + i, &xs[r][c]);
            } else {
                *reinterpret_cast<uint2*>(&xs[r][c]) = make_uint2(0u, 0u);
            }
        }
        __syncthreads();
#pragma unroll
        for (int ck = 0; ck < kChunks; ++ck) {
            const int chunk = chunk0 + ck;
            if (chunk < K / 32) {
                const int grp = (16 * chunk) / half_len;
                // A fragments of this chunk, low (h = 0) and high (h = 1) columns: slots 2t, 2t+1 -> step columns
                // 4t, 4t+1 and slots 2t+8, 2t+9 -> 4t+2, 4t+3: one 8-byte read per row
                u32 a[2][kWM / 16][4];
#pragma unroll
                for (int h = 0; h < 2; ++h)
#pragma unroll
                    for (int i = 0; i < kWM / 16; ++i) {
                        const int col = 32 * ck + 16 * h + 4 * t;
                        const uint2 top = *reinterpret_cast<const uint2*>(&xs[wm + 16 * i + g][col]);
                        const uint2 bottom = *reinterpret_cast<const uint2*>(&xs[wm + 16 * i + g + 8][col]);
                        a[h][i][0] = top.x;
                        a[h][i][1] = bottom.x;
                        a[h][i][2] = top.y;
                        a[h][i][3] = bottom.y;
                    }
#pragma unroll
                for (int j = 0; j < kWN / 8; ++j) {
                    const int n = n_block + wn + 8 * j + g;
                    u32 word = 0;
                    float scale = 0.f, zero = 0.f;
                    if (n < N) {
                        word = reinterpret_cast<const u32*>(codes + (long long)n * (K / 2))[4 * chunk + t];
                        scale = scales[(long long)n * groups + grp];
                        zero = (float)zeros[(long long)n * groups + grp];
                    }
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        float v[4];
#pragma unroll
                        for (int b = 0; b < 4; ++b) v[b] = ((float)((word >> (8 * b + 4 * h)) & 0xFu) - zero) * scale;
                        const u32 frag[2] = {pack2(v[0], v[1]), pack2(v[2], v[3])};
#pragma unroll
                        for (int i = 0; i < kWM / 16; ++i) mma_16816<kIsBf16>(acc[i][j], a[h][i], frag);
                    }
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < kWM / 16; ++i)
#pragma unroll
        for (int j = 0; j < kWN / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int m = m_block + wm + 16 * i + g + 8 * (e / 2), n = n_block + wn + 8 * j + 2 * t + e % 2;
                if (m < M && n < N) store_as(acc[i][j][e], y[(long long)m * N + n]);
            }
}
