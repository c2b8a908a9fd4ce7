// Sorting rows: the indices that order each row of a (rows, n) array, ascending or descending, stably (equal
// keys keep their order), NaN after every number ascending and before every number descending (PyTorch's
// order). zigtensor's sort, argsort and topk read values back through a gather with these indices.
//
// How: a bitonic network over each row padded to P = the next power of two >= n. Elements are (key, index)
// pairs compared key first, then index, a total order, so the network's result is the stable one. Padding
// entries (index >= n) sort after every real one whatever their key, so no sentinel value is needed.
//
// Defines (defaults compile standalone):
//   SORT_T   storage type of the keys (bool, integers, __half, __nv_bfloat16, float, double)
//   SORT_CT  the type keys are compared in: float for 16/32-bit floats, double for double, long long otherwise
//
// Launch contracts (grid-stride loops: any grid >= 1 is correct; block 256; no shared memory):
//   sort_init(const SORT_T* x, SORT_T* keys, long long* idx, long long rows, long long n, long long P)
//       x C-contiguous (rows, n); keys and idx (rows, P): keys[r, i] = x[r, i] and idx[r, i] = i for i < n,
//       idx[r, i] = i (padding) for n <= i < P.
//   sort_step(SORT_T* keys, long long* idx, long long rows, long long n, long long P, long long k, long long j,
//             int descending)
//       one step of the network: for k = 2, 4, ..., P and, within each, j = k / 2, ..., 1 (the host's loop),
//       positions p < q = p ^ j of every row are ordered by the direction of their k-block (ascending where
//       p & k == 0, the network's merge order). After the last step idx[r, :n] is the order of row r.
//
// Versions kept: this one (every launch reads and writes the rows in global memory; a shared-memory network
// for rows that fit a block would save launches, not yet written).
//
// zt-variants: | SORT_T=__half | SORT_T=__nv_bfloat16 | SORT_T=double,SORT_CT=double | SORT_T=long long,SORT_CT=long long | SORT_T=bool,SORT_CT=long long | SORT_T=int,SORT_CT=long long

#include "zt_device.cuh"

#ifndef SORT_T
#define SORT_T float
#endif
#ifndef SORT_CT
#define SORT_CT float
#endif

typedef SORT_CT ct;

// NaN ranks above every number (x != x only for NaN; integers never are).
__device__ __forceinline__ bool rank_less(ct a, ct b) { return a == a && (b != b || a < b); }
__device__ __forceinline__ bool rank_equal(ct a, ct b) { return a == b || (a != a && b != b); }

// Whether element (ka, ia) comes before (kb, ib) in the requested order; padding (index >= n) comes last.
__device__ __forceinline__ bool before(ct ka, long long ia, ct kb, long long ib, long long n, int descending) {
    if (ia >= n || ib >= n) return ib >= n && ia < ib;
    if (rank_equal(ka, kb)) return ia < ib;
    return descending ? rank_less(kb, ka) : rank_less(ka, kb);
}

extern "C" __global__ void __launch_bounds__(256) sort_init(const SORT_T* __restrict__ x, SORT_T* __restrict__ keys,
                                                            long long* __restrict__ idx, long long rows, long long n,
                                                            long long P) {
    for (long long t = thread_index(); t < rows * P; t += grid_stride()) {
        const long long r = t / P, i = t - r * P;
        if (i < n) keys[t] = x[r * n + i];
        idx[t] = i;
    }
}

extern "C" __global__ void __launch_bounds__(256) sort_step(SORT_T* __restrict__ keys, long long* __restrict__ idx,
                                                            long long rows, long long n, long long P, long long k,
                                                            long long j, int descending) {
    for (long long t = thread_index(); t < rows * P; t += grid_stride()) {
        const long long r = t / P, p = t - r * P, q = p ^ j;
        if (q <= p) continue;  // each pair is handled by its lower position
        const long long a = r * P + p, b = r * P + q;
        const ct ka = load_as<ct>(keys[a]), kb = load_as<ct>(keys[b]);
        const long long ia = idx[a], ib = idx[b];
        // ascending blocks put the earlier element at p, descending ones at q
        const bool ascending_block = (p & k) == 0;
        const bool swap = ascending_block ? before(kb, ib, ka, ia, n, descending)
                                          : before(ka, ia, kb, ib, n, descending);
        if (swap) {
            const SORT_T tk = keys[a];
            keys[a] = keys[b];
            keys[b] = tk;
            idx[a] = ib;
            idx[b] = ia;
        }
    }
}
