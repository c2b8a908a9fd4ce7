// Paged attention for the serving engine (library/zigtensor/engine/paged_attention.py): softmax(scale q k^T) v
// for each query token and head over the keys its sequence has in the paged KV cache, read through the
// sequence's block table. One kernel for a step's whole mixed batch: decode tokens (one query per sequence) and
// prefill chunks (many) are both just tokens with a sequence and a position. No score matrix is stored: online
// softmax over the keys in tiles of 32.
//
// Shapes: q (num_tokens, num_heads, D), any strides for tokens and heads (elements, in ZtPagedAttnParams), the
// head dim contiguous. k_cache and v_cache (num_blocks, block_size, kv_heads, D) C-contiguous, aligned to a
// lane's vector where kVec (min(16, E sizeof) bytes; the launcher checks). block_tables (num_seqs, max_blocks)
// int32: cached key j of sequence s sits in block block_tables[s][j / block_size], slot j % block_size.
// token_seqs, token_positions (num_tokens) int32: each query's sequence (its block-table row) and position p. out
// (num_tokens, num_heads, D) float32, C-contiguous. Grouped-query heads: query head h reads kv head h /
// (num_heads / kv_heads). Visibility: the query at position p sees keys 0 .. p, and with p.sliding_window = W > 0
// only keys > p - W. Every query sees at least its own key, so no row is empty. The launcher
// (backends/cuda_kernels/paged_attention.py) checks shapes and dtypes; the table contents (block ids <
// num_blocks, positions inside the table's blocks) are the caller's: AttentionMetadata.build checks them on the
// host.
//
// Math in float whatever the storage: q is scaled by scale * log2(e) once, scores are q.k in base 2 and the
// softmax uses exp2 (the same probabilities as exp of the natural-log scores).
//
// Defines (defaults compile standalone):
//   PA_CACHE_T  storage type of k_cache, v_cache: float | __half | __nv_bfloat16 | double (read as float)
//   PA_Q_T      storage type of q: float | __half | __nv_bfloat16 | double (read as float)
//   HEAD_DIM    D, 1 .. 256 (default 64)
//
// Kernel (ZtPagedAttnParams p by value; block 128 = 4 warps; no dynamic shared memory):
//   paged_attention_fwd(q, k_cache, v_cache, block_tables, token_seqs, token_positions, out, p)
//       grid (num_tokens, num_heads): one block per (token, query head). Lane l owns the dims
//       [l E, l E + E), E = ceil(D / 32), of the query (registers, pre-scaled) and of the running output.
//       The visible keys are cut into tiles of 32; warp w takes tiles w, w + 4, ... For a tile, lane j looks up
//       key j's block and row offset. Scores, 8 keys at a time: the warp reads the 8 key rows back to back
//       (each lane its slice of a row: one coalesced row read, a vector per lane where E allows), each lane
//       keeps its 8 partial dot products, and a transposed butterfly (9 shuffles) completes the chunk's key i in
//       the lanes l with l % 8 = i; lane j keeps key j's score. The warp's running max and sum take the tile
//       (online softmax, exp2), then lane l adds p_j v_j over its dims, the value rows read the same way, 8 at
//       a time. At the end the 4 warps' (max, sum, output) merge through static shared memory,
//       4 (32 E + 2) floats (at most 4.1 KB), and the block writes the head's D outputs.
//       NOTE: a block per (token, head) re-reads K/V for each query of a prefill chunk and for each query head
//       of a kv head (L2 serves the repeats); long contexts in small batches get few blocks (no split over the
//       keys across blocks, as vLLM's paged_attention_v2 does).
//
// Verified without a GPU only, under tests/kernel_emulator.py against the engine's NumPy path and a float64
// reference (tests/test_cuda_paged_attention.py).
//
// zt-variants: | PA_CACHE_T=__half | PA_CACHE_T=__nv_bfloat16 | PA_CACHE_T=__half,HEAD_DIM=128 | PA_CACHE_T=__nv_bfloat16,PA_Q_T=__nv_bfloat16,HEAD_DIM=128 | HEAD_DIM=128 | HEAD_DIM=256 | PA_CACHE_T=__half,PA_Q_T=__half,HEAD_DIM=256 | HEAD_DIM=80 | PA_CACHE_T=double,PA_Q_T=double,HEAD_DIM=96 | PA_CACHE_T=__half,HEAD_DIM=32 | HEAD_DIM=1

#include "zt_device.cuh"

#ifndef PA_CACHE_T
#define PA_CACHE_T float
#endif
#ifndef PA_Q_T
#define PA_Q_T float
#endif
#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif

struct ZtPagedAttnParams {
    long long q_st, q_sh;  // strides (elements) of q over tokens and heads
    int num_heads, kv_heads, block_size;
    int max_blocks;        // entries per block-table row
    int sliding_window;    // 0: none; W > 0: the query at position p sees keys p - W + 1 .. p
    float scale;           // the factor on q k^T
};

static_assert(HEAD_DIM >= 1 && HEAD_DIM <= 256, "paged_attention.cu takes head dims 1 .. 256");

constexpr int kD = HEAD_DIM;
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kTile = 32;             // keys per tile: one per lane
constexpr int kChunk = 8;             // keys whose rows are read back to back (in flight together)
constexpr int kE = (kD + 31) / 32;    // dims per lane
// A lane's slice of a cache row as one aligned vector access: rows of exactly 32 slices of a power-of-two size.
constexpr bool kVec = kD == 32 * kE && (kE & (kE - 1)) == 0;
constexpr float kLog2e = 1.4426950408889634f;

// This lane's dims [lane E, lane E + E) of a cache row as float (zeros past D).
__device__ __forceinline__ void load_slice(const PA_CACHE_T* row, int lane, float (&out)[kE]) {
    if constexpr (kVec) {
        load_pack<float>(row + lane * kE, out);
    } else {
#pragma unroll
        for (int e = 0; e < kE; ++e) {
            const int d = lane * kE + e;
            out[e] = d < kD ? load_as<float>(row[d]) : 0.0f;
        }
    }
}

// One butterfly step of chunk_sum: the lane with bit HALF set keeps (and completes) the upper HALF of its keys.
template <int HALF> __device__ __forceinline__ void transposed_step(float (&a)[kChunk], bool upper) {
#pragma unroll
    for (int i = 0; i < HALF; ++i) {
        const float lo = a[i], hi = a[i + HALF];
        const float recv = __shfl_xor_sync(kFull, upper ? lo : hi, HALF);
        a[i] = (upper ? hi : lo) + recv;
    }
}

// a[i] holds this lane's partial dot product for key i of a chunk of 8; returns the warp's total for key
// lane % 8. NOTE: a transposed butterfly (4 + 2 + 1 shuffles leave lane l with key l % 8 summed over its 8
// lanes, 2 more sum the 4 octets): 9 shuffles per 8 keys instead of a warp_sum (5) per key. The steps are
// templates so that every index into `a` is a constant and `a` stays in registers.
__device__ __forceinline__ float chunk_sum(float (&a)[kChunk], int lane) {
    static_assert(kChunk == 8, "the butterfly is written for chunks of 8 keys");
    transposed_step<4>(a, lane & 4);
    transposed_step<2>(a, lane & 2);
    transposed_step<1>(a, lane & 1);
    float v = a[0];
    v += __shfl_xor_sync(kFull, v, 8);
    v += __shfl_xor_sync(kFull, v, 16);
    return v;
}

extern "C" __global__ void __launch_bounds__(kThreads, 1)
paged_attention_fwd(ZT_STRIDED const PA_Q_T* q, const PA_CACHE_T* k_cache, const PA_CACHE_T* v_cache,
                    const int* block_tables, const int* token_seqs, const int* token_positions, float* out,
                    ZtPagedAttnParams p) {
    __shared__ float s_m[kWarps], s_l[kWarps];
    __shared__ float s_o[kWarps][32 * kE];
    const int t = blockIdx.x, h = blockIdx.y;
    const int hk = h / (p.num_heads / p.kv_heads);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int pos = token_positions[t];
    const int first = p.sliding_window > 0 ? max(0, pos - p.sliding_window + 1) : 0;
    const int* table = block_tables + (long long)token_seqs[t] * p.max_blocks;
    const long long slot_stride = (long long)p.kv_heads * kD;  // elements between consecutive cache slots

    const PA_Q_T* qrow = q + t * p.q_st + h * p.q_sh;
    const float qscale = p.scale * kLog2e;
    float qs[kE], o[kE];
#pragma unroll
    for (int e = 0; e < kE; ++e) {
        const int d = lane * kE + e;
        qs[e] = d < kD ? load_as<float>(qrow[d]) * qscale : 0.0f;
        o[e] = 0.0f;
    }
    float m = neg_inf<float>(), l = 0.0f;

    for (int k0 = first + warp * kTile; k0 <= pos; k0 += kWarps * kTile) {
        const int n = min(kTile, pos + 1 - k0);  // keys in this tile (warp-uniform, >= 1)
        const int key = k0 + lane;
        long long off = 0;  // element offset of key `key`'s row for kv head hk
        if (lane < n) off = ((long long)table[key / p.block_size] * p.block_size + key % p.block_size) * slot_stride
                            + (long long)hk * kD;
        float dot = 0.0f;  // lane j ends with key j's q.k
#pragma unroll 1
        for (int c = 0; c < kTile; c += kChunk) {
            if (c >= n) break;  // warp-uniform
            float part[kChunk];
#pragma unroll
            for (int i = 0; i < kChunk; ++i) {
                const long long row = __shfl_sync(kFull, off, c + i);
                float kv[kE];
                if (c + i < n) {
                    load_slice(k_cache + row, lane, kv);
                } else {
#pragma unroll
                    for (int e = 0; e < kE; ++e) kv[e] = 0.0f;
                }
                float acc = 0.0f;
#pragma unroll
                for (int e = 0; e < kE; ++e) acc += qs[e] * kv[e];
                part[i] = acc;
            }
            const float total = chunk_sum(part, lane);  // every lane takes part in the shuffles
            if (lane / kChunk == c / kChunk) dot = total;
        }
        const float s = lane < n ? dot : neg_inf<float>();
        // NOTE: lane 0's key is always visible, so m_new is finite and exp2(-inf - m_new) = 0 drops the rest
        const float m_new = zt_max(m, warp_max(s));
        const float pr = zt_exp2(s - m_new);
        const float alpha = zt_exp2(m - m_new);
        l = l * alpha + warp_sum(pr);
        m = m_new;
#pragma unroll
        for (int e = 0; e < kE; ++e) o[e] *= alpha;
#pragma unroll 1
        for (int c = 0; c < kTile; c += kChunk) {
            if (c >= n) break;
#pragma unroll
            for (int i = 0; i < kChunk; ++i) {
                const float pj = __shfl_sync(kFull, pr, c + i);
                const long long row = __shfl_sync(kFull, off, c + i);
                if (c + i < n) {
                    float vv[kE];
                    load_slice(v_cache + row, lane, vv);
#pragma unroll
                    for (int e = 0; e < kE; ++e) o[e] += pj * vv[e];
                }
            }
        }
    }

    // merge the warps' partial softmaxes; a warp that had no tile holds (-inf, 0, zeros) and adds nothing
    if (lane == 0) {
        s_m[warp] = m;
        s_l[warp] = l;
    }
#pragma unroll
    for (int e = 0; e < kE; ++e) s_o[warp][lane * kE + e] = o[e];
    __syncthreads();
    float m_all = s_m[0];  // warp 0 has the first visible key: finite
#pragma unroll
    for (int w = 1; w < kWarps; ++w) m_all = zt_max(m_all, s_m[w]);
    float w_scale[kWarps], l_all = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
        w_scale[w] = zt_exp2(s_m[w] - m_all);
        l_all += s_l[w] * w_scale[w];
    }
    const float inv = 1.0f / l_all;
    float* orow = out + ((long long)t * p.num_heads + h) * kD;
    for (int d = threadIdx.x; d < kD; d += kThreads) {
        float acc = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) acc += s_o[w][d] * w_scale[w];
        orow[d] = acc * inv;
    }
}
