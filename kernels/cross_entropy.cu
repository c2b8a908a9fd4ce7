// Fused softmax cross-entropy over class indices: forward (per-row loss and logsumexp) and backward
// (dlogits = (softmax - target distribution) * grad), one pass over the logits each way.
//
//   lse  = log(sum_c exp(x_c))
//   loss = lse - (1 - eps) * x_t - (eps / C) * sum_c x_c     (= (1-eps)(-log p_t) + eps/C sum_c -log p_c)
//   dx_c = grad * (exp(x_c - lse) - (1 - eps) [c == t] - eps / C)
// eps is the label smoothing. A row whose target equals ignore_index gets loss 0 and dx 0 (its lse is still
// written). A target outside [0, C) that is not ignore_index gives NaN (loss and dx): the op layer checks
// targets first; the kernels never read outside the row.
//
// Layout: logits, dlogits (rows, C) C-contiguous (classes last); targets (rows,) of type TI; loss, lse
// (rows,) of type CT; grad: grad[row * grad_stride] (grad_stride 0: one value for every row).
//
// Defines (defaults compile standalone):
//   T    logits type: float | __half | __nv_bfloat16 | double;  CT  compute type: float (double for double)
//   TI   target type: long long | int | unsigned char
//   VEC  elements per vector access: 16 / sizeof(T), or 1. VEC > 1 needs C % VEC == 0 and 16-byte aligned
//        logits / dlogits (the launcher checks; otherwise it compiles VEC=1).
//
// Kernels (rows grid-stride, any grid):
//   cross_entropy_forward_warp(logits, targets, loss, lse, rows, C, ignore_index, smoothing)
//   cross_entropy_forward_block(...same)
//   cross_entropy_backward_warp(logits, targets, lse, grad, grad_stride, dlogits, rows, C, ignore_index,
//                               smoothing)
//   cross_entropy_backward_block(...same)
// _warp: block 32*k threads (k <= 8), warp w of block b on rows b*k + w, + gridDim.x*k, ... (short rows).
// _block: block B threads (a multiple of 32, <= 512), block b on rows b, b + gridDim.x, ... (long rows).
// Thread t of the R on a row (R = 32 or B) reads columns (i*R + t)*VEC .. +VEC-1 for i = 0, 1, ...
// (consecutive threads, consecutive 16-byte pieces). The forward keeps a running (max, sum of exp) pair and
// the plain sum per thread and merges them over the row (warp shuffles, then shared memory); the thread of
// rank 0 reads x_t and writes the row's loss and lse.
// Variants kept: none besides the two mappings.
//
// zt-variants: | T=__half | T=__nv_bfloat16 | T=double,CT=double | TI=int | TI=unsigned char | VEC=1 | T=__nv_bfloat16,TI=int,VEC=1

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

__device__ __forceinline__ ct quiet_nan() { return (ct)__int_as_float(0x7fc00000); }


// Merge (max, sum exp, plain sum) over the row: the warp, or the whole block (then every thread reads the
// 32 warp results in the same order, so all get the same bits).
template <bool BLOCK_ROW>
__device__ __forceinline__ void row_merge(ct& m, ct& s, ct& sum, ct* red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const ct m2 = __shfl_xor_sync(kFull, m, o);
        const ct s2 = __shfl_xor_sync(kFull, s, o);
        sum += __shfl_xor_sync(kFull, sum, o);
        online_merge(m, s, m2, s2);
    }
    if (!BLOCK_ROW) return;
    __syncthreads();  // NOTE: the previous row's readers are done with red before it is overwritten
    const int warp = threadIdx.x >> 5;
    if ((threadIdx.x & 31) == 0) {
        red[warp] = m;
        red[32 + warp] = s;
        red[64 + warp] = sum;
    }
    __syncthreads();
    m = red[0];
    s = red[32];
    sum = red[64];
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w) {
        online_merge(m, s, red[w], red[32 + w]);
        sum += red[64 + w];
    }
}

// ------------------------------------------------------------------------------ forward
template <bool BLOCK_ROW>
__device__ __forceinline__ void ce_forward(const T* __restrict__ logits, const TI* __restrict__ targets,
                                           ct* __restrict__ loss, ct* __restrict__ lse, long long rows,
                                           int classes, long long ignore_index, double smoothing) {
    __shared__ ct red[96];
    const RowMap rm = row_map<BLOCK_ROW>();
    const long long step = (long long)rm.R * kVec;
    const ct eps = (ct)smoothing;
    for (long long row = rm.first; row < rows; row += rm.step) {
        const T* xr = logits + row * classes;
        ct m = neg_inf<ct>(), s = (ct)0, sum = (ct)0;
        for (long long c = (long long)rm.t * kVec; c < classes; c += step) {
            ct v[kVec];
            load_pack(xr + c, v);
#pragma unroll
            for (int j = 0; j < kVec; ++j) {
                online_add(m, s, v[j]);
                sum += v[j];
            }
        }
        row_merge<BLOCK_ROW>(m, s, sum, red);
        if (rm.t == 0) {
            const ct row_lse = m + zt_log(s);
            const long long t = (long long)targets[row];
            ct l;
            if (t == ignore_index) l = (ct)0;
            else if (t < 0 || t >= classes) l = quiet_nan();
            else l = row_lse - ((ct)1 - eps) * load_as<ct>(xr[t]) - (eps / (ct)classes) * sum;
            loss[row] = l;
            lse[row] = row_lse;
        }
    }
}

extern "C" __global__ void __launch_bounds__(256, 1) cross_entropy_forward_warp(
    const T* __restrict__ logits, const TI* __restrict__ targets, CT* __restrict__ loss, CT* __restrict__ lse,
    long long rows, int classes, long long ignore_index, double smoothing) {
    ce_forward<false>(logits, targets, loss, lse, rows, classes, ignore_index, smoothing);
}
extern "C" __global__ void __launch_bounds__(512, 1) cross_entropy_forward_block(
    const T* __restrict__ logits, const TI* __restrict__ targets, CT* __restrict__ loss, CT* __restrict__ lse,
    long long rows, int classes, long long ignore_index, double smoothing) {
    ce_forward<true>(logits, targets, loss, lse, rows, classes, ignore_index, smoothing);
}

// ------------------------------------------------------------------------------ backward
template <bool BLOCK_ROW>
__device__ __forceinline__ void ce_backward(const T* __restrict__ logits, const TI* __restrict__ targets,
                                            const ct* __restrict__ lse, const ct* __restrict__ grad,
                                            long long grad_stride, T* __restrict__ dlogits, long long rows,
                                            int classes, long long ignore_index, double smoothing) {
    const RowMap rm = row_map<BLOCK_ROW>();
    const long long step = (long long)rm.R * kVec;
    const ct eps = (ct)smoothing;
    const ct off = eps / (ct)classes;  // every class's share of the smoothed target
    for (long long row = rm.first; row < rows; row += rm.step) {
        const long long base = row * classes;
        const long long t = (long long)targets[row];
        const bool ignored = t == ignore_index;
        const bool bad = !ignored && (t < 0 || t >= classes);
        const ct g = ignored ? (ct)0 : (bad ? quiet_nan() : grad[row * grad_stride]);
        const ct row_lse = lse[row];
        for (long long c = (long long)rm.t * kVec; c < classes; c += step) {
            ct v[kVec];
            load_pack(logits + base + c, v);
#pragma unroll
            for (int j = 0; j < kVec; ++j) {
                const ct target = (c + j == t ? (ct)1 - eps : (ct)0) + off;
                v[j] = ignored ? (ct)0 : g * (zt_exp(v[j] - row_lse) - target);
            }
            store_pack(dlogits + base + c, v);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256, 1) cross_entropy_backward_warp(
    const T* __restrict__ logits, const TI* __restrict__ targets, const CT* __restrict__ lse,
    const CT* __restrict__ grad, long long grad_stride, T* __restrict__ dlogits, long long rows, int classes,
    long long ignore_index, double smoothing) {
    ce_backward<false>(logits, targets, lse, grad, grad_stride, dlogits, rows, classes, ignore_index, smoothing);
}
extern "C" __global__ void __launch_bounds__(512, 1) cross_entropy_backward_block(
    const T* __restrict__ logits, const TI* __restrict__ targets, const CT* __restrict__ lse,
    const CT* __restrict__ grad, long long grad_stride, T* __restrict__ dlogits, long long rows, int classes,
    long long ignore_index, double smoothing) {
    ce_backward<true>(logits, targets, lse, grad, grad_stride, dlogits, rows, classes, ignore_index, smoothing);
}
