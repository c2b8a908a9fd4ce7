// Attention, SIMT kernels for every float type: softmax(scale * Q K^T + mask) V without materializing the score
// matrix (online softmax, FlashAttention-2's order), forward and backward, causal and masked, grouped-query
// heads. kernels/flash_attention.cu has the tensor-core kernels for fp16/bf16 (same contract, same params);
// these are the float32/float64 path, the reference the tensor-core kernels are compared with, and the only
// path for head dims the tensor-core kernels do not take. attn_bwd_preprocess serves both.
//
// Shapes: q (B, Hq, Sq, D), k and v (B, Hkv, Sk, D) with Hq a multiple of Hkv (query head h reads kv head
// h / (Hq / Hkv)); any strides for batch, head and sequence (elements, in ZtAttnParams), the head dim contiguous.
// out and dout (B, Hq, Sq, D) strided likewise. lse and delta (B, Hq, Sq) ATTN_CT; dq (B, Hq, Sq, D), dk and dv
// (B, Hkv, Sk, D) C-contiguous. D = HEAD_DIM (compile-time).
// Visibility of key j to query i: causal (p.causal = 1): j <= i + p.causal_offset (0 is PyTorch's is_causal:
// the top-left diagonal); mask (NULL = none): ATTN_MASK_T bool keeps where true, a float type is added to the
// scaled scores; element (b, h, i, j) at mask + b m_sb + h m_sh + i m_sq + j m_sk (0 strides broadcast).
// A query that sees no key gets out = 0 and lse = -inf (PyTorch's safe softmax) and zero gradients.
// Softmax in base 2: scores times scale * log2(e) (the mask times log2(e)), exp2 instead of exp; lse is stored
// in natural-log units, lse = (m + log2(l)) ln(2).
//
// Defines (defaults compile standalone):
//   ATTN_T       storage type of q, k, v, out, dout, dq, dk, dv: float | __half | __nv_bfloat16 | double
//   ATTN_CT      math type, and the type of lse and delta: float (double with ATTN_T=double)
//   ATTN_MASK_T  mask element type: bool | float | __half | __nv_bfloat16 | double (default float)
//   HEAD_DIM     D, 1 .. 128 (default 64)
//
// Kernels (ZtAttnParams p by value; block 128 = 4 warps; dynamic shared memory sizes below, in units of the
// math type ct (float, or double): the launcher computes the same):
//   attn_fwd_simt(q, k, v, mask, out, lse, p)      grid (ceil(Sq / (4 R)), Hq, B), R = 4 query rows per warp
//       (2 for double). Shared: q rows [4R][D], a key tile [KT][D+1], a value tile [KT][D], probabilities
//       [4][R][KT] with KT = 32 keys (16 for double): (4R D + KT (2D + 1) + 4 R KT) ct.
//       Per key tile: lane j scores key j against the warp's R rows (q broadcast from shared memory, the
//       key row padded to D+1 so the 32 lanes hit 32 banks), the warp reduces max and sum with shuffles and
//       rescales its running output, then lane l accumulates dims l, l+32, ... over the tile's keys. Causal
//       blocks stop at the diagonal.
//   attn_bwd_preprocess(out, dout, delta, p)       grid (ceil(Sq / 4), Hq, B): a warp per row,
//       delta = sum_d out dout (in ATTN_CT; any ATTN_T). No shared memory.
//   attn_bwd_dkdv_simt(q, k, v, mask, dout, lse, delta, dk, dv, p)   grid (ceil(Sk / 32), Hkv, B). Lane j owns
//       key j of the block's 32, warp w the dims [w S, (w+1) S), S = ceil(D / 4): dK and dV accumulate in
//       registers over every query of every query head of the kv head's group, in tiles of 8 queries. Per
//       tile: partial dot products q.k and dout.v over each dim slice go to shared memory; every thread sums
//       the 4 slices, forms P = exp2(S - lse), dS = P (dP - delta), and updates its dK, dV slices.
//       Shared: k, v [32][D+1], q, dout [8][D], lse, delta [8], partials 2 [4][8][32]:
//       (64 (D+1) + 16 D + 16 + 2048) ct.
//   attn_bwd_dq_simt(q, k, v, mask, dout, lse, delta, dq, p)         grid (ceil(Sq / 32), Hq, B). Lane i owns
//       query i of the block's 32, warp w a dim slice; keys stream in tiles of 8 the same way.
//       Shared: q, dout [32][D+1], k, v [8][D], partials 2 [4][8][32]: (64 (D+1) + 16 D + 2048) ct.
// dq, dk and dv include the softmax scale. Every result is written once (no atomics): the same bits every run.
//
// Verified without a GPU only, under tests/kernel_emulator.py against PyTorch (tests/test_cuda_attention.py).
//
// zt-variants: | ATTN_T=__half | ATTN_T=__nv_bfloat16 | HEAD_DIM=128 | ATTN_T=__nv_bfloat16,HEAD_DIM=128 | ATTN_T=double,ATTN_CT=double | ATTN_T=double,ATTN_CT=double,HEAD_DIM=128 | ATTN_MASK_T=bool | ATTN_T=__half,ATTN_MASK_T=__half,HEAD_DIM=80 | HEAD_DIM=32 | HEAD_DIM=1

#include "zt_device.cuh"

#ifndef ATTN_T
#define ATTN_T float
#endif
#ifndef ATTN_MASK_T
#define ATTN_MASK_T float
#endif
#ifndef ATTN_CT
#define ATTN_CT float
#endif
#ifndef HEAD_DIM
#define HEAD_DIM 64
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
    double scale;  // softmax scale (double: float64 inputs keep their precision)
};

typedef ATTN_CT ct;

constexpr int kD = HEAD_DIM;
constexpr int kThreads = 128;
static_assert(HEAD_DIM >= 1 && HEAD_DIM <= 128, "attention.cu takes head dims 1 .. 128");

constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2 = 0.6931471805599453;

// The mask applied to a base-2 score: bool keeps or removes, a number is added (in base 2).
__device__ __forceinline__ ct apply_mask(ct s, bool keep) { return keep ? s : neg_inf<ct>(); }
template <typename M>
__device__ __forceinline__ ct apply_mask(ct s, M add) { return s + (ct)widen(add) * (ct)kLog2e; }

// The base-2 score of query i and key j from their dot product, -inf where j may not be seen. i < Sq.
__device__ __forceinline__ ct score(ct dot, const ZtAttnParams& p, const ATTN_MASK_T* mask, int b, int h, int i,
                                    int j) {
    if (j >= p.sk || (p.causal && j > i + p.causal_offset)) return neg_inf<ct>();
    ct s = dot * (ct)p.scale * (ct)kLog2e;
    if (mask != nullptr) s = apply_mask(s, mask[b * p.m_sb + h * p.m_sh + i * p.m_sq + j * p.m_sk]);
    return s;
}

// lse (natural log, from the forward) as the base-2 shift of the backward's exp2: +inf for a query that saw no
// key, so that its probabilities come out 0 (not nan).
__device__ __forceinline__ ct lse_shift(ct lse) { return lse == neg_inf<ct>() ? -neg_inf<ct>() : lse * (ct)kLog2e; }

// Keys a block of queries [m0, m0 + rows) can see at all: min(Sk, last visible key + 1) under a causal mask.
__device__ __forceinline__ int visible_keys(const ZtAttnParams& p, int m0, int rows) {
    if (!p.causal) return p.sk;
    const long long last = (long long)m0 + rows - 1 + p.causal_offset;  // the last row's last visible key
    return last < 0 ? 0 : (int)min((long long)p.sk, last + 1);
}

// ------------------------------------------------------------------------------------------ forward
constexpr int kFwdRows = sizeof(ct) == 8 ? 2 : 4;   // query rows per warp
constexpr int kFwdBM = 4 * kFwdRows;                // query rows per block
constexpr int kFwdKT = sizeof(ct) == 8 ? 16 : 32;   // keys per tile (lane j < KT scores key j)
constexpr int kDPer = (kD + 31) / 32;               // output dims per lane

extern "C" __global__ void __launch_bounds__(kThreads, 1)
attn_fwd_simt(ZT_STRIDED const ATTN_T* q, ZT_STRIDED const ATTN_T* k, ZT_STRIDED const ATTN_T* v,
              ZT_NULLABLE ZT_STRIDED const ATTN_MASK_T* mask, ZT_STRIDED ATTN_T* out, ATTN_CT* lse, ZtAttnParams p) {
    extern __shared__ __align__(16) unsigned char attn_smem[];
    ct* s_q = reinterpret_cast<ct*>(attn_smem);  // [BM][D]
    ct* s_k = s_q + kFwdBM * kD;                  // [KT][D + 1]
    ct* s_v = s_k + kFwdKT * (kD + 1);            // [KT][D]
    ct* s_p = s_v + kFwdKT * kD;                  // [4 warps][rows][KT]
    const int b = blockIdx.z, h = blockIdx.y, hk = h / (p.hq / p.hkv);
    const int m0 = blockIdx.x * kFwdBM;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const ATTN_T* qb = q + b * p.q_sb + h * p.q_sh;
    const ATTN_T* kb = k + b * p.k_sb + hk * p.k_sh;
    const ATTN_T* vb = v + b * p.v_sb + hk * p.v_sh;

    for (int idx = threadIdx.x; idx < kFwdBM * kD; idx += kThreads) {
        const int r = idx / kD, d = idx % kD;
        s_q[idx] = m0 + r < p.sq ? (ct)widen(qb[(long long)(m0 + r) * p.q_ss + d]) : (ct)0;
    }
    ct m[kFwdRows], l[kFwdRows], o[kFwdRows][kDPer];
#pragma unroll
    for (int r = 0; r < kFwdRows; ++r) {
        m[r] = neg_inf<ct>();
        l[r] = 0;
#pragma unroll
        for (int x = 0; x < kDPer; ++x) o[r][x] = 0;
    }
    const int nkeys = visible_keys(p, m0, kFwdBM);
    for (int n0 = 0; n0 < nkeys; n0 += kFwdKT) {
        __syncthreads();  // the previous tile's reads are done (and, the first time, s_q is written)
        for (int idx = threadIdx.x; idx < kFwdKT * kD; idx += kThreads) {
            const int j = idx / kD, d = idx % kD;
            const bool ok = n0 + j < p.sk;
            s_k[j * (kD + 1) + d] = ok ? (ct)widen(kb[(long long)(n0 + j) * p.k_ss + d]) : (ct)0;
            s_v[j * kD + d] = ok ? (ct)widen(vb[(long long)(n0 + j) * p.v_ss + d]) : (ct)0;
        }
        __syncthreads();
        // scores: lane j < KT against the warp's rows
        ct s[kFwdRows];
#pragma unroll
        for (int r = 0; r < kFwdRows; ++r) s[r] = 0;
        if (lane < kFwdKT) {
            for (int d = 0; d < kD; ++d) {
                const ct kd = s_k[lane * (kD + 1) + d];
#pragma unroll
                for (int r = 0; r < kFwdRows; ++r) s[r] += s_q[(warp * kFwdRows + r) * kD + d] * kd;
            }
        }
#pragma unroll
        for (int r = 0; r < kFwdRows; ++r) {
            const int i = m0 + warp * kFwdRows + r;
            const ct sc = (lane < kFwdKT && i < p.sq) ? score(s[r], p, mask, b, h, i, n0 + lane) : neg_inf<ct>();
            const ct m_new = max(m[r], warp_max(sc));
            const ct m_ref = m_new == neg_inf<ct>() ? (ct)0 : m_new;  // NOTE: a row with nothing visible yet
            const ct pr = zt_exp2(sc - m_ref);
            const ct alpha = zt_exp2(m[r] - m_ref);
            l[r] = l[r] * alpha + warp_sum(pr);
            m[r] = m_new;
            if (lane < kFwdKT) s_p[(warp * kFwdRows + r) * kFwdKT + lane] = pr;
#pragma unroll
            for (int x = 0; x < kDPer; ++x) o[r][x] *= alpha;
        }
        __syncwarp();
        // output: lane l accumulates dims l, l + 32, ...
        for (int j = 0; j < kFwdKT; ++j) {
#pragma unroll
            for (int x = 0; x < kDPer; ++x) {
                const int d = lane + 32 * x;
                const ct vd = d < kD ? s_v[j * kD + d] : (ct)0;
#pragma unroll
                for (int r = 0; r < kFwdRows; ++r) o[r][x] += s_p[(warp * kFwdRows + r) * kFwdKT + j] * vd;
            }
        }
    }
#pragma unroll
    for (int r = 0; r < kFwdRows; ++r) {
        const int i = m0 + warp * kFwdRows + r;
        if (i >= p.sq) continue;
        const ct inv = l[r] > 0 ? (ct)1 / l[r] : (ct)0;
        ATTN_T* orow = out + b * p.o_sb + h * p.o_sh + (long long)i * p.o_ss;
#pragma unroll
        for (int x = 0; x < kDPer; ++x) {
            const int d = lane + 32 * x;
            if (d < kD) store_as<ct>(o[r][x] * inv, orow[d]);
        }
        if (lane == 0) {
            lse[((long long)b * p.hq + h) * p.sq + i] =
                l[r] > 0 ? (m[r] + zt_log2(l[r])) * (ct)kLn2 : neg_inf<ct>();
        }
    }
}

// ------------------------------------------------------------------------------------------ backward
extern "C" __global__ void __launch_bounds__(kThreads, 1)
attn_bwd_preprocess(ZT_STRIDED const ATTN_T* out, ZT_STRIDED const ATTN_T* dout, ATTN_CT* delta, ZtAttnParams p) {
    const int b = blockIdx.z, h = blockIdx.y;
    const int i = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (i >= p.sq) return;
    const ATTN_T* orow = out + b * p.o_sb + h * p.o_sh + (long long)i * p.o_ss;
    const ATTN_T* drow = dout + b * p.do_sb + h * p.do_sh + (long long)i * p.do_ss;
    ct acc = 0;
    for (int d = lane; d < kD; d += 32) acc += (ct)widen(orow[d]) * (ct)widen(drow[d]);
    acc = warp_sum(acc);
    if (lane == 0) delta[((long long)b * p.hq + h) * p.sq + i] = acc;
}

constexpr int kSlice = (kD + 3) / 4;  // dims per warp in the backward kernels
constexpr int kBwdQT = 8;             // dkdv: queries per tile
constexpr int kBwdKT = 8;             // dq: keys per tile

extern "C" __global__ void __launch_bounds__(kThreads, 1)
attn_bwd_dkdv_simt(ZT_STRIDED const ATTN_T* q, ZT_STRIDED const ATTN_T* k, ZT_STRIDED const ATTN_T* v,
                   ZT_NULLABLE ZT_STRIDED const ATTN_MASK_T* mask, ZT_STRIDED const ATTN_T* dout, const ATTN_CT* lse,
                   const ATTN_CT* delta, ATTN_T* dk, ATTN_T* dv, ZtAttnParams p) {
    extern __shared__ __align__(16) unsigned char attn_smem[];
    ct* s_k = reinterpret_cast<ct*>(attn_smem);  // [32][D + 1]
    ct* s_v = s_k + 32 * (kD + 1);                // [32][D + 1]
    ct* s_q = s_v + 32 * (kD + 1);                // [QT][D]
    ct* s_do = s_q + kBwdQT * kD;                 // [QT][D]
    ct* s_lse = s_do + kBwdQT * kD;               // [QT]
    ct* s_delta = s_lse + kBwdQT;                 // [QT]
    ct* s_ps = s_delta + kBwdQT;                  // [4][QT][32]
    ct* s_pd = s_ps + 4 * kBwdQT * 32;            // [4][QT][32]
    const int b = blockIdx.z, hk = blockIdx.y, group = p.hq / p.hkv;
    const int n0 = blockIdx.x * 32;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int j = n0 + lane;  // this thread's key
    const int d0 = warp * kSlice;

    const ATTN_T* kb = k + b * p.k_sb + hk * p.k_sh;
    const ATTN_T* vb = v + b * p.v_sb + hk * p.v_sh;
    for (int idx = threadIdx.x; idx < 32 * kD; idx += kThreads) {
        const int r = idx / kD, d = idx % kD;
        const bool ok = n0 + r < p.sk;
        s_k[r * (kD + 1) + d] = ok ? (ct)widen(kb[(long long)(n0 + r) * p.k_ss + d]) : (ct)0;
        s_v[r * (kD + 1) + d] = ok ? (ct)widen(vb[(long long)(n0 + r) * p.v_ss + d]) : (ct)0;
    }
    ct acc_k[kSlice], acc_v[kSlice];
#pragma unroll
    for (int x = 0; x < kSlice; ++x) acc_k[x] = acc_v[x] = 0;

    // queries that can see any of the block's keys: i >= n0 - causal_offset
    const int i_begin = p.causal ? max(0, n0 - p.causal_offset) : 0;
    for (int hh = 0; hh < group; ++hh) {
        const int h = hk * group + hh;
        const ATTN_T* qb = q + b * p.q_sb + h * p.q_sh;
        const ATTN_T* db = dout + b * p.do_sb + h * p.do_sh;
        const ct* lse_h = lse + ((long long)b * p.hq + h) * p.sq;
        const ct* delta_h = delta + ((long long)b * p.hq + h) * p.sq;
        for (int i0 = i_begin; i0 < p.sq; i0 += kBwdQT) {
            __syncthreads();  // the previous tile's reads are done (and, the first time, s_k / s_v written)
            for (int idx = threadIdx.x; idx < kBwdQT * kD; idx += kThreads) {
                const int r = idx / kD, d = idx % kD;
                const bool ok = i0 + r < p.sq;
                s_q[idx] = ok ? (ct)widen(qb[(long long)(i0 + r) * p.q_ss + d]) : (ct)0;
                s_do[idx] = ok ? (ct)widen(db[(long long)(i0 + r) * p.do_ss + d]) : (ct)0;
            }
            if (threadIdx.x < kBwdQT) {
                const int i = i0 + threadIdx.x;
                s_lse[threadIdx.x] = i < p.sq ? lse_shift(lse_h[i]) : -neg_inf<ct>();
                s_delta[threadIdx.x] = i < p.sq ? (ct)delta_h[i] : (ct)0;
            }
            __syncthreads();
            for (int r = 0; r < kBwdQT; ++r) {  // partial q.k and dout.v over this warp's dims
                ct ps = 0, pd = 0;
#pragma unroll
                for (int x = 0; x < kSlice; ++x) {
                    const int d = d0 + x;
                    if (d < kD) {
                        ps += s_q[r * kD + d] * s_k[lane * (kD + 1) + d];
                        pd += s_do[r * kD + d] * s_v[lane * (kD + 1) + d];
                    }
                }
                s_ps[(warp * kBwdQT + r) * 32 + lane] = ps;
                s_pd[(warp * kBwdQT + r) * 32 + lane] = pd;
            }
            __syncthreads();
            for (int r = 0; r < kBwdQT; ++r) {
                const int i = i0 + r;
                ct s = 0, dp = 0;
#pragma unroll
                for (int w = 0; w < 4; ++w) {
                    s += s_ps[(w * kBwdQT + r) * 32 + lane];
                    dp += s_pd[(w * kBwdQT + r) * 32 + lane];
                }
                const ct sc = i < p.sq ? score(s, p, mask, b, h, i, j) : neg_inf<ct>();
                const ct pr = zt_exp2(sc - s_lse[r]);
                const ct ds = pr * (dp - s_delta[r]);
#pragma unroll
                for (int x = 0; x < kSlice; ++x) {
                    const int d = d0 + x;
                    if (d < kD) {
                        acc_v[x] += pr * s_do[r * kD + d];
                        acc_k[x] += ds * s_q[r * kD + d];
                    }
                }
            }
        }
    }
    if (j < p.sk) {
        const long long row = ((long long)b * p.hkv + hk) * p.sk + j;
#pragma unroll
        for (int x = 0; x < kSlice; ++x) {
            const int d = d0 + x;
            if (d < kD) {
                store_as<ct>(acc_k[x] * (ct)p.scale, dk[row * kD + d]);
                store_as<ct>(acc_v[x], dv[row * kD + d]);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(kThreads, 1)
attn_bwd_dq_simt(ZT_STRIDED const ATTN_T* q, ZT_STRIDED const ATTN_T* k, ZT_STRIDED const ATTN_T* v,
                 ZT_NULLABLE ZT_STRIDED const ATTN_MASK_T* mask, ZT_STRIDED const ATTN_T* dout, const ATTN_CT* lse,
                 const ATTN_CT* delta, ATTN_T* dq, ZtAttnParams p) {
    extern __shared__ __align__(16) unsigned char attn_smem[];
    ct* s_q = reinterpret_cast<ct*>(attn_smem);  // [32][D + 1]
    ct* s_do = s_q + 32 * (kD + 1);               // [32][D + 1]
    ct* s_k = s_do + 32 * (kD + 1);               // [KT][D]
    ct* s_v = s_k + kBwdKT * kD;                  // [KT][D]
    ct* s_ps = s_v + kBwdKT * kD;                 // [4][KT][32]
    ct* s_pd = s_ps + 4 * kBwdKT * 32;            // [4][KT][32]
    const int b = blockIdx.z, h = blockIdx.y, hk = h / (p.hq / p.hkv);
    const int m0 = blockIdx.x * 32;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int i = m0 + lane;  // this thread's query
    const int d0 = warp * kSlice;

    const ATTN_T* qb = q + b * p.q_sb + h * p.q_sh;
    const ATTN_T* db = dout + b * p.do_sb + h * p.do_sh;
    for (int idx = threadIdx.x; idx < 32 * kD; idx += kThreads) {
        const int r = idx / kD, d = idx % kD;
        const bool ok = m0 + r < p.sq;
        s_q[r * (kD + 1) + d] = ok ? (ct)widen(qb[(long long)(m0 + r) * p.q_ss + d]) : (ct)0;
        s_do[r * (kD + 1) + d] = ok ? (ct)widen(db[(long long)(m0 + r) * p.do_ss + d]) : (ct)0;
    }
    const long long row = ((long long)b * p.hq + h) * p.sq + i;
    const ct my_lse = i < p.sq ? lse_shift(lse[row]) : -neg_inf<ct>();
    const ct my_delta = i < p.sq ? (ct)delta[row] : (ct)0;
    ct acc[kSlice];
#pragma unroll
    for (int x = 0; x < kSlice; ++x) acc[x] = 0;

    const ATTN_T* kb = k + b * p.k_sb + hk * p.k_sh;
    const ATTN_T* vb = v + b * p.v_sb + hk * p.v_sh;
    const int nkeys = visible_keys(p, m0, 32);
    for (int j0 = 0; j0 < nkeys; j0 += kBwdKT) {
        __syncthreads();  // the previous tile's reads are done (and, the first time, s_q / s_do written)
        for (int idx = threadIdx.x; idx < kBwdKT * kD; idx += kThreads) {
            const int r = idx / kD, d = idx % kD;
            const bool ok = j0 + r < p.sk;
            s_k[idx] = ok ? (ct)widen(kb[(long long)(j0 + r) * p.k_ss + d]) : (ct)0;
            s_v[idx] = ok ? (ct)widen(vb[(long long)(j0 + r) * p.v_ss + d]) : (ct)0;
        }
        __syncthreads();
        for (int c = 0; c < kBwdKT; ++c) {  // partial q.k and dout.v over this warp's dims
            ct ps = 0, pd = 0;
#pragma unroll
            for (int x = 0; x < kSlice; ++x) {
                const int d = d0 + x;
                if (d < kD) {
                    ps += s_q[lane * (kD + 1) + d] * s_k[c * kD + d];
                    pd += s_do[lane * (kD + 1) + d] * s_v[c * kD + d];
                }
            }
            s_ps[(warp * kBwdKT + c) * 32 + lane] = ps;
            s_pd[(warp * kBwdKT + c) * 32 + lane] = pd;
        }
        __syncthreads();
        for (int c = 0; c < kBwdKT; ++c) {
            ct s = 0, dp = 0;
#pragma unroll
            for (int w = 0; w < 4; ++w) {
                s += s_ps[(w * kBwdKT + c) * 32 + lane];
                dp += s_pd[(w * kBwdKT + c) * 32 + lane];
            }
            const ct sc = i < p.sq ? score(s, p, mask, b, h, i, j0 + c) : neg_inf<ct>();
            const ct ds = zt_exp2(sc - my_lse) * (dp - my_delta);
#pragma unroll
            for (int x = 0; x < kSlice; ++x) {
                const int d = d0 + x;
                if (d < kD) acc[x] += ds * s_k[c * kD + d];
            }
        }
    }
    if (i < p.sq) {
#pragma unroll
        for (int x = 0; x < kSlice; ++x) {
            const int d = d0 + x;
            if (d < kD) store_as<ct>(acc[x] * (ct)p.scale, dq[row * kD + d]);
        }
    }
}
