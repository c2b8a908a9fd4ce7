// im2col and col2im for 2-d convolution as GEMM (backends/cuda_kernels/conv.py multiplies with kernels/gemm.cu).
//
// Geometry (ZtConvGeometry, passed by value): input (N, C, H, W), kernel (KH, KW), stride (SH, SW), zero padding
// (PH, PW), dilation (DH, DW); output size OH = (H + 2 PH - DH (KH - 1) - 1) / SH + 1, OW alike, L = OH * OW.
// col is (N, C * KH * KW, L) with row (c, i, j) = (c * KH + i) * KW + j, column (oh, ow) = oh * OW + ow, and
//   col[n, (c, i, j), (oh, ow)] = x[n, c, oh * SH - PH + i * DH, ow * SW - PW + j * DW]   (0 outside the image),
// stored at col + n * col_sn + row * col_srow + column: (col_sn, col_srow) = (C KH KW L, L) is the C-contiguous
// (N, C KH KW, L) of the forward GEMM; (L, N L) is (C KH KW, N, L), whose rows are contiguous over (n, column)
// (the weight gradient's GEMM then runs over K = N L in one launch).
// Groups need nothing here: the rows of group g are c in [g C/G, (g+1) C/G), consecutive, which is the order of
// a weight (C_out, C/G, KH, KW) flattened to (C_out, C/G * KH * KW); the launcher batches the GEMM over groups.
//
// Defines: ZT_CONV_T element type (float | __half | __nv_bfloat16 | double); col2im sums in float (double for
// double).
//
// Kernels (grid-stride loops: any grid >= 1 is correct; block 256; no shared memory):
//   im2col(ZT_STRIDED const ZT_CONV_T* x, ZT_CONV_T* col, ZtConvGeometry g)
//       one thread per col element, logical index ((n * C + c) * KH * KW + i * KW + j) * L + oh * OW + ow:
//       consecutive threads write consecutive columns (coalesced in both col layouts) and read x along a row
//       with stride SW. x is read through g.x_strides (elements), so any view of the input works.
//   col2im(ZT_STRIDED const ZT_CONV_T* col, ZT_CONV_T* x, ZtConvGeometry g)
//       the adjoint (the input gradient from the column gradient): one thread per element of x (C-contiguous),
//       summing the col entries that im2col copied from it: kernel tap i contributes where
//       (h + PH - i DH) is a multiple of SH and oh = (h + PH - i DH) / SH lies in [0, OH), j alike. A gather, so
//       no atomics and the same sum order on every run.
// Versions kept: these two only (an implicit-GEMM convolution is left for later).
//
// zt-variants: | ZT_CONV_T=__half | ZT_CONV_T=__nv_bfloat16 | ZT_CONV_T=double

#include "zt_device.cuh"

#ifndef ZT_CONV_T
#define ZT_CONV_T float
#endif

struct ZtConvGeometry {
    long long x_strides[4];  // strides of x (N, C, H, W) in elements (im2col); col2im writes x C-contiguous
    long long col_sn, col_srow;  // col element (n, row, column) at n * col_sn + row * col_srow + column
    int n, c, h, w;
    int kh, kw;
    int sh, sw;  // stride
    int ph, pw;  // zero padding
    int dh, dw;  // dilation
    int oh, ow;
};

extern "C" __global__ void im2col(ZT_STRIDED const ZT_CONV_T* x, ZT_CONV_T* col, ZtConvGeometry g) {
    const long long L = (long long)g.oh * g.ow;
    const long long total = (long long)g.n * g.c * g.kh * g.kw * L;
    for (long long idx = thread_index(); idx < total; idx += grid_stride()) {
        // idx = ((n * C + c) * KH * KW + i * KW + j) * L + oh * OW + ow
        const int ow = (int)(idx % g.ow);
        long long rest = idx / g.ow;
        const int oh = (int)(rest % g.oh);
        rest /= g.oh;
        const int j = (int)(rest % g.kw);
        rest /= g.kw;
        const int i = (int)(rest % g.kh);
        rest /= g.kh;
        const int c = (int)(rest % g.c);
        const int n = (int)(rest / g.c);
        const int row = (c * g.kh + i) * g.kw + j;
        const int h = oh * g.sh - g.ph + i * g.dh;
        const int w = ow * g.sw - g.pw + j * g.dw;
        ZT_CONV_T v = ZT_CONV_T(0.0f);
        if (h >= 0 && h < g.h && w >= 0 && w < g.w) {
            v = x[n * g.x_strides[0] + c * g.x_strides[1] + h * g.x_strides[2] + w * g.x_strides[3]];
        }
        col[n * g.col_sn + row * g.col_srow + (long long)oh * g.ow + ow] = v;
    }
}

extern "C" __global__ void col2im(ZT_STRIDED const ZT_CONV_T* col, ZT_CONV_T* x, ZtConvGeometry g) {
    const long long total = (long long)g.n * g.c * g.h * g.w;
    for (long long idx = thread_index(); idx < total; idx += grid_stride()) {
        // idx = ((n * C + c) * H + h) * W + w
        const int w = (int)(idx % g.w);
        long long rest = idx / g.w;
        const int h = (int)(rest % g.h);
        rest /= g.h;  // rest = n * C + c
        const int c = (int)(rest % g.c), n = (int)(rest / g.c);
        const ZT_CONV_T* base = col + n * g.col_sn + (long long)c * g.kh * g.kw * g.col_srow;
        decltype(widen(ZT_CONV_T(0.0f))) acc = 0;
        for (int i = 0; i < g.kh; ++i) {
            const int hh = h + g.ph - i * g.dh;  // = oh * SH for the output row that read (h, w) through tap i
            if (hh < 0 || hh % g.sh != 0) continue;
            const int oh = hh / g.sh;
            if (oh >= g.oh) continue;
            for (int j = 0; j < g.kw; ++j) {
                const int ww = w + g.pw - j * g.dw;
                if (ww < 0 || ww % g.sw != 0) continue;
                const int ow = ww / g.sw;
                if (ow >= g.ow) continue;
                acc += widen(base[(i * g.kw + j) * g.col_srow + (long long)oh * g.ow + ow]);
            }
        }
        store_as(acc, x[idx]);
    }
}
