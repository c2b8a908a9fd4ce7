// Multi-tensor fused optimizer steps: SGD (momentum, dampening, Nesterov, weight decay, maximize) and
// Adam / AdamW (amsgrad, maximize), over many parameter tensors in one launch, optionally on low-precision
// parameters with float32 master copies.
//
// Tensors arrive as pointer tables (uint64 arrays of device addresses, one entry per tensor) plus sizes.
// Each tensor is cut into chunks of `chunk` elements (a multiple of 4); block b (grid-stride over all
// chunks) finds its tensor t by binary search in chunk_starts (n_tensors + 1 entries: tensor t owns the
// global chunks chunk_starts[t] .. chunk_starts[t+1]-1, the last entry is the total) and updates elements
// [c*chunk, min((c+1)*chunk, size)) of it, c = b - chunk_starts[t]. Thread x of the block takes elements
// 4x .. 4x+3 of each 4*blockDim.x-element stretch (one 16-byte access per array when every array of the
// tensor is aligned for it, else four scalar ones).
//
//   SGD   g = grad * grad_scale (negated if maximize); g += weight_decay * p;
//         momentum: buf = g on the first step, else momentum * buf + (1 - dampening) * g;
//                   g = g + momentum * buf (nesterov) or buf;     p -= lr * g
//   Adam  g as above (AdamW: p *= 1 - lr * weight_decay instead of adding the decay to g);
//         m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;  amsgrad: vmax = max(vmax, v), v = vmax;
//         p -= (lr / bias_correction1) * m / (sqrt(v) / bias_correction2_sqrt + eps)
//         with bias_correction1 = 1 - beta1^step and bias_correction2_sqrt = sqrt(1 - beta2^step) from the host.
//   With master copies (masters not NULL), p is the master (ST) value and the parameter gets p rounded to PT.
//
// Defines (defaults compile standalone):
//   PT  parameter type: float | __half | __nv_bfloat16 | double
//   GT  gradient type (default PT)
//   ST  state type of buffers, moments and masters: float (double for double parameters)
//
// Kernels (block B threads, any multiple of 32 up to 512; grid: any, grid-stride over the chunks):
//   sgd_step(params, grads, momentum_buffers, masters, sizes, chunk_starts, n_tensors, chunk, lr, momentum,
//            dampening, weight_decay, nesterov, maximize, first_step, grad_scale)
//   adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, masters, sizes, chunk_starts, n_tensors,
//             chunk, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2_sqrt, adamw,
//             amsgrad, maximize, grad_scale)
//   momentum_buffers (when momentum == 0), max_exp_avg_sqs (without amsgrad) and masters may be NULL.
// Variants kept: none besides the define sets.
//
// zt-variants: | PT=__nv_bfloat16,GT=__nv_bfloat16 | PT=__half,GT=__half | PT=__nv_bfloat16,GT=float | PT=double,ST=double

#include "zt_device.cuh"

#ifndef PT
#define PT float
#endif
#ifndef GT
#define GT PT
#endif
#ifndef ST
#define ST float
#endif

typedef ST st;

template <typename U> __device__ __forceinline__ bool aligned4(const U* p) {
    return p == nullptr || reinterpret_cast<unsigned long long>(p) % alignof(Pack<U, 4>) == 0;
}
// Four consecutive values (count < 4: the first count, the rest 0); one vector access when `vec`.
template <typename U> __device__ __forceinline__ void load4(const U* p, bool vec, int count, st (&o)[4]) {
    if (vec && count == 4) {
        const Pack<U, 4> pk = *reinterpret_cast<const Pack<U, 4>*>(p);
#pragma unroll
        for (int j = 0; j < 4; ++j) o[j] = load_as<st>(pk.v[j]);
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) o[j] = j < count ? load_as<st>(p[j]) : (st)0;
    }
}
template <typename U> __device__ __forceinline__ void store4(U* p, bool vec, int count, const st (&v)[4]) {
    if (vec && count == 4) {
        Pack<U, 4> pk;
#pragma unroll
        for (int j = 0; j < 4; ++j) store_as<st>(v[j], pk.v[j]);
        *reinterpret_cast<Pack<U, 4>*>(p) = pk;
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
            if (j < count) store_as<st>(v[j], p[j]);
    }
}

// The tensor owning global chunk b: the last t with chunk_starts[t] <= b.
__device__ __forceinline__ int tensor_of(const long long* chunk_starts, int n_tensors, long long b) {
    int lo = 0, hi = n_tensors - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (chunk_starts[mid] <= b) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

// ------------------------------------------------------------------------------ SGD
extern "C" __global__ void __launch_bounds__(512, 1) sgd_step(
    PT* const* __restrict__ params, const GT* const* __restrict__ grads,
    ZT_NULLABLE ST* const* __restrict__ momentum_buffers, ZT_NULLABLE ST* const* __restrict__ masters,
    const long long* __restrict__ sizes, const long long* __restrict__ chunk_starts, int n_tensors, long long chunk,
    double lr, double momentum, double dampening, double weight_decay, int nesterov, int maximize, int first_step,
    double grad_scale) {
    const long long total = chunk_starts[n_tensors];
    const st k_lr = (st)lr, k_mom = (st)momentum, k_damp = (st)(1.0 - dampening), k_wd = (st)weight_decay;
    const st k_scale = maximize ? -(st)grad_scale : (st)grad_scale;
    for (long long b = blockIdx.x; b < total; b += gridDim.x) {
        const int t = tensor_of(chunk_starts, n_tensors, b);
        const long long start = (b - chunk_starts[t]) * chunk;
        const long long end = min(start + chunk, sizes[t]);
        PT* p = params[t];
        const GT* g = grads[t];
        ST* buf = (momentum_buffers != nullptr && momentum != 0.0) ? momentum_buffers[t] : nullptr;
        ST* master = masters != nullptr ? masters[t] : nullptr;
        const bool vec = aligned4(p) && aligned4(g) && aligned4(buf) && aligned4(master);
        for (long long i = start + 4LL * threadIdx.x; i < end; i += 4LL * blockDim.x) {
            const int count = (int)min(4LL, end - i);
            st pv[4], gv[4], bv[4];
            if (master != nullptr) load4(master + i, vec, count, pv);
            else load4(p + i, vec, count, pv);
            load4(g + i, vec, count, gv);
            if (buf != nullptr && !first_step) load4(buf + i, vec, count, bv);
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                st d = gv[j] * k_scale;
                if (weight_decay != 0.0) d += k_wd * pv[j];
                if (buf != nullptr) {
                    bv[j] = first_step ? d : k_mom * bv[j] + k_damp * d;
                    d = nesterov ? d + k_mom * bv[j] : bv[j];
                }
                pv[j] -= k_lr * d;
            }
            if (buf != nullptr) store4(buf + i, vec, count, bv);
            if (master != nullptr) store4(master + i, vec, count, pv);
            store4(p + i, vec, count, pv);
        }
    }
}

// ------------------------------------------------------------------------------ Adam / AdamW
extern "C" __global__ void __launch_bounds__(512, 1) adam_step(
    PT* const* __restrict__ params, const GT* const* __restrict__ grads, ST* const* __restrict__ exp_avgs,
    ST* const* __restrict__ exp_avg_sqs, ZT_NULLABLE ST* const* __restrict__ max_exp_avg_sqs,
    ZT_NULLABLE ST* const* __restrict__ masters, const long long* __restrict__ sizes,
    const long long* __restrict__ chunk_starts, int n_tensors, long long chunk, double lr, double beta1, double beta2,
    double eps, double weight_decay, double bias_correction1, double bias_correction2_sqrt, int adamw, int amsgrad,
    int maximize, double grad_scale) {
    const long long total = chunk_starts[n_tensors];
    const st b1 = (st)beta1, b2 = (st)beta2, k_eps = (st)eps, k_wd = (st)weight_decay;
    // NOTE: 1 - beta in double, then rounded, as PyTorch passes the Python number (1 - 0.999f is 1.3e-5 off)
    const st one_b1 = (st)(1.0 - beta1), one_b2 = (st)(1.0 - beta2);
    // NOTE: PyTorch's order of operations (lerp for m; p -= step_size * (m / (sqrt(v) / bc2_sqrt + eps))), so
    // the roundings are its roundings
    const st step_size = (st)(lr / bias_correction1), bc2 = (st)bias_correction2_sqrt;
    const st decay = (st)(1.0 - lr * weight_decay);  // AdamW's multiplicative decay
    const st k_scale = maximize ? -(st)grad_scale : (st)grad_scale;
    for (long long b = blockIdx.x; b < total; b += gridDim.x) {
        const int t = tensor_of(chunk_starts, n_tensors, b);
        const long long start = (b - chunk_starts[t]) * chunk;
        const long long end = min(start + chunk, sizes[t]);
        PT* p = params[t];
        const GT* g = grads[t];
        ST* m = exp_avgs[t];
        ST* v = exp_avg_sqs[t];
        ST* vmax = (amsgrad && max_exp_avg_sqs != nullptr) ? max_exp_avg_sqs[t] : nullptr;
        ST* master = masters != nullptr ? masters[t] : nullptr;
        const bool vec = aligned4(p) && aligned4(g) && aligned4(m) && aligned4(v) && aligned4(vmax) && aligned4(master);
        for (long long i = start + 4LL * threadIdx.x; i < end; i += 4LL * blockDim.x) {
            const int count = (int)min(4LL, end - i);
            st pv[4], gv[4], mv[4], vv[4], xv[4];
            if (master != nullptr) load4(master + i, vec, count, pv);
            else load4(p + i, vec, count, pv);
            load4(g + i, vec, count, gv);
            load4(m + i, vec, count, mv);
            load4(v + i, vec, count, vv);
            if (vmax != nullptr) load4(vmax + i, vec, count, xv);
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                st d = gv[j] * k_scale;
                if (weight_decay != 0.0) {
                    if (adamw) pv[j] *= decay;
                    else d = zt_fma(pv[j], k_wd, d);  // grad.add(param, alpha=weight_decay): fmadd in PyTorch
                }
                mv[j] = zt_fma(one_b1, d - mv[j], mv[j]);  // exp_avg.lerp_(grad, 1 - beta1): fmadd in PyTorch
                // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): every product rounded
                vv[j] = zt_mul_rn(vv[j], b2) + zt_mul_rn(zt_mul_rn(one_b2, d), d);
                st second = vv[j];
                if (vmax != nullptr) {
                    xv[j] = zt_max(xv[j], vv[j]);
                    second = xv[j];
                }
                pv[j] -= zt_mul_rn(step_size, mv[j] / (zt_sqrt(second) / bc2 + k_eps));  // addcdiv_
            }
            store4(m + i, vec, count, mv);
            store4(v + i, vec, count, vv);
            if (vmax != nullptr) store4(vmax + i, vec, count, xv);
            if (master != nullptr) store4(master + i, vec, count, pv);
            store4(p + i, vec, count, pv);
        }
    }
}
