// Device helpers that every kernels/<family>.cu shares: storage conversions, math by type, packs for vector
// access, grid-stride indexing, strided offsets, warp and block reductions over a row, and which rows a thread
// works on.
//
// A kernel file includes it with `#include "zt_device.cuh"` before its own defaults. Everything here is a
// template or a plain inline function of its arguments: nothing reads a file's macros (T, CT, IDX, ...), so
// any define set of any file sees the same helpers, and the loader's signature parser, which reads only the
// file itself, never needs what is defined here. No `extern "C" __global__` kernel lives here.
//
// The loader compiles with `-I kernels/` (NVRTC, nvcc in tests/test_kernels_compile.py, g++ in the kernel
// emulator) and hashes this file's text into the disk cache key, so editing it recompiles every kernel.
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>

// Pointer parameter markers the loader's signature parser reads (kernel_source.py); empty for the compiler.
#ifndef ZT_STRIDED
#define ZT_STRIDED
#endif
#ifndef ZT_NULLABLE
#define ZT_NULLABLE
#endif

// ------------------------------------------------------------------------------------------ conversions
// Conv<S>::load<V>(x): storage S -> value type V; Conv<S>::store(v): any value -> storage (round to nearest;
// to bool is `!= 0`). 16-bit floats go through float.
template <typename S> struct Conv {
    template <typename V> static __device__ __forceinline__ V load(S x) { return static_cast<V>(x); }
    template <typename V> static __device__ __forceinline__ S store(V v) { return static_cast<S>(v); }
};
template <> struct Conv<bool> {
    template <typename V> static __device__ __forceinline__ V load(bool x) { return static_cast<V>(x); }
    template <typename V> static __device__ __forceinline__ bool store(V v) { return v != V(0); }
};
template <> struct Conv<__half> {
    template <typename V> static __device__ __forceinline__ V load(__half x) { return static_cast<V>(__half2float(x)); }
    template <typename V> static __device__ __forceinline__ __half store(V v) { return __float2half_rn(static_cast<float>(v)); }
};
template <> struct Conv<__nv_bfloat16> {
    template <typename V> static __device__ __forceinline__ V load(__nv_bfloat16 x) {
        return static_cast<V>(__bfloat162float(x));
    }
    template <typename V> static __device__ __forceinline__ __nv_bfloat16 store(V v) {
        return __float2bfloat16_rn(static_cast<float>(v));
    }
};
// NOTE: double -> 16-bit goes through float (double rounding); results differ from a direct rounding only
// for values within 2^-29 relative of a tie, far below the 16-bit tolerance anyone tests with.

// load_as<V>(x): x (any storage type) as V. store_as<V>(v, out): v converted to V first (name V to pin the
// compute type, as a file's `ct`), then stored into out's storage type.
template <typename V, typename S> __device__ __forceinline__ V load_as(S x) { return Conv<S>::template load<V>(x); }
template <typename V, typename S> __device__ __forceinline__ void store_as(V v, S& out) { out = Conv<S>::store(v); }

// widen(x): the type to compute in for a storage type: float for the 16-bit floats, the type itself otherwise.
template <typename S> __device__ __forceinline__ S widen(S x) { return x; }
__device__ __forceinline__ float widen(__half x) { return __half2float(x); }
__device__ __forceinline__ float widen(__nv_bfloat16 x) { return __bfloat162float(x); }

// ------------------------------------------------------------------------------------------ math by type
// The float and double forms of the math the kernels use, so templates on the compute type call one name.
__device__ __forceinline__ float zt_exp(float x) { return expf(x); }
__device__ __forceinline__ double zt_exp(double x) { return exp(x); }
__device__ __forceinline__ float zt_exp2(float x) { return exp2f(x); }
__device__ __forceinline__ double zt_exp2(double x) { return exp2(x); }
__device__ __forceinline__ float zt_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double zt_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float zt_log(float x) { return logf(x); }
__device__ __forceinline__ double zt_log(double x) { return log(x); }
__device__ __forceinline__ float zt_log2(float x) { return log2f(x); }
__device__ __forceinline__ double zt_log2(double x) { return log2(x); }
__device__ __forceinline__ float zt_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double zt_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float zt_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double zt_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float zt_rsqrt(float x) { return rsqrtf(x); }
__device__ __forceinline__ double zt_rsqrt(double x) { return rsqrt(x); }
__device__ __forceinline__ float zt_sin(float x) { return sinf(x); }
__device__ __forceinline__ double zt_sin(double x) { return sin(x); }
__device__ __forceinline__ float zt_cos(float x) { return cosf(x); }
__device__ __forceinline__ double zt_cos(double x) { return cos(x); }
__device__ __forceinline__ float zt_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double zt_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float zt_erf(float x) { return erff(x); }
__device__ __forceinline__ double zt_erf(double x) { return erf(x); }
__device__ __forceinline__ float zt_atan(float x) { return atanf(x); }
__device__ __forceinline__ double zt_atan(double x) { return atan(x); }
__device__ __forceinline__ float zt_asin(float x) { return asinf(x); }
__device__ __forceinline__ double zt_asin(double x) { return asin(x); }
__device__ __forceinline__ float zt_acos(float x) { return acosf(x); }
__device__ __forceinline__ double zt_acos(double x) { return acos(x); }
__device__ __forceinline__ float zt_atan2(float y, float x) { return atan2f(y, x); }
__device__ __forceinline__ double zt_atan2(double y, double x) { return atan2(y, x); }
__device__ __forceinline__ float zt_floor(float x) { return floorf(x); }
__device__ __forceinline__ double zt_floor(double x) { return floor(x); }
__device__ __forceinline__ float zt_ceil(float x) { return ceilf(x); }
__device__ __forceinline__ double zt_ceil(double x) { return ceil(x); }
__device__ __forceinline__ float zt_rint(float x) { return rintf(x); }
__device__ __forceinline__ double zt_rint(double x) { return rint(x); }
__device__ __forceinline__ float zt_trunc(float x) { return truncf(x); }
__device__ __forceinline__ double zt_trunc(double x) { return trunc(x); }
__device__ __forceinline__ float zt_fmod(float a, float b) { return fmodf(a, b); }
__device__ __forceinline__ double zt_fmod(double a, double b) { return fmod(a, b); }
__device__ __forceinline__ float zt_pow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double zt_pow(double a, double b) { return pow(a, b); }
__device__ __forceinline__ float zt_copysign(float a, float b) { return copysignf(a, b); }
__device__ __forceinline__ double zt_copysign(double a, double b) { return copysign(a, b); }
// a * b rounded on its own: nvcc would otherwise fuse it with a following add into one FMA (one rounding), where
// PyTorch's CPU kernels round the product (kernels that match PyTorch's order of operations use it)
__device__ __forceinline__ float zt_mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double zt_mul_rn(double a, double b) { return __dmul_rn(a, b); }
// a * b + c with one rounding, where PyTorch's vectorized CPU kernels use fmadd (lerp, add with alpha)
__device__ __forceinline__ float zt_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double zt_fma(double a, double b, double c) { return fma(a, b, c); }
// NaN-ignoring max (fmaxf / fmax): one NaN operand gives the other
__device__ __forceinline__ float zt_max(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double zt_max(double a, double b) { return fmax(a, b); }

template <typename V> __device__ __forceinline__ V neg_inf() { return static_cast<V>(__int_as_float(0xff800000)); }

// ------------------------------------------------------------------------------------------ indexing
__device__ __forceinline__ long long thread_index() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ long long grid_stride() { return (long long)gridDim.x * blockDim.x; }

// N consecutive elements as one aligned access: 16 bytes when N = 16 / sizeof(U). Wider packs (a float pack
// as long as a 16-bit one) stay 16-byte aligned and are read as several 16-byte accesses.
template <typename U, int N> struct alignas(sizeof(U) * N > 16 ? 16 : sizeof(U) * N) Pack {
    U v[N];
};

// N consecutive elements at p (aligned to their Pack) as values V, in one vector access; and back.
template <typename V, typename S, int N> __device__ __forceinline__ void load_pack(const S* p, V (&out)[N]) {
    const Pack<S, N> pk = *reinterpret_cast<const Pack<S, N>*>(p);
#pragma unroll
    for (int j = 0; j < N; ++j) out[j] = load_as<V>(pk.v[j]);
}
template <typename V, typename S, int N> __device__ __forceinline__ void store_pack(S* p, const V (&in)[N]) {
    Pack<S, N> pk;
#pragma unroll
    for (int j = 0; j < N; ++j) store_as<V>(in[j], pk.v[j]);
    *reinterpret_cast<Pack<S, N>*>(p) = pk;
}

// A strided layout's metadata (int64 in device memory) copied to shared memory as the index type I, once
// per block; every thread must call it (it ends with a barrier).
template <typename I> __device__ __forceinline__ void copy_meta(I* sm, const long long* meta, int count) {
    for (int k = threadIdx.x; k < count; k += blockDim.x) sm[k] = static_cast<I>(meta[k]);
    __syncthreads();
}

// Offsets of element i (row-major over shape[ndim]) into NOPS strided operands, operand k's strides at
// strides[k * ndim + d] (in elements): the dims are walked from the last one, dividing the linear index.
// I is int when the launcher found every offset fits 31 bits (32-bit division), else long long.
template <int NOPS, typename I>
__device__ __forceinline__ void strided_offsets(I i, int ndim, const I* shape, const I* strides, I* off) {
#pragma unroll
    for (int k = 0; k < NOPS; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
        I size = shape[d];
        I q = i / size;
        I r = i - q * size;
        i = q;
#pragma unroll
        for (int k = 0; k < NOPS; ++k) off[k] += r * strides[k * ndim + d];
    }
}
template <typename I> __device__ __forceinline__ I strided_offset(I i, int ndim, const I* shape, const I* strides) {
    I off[1];
    strided_offsets<1>(i, ndim, shape, strides, off);
    return off[0];
}

// ------------------------------------------------------------------------------------------ reductions
constexpr unsigned kFull = 0xffffffffu;  // every lane of the warp takes part

// The xor butterfly leaves the same value in every lane: at each step a lane and its partner combine the
// same two numbers (in swapped order, which float addition and max do not notice).
template <typename V> __device__ __forceinline__ V warp_sum(V v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    return v;
}
template <typename V> __device__ __forceinline__ V warp_max(V v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = zt_max(v, __shfl_xor_sync(kFull, v, o));
    return v;
}

// Running (max, sum of exp(x - max)) pairs, for a softmax's normalizer in one pass.
// Merge two pairs; symmetric, so the butterfly stays lane-uniform.
template <typename V> __device__ __forceinline__ void online_merge(V& m, V& s, V m2, V s2) {
    const V mx = zt_max(m, m2);
    if (mx == neg_inf<V>()) {  // both empty (or all -inf): keep (-inf, 0) instead of exp(-inf - -inf) = NaN
        m = mx;
        s = (V)0;
        return;
    }
    s = s * zt_exp(m - mx) + s2 * zt_exp(m2 - mx);
    m = mx;
}
// Add one element to a pair: one exp per element.
template <typename V> __device__ __forceinline__ void online_add(V& m, V& s, V v) {
    if (v > m) {
        s = s * zt_exp(m - v) + (V)1;  // the first finite element: s = 0 * exp(-inf) + 1
        m = v;
    } else if (v != neg_inf<V>()) {  // NOTE: -inf adds exp(-inf) = 0; skipping it avoids exp(-inf - -inf) = NaN
        s += zt_exp(v - m);  // NaN in v (or in m) makes s NaN, as it should
    }
}

// Row reductions: over the warp (BLOCK_ROW false) or the whole block (true; red holds one slot per warp).
// The block version begins with a barrier so a previous reduction's readers are done with `red` before it
// is overwritten; every thread then combines the warp partials in the same order and gets the same bits.
template <bool BLOCK_ROW, typename V> __device__ __forceinline__ V row_sum(V v, V* red) {
    v = warp_sum(v);
    if (!BLOCK_ROW) return v;
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    V total = red[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w) total += red[w];
    return total;
}
template <bool BLOCK_ROW, typename V> __device__ __forceinline__ V row_max(V v, V* red) {
    v = warp_max(v);
    if (!BLOCK_ROW) return v;
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    V total = red[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w) total = zt_max(total, red[w]);
    return total;
}
template <bool BLOCK_ROW, typename V> __device__ __forceinline__ void row_online(V& m, V& s, V* red_m, V* red_s) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const V m2 = __shfl_xor_sync(kFull, m, o);
        const V s2 = __shfl_xor_sync(kFull, s, o);
        online_merge(m, s, m2, s2);
    }
    if (!BLOCK_ROW) return;
    __syncthreads();
    if ((threadIdx.x & 31) == 0) {
        red_m[threadIdx.x >> 5] = m;
        red_s[threadIdx.x >> 5] = s;
    }
    __syncthreads();
    m = red_m[0];
    s = red_s[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w) online_merge(m, s, red_m[w], red_s[w]);
}

// Which rows a thread works on in the row kernels (softmax, norm, cross_entropy): a warp per row (BLOCK_ROW
// false; warp w of block b takes rows b * warps + w, then + gridDim.x * warps, ...) or a block per row
// (rows b, b + gridDim.x, ...).
struct RowMap {
    int R, t;               // threads on a row, this thread's rank on it
    long long first, step;  // first row, stride between this thread's rows
};
template <bool BLOCK_ROW> __device__ __forceinline__ RowMap row_map() {
    RowMap r;
    if (BLOCK_ROW) {
        r.R = blockDim.x;
        r.t = threadIdx.x;
        r.first = blockIdx.x;
        r.step = gridDim.x;
    } else {
        const int per_block = blockDim.x >> 5;
        r.R = 32;
        r.t = threadIdx.x & 31;
        r.first = (long long)blockIdx.x * per_block + (threadIdx.x >> 5);
        r.step = (long long)gridDim.x * per_block;
    }
    return r;
}
