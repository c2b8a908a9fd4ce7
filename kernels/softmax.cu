// Softmax and log-softmax (forward and backward) and logsumexp over the last, contiguous axis.
//
// Layout: x, y, dy, dx are (rows, cols), C-contiguous; out (logsumexp) is (rows,). Storage type T, math in CT
// (float; double for T=double). The launcher moves any other axis last.
//
// Defines (defaults compile standalone):
//   T      storage type: float | __half | __nv_bfloat16 | double
//   CT     compute type: float (double for T=double)
//   VEC    elements per vector load: 16 / sizeof(T) (one 16-byte load), or 1. VEC > 1 needs cols % VEC == 0
//          and 16-byte aligned arrays; the launcher checks both and otherwise compiles VEC=1.
//   ITEMS  vectors each thread keeps in registers in the cached kernels (1, 2, 4 or 8)
//
// Kernels (every kernel loops over rows grid-stride, so any grid size is correct):
//   softmax_forward_warp(x, y, rows, cols, is_log)   block (32*k) threads, k <= 8: warp w of block b handles
//       rows b*k + w, then + gridDim.x*k, ...; needs cols <= 32*VEC*ITEMS. The row is read once into
//       registers, reduced with warp shuffles, written once: one read and one write per element.
//   softmax_forward_block(x, y, rows, cols, is_log) block B threads, B a multiple of 32, B <= 512: block b
//       handles rows b, b + gridDim.x, ...; needs cols <= B*VEC*ITEMS; registers as above, reductions over
//       the block (warp shuffles, then 32 partials in shared memory).
//   softmax_forward_online(x, y, rows, cols, is_log) block B as above, any cols: pass 1 keeps a running
//       (max, sum of exp) pair per thread, pass 2 reads the row again (mostly from L2) and writes.
//   softmax_backward_{warp,block,online}(y, dy, dx, rows, cols, is_log): the same mappings, from the forward
//       output y, with min(ITEMS, 32/VEC) vectors per thread in the cached kernels (two arrays are cached):
//                   softmax      dx = y * (dy - sum(dy * y))
//                   log-softmax  dx = dy - exp(y) * sum(dy)
//   logsumexp_warp(x, out, rows, cols), logsumexp_block(x, out, rows, cols): mappings of the warp / online
//       kernels, one pass with a running (max, sum) pair, any cols. out = max + log(sum exp(x - max)).
//   is_log is 0 (softmax) or 1 (log-softmax).
//
// Thread -> data mapping in the cached kernels, with R threads on a row (R = 32 for _warp, blockDim.x for
// _block) and t in [0, R) the thread's rank on the row: vector slot i (0 <= i < ITEMS) holds columns
// (i*R + t)*VEC ... (i*R + t)*VEC + VEC-1, so the R threads read R consecutive 16-byte pieces (coalesced).
// A slot whose first column is >= cols is empty (with cols % VEC == 0 a slot is either full or empty).
// The online kernels use the same mapping with the slot index i unbounded.
//
// Special values: a row of -inf gives NaN (softmax) as in PyTorch; NaN propagates; +inf gives NaN where
// PyTorch's logsumexp gives +inf.
// Variants kept: _online (two passes) is also the baseline that bench/ops_softmax.py compares the cached
// kernels against.
//
// zt-variants: | T=__half | T=__nv_bfloat16 | T=double,CT=double | VEC=1 | ITEMS=1 | ITEMS=2 | ITEMS=8 | T=__half,ITEMS=8 | T=__nv_bfloat16,ITEMS=1 | T=double,CT=double,ITEMS=8

#include "zt_device.cuh"

#ifndef T
#define T float
#endif
#ifndef CT
#define CT float
#endif
#ifndef VEC
#define VEC (16 / sizeof(T))
#endif
#ifndef ITEMS
#define ITEMS 4
#endif

typedef CT ct;
constexpr int kVec = (int)(VEC);
constexpr int kItems = (int)(ITEMS);
// NOTE: backward caches two arrays (y and dy), so it keeps at most 32 values of each per thread to stay
// within 128 registers (512-thread blocks) without spills: min(ITEMS, 32 / VEC) vectors.
constexpr int kItemsBwd = kItems * kVec > 32 ? 32 / kVec : kItems;

// ------------------------------------------------------------------------------ forward
template <bool BLOCK_ROW>
__device__ __forceinline__ void softmax_forward_cached(const T* __restrict__ x, T* __restrict__ y, long long rows,
                                                       int cols, int is_log) {
    __shared__ ct red[32];
    const RowMap rm = row_map<BLOCK_ROW>();
    for (long long row = rm.first; row < rows; row += rm.step) {
        const T* xr = x + row * cols;
        T* yr = y + row * cols;
        ct v[kItems][kVec];
        ct m = neg_inf<ct>();
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
            const int c = (i * rm.R + rm.t) * kVec;
            if (c < cols) {
                load_pack(xr + c, v[i]);
#pragma unroll
                for (int j = 0; j < kVec; ++j) m = zt_max(m, v[i][j]);
            }
        }
        m = row_max<BLOCK_ROW>(m, red);
        ct s = (ct)0;
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
            if ((i * rm.R + rm.t) * kVec < cols) {
#pragma unroll
                for (int j = 0; j < kVec; ++j) {
                    const ct d = v[i][j] - m;
                    const ct e = zt_exp(d);
                    s += e;
                    v[i][j] = is_log ? d : e;  // keep what the output needs: x - max, or exp(x - max)
                }
            }
        }
        s = row_sum<BLOCK_ROW>(s, red);
        const ct k = is_log ? zt_log(s) : (ct)1 / s;
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
            const int c = (i * rm.R + rm.t) * kVec;
            if (c < cols) {
                ct o[kVec];
#pragma unroll
                for (int j = 0; j < kVec; ++j) o[j] = is_log ? v[i][j] - k : v[i][j] * k;
                store_pack(yr + c, o);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256, 1) softmax_forward_warp(const T* __restrict__ x, T* __restrict__ y,
                                                                       long long rows, int cols, int is_log) {
    softmax_forward_cached<false>(x, y, rows, cols, is_log);
}

extern "C" __global__ void __launch_bounds__(512, 1) softmax_forward_block(const T* __restrict__ x, T* __restrict__ y,
                                                                        long long rows, int cols, int is_log) {
    softmax_forward_cached<true>(x, y, rows, cols, is_log);
}

extern "C" __global__ void __launch_bounds__(512, 1) softmax_forward_online(const T* __restrict__ x, T* __restrict__ y,
                                                                         long long rows, int cols, int is_log) {
    __shared__ ct red_m[32], red_s[32];
    const long long step = (long long)blockDim.x * kVec;
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * cols;
        T* yr = y + row * cols;
        ct m = neg_inf<ct>(), s = (ct)0;
        for (long long c = (long long)threadIdx.x * kVec; c < cols; c += step) {
            ct v[kVec];
            load_pack(xr + c, v);
#pragma unroll
            for (int j = 0; j < kVec; ++j) online_add(m, s, v[j]);
        }
        row_online<true>(m, s, red_m, red_s);
        const ct k = is_log ? m + zt_log(s) : (ct)1 / s;
        for (long long c = (long long)threadIdx.x * kVec; c < cols; c += step) {
            ct v[kVec];
            load_pack(xr + c, v);
#pragma unroll
            for (int j = 0; j < kVec; ++j) v[j] = is_log ? v[j] - k : zt_exp(v[j] - m) * k;
            store_pack(yr + c, v);
        }
    }
}

// ------------------------------------------------------------------------------ backward
template <bool BLOCK_ROW>
__device__ __forceinline__ void softmax_backward_cached(const T* __restrict__ y, const T* __restrict__ dy,
                                                        T* __restrict__ dx, long long rows, int cols, int is_log) {
    __shared__ ct red[32];
    const RowMap rm = row_map<BLOCK_ROW>();
    for (long long row = rm.first; row < rows; row += rm.step) {
        const long long base = row * cols;
        ct vy[kItemsBwd][kVec], vg[kItemsBwd][kVec];
        ct acc = (ct)0;  // sum(dy * y) for softmax, sum(dy) for log-softmax
#pragma unroll
        for (int i = 0; i < kItemsBwd; ++i) {
            const int c = (i * rm.R + rm.t) * kVec;
            if (c < cols) {
                load_pack(y + base + c, vy[i]);
                load_pack(dy + base + c, vg[i]);
#pragma unroll
                for (int j = 0; j < kVec; ++j) acc += is_log ? vg[i][j] : vg[i][j] * vy[i][j];
            }
        }
        acc = row_sum<BLOCK_ROW>(acc, red);
#pragma unroll
        for (int i = 0; i < kItemsBwd; ++i) {
            const int c = (i * rm.R + rm.t) * kVec;
            if (c < cols) {
                ct o[kVec];
#pragma unroll
                for (int j = 0; j < kVec; ++j)
                    o[j] = is_log ? vg[i][j] - zt_exp(vy[i][j]) * acc : vy[i][j] * (vg[i][j] - acc);
                store_pack(dx + base + c, o);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256, 1) softmax_backward_warp(const T* __restrict__ y,
                                                                        const T* __restrict__ dy,
                                                                        T* __restrict__ dx, long long rows,
                                                                        int cols, int is_log) {
    softmax_backward_cached<false>(y, dy, dx, rows, cols, is_log);
}

extern "C" __global__ void __launch_bounds__(512, 1) softmax_backward_block(const T* __restrict__ y,
                                                                         const T* __restrict__ dy,
                                                                         T* __restrict__ dx, long long rows,
                                                                         int cols, int is_log) {
    softmax_backward_cached<true>(y, dy, dx, rows, cols, is_log);
}

extern "C" __global__ void __launch_bounds__(512, 1) softmax_backward_online(const T* __restrict__ y,
                                                                          const T* __restrict__ dy,
                                                                          T* __restrict__ dx, long long rows,
                                                                          int cols, int is_log) {
    __shared__ ct red[32];
    const long long step = (long long)blockDim.x * kVec;
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const long long base = row * cols;
        ct acc = (ct)0;
        for (long long c = (long long)threadIdx.x * kVec; c < cols; c += step) {
            ct vy[kVec], vg[kVec];
            load_pack(y + base + c, vy);
            load_pack(dy + base + c, vg);
#pragma unroll
            for (int j = 0; j < kVec; ++j) acc += is_log ? vg[j] : vg[j] * vy[j];
        }
        acc = row_sum<true>(acc, red);
        for (long long c = (long long)threadIdx.x * kVec; c < cols; c += step) {
            ct vy[kVec], vg[kVec];
            load_pack(y + base + c, vy);
            load_pack(dy + base + c, vg);
#pragma unroll
            for (int j = 0; j < kVec; ++j) vg[j] = is_log ? vg[j] - zt_exp(vy[j]) * acc : vy[j] * (vg[j] - acc);
            store_pack(dx + base + c, vg);
        }
    }
}

// ------------------------------------------------------------------------------ logsumexp
template <bool BLOCK_ROW>
__device__ __forceinline__ void logsumexp_rows(const T* __restrict__ x, T* __restrict__ out, long long rows,
                                               int cols) {
    __shared__ ct red_m[32], red_s[32];
    const RowMap rm = row_map<BLOCK_ROW>();
    const long long step = (long long)rm.R * kVec;
    for (long long row = rm.first; row < rows; row += rm.step) {
        const T* xr = x + row * cols;
        ct m = neg_inf<ct>(), s = (ct)0;
        for (long long c = (long long)rm.t * kVec; c < cols; c += step) {
            ct v[kVec];
            load_pack(xr + c, v);
#pragma unroll
            for (int j = 0; j < kVec; ++j) online_add(m, s, v[j]);
        }
        row_online<BLOCK_ROW>(m, s, red_m, red_s);
        if (rm.t == 0) store_as<ct>(m + zt_log(s), out[row]);  // all -inf: -inf + log(0) = -inf
    }
}

extern "C" __global__ void __launch_bounds__(256, 1) logsumexp_warp(const T* __restrict__ x, T* __restrict__ out,
                                                                 long long rows, int cols) {
    logsumexp_rows<false>(x, out, rows, cols);
}

extern "C" __global__ void __launch_bounds__(512, 1) logsumexp_block(const T* __restrict__ x, T* __restrict__ out,
                                                                  long long rows, int cols) {
    logsumexp_rows<true>(x, out, rows, cols);
}
