"""The CPU backend: NumPy arrays, NumPy's PCG64 generator, BLAS through numpy.matmul."""

from __future__ import annotations

import os
import threading
import time

import ml_dtypes
import numpy as np

from . import blas_threads, cpu_kernels
from .cpu_pool import POOL_PREFIX, WorkerPool

_HALF = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))
_BLAS_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# NOTE: below this many elements per chunk a thread hand-off (tens of microseconds) costs more than it saves
_ELEMENTWISE_GRAIN = 1 << 16
_SPLIT_MATMUL_MACS = 1 << 21  # multiply-adds from which a matmul is split between the cores
_SPLIT_MATVEC_MACS = 1 << 18  # the same for a matrix-vector product
_SPLIT_MATMUL_GRAIN = 32  # rows (or columns) of a part, at least
_BLAS_THREADS_MACS = 1 << 25  # below this, a matrix product runs on OpenBLAS's spinning threads (blas_threads.py)
_ELEMENTWISE_BLOCK = 1 << 18  # elements of one piece of an elementwise kernel: 1 MiB of float32


class CPUBackend:
    name = "cpu"
    xp = np
    array_type = np.ndarray

    def __init__(self, device):
        self.device = device
        from ..random import initial_seed

        self.seed(initial_seed())

    # --- conversion -------------------------------------------------------------------------------------
    def asarray(self, data, np_dtype=None):
        return np.asarray(data, dtype=np_dtype)

    def to_numpy(self, arr) -> np.ndarray:
        return arr

    def from_numpy(self, arr: np.ndarray):
        return arr

    # --- the few ops xp does not cover the same way on every device --------------------------------------
    def matmul(self, a, b, out=None):
        """a @ b, written into out when given (float32/float64), run as _matmul_plan says."""
        # NOTE: NumPy has no BLAS for 16-bit floats; compute in float32 and round once, as PyTorch's CPU does.
        if a.dtype in _HALF:
            y = np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(a.dtype)
            if out is not None:
                out[...] = y
            return y if out is None else out
        plan = self._matmul_plan(a, b)
        if plan == "blas":
            return _on_blas_threads(lambda: np.matmul(a, b, out=out))
        if plan == "split":
            return self._split_matmul(a, b, out=out)
        return np.matmul(a, b, out=out)

    def linear_forward(self, x, weight, bias, residual=None):
        """x @ weight.T + bias (+ residual, (N, out)) for x (N, in), the bias and the residual added by each core
        to its part of the product (ops.nn.Linear, LinearAdd); None when the product is not split (the caller
        then runs matmul and adds them)."""
        if self._matmul_plan(x, weight.T) != "split" or any(
                t is not None and t.dtype != x.dtype for t in (bias, residual)):
            return None
        return self._split_matmul(x, weight.T, bias, residual)

    def linear_backward(self, g, x, weight, need_dx: bool, has_bias: bool, dx_epilogue=None):
        """(dx, dw, db) of x @ weight.T + bias for g (N, out) and x (N, in), on arrays: dx = g @ weight (None
        unless need_dx), dw = g.T @ x, db = the column sums of g (None without a bias); None for what this does
        not take (16-bit floats, mixed dtypes: the caller then runs Tensor ops).

        Large products run in one parallel region, each core a slice of dx's rows and of dw's (and db's) output
        features; medium ones on OpenBLAS's threads (_matmul_plan), small ones as they are.

        NOTE: one hand-off to the pool instead of three (dx, dw and db each split), and no core idles while
        another finishes the costlier of the two products (running them whole side by side did: dx and dw of
        one layer differ by up to 30% here). Below that, arrays instead of three recorded Tensor ops (a matmul,
        a transposed matmul, a sum and a reshape) save some 100 us of Python per layer.

        dx_epilogue(start, stop, rows), when given, rewrites dx's rows [start, stop) in place as soon as they are
        computed, on the thread that computed them (layer_norm_linear_backward: LayerNorm's backward)."""
        if not (g.dtype == x.dtype == weight.dtype and g.dtype in _BLAS_FLOATS and g.ndim == x.ndim == 2):
            return None
        plan = self._matmul_plan(g.T, x)
        if plan != "split":
            def products():
                return (np.matmul(g, weight) if need_dx else None, np.matmul(g.T, x),
                        np.matmul(np.ones(len(g), g.dtype), g) if has_bias else None)

            dx, dw, db = _on_blas_threads(products) if plan == "blas" else products()
            if dx_epilogue is not None and dx is not None:
                dx_epilogue(0, len(dx), dx)
            return dx, dw, db
        N, out_f = g.shape
        dx = np.empty(x.shape, x.dtype) if need_dx else None
        dw = np.empty(weight.shape, weight.dtype)
        db = np.empty(out_f, g.dtype) if has_bias else None
        parts = _cpu_count()
        rows = [N * i // parts for i in range(parts + 1)]
        outs = [out_f * i // parts for i in range(parts + 1)]
        ones = np.ones(N, g.dtype) if has_bias else None

        def task(i0, i1):
            for i in range(i0, i1):
                r0, r1, o0, o1 = rows[i], rows[i + 1], outs[i], outs[i + 1]
                if dx is not None:
                    np.matmul(g[r0:r1], weight, out=dx[r0:r1])  # dx rows [r0, r1)
                    if dx_epilogue is not None:
                        dx_epilogue(r0, r1, dx[r0:r1])
                np.matmul(g[:, o0:o1].T, x, out=dw[o0:o1])  # dw rows [o0, o1): one output feature per row
                if ones is not None:
                    np.matmul(ones, g[:, o0:o1], out=db[o0:o1])

        self.parallel(task, parts)
        return dx, dw, db

    def _matmul_plan(self, a, b) -> str:
        """How matmul runs a @ b on more than one core, for float matrices (or a matrix and a vector) large
        enough, with OpenBLAS on one thread (blas_threads.py): "split" between zigtensor's threads, or "blas" on
        OpenBLAS's for a matrix product below _BLAS_THREADS_MACS (blas_threads.py says when and why); else
        "one", a single call as it is."""
        if a.dtype != b.dtype or a.dtype not in _BLAS_FLOATS or max(a.ndim, b.ndim) != 2 or min(a.ndim, b.ndim) < 1:
            return "one"
        macs = a.size * b.size // max(a.shape[-1], 1)
        matrices = a.ndim + b.ndim == 4
        # NOTE: a matrix-vector product is memory-bound: worth splitting from fewer multiply-adds
        if macs < (_SPLIT_MATMUL_MACS if matrices else _SPLIT_MATVEC_MACS) or _cpu_count() < 2 \
                or blas_threads.blas_threads() != 1:
            return "one"
        if matrices and macs < _BLAS_THREADS_MACS and blas_threads.spin_is_short() \
                and not threading.current_thread().name.startswith(POOL_PREFIX) and not _machine_busy():
            return "blas"
        return "split"

    def _split_matmul(self, a, b, bias=None, residual=None, out=None):
        """a @ b (+ bias, + residual of the product's shape), into out when given, with the rows of a (or the
        columns of b, when they are more) split between the cores, each part one single-threaded BLAS call (see
        blas_threads.py for why BLAS runs on one thread) and its additions while it is in cache."""
        M = a.shape[0] if a.ndim == 2 else 1
        N = b.shape[1] if b.ndim == 2 else 1
        if out is None:
            out = np.empty(a.shape[:-1] + b.shape[1:], a.dtype)
        rows = a.ndim == 2 and (M >= N or b.ndim == 1)

        def part(i, j):
            if rows:
                o = np.matmul(a[i:j], b, out=out[i:j])
                if bias is not None:
                    o += bias
                if residual is not None:
                    o += residual[i:j]
            else:
                o = np.matmul(a, b[:, i:j], out=out[..., i:j])
                if bias is not None:
                    o += bias[i:j]
                if residual is not None:
                    o += residual[..., i:j]

        self.parallel(part, M if rows else N, grain=_SPLIT_MATMUL_GRAIN)
        return out

    def index_add(self, target, index, values) -> None:
        """target[index] += values, accumulating over repeated indices."""
        first = index[0] if len(index) == 1 else None
        if isinstance(first, np.ndarray) and first.dtype.kind in "iu" and first.size and target.ndim:
            # NOTE: one integer array over dim 0 (embedding and row-gather backwards): sum the values of
            # repeated rows with a sort and reduceat, several times faster than np.add.at.
            idx = first.reshape(-1)
            idx = np.where(idx < 0, idx + target.shape[0], idx)
            rows = values.reshape((idx.size,) + target.shape[1:])
            order = np.argsort(idx, kind="stable")
            sorted_idx = idx[order]
            starts = np.flatnonzero(np.concatenate(([True], sorted_idx[1:] != sorted_idx[:-1])))
            target[sorted_idx[starts]] += np.add.reduceat(rows[order], starts, axis=0)
            return
        np.add.at(target, index, values)

    @staticmethod
    def argsort(a, axis: int, descending: bool):
        """The stable order of a along axis: NaN last ascending; descending, larger first, equal keys in their
        order and NaN first (PyTorch's orders): the ascending sort of the reversed axis, reversed."""
        if not descending:
            return np.argsort(a, axis=axis, kind="stable")
        return a.shape[axis] - 1 - np.flip(np.argsort(np.flip(a, axis), axis=axis, kind="stable"), axis)

    def rms_norm_forward(self, x, weight, eps: float):
        """(x * rstd * weight, rstd) over the last axis, rstd = 1 / sqrt(mean(x^2) + eps), in one pass of NumPy
        calls (ops.nn.RMSNorm uses it instead of six recorded ops; 16-bit inputs are computed in float32)."""
        xf = x.astype(np.float32) if x.dtype in _HALF else x
        rstd = np.einsum("...i,...i->...", xf, xf)[..., None]
        rstd *= 1.0 / xf.shape[-1]
        rstd += eps
        np.sqrt(rstd, out=rstd)
        np.divide(1.0, rstd, out=rstd)
        out = xf * rstd
        if weight is not None:
            out *= weight
        return out.astype(x.dtype, copy=False), rstd

    def rms_norm_backward(self, g, x, weight, rstd):
        """(dx, dweight) of rms_norm_forward: dx = rstd (gw - x rstd^2 mean(gw x)), gw = g * weight;
        dweight = the sum over rows of g x rstd (None without a weight)."""
        gf, xf = (a.astype(np.float32) if a.dtype in _HALF else a for a in (g, x))
        xhat = xf * rstd
        gw = gf if weight is None else gf * weight
        dot = np.einsum("...i,...i->...", gw, xhat)[..., None]
        dot *= 1.0 / xf.shape[-1]
        dx = (gw - xhat * dot) * rstd
        dw = None if weight is None else (gf * xhat).reshape(-1, xf.shape[-1]).sum(0).astype(weight.dtype)
        return dx.astype(x.dtype, copy=False), dw

    def threads(self) -> int:
        """The cores parallel() splits work between."""
        return _cpu_count()

    def parallel(self, fn, n: int, grain: int = 1) -> None:
        """fn(start, stop) over [0, n) in one contiguous chunk per core (chunks of at least `grain` items): one
        chunk on this thread, the others on the pool's threads; returns when all are done, raising the first
        chunk's exception.

        NOTE: NumPy's ufuncs and OpenBLAS calls release the GIL, so chunks of array work run on all cores;
        NumPy alone runs every elementwise op on one core, which PyTorch's CPU kernels do not. fn must write
        disjoint outputs per chunk. Called from a pool thread (a chunk that splits again), fn runs there whole:
        waiting on the pool from inside it could wait forever.
        """
        workers = min(_cpu_count(), n // max(grain, 1))
        if workers <= 1 or threading.current_thread().name.startswith(POOL_PREFIX):
            fn(0, n)
            return
        bounds = [n * i // workers for i in range(workers + 1)]
        _worker_pool(workers - 1).run(fn, [(bounds[i], bounds[i + 1]) for i in range(workers)])

    def gelu(self, x, approximate: str = "none"):
        """(gelu(x), saved) (erf form or tanh approximation) with the work split between the cores; saved is
        what gelu_backward takes (cpu_kernels.gelu says what and why)."""
        return self._elementwise(lambda xs, out, saved: cpu_kernels.gelu(xs, approximate, out, saved), x, outputs=2)

    def gelu_backward(self, g, x, approximate: str, saved):
        """g * gelu'(x) from gelu's saved array, split between the cores."""
        if g.shape != x.shape:
            g = np.broadcast_to(g, x.shape)
        return self._elementwise(lambda ss, gs, xs, out: cpu_kernels.gelu_backward(gs, xs, ss, approximate, out),
                                 saved, g, x)

    def layer_norm_forward(self, x, weight, bias, eps: float):
        """(out, xhat, rstd) of LayerNorm over the last axis (ops.nn.LayerNorm; xhat is what layer_norm_backward
        takes, where the CUDA backend keeps the mean), rows split between the cores in cache-sized pieces;
        16-bit inputs computed in float32."""
        C = x.shape[-1]
        xf = _widen(x).reshape(-1, C)
        out, xhat = np.empty(xf.shape, xf.dtype), np.empty(xf.shape, xf.dtype)
        rstd = np.empty((len(xf), 1), xf.dtype)
        w, b = (None if p is None else _widen(p) for p in (weight, bias))

        def piece(i, j):
            cpu_kernels.layer_norm_rows(xf[i:j], w, b, eps, out[i:j], xhat[i:j], rstd[i:j])

        self._rows(piece, len(xf), C)
        return out.reshape(x.shape).astype(x.dtype, copy=False), xhat, rstd

    def layer_norm_linear_forward(self, x, eps: float, weight, bias):
        """(y, xhat, rstd) of LayerNorm without its affine part over x (N, C) followed by y = xhat @ weight.T +
        bias (ops.nn.LayerNormLinear), float32/float64: in one parallel region, each core normalizing its rows
        (in cache-sized pieces) and multiplying them; when the product is not split by rows, the two in turn.

        NOTE: one hand-off to the pool instead of two; on the 2-core VM each costs 150-300 us (the woken
        worker starts late, and the caller waits to be woken at the end)."""
        N, C = x.shape
        if self._matmul_plan(x, weight.T) != "split" or weight.shape[0] > N:
            xhat, rstd = self._normalize(x, eps)
            y = self.linear_forward(xhat, weight, bias)
            if y is None:
                y = self.matmul(xhat, weight.T)
                if bias is not None:
                    y += bias
            return y, xhat, rstd
        xhat, rstd = np.empty(x.shape, x.dtype), np.empty((N, 1), x.dtype)
        y = np.empty((N, weight.shape[0]), x.dtype)

        def normalize(a, b):
            cpu_kernels.layer_norm_rows(x[a:b], None, None, eps, xhat[a:b], xhat[a:b], rstd[a:b])

        def part(i, j):
            _in_pieces(normalize, i, j, C)
            out = np.matmul(xhat[i:j], weight.T, out=y[i:j])
            if bias is not None:
                out += bias

        self.parallel(part, N, grain=_SPLIT_MATMUL_GRAIN)
        return y, xhat, rstd

    def layer_norm_linear_backward(self, g, xhat, rstd, weight):
        """(dx, G = g.T @ xhat, the column sums of g) of layer_norm_linear_forward for g (N, out): d xhat =
        g @ weight, LayerNorm's backward applied to its rows in place as each core computes them, in
        linear_backward's region (each core a slice of the rows and one of the output features)."""
        def layer_norm_rows(r0, r1, d):
            def piece(a, b):  # NOTE: layer_norm_backward_rows may write dx over its g
                rows = d[a - r0:b - r0]
                cpu_kernels.layer_norm_backward_rows(rows, xhat[a:b], None, rstd[a:b], rows, None)

            _in_pieces(piece, r0, r1, xhat.shape[1])

        return self.linear_backward(g, xhat, weight, True, True, dx_epilogue=layer_norm_rows)

    def gelu_linear_forward(self, h, approximate: str, weight, bias, residual):
        """(y, a, saved) of y = a @ weight.T + bias (+ residual (N, out)), a = gelu(h), for h (N, hidden) float32 or
        float64 (ops.nn.GeluLinear; saved is what gelu_backward takes): in one parallel region, each core
        activating its rows (in cache-sized pieces) and multiplying them while they are in cache; when the product
        is not split by rows, the two in turn.

        NOTE: GELU's own region and its pass over (N, hidden) in memory saved: the MLP of the GPT recipe writes 8
        MiB a layer there."""
        N, C = h.shape
        a, saved = np.empty(h.shape, h.dtype), np.empty(h.shape, h.dtype)

        def activate(i, j):
            cpu_kernels.gelu(h[i:j].reshape(-1), approximate, a[i:j].reshape(-1), saved[i:j].reshape(-1))

        if self._matmul_plan(h, weight.T) != "split" or weight.shape[0] > N:
            self._rows(activate, N, C)
            y = self.linear_forward(a, weight, bias, residual)
            if y is None:
                y = self.matmul(a, weight.T)
                for t in (bias, residual):
                    if t is not None:
                        y += t
            return y, a, saved
        y = np.empty((N, weight.shape[0]), h.dtype)

        def part(i, j):
            _in_pieces(activate, i, j, C)
            out = np.matmul(a[i:j], weight.T, out=y[i:j])
            if bias is not None:
                out += bias
            if residual is not None:
                out += residual[i:j]

        self.parallel(part, N, grain=_SPLIT_MATMUL_GRAIN)
        return y, a, saved

    def gelu_linear_backward(self, g, h, a, saved, weight, approximate: str, has_bias: bool):
        """(dh, dweight, dbias) of gelu_linear_forward for g (N, out): d a = g @ weight, turned into dh = d a *
        gelu'(h) on each core's rows as soon as they are computed, in linear_backward's one region."""
        def gelu_rows(r0, r1, d):
            def piece(i, j):
                rows = d[i - r0:j - r0].reshape(-1)
                cpu_kernels.gelu_backward(rows, h[i:j].reshape(-1), saved[i:j].reshape(-1), approximate, rows)

            _in_pieces(piece, r0, r1, h.shape[1])

        return self.linear_backward(g, a, weight, True, has_bias, dx_epilogue=gelu_rows)

    def _normalize(self, x, eps: float):
        """(xhat, rstd) of LayerNorm over the last axis of x (N, C), without its affine part, in the pieces of
        layer_norm_forward."""
        xhat, rstd = np.empty(x.shape, x.dtype), np.empty((len(x), 1), x.dtype)

        def piece(i, j):
            cpu_kernels.layer_norm_rows(x[i:j], None, None, eps, xhat[i:j], xhat[i:j], rstd[i:j])

        self._rows(piece, len(x), x.shape[-1])
        return xhat, rstd

    def layer_norm_backward(self, g, x, weight, xhat, rstd, has_bias: bool):
        """(dx, dweight, dbias) of layer_norm_forward from its xhat and rstd (dweight None without a weight, dbias
        None without a bias), rows split between the cores in pieces; each piece sums its rows' parameter
        gradients, then those add in row order (whatever the number of threads)."""
        C = x.shape[-1]
        gf = _widen(g).reshape(-1, C)
        w = None if weight is None else _widen(weight)
        dx = np.empty(gf.shape, gf.dtype)
        partial = {}  # first row of a piece -> its column sums, added in row order: the same bits every run

        def piece(i, j):
            partial[i] = np.zeros((2, C), gf.dtype)
            cpu_kernels.layer_norm_backward_rows(gf[i:j], xhat[i:j], w, rstd[i:j], dx[i:j], partial[i])

        self._rows(piece, len(gf), C)
        sums = sum((partial[i] for i in sorted(partial)), np.zeros((2, C), gf.dtype))
        dw = None if weight is None else sums[0].astype(weight.dtype)
        db = sums[1].astype(x.dtype) if has_bias else None
        return dx.reshape(x.shape).astype(x.dtype, copy=False), dw, db

    def cross_entropy_forward(self, logits, targets, ignore_index: int, smoothing: float):
        """(loss rows in the logits' dtype, lse rows in float32 (float64 for float64 logits)) of cross-entropy over
        (N, C) logits and int64 targets (ops.loss.CrossEntropyRows, the CUDA backend's contract), rows split
        between the cores."""
        x = logits.astype(np.float32) if logits.dtype in _HALF else logits
        loss, lse = np.empty(len(x), x.dtype), np.empty(len(x), x.dtype)

        def piece(i, j):
            cpu_kernels.cross_entropy_rows(x[i:j], targets[i:j], ignore_index, smoothing, loss[i:j], lse[i:j])

        self._rows(piece, len(x), x.shape[1])
        return loss.astype(logits.dtype, copy=False), lse

    def cross_entropy_backward(self, logits, targets, lse, grad, ignore_index: int, smoothing: float):
        """d logits of cross_entropy_forward's rows for their gradient grad (a number or (N,)), in the logits'
        dtype."""
        x = logits.astype(np.float32) if logits.dtype in _HALF else logits
        dx = np.empty(x.shape, x.dtype)
        g = np.asarray(grad, x.dtype)

        def piece(i, j):
            cpu_kernels.cross_entropy_backward_rows(x[i:j], targets[i:j], lse[i:j], g[i:j] if g.ndim else g,
                                                    ignore_index, smoothing, dx[i:j])

        self._rows(piece, len(x), x.shape[1])
        return dx.astype(logits.dtype, copy=False)

    def dropout_forward(self, x, p: float):
        """(x * mask / (1 - p), mask) for 0 < p < 1, mask[e] = (u_e >= p * 2^32) for 32-bit uniform integers u_e
        of the generator's raw output (as exact as float32 uniforms, which carry 24 bits, at half their cost);
        computed as PyTorch does, in x's dtype: x * mask, then times the scale."""
        n = x.size
        u = self.generator.bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n].reshape(x.shape)
        mask = u >= np.uint32(min(round(p * 2.0**32), 2**32 - 1))
        return self._apply_mask(x, mask, p), mask

    def dropout_backward(self, g, mask, p: float):
        """g * mask / (1 - p), with dropout_forward's mask."""
        return self._apply_mask(g, mask, p)

    @staticmethod
    def _apply_mask(x, mask, p: float):
        out = np.multiply(x, mask, dtype=x.dtype)
        out *= np.asarray(1.0 / (1.0 - p), x.dtype)
        return out

    def _rows(self, piece, n: int, width: int):
        """piece(i, j) over rows [0, n) in pieces of about _ELEMENTWISE_BLOCK elements, split between cores."""
        self.parallel(lambda start, stop: _in_pieces(piece, start, stop, width), n,
                      grain=max(1, _ELEMENTWISE_GRAIN // max(width, 1)))

    def _elementwise(self, kernel, *arrays, outputs: int = 1):
        """kernel(*input pieces, *output pieces) over equal-shaped arrays, flattened and cut into one range per
        core, each range run in cache-sized pieces; the kernel writes its outputs' pieces in place. 16-bit
        floats are computed in float32 and rounded once, as PyTorch's CPU kernels do. Returns the first output
        in the last array's shape and dtype, and with outputs > 1 the others too (float32 for 16-bit inputs).

        NOTE: a kernel of a dozen NumPy passes over a few-MiB array streams it through memory a dozen times;
        pieces of _ELEMENTWISE_BLOCK elements stay in the core's cache (measured 1.9x on GELU's backward).
        """
        like = arrays[-1]
        flat = [(a.astype(np.float32) if a.dtype in _HALF else a).reshape(-1) for a in arrays]
        outs = [np.empty(flat[-1].shape, flat[-1].dtype) for _ in range(outputs)]

        def chunk(start, stop):
            for i in range(start, stop, _ELEMENTWISE_BLOCK):
                j = min(i + _ELEMENTWISE_BLOCK, stop)
                kernel(*(a[i:j] for a in flat), *(o[i:j] for o in outs))

        self.parallel(chunk, outs[0].size, grain=_ELEMENTWISE_GRAIN)
        first = outs[0].reshape(like.shape).astype(like.dtype, copy=False)
        return first if outputs == 1 else (first, *(o.reshape(like.shape) for o in outs[1:]))

    def erf(self, x):
        # NOTE: NumPy has no erf; SciPy's is exact to float64 rounding, which finite-difference checks need.
        from scipy.special import erf

        return erf(x.astype(np.float32) if x.dtype in _HALF else x).astype(x.dtype, copy=False)

    # --- random numbers -----------------------------------------------------------------------------------
    def seed(self, seed: int) -> None:
        self.generator = np.random.Generator(np.random.PCG64(seed))

    def get_rng_state(self):
        return self.generator.bit_generator.state

    def set_rng_state(self, state) -> None:
        self.generator.bit_generator.state = state

    def rand(self, shape, np_dtype):
        if np_dtype in (np.float32, np.float64):
            return self.generator.random(shape, dtype=np_dtype)
        return self.generator.random(shape, dtype=np.float32).astype(np_dtype)

    def randn(self, shape, np_dtype):
        if np_dtype in (np.float32, np.float64):
            return self.generator.standard_normal(shape, dtype=np_dtype)
        return self.generator.standard_normal(shape, dtype=np.float32).astype(np_dtype)

    def permutation(self, n: int):
        return self.generator.permutation(n)

    def randint(self, low, high, shape, np_dtype):
        return self.generator.integers(low, high, size=shape, dtype=np_dtype)

    def __repr__(self) -> str:
        return "CPUBackend()"


_POOL = None


def _in_pieces(piece, start: int, stop: int, width: int) -> None:
    """piece(i, j) over rows [start, stop) of `width` elements, in pieces of about _ELEMENTWISE_BLOCK elements
    (a core's cache)."""
    rows = max(1, _ELEMENTWISE_BLOCK // max(width, 1))
    for i in range(start, stop, rows):
        piece(i, min(i + rows, stop))


def _widen(a):
    return a.astype(np.float32) if a.dtype in _HALF else a


def _cpu_count() -> int:
    """The cores this process may run on (ZT_NUM_THREADS overrides: 1 turns CPUBackend.parallel off)."""
    import os

    env = os.environ.get("ZT_NUM_THREADS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"ZT_NUM_THREADS must be a positive integer, got {env!r}")
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _forget_pool() -> None:
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's threads: it starts its own
    os.register_at_fork(after_in_child=_forget_pool)


def _worker_pool(workers: int) -> WorkerPool:
    """The worker threads of CPUBackend.parallel (cpu_pool.py), started on first use, at least `workers`."""
    global _POOL
    if _POOL is None:
        _POOL = WorkerPool(max(_cpu_count() - 1, workers, 1))
    elif _POOL.size < workers:
        _POOL.grow(workers)
    return _POOL


def _keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory for reuse instead of giving it back to the OS at once.

    NOTE: a training step allocates and frees the same few-MiB activation and gradient arrays hundreds of
    times. By default glibc serves blocks above a (dynamic) threshold with mmap and trims the heap top,
    so most of them come back as fresh pages, and each first touch page-faults: that doubled the time of
    a small GPT's backward. Blocks up to 32 MiB (glibc's cap) now come from the heap, which is never
    trimmed, as a caching allocator would. ZT_MALLOC_TUNE=0 leaves malloc as it was.
    """
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("ZT_MALLOC_TUNE", "1") == "0":
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl): nothing to tune
        pass


def _on_blas_threads(fn, *args):
    """fn(*args) with OpenBLAS on every core, then back on one."""
    blas_threads.set_blas_threads(_cpu_count())
    try:
        return fn(*args)
    finally:
        blas_threads.set_blas_threads(1)


_BUSY_CHECKED = [0.0, False]  # (when, busy): the load average is read at most once a second


def _machine_busy() -> bool:
    now = time.monotonic()
    if now - _BUSY_CHECKED[0] > 1.0:
        _BUSY_CHECKED[:] = [now, blas_threads.machine_busy()]
    return _BUSY_CHECKED[1]


def _own_blas_threads() -> None:
    """Run OpenBLAS on one thread: zigtensor's matmuls and kernels split their work between the cores
    themselves (CPUBackend.parallel; blas_threads.py says why). ZT_OWN_BLAS_THREADS=0 leaves BLAS as it is
    (large matmuls then run on BLAS's threads, not split)."""
    import os

    if os.environ.get("ZT_OWN_BLAS_THREADS", "1") != "0":
        blas_threads.set_blas_threads(1)


def create(device) -> CPUBackend:
    _keep_freed_memory()
    _own_blas_threads()
    return CPUBackend(device)
