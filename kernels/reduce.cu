// Reductions over any set of axes: sum, prod, mean, max, min, argmax, argmin, var, any, all.
//
// The launcher moves the reduced axes last with a strided view (no copy), so every reduction is
// (M outputs) x (K reduced elements): output m reads x[outer_offset(m) + reduced_offset(k)], k < K.
// The reduction is a functor chosen by `-DROP=red_<name>` with an accumulator type A (a sum, a running
// max, a value+index pair, a Welford (count, mean, m2) triple) and four steps: init, make (one element),
// combine (two partial results; associative, so any split and order works) and finish (A -> output).
//
// Defines (defaults compile standalone):
//   ROP  red_sum | red_prod | red_mean | red_max | red_min | red_argmax | red_argmin | red_var | red_any | red_all
//   T    input storage type; TO: output storage type; CT: accumulation type (float for 16/32-bit floats,
//        double for float64, long long for integers and bool)
//   IDX  index type of offsets (int when every offset fits 31 bits, else long long)
//   TPR  threads per output row in reduce_inner / reduce_finish: 32 (a warp per row, BLOCK/32 rows per
//        block) up to BLOCK (the whole block on one row); a power of two
//   BLOCK threads per block (256)
//
// Launch contract:
//   meta (int64, contiguous): outer_shape[n_outer], outer_strides[n_outer], red_shape[n_red],
//   red_strides[n_red], strides in ELEMENTS, n_outer + n_red <= 2 * ZT_MAX_DIMS (after merging dims).
//   Split-K: gridDim.y = P chunks of `chunk` reduced elements each. With P == 1 a kernel writes the final
//   value to out[m] (out contiguous, M elements); with P > 1 it writes its accumulator to partial[m * P + p]
//   (partial: M * P * 32 bytes, raw accumulators; NULL when P == 1) and reduce_finish combines the P of each row.
//
//   reduce_inner(out, partial, x, M, K, chunk, n_outer, n_red, meta, ddof, vec)
//       block BLOCK = (BLOCK / TPR rows) x (TPR threads along k); grid (ceil(M / (BLOCK / TPR)), P).
//       For reductions along memory-contiguous k. vec = 1 when n_red == 1, the reduced stride is 1, every
//       row start is 16-byte aligned and chunk % (16 / sizeof(T)) == 0: 16-byte loads.
//   reduce_outer(out, partial, x, M, K, chunk, n_outer, n_red, meta, ddof)
//       block BLOCK = 32 outputs (threadIdx.x % 32, adjacent in memory: coalesced) x BLOCK / 32 threads along
//       k; grid (ceil(M / 32), P). For reductions over a strided axis with contiguous outputs (a column sum).
//   reduce_finish(out, partial, M, P, K, ddof)
//       block BLOCK as reduce_inner (TPR threads per row of P accumulators); grid ceil(M / (BLOCK / TPR)).
//   ddof: var's delta degrees of freedom (ignored by the others).
//
// NaN: max/min propagate it, argmax/argmin return the first NaN, as NumPy does. Ties: first index.
// Variants kept: inner scalar loads (vec = 0) as the baseline of bench/ops_reduce.py.
//
// zt-variants: | ROP=red_max,T=__half,TO=__half,TPR=32 | ROP=red_argmax,T=__nv_bfloat16,TO=long long,TPR=256 | ROP=red_var,T=double,TO=double,CT=double,TPR=128 | ROP=red_sum,T=bool,TO=long long,CT=long long,IDX=long long | ROP=red_mean,T=__nv_bfloat16,TO=__nv_bfloat16 | ROP=red_any,T=float,TO=bool | ROP=red_prod,T=int,TO=long long,CT=long long | ROP=red_argmin,T=float,TO=long long,TPR=64

#include "zt_device.cuh"

#ifndef ROP
#define ROP red_sum
#endif
#ifndef T
#define T float
#endif
#ifndef TO
#define TO T
#endif
#ifndef CT
#define CT float
#endif
#ifndef IDX
#define IDX int
#endif
#ifndef BLOCK
#define BLOCK 256
#endif
#ifndef TPR
#define TPR 256
#endif
#ifndef ZT_MAX_DIMS
#define ZT_MAX_DIMS 8
#endif

template <typename V> __device__ __forceinline__ bool is_nan(V x) { return x != x; }
template <typename V> __device__ __forceinline__ V lowest();
template <typename V> __device__ __forceinline__ V highest();
template <> __device__ __forceinline__ float lowest<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ float highest<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double lowest<double>() { return __longlong_as_double(0xfff0000000000000LL); }
template <> __device__ __forceinline__ double highest<double>() { return __longlong_as_double(0x7ff0000000000000LL); }
template <> __device__ __forceinline__ long long lowest<long long>() { return (long long)0x8000000000000000ULL; }
template <> __device__ __forceinline__ long long highest<long long>() { return 0x7fffffffffffffffLL; }

template <typename V> __device__ __forceinline__ V shfl(V v, int lane_mask) {
    return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}

// ------------------------------------------------------------------------------------------ reductions
template <typename V> struct ValueAcc { V v; };
template <typename V> struct IndexAcc { V v; long long i; };
template <typename V> struct WelfordAcc { V n, mean, m2; };

template <typename V> struct red_sum {
    typedef ValueAcc<V> A;
    static __device__ __forceinline__ A init() { return {V(0)}; }
    static __device__ __forceinline__ A make(V x, long long) { return {x}; }
    static __device__ __forceinline__ A combine(A a, A b) { return {a.v + b.v}; }
    static __device__ __forceinline__ A shuffle(A a, int m) { return {shfl(a.v, m)}; }
    static __device__ __forceinline__ V finish(A a, long long, double) { return a.v; }
};
template <typename V> struct red_mean : red_sum<V> {
    typedef ValueAcc<V> A;
    static __device__ __forceinline__ V finish(A a, long long count, double) { return a.v / V(count); }
};
template <typename V> struct red_prod {
    typedef ValueAcc<V> A;
    static __device__ __forceinline__ A init() { return {V(1)}; }
    static __device__ __forceinline__ A make(V x, long long) { return {x}; }
    static __device__ __forceinline__ A combine(A a, A b) { return {a.v * b.v}; }
    static __device__ __forceinline__ A shuffle(A a, int m) { return {shfl(a.v, m)}; }
    static __device__ __forceinline__ V finish(A a, long long, double) { return a.v; }
};
template <typename V> struct red_max {
    typedef ValueAcc<V> A;
    static __device__ __forceinline__ A init() { return {lowest<V>()}; }
    static __device__ __forceinline__ A make(V x, long long) { return {x}; }
    static __device__ __forceinline__ A combine(A a, A b) {
        return {is_nan(a.v) ? a.v : is_nan(b.v) ? b.v : (a.v > b.v ? a.v : b.v)};
    }
    static __device__ __forceinline__ A shuffle(A a, int m) { return {shfl(a.v, m)}; }
    static __device__ __forceinline__ V finish(A a, long long, double) { return a.v; }
};
template <typename V> struct red_min {
    typedef ValueAcc<V> A;
    static __device__ __forceinline__ A init() { return {highest<V>()}; }
    static __device__ __forceinline__ A make(V x, long long) { return {x}; }
    static __device__ __forceinline__ A combine(A a, A b) {
        return {is_nan(a.v) ? a.v : is_nan(b.v) ? b.v : (a.v < b.v ? a.v : b.v)};
    }
    static __device__ __forceinline__ A shuffle(A a, int m) { return {shfl(a.v, m)}; }
    static __device__ __forceinline__ V finish(A a, long long, double) { return a.v; }
};
// argmax/argmin: the better of two (value, index) pairs; a NaN beats every number, ties go to the lower
// index, and the identity (init) loses to every element.
template <typename V, bool LARGEST> struct red_arg {
    typedef IndexAcc<V> A;
    static __device__ __forceinline__ A init() { return {LARGEST ? lowest<V>() : highest<V>(), 0x7fffffffffffffffLL}; }
    static __device__ __forceinline__ A make(V x, long long k) { return {x, k}; }
    static __device__ __forceinline__ A combine(A a, A b) {
        bool a_nan = is_nan(a.v), b_nan = is_nan(b.v);
        bool take_a;
        if (a_nan || b_nan) take_a = a_nan && (!b_nan || a.i < b.i);
        else if (a.v != b.v) take_a = LARGEST ? a.v > b.v : a.v < b.v;
        else take_a = a.i < b.i;
        return take_a ? a : b;
    }
    static __device__ __forceinline__ A shuffle(A a, int m) { return {shfl(a.v, m), shfl(a.i, m)}; }
    static __device__ __forceinline__ long long finish(A a, long long, double) { return a.i; }
};
template <typename V> struct red_argmax : red_arg<V, true> {};
template <typename V> struct red_argmin : red_arg<V, false> {};
// var: Chan et al.'s pairwise combination of Welford triples (count, mean, sum of squared deviations).
template <typename V> struct red_var {
    typedef WelfordAcc<V> A;
    static __device__ __forceinline__ A init() { return {V(0), V(0), V(0)}; }
    static __device__ __forceinline__ A make(V x, long long) { return {V(1), x, V(0)}; }
    static __device__ __forceinline__ A combine(A a, A b) {
        V n = a.n + b.n;
        if (n == V(0)) return a;
        V delta = b.mean - a.mean;
        V wb = b.n / n;
        return {n, a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.n * wb};
    }
    static __device__ __forceinline__ A shuffle(A a, int m) { return {shfl(a.n, m), shfl(a.mean, m), shfl(a.m2, m)}; }
    static __device__ __forceinline__ V finish(A a, long long count, double ddof) {
        double dof = (double)count - ddof;
        return a.m2 / V(dof > 0.0 ? dof : 0.0);  // NumPy: divide by max(n - ddof, 0)
    }
};
template <typename V> struct red_any {
    typedef ValueAcc<int> A;
    static __device__ __forceinline__ A init() { return {0}; }
    static __device__ __forceinline__ A make(V x, long long) { return {x != V(0)}; }
    static __device__ __forceinline__ A combine(A a, A b) { return {a.v | b.v}; }
    static __device__ __forceinline__ A shuffle(A a, int m) { return {shfl(a.v, m)}; }
    static __device__ __forceinline__ int finish(A a, long long, double) { return a.v; }
};
template <typename V> struct red_all {
    typedef ValueAcc<int> A;
    static __device__ __forceinline__ A init() { return {1}; }
    static __device__ __forceinline__ A make(V x, long long) { return {x != V(0)}; }
    static __device__ __forceinline__ A combine(A a, A b) { return {a.v & b.v}; }
    static __device__ __forceinline__ A shuffle(A a, int m) { return {shfl(a.v, m)}; }
    static __device__ __forceinline__ int finish(A a, long long, double) { return a.v; }
};

typedef ROP<CT> R;
typedef typename R::A Acc;
static_assert(sizeof(Acc) <= 32, "partial accumulators are stored in 32-byte slots");

// ------------------------------------------------------------------------------------------ plumbing
#define VEC ((int)(16 / sizeof(T)))

struct Layout {  // the metadata in shared memory
    IDX outer_shape[ZT_MAX_DIMS], outer_strides[ZT_MAX_DIMS], red_shape[ZT_MAX_DIMS], red_strides[ZT_MAX_DIMS];
    int n_outer, n_red;
};

__device__ __forceinline__ void load_layout(Layout& L, const long long* meta, int n_outer, int n_red) {
    if (threadIdx.x == 0) {
        L.n_outer = n_outer;
        L.n_red = n_red;
        for (int d = 0; d < n_outer; ++d) {
            L.outer_shape[d] = static_cast<IDX>(meta[d]);
            L.outer_strides[d] = static_cast<IDX>(meta[n_outer + d]);
        }
        for (int d = 0; d < n_red; ++d) {
            L.red_shape[d] = static_cast<IDX>(meta[2 * n_outer + d]);
            L.red_strides[d] = static_cast<IDX>(meta[2 * n_outer + n_red + d]);
        }
    }
    __syncthreads();
}

__device__ __forceinline__ IDX red_offset(const Layout& L, IDX k) {
    return L.n_red == 1 ? k * L.red_strides[0] : strided_offset(k, L.n_red, L.red_shape, L.red_strides);
}

// Combine the accumulators of groups of G consecutive threads (G a power of two <= BLOCK); the result is
// valid in the group's first thread. Every thread of the block must call it.
template <int G> __device__ __forceinline__ Acc group_reduce(Acc a, Acc* smem) {
#pragma unroll
    for (int m = (G < 32 ? G : 32) / 2; m > 0; m >>= 1) a = R::combine(a, R::shuffle(a, m));
    if (G > 32) {
        const int warp = threadIdx.x / 32;
        if ((threadIdx.x & 31) == 0) smem[warp] = a;
        __syncthreads();
        if (threadIdx.x % G == 0)
            for (int w = 1; w < G / 32; ++w) a = R::combine(a, smem[warp + w]);
    }
    return a;
}

__device__ __forceinline__ void emit(TO* out, ZT_NULLABLE unsigned char* partial, long long m, long long M, Acc a, long long K,
                                     double ddof) {
    if (m >= M) return;
    if (gridDim.y == 1) out[m] = Conv<TO>::store(R::finish(a, K, ddof));
    else reinterpret_cast<Acc*>(partial + 32 * (m * gridDim.y + blockIdx.y))[0] = a;
}

// ------------------------------------------------------------------------------------------ kernels
extern "C" __global__ void reduce_inner(TO* out, ZT_NULLABLE unsigned char* partial, ZT_STRIDED const T* x, long long M,
                                        long long K, long long chunk, int n_outer, int n_red, const long long* meta,
                                        double ddof, int vec) {
    __shared__ Layout L;
    __shared__ Acc smem[BLOCK / 32];
    load_layout(L, meta, n_outer, n_red);
    const long long m = (long long)blockIdx.x * (BLOCK / TPR) + threadIdx.x / TPR;
    const int lane = threadIdx.x % TPR;
    const long long k0 = (long long)blockIdx.y * chunk;
    const long long k1 = k0 + chunk < K ? k0 + chunk : K;
    Acc acc = R::init();
    if (m < M) {
        const T* row = x + strided_offset(static_cast<IDX>(m), L.n_outer, L.outer_shape, L.outer_strides);
        if (vec) {
            // k0 and the row start are VEC-aligned (the launcher checked): whole packs, then the row's tail
            const long long nv = (k1 - k0) / VEC;
            const Pack<T, VEC>* packs = reinterpret_cast<const Pack<T, VEC>*>(row + k0);
#pragma unroll 4
            for (long long j = lane; j < nv; j += TPR) {
                Pack<T, VEC> p = packs[j];
#pragma unroll
                for (int e = 0; e < VEC; ++e)
                    acc = R::combine(acc, R::make(Conv<T>::template load<CT>(p.v[e]), k0 + j * VEC + e));
            }
            for (long long k = k0 + nv * VEC + lane; k < k1; k += TPR)
                acc = R::combine(acc, R::make(Conv<T>::template load<CT>(row[k]), k));
        } else {
#pragma unroll 4
            for (long long k = k0 + lane; k < k1; k += TPR)
                acc = R::combine(acc, R::make(Conv<T>::template load<CT>(row[red_offset(L, static_cast<IDX>(k))]), k));
        }
    }
    acc = group_reduce<TPR>(acc, smem);
    if (lane == 0) emit(out, partial, m, M, acc, K, ddof);
}

extern "C" __global__ void reduce_outer(TO* out, ZT_NULLABLE unsigned char* partial, ZT_STRIDED const T* x, long long M,
                                        long long K, long long chunk, int n_outer, int n_red, const long long* meta,
                                        double ddof) {
    __shared__ Layout L;
    __shared__ Acc smem[BLOCK];
    load_layout(L, meta, n_outer, n_red);
    const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
    const long long m = (long long)blockIdx.x * 32 + tx;
    const long long k0 = (long long)blockIdx.y * chunk;
    const long long k1 = k0 + chunk < K ? k0 + chunk : K;
    Acc acc = R::init();
    if (m < M) {
        const T* col = x + strided_offset(static_cast<IDX>(m), L.n_outer, L.outer_shape, L.outer_strides);
#pragma unroll 4
        for (long long k = k0 + ty; k < k1; k += BLOCK / 32)
            acc = R::combine(acc, R::make(Conv<T>::template load<CT>(col[red_offset(L, static_cast<IDX>(k))]), k));
    }
    smem[threadIdx.x] = acc;
    __syncthreads();
    if (ty == 0) {
        for (int y = 1; y < BLOCK / 32; ++y) acc = R::combine(acc, smem[y * 32 + tx]);
        emit(out, partial, m, M, acc, K, ddof);
    }
}

extern "C" __global__ void reduce_finish(TO* out, const unsigned char* partial, long long M, long long P, long long K,
                                         double ddof) {
    __shared__ Acc smem[BLOCK / 32];
    const long long m = (long long)blockIdx.x * (BLOCK / TPR) + threadIdx.x / TPR;
    const int lane = threadIdx.x % TPR;
    Acc acc = R::init();
    if (m < M) {
        for (long long p = lane; p < P; p += TPR)
            acc = R::combine(acc, *reinterpret_cast<const Acc*>(partial + 32 * (m * P + p)));
    }
    acc = group_reduce<TPR>(acc, smem);
    if (lane == 0 && m < M) out[m] = Conv<TO>::store(R::finish(acc, K, ddof));
}
