// Copy with cast: dst = (DST_T) src, between contiguous arrays or any two N-d strided views.
//
// Defines (all have defaults, so the file compiles standalone):
//   SRC_T, DST_T  storage types: bool, signed char, unsigned char, short, int, long long, __half,
//                 __nv_bfloat16, float, double (DST_T defaults to SRC_T: a plain copy, bit-exact)
//   IDX           index type of copy_strided: int when every element offset fits in 31 bits (the fast
//                 path), else long long
//   ZT_MAX_DIMS   most dims of copy_strided (8)
//
// Conversions round to nearest; to bool is `!= 0`; 16-bit floats convert through float (so double -> half
// rounds twice, off by one ulp only within 2^-29 of a tie); float -> integer truncates toward zero.
//
// Launch contract (grid-stride loops: any grid >= 1 is correct; no shared memory):
//   copy_contiguous_vec(const SRC_T* src, DST_T* dst, long long n)
//       n elements, both C-contiguous; src and dst aligned to VEC * sizeof(their type) bytes, where
//       VEC = 16 / max(sizeof(SRC_T), sizeof(DST_T)): each step moves VEC elements with one 16-byte load (or
//       store) of the wider type. The tail of n % VEC elements runs scalar in the same kernel.
//       Launcher: block 256, grid min(ceil(n / VEC / 256), 8 * SMs).
//   copy_contiguous(const SRC_T* src, DST_T* dst, long long n)
//       the same without the alignment requirement (scalar loads); also the naive baseline of bench ops.
//   copy_strided(ZT_STRIDED const SRC_T* src, ZT_STRIDED DST_T* dst, long long n, ZtCopyLayout layout)
//       n = prod(layout.shape[:ndim]) elements; element k (row-major over shape) is read at
//       src + sum(coord[d] * src_strides[d]) and written at dst + sum(coord[d] * dst_strides[d]), strides in
//       ELEMENTS (0 = broadcast over that dim of src). layout is passed by value (no device metadata).
//       Launcher: block 256, grid min(ceil(n / 256), 8 * SMs); dims merged and sized by the launcher.
//
// Versions kept: vec (the fast path), contiguous (unaligned views; the naive baseline), strided (general).
//
// zt-variants: | SRC_T=float,DST_T=__nv_bfloat16 | SRC_T=__half,DST_T=float | SRC_T=double,DST_T=__half | SRC_T=bool,DST_T=float | SRC_T=float,DST_T=bool | SRC_T=long long,DST_T=float,IDX=long long | SRC_T=__nv_bfloat16,DST_T=__half | SRC_T=unsigned char,DST_T=double | SRC_T=float,DST_T=int

#include "zt_device.cuh"

#ifndef SRC_T
#define SRC_T float
#endif
#ifndef DST_T
#define DST_T SRC_T
#endif
#ifndef IDX
#define IDX int
#endif
#ifndef ZT_MAX_DIMS
#define ZT_MAX_DIMS 8
#endif

struct ZtCopyLayout {
    long long shape[ZT_MAX_DIMS];
    long long src_strides[ZT_MAX_DIMS];
    long long dst_strides[ZT_MAX_DIMS];
    int ndim;
};

// ------------------------------------------------------------------------------------------ conversions
template <typename A, typename B> struct SameType { static constexpr bool value = false; };
template <typename A> struct SameType<A, A> { static constexpr bool value = true; };

// NOTE: a template, so that `if constexpr` discards the branch that does not compile for these types
template <typename D, typename S> __device__ __forceinline__ D convert_to(S x) {
    if constexpr (SameType<S, D>::value) {
        return x;  // a plain copy keeps the bits (NaN payloads, -0.0)
    } else {
        return Conv<D>::store(widen(x));
    }
}
__device__ __forceinline__ DST_T convert(SRC_T x) { return convert_to<DST_T>(x); }

// ------------------------------------------------------------------------------------------ contiguous
constexpr int WIDEST = sizeof(SRC_T) > sizeof(DST_T) ? sizeof(SRC_T) : sizeof(DST_T);
constexpr int VEC = 16 / WIDEST;

extern "C" __global__ void copy_contiguous_vec(const SRC_T* __restrict__ src, DST_T* __restrict__ dst, long long n) {
    const long long packs = n / VEC;
    const Pack<SRC_T, VEC>* s = reinterpret_cast<const Pack<SRC_T, VEC>*>(src);
    Pack<DST_T, VEC>* d = reinterpret_cast<Pack<DST_T, VEC>*>(dst);
    for (long long i = thread_index(); i < packs; i += grid_stride()) {
        const Pack<SRC_T, VEC> in = s[i];
        Pack<DST_T, VEC> out;
#pragma unroll
        for (int k = 0; k < VEC; ++k) out.v[k] = convert(in.v[k]);
        d[i] = out;
    }
    for (long long i = packs * VEC + thread_index(); i < n; i += grid_stride()) dst[i] = convert(src[i]);
}

extern "C" __global__ void copy_contiguous(const SRC_T* __restrict__ src, DST_T* __restrict__ dst, long long n) {
    for (long long i = thread_index(); i < n; i += grid_stride()) dst[i] = convert(src[i]);
}

// ------------------------------------------------------------------------------------------ strided
extern "C" __global__ void copy_strided(ZT_STRIDED const SRC_T* __restrict__ src, ZT_STRIDED DST_T* __restrict__ dst,
                                        long long n, ZtCopyLayout layout) {
    for (long long i = thread_index(); i < n; i += grid_stride()) {
        IDX rem = static_cast<IDX>(i), src_off = 0, dst_off = 0;
        // NOTE: unrolled with constant indices so the layout stays in the parameter bank (a runtime index
        // would copy the whole struct to local memory)
#pragma unroll
        for (int d = ZT_MAX_DIMS - 1; d >= 0; --d) {
            if (d < layout.ndim) {
                const IDX size = static_cast<IDX>(layout.shape[d]);
                const IDX coord = rem % size;
                rem /= size;
                src_off += coord * static_cast<IDX>(layout.src_strides[d]);
                dst_off += coord * static_cast<IDX>(layout.dst_strides[d]);
            }
        }
        dst[dst_off] = convert(src[src_off]);
    }
}
