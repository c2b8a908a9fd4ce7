// GEMM: C[z] = alpha * A[z] @ B[z] + beta * C[z] over a batch of z, fp32 accumulation (double for float64).
//
// Operands are (M, K) @ (K, N) -> (M, N), each stored with a unit stride along one of its two dims, so
// transposed views need no copy:
//   A_T = 0: A(m, k) at a[m * lda + k]   (row-major M x K)      A_T = 1: A(m, k) at a[k * lda + m]  (A^T stored)
//   B_T = 0: B(k, n) at b[k * ldb + n]   (row-major K x N)      B_T = 1: B(k, n) at b[n * ldb + k]  (B^T stored)
//   C(m, n) at c[m * ldc + n] (row-major; the launcher allocates C or computes into a temporary).
// Batch: block z handles z = p.z0 + blockIdx.z, split as (zo, zi) = (z / batch_inner, z % batch_inner); operand X
// of batch z starts at x + zo * sx0 + zi * sx1 (strides in elements, 0 broadcasts one matrix over that batch
// dim). Launches of more than 65535 matrices are split by the launcher (p.z0 = 0, 65535, ...).
// beta == 0 never reads C (C may hold garbage); otherwise C is read and updated in place.
//
// Defines (defaults compile standalone):
//   T        element type of A and B: float | __half | __nv_bfloat16 | double (with FP64=1: gemm_naive only)
//   OUT_T    element type of C (default T; float is allowed for 16-bit T)
//   A_T, B_T layouts above (0 or 1)
//   VEC_A, VEC_B  (gemm_simt) 1: the operand may be read 4 elements at a time along its unit-stride dim: base
//            pointer aligned to 4 * sizeof(T) bytes, ld and batch strides multiples of 4 (the launcher checks)
//   SIMT_MIN_BLOCKS  (gemm_simt) __launch_bounds__ min blocks per SM: 2 on sm_90+ (128 registers, no spills
//            with nvcc 13.0), 1 below (sm_80 would spill at 128)
//   BM, BN, BK, WM, WN, STAGES, GROUP_M  (gemm_tc) block tile, k tile (default 64 bytes of k), warp tile,
//            cp.async pipeline depth, rasterization group (GROUP_M block rows walk all block columns together,
//            so the B tiles they share stay in L2)
//   FP64     1 with T=double: only gemm_naive is compiled (double accumulation)
//   ZT_MMA_EMULATE  use the portable C++ versions of ldmatrix / mma / cp.async (kernels/zt_mma.cuh) instead of
//            inline PTX (automatic where __CUDA_ARCH__ is undefined, e.g. tests/kernel_emulator.py; on a GPU it
//            checks the fragment layouts written there against the hardware's)
//
// Kernels (all: `ZT_STRIDED const T* a, ZT_STRIDED const T* b, ZT_STRIDED OUT_T* c, ZtGemmParams p`):
//   gemm_naive  block (16, 16), grid (ceil(N/16), ceil(M/16), batch); one thread per C element, a dot product
//               over K straight from global memory. The benchmark baseline, and the float64 path.
//   gemm_simt   fp32 SIMT, block 256, grid (ceil(N/128), ceil(M/128), batch), static shared memory
//               2 * 2 * 8 * 132 * 4 = 16.9 KB. Block tile 128 x 128 x 8, 8 x 8 outputs per thread, A and B
//               tiles double-buffered in shared memory (one __syncthreads per k tile), the next tile's global
//               loads issued before computing the current one. Any T (16-bit inputs widen to float in shared
//               memory), any M, N, K (edge tiles load zeros and store with bounds).
//   gemm_tc     tensor cores (sm_80+): T = __half / __nv_bfloat16 -> mma.sync m16n8k16 (fp32 accumulate);
//               T = float -> mma.sync m16n8k8 tf32 (inputs rounded to tf32 with cvt.rna).
//               block (BM/WM)*(BN/WN)*32, grid (ceil(N/BN), ceil(M/BM), batch), dynamic shared memory
//               STAGES * (A tile + B tile) * sizeof(T) bytes with
//                 A tile = A_T ? BK * (BM + 8) : BM * (BK + 16/sizeof(T))      (elements)
//                 B tile = B_T ? BN * (BK + 16/sizeof(T)) : BK * (BN + 8)
//               (the launcher computes the same; beyond 48 KB it is opted in). Needs 16-byte aligned rows: base
//               pointers 16-byte aligned, lda, ldb and the batch strides multiples of 16/sizeof(T); any M, N, K
//               (cp.async zero-fills the parts of edge tiles outside the matrix).
//
// gemm_tc design. Each warp owns a WM x WN piece of the block tile: (WM/16) x (WN/8) mma tiles, accumulators in
// registers. Global -> shared with 16-byte cp.async.cg in a STAGES-deep ring: tile kt+STAGES-1 is issued while
// tile kt is computed; `cp.async.wait_group STAGES-2` + __syncthreads make tile kt visible, and the same
// barrier proves every warp is done with the slot that the next copy overwrites (it was read in iteration
// kt-1). Shared tiles are padded (16 bytes per row for k-contiguous tiles, 8 elements for m/n-contiguous
// ones) so the 8 row addresses of each ldmatrix phase fall in distinct 16-byte bank groups, and the 32-bit
// reads of the tf32 transposed cases (rows of BM + 8 floats: bank 8 t + g) hit 32 distinct banks. Fragments
// (lane l; offsets from the warp's first row / column and the k step's first k):
//   16-bit, A_T=0 (smem [m][k]): ldmatrix.x4, lane l gives row (l % 16), column 8 (l / 16)
//   16-bit, A_T=1 (smem [k][m]): ldmatrix.x4.trans, row (l % 8) + 8 (l / 16), column 8 ((l / 8) % 2)
//   16-bit, B_T=1 (smem [n][k]): ldmatrix.x4 for two n8 tiles, row (l % 8) + 8 (l / 16), column 8 ((l / 8) % 2);
//                                registers 0, 1 -> first tile, 2, 3 -> second
//   16-bit, B_T=0 (smem [k][n]): ldmatrix.x4.trans, row (l % 8) + 8 ((l / 8) % 2), column 8 (l / 16); same order
//   tf32, A_T=0 / B_T=1: ldmatrix.x4 of 8 x 4-float matrices (lane l receives element (l / 4, l % 4)): A row
//                        (l % 16), column 4 (l / 16); B row (l % 8) + 8 (l / 16), column 4 ((l / 8) % 2)
//   tf32, A_T=1 / B_T=0: 32-bit shared loads of each fragment element
// Accumulator i of tile (mi, ni) is C(wm + 16 mi + g + 8 (i / 2), wn + 8 ni + 2 t + (i % 2)), g = lane / 4,
// t = lane % 4 (PTX ISA 9.7.14.5.7-8, "Matrix fragments for mma.m16n8k8 / mma.m16n8k16").
//
// Registers (nvcc 13.0 ptxas, sm_80 / sm_90a, zero spills in every variant below): gemm_naive 32 / 32,
// gemm_simt 133 / 125, gemm_tc fp16/bf16 128x128 (warps 64x64, 4 stages) 222 / 228 (1 block of 4 warps + 80 KB
// shared per block: 2 blocks per SM on H100), tf32 206 / 210, 64x64 (warps 32x32) 70 / 72.
// Verified without a GPU only: index math, edges, layouts and pipeline order run under tests/kernel_emulator.py
// with the stand-ins (test_cuda_gemm.py's emulated cases); the stand-ins follow the PTX ISA tables, and running
// with ZT_MMA_EMULATE on a GPU checks them against the hardware. Speed is unmeasured.
//
// zt-variants: | T=__half | T=__nv_bfloat16 | T=__nv_bfloat16,OUT_T=float | A_T=1 | B_T=1 | A_T=1,B_T=1,VEC_A=1,VEC_B=1 | VEC_A=1,VEC_B=1 | T=__half,A_T=1,B_T=1 | T=__nv_bfloat16,A_T=1 | T=__nv_bfloat16,B_T=1 | T=__nv_bfloat16,BN=256,WN=64 | T=__nv_bfloat16,BM=64,BN=64,WM=32,WN=32,STAGES=3 | T=__half,BM=64,BN=128,WM=32,WN=64,STAGES=3,A_T=1,B_T=1 | T=float,A_T=1,B_T=0 | T=float,A_T=0,B_T=1 | T=__nv_bfloat16,STAGES=2 | T=double,FP64=1 | T=double,FP64=1,A_T=1,B_T=1 | T=float,BM=64,BN=64,WM=32,WN=32,STAGES=3,A_T=1,B_T=1

#include "zt_device.cuh"
#include "zt_mma.cuh"

#ifndef T
#define T float
#endif
#ifndef OUT_T
#define OUT_T T
#endif
#ifndef A_T
#define A_T 0
#endif
#ifndef B_T
#define B_T 0
#endif
#ifndef FP64
#define FP64 0
#endif
#ifndef VEC_A
#define VEC_A 0
#endif
#ifndef VEC_B
#define VEC_B 0
#endif
#ifndef BM
#define BM 128
#endif
#ifndef BN
#define BN 128
#endif
#ifndef BK
#define BK (64 / (int)sizeof(T))
#endif
#ifndef WM
#define WM 64
#endif
#ifndef WN
#define WN 64
#endif
#ifndef STAGES
#define STAGES 4
#endif
#ifndef GROUP_M
#define GROUP_M 8
#endif

struct ZtGemmParams {
    long long lda, ldb, ldc;  // leading dimensions (elements) of the stored A, B, C
    long long sa0, sa1;       // batch strides of A (outer, inner), elements; 0 = broadcast
    long long sb0, sb1;
    long long sc0, sc1;
    int m, n, k;
    int z0;           // batch index of blockIdx.z == 0 (launches of more than 65535 matrices are split)
    int batch_inner;  // size of the inner batch dim (>= 1)
    float alpha, beta;
};

// ------------------------------------------------------------------------------------------ conversions
#if FP64
typedef double acc_t;  // gemm_naive accumulates float64 inputs in double
#else
typedef float acc_t;
#endif

// Two adjacent outputs: one 4/8-byte store when the address allows it, else two scalar stores.
__device__ __forceinline__ void store_pair(float* p, float v0, float v1) {
    if ((reinterpret_cast<unsigned long long>(p) & 7ull) == 0) {
        *reinterpret_cast<float2*>(p) = make_float2(v0, v1);
    } else {
        p[0] = v0;
        p[1] = v1;
    }
}
__device__ __forceinline__ void store_pair(__half* p, float v0, float v1) {
    if ((reinterpret_cast<unsigned long long>(p) & 3ull) == 0) {
        *reinterpret_cast<__half2*>(p) = __floats2half2_rn(v0, v1);
    } else {
        p[0] = __float2half_rn(v0);
        p[1] = __float2half_rn(v1);
    }
}
__device__ __forceinline__ void store_pair(__nv_bfloat16* p, float v0, float v1) {
    if ((reinterpret_cast<unsigned long long>(p) & 3ull) == 0) {
        *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(v0, v1);
    } else {
        p[0] = __float2bfloat16_rn(v0);
        p[1] = __float2bfloat16_rn(v1);
    }
}

// 4 consecutive elements in the compute type: one 16-byte load for float, 8 bytes for 16-bit types, two 16-byte
// loads for double. p must be aligned to 4 elements.
#if FP64
struct __align__(32) Vec4 { double x, y, z, w; };
#else
struct __align__(16) Vec4 { float x, y, z, w; };
#endif
__device__ __forceinline__ Vec4 make_vec4(acc_t x, acc_t y, acc_t z, acc_t w) {
    Vec4 v;
    v.x = x;
    v.y = y;
    v.z = z;
    v.w = w;
    return v;
}
__device__ __forceinline__ Vec4 load4(const double* p) {
    const double2 lo = *reinterpret_cast<const double2*>(p), hi = *reinterpret_cast<const double2*>(p + 2);
    return make_vec4((acc_t)lo.x, (acc_t)lo.y, (acc_t)hi.x, (acc_t)hi.y);
}
__device__ __forceinline__ Vec4 load4(const float* p) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    return make_vec4(v.x, v.y, v.z, v.w);
}
__device__ __forceinline__ Vec4 load4(const __half* p) {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    const float2 lo = __half22float2(*reinterpret_cast<const __half2*>(&raw.x));
    const float2 hi = __half22float2(*reinterpret_cast<const __half2*>(&raw.y));
    return make_vec4(lo.x, lo.y, hi.x, hi.y);
}
__device__ __forceinline__ Vec4 load4(const __nv_bfloat16* p) {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
    const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
    return make_vec4(lo.x, lo.y, hi.x, hi.y);
}

__device__ __forceinline__ void store_pair(double* p, double v0, double v1) {
    if ((reinterpret_cast<unsigned long long>(p) & 15ull) == 0) {
        *reinterpret_cast<double2*>(p) = make_double2(v0, v1);
    } else {
        p[0] = v0;
        p[1] = v1;
    }
}

__device__ __forceinline__ acc_t epilogue(acc_t acc, const OUT_T* c, const ZtGemmParams& p) {
    return p.beta == 0.0f ? (acc_t)p.alpha * acc : (acc_t)p.alpha * acc + (acc_t)p.beta * widen(*c);
}

// ------------------------------------------------------------------------------------------ gemm_naive
extern "C" __global__ void gemm_naive(ZT_STRIDED const T* a, ZT_STRIDED const T* b, ZT_STRIDED OUT_T* c,
                                      ZtGemmParams p) {
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    const int m = blockIdx.y * blockDim.y + threadIdx.y;
    if (m >= p.m || n >= p.n) return;
    const int z = p.z0 + (int)blockIdx.z;
    const int zo = z / p.batch_inner, zi = z % p.batch_inner;
    const T* az = a + zo * p.sa0 + zi * p.sa1;
    const T* bz = b + zo * p.sb0 + zi * p.sb1;
    OUT_T* cz = c + zo * p.sc0 + zi * p.sc1 + (long long)m * p.ldc + n;
    acc_t acc = 0;
    for (int k = 0; k < p.k; ++k) {
        const acc_t av = widen(A_T ? az[(long long)k * p.lda + m] : az[(long long)m * p.lda + k]);
        const acc_t bv = widen(B_T ? bz[(long long)n * p.ldb + k] : bz[(long long)k * p.ldb + n]);
        acc += av * bv;
    }
    store_as(epilogue(acc, cz, p), *cz);
}

// ------------------------------------------------------------------------------------------ gemm_simt
// Block tile 128 x 128, k tile 8, 256 threads. Shared tiles are k-major: as[k][m], bs[k][n] (rows padded to 132
// floats so the transposing stores below hit 32 distinct banks).
//
// Global -> registers (4 elements of A and 4 of B per thread and k tile; t = threadIdx.x):
//   A_T=0: t -> row m = t / 2, k = 4 * (t % 2) .. +3 (contiguous in memory), stored to as[k + i][m]
//   A_T=1: t -> k = t / 32, rows m = 4 * (t % 32) .. +3 (contiguous), stored to as[k][m .. m+3] as a float4
//   B_T=0: t -> k = t / 32, cols n = 4 * (t % 32) .. +3 (contiguous), stored to bs[k][n .. n+3]
//   B_T=1: t -> col n = t / 2, k = 4 * (t % 2) .. +3 (contiguous), stored to bs[k + i][n]
// Compute: warp w, lane l -> ty = 4 * (w / 2) + l / 8, tx = 8 * (w % 2) + l % 8 (both 0..15). The thread owns
// rows {4 ty + i, 64 + 4 ty + i} and cols {4 tx + j, 64 + 4 tx + j}, i, j in 0..3: per k, two float4 reads of
// as (broadcast within each 8-lane phase) and two of bs (8 consecutive float4 per phase: conflict-free).
#define SIMT_BM 128
#define SIMT_BN 128
#define SIMT_BK 8
#define SIMT_LD 132
#ifndef SIMT_MIN_BLOCKS
// NOTE: 2 blocks per SM cap registers at 128: nvcc 13.0 fits that without spills for sm_90 (~125 used) but spills
// for sm_80 (~133 wanted), which therefore runs one block of 8 warps per SM.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !FP64  // (double accumulators need ~234)
#define SIMT_MIN_BLOCKS 2
#else
#define SIMT_MIN_BLOCKS 1
#endif
#endif

// Where this thread's 4 A and 4 B elements of k tile kt come from: a pointer advanced by one k tile per step, and
// how many of the 4 lie inside the matrix (fewer at the edges, never negative).
struct SimtLoader {
    const T* pa;
    const T* pb;
    long long step_a, step_b;  // elements from one k tile to the next
    int lim_a, lim_b;          // A_T=0 / B_T=1: the row (col) is inside ? K - k of the first element : 0;
                               // A_T=1 / B_T=0: M - m (N - n) of the first element, the k row checked apart
    int k_a, k_b;              // k of this thread's first element in the current tile
    Vec4 va, vb;               // the loaded values, in the order they are stored to shared memory
};

__device__ __forceinline__ Vec4 load4_guarded(const T* p, int valid) {
    // p[0 .. 3], those at index >= valid read as 0 (valid may be <= 0: nothing is read)
    acc_t v[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = i < valid ? widen(p[i]) : (acc_t)0;
    return make_vec4(v[0], v[1], v[2], v[3]);
}

__device__ __forceinline__ void simt_init(SimtLoader& ld, const T* az, const T* bz, const ZtGemmParams& p, int m0,
                                          int n0) {
    const int t = threadIdx.x;
#if A_T == 0
    {
        const int m = m0 + t / 2;
        ld.k_a = 4 * (t % 2);
        ld.pa = az + (long long)m * p.lda + ld.k_a;
        ld.step_a = SIMT_BK;
        ld.lim_a = m < p.m ? p.k : 0;
    }
#else
    {
        const int m = m0 + 4 * (t % 32);
        ld.k_a = t / 32;
        ld.pa = az + (long long)ld.k_a * p.lda + m;
        ld.step_a = SIMT_BK * p.lda;
        ld.lim_a = p.m - m;
    }
#endif
#if B_T == 0
    {
        const int n = n0 + 4 * (t % 32);
        ld.k_b = t / 32;
        ld.pb = bz + (long long)ld.k_b * p.ldb + n;
        ld.step_b = SIMT_BK * p.ldb;
        ld.lim_b = p.n - n;
    }
#else
    {
        const int n = n0 + t / 2;
        ld.k_b = 4 * (t % 2);
        ld.pb = bz + (long long)n * p.ldb + ld.k_b;
        ld.step_b = SIMT_BK;
        ld.lim_b = n < p.n ? p.k : 0;
    }
#endif
}

// Load the current k tile's elements and advance to the next tile.
__device__ __forceinline__ void simt_load(SimtLoader& ld, const ZtGemmParams& p) {
#if A_T == 0
    const int valid_a = min(4, ld.lim_a - ld.k_a);  // lim_a is 0 for rows past M
#else
    const int valid_a = ld.k_a < p.k ? min(4, ld.lim_a) : 0;
#endif
#if B_T == 0
    const int valid_b = ld.k_b < p.k ? min(4, ld.lim_b) : 0;
#else
    const int valid_b = min(4, ld.lim_b - ld.k_b);
#endif
    ld.va = (VEC_A && valid_a == 4) ? load4(ld.pa) : load4_guarded(ld.pa, valid_a);
    ld.vb = (VEC_B && valid_b == 4) ? load4(ld.pb) : load4_guarded(ld.pb, valid_b);
    ld.pa += ld.step_a;
    ld.pb += ld.step_b;
    ld.k_a += SIMT_BK;
    ld.k_b += SIMT_BK;
}

__device__ __forceinline__ void simt_store(const SimtLoader& ld, acc_t (*as)[SIMT_LD], acc_t (*bs)[SIMT_LD]) {
    const int t = threadIdx.x;
#if A_T == 0
    {
        const int m = t / 2, k = 4 * (t % 2);
        as[k + 0][m] = ld.va.x;
        as[k + 1][m] = ld.va.y;
        as[k + 2][m] = ld.va.z;
        as[k + 3][m] = ld.va.w;
    }
#else
    *reinterpret_cast<Vec4*>(&as[t / 32][4 * (t % 32)]) = ld.va;
#endif
#if B_T == 0
    *reinterpret_cast<Vec4*>(&bs[t / 32][4 * (t % 32)]) = ld.vb;
#else
    {
        const int n = t / 2, k = 4 * (t % 2);
        bs[k + 0][n] = ld.vb.x;
        bs[k + 1][n] = ld.vb.y;
        bs[k + 2][n] = ld.vb.z;
        bs[k + 3][n] = ld.vb.w;
    }
#endif
}

extern "C" __global__ void __launch_bounds__(256, SIMT_MIN_BLOCKS)
gemm_simt(ZT_STRIDED const T* a, ZT_STRIDED const T* b, ZT_STRIDED OUT_T* c, ZtGemmParams p) {
    __align__(32) __shared__ acc_t as[2][SIMT_BK][SIMT_LD];
    __align__(32) __shared__ acc_t bs[2][SIMT_BK][SIMT_LD];
    const int m0 = blockIdx.y * SIMT_BM, n0 = blockIdx.x * SIMT_BN;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int ty = 4 * (warp / 2) + lane / 8, tx = 8 * (warp % 2) + lane % 8;
    const int ktiles = (p.k + SIMT_BK - 1) / SIMT_BK;

    {
        const int z = p.z0 + (int)blockIdx.z;  // NOTE: one z per block (a z loop costs ~30 registers)
        const int zo = z / p.batch_inner, zi = z % p.batch_inner;
        const T* az = a + zo * p.sa0 + zi * p.sa1;
        const T* bz = b + zo * p.sb0 + zi * p.sb1;
        OUT_T* cz = c + zo * p.sc0 + zi * p.sc1;

        acc_t acc[8][8];
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[i][j] = 0;

        SimtLoader ld;
        simt_init(ld, az, bz, p, m0, n0);
        if (ktiles > 0) {
            simt_load(ld, p);
            simt_store(ld, as[0], bs[0]);
        }
        __syncthreads();
        for (int kt = 0; kt < ktiles; ++kt) {
            const int cur = kt & 1;
            if (kt + 1 < ktiles) simt_load(ld, p);
#pragma unroll
            for (int kk = 0; kk < SIMT_BK; ++kk) {
                acc_t ra[8], rb[8];
                const Vec4 a0 = *reinterpret_cast<const Vec4*>(&as[cur][kk][4 * ty]);
                const Vec4 a1 = *reinterpret_cast<const Vec4*>(&as[cur][kk][64 + 4 * ty]);
                const Vec4 b0 = *reinterpret_cast<const Vec4*>(&bs[cur][kk][4 * tx]);
                const Vec4 b1 = *reinterpret_cast<const Vec4*>(&bs[cur][kk][64 + 4 * tx]);
                ra[0] = a0.x; ra[1] = a0.y; ra[2] = a0.z; ra[3] = a0.w;
                ra[4] = a1.x; ra[5] = a1.y; ra[6] = a1.z; ra[7] = a1.w;
                rb[0] = b0.x; rb[1] = b0.y; rb[2] = b0.z; rb[3] = b0.w;
                rb[4] = b1.x; rb[5] = b1.y; rb[6] = b1.z; rb[7] = b1.w;
#pragma unroll
                for (int i = 0; i < 8; ++i)
#pragma unroll
                    for (int j = 0; j < 8; ++j) acc[i][j] = fma(ra[i], rb[j], acc[i][j]);
            }
            // NOTE: the other buffer was last read in iteration kt-1, before the barrier that ended it
            if (kt + 1 < ktiles) simt_store(ld, as[cur ^ 1], bs[cur ^ 1]);
            __syncthreads();
        }

        // acc[i][j] is C(row_i, col_j): row_i = m0 + 4 ty + i (i < 4) or m0 + 64 + 4 ty + i - 4, cols alike
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int m = m0 + (i < 4 ? 4 * ty + i : 64 + 4 * ty + i - 4);
            if (m >= p.m) continue;
            OUT_T* crow = cz + (long long)m * p.ldc;
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const int n = n0 + half * 64 + 4 * tx;
#pragma unroll
                for (int j = 0; j < 4; j += 2) {
                    if (n + j + 1 < p.n) {
                        store_pair(crow + n + j, epilogue(acc[i][4 * half + j], crow + n + j, p),
                                   epilogue(acc[i][4 * half + j + 1], crow + n + j + 1, p));
                    } else if (n + j < p.n) {
                        store_as(epilogue(acc[i][4 * half + j], crow + n + j, p), *(crow + n + j));
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------ gemm_tc
constexpr int kWarpsM = BM / WM, kWarpsN = BN / WN;
constexpr int kThreads = kWarpsM * kWarpsN * 32;

#if FP64
// Tensor cores take no float64 here (the launcher sends float64 to gemm_naive). With FP64=1 gemm_tc keeps its
// launch contract with plain double dot products: thread t computes the block tile's elements t, t + threads, ...
extern "C" __global__ void __launch_bounds__(kThreads)
gemm_tc(ZT_STRIDED const T* a, ZT_STRIDED const T* b, ZT_STRIDED OUT_T* c, ZtGemmParams p) {
    const int z = p.z0 + (int)blockIdx.z;
    const int zo = z / p.batch_inner, zi = z % p.batch_inner;
    const T* az = a + zo * p.sa0 + zi * p.sa1;
    const T* bz = b + zo * p.sb0 + zi * p.sb1;
    OUT_T* cz = c + zo * p.sc0 + zi * p.sc1;
    for (int idx = threadIdx.x; idx < BM * BN; idx += blockDim.x) {
        const int m = blockIdx.y * BM + idx / BN, n = blockIdx.x * BN + idx % BN;
        if (m >= p.m || n >= p.n) continue;
        acc_t acc = 0;
        for (int k = 0; k < p.k; ++k) {
            acc += widen(A_T ? az[(long long)k * p.lda + m] : az[(long long)m * p.lda + k]) *
                   widen(B_T ? bz[(long long)n * p.ldb + k] : bz[(long long)k * p.ldb + n]);
        }
        OUT_T* cp = cz + (long long)m * p.ldc + n;
        store_as(epilogue(acc, cp, p), *cp);
    }
}
#else
constexpr int kTF32 = sizeof(T) == 4;
constexpr int kIsBf16 = ZtMma16<T>::is_bf16;
constexpr int kEl = (int)sizeof(T);
constexpr int kChunk = 16 / kEl;         // elements per 16-byte copy
constexpr int kKStep = kTF32 ? 8 : 16;   // k of one mma
constexpr int kMI = WM / 16, kNI = WN / 8;
// shared tiles: row lengths (elements) and sizes; one pipeline stage holds an A tile, then a B tile
constexpr int kLdA = A_T ? BM + 8 : BK + kChunk;  // A_T: [BK][BM + 8], else [BM][BK + chunk]
constexpr int kLdB = B_T ? BK + kChunk : BN + 8;  // B_T: [BN][BK + chunk], else [BK][BN + 8]
constexpr int kTileA = A_T ? BK * kLdA : BM * kLdA;
constexpr int kTileB = B_T ? BN * kLdB : BK * kLdB;
constexpr int kStageBytes = (kTileA + kTileB) * kEl;

static_assert(BM % WM == 0 && BN % WN == 0, "the block tile must be a whole number of warp tiles");
static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tiles are made of 16 x 16 pieces");
static_assert(BK % kKStep == 0 && BK % kChunk == 0, "BK must be a multiple of the mma k and of the copy chunk");
static_assert(STAGES >= 2, "the pipeline needs at least 2 stages");
static_assert(kStageBytes % 16 == 0, "stages must stay 16-byte aligned");

// cp.async of a ROWS x COLS tile (COLS contiguous in memory) starting at (row0, col0) of a matrix with nrows x
// ncols elements and leading dimension ld, into shared memory at dst with row length LDS. Thread t copies the
// 16-byte chunks at tile row t / (COLS / kChunk) + i * kRowStep, column kChunk * (t % (COLS / kChunk)): consecutive
// threads copy consecutive chunks of a row, and one pointer plus a fixed stride reaches all of a thread's
// chunks. Chunks past the matrix's edge are zero-filled (partially at a ragged edge).
template <int ROWS, int COLS, int LDS>
__device__ __forceinline__ void tc_load_tile(SmemAddr dst, const T* g, long long ld, int row0, int nrows, int col0,
                                             int ncols) {
    constexpr int kPerRow = COLS / kChunk;
    static_assert(kThreads % kPerRow == 0, "a row of the tile must not straddle two thread groups");
    constexpr int kRowStep = kThreads / kPerRow;
    constexpr int kIters = (ROWS + kRowStep - 1) / kRowStep;
    const int r = (int)threadIdx.x / kPerRow, col = kChunk * ((int)threadIdx.x % kPerRow);
    int valid_cols = ncols - (col0 + col);
    valid_cols = valid_cols < 0 ? 0 : (valid_cols > kChunk ? kChunk : valid_cols);
    const T* src = g + (long long)(row0 + r) * ld + col0 + col;
#pragma unroll
    for (int i = 0; i < kIters; ++i) {
        if (ROWS % kRowStep == 0 || r + i * kRowStep < ROWS) {
            const int valid = row0 + r + i * kRowStep < nrows ? valid_cols : 0;
            cp_async_16(dst + ((r + i * kRowStep) * LDS + col) * kEl, valid > 0 ? src + i * kRowStep * ld : g,
                        valid * kEl);
        }
    }
}

__device__ __forceinline__ void tc_load_stage(SmemAddr stage, const T* az, const T* bz, const ZtGemmParams& p,
                                              int m0, int n0, int k0) {
#if A_T
    tc_load_tile<BK, BM, kLdA>(stage, az, p.lda, k0, p.k, m0, p.m);
#else
    tc_load_tile<BM, BK, kLdA>(stage, az, p.lda, m0, p.m, k0, p.k);
#endif
#if B_T
    tc_load_tile<BN, BK, kLdB>(stage + kTileA * kEl, bz, p.ldb, n0, p.n, k0, p.k);
#else
    tc_load_tile<BK, BN, kLdB>(stage + kTileA * kEl, bz, p.ldb, k0, p.k, n0, p.n);
#endif
}

// Byte offsets, within a stage, of this lane's ldmatrix row for the first A fragment (warp rows wm.., k 0) and
// the first B fragment pair (warp cols wn.., k 0); the others are these plus compile-time constants
// (a_step / b_step below), which fold into the instructions.
__device__ __forceinline__ int tc_lane_offset_a(int wm, int lane) {
    if (!kTF32) {
        return (A_T ? (lane % 8 + 8 * (lane / 16)) * kLdA + wm + 8 * ((lane / 8) % 2)
                    : (wm + lane % 16) * kLdA + 8 * (lane / 16)) * kEl;
    }
    return ((wm + lane % 16) * kLdA + 4 * (lane / 16)) * kEl;  // tf32, A_T=0 (A_T=1 reads elements directly)
}
__device__ __forceinline__ int tc_lane_offset_b(int wn, int lane) {
    if (!kTF32) {
        return (B_T ? (wn + lane % 8 + 8 * (lane / 16)) * kLdB + 8 * ((lane / 8) % 2)
                    : (lane % 8 + 8 * ((lane / 8) % 2)) * kLdB + wn + 8 * (lane / 16)) * kEl;
    }
    return ((wn + lane % 8 + 8 * (lane / 16)) * kLdB + 4 * ((lane / 8) % 2)) * kEl;  // tf32, B_T=1
}
// bytes from fragment (mi, kk) to (mi + 1, kk) and from k 0 to k kk
__device__ constexpr int a_step_mi() { return (A_T ? 16 : 16 * kLdA) * kEl; }
__device__ constexpr int a_step_k(int kk) { return (A_T ? kk * kLdA : kk) * kEl; }
__device__ constexpr int b_step_ni(int ni) { return (B_T ? 8 * ni * kLdB : 8 * ni) * kEl; }
__device__ constexpr int b_step_k(int kk) { return (B_T ? kk : kk * kLdB) * kEl; }

// The A fragment of rows wm + 16 mi.. of the warp, k kk.. of the stage at `stage` (lane_off from tc_lane_offset_a).
__device__ __forceinline__ void tc_frag_a(u32 (&r)[4], SmemAddr stage, const T* stage_ptr, int lane_off, int mi,
                                          int kk, int wm, int lane) {
    if (!kTF32) {
        if (A_T) {
            ldmatrix_x4_trans(r, stage + lane_off + mi * a_step_mi() + a_step_k(kk));
        } else {
            ldmatrix_x4(r, stage + lane_off + mi * a_step_mi() + a_step_k(kk));
        }
    } else if (!A_T) {
        ldmatrix_x4(r, stage + lane_off + mi * a_step_mi() + a_step_k(kk));
#pragma unroll
        for (int i = 0; i < 4; ++i) r[i] = to_tf32(__uint_as_float(r[i]));
    } else {  // smem [k][m]: a = A(g, t), A(g+8, t), A(g, t+4), A(g+8, t+4)
        const float* s = reinterpret_cast<const float*>(stage_ptr) + wm + 16 * mi + lane / 4;
        const int t = lane % 4;
        r[0] = to_tf32(s[(kk + t) * kLdA]);
        r[1] = to_tf32(s[(kk + t) * kLdA + 8]);
        r[2] = to_tf32(s[(kk + t + 4) * kLdA]);
        r[3] = to_tf32(s[(kk + t + 4) * kLdA + 8]);
    }
}

// The B fragments of the two n8 tiles at warp cols wn + 8 ni.. and wn + 8 ni + 8.., k kk..: b0 and b1.
__device__ __forceinline__ void tc_frag_b(u32 (&b0)[2], u32 (&b1)[2], SmemAddr stage, const T* stage_ptr,
                                          int lane_off, int ni, int kk, int wn, int lane) {
    u32 r[4];
    const SmemAddr at = stage + kTileA * kEl + lane_off + b_step_ni(ni) + b_step_k(kk);
    if (!kTF32) {
        if (B_T) {
            ldmatrix_x4(r, at);
        } else {
            ldmatrix_x4_trans(r, at);
        }
    } else if (B_T) {
        ldmatrix_x4(r, at);
#pragma unroll
        for (int i = 0; i < 4; ++i) r[i] = to_tf32(__uint_as_float(r[i]));
    } else {  // smem [k][n]: b = B(t, g), B(t+4, g) for each tile
        const float* s = reinterpret_cast<const float*>(stage_ptr + kTileA) + wn + 8 * ni + lane / 4;
        const int t = lane % 4;
        r[0] = to_tf32(s[(kk + t) * kLdB]);
        r[1] = to_tf32(s[(kk + t + 4) * kLdB]);
        r[2] = to_tf32(s[(kk + t) * kLdB + 8]);
        r[3] = to_tf32(s[(kk + t + 4) * kLdB + 8]);
    }
    b0[0] = r[0];
    b0[1] = r[1];
    b1[0] = r[2];
    b1[1] = r[3];
}

extern "C" __global__ void __launch_bounds__(kThreads)
gemm_tc(ZT_STRIDED const T* a, ZT_STRIDED const T* b, ZT_STRIDED OUT_T* c, ZtGemmParams p) {
    extern __shared__ __align__(16) unsigned char tc_smem[];
    const SmemAddr smem = smem_addr(tc_smem);
    const T* const smem_ptr = reinterpret_cast<const T*>(tc_smem);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int wm = (warp / kWarpsN) * WM, wn = (warp % kWarpsN) * WN;
    const int lane_a = tc_lane_offset_a(wm, lane), lane_b = tc_lane_offset_b(wn, lane);

    // Grouped rasterization: GROUP_M block rows run together over all block columns.
    const int tiles_n = gridDim.x, tiles_m = gridDim.y;
    const int linear = blockIdx.y * tiles_n + blockIdx.x;
    const int per_group = GROUP_M * tiles_n;
    const int first_m = (linear / per_group) * GROUP_M;
    const int group_rows = min(tiles_m - first_m, GROUP_M);
    const int m0 = (first_m + (linear % per_group) % group_rows) * BM;
    const int n0 = ((linear % per_group) / group_rows) * BN;
    const int ktiles = (p.k + BK - 1) / BK;

    {
        const int z = p.z0 + (int)blockIdx.z;  // NOTE: one z per block (a z loop costs ~30 registers)
        const int zo = z / p.batch_inner, zi = z % p.batch_inner;
        const T* az = a + zo * p.sa0 + zi * p.sa1;
        const T* bz = b + zo * p.sb0 + zi * p.sb1;
        OUT_T* cz = c + zo * p.sc0 + zi * p.sc1;

        float acc[kMI][kNI][4];
#pragma unroll
        for (int mi = 0; mi < kMI; ++mi)
#pragma unroll
            for (int ni = 0; ni < kNI; ++ni)
#pragma unroll
                for (int i = 0; i < 4; ++i) acc[mi][ni][i] = 0.0f;

        // Prologue: tiles 0 .. STAGES-2 in flight, one commit group each (empty groups keep the count uniform).
#pragma unroll
        for (int s = 0; s < STAGES - 1; ++s) {
            if (s < ktiles) tc_load_stage(smem + s * kStageBytes, az, bz, p, m0, n0, s * BK);
            cp_async_commit();
        }
        for (int kt = 0; kt < ktiles; ++kt) {
            // Groups committed so far: STAGES-1+kt; allowing STAGES-2 pending means tiles 0..kt have landed.
            cp_async_wait<STAGES - 2>();
            __syncthreads();
            const int next = kt + STAGES - 1;
            if (next < ktiles) tc_load_stage(smem + (next % STAGES) * kStageBytes, az, bz, p, m0, n0, next * BK);
            cp_async_commit();

            const int slot = kt % STAGES;
            const SmemAddr stage = smem + slot * kStageBytes;
            const T* stage_ptr = smem_ptr + slot * (kTileA + kTileB);
#pragma unroll
            for (int kk = 0; kk < BK; kk += kKStep) {
                u32 fa[kMI][4];
#pragma unroll
                for (int mi = 0; mi < kMI; ++mi) tc_frag_a(fa[mi], stage, stage_ptr, lane_a, mi, kk, wm, lane);
                // NOTE: B fragments two n8 tiles at a time, used at once: fewer registers live than loading all
#pragma unroll
                for (int ni = 0; ni < kNI; ni += 2) {
                    u32 fb0[2], fb1[2];
                    tc_frag_b(fb0, fb1, stage, stage_ptr, lane_b, ni, kk, wn, lane);
#pragma unroll
                    for (int mi = 0; mi < kMI; ++mi) {
                        if (kTF32) {
                            mma_1688_tf32(acc[mi][ni], fa[mi], fb0);
                            mma_1688_tf32(acc[mi][ni + 1], fa[mi], fb1);
                        } else {
                            mma_16816<kIsBf16>(acc[mi][ni], fa[mi], fb0);
                            mma_16816<kIsBf16>(acc[mi][ni + 1], fa[mi], fb1);
                        }
                    }
                }
            }
        }
        cp_async_wait<0>();  // NOTE: only empty groups can be pending here; no copy outlives the block

        const int g = lane / 4, t = lane % 4;
#pragma unroll
        for (int mi = 0; mi < kMI; ++mi) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {  // accumulator pairs (0, 1) on row g, (2, 3) on row g + 8
                const int m = m0 + wm + 16 * mi + g + 8 * h;
                if (m >= p.m) continue;
                OUT_T* crow = cz + (long long)m * p.ldc;
#pragma unroll
                for (int ni = 0; ni < kNI; ++ni) {
                    const int n = n0 + wn + 8 * ni + 2 * t;
                    if (n + 1 < p.n) {
                        store_pair(crow + n, epilogue(acc[mi][ni][2 * h], crow + n, p),
                                   epilogue(acc[mi][ni][2 * h + 1], crow + n + 1, p));
                    } else if (n < p.n) {
                        store_as(epilogue(acc[mi][ni][2 * h], crow + n, p), *(crow + n));
                    }
                }
            }
        }
    }
}
#endif  // FP64
