"""Launchers of kernels/conv.cu, and 2-d convolution as im2col + our GEMM (kernels/gemm.cu through gemm.matmul).

    im2col(x, kernel_size, stride=1, padding=0, dilation=1) -> col (N, C*KH*KW, OH*OW)
    col2im(col, input_shape, kernel_size, stride=1, padding=0, dilation=1) -> x (N, C, H, W), the adjoint (sums)
    conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> y (N, C_out, OH, OW)
    conv2d_backward(dy, x, weight, stride=1, padding=0, dilation=1, groups=1, needs=(True, True, True))
        -> (dx, dweight, dbias), None where not needed (dbias also None when needs[2] is False)

PyTorch's semantics: weight (C_out, C/groups, KH, KW), zero padding, output size
(H + 2 PH - DH (KH - 1) - 1) // SH + 1. Groups batch the GEMM: group g multiplies weight rows
[g C_out/G, (g+1) C_out/G) with col rows [g C/G KH KW, (g+1) C/G KH KW), both consecutive.

    forward   y[n, g]  = W[g] (C_out/G, C/G KH KW) @ col[n, g] (C/G KH KW, L)        one batched GEMM over (n, g)
    input     dcol[n, g] = W[g]^T @ dy[n, g], then col2im                              W^T is a view: no copy
    weight    dW[g] = dy[g] (C_out/G, N L) @ col'[g]^T (N L, C/G KH KW)                 one GEMM over K = N L
              where col' is im2col written (C KH KW, N, L) and dy' is dy as (C_out, N, L) (a 1x1 im2col)
The batch is processed in chunks whose col buffer stays under COL_BYTES (the weight gradient accumulates over
chunks with beta = 1).
"""

from __future__ import annotations

import numpy as np

from . import _launch, gemm
from . import strided as S

FAMILY = "conv"
BLOCK = 256
COL_BYTES = 256 << 20  # at most this much im2col buffer at once


def _pair(name: str, v) -> tuple[int, int]:
    t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, (int, np.integer)) for i in t):
        raise ValueError(f"conv2d: {name} must be an int or a pair of ints, got {v!r}")
    return int(t[0]), int(t[1])


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def geometry(input_shape: tuple, kernel_size, stride=1, padding=0, dilation=1) -> dict:
    """The ZtConvGeometry fields (col C-contiguous, x strides to be filled in) for an (N, C, H, W) input;
    checks every argument."""
    if len(input_shape) != 4:
        raise ValueError(f"conv2d: expected an (N, C, H, W) input, got shape {tuple(input_shape)}")
    n, c, h, w = (int(d) for d in input_shape)
    kh, kw = _pair("kernel_size", kernel_size)
    sh, sw = _pair("stride", stride)
    ph, pw = _pair("padding", padding)
    dh, dw = _pair("dilation", dilation)
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"conv2d: kernel {kh, kw}, stride {sh, sw} and dilation {dh, dw} must be >= 1 and padding "
                         f"{ph, pw} >= 0")
    oh, ow = output_size(h, kh, sh, ph, dh), output_size(w, kw, sw, pw, dw)
    if oh < 1 or ow < 1:
        raise ValueError(f"conv2d: input {h}x{w} with padding {ph, pw} is smaller than the dilated kernel "
                         f"{dh * (kh - 1) + 1}x{dw * (kw - 1) + 1}")
    return {"x_strides": [c * h * w, h * w, w, 1], "col_sn": c * kh * kw * oh * ow, "col_srow": oh * ow,
            "n": n, "c": c, "h": h, "w": w, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "ph": ph, "pw": pw, "dh": dh,
            "dw": dw, "oh": oh, "ow": ow}


def _check_float(name: str, x) -> None:
    if np.dtype(x.dtype) not in _launch.FLOAT_DTYPES:
        raise TypeError(f"conv2d: {name} must be float16, bfloat16, float32 or float64, got {x.dtype}")


def _defines(dtype) -> dict:
    return {"ZT_CONV_T": _launch.ctype(dtype)}


def _grid(xp, work: int) -> int:
    return _launch.blocks(work, BLOCK, 8 * _launch.sm_count(xp) * (2048 // BLOCK))


def _im2col_into(x, col, geo: dict) -> None:
    xp = _launch.array_module(x)
    g = dict(geo, n=int(x.shape[0]), x_strides=list(S.element_strides(x)))
    work = g["n"] * g["c"] * g["kh"] * g["kw"] * g["oh"] * g["ow"]
    if work:
        _launch.kernel(FAMILY, "im2col", _defines(x.dtype))(_grid(xp, work), BLOCK, (x, col, g))


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """col (N, C*KH*KW, OH*OW), C-contiguous: col[n, (c, i, j), (oh, ow)] = x[n, c, oh SH - PH + i DH, ...]."""
    _check_float("x", x)
    geo = geometry(tuple(x.shape), kernel_size, stride, padding, dilation)
    xp = _launch.array_module(x)
    col = xp.empty((geo["n"], geo["c"] * geo["kh"] * geo["kw"], geo["oh"] * geo["ow"]), dtype=x.dtype)
    _im2col_into(x, col, geo)
    return col


def col2im(col, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """x (N, C, H, W) with x[n, c, h, w] = the sum of the col entries im2col copies from (h, w) (im2col's
    adjoint). col: (N, C*KH*KW, OH*OW) with unit stride along the last dim."""
    _check_float("col", col)
    geo = geometry(tuple(input_shape), kernel_size, stride, padding, dilation)
    want = (geo["n"], geo["c"] * geo["kh"] * geo["kw"], geo["oh"] * geo["ow"])
    if tuple(col.shape) != want:
        raise ValueError(f"col2im: expected col of shape {want} for input {tuple(input_shape)}, got "
                         f"{tuple(col.shape)}")
    xp = _launch.array_module(col)
    x = xp.empty(tuple(int(d) for d in input_shape), dtype=col.dtype)
    _col2im_into(col, x, geo)
    return x


def _col2im_into(col, x, geo: dict, col_strides: tuple | None = None) -> None:
    xp = _launch.array_module(col)
    strides = S.element_strides(col) if col_strides is None else col_strides
    if strides[-1] != 1:
        col = xp.ascontiguousarray(col)
        strides = S.element_strides(col)
    g = dict(geo, n=int(x.shape[0]), col_sn=strides[0], col_srow=strides[1])
    if x.size:
        _launch.kernel(FAMILY, "col2im", _defines(x.dtype))(_grid(xp, int(x.size)), BLOCK, (col, x, g))


def _check_conv(x, weight, groups: int) -> tuple[int, int, int]:
    _check_float("x", x)
    if weight.dtype != x.dtype:
        raise TypeError(f"conv2d: weight dtype {weight.dtype} differs from the input's {x.dtype}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: expected a (C_out, C/groups, KH, KW) weight, got shape {tuple(weight.shape)}")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    c_out, c_per_group = int(weight.shape[0]), int(weight.shape[1])
    c = int(x.shape[1])
    if c % groups or c_out % groups or c_per_group * groups != c:
        raise ValueError(f"conv2d: input channels {c} and output channels {c_out} must split into {groups} groups "
                         f"matching the weight's {c_per_group} input channels per group (weight {tuple(weight.shape)})")
    return c_out, c_per_group, c_out // groups


def _chunk(n: int, geo: dict, itemsize: int) -> int:
    per_sample = geo["c"] * geo["kh"] * geo["kw"] * geo["oh"] * geo["ow"] * itemsize
    return max(1, min(n, COL_BYTES // max(per_sample, 1)))


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1, tf32: bool | None = None):
    """y = conv2d(x, weight) + bias, (N, C_out, OH, OW) in x's dtype."""
    if getattr(x, "ndim", 0) != 4:
        raise ValueError(f"conv2d: expected an (N, C, H, W) input, got shape {tuple(getattr(x, 'shape', ()))}")
    c_out, cg, og = _check_conv(x, weight, groups)
    geo = geometry(tuple(x.shape), tuple(weight.shape[2:]), stride, padding, dilation)
    if bias is not None and (tuple(bias.shape) != (c_out,) or bias.dtype != x.dtype):
        raise ValueError(f"conv2d: bias must be {x.dtype} of shape ({c_out},), got {bias.dtype} {tuple(bias.shape)}")
    xp = _launch.array_module(x)
    n, L, kk = geo["n"], geo["oh"] * geo["ow"], geo["kh"] * geo["kw"]
    y = xp.empty((n, c_out, geo["oh"], geo["ow"]), dtype=x.dtype)
    w_g = xp.ascontiguousarray(weight).reshape(groups, og, cg * kk)
    step = _chunk(n, geo, x.dtype.itemsize)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        col = im2col(x[n0:n1], (geo["kh"], geo["kw"]), stride, padding, dilation)  # (nc, C KK, L)
        out = y[n0:n1].reshape(n1 - n0, groups, og, L)
        gemm.matmul(w_g, col.reshape(n1 - n0, groups, cg * kk, L), out=out, tf32=tf32)
    if bias is not None:
        from . import elementwise

        elementwise.binary("add", y, bias.reshape(1, c_out, 1, 1), out=y)
    return y


def conv2d_backward(dy, x, weight, stride=1, padding=0, dilation=1, groups: int = 1, needs=(True, True, True),
                    tf32: bool | None = None):
    """(dx, dweight, dbias) of y = conv2d(x, weight) + bias given dy = dL/dy; an entry is None where `needs`
    says it is not wanted."""
    c_out, cg, og = _check_conv(x, weight, groups)
    geo = geometry(tuple(x.shape), tuple(weight.shape[2:]), stride, padding, dilation)
    n, L, kk = geo["n"], geo["oh"] * geo["ow"], geo["kh"] * geo["kw"]
    if tuple(dy.shape) != (n, c_out, geo["oh"], geo["ow"]) or dy.dtype != x.dtype:
        raise ValueError(f"conv2d_backward: dy must be {x.dtype} of shape {(n, c_out, geo['oh'], geo['ow'])}, got "
                         f"{dy.dtype} {tuple(dy.shape)}")
    xp = _launch.array_module(x)
    dy = xp.ascontiguousarray(dy)
    w_g = xp.ascontiguousarray(weight).reshape(groups, og, cg * kk)
    dx = xp.empty(tuple(x.shape), dtype=x.dtype) if needs[0] else None
    dw = xp.empty((groups, og, cg * kk), dtype=x.dtype) if needs[1] else None
    step = _chunk(n, geo, x.dtype.itemsize)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        nc = n1 - n0
        dy_g = dy[n0:n1].reshape(nc, groups, og, L)
        if dx is not None:
            # dcol[n, g] = W[g]^T @ dy[n, g]: the transposed weight is read in place (A_T = 1)
            dcol = gemm.matmul(w_g.swapaxes(-1, -2), dy_g, tf32=tf32)  # (nc, G, Cg KK, L)
            _col2im_into(dcol.reshape(nc, groups * cg * kk, L), dx[n0:n1], geo)
        if dw is not None:
            # col' (C KK, nc, L): each row contiguous over (n, l), so dW[g] is one GEMM with K = nc L
            col_t = xp.empty((geo["c"] * kk, nc, L), dtype=x.dtype)
            g_t = dict(geo, col_sn=L, col_srow=nc * L)
            _im2col_into(x[n0:n1], col_t, g_t)
            # dy' (C_out, nc, L): im2col with a 1x1 kernel is exactly this transposing copy
            dy_t = xp.empty((c_out, nc, L), dtype=x.dtype)
            dy_chunk = dy[n0:n1]
            _im2col_into(dy_chunk, dy_t, dict(geometry(tuple(dy_chunk.shape), 1), col_sn=L, col_srow=nc * L))
            a = dy_t.reshape(groups, og, nc * L)
            b = col_t.reshape(groups, cg * kk, nc * L).swapaxes(-1, -2)  # (G, nc L, Cg KK), read transposed
            gemm.matmul(a, b, out=dw, beta=0.0 if n0 == 0 else 1.0, tf32=tf32)
    db = None
    if len(needs) > 2 and needs[2]:
        from . import reduce

        db = reduce.reduce("sum", dy, (0, 2, 3))
    return dx, (dw.reshape(weight.shape) if dw is not None else None), db
