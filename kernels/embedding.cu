// Embedding: forward gather of weight rows; backward scatter-add of the output gradient into the weight's
// gradient, either with float atomics (fast, order of additions not fixed) or deterministically: the ids
// are sorted (our own bitonic sort of (id, position) keys) and each run of equal ids is summed in position
// order by one thread per column.
//
// Layout: weight, grad_weight (V, D) C-contiguous; ids (n,) of type TI; out, grad (n, D) C-contiguous.
// Ids must be in [0, V) (the op layer checks): an id outside reads nothing and gives a zero row (forward)
// or contributes nothing (backward). padding_idx (-1: none) never receives a gradient.
//
// Defines (defaults compile standalone):
//   T    weight / gradient type: float | __half | __nv_bfloat16 | double;  CT: float (double for double)
//   TI   id type: long long | int
//   VEC  elements per vector access along D: 16 / sizeof(T), or 1. VEC > 1 needs D % VEC == 0 and 16-byte
//        aligned weight, out, grad, grad_weight (the launcher checks; otherwise it compiles VEC=1).
//
// Kernels. Row kernels take block (TX, TY): threadIdx.y picks a row (block b handles rows b*TY + y, then
// + gridDim.x*TY, ...), threadIdx.x walks the row's D / VEC vectors (x, x + TX, ...).
//   embedding_forward(weight, ids, out, n, D, V)                     out[i, :] = weight[ids[i], :]
//   embedding_backward_atomic(grad, ids, acc, n, D, V, padding_idx)  acc[ids[i], :] += grad[i, :] with
//       atomicAdd on CT; acc (V, D) CT, zeroed by the launcher; then embedding_cast(acc, grad_weight, V*D)
//       when T is not CT (a grid-stride copy, block any).
//   Deterministic path, keys = (id << 32) | position, P = a power of two >= max(n, 1024), TILE = 1024:
//   embedding_sort_keys(ids, keys, n, P, V)     keys[i] for i < n (id -1 if outside [0, V)), LLONG_MAX
//                                               padding up to P; block any
//   bitonic_sort_tiles(keys)                    block 512 (exactly), grid P / 1024: sorts each tile, tile
//                                               t ascending or descending as the bitonic network puts it
//   bitonic_step(keys, P, j, k)                 one compare-exchange step of stride j >= 1024 in merge k;
//                                               grid-stride over the P / 2 pairs
//   bitonic_merge_tiles(keys, k)                block 512 (exactly), grid P / 1024: the steps j = 512 .. 1
//                                               of merge k inside each tile
//   (host loop: sort_tiles; for k = 2048 .. P: for j = k/2 .. 1024: step(j, k); merge_tiles(k).)
//   embedding_backward_sorted(keys, grad, grad_weight, n, D, V, padding_idx)
//       rows = sorted positions s; where s starts a run of one id, its threads sum grad[position, :] over
//       the run in order and write grad_weight[id, :]; grad_weight zeroed by the launcher (ids never seen).
// Compare-exchange pairs: pair q (0 <= q < P/2) of stride j is (i, i + j) with i = 2j * (q / j) + q % j;
// ascending where (i & k) == 0, the classic bitonic network, so the sort is complete after the last merge.
// Variants kept: _atomic (the fast, order-free baseline) and _sorted (deterministic, the launcher default).
//
// zt-variants: | T=__half | T=__nv_bfloat16 | T=double,CT=double | TI=int | VEC=1 | T=__half,TI=int,VEC=1

#include "zt_device.cuh"

#ifndef T
#define T float
#endif
#ifndef CT
#define CT float
#endif
#ifndef TI
#define TI long long
#endif
#ifndef VEC
#define VEC (16 / sizeof(T))
#endif

typedef CT ct;
constexpr int kVec = (int)(VEC);
constexpr int kSortThreads = 512;
constexpr int kTile = 2 * kSortThreads;

typedef Pack<T, kVec> VecT;

// ------------------------------------------------------------------------------ forward
extern "C" __global__ void embedding_forward(const T* __restrict__ weight, const TI* __restrict__ ids,
                                             T* __restrict__ out, long long n, int dim, long long num_embeddings) {
    const int vectors = dim / kVec;
    for (long long i = (long long)blockIdx.x * blockDim.y + threadIdx.y; i < n; i += (long long)gridDim.x * blockDim.y) {
        const long long id = (long long)ids[i];
        const bool valid = id >= 0 && id < num_embeddings;
        const VecT* src = reinterpret_cast<const VecT*>(weight + (valid ? id : 0) * dim);
        VecT* dst = reinterpret_cast<VecT*>(out + i * dim);
        for (int v = threadIdx.x; v < vectors; v += blockDim.x) {
            VecT pk;
            if (valid) {
                pk = src[v];
            } else {
#pragma unroll
                for (int j = 0; j < kVec; ++j) store_as<ct>((ct)0, pk.v[j]);
            }
            dst[v] = pk;
        }
    }
}

// ------------------------------------------------------------------------------ backward: atomics
extern "C" __global__ void embedding_backward_atomic(const T* __restrict__ grad, const TI* __restrict__ ids,
                                                     CT* __restrict__ acc, long long n, int dim,
                                                     long long num_embeddings, long long padding_idx) {
    const int vectors = dim / kVec;
    for (long long i = (long long)blockIdx.x * blockDim.y + threadIdx.y; i < n; i += (long long)gridDim.x * blockDim.y) {
        const long long id = (long long)ids[i];
        if (id < 0 || id >= num_embeddings || id == padding_idx) continue;
        const VecT* src = reinterpret_cast<const VecT*>(grad + i * dim);
        ct* dst = acc + id * dim;
        for (int v = threadIdx.x; v < vectors; v += blockDim.x) {
            const VecT pk = src[v];
#pragma unroll
            for (int j = 0; j < kVec; ++j) atomicAdd(dst + v * kVec + j, load_as<ct>(pk.v[j]));
        }
    }
}

extern "C" __global__ void embedding_cast(const CT* __restrict__ acc, T* __restrict__ out, long long count) {
    for (long long e = thread_index(); e < count; e += grid_stride())
        store_as<ct>(acc[e], out[e]);
}

// ------------------------------------------------------------------------------ backward: sorted
extern "C" __global__ void embedding_sort_keys(const TI* __restrict__ ids, long long* __restrict__ keys, long long n,
                                               long long padded, long long num_embeddings) {
    for (long long i = thread_index(); i < padded; i += grid_stride()) {
        if (i < n) {
            // NOTE: (id << 32) | i orders by id, then position; an id outside [0, V) becomes -1 (sorted first
            // and skipped), so no out-of-range id can wrap onto a valid one
            long long id = (long long)ids[i];
            if (id < 0 || id >= num_embeddings) id = -1;
            keys[i] = (long long)(((unsigned long long)id << 32) | (unsigned long long)i);
        } else {
            keys[i] = 0x7fffffffffffffffLL;  // padding: after every real key
        }
    }
}

__device__ __forceinline__ void compare_exchange(long long& a, long long& b, bool ascending) {
    if ((a > b) == ascending) {
        const long long t = a;
        a = b;
        b = t;
    }
}

// The steps j = j_start .. 1 of merge k on the block's tile in shared memory (k: the merge's size).
__device__ __forceinline__ void tile_steps(long long* s, long long tile_base, long long k, int j_start) {
    for (int j = j_start; j > 0; j >>= 1) {
        __syncthreads();
        const int q = threadIdx.x;
        const int i = 2 * j * (q / j) + q % j;
        compare_exchange(s[i], s[i + j], ((tile_base + i) & k) == 0);
    }
}

extern "C" __global__ void __launch_bounds__(512, 1) bitonic_sort_tiles(long long* __restrict__ keys) {
    __shared__ long long s[kTile];
    const long long base = (long long)blockIdx.x * kTile;
    s[threadIdx.x] = keys[base + threadIdx.x];
    s[threadIdx.x + kSortThreads] = keys[base + threadIdx.x + kSortThreads];
    for (int k = 2; k <= kTile; k <<= 1) tile_steps(s, base, k, k >> 1);
    __syncthreads();
    keys[base + threadIdx.x] = s[threadIdx.x];
    keys[base + threadIdx.x + kSortThreads] = s[threadIdx.x + kSortThreads];
}

extern "C" __global__ void __launch_bounds__(512, 1) bitonic_merge_tiles(long long* __restrict__ keys, long long k) {
    __shared__ long long s[kTile];
    const long long base = (long long)blockIdx.x * kTile;
    s[threadIdx.x] = keys[base + threadIdx.x];
    s[threadIdx.x + kSortThreads] = keys[base + threadIdx.x + kSortThreads];
    tile_steps(s, base, k, kSortThreads);
    __syncthreads();
    keys[base + threadIdx.x] = s[threadIdx.x];
    keys[base + threadIdx.x + kSortThreads] = s[threadIdx.x + kSortThreads];
}

extern "C" __global__ void bitonic_step(long long* __restrict__ keys, long long padded, long long j, long long k) {
    for (long long q = thread_index(); q < padded / 2; q += grid_stride()) {
        const long long i = 2 * j * (q / j) + q % j;
        long long a = keys[i], b = keys[i + j];
        const bool ascending = (i & k) == 0;
        if ((a > b) == ascending) {
            keys[i] = b;
            keys[i + j] = a;
        }
    }
}

extern "C" __global__ void embedding_backward_sorted(const long long* __restrict__ keys, const T* __restrict__ grad,
                                                     T* __restrict__ grad_weight, long long n, int dim,
                                                     long long num_embeddings, long long padding_idx) {
    const int vectors = dim / kVec;
    for (long long s = (long long)blockIdx.x * blockDim.y + threadIdx.y; s < n; s += (long long)gridDim.x * blockDim.y) {
        const long long id = keys[s] >> 32;  // arithmetic shift: negative ids stay negative
        if (s > 0 && (keys[s - 1] >> 32) == id) continue;  // not the start of a run
        if (id < 0 || id >= num_embeddings || id == padding_idx) continue;
        for (int v = threadIdx.x; v < vectors; v += blockDim.x) {
            ct acc[kVec];
#pragma unroll
            for (int j = 0; j < kVec; ++j) acc[j] = (ct)0;
            for (long long p = s; p < n && (keys[p] >> 32) == id; ++p) {
                const long long pos = keys[p] & 0xffffffffLL;
                const VecT pk = reinterpret_cast<const VecT*>(grad + pos * dim)[v];
#pragma unroll
                for (int j = 0; j < kVec; ++j) acc[j] += load_as<ct>(pk.v[j]);
            }
            VecT out;
#pragma unroll
            for (int j = 0; j < kVec; ++j) store_as<ct>(acc[j], out.v[j]);
            reinterpret_cast<VecT*>(grad_weight + id * dim)[v] = out;
        }
    }
}
