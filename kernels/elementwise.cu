// Elementwise ops: every unary, binary and ternary math op, comparison, cast and copy of the CUDA backend,
// plus the fused bias + activation (+ residual) kernel.
//
// ONE mechanism: the op is a functor chosen by `-DOP=op_<name>` (the list is below), applied to values
// loaded from up to three operands of any storage type, computed in the compute type CT, and stored as TO.
// Each operand is an array (any strides, broadcast = stride 0) or a scalar passed by value.
//
// Defines (all have defaults, so the file compiles standalone):
//   OP        functor (op_add, op_exp, op_where, ...; see "ops" below)
//   TO        output storage type; TA, TB, TC: storage types of operands a, b, c (bool, int8..int64,
//             uint8, __half, __nv_bfloat16, float, double)
//   CT        compute type: float (16/32-bit floats), double (float64), long long (integers and bool)
//   ST        type of scalar operands as passed: double for a floating CT, long long otherwise
//   IDX       index type of the strided kernels: int when every offset fits 31 bits, else long long
//   ZT_ARITY  1, 2 or 3: only that arity's kernels get bodies (the others compile empty, so one NVRTC
//             compile builds one op); undefined = all of them (the standalone compile test).
//   ACT       activation of bias_act_vec: act_none, act_relu, act_gelu, act_gelu_tanh, act_silu
//   BLOCK     threads per block (256)
//
// Launch contract (all kernels): grid-stride loops, so any grid >= 1 is correct; the launcher uses
// block = BLOCK threads and grid = min(ceil(work / BLOCK), one resident wave), no shared memory except the
// strided kernels' static metadata copy.
//
//   ew{1,2,3}_vec(out, a[, b[, c]], [sa, sb, (sc,) smask,] n)
//       C-contiguous operands of n elements (same shape, no broadcast) whose pointers are aligned to
//       VEC * sizeof(type) bytes, VEC = 16 / sizeof(widest type): 16-byte loads of the widest type; the
//       tail of n % VEC elements runs scalar in the same kernel.
//   ew{1,2,3}_contig(...)  same arguments, no alignment requirement (scalar loads)
//   ew{1,2,3}_strided(out, a[, b[, c]], [sa, sb, (sc,) smask,] n, ndim, meta)
//       N-d strided: meta (int64, contiguous) = shape[ndim], then for out, a, b, c in that order the
//       strides[ndim] in ELEMENTS (0 for broadcast dims); ndim <= ZT_MAX_DIMS after the launcher merged
//       dims. out may alias an input at the same index (in-place ops).
//   smask: bit 0 = a is the scalar sa, bit 1 = b is sb, bit 2 = c is sc (its pointer is then NULL, as
//   ZT_NULLABLE allows, and never read).
//
//   bias_act_vec(out, x, bias, residual, n, ncols, flags)
//       out = ACT(x + bias[col]) (+ residual), x/out/residual C-contiguous (rows, ncols), bias (ncols,);
//       flags bit 0: bias present, bit 1: residual present (absent operands are NULL, never read).
//       Vectorized (VEC = 16 / sizeof(T)) when ncols % VEC == 0 and all pointers are 16-byte aligned, which
//       the launcher guarantees before choosing it; otherwise bias_act_contig (same args, scalar loads).
//
// Variants kept: vec (the fast path), contig (unaligned views), strided (the general path); the strided one
// doubles as the naive baseline in bench/ops_elementwise.py.
//
// zt-variants: | ZT_ARITY=1,OP=op_exp,TO=__half,TA=__half | ZT_ARITY=2,OP=op_add,TO=__nv_bfloat16,TA=__nv_bfloat16,TB=__nv_bfloat16 | ZT_ARITY=2,OP=op_less,TO=bool,TA=double,TB=double,CT=double,ST=double | ZT_ARITY=1,OP=op_identity,TO=__nv_bfloat16,TA=float | ZT_ARITY=2,OP=op_floor_divide,TO=long long,TA=long long,TB=long long,CT=long long,ST=long long,IDX=long long | ZT_ARITY=3,OP=op_where,TO=float,TA=bool,TB=float,TC=float | ZT_ARITY=0,ACT=act_gelu,TO=__nv_bfloat16,TA=__nv_bfloat16 | ZT_ARITY=0,ACT=act_silu,TO=__half,TA=__half

#include "zt_device.cuh"

#ifndef OP
#define OP op_add
#endif
#ifndef TA
#define TA float
#endif
#ifndef TB
#define TB TA
#endif
#ifndef TC
#define TC TA
#endif
#ifndef TO
#define TO TA
#endif
#ifndef CT
#define CT float
#endif
#ifndef ST
#define ST double
#endif
#ifndef IDX
#define IDX int
#endif
#ifndef ACT
#define ACT act_gelu
#endif
#ifndef BLOCK
#define BLOCK 256
#endif
#ifndef ZT_MAX_DIMS
#define ZT_MAX_DIMS 8
#endif
#ifdef ZT_ARITY
#define ZT_HAS_ARITY(k) (ZT_ARITY == (k))
#else
#define ZT_HAS_ARITY(k) 1
#endif

// ------------------------------------------------------------------------------------------ math by type
// The float and double forms are zt_device.cuh's; the integer forms (CT = long long) are what NumPy's
// integer loops do.
__device__ __forceinline__ long long zt_floor(long long x) { return x; }
__device__ __forceinline__ long long zt_ceil(long long x) { return x; }
__device__ __forceinline__ long long zt_rint(long long x) { return x; }
__device__ __forceinline__ long long zt_trunc(long long x) { return x; }
__device__ __forceinline__ long long zt_pow(long long a, long long b) {
    long long r = 1;  // negative exponents are refused before launch, as NumPy refuses them
    while (b > 0) {
        if (b & 1) r *= a;
        a *= a;
        b >>= 1;
    }
    return r;
}

template <typename V> __device__ __forceinline__ bool zt_isnan(V x) { return x != x; }

// ------------------------------------------------------------------------------------------ activations
template <typename V> __device__ __forceinline__ V gelu_tanh_grad(V x) {
    const V k0 = V(0.79788456080286535588), k1 = V(0.044715);
    V t = zt_tanh(k0 * (x + k1 * x * x * x));
    return V(0.5) * (V(1) + t) + V(0.5) * x * (V(1) - t * t) * k0 * (V(1) + V(3) * k1 * x * x);
}
template <typename V> __device__ __forceinline__ V silu_grad(V x) {
    V s = V(1) / (V(1) + zt_exp(-x));
    return s * (V(1) + x * (V(1) - s));
}
// ------------------------------------------------------------------------------------------ ops
// Every functor has f(a, b, c); unary ops ignore b and c, binary ops ignore c. Names are NumPy's.
#define ZT_OP(name, expr) \
    template <typename V> struct name { static __device__ __forceinline__ auto f(V a, V b, V c) { return (expr); } };

ZT_OP(op_identity, a)
ZT_OP(op_negative, -a)
ZT_OP(op_positive, a)
ZT_OP(op_absolute, a < V(0) ? -a : a)
ZT_OP(op_sign, zt_isnan(a) ? a : V((a > V(0)) - (a < V(0))))
ZT_OP(op_square, a * a)
ZT_OP(op_reciprocal, V(1) / a)
ZT_OP(op_exp, zt_exp(a))
ZT_OP(op_expm1, zt_expm1(a))
ZT_OP(op_log, zt_log(a))
ZT_OP(op_log1p, zt_log1p(a))
ZT_OP(op_sqrt, zt_sqrt(a))
ZT_OP(op_rsqrt, zt_rsqrt(a))
ZT_OP(op_sin, zt_sin(a))
ZT_OP(op_cos, zt_cos(a))
ZT_OP(op_tanh, zt_tanh(a))
ZT_OP(op_erf, zt_erf(a))
ZT_OP(op_arctan, zt_atan(a))
ZT_OP(op_arcsin, zt_asin(a))
ZT_OP(op_arccos, zt_acos(a))
ZT_OP(op_floor, zt_floor(a))
ZT_OP(op_ceil, zt_ceil(a))
ZT_OP(op_rint, zt_rint(a))
ZT_OP(op_trunc, zt_trunc(a))
ZT_OP(op_logical_not, !(a != V(0)))
ZT_OP(op_invert, ~a)
ZT_OP(op_isnan, zt_isnan(a))
ZT_OP(op_isinf, !zt_isnan(a) && !zt_isnan(a - a))
ZT_OP(op_isfinite, !zt_isnan(a - a))
ZT_OP(op_isposinf, !zt_isnan(a - a) ? false : a > V(0))
ZT_OP(op_isneginf, !zt_isnan(a - a) ? false : a < V(0))
// sigmoid split by sign so exp never overflows
ZT_OP(op_sigmoid, a >= V(0) ? V(1) / (V(1) + zt_exp(-a)) : zt_exp(a) / (V(1) + zt_exp(a)))
ZT_OP(op_relu, zt_isnan(a) ? a : (a > V(0) ? a : V(0)))
ZT_OP(op_silu, a / (V(1) + zt_exp(-a)))
ZT_OP(op_gelu, V(0.5) * a * (V(1) + zt_erf(a * V(0.70710678118654752440))))
ZT_OP(op_gelu_tanh, V(0.5) * a * (V(1) + zt_tanh(V(0.79788456080286535588) * (a + V(0.044715) * a * a * a))))

ZT_OP(op_add, a + b)
ZT_OP(op_subtract, a - b)
ZT_OP(op_multiply, a * b)
ZT_OP(op_divide, a / b)
ZT_OP(op_power, zt_pow(a, b))
ZT_OP(op_arctan2, zt_atan2(a, b))
ZT_OP(op_maximum, zt_isnan(a) ? a : zt_isnan(b) ? b : (a > b ? a : b))
ZT_OP(op_minimum, zt_isnan(a) ? a : zt_isnan(b) ? b : (a < b ? a : b))
ZT_OP(op_fmax, zt_isnan(b) ? a : zt_isnan(a) ? b : (a > b ? a : b))
ZT_OP(op_fmin, zt_isnan(b) ? a : zt_isnan(a) ? b : (a < b ? a : b))
ZT_OP(op_equal, a == b)
ZT_OP(op_not_equal, a != b)
ZT_OP(op_less, a < b)
ZT_OP(op_less_equal, a <= b)
ZT_OP(op_greater, a > b)
ZT_OP(op_greater_equal, a >= b)
ZT_OP(op_logical_and, (a != V(0)) && (b != V(0)))
ZT_OP(op_logical_or, (a != V(0)) || (b != V(0)))
ZT_OP(op_logical_xor, (a != V(0)) != (b != V(0)))
ZT_OP(op_bitwise_and, a & b)
ZT_OP(op_bitwise_or, a | b)
ZT_OP(op_bitwise_xor, a ^ b)
// gelu'(x) * g with a = g, b = x: Phi(x) + x phi(x), and the tanh form's closed derivative
ZT_OP(op_gelu_backward, a * (V(0.5) * (V(1) + zt_erf(b * V(0.70710678118654752440)))
                             + b * V(0.39894228040143267794) * zt_exp(V(-0.5) * b * b)))
ZT_OP(op_gelu_tanh_backward, a * gelu_tanh_grad(b))
ZT_OP(op_silu_backward, a * silu_grad(b))
ZT_OP(op_relu_backward, b > V(0) ? a : V(0))

ZT_OP(op_where, a != V(0) ? b : c)
ZT_OP(op_clip, zt_isnan(a) ? a : (a < b ? b : (a > c ? c : a)))
ZT_OP(op_lerp, a + c * (b - a))

#undef ZT_OP

// floor_divide and remainder with Python's sign rules (NumPy's npy_divmod); integer division by zero gives
// 0, as NumPy's integer loops do (with a warning there).
template <typename V> struct op_floor_divide {
    static __device__ __forceinline__ V f(V a, V b, V) {
        if (b == V(0)) return a / b;  // inf or nan, as NumPy
        V mod = zt_fmod(a, b);
        V div = (a - mod) / b;
        if (mod != V(0) && ((b < V(0)) != (mod < V(0)))) div -= V(1);
        if (div == V(0)) return zt_copysign(V(0), a / b);
        V fl = zt_floor(div);
        return (div - fl > V(0.5)) ? fl + V(1) : fl;
    }
};
template <> struct op_floor_divide<long long> {
    static __device__ __forceinline__ long long f(long long a, long long b, long long) {
        if (b == 0) return 0;
        long long q = a / b;
        return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
    }
};
template <typename V> struct op_remainder {
    static __device__ __forceinline__ V f(V a, V b, V) {
        V mod = zt_fmod(a, b);
        if (b == V(0)) return mod;
        if (mod != V(0)) {
            if ((b < V(0)) != (mod < V(0))) mod += b;
        } else {
            mod = zt_copysign(V(0), b);
        }
        return mod;
    }
};
template <> struct op_remainder<long long> {
    static __device__ __forceinline__ long long f(long long a, long long b, long long) {
        if (b == 0) return 0;
        long long r = a % b;
        return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
    }
};

// the activations of bias_act_* (ACT)
template <typename V> struct act_none { static __device__ __forceinline__ V f(V x) { return x; } };
template <typename V> struct act_relu { static __device__ __forceinline__ V f(V x) { return op_relu<V>::f(x, x, x); } };
template <typename V> struct act_gelu { static __device__ __forceinline__ V f(V x) { return op_gelu<V>::f(x, x, x); } };
template <typename V> struct act_gelu_tanh {
    static __device__ __forceinline__ V f(V x) { return op_gelu_tanh<V>::f(x, x, x); }
};
template <typename V> struct act_silu { static __device__ __forceinline__ V f(V x) { return op_silu<V>::f(x, x, x); } };

// ------------------------------------------------------------------------------------------ plumbing
#define ZT_MAX2(a, b) ((a) > (b) ? (a) : (b))
#define WIDEST ZT_MAX2(ZT_MAX2(sizeof(TO), sizeof(TA)), ZT_MAX2(sizeof(TB), sizeof(TC)))
#define VEC ((int)(16 / WIDEST))

__device__ __forceinline__ CT apply_op(CT a, CT b, CT c) { return static_cast<CT>(OP<CT>::f(a, b, c)); }
// NOTE: comparisons return bool; through CT that is 0/1, which Conv<bool>::store maps back exactly.

// Operands: read from the array, or the scalar when its smask bit is set (a warp-uniform branch).
#define LOAD(ptr, T, i, bit, sval) (((smask) & (bit)) ? static_cast<CT>(sval) : Conv<T>::template load<CT>((ptr)[i]))

// ------------------------------------------------------------------------------------------ contiguous
// vec: VEC elements per thread and step, each operand loaded as one aligned Pack; scalar tail after.
extern "C" __global__ void ew1_vec(TO* out, const TA* a, long long n) {
#if ZT_HAS_ARITY(1)
    const int smask = 0;
    const long long nv = n / VEC;
    for (long long i = thread_index(); i < nv; i += grid_stride()) {
        Pack<TA, VEC> pa = reinterpret_cast<const Pack<TA, VEC>*>(a)[i];
        Pack<TO, VEC> po;
#pragma unroll
        for (int j = 0; j < VEC; ++j) po.v[j] = Conv<TO>::store(apply_op(LOAD(pa.v, TA, j, 0, 0), static_cast<CT>(0), static_cast<CT>(0)));
        reinterpret_cast<Pack<TO, VEC>*>(out)[i] = po;
    }
    for (long long i = nv * VEC + thread_index(); i < n; i += grid_stride())
        out[i] = Conv<TO>::store(apply_op(LOAD(a, TA, i, 0, 0), static_cast<CT>(0), static_cast<CT>(0)));
#endif
}

extern "C" __global__ void ew2_vec(TO* out, ZT_NULLABLE const TA* a, ZT_NULLABLE const TB* b, ST sa, ST sb, int smask, long long n) {
#if ZT_HAS_ARITY(2)
    const long long nv = n / VEC;
    for (long long i = thread_index(); i < nv; i += grid_stride()) {
        Pack<TA, VEC> pa;
        Pack<TB, VEC> pb;
        if (!(smask & 1)) pa = reinterpret_cast<const Pack<TA, VEC>*>(a)[i];
        if (!(smask & 2)) pb = reinterpret_cast<const Pack<TB, VEC>*>(b)[i];
        Pack<TO, VEC> po;
#pragma unroll
        for (int j = 0; j < VEC; ++j)
            po.v[j] = Conv<TO>::store(apply_op(LOAD(pa.v, TA, j, 1, sa), LOAD(pb.v, TB, j, 2, sb), static_cast<CT>(0)));
        reinterpret_cast<Pack<TO, VEC>*>(out)[i] = po;
    }
    for (long long i = nv * VEC + thread_index(); i < n; i += grid_stride())
        out[i] = Conv<TO>::store(apply_op(LOAD(a, TA, i, 1, sa), LOAD(b, TB, i, 2, sb), static_cast<CT>(0)));
#endif
}

extern "C" __global__ void ew3_vec(TO* out, ZT_NULLABLE const TA* a, ZT_NULLABLE const TB* b, ZT_NULLABLE const TC* c, ST sa, ST sb, ST sc, int smask,
                                   long long n) {
#if ZT_HAS_ARITY(3)
    const long long nv = n / VEC;
    for (long long i = thread_index(); i < nv; i += grid_stride()) {
        Pack<TA, VEC> pa;
        Pack<TB, VEC> pb;
        Pack<TC, VEC> pc;
        if (!(smask & 1)) pa = reinterpret_cast<const Pack<TA, VEC>*>(a)[i];
        if (!(smask & 2)) pb = reinterpret_cast<const Pack<TB, VEC>*>(b)[i];
        if (!(smask & 4)) pc = reinterpret_cast<const Pack<TC, VEC>*>(c)[i];
        Pack<TO, VEC> po;
#pragma unroll
        for (int j = 0; j < VEC; ++j)
            po.v[j] = Conv<TO>::store(
                apply_op(LOAD(pa.v, TA, j, 1, sa), LOAD(pb.v, TB, j, 2, sb), LOAD(pc.v, TC, j, 4, sc)));
        reinterpret_cast<Pack<TO, VEC>*>(out)[i] = po;
    }
    for (long long i = nv * VEC + thread_index(); i < n; i += grid_stride())
        out[i] = Conv<TO>::store(apply_op(LOAD(a, TA, i, 1, sa), LOAD(b, TB, i, 2, sb), LOAD(c, TC, i, 4, sc)));
#endif
}

extern "C" __global__ void ew1_contig(TO* out, const TA* a, long long n) {
#if ZT_HAS_ARITY(1)
    const int smask = 0;
    for (long long i = thread_index(); i < n; i += grid_stride())
        out[i] = Conv<TO>::store(apply_op(LOAD(a, TA, i, 0, 0), static_cast<CT>(0), static_cast<CT>(0)));
#endif
}

extern "C" __global__ void ew2_contig(TO* out, ZT_NULLABLE const TA* a, ZT_NULLABLE const TB* b, ST sa, ST sb, int smask, long long n) {
#if ZT_HAS_ARITY(2)
    for (long long i = thread_index(); i < n; i += grid_stride())
        out[i] = Conv<TO>::store(apply_op(LOAD(a, TA, i, 1, sa), LOAD(b, TB, i, 2, sb), static_cast<CT>(0)));
#endif
}

extern "C" __global__ void ew3_contig(TO* out, ZT_NULLABLE const TA* a, ZT_NULLABLE const TB* b, ZT_NULLABLE const TC* c, ST sa, ST sb, ST sc, int smask,
                                      long long n) {
#if ZT_HAS_ARITY(3)
    for (long long i = thread_index(); i < n; i += grid_stride())
        out[i] = Conv<TO>::store(apply_op(LOAD(a, TA, i, 1, sa), LOAD(b, TB, i, 2, sb), LOAD(c, TC, i, 4, sc)));
#endif
}

// ------------------------------------------------------------------------------------------ strided
// The metadata (shape, then each operand's strides) goes to shared memory once per block; each element then
// walks the dims from the last one (zt_device.cuh's strided_offsets; IDX: 32-bit division when the launcher
// found every offset fits).
extern "C" __global__ void ew1_strided(ZT_STRIDED TO* out, ZT_STRIDED const TA* a, long long n, int ndim,
                                       const long long* meta) {
#if ZT_HAS_ARITY(1)
    __shared__ IDX sm[3 * ZT_MAX_DIMS];
    copy_meta(sm, meta, 3 * ndim);
    const int smask = 0;
    for (long long i = thread_index(); i < n; i += grid_stride()) {
        IDX off[2];
        strided_offsets<2>(static_cast<IDX>(i), ndim, sm, sm + ndim, off);
        out[off[0]] = Conv<TO>::store(apply_op(LOAD(a, TA, off[1], 0, 0), static_cast<CT>(0), static_cast<CT>(0)));
    }
#endif
}

extern "C" __global__ void ew2_strided(ZT_STRIDED TO* out, ZT_STRIDED ZT_NULLABLE const TA* a, ZT_STRIDED ZT_NULLABLE const TB* b, ST sa,
                                       ST sb, int smask, long long n, int ndim, const long long* meta) {
#if ZT_HAS_ARITY(2)
    __shared__ IDX sm[4 * ZT_MAX_DIMS];
    copy_meta(sm, meta, 4 * ndim);
    for (long long i = thread_index(); i < n; i += grid_stride()) {
        IDX off[3];
        strided_offsets<3>(static_cast<IDX>(i), ndim, sm, sm + ndim, off);
        out[off[0]] = Conv<TO>::store(apply_op(LOAD(a, TA, off[1], 1, sa), LOAD(b, TB, off[2], 2, sb), static_cast<CT>(0)));
    }
#endif
}

extern "C" __global__ void ew3_strided(ZT_STRIDED TO* out, ZT_STRIDED ZT_NULLABLE const TA* a,
                                       ZT_STRIDED ZT_NULLABLE const TB* b, ZT_STRIDED ZT_NULLABLE const TC* c, ST sa, ST sb, ST sc, int smask, long long n, int ndim,
                                       const long long* meta) {
#if ZT_HAS_ARITY(3)
    __shared__ IDX sm[5 * ZT_MAX_DIMS];
    copy_meta(sm, meta, 5 * ndim);
    for (long long i = thread_index(); i < n; i += grid_stride()) {
        IDX off[4];
        strided_offsets<4>(static_cast<IDX>(i), ndim, sm, sm + ndim, off);
        out[off[0]] = Conv<TO>::store(
            apply_op(LOAD(a, TA, off[1], 1, sa), LOAD(b, TB, off[2], 2, sb), LOAD(c, TC, off[3], 4, sc)));
    }
#endif
}

// ------------------------------------------------------------------------------------------ fused
// out = ACT(x + bias[col]) + residual over (rows, ncols); computed in CT, stored as TO (x, bias, residual
// are TA). The Linear layer's epilogue (bias + GELU) and the transformer's residual add in one pass.
#if !defined(ZT_ARITY) || ZT_ARITY == 0
#define ZT_BIAS_ACT_BODY 1
#else
#define ZT_BIAS_ACT_BODY 0
#endif

#if ZT_BIAS_ACT_BODY
__device__ __forceinline__ CT bias_act_one(const TA* x, const TA* bias, const TA* residual, long long i,
                                          long long col, int flags) {
    CT v = Conv<TA>::template load<CT>(x[i]);
    if (flags & 1) v += Conv<TA>::template load<CT>(bias[col]);
    v = ACT<CT>::f(v);
    if (flags & 2) v += Conv<TA>::template load<CT>(residual[i]);
    return v;
}
#endif

extern "C" __global__ void bias_act_vec(TO* out, const TA* x, ZT_NULLABLE const TA* bias, ZT_NULLABLE const TA* residual, long long n,
                                        long long ncols, int flags) {
#if ZT_BIAS_ACT_BODY
    constexpr int NV = 16 / (sizeof(TA) > sizeof(TO) ? sizeof(TA) : sizeof(TO));
    const long long nv = n / NV;
    for (long long i = thread_index(); i < nv; i += grid_stride()) {
        const long long col = (i * NV) % ncols;  // ncols % NV == 0: a pack never wraps a row
        Pack<TA, NV> px = reinterpret_cast<const Pack<TA, NV>*>(x)[i];
        Pack<TA, NV> pb, pr;
        if (flags & 1) pb = reinterpret_cast<const Pack<TA, NV>*>(bias + col)[0];
        if (flags & 2) pr = reinterpret_cast<const Pack<TA, NV>*>(residual)[i];
        Pack<TO, NV> po;
#pragma unroll
        for (int j = 0; j < NV; ++j) {
            CT v = Conv<TA>::template load<CT>(px.v[j]);
            if (flags & 1) v += Conv<TA>::template load<CT>(pb.v[j]);
            v = ACT<CT>::f(v);
            if (flags & 2) v += Conv<TA>::template load<CT>(pr.v[j]);
            po.v[j] = Conv<TO>::store(v);
        }
        reinterpret_cast<Pack<TO, NV>*>(out)[i] = po;
    }
    for (long long i = nv * NV + thread_index(); i < n; i += grid_stride())
        out[i] = Conv<TO>::store(bias_act_one(x, bias, residual, i, i % ncols, flags));
#endif
}

extern "C" __global__ void bias_act_contig(TO* out, const TA* x, ZT_NULLABLE const TA* bias, ZT_NULLABLE const TA* residual, long long n,
                                           long long ncols, int flags) {
#if ZT_BIAS_ACT_BODY
    for (long long i = thread_index(); i < n; i += grid_stride())
        out[i] = Conv<TO>::store(bias_act_one(x, bias, residual, i, i % ncols, flags));
#endif
}
