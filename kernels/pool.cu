// 2-d max and average pooling, forward and backward, over (N, C, H, W) C-contiguous inputs (planes = N*C).
// The launcher computes the output size (ceil_mode included) and passes the geometry as a PoolGeometry.
//
// Max:     window of output (oh, ow): rows oh*sh - ph + i*dh (0 <= i < kh), columns likewise, positions
//          outside the input skipped; y = the largest value, indices = its position h*W + w in the plane
//          (int64, as PyTorch returns); the first maximum wins on ties, a NaN wins and propagates (the last
//          NaN of the window, as PyTorch's kernels do).
// Average: window rows oh*sh - ph .. + kh - 1 clipped to the padded input [-ph, H + ph); pool_size = its
//          area there; then clipped to the input for the sum. y = sum / divisor, divisor = divisor_override
//          when != 0 (negative allowed, as in PyTorch), else pool_size (count_include_pad) or the number of
//          input elements summed. A window without input elements gives 0.
// Backward (both): one thread per input element gathers from the outputs whose windows can cover it (no
//          atomics, deterministic): outputs oh in [ceil((h + ph - (kh-1)*dh) / sh), floor((h + ph) / sh)]
//          within [0, OH) (dh = 1 for average), likewise ow. Max adds dy where indices == h*W + w; average
//          adds dy / divisor of each covering window.
//
// Defines: T  float | __half | __nv_bfloat16 | double;  CT  compute type: float (double for double).
// Kernels (block any, grid any: a grid-stride loop over elements; e -> plane e / (OH*OW), oh, ow (forward)
// or plane e / (H*W), h, w (backward)):
//   max_pool2d_forward(x, y, indices, planes, g)    x (planes, H, W); y, indices (planes, OH, OW)
//   max_pool2d_backward(dy, indices, dx, planes, g)
//   avg_pool2d_forward(x, y, planes, g)
//   avg_pool2d_backward(dy, dx, planes, g)
// Variants kept: none besides the define sets.
//
// zt-variants: | T=__half | T=__nv_bfloat16 | T=double,CT=double

#include "zt_device.cuh"

#ifndef T
#define T float
#endif
#ifndef CT
#define CT float
#endif

typedef CT ct;

struct PoolGeometry {
    int h, w;              // input plane
    int oh, ow;            // output plane
    int kh, kw;            // window
    int sh, sw;            // stride
    int ph, pw;            // padding before (top, left); the padding after is implied by oh, ow
    int dh, dw;            // dilation (max); 1 for average
    int count_include_pad;  // average: divide by the window's area in the padded input (1) or its input count (0)
    int divisor_override;   // average: != 0 replaces the divisor (0: none)
};

// First output whose window (stride s, padding p, k taps dilation d) can reach input position x, and one past
// the last (clipped to [0, out)).
__device__ __forceinline__ int first_cover(int x, int k, int s, int p, int d) {
    const int num = x + p - (k - 1) * d;
    return num <= 0 ? 0 : (num + s - 1) / s;
}
__device__ __forceinline__ int end_cover(int x, int s, int p, int out) { return min((x + p) / s + 1, out); }

// Average pooling's divisor for output (oy, ox), and its input window [y0, y1) x [x0, x1).
__device__ __forceinline__ int avg_window(const PoolGeometry& g, int oy, int ox, int& y0, int& y1, int& x0, int& x1) {
    y0 = oy * g.sh - g.ph;
    x0 = ox * g.sw - g.pw;
    y1 = min(y0 + g.kh, g.h + g.ph);
    x1 = min(x0 + g.kw, g.w + g.pw);
    const int pool_size = (y1 - y0) * (x1 - x0);
    y0 = max(y0, 0);
    x0 = max(x0, 0);
    y1 = min(y1, g.h);
    x1 = min(x1, g.w);
    if (g.divisor_override != 0) return g.divisor_override;
    return g.count_include_pad ? pool_size : (y1 - y0) * (x1 - x0);
}

extern "C" __global__ void max_pool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                              long long* __restrict__ indices, long long planes, PoolGeometry g) {
    const long long out_plane = (long long)g.oh * g.ow;
    const long long total = planes * out_plane;
    for (long long e = thread_index(); e < total; e += grid_stride()) {
        const long long plane = e / out_plane;
        const int r = (int)(e - plane * out_plane);
        const int oy = r / g.ow, ox = r % g.ow;
        int y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
        const int y1 = min(y0 + (g.kh - 1) * g.dh + 1, g.h), x1 = min(x0 + (g.kw - 1) * g.dw + 1, g.w);
        if (y0 < 0) y0 += ((-y0 + g.dh - 1) / g.dh) * g.dh;  // first tap inside the input
        if (x0 < 0) x0 += ((-x0 + g.dw - 1) / g.dw) * g.dw;
        const T* xp = x + plane * g.h * g.w;
        ct best = neg_inf<ct>();
        long long best_at = (long long)y0 * g.w + x0;
        for (int iy = y0; iy < y1; iy += g.dh) {
            for (int ix = x0; ix < x1; ix += g.dw) {
                const ct v = load_as<ct>(xp[iy * g.w + ix]);
                if (v > best || v != v) {
                    best = v;
                    best_at = (long long)iy * g.w + ix;
                }
            }
        }
        store_as<ct>(best, y[e]);
        indices[e] = best_at;
    }
}

extern "C" __global__ void max_pool2d_backward(const T* __restrict__ dy, const long long* __restrict__ indices,
                                               T* __restrict__ dx, long long planes, PoolGeometry g) {
    const long long in_plane = (long long)g.h * g.w, out_plane = (long long)g.oh * g.ow;
    const long long total = planes * in_plane;
    for (long long e = thread_index(); e < total; e += grid_stride()) {
        const long long plane = e / in_plane;
        const int r = (int)(e - plane * in_plane);
        const int iy = r / g.w, ix = r % g.w;
        const int oy0 = first_cover(iy, g.kh, g.sh, g.ph, g.dh), oy1 = end_cover(iy, g.sh, g.ph, g.oh);
        const int ox0 = first_cover(ix, g.kw, g.sw, g.pw, g.dw), ox1 = end_cover(ix, g.sw, g.pw, g.ow);
        const long long base = plane * out_plane;
        ct acc = (ct)0;
        for (int oy = oy0; oy < oy1; ++oy)
            for (int ox = ox0; ox < ox1; ++ox) {
                const long long o = base + (long long)oy * g.ow + ox;
                if (indices[o] == r) acc += load_as<ct>(dy[o]);
            }
        store_as<ct>(acc, dx[e]);
    }
}

extern "C" __global__ void avg_pool2d_forward(const T* __restrict__ x, T* __restrict__ y, long long planes,
                                              PoolGeometry g) {
    const long long out_plane = (long long)g.oh * g.ow;
    const long long total = planes * out_plane;
    for (long long e = thread_index(); e < total; e += grid_stride()) {
        const long long plane = e / out_plane;
        const int r = (int)(e - plane * out_plane);
        int y0, y1, x0, x1;
        const int divisor = avg_window(g, r / g.ow, r % g.ow, y0, y1, x0, x1);
        const T* xp = x + plane * g.h * g.w;
        ct sum = (ct)0;
        for (int iy = y0; iy < y1; ++iy)
            for (int ix = x0; ix < x1; ++ix) sum += load_as<ct>(xp[iy * g.w + ix]);
        store_as<ct>(y0 >= y1 || x0 >= x1 ? (ct)0 : sum / (ct)divisor, y[e]);
    }
}

extern "C" __global__ void avg_pool2d_backward(const T* __restrict__ dy, T* __restrict__ dx, long long planes,
                                               PoolGeometry g) {
    const long long in_plane = (long long)g.h * g.w, out_plane = (long long)g.oh * g.ow;
    const long long total = planes * in_plane;
    for (long long e = thread_index(); e < total; e += grid_stride()) {
        const long long plane = e / in_plane;
        const int r = (int)(e - plane * in_plane);
        const int iy = r / g.w, ix = r % g.w;
        const int oy0 = first_cover(iy, g.kh, g.sh, g.ph, 1), oy1 = end_cover(iy, g.sh, g.ph, g.oh);
        const int ox0 = first_cover(ix, g.kw, g.sw, g.pw, 1), ox1 = end_cover(ix, g.sw, g.pw, g.ow);
        const long long base = plane * out_plane;
        ct acc = (ct)0;
        for (int oy = oy0; oy < oy1; ++oy)
            for (int ox = ox0; ox < ox1; ++ox) {
                int y0, y1, x0, x1;
                const int divisor = avg_window(g, oy, ox, y0, y1, x0, x1);
                acc += load_as<ct>(dy[base + (long long)oy * g.ow + ox]) / (ct)divisor;
            }
        store_as<ct>(acc, dx[e]);
    }
}
