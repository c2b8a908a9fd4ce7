// LayerNorm and RMSNorm over the last, contiguous axis: forward (saving mean and rstd) and backward, with the
// weight and bias gradients reduced deterministically (per-block partial sums, then a second kernel; no
// float atomics).
//
//   LayerNorm  y = (x - mean) * rstd * w + b,   rstd = 1 / sqrt(mean((x - mean)^2) + eps)
//   RMSNorm    y = x * rstd * w,                rstd = 1 / sqrt(mean(x^2) + eps)
//   backward   xhat = (x - mean) * rstd (mean = 0 for RMSNorm), g = dy * w,
//              dx = rstd * (g - mean(g) - xhat * mean(g * xhat))      (RMSNorm: without the mean(g) term)
//              dw = sum over rows of dy * xhat,  db = sum over rows of dy
//
// Layout: x, y, dy, dx are (rows, cols), C-contiguous; w, b are (cols,) of type WT; mean, rstd are (rows,)
// of type CT. w and b may be NULL (no affine transform). The mean (variance) is computed in two passes
// over the cached row, not from sums of squares.
//
// Defines (defaults compile standalone):
//   T      storage type of x, y, dy, dx: float | __half | __nv_bfloat16 | double
//   WT     storage type of w, b, dw, db (default T)
//   CT     compute type, also of mean, rstd and the partial sums: float (double for T=double)
//   VEC    elements per vector access: 16 / sizeof(T), or 1. VEC > 1 needs cols % VEC == 0 and 16-byte
//          aligned x, y, dy, dx, w, b (the launcher checks; otherwise it compiles VEC=1).
//   ITEMS  vectors per thread held in registers: forward ITEMS; backward min(ITEMS, max(1, V / VEC)) with
//          V = 64 / sizeof(CT) (16 floats, 8 doubles: it holds four arrays, x, dy and the dw, db sums)
//
// Kernels (rows grid-stride; R threads per row: 32 for _warp, blockDim.x for _block and _looped):
//   layer_norm_forward_{warp,block,looped}(x, w, b, y, mean, rstd, rows, cols, eps)
//   rms_norm_forward_{warp,block,looped}(x, w, y, rstd, rows, cols, eps)
//   layer_norm_backward_{warp,block,looped}(dy, x, w, mean, rstd, dx, dw_part, db_part, rows, cols)
//   rms_norm_backward_{warp,block,looped}(dy, x, w, rstd, dx, dw_part, rows, cols)
//   norm_param_grad(part, out, parts, cols)
// Launch contract:
//   _warp:   block 32*k threads (k <= 8), warp w of block b on rows b*k + w, + gridDim.x*k, ...;
//            cols <= 32*VEC*items. Backward: dynamic shared memory 2 * cols * sizeof(CT) (the block's
//            warps add their dw, db sums there in warp order).
//   _block:  block B threads (a multiple of 32, <= 512), block b on rows b, b + gridDim.x, ...;
//            cols <= B*VEC*items.
//   _looped: block B as _block, any cols; the row is read 3 times (forward) or twice (backward) instead
//            of once, the later reads mostly from L2.
//   Backward writes its block's column sums of dy*xhat and dy to row blockIdx.x of dw_part / db_part
//   (gridDim.x, cols), CT, every column (zeros where it saw no rows); db_part may be NULL (no bias).
//   norm_param_grad: block (32, 8), grid ceil(cols / 32): out[c] = sum over p < parts of part[p, c],
//   in a fixed order (thread row y sums p = y, y+8, ... then the 8 sums are added in order): the same
//   bits on every run.
// Thread -> data mapping of the cached kernels as in softmax.cu: thread t of the R on a row holds vector
// slot i (0 <= i < items) = columns (i*R + t)*VEC .. +VEC-1; in the backward the same columns every row,
// so each thread's dw/db sums stay in registers until the end.
// Variants kept: _looped also serves as the two/three-pass baseline of bench/ops_norm.py.
//
// zt-variants: | T=__half | T=__nv_bfloat16 | T=__nv_bfloat16,WT=float | T=double,CT=double | VEC=1 | ITEMS=1 | ITEMS=2 | ITEMS=8 | T=__half,ITEMS=8 | T=double,CT=double,ITEMS=8 | T=__nv_bfloat16,WT=float,ITEMS=8

#include "zt_device.cuh"

#ifndef T
#define T float
#endif
#ifndef WT
#define WT T
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
// NOTE: backward holds four arrays (x, dy and the dw, db sums): at most 64 bytes of each per thread in CT
// (16 floats or 8 doubles) keeps it within 128 registers without spills.
constexpr int kBwdValues = 64 / (int)sizeof(CT);
constexpr int kItemsBwd = kItems * kVec > kBwdValues ? (kBwdValues / kVec > 0 ? kBwdValues / kVec : 1) : kItems;

// w or b at columns c..c+VEC-1, or `fill` when the pointer is NULL
__device__ __forceinline__ void load_param(const WT* p, int c, ct fill, ct (&out)[kVec]) {
    if (p == nullptr) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) out[j] = fill;
        return;
    }
    load_pack(p + c, out);
}

// ------------------------------------------------------------------------------ reductions over a row
// (row_sum of one value is zt_device.cuh's.) Sum of two values over the row: the warp (BLOCK_ROW false) or the whole block. Every thread gets the same
// bits (xor butterfly, then the 32 warp partials added in the same order by every thread).
template <bool BLOCK_ROW>
__device__ __forceinline__ void row_sum2(ct& a, ct& b, ct* red) {
    a = warp_sum(a);
    b = warp_sum(b);
    if (!BLOCK_ROW) return;
    __syncthreads();  // NOTE: the previous reduction's readers are done with red before it is overwritten
    if ((threadIdx.x & 31) == 0) {
        red[threadIdx.x >> 5] = a;
        red[32 + (threadIdx.x >> 5)] = b;
    }
    __syncthreads();
    a = red[0];
    b = red[32];
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w) {
        a += red[w];
        b += red[32 + w];
    }
}

// ------------------------------------------------------------------------------ forward
template <bool BLOCK_ROW, bool RMS>
__device__ __forceinline__ void norm_forward_cached(const T* __restrict__ x, const WT* __restrict__ w,
                                                    const WT* __restrict__ b, T* __restrict__ y,
                                                    ct* __restrict__ mean, ct* __restrict__ rstd, long long rows,
                                                    int cols, double eps) {
    __shared__ ct red[64];
    const RowMap rm = row_map<BLOCK_ROW>();
    const ct inv_n = (ct)1 / (ct)cols;
    for (long long row = rm.first; row < rows; row += rm.step) {
        const long long base = row * cols;
        ct v[kItems][kVec];
        ct s = (ct)0;
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
            const int c = (i * rm.R + rm.t) * kVec;
            if (c < cols) {
                load_pack(x + base + c, v[i]);
#pragma unroll
                for (int j = 0; j < kVec; ++j) s += RMS ? v[i][j] * v[i][j] : v[i][j];
            }
        }
        s = row_sum<BLOCK_ROW>(s, red);
        ct mu = (ct)0, r;
        if (RMS) {
            r = zt_rsqrt(s * inv_n + (ct)eps);
        } else {
            mu = s * inv_n;
            ct q = (ct)0;
#pragma unroll
            for (int i = 0; i < kItems; ++i) {
                if ((i * rm.R + rm.t) * kVec < cols) {
#pragma unroll
                    for (int j = 0; j < kVec; ++j) {
                        const ct d = v[i][j] - mu;
                        q += d * d;
                    }
                }
            }
            q = row_sum<BLOCK_ROW>(q, red);
            r = zt_rsqrt(q * inv_n + (ct)eps);
        }
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
            const int c = (i * rm.R + rm.t) * kVec;
            if (c < cols) {
                ct wv[kVec], bv[kVec];
                load_param(w, c, (ct)1, wv);
                load_param(b, c, (ct)0, bv);
#pragma unroll
                for (int j = 0; j < kVec; ++j) v[i][j] = (v[i][j] - mu) * r * wv[j] + bv[j];
                store_pack(y + base + c, v[i]);
            }
        }
        if (rm.t == 0) {
            if (!RMS) mean[row] = mu;
            rstd[row] = r;
        }
    }
}

template <bool RMS>
__device__ __forceinline__ void norm_forward_looped(const T* __restrict__ x, const WT* __restrict__ w,
                                                    const WT* __restrict__ b, T* __restrict__ y,
                                                    ct* __restrict__ mean, ct* __restrict__ rstd, long long rows,
                                                    int cols, double eps) {
    __shared__ ct red[64];
    const ct inv_n = (ct)1 / (ct)cols;
    const long long step = (long long)blockDim.x * kVec;
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const long long base = row * cols;
        ct s = (ct)0;
        for (long long c = (long long)threadIdx.x * kVec; c < cols; c += step) {
            ct v[kVec];
            load_pack(x + base + c, v);
#pragma unroll
            for (int j = 0; j < kVec; ++j) s += RMS ? v[j] * v[j] : v[j];
        }
        s = row_sum<true>(s, red);
        ct mu = (ct)0, r;
        if (RMS) {
            r = zt_rsqrt(s * inv_n + (ct)eps);
        } else {
            mu = s * inv_n;
            ct q = (ct)0;
            for (long long c = (long long)threadIdx.x * kVec; c < cols; c += step) {
                ct v[kVec];
                load_pack(x + base + c, v);
#pragma unroll
                for (int j = 0; j < kVec; ++j) q += (v[j] - mu) * (v[j] - mu);
            }
            q = row_sum<true>(q, red);
            r = zt_rsqrt(q * inv_n + (ct)eps);
        }
        for (long long c = (long long)threadIdx.x * kVec; c < cols; c += step) {
            ct v[kVec], wv[kVec], bv[kVec];
            load_pack(x + base + c, v);
            load_param(w, (int)c, (ct)1, wv);
            load_param(b, (int)c, (ct)0, bv);
#pragma unroll
            for (int j = 0; j < kVec; ++j) v[j] = (v[j] - mu) * r * wv[j] + bv[j];
            store_pack(y + base + c, v);
        }
        if (threadIdx.x == 0) {
            if (!RMS) mean[row] = mu;
            rstd[row] = r;
        }
    }
}

extern "C" __global__ void __launch_bounds__(256, 1) layer_norm_forward_warp(
    const T* __restrict__ x, ZT_NULLABLE const WT* __restrict__ w, ZT_NULLABLE const WT* __restrict__ b,
    T* __restrict__ y, CT* __restrict__ mean, CT* __restrict__ rstd, long long rows, int cols, double eps) {
    norm_forward_cached<false, false>(x, w, b, y, mean, rstd, rows, cols, eps);
}
extern "C" __global__ void __launch_bounds__(512, 1) layer_norm_forward_block(
    const T* __restrict__ x, ZT_NULLABLE const WT* __restrict__ w, ZT_NULLABLE const WT* __restrict__ b,
    T* __restrict__ y, CT* __restrict__ mean, CT* __restrict__ rstd, long long rows, int cols, double eps) {
    norm_forward_cached<true, false>(x, w, b, y, mean, rstd, rows, cols, eps);
}
extern "C" __global__ void __launch_bounds__(512, 1) layer_norm_forward_looped(
    const T* __restrict__ x, ZT_NULLABLE const WT* __restrict__ w, ZT_NULLABLE const WT* __restrict__ b,
    T* __restrict__ y, CT* __restrict__ mean, CT* __restrict__ rstd, long long rows, int cols, double eps) {
    norm_forward_looped<false>(x, w, b, y, mean, rstd, rows, cols, eps);
}
extern "C" __global__ void __launch_bounds__(256, 1) rms_norm_forward_warp(
    const T* __restrict__ x, ZT_NULLABLE const WT* __restrict__ w, T* __restrict__ y, CT* __restrict__ rstd,
    long long rows, int cols, double eps) {
    norm_forward_cached<false, true>(x, w, nullptr, y, nullptr, rstd, rows, cols, eps);
}
extern "C" __global__ void __launch_bounds__(512, 1) rms_norm_forward_block(
    const T* __restrict__ x, ZT_NULLABLE const WT* __restrict__ w, T* __restrict__ y, CT* __restrict__ rstd,
    long long rows, int cols, double eps) {
    norm_forward_cached<true, true>(x, w, nullptr, y, nullptr, rstd, rows, cols, eps);
}
extern "C" __global__ void __launch_bounds__(512, 1) rms_norm_forward_looped(
    const T* __restrict__ x, ZT_NULLABLE const WT* __restrict__ w, T* __restrict__ y, CT* __restrict__ rstd,
    long long rows, int cols, double eps) {
    norm_forward_looped<true>(x, w, nullptr, y, nullptr, rstd, rows, cols, eps);
}

// ------------------------------------------------------------------------------ backward
template <bool BLOCK_ROW, bool RMS>
__device__ __forceinline__ void norm_backward_cached(const T* __restrict__ dy, const T* __restrict__ x,
                                                     const WT* __restrict__ w, const ct* __restrict__ mean,
                                                     const ct* __restrict__ rstd, T* __restrict__ dx,
                                                     ct* __restrict__ dw_part, ct* __restrict__ db_part,
                                                     long long rows, int cols, unsigned char* smem) {
    __shared__ ct red[64];
    const RowMap rm = row_map<BLOCK_ROW>();
    const ct inv_n = (ct)1 / (ct)cols;
    ct dw_acc[kItemsBwd][kVec], db_acc[kItemsBwd][kVec];
#pragma unroll
    for (int i = 0; i < kItemsBwd; ++i) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) dw_acc[i][j] = db_acc[i][j] = (ct)0;
    }
    for (long long row = rm.first; row < rows; row += rm.step) {
        const long long base = row * cols;
        const ct mu = RMS ? (ct)0 : mean[row];
        const ct r = rstd[row];
        ct vx[kItemsBwd][kVec], vg[kItemsBwd][kVec];  // becomes xhat, and g = dy * w
        ct sum_g = (ct)0, sum_gx = (ct)0;
#pragma unroll
        for (int i = 0; i < kItemsBwd; ++i) {
            const int c = (i * rm.R + rm.t) * kVec;
            if (c < cols) {
                ct wv[kVec];
                load_pack(x + base + c, vx[i]);
                load_pack(dy + base + c, vg[i]);
                load_param(w, c, (ct)1, wv);
#pragma unroll
                for (int j = 0; j < kVec; ++j) {
                    vx[i][j] = (vx[i][j] - mu) * r;
                    dw_acc[i][j] += vg[i][j] * vx[i][j];
                    db_acc[i][j] += vg[i][j];
                    vg[i][j] *= wv[j];
                    sum_g += vg[i][j];
                    sum_gx += vg[i][j] * vx[i][j];
                }
            }
        }
        row_sum2<BLOCK_ROW>(sum_g, sum_gx, red);
        const ct mean_g = RMS ? (ct)0 : sum_g * inv_n, mean_gx = sum_gx * inv_n;
#pragma unroll
        for (int i = 0; i < kItemsBwd; ++i) {
            const int c = (i * rm.R + rm.t) * kVec;
            if (c < cols) {
#pragma unroll
                for (int j = 0; j < kVec; ++j) vg[i][j] = r * (vg[i][j] - mean_g - vx[i][j] * mean_gx);
                store_pack(dx + base + c, vg[i]);
            }
        }
    }
    // this block's column sums -> row blockIdx.x of the partials
    ct* out_w = dw_part + (long long)blockIdx.x * cols;
    ct* out_b = db_part == nullptr ? nullptr : db_part + (long long)blockIdx.x * cols;
    if (BLOCK_ROW) {  // one thread per column slot in the block: write directly
#pragma unroll
        for (int i = 0; i < kItemsBwd; ++i) {
            const int c = (i * rm.R + rm.t) * kVec;
            if (c < cols) {
#pragma unroll
                for (int j = 0; j < kVec; ++j) {
                    out_w[c + j] = dw_acc[i][j];
                    if (out_b != nullptr) out_b[c + j] = db_acc[i][j];
                }
            }
        }
        return;
    }
    // warps: every warp holds sums for all columns; add them in shared memory in warp order
    ct* s_w = reinterpret_cast<ct*>(smem);
    ct* s_b = s_w + cols;
    const int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int k = 0; k < warps; ++k) {
        if (warp == k) {
#pragma unroll
            for (int i = 0; i < kItemsBwd; ++i) {
                const int c = (i * 32 + rm.t) * kVec;
                if (c < cols) {
#pragma unroll
                    for (int j = 0; j < kVec; ++j) {
                        s_w[c + j] = (k == 0 ? (ct)0 : s_w[c + j]) + dw_acc[i][j];
                        s_b[c + j] = (k == 0 ? (ct)0 : s_b[c + j]) + db_acc[i][j];
                    }
                }
            }
        }
        __syncthreads();
    }
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        out_w[c] = s_w[c];
        if (out_b != nullptr) out_b[c] = s_b[c];
    }
}

template <bool RMS>
__device__ __forceinline__ void norm_backward_looped(const T* __restrict__ dy, const T* __restrict__ x,
                                                     const WT* __restrict__ w, const ct* __restrict__ mean,
                                                     const ct* __restrict__ rstd, T* __restrict__ dx,
                                                     ct* __restrict__ dw_part, ct* __restrict__ db_part,
                                                     long long rows, int cols) {
    __shared__ ct red[64];
    const ct inv_n = (ct)1 / (ct)cols;
    const long long step = (long long)blockDim.x * kVec;
    ct* out_w = dw_part + (long long)blockIdx.x * cols;
    ct* out_b = db_part == nullptr ? nullptr : db_part + (long long)blockIdx.x * cols;
    // NOTE: the partial row lives in global memory here (columns are unbounded); thread t owns the same
    // columns for every row, so the read-modify-write below has no races.
    if ((long long)blockIdx.x >= rows) {  // a block without rows still owes its partial row: zeros
        for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
            out_w[c] = (ct)0;
            if (out_b != nullptr) out_b[c] = (ct)0;
        }
        return;
    }
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const long long base = row * cols;
        const bool first = row == (long long)blockIdx.x;
        const ct mu = RMS ? (ct)0 : mean[row];
        const ct r = rstd[row];
        ct sum_g = (ct)0, sum_gx = (ct)0;
        for (long long c = (long long)threadIdx.x * kVec; c < cols; c += step) {
            ct vx[kVec], vg[kVec], wv[kVec];
            load_pack(x + base + c, vx);
            load_pack(dy + base + c, vg);
            load_param(w, c, (ct)1, wv);
#pragma unroll
            for (int j = 0; j < kVec; ++j) {
                const ct g = vg[j] * wv[j];
                sum_g += g;
                sum_gx += g * (vx[j] - mu) * r;
            }
        }
        row_sum2<true>(sum_g, sum_gx, red);
        const ct mean_g = RMS ? (ct)0 : sum_g * inv_n, mean_gx = sum_gx * inv_n;
        for (long long c = (long long)threadIdx.x * kVec; c < cols; c += step) {
            ct vx[kVec], vg[kVec], wv[kVec];
            load_pack(x + base + c, vx);
            load_pack(dy + base + c, vg);
            load_param(w, c, (ct)1, wv);
#pragma unroll
            for (int j = 0; j < kVec; ++j) {
                const ct xhat = (vx[j] - mu) * r;
                out_w[c + j] = (first ? (ct)0 : out_w[c + j]) + vg[j] * xhat;
                if (out_b != nullptr) out_b[c + j] = (first ? (ct)0 : out_b[c + j]) + vg[j];
                vx[j] = r * (vg[j] * wv[j] - mean_g - xhat * mean_gx);
            }
            store_pack(dx + base + c, vx);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256, 1) layer_norm_backward_warp(
    const T* __restrict__ dy, const T* __restrict__ x, ZT_NULLABLE const WT* __restrict__ w,
    const CT* __restrict__ mean, const CT* __restrict__ rstd, T* __restrict__ dx, CT* __restrict__ dw_part,
    ZT_NULLABLE CT* __restrict__ db_part, long long rows, int cols) {
    extern __shared__ __align__(16) unsigned char norm_smem[];
    norm_backward_cached<false, false>(dy, x, w, mean, rstd, dx, dw_part, db_part, rows, cols, norm_smem);
}
extern "C" __global__ void __launch_bounds__(512, 1) layer_norm_backward_block(
    const T* __restrict__ dy, const T* __restrict__ x, ZT_NULLABLE const WT* __restrict__ w,
    const CT* __restrict__ mean, const CT* __restrict__ rstd, T* __restrict__ dx, CT* __restrict__ dw_part,
    ZT_NULLABLE CT* __restrict__ db_part, long long rows, int cols) {
    norm_backward_cached<true, false>(dy, x, w, mean, rstd, dx, dw_part, db_part, rows, cols, nullptr);
}
extern "C" __global__ void __launch_bounds__(512, 1) layer_norm_backward_looped(
    const T* __restrict__ dy, const T* __restrict__ x, ZT_NULLABLE const WT* __restrict__ w,
    const CT* __restrict__ mean, const CT* __restrict__ rstd, T* __restrict__ dx, CT* __restrict__ dw_part,
    ZT_NULLABLE CT* __restrict__ db_part, long long rows, int cols) {
    norm_backward_looped<false>(dy, x, w, mean, rstd, dx, dw_part, db_part, rows, cols);
}
extern "C" __global__ void __launch_bounds__(256, 1) rms_norm_backward_warp(
    const T* __restrict__ dy, const T* __restrict__ x, ZT_NULLABLE const WT* __restrict__ w,
    const CT* __restrict__ rstd, T* __restrict__ dx, CT* __restrict__ dw_part, long long rows, int cols) {
    extern __shared__ __align__(16) unsigned char norm_smem[];
    norm_backward_cached<false, true>(dy, x, w, nullptr, rstd, dx, dw_part, nullptr, rows, cols, norm_smem);
}
extern "C" __global__ void __launch_bounds__(512, 1) rms_norm_backward_block(
    const T* __restrict__ dy, const T* __restrict__ x, ZT_NULLABLE const WT* __restrict__ w,
    const CT* __restrict__ rstd, T* __restrict__ dx, CT* __restrict__ dw_part, long long rows, int cols) {
    norm_backward_cached<true, true>(dy, x, w, nullptr, rstd, dx, dw_part, nullptr, rows, cols, nullptr);
}
extern "C" __global__ void __launch_bounds__(512, 1) rms_norm_backward_looped(
    const T* __restrict__ dy, const T* __restrict__ x, ZT_NULLABLE const WT* __restrict__ w,
    const CT* __restrict__ rstd, T* __restrict__ dx, CT* __restrict__ dw_part, long long rows, int cols) {
    norm_backward_looped<true>(dy, x, w, nullptr, rstd, dx, dw_part, nullptr, rows, cols);
}

// ------------------------------------------------------------------------------ dw, db from the partials
extern "C" __global__ void __launch_bounds__(256, 1) norm_param_grad(const CT* __restrict__ part,
                                                                     WT* __restrict__ out, int parts, int cols) {
    __shared__ ct acc[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    ct s = (ct)0;
    if (c < cols) {
        for (int p = threadIdx.y; p < parts; p += 8) s += part[(long long)p * cols + c];
    }
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        ct total = acc[0][threadIdx.x];
#pragma unroll
        for (int y = 1; y < 8; ++y) total += acc[y][threadIdx.x];
        store_as<ct>(total, out[c]);
    }
}
