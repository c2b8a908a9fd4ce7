"""Causal self-attention of a transformer's training forward as one op on the packed q/k/v projection.

    y = CausalAttention.apply(qkv, n_head, n_kv_head, scale, window)   # qkv (B, T, n_head + 2 n_kv_head, hd)
                                                                       # y (B, T, n_head * hd)

softmax(q k^T * scale + causal mask) v for each query head, query head h reading key/value head
h // (n_head / n_kv_head) (grouped-query attention), optionally only the last `window` keys (sliding window).

Why one op: composed from Tensor ops, attention splits the heads out of qkv (three slices whose backwards
zero-fill and add full-size buffers), builds and adds a (T, T) mask, runs a softmax and its five-op backward,
and merges the heads again with a copy. Here the heads are strided views of qkv and of the output, so no
split or merge copies are made; the gradient of qkv is written into one buffer; and the query rows go in
blocks, each against only the keys up to its last row, which skips most of the masked upper triangle (with
two blocks a quarter of the work). Backward uses rowsum(dP * P) = rowsum(dO * O) (as flash attention does)
and each block's exponentials and row sums, kept by forward (which divides the (rows, hd) output by the sums
rather than the (rows, keys) exponentials). On the CPU the batch goes in cache-sized pieces split between
the cores (the GEMMs of one block are small enough that OpenBLAS runs each on its calling thread).
"""

from __future__ import annotations

import contextlib
import math

from ..autograd.function import Function
from ..autograd.grad_mode import GradMode
from ..dtypes import float32, float64
from .common import Tensor

QUERY_BLOCK = 64  # query rows per block: smaller skips more of the triangle, but makes smaller, slower GEMMs
PIECE_BYTES = 1 << 21  # batch rows go in pieces of about this many bytes of (T, T) scores over all heads
_FAST_NP = (float32.np, float64.np)


def fused_attention_applies(qkv: Tensor, dropout: float) -> bool:
    """Whether CausalAttention takes this case: float32/float64 on the CPU, no attention dropout."""
    return qkv.device.type == "cpu" and qkv.dtype.np in _FAST_NP and not dropout and qkv.ndim == 4


class CausalAttention(Function):
    """See the module docstring. Inputs: qkv (B, T, n_head + 2 n_kv_head, hd) with query heads first, then
    key heads, then value heads; scale of the scores; window None or the number of keys each query sees."""

    def forward(self, qkv, n_head, n_kv_head, scale, window):
        B, T, heads, hd = qkv.shape
        if heads != n_head + 2 * n_kv_head or n_head % n_kv_head:
            raise ValueError(f"CausalAttention: qkv of shape {qkv.shape} does not hold {n_head} query heads and "
                             f"2 x {n_kv_head} key/value heads (query heads must be a multiple of kv heads)")
        if window is not None and window < 1:
            raise ValueError(f"CausalAttention: window must be a positive number of keys or None, got {window}")
        xp = self.xp
        q, k, v = _split(qkv, n_head, n_kv_head)  # (B, nkv, g, T, hd), (B, nkv, 1, T, hd) x2: views
        y = xp.empty((B, T, n_head * hd), qkv.dtype)
        out = _heads(y, n_kv_head, hd)
        self.qs = xp.empty(q.shape, qkv.dtype)  # q * scale, contiguous: read by every block and by backward
        self.blocks = _blocks(T)
        self.pieces = _pieces(B, n_head * T * T * qkv.dtype.itemsize)
        self.probs = [None] * len(self.pieces)  # per piece, (exponentials, 1 / row sums) of each block
        self.scale, self.window = scale, window

        def run(i0, i1):
            for i in range(i0, i1):
                self._forward_piece(i, q, k, v, out)

        _parallel(self.device.backend, run, len(self.pieces))
        self.saved_out = y
        return y

    def _forward_piece(self, i, q, k, v, out):
        xp = self.xp
        b0, b1 = self.pieces[i]
        qs = xp.multiply(q[b0:b1], self.scale, out=self.qs[b0:b1])
        kt, vv = k[b0:b1].swapaxes(-1, -2), v[b0:b1]
        probs = []
        for r0, r1 in self.blocks:
            def scores(r0=r0, r1=r1):
                return xp.matmul(qs[..., r0:r1, :], kt[..., :r1])  # (b, nkv, g, rows, r1)

            e, inv_total = _softmax_causal(xp, scores(), scores, r0, self.window)
            o = xp.matmul(e, vv[..., :r1, :], out=out[b0:b1, :, :, r0:r1])
            o *= inv_total  # normalized here, on (rows, hd), rather than e on (rows, r1)
            probs.append((e, inv_total))
        self.probs[i] = probs

    def backward(self, g):
        qkv, n_head, n_kv_head, scale, window = self.inputs
        if GradMode.enabled:  # create_graph: the same gradients from Tensor ops, themselves differentiable
            return _composed_backward(qkv, g, n_head, n_kv_head, scale, window), None, None, None, None
        xp = self.xp
        B, T, heads, hd = qkv.shape
        q, k, v = _split(qkv.data, n_head, n_kv_head)
        gy = xp.ascontiguousarray(g.data)
        grad = xp.empty(qkv.shape, qkv.data.dtype)
        dq, dk, dv = _split(grad, n_head, n_kv_head)

        def run(i0, i1):
            for i in range(i0, i1):
                self._backward_piece(i, gy, k, v, dq, dk, dv)

        _parallel(self.device.backend, run, len(self.pieces))
        return Tensor._wrap(grad, g.device), None, None, None, None

    def _backward_piece(self, i, gy, k, v, dq, dk, dv):
        xp = self.xp
        b0, b1 = self.pieces[i]
        probs, hd, nkv = self.probs[i], k.shape[-1], k.shape[1]
        k, v, qs, dq, dk, dv = k[b0:b1], v[b0:b1], self.qs[b0:b1], dq[b0:b1], dk[b0:b1], dv[b0:b1]
        gy, y = gy[b0:b1], self.saved_out[b0:b1]
        # D = rowsum(dO * O) per query row and head, which is rowsum(dP * P) of the softmax backward
        heads = gy.shape[:2] + (-1, hd)
        d = _heads(xp.einsum("...i,...i->...", gy.reshape(heads), y.reshape(heads))[..., None], nkv, 1)  # (b,nkv,g,T,1)
        go = _heads(gy, nkv, hd)
        ks = xp.multiply(k, self.scale)  # dQ = scale dS @ K
        # blocks from the last (which sees every key) back: its products fill dk and dv, the others add to them.
        # With P = e / total (e saved unnormalized): dV = e^T (dO / total), dS = e ((dO / total) V^T - D / total)
        for j in range(len(self.blocks) - 1, -1, -1):
            r0, r1 = self.blocks[j]
            e, inv_total = probs[j]  # (b, nkv, g, rows, r1), (b, nkv, g, rows, 1)
            go_b = go[..., r0:r1, :] * inv_total  # (b, nkv, g, rows, hd)
            last = j == len(self.blocks) - 1
            _accumulate(xp, e.swapaxes(-1, -2), go_b, dv[..., :r1, :], last)
            ds = xp.matmul(go_b, v[..., :r1, :].swapaxes(-1, -2))  # dP / total
            ds -= d[..., r0:r1, :] * inv_total
            ds *= e  # dS / scale
            xp.matmul(ds, ks[..., :r1, :], out=dq[..., r0:r1, :])
            _accumulate(xp, ds.swapaxes(-1, -2), qs[..., r0:r1, :], dk[..., :r1, :], last)

    def release(self) -> None:
        super().release()
        self.probs = self.qs = self.saved_out = None


def _split(qkv, n_head, n_kv_head):
    """Views of packed (B, T, heads, hd): q (B, nkv, g, T, hd), k and v (B, nkv, 1, T, hd)."""
    B, T, _, hd = qkv.shape
    g = n_head // n_kv_head
    q = qkv[:, :, :n_head].reshape(B, T, n_kv_head, g, hd).transpose(0, 2, 3, 1, 4)
    k = qkv[:, :, n_head:n_head + n_kv_head].transpose(0, 2, 1, 3)[:, :, None]
    v = qkv[:, :, n_head + n_kv_head:].transpose(0, 2, 1, 3)[:, :, None]
    return q, k, v


def _heads(a, n_kv_head, hd):
    """(B, T, n_head * hd) (or (B, T, n_head, hd)) -> the view (B, nkv, g, T, hd)."""
    B, T = a.shape[:2]
    return a.reshape(B, T, n_kv_head, -1, hd).transpose(0, 2, 3, 1, 4)


def _parallel(backend, fn, n):
    parallel = getattr(backend, "parallel", None)
    parallel(fn, n) if parallel is not None else fn(0, n)


def _pieces(B: int, row_bytes: int):
    """Batch rows in pieces whose block scores (about row_bytes / 2 per row) stay in a core's cache."""
    per = max(1, PIECE_BYTES // max(row_bytes, 1))
    return [(b, min(b + per, B)) for b in range(0, B, per)]


def _blocks(T: int):
    n = max(1, math.ceil(T / QUERY_BLOCK))
    bounds = [T * i // n for i in range(n + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(n) if bounds[i + 1] > bounds[i]]


def _accumulate(xp, a, b, target, first):
    """target (b, nkv, 1, r, hd) = (first) or += a @ b (b, nkv, g, r, hd) summed over its g query heads."""
    if first and a.shape[2] == 1:
        xp.matmul(a, b, out=target)
        return
    part = xp.matmul(a, b)
    if part.shape[2] > 1:
        part = part.sum(axis=2, keepdims=True)
    if first:
        target[...] = part
    else:
        target += part


_MASKS: dict = {}


def _mask(xp, r0, r1, window, dtype):
    """(r1 - r0, r1) additive mask of query rows r0..r1 over keys 0..r1: 0 where allowed, -inf where not."""
    key = (r0, r1, window, xp.dtype(dtype).str, xp.__name__)
    m = _MASKS.get(key)
    if m is None:
        i = xp.arange(r0, r1)[:, None]
        j = xp.arange(r1)[None, :]
        allowed = j <= i
        if window is not None:
            allowed &= j > i - window
        m = xp.where(allowed, 0.0, -xp.inf).astype(dtype)
        if len(_MASKS) >= 256:
            _MASKS.clear()
        _MASKS[key] = m
    return m


def _softmax_causal(xp, s, scores, r0, window):
    """(e, 1 / total): the block's scores s (.., rows, r1) turned in place into exp(s - shift) over the allowed
    keys, and the inverse of each row's sum (.., rows, 1); row i is query r0 + i. The caller normalizes (the
    softmax is e / total). scores() recomputes s, for the rare row whose sum overflows.

    Each row is shifted by its diagonal score (query r0 + i against key r0 + i, never masked) rather than its
    maximum, a reduction NumPy does slowly: the row's sum is then >= exp(0) = 1, and only a score far above the
    diagonal one can overflow it; the block is then redone with the row maxima. Row sums by einsum, not
    BLAS, which could start threads of its own inside the caller's thread. float32 on the CPU runs
    cpu_fused.causal_softmax instead, the same in one compiled pass over each row (2-4x faster).
    """
    r1 = s.shape[-1]
    if xp.__name__ == "numpy" and s.dtype == xp.float32 and s.flags.c_contiguous:
        from ..backends import cpu_fused

        inv_total = xp.empty(s.shape[:-1] + (1,), s.dtype)
        cpu_fused.causal_softmax(s.reshape(-1, *s.shape[-2:]), r0, window or 0, inv_total.reshape(-1, s.shape[-2]))
        return s, inv_total
    mask = _mask(xp, r0, r1, window, s.dtype)
    if window is None:
        s[..., r0:] += mask[:, r0:]  # the keys before r0 are all allowed
    else:
        s += mask
    s -= xp.diagonal(s[..., r0:], axis1=-2, axis2=-1)[..., None].copy()
    errstate = getattr(xp, "errstate", None)
    with errstate(over="ignore") if errstate else contextlib.nullcontext():
        xp.exp(s, out=s)
    total = xp.einsum("...j->...", s)[..., None]
    if not xp.isfinite(total).all():
        s = scores()
        s += mask
        s -= s.max(axis=-1, keepdims=True)
        xp.exp(s, out=s)
        total = xp.einsum("...j->...", s)[..., None]
    return s, xp.divide(1, total, out=total)


def _composed_backward(qkv: Tensor, g: Tensor, n_head, n_kv_head, scale, window) -> Tensor:
    """d qkv from Tensor ops (recorded when backward builds a graph): the forward recomputed per head."""
    from .shape import cat

    B, T, _, hd = qkv.shape
    grp = n_head // n_kv_head
    q = qkv[:, :, :n_head].reshape(B, T, n_kv_head, grp, hd).permute(0, 2, 3, 1, 4)  # (B, nkv, g, T, hd)
    k = qkv[:, :, n_head:n_head + n_kv_head].transpose(1, 2).unsqueeze(2)  # (B, nkv, 1, T, hd)
    v = qkv[:, :, n_head + n_kv_head:].transpose(1, 2).unsqueeze(2)
    xp = qkv.device.backend.xp
    mask = Tensor._wrap(_mask(xp, 0, T, window, qkv.dtype.np), qkv.device)
    p = (((q @ k.mT) * scale) + mask).softmax(-1)  # (B, nkv, g, T, T)
    go = g.reshape(B, T, n_kv_head, grp, hd).permute(0, 2, 3, 1, 4)
    dv = (p.mT @ go).sum(2)  # (B, nkv, T, hd)
    dp = go @ v.mT
    ds = p * (dp - (dp * p).sum(-1, keepdim=True)) * scale
    dq = ds @ k  # (B, nkv, g, T, hd)
    dk = (ds.mT @ q).sum(2)
    dq = dq.permute(0, 3, 1, 2, 4).reshape(B, T, n_head, hd)
    return cat([dq, dk.transpose(1, 2), dv.transpose(1, 2)], 2)
