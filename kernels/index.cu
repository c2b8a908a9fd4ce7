// Indexing and position-dependent kernels: gather (advanced indexing), index_put (assignment through
// advanced indices), index_add (accumulating assignment, atomics), cumulative sum/product (scan),
// nonzero's compaction, fill, arange, and the triangle/diagonal patterns (tril, triu, tri, eye).
//
// Defines (defaults compile standalone):
//   T     storage type of the data operand(s); TO: output storage type (scan, arange); CT: compute type
//         (float for 16/32-bit floats, double for float64, long long for integers and bool)
//   ST    scalar argument type: double for floating CT, long long otherwise
//   SCAN  scan_add | scan_mul
//   IDX   index type of offsets (int when every offset fits 31 bits, else long long)
//   BLOCK threads per block (256); ITEMS: elements per thread per scan tile (4)
//
// Launch contracts (grid-stride loops unless stated; block = BLOCK):
//   Advanced indexing works on "index space": the result of x[key] seen as dims D_0..D_{nd-1} where dim
//   bpos is the broadcast block of the index arrays (nb positions) and every other dim is a kept dim of x
//   (sliced view). idx (int64, contiguous (n_adv, nb)) holds the n_adv broadcast index arrays; adv_sizes /
//   adv_strides are the sizes and element strides of the indexed dims of x. Negative indices wrap once; an
//   index still out of range sets *err = 1 (int32, contiguous) and the element is skipped (gather writes 0).
//
//   gather(out, src, idx, n, nb, n_adv, nd, bpos, meta, err)
//       out C-contiguous (n elements, the result shape); meta = shape[nd], src_strides[nd] (0 at bpos),
//       adv_sizes[n_adv], adv_strides[n_adv].
//   index_put(dst, values, idx, n, nb, n_adv, nd, bpos, meta, err) / index_add(same)
//       dst[index space] = values (index_add: +=, atomically, so repeated indices accumulate; index_put with
//       repeated indices keeps one of the writes, unspecified which). meta = shape[nd], dst_strides[nd] (0 at bpos),
//       value_strides[nd] (values broadcast to the index space: 0 strides), adv_sizes[n_adv],
//       adv_strides[n_adv].
//   scan_totals(totals, x, rows, len, chunk, nd, meta)
//       grid (rows, P): block (r, p) reduces x[r, p*chunk : (p+1)*chunk] to totals[r * P + p] (CT, contiguous).
//   scan_rows(out, x, carry, rows, len, chunk, nd, meta, flags)
//       grid (rows, P): block (r, p) writes the inclusive (flags & 2: exclusive) scan of its chunk, starting
//       from carry[r * P + p] when flags & 1 (else the identity; carry may then be NULL). Rows are x's and out's (outer..., len)
//       views: meta = outer_shape[nd], x_outer_strides[nd], out_outer_strides[nd], x_len_stride,
//       out_len_stride (elements).
//   nonzero_compact(coords, mask, positions, n, nd, meta)
//       mask strided (meta = shape[nd], mask_strides[nd]); positions = inclusive cumsum of the mask in C order
//       (int64, contiguous); coords (count, nd) int64: the C-order coordinates of the k-th nonzero in row k.
//   fill_vec(out, value, n): out C-contiguous and 16-byte aligned; fill_strided(out, value, n, nd, meta):
//       meta = shape[nd], strides[nd].
//   arange(out, start, step, n): out[i] = start + i * step computed in CT (contiguous).
//   tri(out, x, n, nd, k, mode, meta): out C-contiguous (n elements of shape[nd], nd >= 2), row i = dim
//       nd-2, column j = dim nd-1; mode 0: tril (x where j - i <= k, else 0), 1: triu (j - i >= k),
//       2: tri (1 where j - i <= k, x NULL), 3: eye (1 where j - i == k, x NULL). meta = shape[nd],
//       x_strides[nd].
//
// Variants kept: index_add uses hardware atomics for float, double, half, bfloat16, int32 and int64, and a
// compare-and-swap loop on the enclosing 32-bit word for 8/16-bit integers and bool.
//
// zt-variants: | T=__half | T=__nv_bfloat16,TO=float,CT=float | T=double,TO=double,CT=double,ST=double,SCAN=scan_mul | T=long long,TO=long long,CT=long long,ST=long long,IDX=long long | T=bool,TO=long long,CT=long long,ST=long long | T=signed char,TO=signed char,CT=long long,ST=long long

#include "zt_device.cuh"

#ifndef T
#define T float
#endif
#ifndef TO
#define TO T
#endif
#ifndef CT
#define CT float
#endif
#ifndef ST
#define ST double
#endif
#ifndef SCAN
#define SCAN scan_add
#endif
#ifndef IDX
#define IDX int
#endif
#ifndef BLOCK
#define BLOCK 256
#endif
#ifndef ITEMS
#define ITEMS 4
#endif
#ifndef ZT_MAX_DIMS
#define ZT_MAX_DIMS 8
#endif
#define ZT_MAX_META (6 * ZT_MAX_DIMS)

// ------------------------------------------------------------------------------------------ atomics
__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(__half* p, __half v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(int* p, int v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(long long* p, long long v) {
    atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));  // two's complement
}
__device__ __forceinline__ void atomic_add(__nv_bfloat16* p, __nv_bfloat16 v) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    atomicAdd(p, v);
#endif
}
// 8/16-bit integers and bool: compare-and-swap on the aligned 32-bit word that holds the element
template <typename U> __device__ __forceinline__ void atomic_add_narrow(U* p, U v) {
    unsigned int* word = reinterpret_cast<unsigned int*>(reinterpret_cast<size_t>(p) & ~(size_t)3);
    const unsigned int shift = (reinterpret_cast<size_t>(p) & 3) * 8;
    const unsigned int mask = ((sizeof(U) == 1 ? 0xffu : 0xffffu)) << shift;
    unsigned int old = *word, assumed;
    do {
        assumed = old;
        const unsigned int bits = (assumed & mask) >> shift;
        const U cur = static_cast<U>(bits);  // the element's low bytes (two's complement for signed types)
        const U sum = Conv<U>::store(Conv<U>::template load<long long>(cur) + Conv<U>::template load<long long>(v));
        const unsigned int sum_bits = static_cast<unsigned int>(sum) & (sizeof(U) == 1 ? 0xffu : 0xffffu);
        old = atomicCAS(word, assumed, (assumed & ~mask) | ((sum_bits << shift) & mask));
    } while (assumed != old);
}
__device__ __forceinline__ void atomic_add(bool* p, bool v) { atomic_add_narrow(p, v); }
__device__ __forceinline__ void atomic_add(signed char* p, signed char v) { atomic_add_narrow(p, v); }
__device__ __forceinline__ void atomic_add(unsigned char* p, unsigned char v) { atomic_add_narrow(p, v); }
__device__ __forceinline__ void atomic_add(short* p, short v) { atomic_add_narrow(p, v); }

// ------------------------------------------------------------------------------------------ index space
// Offsets of element i of the index space into up to two strided operands; false when an index is out of
// range. sm: shape[nd], strides_0[nd], (strides_1[nd],) adv_sizes[n_adv], adv_strides[n_adv].
template <int NOPS>
__device__ __forceinline__ bool index_offsets(IDX i, int nd, int bpos, int n_adv, long long nb, const IDX* sm,
                                              const long long* idx, IDX* off) {
    long long b = 0;
#pragma unroll
    for (int k = 0; k < NOPS; ++k) off[k] = 0;
    for (int d = nd - 1; d >= 0; --d) {
        IDX q = i / sm[d];
        IDX r = i - q * sm[d];
        i = q;
        if (d == bpos) b = r;
        // NOTE: the index operand's stride at bpos is 0 (the block adds its offsets below); a values operand
        // (index_put/add) walks the block with its own stride there
#pragma unroll
        for (int k = 0; k < NOPS; ++k) off[k] += r * sm[(k + 1) * nd + d];
    }
    const IDX* adv_sizes = sm + (NOPS + 1) * nd;
    const IDX* adv_strides = adv_sizes + n_adv;
    for (int j = 0; j < n_adv; ++j) {
        long long v = idx[(long long)j * nb + b];
        if (v < 0) v += adv_sizes[j];
        if (v < 0 || v >= adv_sizes[j]) return false;
        off[0] += static_cast<IDX>(v) * adv_strides[j];
    }
    return true;
}

extern "C" __global__ void gather(T* out, ZT_STRIDED const T* src, const long long* idx, long long n, long long nb,
                                  int n_adv, int nd, int bpos, const long long* meta, int* err) {
    __shared__ IDX sm[ZT_MAX_META];
    copy_meta(sm, meta, 2 * nd + 2 * n_adv);
    for (long long i = thread_index(); i < n; i += grid_stride()) {
        IDX off[1];
        if (index_offsets<1>(static_cast<IDX>(i), nd, bpos, n_adv, nb, sm, idx, off)) {
            out[i] = src[off[0]];
        } else {
            out[i] = Conv<T>::store(0);
            *err = 1;
        }
    }
}

extern "C" __global__ void index_put(ZT_STRIDED T* dst, ZT_STRIDED const T* values, const long long* idx, long long n,
                                     long long nb, int n_adv, int nd, int bpos, const long long* meta, int* err) {
    __shared__ IDX sm[ZT_MAX_META];
    copy_meta(sm, meta, 3 * nd + 2 * n_adv);
    for (long long i = thread_index(); i < n; i += grid_stride()) {
        IDX off[2];
        // NOTE: index_offsets adds the advanced offsets to off[0] (dst) only; values are in index space
        if (index_offsets<2>(static_cast<IDX>(i), nd, bpos, n_adv, nb, sm, idx, off)) dst[off[0]] = values[off[1]];
        else *err = 1;
    }
}

extern "C" __global__ void index_add(ZT_STRIDED T* dst, ZT_STRIDED const T* values, const long long* idx, long long n,
                                     long long nb, int n_adv, int nd, int bpos, const long long* meta, int* err) {
    __shared__ IDX sm[ZT_MAX_META];
    copy_meta(sm, meta, 3 * nd + 2 * n_adv);
    for (long long i = thread_index(); i < n; i += grid_stride()) {
        IDX off[2];
        if (index_offsets<2>(static_cast<IDX>(i), nd, bpos, n_adv, nb, sm, idx, off)) atomic_add(dst + off[0], values[off[1]]);
        else *err = 1;
    }
}

// ------------------------------------------------------------------------------------------ scan
template <typename V> struct scan_add {
    static __device__ __forceinline__ V identity() { return V(0); }
    static __device__ __forceinline__ V f(V a, V b) { return a + b; }
};
template <typename V> struct scan_mul {
    static __device__ __forceinline__ V identity() { return V(1); }
    static __device__ __forceinline__ V f(V a, V b) { return a * b; }
};
typedef SCAN<CT> Scan;

struct RowLayout {
    IDX x_off, out_off, x_step, out_step;
};

// Row r of the (outer..., len) views: the offsets of its first element in x and out.
__device__ __forceinline__ RowLayout row_layout(long long r, int nd, const long long* meta) {
    RowLayout L = {0, 0, static_cast<IDX>(meta[3 * nd]), static_cast<IDX>(meta[3 * nd + 1])};
    IDX i = static_cast<IDX>(r);
    for (int d = nd - 1; d >= 0; --d) {
        IDX size = static_cast<IDX>(meta[d]);
        IDX q = i / size, c = i - q * size;
        i = q;
        L.x_off += c * static_cast<IDX>(meta[nd + d]);
        L.out_off += c * static_cast<IDX>(meta[2 * nd + d]);
    }
    return L;
}

// Exclusive scan of one value per thread over the block: returns the combination of the values of the
// threads before this one and sets *total to the block's total (every thread must call it).
__device__ __forceinline__ CT block_scan_exclusive(CT v, CT* total) {
    __shared__ CT warp_totals[BLOCK / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    CT incl = v;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
        CT up = __shfl_up_sync(0xffffffffu, incl, d);
        if (lane >= d) incl = Scan::f(up, incl);
    }
    CT excl = __shfl_up_sync(0xffffffffu, incl, 1);
    if (lane == 0) excl = Scan::identity();
    if (lane == 31) warp_totals[warp] = incl;
    __syncthreads();
    CT before = Scan::identity(), all = Scan::identity();
    for (int w = 0; w < BLOCK / 32; ++w) {
        if (w < warp) before = Scan::f(before, warp_totals[w]);
        all = Scan::f(all, warp_totals[w]);
    }
    __syncthreads();  // warp_totals is reused by the next tile
    *total = all;
    return Scan::f(before, excl);
}

extern "C" __global__ void scan_totals(CT* totals, ZT_STRIDED const T* x, long long rows, long long len,
                                       long long chunk, int nd, const long long* meta) {
    const long long r = blockIdx.x;
    const RowLayout L = row_layout(r, nd, meta);
    const long long k0 = (long long)blockIdx.y * chunk, k1 = k0 + chunk < len ? k0 + chunk : len;
    CT acc = Scan::identity();
    for (long long k = k0 + threadIdx.x; k < k1; k += BLOCK)
        acc = Scan::f(acc, Conv<T>::template load<CT>(x[L.x_off + static_cast<IDX>(k) * L.x_step]));
    CT total;
    block_scan_exclusive(acc, &total);
    if (threadIdx.x == 0) totals[r * gridDim.y + blockIdx.y] = total;
}

extern "C" __global__ void scan_rows(ZT_STRIDED TO* out, ZT_STRIDED const T* x, ZT_NULLABLE const CT* carry, long long rows,
                                     long long len, long long chunk, int nd, const long long* meta, int flags) {
    const long long r = blockIdx.x;
    const RowLayout L = row_layout(r, nd, meta);
    const long long k0 = (long long)blockIdx.y * chunk, k1 = k0 + chunk < len ? k0 + chunk : len;
    CT running = (flags & 1) ? carry[r * gridDim.y + blockIdx.y] : Scan::identity();
    const bool exclusive = flags & 2;
    // tiles of BLOCK * ITEMS elements: each thread scans ITEMS consecutive ones, the block scans the
    // thread totals, and each element is then running + (threads before) + (its own prefix)
    for (long long base = k0; base < k1; base += (long long)BLOCK * ITEMS) {
        CT vals[ITEMS], prefix[ITEMS];
        CT acc = Scan::identity();
#pragma unroll
        for (int e = 0; e < ITEMS; ++e) {
            const long long k = base + (long long)threadIdx.x * ITEMS + e;
            vals[e] = k < k1 ? Conv<T>::template load<CT>(x[L.x_off + static_cast<IDX>(k) * L.x_step]) : Scan::identity();
            prefix[e] = acc;
            acc = Scan::f(acc, vals[e]);
        }
        CT tile_total;
        const CT start = Scan::f(running, block_scan_exclusive(acc, &tile_total));
#pragma unroll
        for (int e = 0; e < ITEMS; ++e) {
            const long long k = base + (long long)threadIdx.x * ITEMS + e;
            if (k < k1) {
                const CT excl = Scan::f(start, prefix[e]);
                out[L.out_off + static_cast<IDX>(k) * L.out_step] = Conv<TO>::store(exclusive ? excl : Scan::f(excl, vals[e]));
            }
        }
        running = Scan::f(running, tile_total);
    }
}

// ------------------------------------------------------------------------------------------ nonzero
extern "C" __global__ void nonzero_compact(long long* coords, ZT_STRIDED const T* mask, const long long* positions,
                                           long long n, int nd, const long long* meta) {
    __shared__ IDX sm[2 * ZT_MAX_DIMS];
    copy_meta(sm, meta, 2 * nd);
    for (long long i = thread_index(); i < n; i += grid_stride()) {
        IDX rem = static_cast<IDX>(i), off = 0;
        for (int d = nd - 1; d >= 0; --d) {
            IDX q = rem / sm[d];
            off += (rem - q * sm[d]) * sm[nd + d];
            rem = q;
        }
        if (Conv<T>::template load<CT>(mask[off]) != static_cast<CT>(0)) {
            long long* row = coords + (positions[i] - 1) * nd;
            IDX c = static_cast<IDX>(i);
            for (int d = nd - 1; d >= 0; --d) {
                IDX q = c / sm[d];
                row[d] = c - q * sm[d];
                c = q;
            }
        }
    }
}

// ------------------------------------------------------------------------------------------ fill, arange
extern "C" __global__ void fill_vec(T* out, ST value, long long n) {
    constexpr int NV = 16 / sizeof(T);
    const T v = Conv<T>::store(static_cast<CT>(value));
    struct alignas(16) P { T e[NV]; } p;
#pragma unroll
    for (int j = 0; j < NV; ++j) p.e[j] = v;
    const long long nv = n / NV;
    for (long long i = thread_index(); i < nv; i += grid_stride()) reinterpret_cast<P*>(out)[i] = p;
    for (long long i = nv * NV + thread_index(); i < n; i += grid_stride()) out[i] = v;
}

extern "C" __global__ void fill_strided(ZT_STRIDED T* out, ST value, long long n, int nd, const long long* meta) {
    __shared__ IDX sm[2 * ZT_MAX_DIMS];
    copy_meta(sm, meta, 2 * nd);
    const T v = Conv<T>::store(static_cast<CT>(value));
    for (long long i = thread_index(); i < n; i += grid_stride()) {
        IDX rem = static_cast<IDX>(i), off = 0;
        for (int d = nd - 1; d >= 0; --d) {
            IDX q = rem / sm[d];
            off += (rem - q * sm[d]) * sm[nd + d];
            rem = q;
        }
        out[off] = v;
    }
}

extern "C" __global__ void arange(TO* out, ST start, ST step, long long n) {
    for (long long i = thread_index(); i < n; i += grid_stride())
        out[i] = Conv<TO>::store(static_cast<CT>(start) + static_cast<CT>(i) * static_cast<CT>(step));
}

// ------------------------------------------------------------------------------------------ triangles
extern "C" __global__ void tri(T* out, ZT_STRIDED ZT_NULLABLE const T* x, long long n, int nd, long long k, int mode,
                               const long long* meta) {
    __shared__ IDX sm[2 * ZT_MAX_DIMS];
    copy_meta(sm, meta, 2 * nd);
    for (long long e = thread_index(); e < n; e += grid_stride()) {
        IDX rem = static_cast<IDX>(e), off = 0, row = 0, col = 0;
        for (int d = nd - 1; d >= 0; --d) {
            IDX q = rem / sm[d], c = rem - q * sm[d];
            rem = q;
            off += c * sm[nd + d];
            if (d == nd - 1) col = c;
            if (d == nd - 2) row = c;
        }
        const long long diff = (long long)col - (long long)row;
        if (mode == 2) out[e] = Conv<T>::store(diff <= k ? 1 : 0);
        else if (mode == 3) out[e] = Conv<T>::store(diff == k ? 1 : 0);
        else out[e] = ((mode == 0) ? diff <= k : diff >= k) ? x[off] : Conv<T>::store(0);
    }
}
