"""Kernels of CPUBackend's training path compiled by numba, each one pass over a piece where its NumPy form makes
five to ten (float32; float64 keeps the NumPy forms, exact to its rounding for the finite-difference checks):

>>> gelu_tanh(x, out, saved)                   # out = gelu(x), saved = sigmoid(2u): 1-D pieces (cpu_kernels.gelu)
>>> gelu_tanh_backward(g, x, saved, out)       # out = g * gelu'(x)
>>> causal_softmax(s, r0, window, inv_total)   # s (n, rows, keys) -> exp(s - shift) where causal (causal_attention)
>>> layer_norm_rows(x, w, b, eps, out, xhat, rstd), layer_norm_backward_rows(g, xhat, w, rstd, dx, sums)
>>> adam(p, g, m, v, vmax, ...)                # one parameter's Adam/AdamW step, the NumPy form's bits (optim.adam)
>>> lstm_cell(gates, c_prev, c, tc, h), lstm_cell_backward(acts, tc, c_prev, dh, dc, d_gates)   # ops.recurrent

Why: NumPy's float32 exp is libm's scalar one here (no SVML below AVX-512), and every ufunc streams its piece
once more; numba_kernels' exp vectorizes. Each kernel releases the GIL (JIT's nogil), so CPUBackend.parallel runs
them on all cores, piece by piece, as it ran the NumPy forms.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

from .numba_kernels import JIT, exp_poly, exp_reduce, tanh_parts

# JIT's fast-math without "arcp": a division stays a correctly rounded one (vdivps) rather than a reciprocal
# estimate refined once, 1 ulp off at times: gelu_tanh_backward's (1 - s) turns a sigmoid 1 ulp under 1 into a
# gradient off by 7e-5 at x = 17 (x s (1 - s) 2u' there multiplies that ulp by 1200)
_JIT = dict(JIT, fastmath={"nnan", "ninf", "nsz", "contract", "afn", "reassoc"})
# no fast-math: every operation rounded as NumPy's ufuncs round it (no fused multiply-adds), for kernels that
# must give the NumPy form's bits
_EXACT = dict(JIT, fastmath=False)
_C = np.float32(math.sqrt(2.0 / math.pi))
_K = np.float32(0.044715)
SPAN = 2048  # elements of gelu_tanh's inner spans (its scratch: 16 KiB)


@njit(**_JIT)
def gelu_tanh(x, out, saved):
    """out = x * s and saved = s, s = sigmoid(2u) = 1 / (1 + exp(-2u)), u = C (x + K x^3): 0.5 x (1 + tanh(u)).
    exp(-2u) is capped near 1.7e38 for very negative x, where s is then under 1e-38 and x * s is -0 or tiny.
    In spans of SPAN elements, whose exp halves' scratch stays in the L1 cache (a piece's 1 MiB arrays do not)."""
    n = uint64(x.shape[0])
    r = np.empty(SPAN, np.float32)
    bits = np.empty(SPAN, np.int32)
    scaled = bits.view(np.float32)
    for s0 in range(uint64(0), n, uint64(SPAN)):
        m = min(uint64(SPAN), n - s0)
        for j in range(m):
            v = x[s0 + j]
            r[j], bits[j] = exp_reduce(np.float32(-2.0) * _C * (v + _K * v * v * v))
        for j in range(m):
            s = np.float32(1.0) / (np.float32(1.0) + exp_poly(r[j]) * scaled[j])
            saved[s0 + j] = s
            out[s0 + j] = x[s0 + j] * s


@njit(**_JIT)
def gelu_tanh_backward(g, x, saved, out):
    """out = g * (s + x s (1 - s) 2u'), s = gelu_tanh's saved, 2u' = 2 C (1 + 3 K x^2); written over g where out
    is None (see layer_norm_rows' NOTE on two names for one array)."""
    for j in range(x.shape[0]):
        v, s = x[j], saved[j]
        du = np.float32(2.0) * _C + np.float32(6.0) * _C * _K * v * v
        d = g[j] * (s + v * s * (np.float32(1.0) - s) * du)
        if out is None:
            g[j] = d
        else:
            out[j] = d


@njit(**_JIT)
def causal_softmax(s, r0, window, inv_total):
    """For each of the n row blocks of s (n, rows, keys), row i the query r0 + i, which sees the keys from
    first = r0 + i + 1 - window (0 for window 0: all before it) to r0 + i: those become exp(s - shift), the others
    0; inv_total (n, rows) = 1 / the row's sum. The caller divides (the softmax is s * inv_total).

    The shift is the row's diagonal score (query r0 + i against key r0 + i, never masked), so the sum is >= 1;
    a row with a score more than 64 above it is shifted by its maximum instead, so nothing overflows. NOTE: not
    the maximum in the first place: numba's max reduction stays scalar (LLVM vectorizes a float max only for
    functions marked free of NaNs, which numba does not do), 1 ns a score, where the count of large ones
    vectorizes. exp's two halves are inlined here: a call to exp_ per row cost more than the row's exps (rows
    here are 64 to 128 scores; 237 -> 133 us a block of 2048 rows)."""
    n, rows, keys = s.shape
    bits = np.empty(keys, np.int32)
    scaled = bits.view(np.float32)
    for a in range(n):
        for i in range(rows):
            row = s[a, i]
            # NOTE: unsigned indices: numba's test for negative ones would keep these loops scalar
            last = uint64(min(r0 + i + 1, keys))
            first = uint64(max(0, r0 + i + 1 - window) if window > 0 else 0)
            for j in range(first):
                row[j] = 0
            for j in range(last, uint64(keys)):
                row[j] = 0
            shift = row[last - uint64(1)]
            large = 0
            for j in range(first, last):
                large += np.int32(row[j] - shift > np.float32(64.0))
            if large:
                for j in range(first, last):
                    shift = max(shift, row[j])
            for j in range(first, last):
                row[j], bits[j] = exp_reduce(row[j] - shift)
            total = np.float32(0.0)
            for j in range(first, last):
                e = exp_poly(row[j]) * scaled[j]
                row[j] = e
                total += e
            inv_total[a, i] = np.float32(1.0) / total


@njit(**_JIT)
def layer_norm_rows(x, weight, bias, eps, out, xhat, rstd):
    """cpu_kernels.layer_norm_rows for float32 rows x (n, C): xhat = (x - mean) * rstd, out = xhat * weight +
    bias (weight, bias None or (C,)), rstd (n, 1); xhat None where out is it (NOTE: two names for one array
    make LLVM's alias test fail at run time and take its scalar loop, 2.5x slower). The variance is the mean of squared
    deviations (two passes over the row, as the NumPy form), not E[x^2] - mean^2, which cancels."""
    n, c = x.shape
    inv_c = np.float32(1.0) / np.float32(c)
    for i in range(n):
        m = np.float32(0.0)
        for j in range(c):
            m += x[i, j]
        m *= inv_c
        var = np.float32(0.0)
        for j in range(c):
            d = x[i, j] - m
            var += d * d
        r = np.float32(1.0) / np.sqrt(var * inv_c + np.float32(eps))
        rstd[i, 0] = r
        for j in range(c):
            h = (x[i, j] - m) * r
            if xhat is not None:
                xhat[i, j] = h
            if weight is not None:
                h = h * weight[j]
            if bias is not None:
                h = h + bias[j]
            out[i, j] = h


@njit(**_JIT)
def layer_norm_backward_rows(g, xhat, weight, rstd, dx, sums):
    """cpu_kernels.layer_norm_backward_rows for float32 rows (n, C): dx = rstd (gw - mean(gw) - xhat mean(gw
    xhat)), gw = g * weight, written over g where dx is None (see layer_norm_rows' NOTE); sums (2, C) += the
    column sums of g * xhat and of g, unless None."""
    n, c = xhat.shape
    inv_c = np.float32(1.0) / np.float32(c)
    for i in range(n):
        if sums is not None:
            for j in range(c):
                sums[0, j] += g[i, j] * xhat[i, j]
                sums[1, j] += g[i, j]
        m1 = np.float32(0.0)
        m2 = np.float32(0.0)
        for j in range(c):
            gw = g[i, j] * weight[j] if weight is not None else g[i, j]
            m1 += gw
            m2 += gw * xhat[i, j]
        m1 *= inv_c
        m2 *= inv_c
        r = rstd[i, 0]
        for j in range(c):
            gw = g[i, j] * weight[j] if weight is not None else g[i, j]
            if dx is None:
                g[i, j] = (gw - m1 - xhat[i, j] * m2) * r
            else:
                dx[i, j] = (gw - m1 - xhat[i, j] * m2) * r


@njit(**_EXACT)
def adam(p, g, m, v, vmax, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, keep, decoupled,
         maximize, step_size, inv_bc2_sqrt):
    """optim.Adam's update of one float32 parameter in one pass (its NumPy form makes about ten), with the same
    bits: the same operations in the same order, each rounded to float32 (_EXACT), the scalars rounded as NumPy
    rounds them against float32 arrays. p, g, m (exp_avg), v (exp_avg_sq) and vmax (max_exp_avg_sq, or None
    without amsgrad) flat and contiguous; keep = 1 - lr * weight_decay (AdamW's decay), step_size = lr / (1 -
    beta1^t), inv_bc2_sqrt = 1 / sqrt(1 - beta2^t)."""
    for j in range(p.shape[0]):
        gj = -g[j] if maximize else g[j]
        if weight_decay != 0 and decoupled:
            p[j] *= keep
        elif weight_decay != 0:
            gj = gj + weight_decay * p[j]
        mj = m[j] * beta1 + one_minus_beta1 * gj
        vj = v[j] * beta2 + one_minus_beta2 * (gj * gj)
        m[j] = mj
        v[j] = vj
        if vmax is not None:
            vj = max(vmax[j], vj)
            vmax[j] = vj
        p[j] -= mj / (np.sqrt(vj) * inv_bc2_sqrt + eps) * step_size


@njit(**_JIT)
def lstm_cell(gates, c_prev, c, tc, h):
    """One LSTM step after its gate products: gates (4, B, H) pre-activations of i, f, g, o, replaced by the
    activations (sigmoid, sigmoid, tanh, sigmoid); c = f c_prev + i g (c_prev None: zeros), tc = tanh(c),
    h = o tc, each (B, H). Row by row: four exps reduced, then finished (numba_kernels' halves, so they vectorize),
    then tanh(c) the same way."""
    _, rows, n = gates.shape
    r = np.empty((4, n), np.float32)
    bits = np.empty((4, n), np.int32)
    scaled = bits.view(np.float32)
    one = np.float32(1.0)
    for b in range(rows):
        for j in range(n):
            r[0, j], bits[0, j] = exp_reduce(-gates[0, b, j])
            r[1, j], bits[1, j] = exp_reduce(-gates[1, b, j])
            r[2, j], bits[2, j] = exp_reduce(np.float32(2.0) * gates[2, b, j])
            r[3, j], bits[3, j] = exp_reduce(-gates[3, b, j])
        for j in range(n):
            i = one / (one + exp_poly(r[0, j]) * scaled[0, j])
            f = one / (one + exp_poly(r[1, j]) * scaled[1, j])
            g = tanh_parts(r[2, j], scaled[2, j])
            o = one / (one + exp_poly(r[3, j]) * scaled[3, j])
            gates[0, b, j], gates[1, b, j], gates[2, b, j], gates[3, b, j] = i, f, g, o
            cj = i * g if c_prev is None else f * c_prev[b, j] + i * g
            c[b, j] = cj
            r[0, j], bits[0, j] = exp_reduce(np.float32(2.0) * cj)
        for j in range(n):
            t = tanh_parts(r[0, j], scaled[0, j])
            tc[b, j] = t
            h[b, j] = gates[3, b, j] * t


@njit(**_JIT)
def lstm_cell_backward(acts, tc, c_prev, dh, dc, d_gates):
    """lstm_cell's backward for one step: acts (4, B, H) its activations i, f, g, o, tc = tanh(c), c_prev
    (None: zeros), dh the gradient of h; dc, the gradient of c, becomes that of c_prev; d_gates (B, 4H) = the
    gradients of the four pre-activations (PyTorch's gate order along each row)."""
    _, rows, n = acts.shape
    one = np.float32(1.0)
    for b in range(rows):
        for j in range(n):
            i, f, g, o = acts[0, b, j], acts[1, b, j], acts[2, b, j], acts[3, b, j]
            t, d = tc[b, j], dh[b, j]
            dcj = dc[b, j] + d * o * (one - t * t)
            cp = np.float32(0.0) if c_prev is None else c_prev[b, j]
            d_gates[b, j] = dcj * g * i * (one - i)
            d_gates[b, n + j] = dcj * cp * f * (one - f)
            d_gates[b, 2 * n + j] = dcj * i * (one - g * g)
            d_gates[b, 3 * n + j] = d * t * o * (one - o)
            dc[b, j] = dcj * f
