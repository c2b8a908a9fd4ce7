// Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel Random Numbers: As
// Easy as 1, 2, 3", SC11), with the constants of Random123, curand and PyTorch. Uniform and normal samples
// and dropout, reproducible per (seed, offset) and independent of the launch configuration.
//
// Philox4x32-10: a 128-bit counter c = (c0, c1, c2, c3) and a 64-bit key k = (k0, k1); ten rounds of
//   (hi0, lo0) = M0 * c0,  (hi1, lo1) = M1 * c2     (32 x 32 -> 64-bit products)
//   c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
// with the key bumped by the Weyl constants (k0 += W0, k1 += W1) before every round after the first.
// M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85. The output is the final c.
//
// Which numbers an element gets: key = (seed low 32 bits, seed high 32 bits); element e of a launch uses
// the output of counter (g low, g high, offset low, offset high) with g = e / K, word (e % K) for K = 4
// (one 32-bit word per element), or words 2(e % 2), 2(e % 2) + 1 for K = 2 (64 bits: double uniforms,
// double normals). So a value depends only on (seed, offset, e): any grid, any block size. Callers advance
// `offset` by one per launch (the counter's high half is the launch, the low half the position).
//
// Conversions (u in [0, 1), float32 math unless T = double):
//   uniform  u = (r >> (32 - B)) * 2^-B, B = 24 (float), 11 (half), 8 (bfloat16), 53 bits (double, from
//            two words); out = low + (high - low) * u. B = the type's significand bits, so [0, 1) stays
//            below 1 after rounding to T.
//   normal   Box-Muller on a pair of uniforms: u1 in (0, 1] (so log(u1) is finite), u2 in [0, 1):
//            z0 = sqrt(-2 ln u1) cos(2 pi u2), z1 = sqrt(-2 ln u1) sin(2 pi u2); words (0, 1) give elements
//            4g, 4g+1 and words (2, 3) give 4g+2, 4g+3 (double: words (0,1) u1 and (2,3) u2 give 2g, 2g+1).
//            out = mean + std * z.
//   dropout  for every dtype u = (r >> 8) * 2^-24 (float32), keep where u >= p: the mask depends on (seed,
//            offset, e, p) only, not on T.
//
// Kernels (threadIdx + blockIdx -> groups of K elements, grid-stride; any grid):
//   philox4x32_10(counters, keys, out, n)      raw generator: counters (n, 4), keys (n, 2), out (n, 4) uint32;
//                                              known-answer tests
//   random_uniform(out, n, low, high, seed, offset)      out (n,) of T
//   random_normal(out, n, mean, std, seed, offset)       out (n,) of T
//   dropout_forward(x, y, mask, n, p, scale, seed, offset, aligned)
//       y = x * (kept ? scale : 0) (a NaN stays NaN, as x * mask * scale does); mask (n,) bool = kept. aligned = 1 when x, y are 16-byte aligned
//       (and mask 4-byte): then each thread loads/stores its 4 elements as one vector.
//   dropout_backward(dy, mask, dx, n, scale, aligned)    dx = dy * (mask ? scale : 0)
// seed and offset are 64-bit patterns passed as long long (the launcher maps [0, 2^64) onto them).
// Variants kept: philox4x32_10 (raw) for tests only.
//
// zt-variants: | T=__half | T=__nv_bfloat16 | T=double

#include "zt_device.cuh"

#ifndef T
#define T float
#endif

constexpr unsigned kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr unsigned kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

__device__ __forceinline__ uint4 philox(uint4 c, uint2 k) {
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k.x += kW0;
            k.y += kW1;
        }
        const unsigned hi0 = __umulhi(kM0, c.x), lo0 = kM0 * c.x;
        const unsigned hi1 = __umulhi(kM1, c.z), lo1 = kM1 * c.z;
        c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

// The four words for group g of a launch.
__device__ __forceinline__ uint4 philox_group(unsigned long long g, unsigned long long seed,
                                              unsigned long long offset) {
    return philox(make_uint4((unsigned)g, (unsigned)(g >> 32), (unsigned)offset, (unsigned)(offset >> 32)),
                  make_uint2((unsigned)seed, (unsigned)(seed >> 32)));
}

// ------------------------------------------------------------------------------ conversions
template <typename U> struct Dist;  // per output type: elements per group K, uniform and normal from words
template <int B> __device__ __forceinline__ float unit_float(unsigned r) {  // [0, 1) with B bits
    return (float)(r >> (32 - B)) * (1.0f / (float)(1u << B));
}
__device__ __forceinline__ float unit_open_low(unsigned r) {  // (0, 1] with 24 bits
    return (float)((r >> 8) + 1u) * (1.0f / 16777216.0f);
}
__device__ __forceinline__ double unit_double(unsigned a, unsigned b) {  // [0, 1) with 53 bits
    return (double)(((unsigned long long)a << 21) | (b >> 11)) * (1.0 / 9007199254740992.0);
}
__device__ __forceinline__ void box_muller(float u1, float u2, float& z0, float& z1) {
    const float radius = sqrtf(-2.0f * logf(u1));
    float s, c;
    sincospif(2.0f * u2, &s, &c);
    z0 = radius * c;
    z1 = radius * s;
}

template <> struct Dist<float> {
    static constexpr int K = 4;
    static __device__ __forceinline__ void uniform(uint4 r, double low, double high, float (&o)[4]) {
        const float lo = (float)low, span = (float)(high - low);
        o[0] = lo + span * unit_float<24>(r.x);
        o[1] = lo + span * unit_float<24>(r.y);
        o[2] = lo + span * unit_float<24>(r.z);
        o[3] = lo + span * unit_float<24>(r.w);
    }
    static __device__ __forceinline__ void normal(uint4 r, double mean, double std, float (&o)[4]) {
        box_muller(unit_open_low(r.x), unit_float<24>(r.y), o[0], o[1]);
        box_muller(unit_open_low(r.z), unit_float<24>(r.w), o[2], o[3]);
#pragma unroll
        for (int j = 0; j < 4; ++j) o[j] = (float)mean + (float)std * o[j];
    }
};
// 16-bit types: uniform with the type's significand bits, converted exactly; normal rounded from float
template <int B, typename U> struct Dist16 {
    static constexpr int K = 4;
    static __device__ __forceinline__ void uniform(uint4 r, double low, double high, U (&o)[4]) {
        const float lo = (float)low, span = (float)(high - low);
        const unsigned w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) o[j] = convert(lo + span * unit_float<B>(w[j]));
    }
    static __device__ __forceinline__ void normal(uint4 r, double mean, double std, U (&o)[4]) {
        float z[4];
        Dist<float>::normal(r, mean, std, z);
#pragma unroll
        for (int j = 0; j < 4; ++j) o[j] = convert(z[j]);
    }
    static __device__ __forceinline__ U convert(float v);
};
template <> __device__ __forceinline__ __half Dist16<11, __half>::convert(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 Dist16<8, __nv_bfloat16>::convert(float v) {
    return __float2bfloat16_rn(v);
}
template <> struct Dist<__half> : Dist16<11, __half> {};
template <> struct Dist<__nv_bfloat16> : Dist16<8, __nv_bfloat16> {};
template <> struct Dist<double> {
    static constexpr int K = 2;
    static __device__ __forceinline__ void uniform(uint4 r, double low, double high, double (&o)[2]) {
        o[0] = low + (high - low) * unit_double(r.x, r.y);
        o[1] = low + (high - low) * unit_double(r.z, r.w);
    }
    static __device__ __forceinline__ void normal(uint4 r, double mean, double std, double (&o)[2]) {
        const double u1 = 1.0 - unit_double(r.x, r.y);  // (0, 1]
        const double u2 = unit_double(r.z, r.w);
        const double radius = sqrt(-2.0 * log(u1));
        double s, c;
        sincospi(2.0 * u2, &s, &c);
        o[0] = mean + std * radius * c;
        o[1] = mean + std * radius * s;
    }
};


// ------------------------------------------------------------------------------ sampling
template <bool NORMAL>
__device__ __forceinline__ void sample(T* __restrict__ out, long long n, double a, double b, long long seed,
                                       long long offset) {
    typedef Dist<T> D;
    constexpr int K = D::K;
    const unsigned long long groups = ((unsigned long long)n + K - 1) / K;
    const bool aligned = (reinterpret_cast<unsigned long long>(out) % alignof(Pack<T, K>)) == 0;
    for (unsigned long long g = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; g < groups;
         g += (unsigned long long)gridDim.x * blockDim.x) {
        const uint4 r = philox_group(g, (unsigned long long)seed, (unsigned long long)offset);
        T v[K];
        if (NORMAL) D::normal(r, a, b, v);
        else D::uniform(r, a, b, v);
        const long long e = (long long)g * K;
        if (aligned && e + K <= n) {
            Pack<T, K> pk;
#pragma unroll
            for (int j = 0; j < K; ++j) pk.v[j] = v[j];
            *reinterpret_cast<Pack<T, K>*>(out + e) = pk;
        } else {
#pragma unroll
            for (int j = 0; j < K; ++j)
                if (e + j < n) out[e + j] = v[j];
        }
    }
}

extern "C" __global__ void random_uniform(T* __restrict__ out, long long n, double low, double high, long long seed,
                                          long long offset) {
    sample<false>(out, n, low, high, seed, offset);
}

extern "C" __global__ void random_normal(T* __restrict__ out, long long n, double mean, double std, long long seed,
                                         long long offset) {
    sample<true>(out, n, mean, std, seed, offset);
}

// ------------------------------------------------------------------------------ dropout
// the scale in the type's compute precision (double for double, else float)
__device__ __forceinline__ float scale_of(float, double s) { return (float)s; }
__device__ __forceinline__ float scale_of(__half, double s) { return (float)s; }
__device__ __forceinline__ float scale_of(__nv_bfloat16, double s) { return (float)s; }
__device__ __forceinline__ double scale_of(double, double s) { return s; }

extern "C" __global__ void dropout_forward(const T* __restrict__ x, T* __restrict__ y, bool* __restrict__ mask,
                                           long long n, float p, double scale, long long seed, long long offset,
                                           int aligned) {
    const auto k = scale_of(T(), scale);
    const unsigned long long groups = ((unsigned long long)n + 3) / 4;
    for (unsigned long long g = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; g < groups;
         g += (unsigned long long)gridDim.x * blockDim.x) {
        const uint4 r = philox_group(g, (unsigned long long)seed, (unsigned long long)offset);
        const bool keep[4] = {unit_float<24>(r.x) >= p, unit_float<24>(r.y) >= p, unit_float<24>(r.z) >= p,
                              unit_float<24>(r.w) >= p};
        const long long e = (long long)g * 4;
        if (aligned && e + 4 <= n) {
            const Pack<T, 4> in = *reinterpret_cast<const Pack<T, 4>*>(x + e);
            Pack<T, 4> out;
            Pack<bool, 4> m;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                store_as(widen(in.v[j]) * (keep[j] ? k : 0 * k), out.v[j]);
                m.v[j] = keep[j];
            }
            *reinterpret_cast<Pack<T, 4>*>(y + e) = out;
            *reinterpret_cast<Pack<bool, 4>*>(mask + e) = m;
        } else {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                if (e + j < n) {
                    store_as(widen(x[e + j]) * (keep[j] ? k : 0 * k), y[e + j]);
                    mask[e + j] = keep[j];
                }
            }
        }
    }
}

extern "C" __global__ void dropout_backward(const T* __restrict__ dy, const bool* __restrict__ mask,
                                            T* __restrict__ dx, long long n, double scale, int aligned) {
    const auto k = scale_of(T(), scale);
    const unsigned long long groups = ((unsigned long long)n + 3) / 4;
    for (unsigned long long g = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; g < groups;
         g += (unsigned long long)gridDim.x * blockDim.x) {
        const long long e = (long long)g * 4;
        if (aligned && e + 4 <= n) {
            const Pack<T, 4> in = *reinterpret_cast<const Pack<T, 4>*>(dy + e);
            const Pack<bool, 4> m = *reinterpret_cast<const Pack<bool, 4>*>(mask + e);
            Pack<T, 4> out;
#pragma unroll
            for (int j = 0; j < 4; ++j) store_as(widen(in.v[j]) * (m.v[j] ? k : 0 * k), out.v[j]);
            *reinterpret_cast<Pack<T, 4>*>(dx + e) = out;
        } else {
#pragma unroll
            for (int j = 0; j < 4; ++j)
                if (e + j < n) store_as(widen(dy[e + j]) * (mask[e + j] ? k : 0 * k), dx[e + j]);
        }
    }
}

// ------------------------------------------------------------------------------ the raw generator
extern "C" __global__ void philox4x32_10(const unsigned int* __restrict__ counters,
                                         const unsigned int* __restrict__ keys, unsigned int* __restrict__ out,
                                         long long n) {
    for (long long i = thread_index(); i < n; i += grid_stride()) {
        const uint4 c = make_uint4(counters[4 * i], counters[4 * i + 1], counters[4 * i + 2], counters[4 * i + 3]);
        const uint4 r = philox(c, make_uint2(keys[2 * i], keys[2 * i + 1]));
        out[4 * i] = r.x;
        out[4 * i + 1] = r.y;
        out[4 * i + 2] = r.z;
        out[4 * i + 3] = r.w;
    }
}
