// Attention on tensor cores for fp16 / bf16: softmax(scale * Q K^T + mask) V without materializing the score
// matrix, FlashAttention-2's algorithm (online softmax over streamed key tiles in the forward; the backward
// recomputes P from the forward's lse), mma.sync m16n8k16 with fp32 accumulation (kernels/zt_mma.cuh). The same
// contract and ZtAttnParams as kernels/attention.cu (the SIMT kernels, every float type, and the reference these
// are tested against); its attn_bwd_preprocess computes the backward's delta for both.
//
// Shapes: q (B, Hq, Sq, D), k and v (B, Hkv, Sk, D) with Hq a multiple of Hkv (query head h reads kv head
// h / (Hq / Hkv)); any strides for batch, head and sequence (elements, in ZtAttnParams), the head dim contiguous,
// every row 16-byte aligned (base pointers 16-byte aligned, strides multiples of 8 elements: the launcher
// checks, and takes the SIMT kernels otherwise). out and dout (B, Hq, Sq, D) strided likewise. lse and delta
// (B, Hq, Sq) float; dq (B, Hq, Sq, D), dk and dv (B, Hkv, Sk, D) C-contiguous.
// Visibility of key j to query i, as in attention.cu: causal (p.causal = 1): j <= i + p.causal_offset (0 is
// PyTorch's is_causal); mask (NULL = none): ZT_ATTN_MASK_T bool keeps where true, a float type is added to the
// scaled scores; element (b, h, i, j) at mask + b m_sb + h m_sh + i m_sq + j m_sk (0 strides broadcast). A query
// that sees no key gets out = 0, lse = -inf and zero gradients. Softmax in base 2 (scores times scale log2(e),
// exp2); lse is stored in natural-log units.
//
// Defines (defaults compile standalone):
//   ZT_ATTN_T       __half | __nv_bfloat16: q, k, v, out, dout, dq, dk, dv
//   ZT_ATTN_MASK_T  mask element type: bool | float | __half | __nv_bfloat16 | double (default float)
//   HEAD_DIM        D: a multiple of 16, 16 .. 128 (default 64)
//   ATTN_WARPS      warps per block, 1 .. 8 (default 4); BM = 16 ATTN_WARPS rows per block, 16 per warp
//   ATTN_BN         rows per streamed tile, a multiple of 16 (default 64)
//   ZT_MMA_EMULATE  zt_mma.cuh's portable fragments instead of PTX (automatic under the CPU emulator)
//
// Kernels (ZtAttnParams p by value; block 32 ATTN_WARPS threads; dynamic shared memory (BM + 4 BN) rows of
// D + 8 elements (the 16-byte pad puts the 8 rows of each ldmatrix phase in distinct bank groups): a resident
// BM-row tile and two double-buffered BN-row tiles streamed with cp.async, the next pair issued before the
// current one is used; the launcher computes the same size, TcConfig.smem_bytes):
//   attn_fwd_tc(q, k, v, mask, out, lse, p)                         grid (ceil(Sq / BM), Hq, B)
//       Resident: the block's BM query rows; streamed: K and V tiles of BN keys. Warp w owns query rows
//       [16 w, 16 w + 16): its Q fragments sit in registers, S = Q K^T for the tile (BN / 8 accumulator tiles),
//       the running max / sum per row (a row lives in the 4 lanes of a quad), then P (rounded to the input
//       type, FlashAttention's choice) times V from the accumulators reused as A fragments. Causal blocks stop
//       at the last visible key tile; tiles with no edge, causal cut or mask skip the per-element checks.
//   attn_bwd_dkdv_tc(q, k, v, mask, dout, lse, delta, dk, dv, p)    grid (ceil(Sk / BM), Hkv, B)
//       Resident: the block's BM key rows (K, read by ldmatrix); each warp's 16 V rows are loaded once into
//       registers as A fragments. Streamed: Q and dout tiles of BN queries, over every query head of the kv
//       head's group (and under a causal mask only the queries that can see the block's keys). Per 16-query
//       chunk, warp w computes S^T = K Q^T and dP^T = V dout^T (16 keys x 16 queries), P^T = exp2(S^T - lse),
//       dS^T = P^T (dP^T - delta), then dV += P^T dout and dK += dS^T Q with P^T, dS^T as A fragments.
//   attn_bwd_dq_tc(q, k, v, mask, dout, lse, delta, dq, p)          grid (ceil(Sq / BM), Hq, B)
//       Resident: the block's BM query rows (Q fragments then kept in registers), dout fragments loaded once
//       into registers. Streamed: K and V tiles of BN keys. Per 16-key chunk: S = Q K^T, dP = dout V^T,
//       dS = P (dP - delta), dQ += dS K.
// dq, dk and dv include the softmax scale. Every result is written once (no atomics): the same bits every run.
//
// Verified without a GPU only, under tests/kernel_emulator.py against a float64 reference
// (tests/test_cuda_attention.py).
//
// zt-variants: | ZT_ATTN_T=__nv_bfloat16 | HEAD_DIM=128 | ZT_ATTN_T=__nv_bfloat16,HEAD_DIM=128 | HEAD_DIM=16 | HEAD_DIM=32 | HEAD_DIM=96,ZT_ATTN_MASK_T=bool | ZT_ATTN_MASK_T=__half,HEAD_DIM=128 | ATTN_WARPS=8,ATTN_BN=32,HEAD_DIM=128 | ATTN_WARPS=2,ATTN_BN=128

#include "zt_device.cuh"
#include "zt_mma.cuh"

#ifndef ZT_ATTN_T
#define ZT_ATTN_T __half
#endif
#ifndef ZT_ATTN_MASK_T
#define ZT_ATTN_MASK_T float
#endif
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef ATTN_WARPS
#define ATTN_WARPS 4
#endif
#ifndef ATTN_BN
#define ATTN_BN 64
#endif

struct ZtAttnParams {
    long long q_sb, q_sh, q_ss;        // strides (elements) of q over batch, head, sequence
    long long k_sb, k_sh, k_ss;
    long long v_sb, v_sh, v_ss;
    long long o_sb, o_sh, o_ss;        // out
    long long do_sb, do_sh, do_ss;     // dout (backward)
    long long m_sb, m_sh, m_sq, m_sk;  // mask (0 broadcasts)
    int batch, hq, hkv, sq, sk;
    int causal, causal_offset;
    double scale;  // softmax scale
};

typedef ZT_ATTN_T elem_t;

constexpr int kD = HEAD_DIM;
constexpr int kWarps = ATTN_WARPS;
constexpr int kThreads = 32 * kWarps;
constexpr int kBM = 16 * kWarps;  // resident rows per block
constexpr int kBN = ATTN_BN;      // rows per streamed tile
constexpr int kLd = kD + 8;       // shared row stride (elements)
constexpr int kChunks = kD / 8;   // 16-byte pieces per row
constexpr int kIsBf16 = ZtMma16<elem_t>::is_bf16;
static_assert(kD % 16 == 0 && kD >= 16 && kD <= 128, "flash_attention.cu takes head dims 16, 32, .., 128");
// NOTE: at most 8 warps: __launch_bounds__(kThreads, 1) then still allows 255 registers, which D = 128 needs
static_assert(kBN % 16 == 0 && kBN >= 16 && kWarps >= 1 && kWarps <= 8, "ATTN_BN a multiple of 16, 1 .. 8 warps");
static_assert(sizeof(elem_t) == 2, "flash_attention.cu is for 16-bit inputs (__half, __nv_bfloat16)");

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ------------------------------------------------------------------------------------------ helpers
__device__ __forceinline__ u32 bits16(__half x) { return static_cast<__half_raw>(x).x; }
__device__ __forceinline__ u32 bits16(__nv_bfloat16 x) { return static_cast<__nv_bfloat16_raw>(x).x; }

// Two floats rounded to elem_t, lo in the low 16 bits: an mma operand register.
__device__ __forceinline__ u32 pack2(float lo, float hi) {
    elem_t a, b;
    store_as<float>(lo, a);
    store_as<float>(hi, b);
    return bits16(a) | (bits16(b) << 16);
}

// The 4-byte pair of elements at p (4-byte aligned: rows are 16-byte aligned and the column even).
__device__ __forceinline__ u32 load_pair(const elem_t* p) { return *reinterpret_cast<const u32*>(p); }
__device__ __forceinline__ void store_pair(elem_t* p, float lo, float hi) {
    *reinterpret_cast<u32*>(p) = pack2(lo, hi);
}

// Rows [r0, r0 + ROWS) of a matrix with row stride ld into a shared tile [ROWS][kLd], by 16-byte cp.async; rows
// at or past `limit` are zero-filled (and not read). Issued by the whole block; the caller commits.
template <int ROWS>
__device__ __forceinline__ void load_tile(elem_t* dst, const elem_t* base, long long ld, int r0, int limit) {
    for (int idx = threadIdx.x; idx < ROWS * kChunks; idx += kThreads) {
        const int r = idx / kChunks, c = idx % kChunks;
        const bool ok = r0 + r < limit;
        const elem_t* src = ok ? base + (long long)(r0 + r) * ld + 8 * c : base;
        cp_async_16(smem_addr(dst + r * kLd + 8 * c), src, ok ? 16 : 0);
    }
}

// A fragment of rows [row0, row0 + 16), columns [col0, col0 + 16) of a shared tile.
__device__ __forceinline__ void frag_a(u32 (&a)[4], const elem_t* tile, int row0, int col0, int lane) {
    ldmatrix_x4(a, smem_addr(tile + (row0 + lane % 16) * kLd + col0 + 8 * (lane / 16)));
}
// B fragments of two n8 tiles with B(k, n) = tile[n][k] (n rows [n0, n0 + 16), k columns [k0, k0 + 16)):
// b0 for n0 .. n0 + 7, b1 for n0 + 8 .. n0 + 15.
__device__ __forceinline__ void frag_b_nk(u32 (&b0)[2], u32 (&b1)[2], const elem_t* tile, int n0, int k0, int lane) {
    u32 r[4];
    ldmatrix_x4(r, smem_addr(tile + (n0 + lane % 8 + 8 * (lane / 16)) * kLd + k0 + 8 * ((lane / 8) % 2)));
    b0[0] = r[0], b0[1] = r[1], b1[0] = r[2], b1[1] = r[3];
}
// B fragments of two n8 tiles with B(k, n) = tile[k][n] (k rows [k0, k0 + 16), n columns [n0, n0 + 16)).
__device__ __forceinline__ void frag_b_kn(u32 (&b0)[2], u32 (&b1)[2], const elem_t* tile, int k0, int n0, int lane) {
    u32 r[4];
    ldmatrix_x4_trans(r, smem_addr(tile + (k0 + lane % 8 + 8 * ((lane / 8) % 2)) * kLd + n0 + 8 * (lane / 16)));
    b0[0] = r[0], b0[1] = r[1], b1[0] = r[2], b1[1] = r[3];
}

// Two n8 accumulator tiles (16 x 16) as the A fragment of a k16 step: the FlashAttention-2 register reuse.
__device__ __forceinline__ void acc_to_a(u32 (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
    a[0] = pack2(lo[0], lo[1]);
    a[1] = pack2(lo[2], lo[3]);
    a[2] = pack2(hi[0], hi[1]);
    a[3] = pack2(hi[2], hi[3]);
}

// The mask applied to a base-2 score: bool keeps or removes, a number is added (in base 2).
__device__ __forceinline__ float apply_mask(float s, bool keep) { return keep ? s : neg_inf<float>(); }
template <typename M>
__device__ __forceinline__ float apply_mask(float s, M add) { return s + (float)widen(add) * kLog2e; }

// The base-2 score s2 (dot times scale log2 e) of query i and key j, -inf where j may not be seen (or i, j are
// past the ends).
__device__ __forceinline__ float visible_score(float s2, const ZtAttnParams& p, const ZT_ATTN_MASK_T* mask, int b,
                                               int h, int i, int j) {
    if (i >= p.sq || j >= p.sk || (p.causal && j > i + p.causal_offset)) return neg_inf<float>();
    if (mask != nullptr) s2 = apply_mask(s2, mask[b * p.m_sb + h * p.m_sh + (long long)i * p.m_sq + j * p.m_sk]);
    return s2;
}

// lse (natural log) as the base-2 shift of the backward's exp2: +inf for a query that saw no key (P = 0, not nan).
__device__ __forceinline__ float lse_shift(float lse) {
    return lse == neg_inf<float>() ? -neg_inf<float>() : lse * kLog2e;
}

// Keys a block of queries [m0, m0 + rows) can see at all: min(Sk, last visible key + 1) under a causal mask.
__device__ __forceinline__ int visible_keys(const ZtAttnParams& p, int m0, int rows) {
    if (!p.causal) return p.sk;
    const long long last = (long long)m0 + rows - 1 + p.causal_offset;
    return last < 0 ? 0 : (int)min((long long)p.sk, last + 1);
}

// ------------------------------------------------------------------------------------------ forward
extern "C" __global__ void __launch_bounds__(kThreads, 1)
attn_fwd_tc(ZT_STRIDED const ZT_ATTN_T* q, ZT_STRIDED const ZT_ATTN_T* k, ZT_STRIDED const ZT_ATTN_T* v,
            ZT_NULLABLE ZT_STRIDED const ZT_ATTN_MASK_T* mask, ZT_STRIDED ZT_ATTN_T* out, float* lse, ZtAttnParams p) {
    extern __shared__ __align__(16) unsigned char attn_smem[];
    elem_t* s_q = reinterpret_cast<elem_t*>(attn_smem);  // [BM][kLd]
    elem_t* s_k = s_q + kBM * kLd;                        // [2][BN][kLd]
    elem_t* s_v = s_k + 2 * kBN * kLd;                    // [2][BN][kLd]
    const int b = blockIdx.z, h = blockIdx.y, hk = h / (p.hq / p.hkv);
    const int m0 = blockIdx.x * kBM;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int row_a = m0 + 16 * warp + g, row_b = row_a + 8;  // this thread's two rows
    const elem_t* qb = q + b * p.q_sb + h * p.q_sh;
    const elem_t* kb = k + b * p.k_sb + hk * p.k_sh;
    const elem_t* vb = v + b * p.v_sb + hk * p.v_sh;
    const float scale2 = (float)p.scale * kLog2e;

    const int ntiles = (visible_keys(p, m0, kBM) + kBN - 1) / kBN;
    load_tile<kBM>(s_q, qb, p.q_ss, m0, p.sq);
    if (ntiles > 0) {
        load_tile<kBN>(s_k, kb, p.k_ss, 0, p.sk);
        load_tile<kBN>(s_v, vb, p.v_ss, 0, p.sk);
    }
    cp_async_commit();

    float o[kD / 8][4];
#pragma unroll
    for (int x = 0; x < kD / 8; ++x) o[x][0] = o[x][1] = o[x][2] = o[x][3] = 0.f;
    float m_run[2] = {neg_inf<float>(), neg_inf<float>()}, l_run[2] = {0.f, 0.f};  // l_run: this lane's part
    u32 qf[kD / 16][4];
    // NOTE: every edge case (past Sq or Sk, a causal cut, a mask) takes the checked path; a tile without any
    // skips the per-element tests
    const bool rows_inside = m0 + kBM <= p.sq;

    for (int it = 0; it < ntiles; ++it) {
        const int n0 = it * kBN;
        if (it + 1 < ntiles) {
            load_tile<kBN>(s_k + ((it + 1) & 1) * kBN * kLd, kb, p.k_ss, n0 + kBN, p.sk);
            load_tile<kBN>(s_v + ((it + 1) & 1) * kBN * kLd, vb, p.v_ss, n0 + kBN, p.sk);
        }
        cp_async_commit();
        cp_async_wait<1>();  // tile it (and, the first time, Q) has landed, for this thread's copies
        __syncthreads();     // ... and for everyone's
        if (it == 0) {
#pragma unroll
            for (int kk = 0; kk < kD / 16; ++kk) frag_a(qf[kk], s_q, 16 * warp, 16 * kk, lane);
        }
        const elem_t* kt = s_k + (it & 1) * kBN * kLd;
        const elem_t* vt = s_v + (it & 1) * kBN * kLd;

        float s[kBN / 8][4];
#pragma unroll
        for (int x = 0; x < kBN / 8; ++x) s[x][0] = s[x][1] = s[x][2] = s[x][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < kD / 16; ++kk) {
#pragma unroll
            for (int np = 0; np < kBN / 16; ++np) {
                u32 b0[2], b1[2];
                frag_b_nk(b0, b1, kt, 16 * np, 16 * kk, lane);
                mma_16816<kIsBf16>(s[2 * np], qf[kk], b0);
                mma_16816<kIsBf16>(s[2 * np + 1], qf[kk], b1);
            }
        }
        const bool checked = mask != nullptr || !rows_inside || n0 + kBN > p.sk ||
                             (p.causal && n0 + kBN - 1 > m0 + p.causal_offset);
#pragma unroll
        for (int x = 0; x < kBN / 8; ++x) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float s2 = s[x][e] * scale2;
                const int i = e < 2 ? row_a : row_b, j = n0 + 8 * x + 2 * t + (e & 1);
                s[x][e] = checked ? visible_score(s2, p, mask, b, h, i, j) : s2;
            }
        }
        // online softmax per row: a row's scores are spread over the 4 lanes of its quad
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = neg_inf<float>();
#pragma unroll
            for (int x = 0; x < kBN / 8; ++x) mx = zt_max(mx, zt_max(s[x][2 * r], s[x][2 * r + 1]));
            mx = zt_max(mx, __shfl_xor_sync(kFull, mx, 1));
            mx = zt_max(mx, __shfl_xor_sync(kFull, mx, 2));
            const float m_new = zt_max(m_run[r], mx);
            const float m_ref = m_new == neg_inf<float>() ? 0.f : m_new;  // NOTE: a row with nothing visible yet
            const float alpha = zt_exp2(m_run[r] - m_ref);
            m_run[r] = m_new;
            float sum = 0.f;
#pragma unroll
            for (int x = 0; x < kBN / 8; ++x) {
                s[x][2 * r] = zt_exp2(s[x][2 * r] - m_ref);
                s[x][2 * r + 1] = zt_exp2(s[x][2 * r + 1] - m_ref);
                sum += s[x][2 * r] + s[x][2 * r + 1];
            }
            l_run[r] = l_run[r] * alpha + sum;
#pragma unroll
            for (int x = 0; x < kD / 8; ++x) {
                o[x][2 * r] *= alpha;
                o[x][2 * r + 1] *= alpha;
            }
        }
        // O += P V, P from the score accumulators
#pragma unroll
        for (int kk = 0; kk < kBN / 16; ++kk) {
            u32 pa[4];
            acc_to_a(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
            for (int dp = 0; dp < kD / 16; ++dp) {
                u32 b0[2], b1[2];
                frag_b_kn(b0, b1, vt, 16 * kk, 16 * dp, lane);
                mma_16816<kIsBf16>(o[2 * dp], pa, b0);
                mma_16816<kIsBf16>(o[2 * dp + 1], pa, b1);
            }
        }
        __syncthreads();  // every warp is done with buffer it & 1 before iteration it + 1 refills it
    }
    cp_async_wait<0>();  // NOTE: with no key tile the Q copies are still pending; no copy outlives the block

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float l = l_run[r];
        l += __shfl_xor_sync(kFull, l, 1);
        l += __shfl_xor_sync(kFull, l, 2);
        const int i = r ? row_b : row_a;
        if (i >= p.sq) continue;
        const float inv = l > 0.f ? 1.f / l : 0.f;
        elem_t* orow = out + b * p.o_sb + h * p.o_sh + (long long)i * p.o_ss;
#pragma unroll
        for (int x = 0; x < kD / 8; ++x) store_pair(orow + 8 * x + 2 * t, o[x][2 * r] * inv, o[x][2 * r + 1] * inv);
        if (t == 0) {
            lse[((long long)b * p.hq + h) * p.sq + i] = l > 0.f ? (m_run[r] + zt_log2(l)) * kLn2 : neg_inf<float>();
        }
    }
}

// ------------------------------------------------------------------------------------------ backward
// This thread's four A-fragment registers of 16 rows [row0, row0 + 16) x columns [16 kk, 16 kk + 16) straight from
// global memory (rows past `limit` read as zeros), for operands loaded once per block.
__device__ __forceinline__ void frag_a_global(u32 (&a)[kD / 16][4], const elem_t* base, long long ld, int row0,
                                              int limit, int lane) {
    const int g = lane / 4, t = lane % 4;
    const bool ok_a = row0 + g < limit, ok_b = row0 + g + 8 < limit;
    const elem_t* ra = base + (long long)(row0 + g) * ld + 2 * t;
    const elem_t* rb = base + (long long)(row0 + g + 8) * ld + 2 * t;
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
        a[kk][0] = ok_a ? load_pair(ra + 16 * kk) : 0u;
        a[kk][1] = ok_b ? load_pair(rb + 16 * kk) : 0u;
        a[kk][2] = ok_a ? load_pair(ra + 16 * kk + 8) : 0u;
        a[kk][3] = ok_b ? load_pair(rb + 16 * kk + 8) : 0u;
    }
}

extern "C" __global__ void __launch_bounds__(kThreads, 1)
attn_bwd_dkdv_tc(ZT_STRIDED const ZT_ATTN_T* q, ZT_STRIDED const ZT_ATTN_T* k, ZT_STRIDED const ZT_ATTN_T* v,
                 ZT_NULLABLE ZT_STRIDED const ZT_ATTN_MASK_T* mask, ZT_STRIDED const ZT_ATTN_T* dout,
                 const float* lse, const float* delta, ZT_ATTN_T* dk, ZT_ATTN_T* dv, ZtAttnParams p) {
    extern __shared__ __align__(16) unsigned char attn_smem[];
    elem_t* s_k = reinterpret_cast<elem_t*>(attn_smem);  // [BM][kLd]
    elem_t* s_q = s_k + kBM * kLd;                        // [2][BN][kLd]
    elem_t* s_do = s_q + 2 * kBN * kLd;                   // [2][BN][kLd]
    const int b = blockIdx.z, hk = blockIdx.y, group = p.hq / p.hkv;
    const int n0 = blockIdx.x * kBM;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int key0 = n0 + 16 * warp;                // this warp's first key
    const int key_a = key0 + g, key_b = key_a + 8;  // this thread's two keys
    const elem_t* kb = k + b * p.k_sb + hk * p.k_sh;
    const float scale2 = (float)p.scale * kLog2e;

    // queries that can see any of the block's keys: i >= n0 - causal_offset
    const int i_begin = p.causal ? (int)min((long long)p.sq, max(0LL, (long long)n0 - p.causal_offset)) : 0;
    const int per_head = i_begin < p.sq ? (p.sq - i_begin + kBN - 1) / kBN : 0;
    const int ntiles = group * per_head;

    load_tile<kBM>(s_k, kb, p.k_ss, n0, p.sk);
    auto issue = [&](int it) {  // Q and dout tile `it` (query head hk group + it / per_head) into buffer it & 1
        const int h = hk * group + it / per_head, i0 = i_begin + (it % per_head) * kBN;
        load_tile<kBN>(s_q + (it & 1) * kBN * kLd, q + b * p.q_sb + h * p.q_sh, p.q_ss, i0, p.sq);
        load_tile<kBN>(s_do + (it & 1) * kBN * kLd, dout + b * p.do_sb + h * p.do_sh, p.do_ss, i0, p.sq);
    };
    if (ntiles > 0) issue(0);
    cp_async_commit();

    u32 vf[kD / 16][4];  // this warp's 16 V rows as A fragments
    frag_a_global(vf, v + b * p.v_sb + hk * p.v_sh, p.v_ss, key0, p.sk, lane);
    float acc_k[kD / 8][4], acc_v[kD / 8][4];
#pragma unroll
    for (int x = 0; x < kD / 8; ++x) {
#pragma unroll
        for (int e = 0; e < 4; ++e) acc_k[x][e] = acc_v[x][e] = 0.f;
    }

    for (int it = 0; it < ntiles; ++it) {
        if (it + 1 < ntiles) issue(it + 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const int h = hk * group + it / per_head, i0 = i_begin + (it % per_head) * kBN;
        const elem_t* qt = s_q + (it & 1) * kBN * kLd;
        const elem_t* dot = s_do + (it & 1) * kBN * kLd;
        const float* lse_h = lse + ((long long)b * p.hq + h) * p.sq;
        const float* delta_h = delta + ((long long)b * p.hq + h) * p.sq;
        const bool checked = mask != nullptr || key0 + 16 > p.sk || i0 + kBN > p.sq ||
                             (p.causal && key0 + 15 > i0 + p.causal_offset);
        for (int c = 0; c < kBN / 16; ++c) {
            const int c0 = i0 + 16 * c;  // the chunk's first query
            if (c0 >= p.sq) break;
            if (p.causal && (long long)c0 + 15 + p.causal_offset < key0) continue;  // sees none of the warp's keys
            float st[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};  // S^T: keys x queries
            float dpt[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
            for (int kk = 0; kk < kD / 16; ++kk) {
                u32 ka[4], b0[2], b1[2];
                frag_a(ka, s_k, 16 * warp, 16 * kk, lane);
                frag_b_nk(b0, b1, qt, 16 * c, 16 * kk, lane);
                mma_16816<kIsBf16>(st[0], ka, b0);
                mma_16816<kIsBf16>(st[1], ka, b1);
                frag_b_nk(b0, b1, dot, 16 * c, 16 * kk, lane);
                mma_16816<kIsBf16>(dpt[0], vf[kk], b0);
                mma_16816<kIsBf16>(dpt[1], vf[kk], b1);
            }
#pragma unroll
            for (int x = 0; x < 2; ++x) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {  // query column 8 x + 2 t + e, keys key_a (st[x][e]) and key_b
                    const int i = c0 + 8 * x + 2 * t + e;
                    const bool in = i < p.sq;
                    const float shift = in ? lse_shift(lse_h[i]) : -neg_inf<float>();
                    const float dl = in ? delta_h[i] : 0.f;
#pragma unroll
                    for (int r = 0; r < 2; ++r) {
                        const float s2 = st[x][2 * r + e] * scale2;
                        const float sc = checked ? visible_score(s2, p, mask, b, h, i, r ? key_b : key_a) : s2;
                        const float pr = zt_exp2(sc - shift);
                        st[x][2 * r + e] = pr;
                        dpt[x][2 * r + e] = pr * (dpt[x][2 * r + e] - dl);
                    }
                }
            }
            u32 pa[4], dsa[4];
            acc_to_a(pa, st[0], st[1]);
            acc_to_a(dsa, dpt[0], dpt[1]);
#pragma unroll
            for (int dp = 0; dp < kD / 16; ++dp) {
                u32 b0[2], b1[2];
                frag_b_kn(b0, b1, dot, 16 * c, 16 * dp, lane);
                mma_16816<kIsBf16>(acc_v[2 * dp], pa, b0);
                mma_16816<kIsBf16>(acc_v[2 * dp + 1], pa, b1);
                frag_b_kn(b0, b1, qt, 16 * c, 16 * dp, lane);
                mma_16816<kIsBf16>(acc_k[2 * dp], dsa, b0);
                mma_16816<kIsBf16>(acc_k[2 * dp + 1], dsa, b1);
            }
        }
        __syncthreads();
    }
    cp_async_wait<0>();

    const float sc = (float)p.scale;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int j = r ? key_b : key_a;
        if (j >= p.sk) continue;
        const long long row = (((long long)b * p.hkv + hk) * p.sk + j) * kD;
#pragma unroll
        for (int x = 0; x < kD / 8; ++x) {
            store_pair(dk + row + 8 * x + 2 * t, acc_k[x][2 * r] * sc, acc_k[x][2 * r + 1] * sc);
            store_pair(dv + row + 8 * x + 2 * t, acc_v[x][2 * r], acc_v[x][2 * r + 1]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(kThreads, 1)
attn_bwd_dq_tc(ZT_STRIDED const ZT_ATTN_T* q, ZT_STRIDED const ZT_ATTN_T* k, ZT_STRIDED const ZT_ATTN_T* v,
               ZT_NULLABLE ZT_STRIDED const ZT_ATTN_MASK_T* mask, ZT_STRIDED const ZT_ATTN_T* dout, const float* lse,
               const float* delta, ZT_ATTN_T* dq, ZtAttnParams p) {
    extern __shared__ __align__(16) unsigned char attn_smem[];
    elem_t* s_q = reinterpret_cast<elem_t*>(attn_smem);  // [BM][kLd]
    elem_t* s_k = s_q + kBM * kLd;                        // [2][BN][kLd]
    elem_t* s_v = s_k + 2 * kBN * kLd;                    // [2][BN][kLd]
    const int b = blockIdx.z, h = blockIdx.y, hk = h / (p.hq / p.hkv);
    const int m0 = blockIdx.x * kBM;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int q0 = m0 + 16 * warp;                 // this warp's first query
    const int row_a = q0 + g, row_b = row_a + 8;  // this thread's two queries
    const elem_t* kb = k + b * p.k_sb + hk * p.k_sh;
    const elem_t* vb = v + b * p.v_sb + hk * p.v_sh;
    const float scale2 = (float)p.scale * kLog2e;

    const int ntiles = (visible_keys(p, m0, kBM) + kBN - 1) / kBN;
    load_tile<kBM>(s_q, q + b * p.q_sb + h * p.q_sh, p.q_ss, m0, p.sq);
    if (ntiles > 0) {
        load_tile<kBN>(s_k, kb, p.k_ss, 0, p.sk);
        load_tile<kBN>(s_v, vb, p.v_ss, 0, p.sk);
    }
    cp_async_commit();

    u32 dof[kD / 16][4];  // this warp's 16 dout rows as A fragments
    frag_a_global(dof, dout + b * p.do_sb + h * p.do_sh, p.do_ss, q0, p.sq, lane);
    const long long stat = ((long long)b * p.hq + h) * p.sq;
    float shift[2], dl[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int i = r ? row_b : row_a;
        shift[r] = i < p.sq ? lse_shift(lse[stat + i]) : -neg_inf<float>();
        dl[r] = i < p.sq ? delta[stat + i] : 0.f;
    }
    float acc[kD / 8][4];
#pragma unroll
    for (int x = 0; x < kD / 8; ++x) acc[x][0] = acc[x][1] = acc[x][2] = acc[x][3] = 0.f;
    u32 qf[kD / 16][4];

    for (int it = 0; it < ntiles; ++it) {
        const int n0 = it * kBN;
        if (it + 1 < ntiles) {
            load_tile<kBN>(s_k + ((it + 1) & 1) * kBN * kLd, kb, p.k_ss, n0 + kBN, p.sk);
            load_tile<kBN>(s_v + ((it + 1) & 1) * kBN * kLd, vb, p.v_ss, n0 + kBN, p.sk);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        if (it == 0) {
#pragma unroll
            for (int kk = 0; kk < kD / 16; ++kk) frag_a(qf[kk], s_q, 16 * warp, 16 * kk, lane);
        }
        const elem_t* kt = s_k + (it & 1) * kBN * kLd;
        const elem_t* vt = s_v + (it & 1) * kBN * kLd;
        const bool checked = mask != nullptr || q0 + 16 > p.sq || n0 + kBN > p.sk ||
                             (p.causal && n0 + kBN - 1 > q0 + p.causal_offset);
        for (int c = 0; c < kBN / 16; ++c) {
            const int j0 = n0 + 16 * c;  // the chunk's first key
            if (j0 >= p.sk || (p.causal && (long long)j0 > (long long)q0 + 15 + p.causal_offset)) break;
            float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
            float dp[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
            for (int kk = 0; kk < kD / 16; ++kk) {
                u32 b0[2], b1[2];
                frag_b_nk(b0, b1, kt, 16 * c, 16 * kk, lane);
                mma_16816<kIsBf16>(s[0], qf[kk], b0);
                mma_16816<kIsBf16>(s[1], qf[kk], b1);
                frag_b_nk(b0, b1, vt, 16 * c, 16 * kk, lane);
                mma_16816<kIsBf16>(dp[0], dof[kk], b0);
                mma_16816<kIsBf16>(dp[1], dof[kk], b1);
            }
#pragma unroll
            for (int x = 0; x < 2; ++x) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int r = e / 2;
                    const float s2 = s[x][e] * scale2;
                    const float sc = checked ? visible_score(s2, p, mask, b, h, r ? row_b : row_a,
                                                             j0 + 8 * x + 2 * t + (e & 1))
                                             : s2;
                    dp[x][e] = zt_exp2(sc - shift[r]) * (dp[x][e] - dl[r]);
                }
            }
            u32 dsa[4];
            acc_to_a(dsa, dp[0], dp[1]);
#pragma unroll
            for (int d2 = 0; d2 < kD / 16; ++d2) {
                u32 b0[2], b1[2];
                frag_b_kn(b0, b1, kt, 16 * c, 16 * d2, lane);
                mma_16816<kIsBf16>(acc[2 * d2], dsa, b0);
                mma_16816<kIsBf16>(acc[2 * d2 + 1], dsa, b1);
            }
        }
        __syncthreads();
    }
    cp_async_wait<0>();

    const float sc = (float)p.scale;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int i = r ? row_b : row_a;
        if (i >= p.sq) continue;
        const long long row = (stat + i) * kD;
#pragma unroll
        for (int x = 0; x < kD / 8; ++x) {
            store_pair(dq + row + 8 * x + 2 * t, acc[x][2 * r] * sc, acc[x][2 * r + 1] * sc);
        }
    }
}
