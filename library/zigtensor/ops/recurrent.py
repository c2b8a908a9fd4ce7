"""Recurrent ops: the RNN, LSTM and GRU recurrences over a whole sequence, one Function per cell type.

The input side of every step does not depend on the previous step, so the layers compute it for all steps
with one matmul (`xproj = x @ W_ih^T + b`, ordinary Tensor ops) and hand it to a Function here, which runs
the loop over time on backend arrays: one gate matmul per step, no graph nodes per step. Its backward is the
loop in reverse, and the weight gradient is one matmul over all steps at the end.

The cell formulas are written once (`_*_step`, `_*_step_back`) over a small math namespace, so they run on
arrays (the forward, and backward without create_graph) or on Tensors: with create_graph=True the backward
recomputes the forward with Tensor ops and differentiates it with Tensor ops, so gradients of gradients work.

Shapes: xproj (L, B, G*H) in time order, h0/c0 (B, H) or None (zeros), w_hh (G*H, H); `reverse` walks the
sequence from the end (the backward direction of a bidirectional layer). Gate order is PyTorch's:
LSTM i, f, g, o; GRU r, z, n.
"""

from __future__ import annotations

import numpy as np

from ..amp.autocast_mode import autocast_inputs
from ..autograd.function import Function
from ..autograd.grad_mode import GradMode
from ..backends.cpu_kernels import takes_compiled
from .common import Tensor

_BLAS_FLOATS = (np.float32, np.float64)


# ----------------------------------------------------------------------------------------- math namespaces
class _ArrayMath:
    """Cell math on backend arrays (no graph)."""

    def __init__(self, backend):
        self.xp = backend.xp
        self.mm = backend.matmul  # 16-bit floats go through float32, as in the Matmul op

    def sigmoid(self, x):
        # NOTE: through tanh: one transcendental call instead of exp + divide, and no overflow for large |x|
        y = self.xp.tanh(x * 0.5)
        y *= 0.5
        y += 0.5
        return y

    def tanh(self, x):
        return self.xp.tanh(x)

    def relu(self, x):
        return self.xp.maximum(x, 0)

    def cat(self, parts):
        return self.xp.concatenate(parts, axis=-1)

    def stack(self, parts):
        return self.xp.stack(parts)

    def zeros(self, shape, like):
        return self.xp.zeros(shape, dtype=like.dtype)

    def sum_rows(self, x):
        return x.sum(axis=0)


class _TensorMath:
    """The same math with Tensor ops (recording a graph when grad mode is on)."""

    @staticmethod
    def mm(a, b):
        return a @ b

    @staticmethod
    def sigmoid(x):
        return x.sigmoid()

    @staticmethod
    def tanh(x):
        return x.tanh()

    @staticmethod
    def relu(x):
        return x.relu()

    @staticmethod
    def cat(parts):
        from .shape import cat

        return cat(parts, -1)

    @staticmethod
    def stack(parts):
        from .shape import stack

        return stack(parts)

    @staticmethod
    def zeros(shape, like):
        from ..creation import zeros

        return zeros(shape, dtype=like.dtype, device=like.device)

    @staticmethod
    def sum_rows(x):
        return x.sum(0)


def _order(n: int, reverse: bool) -> range:
    return range(n - 1, -1, -1) if reverse else range(n)


def _previous(states: list, h0, reverse: bool) -> list:
    """The state each position started from: h0 at the first processed position, else its neighbour's."""
    return [h0] + states[:-1] if not reverse else states[1:] + [h0]


class _Recurrence(Function):
    """Shared plumbing: run the forward on arrays and keep what backward needs; free it on release."""

    def release(self) -> None:
        super().release()
        self.saved = None

    def _math(self, grad, w_hh):
        """(math, saved activations, grad, w_hh) for backward: Tensors and recomputed activations when it must
        record a graph (create_graph=True), else arrays."""
        if GradMode.enabled:
            return _TensorMath, self._recompute(), grad, w_hh
        return _ArrayMath(self.device.backend), self.saved, grad.data, w_hh.data

    def _wrap(self, grads):
        return tuple(Tensor._wrap(g, self.device) if g is not None and not isinstance(g, Tensor) else g
                     for g in grads)


def _initial(m, h0, xproj, hidden: int):
    return h0 if h0 is not None else m.zeros((xproj.shape[1], hidden), xproj)


def _needs(t) -> bool:
    return isinstance(t, Tensor) and t.requires_grad


# --------------------------------------------------------------------------------------------- LSTM
def _lstm_step(m, xp_t, h, c, w_hh_t):
    n = h.shape[-1]
    gates = xp_t + m.mm(h, w_hh_t)  # (B, 4H)
    i_f = m.sigmoid(gates[:, : 2 * n])
    i, f = i_f[:, :n], i_f[:, n:]
    g = m.tanh(gates[:, 2 * n : 3 * n])
    o = m.sigmoid(gates[:, 3 * n :])
    c = f * c + i * g
    tc = m.tanh(c)
    return o * tc, c, (i, f, g, o, tc)


def _lstm_step_back(m, dh, dc, acts, c_prev):
    """Gradients of the gate pre-activations (B, 4H) and of the previous cell state."""
    i, f, g, o, tc = acts
    dc = dc + dh * o * (1 - tc * tc)
    d_gates = m.cat([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
                     dh * tc * o * (1 - o)])
    return d_gates, dc * f


def _lstm_scan(m, xproj, h0, c0, w_hh, reverse):
    n = w_hh.shape[-1]
    h, c = _initial(m, h0, xproj, n), _initial(m, c0, xproj, n)
    h0, c0 = h, c
    w_hh_t = w_hh.T
    L = xproj.shape[0]
    hs, cs, acts = [None] * L, [None] * L, [None] * L
    for t in _order(L, reverse):
        h, c, acts[t] = _lstm_step(m, xproj[t], h, c, w_hh_t)
        hs[t], cs[t] = h, c
    return hs, cs, acts, h0, c0


def _mm_into(backend, a, b, out) -> None:
    """out[...] = a @ b, written straight into out where BLAS can (float32, float64).

    NOTE: on the CPU through the backend's matmul, whose plan puts a step's product (2^21 to 2^25 multiply-adds:
    an LSTM of 256 at batch 32) on OpenBLAS's two spinning threads: the steps come faster than their spin
    ends, so the hand-off is nearly free (a 1024 x 256 x 32 product 210 -> 125-150 us on the 2-core VM)."""
    if out.dtype in _BLAS_FLOATS and backend.xp is np:
        backend.matmul(a, b, out=out)
    elif out.dtype in _BLAS_FLOATS:
        backend.xp.matmul(a, b, out=out)
    else:  # 16-bit floats: through float32, as in the Matmul op
        out[...] = backend.matmul(a, b)


def _lstm_forward(backend, xproj, h0, c0, w_hh, reverse):
    """The LSTM over all steps on arrays: (out (L + 1, B, H): h at each position, then the last cell state;
    what backward needs).

    Preallocated buffers, computed in place, each step's gates laid out gate-major (4, B, H) so that every
    gate is one contiguous block (NumPy runs ops on a strided column block of (B, 4H) ~2.5x slower).
    float32 on the CPU runs each step's activations and cell update as one compiled call (cpu_fused.lstm_cell:
    a dozen NumPy calls on (B, H) blocks before). NOTE: elsewhere, sigmoid(x) = 0.5 * tanh(x / 2) + 0.5, so
    the i, f, o parts of the gate inputs (xproj and W_hh) are halved up front (exact: a power of two) and one
    tanh call serves all four gates of a step.
    NOTE: the recurrent product is computed transposed, W_hh @ h^T (4H, B), and copied back: for a small
    batch OpenBLAS runs that product ~30% faster than h @ W_hh^T (32 x 256 x 1024: 190 us against 270 us on
    one core), far more than the transposing copy of its result costs (20 us).
    """
    xp = backend.xp
    L, B, G = xproj.shape
    H = G // 4
    dt = xproj.dtype
    acts = xp.empty((L, 4, B, H), dtype=dt)  # the gate inputs, then in place the activations i, f, g, o
    gates_in = xproj.reshape(L, B, 4, H).transpose(0, 2, 1, 3)
    compiled = takes_compiled(acts)
    if compiled:  # the compiled cell takes the gate inputs as they are
        acts[...] = gates_in
        w_s = w_hh
    else:  # i, f, o halved for sigmoid through tanh
        scale = xp.full((4, 1, 1), 0.5, dtype=dt)
        scale[2] = 1
        xp.multiply(gates_in, scale, out=acts)
        w_s = xp.multiply(w_hh.reshape(4, H, H), scale).reshape(G, H)
    out = xp.empty((L + 1, B, H), dtype=dt)
    cs, tcs = xp.empty((L, B, H), dtype=dt), xp.empty((L, B, H), dtype=dt)  # c and tanh(c) at each position
    hh_t, hh, ig = xp.empty((4, H, B), dtype=dt), xp.empty((4, B, H), dtype=dt), xp.empty((B, H), dtype=dt)
    h = h0
    c = c0 if c0 is not None else xp.zeros((B, H), dtype=dt)
    if compiled:
        from ..backends import cpu_fused

        c = xp.ascontiguousarray(c)
    for t in _order(L, reverse):
        gates = acts[t]
        if h is not None:  # (a zero initial state adds nothing)
            _mm_into(backend, w_s, h.T, hh_t.reshape(G, B))
            hh[...] = hh_t.transpose(0, 2, 1)
            gates += hh
        if compiled:
            cpu_fused.lstm_cell(gates, c, cs[t], tcs[t], out[t])
            h, c = out[t], cs[t]
            continue
        xp.tanh(gates, out=gates)
        for sig in (gates[:2], gates[3]):  # i and f, then o
            sig *= 0.5
            sig += 0.5
        i, f, g, o = gates
        xp.multiply(f, c, out=cs[t])
        xp.multiply(i, g, out=ig)
        cs[t] += ig
        xp.tanh(cs[t], out=tcs[t])
        xp.multiply(o, tcs[t], out=out[t])
        h, c = out[t], cs[t]
    out[L] = c
    return out, (acts, cs, tcs, out)


def _lstm_backward(backend, grad, saved, h0, c0, w_hh, reverse, need_h0: bool):
    """Backward through time on arrays, into preallocated buffers: (d_xproj (L, B, 4H), dh0 or None, dc0,
    d_w_hh). grad (L + 1, B, H) is the gradient of forward's output (the last row: of the last cell state).
    Each step's gate gradients are computed gate-major, as in forward, then copied into d_xproj."""
    xp = backend.xp
    acts, cs, tcs, out = saved
    L, _, B, H = acts.shape
    G = 4 * H
    dt = acts.dtype
    order = list(_order(L, reverse))
    zeros = xp.zeros((B, H), dtype=dt)
    d_xproj = xp.empty((L, B, G), dtype=dt)
    dh, dc, tmp = xp.empty((B, H), dtype=dt), xp.array(grad[L], dtype=dt), xp.empty((B, H), dtype=dt)
    dg, ds = xp.empty((4, B, H), dtype=dt), xp.empty((4, B, H), dtype=dt)  # of the step: d gates, sigmoid'
    compiled = takes_compiled(acts)
    if compiled:
        from ..backends import cpu_fused

        c0 = None if c0 is None else xp.ascontiguousarray(c0)
    for k in range(L - 1, -1, -1):
        t = order[k]
        if k == L - 1:
            dh[...] = grad[t]
        else:  # dh holds the recurrent part, d_xproj[next] @ W_hh
            dh += grad[t]
        a, tc = acts[t], tcs[t]
        i, f, g, o = a
        c_prev = cs[order[k - 1]] if k else (c0 if c0 is not None else zeros)
        if compiled:
            cpu_fused.lstm_cell_backward(a, tc, c_prev, dh, dc, d_xproj[t])
            if k or need_h0:
                _mm_into(backend, d_xproj[t], w_hh, dh)
            continue
        xp.multiply(tc, tc, out=tmp)  # dc += dh * o * (1 - tanh(c)^2)
        xp.subtract(1, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        xp.subtract(1, a, out=ds)  # sigmoid' = s * (1 - s), for i, f, o
        ds *= a
        xp.multiply(dh, tc, out=dg[3])  # d_o
        dg[3] *= ds[3]
        xp.multiply(dc, g, out=dg[0])  # d_i
        xp.multiply(dc, c_prev, out=dg[1])  # d_f
        dg[:2] *= ds[:2]
        xp.multiply(g, g, out=tmp)  # d_g = dc * i * (1 - g^2)
        xp.subtract(1, tmp, out=tmp)
        xp.multiply(dc, i, out=dg[2])
        dg[2] *= tmp
        dc *= f
        d_xproj[t].reshape(B, 4, H)[...] = dg.transpose(1, 0, 2)
        if k or need_h0:
            _mm_into(backend, d_xproj[t], w_hh, dh)
    # d_w_hh = sum over steps of d_gates^T @ h_prev: the steps with an h_prev in `out` as one matmul
    first, rest = (0, slice(1, L)) if not reverse else (L - 1, slice(0, L - 1))
    h_prev = out[0 : L - 1] if not reverse else out[1:L]
    d_w = backend.matmul(d_xproj[rest].reshape(-1, G).T, h_prev.reshape(-1, H))
    if h0 is not None:
        d_w += backend.matmul(d_xproj[first].T, h0)
    return d_xproj, (dh if need_h0 else None), dc, d_w


class LSTMRecurrence(_Recurrence):
    """(xproj, h0, c0, w_hh) -> (L + 1, B, H): the hidden state at each position, then the last cell state."""

    def forward(self, xproj, h0, c0, w_hh, reverse):
        out, self.saved = _lstm_forward(self.device.backend, xproj, h0, c0, w_hh, reverse)
        return out

    def _recompute(self):
        xproj, h0, c0, w_hh, reverse = self.inputs
        return _lstm_scan(_TensorMath, xproj, h0, c0, w_hh, reverse)

    def backward(self, grad):
        xproj, h0_in, c0_in, w_hh, reverse = self.inputs
        if not GradMode.enabled:
            d_xproj, dh0, dc0, d_w = _lstm_backward(
                self.device.backend, grad.data, self.saved, None if h0_in is None else h0_in.data,
                None if c0_in is None else c0_in.data, w_hh.data, reverse, _needs(h0_in))
            return self._wrap((d_xproj, dh0, dc0 if _needs(c0_in) else None, d_w)) + (None,)
        # create_graph: the forward recomputed and differentiated with Tensor ops
        m, (hs, cs, acts, h0, c0), g = _TensorMath, self._recompute(), grad
        L = xproj.shape[0]
        order = _order(L, reverse)
        c_prev = _previous(cs, c0, reverse)
        dh, dc = None, g[L]
        d_gates = [None] * L
        for k, t in enumerate(reversed(order)):
            dh = g[t] if dh is None else g[t] + dh
            d_gates[t], dc = _lstm_step_back(m, dh, dc, acts[t], c_prev[t])
            if k < L - 1 or _needs(h0_in):
                dh = m.mm(d_gates[t], w_hh)
        d_xproj = m.stack(d_gates)
        four_h = d_xproj.shape[-1]
        h_prev = m.stack(_previous(hs, h0, reverse))
        d_w = m.mm(d_xproj.reshape(-1, four_h).T, h_prev.reshape(-1, h_prev.shape[-1]))
        dh0, dc0 = (dh if _needs(h0_in) else None), (dc if _needs(c0_in) else None)
        return self._wrap((d_xproj, dh0, dc0, d_w)) + (None,)


# --------------------------------------------------------------------------------------------- GRU
def _gru_step(m, xp_t, h, w_hh_t, b_hh):
    n = h.shape[-1]
    hh = m.mm(h, w_hh_t)  # (B, 3H)
    if b_hh is not None:
        hh = hh + b_hh
    rz = m.sigmoid(xp_t[:, : 2 * n] + hh[:, : 2 * n])
    r, z = rz[:, :n], rz[:, n:]
    hn = hh[:, 2 * n :]
    cand = m.tanh(xp_t[:, 2 * n :] + r * hn)
    return cand + z * (h - cand), (r, z, cand, hn)


def _gru_step_back(m, dh, acts, h_prev):
    """Gradients of the input-side and hidden-side pre-activations (B, 3H), and h_prev's direct share."""
    r, z, cand, hn = acts
    da_n = dh * (1 - z) * (1 - cand * cand)
    da_r = da_n * hn * r * (1 - r)
    da_z = dh * (h_prev - cand) * z * (1 - z)
    return m.cat([da_r, da_z, da_n]), m.cat([da_r, da_z, da_n * r]), dh * z


def _gru_scan(m, xproj, h0, w_hh, b_hh, reverse):
    h = h0 = _initial(m, h0, xproj, w_hh.shape[-1])
    w_hh_t = w_hh.T
    L = xproj.shape[0]
    hs, acts = [None] * L, [None] * L
    for t in _order(L, reverse):
        h, acts[t] = _gru_step(m, xproj[t], h, w_hh_t, b_hh)
        hs[t] = h
    return hs, acts, h0


class GRURecurrence(_Recurrence):
    """(xproj, h0, w_hh, b_hh) -> (L, B, H): the hidden state of every position. xproj includes b_ih only."""

    def forward(self, xproj, h0, w_hh, b_hh, reverse):
        m = _ArrayMath(self.device.backend)
        hs, acts, h0 = _gru_scan(m, xproj, h0, w_hh, b_hh, reverse)
        self.saved = (hs, acts, h0)
        return m.stack(hs).astype(xproj.dtype, copy=False)

    def _recompute(self):
        xproj, h0, w_hh, b_hh, reverse = self.inputs
        return _gru_scan(_TensorMath, xproj, h0, w_hh, b_hh, reverse)

    def backward(self, grad):
        xproj, h0_in, w_hh, b_hh, reverse = self.inputs
        m, (hs, acts, h0), g, w_hh = self._math(grad, w_hh)
        L = xproj.shape[0]
        h_prev = _previous(hs, h0, reverse)
        dh = None
        d_x, d_hh = [None] * L, [None] * L
        for k, t in enumerate(reversed(_order(L, reverse))):
            dh = g[t] if dh is None else g[t] + dh
            d_x[t], d_hh[t], direct = _gru_step_back(m, dh, acts[t], h_prev[t])
            if k < L - 1 or _needs(h0_in):
                dh = direct + m.mm(d_hh[t], w_hh)
        d_xproj, d_hh = m.stack(d_x), m.stack(d_hh)
        three_h = d_hh.shape[-1]
        d_hh = d_hh.reshape(-1, three_h)
        hp = m.stack(h_prev)
        d_w = m.mm(d_hh.T, hp.reshape(-1, hp.shape[-1]))
        d_b = m.sum_rows(d_hh) if _needs(b_hh) else None
        return self._wrap((d_xproj, dh if _needs(h0_in) else None, d_w, d_b)) + (None,)


# --------------------------------------------------------------------------------------------- Elman RNN
def _rnn_scan(m, xproj, h0, w_hh, relu, reverse):
    h = h0 = _initial(m, h0, xproj, w_hh.shape[-1])
    act = m.relu if relu else m.tanh
    w_hh_t = w_hh.T
    L = xproj.shape[0]
    hs = [None] * L
    for t in _order(L, reverse):
        h = hs[t] = act(xproj[t] + m.mm(h, w_hh_t))
    return hs, h0


class RNNRecurrence(_Recurrence):
    """(xproj, h0, w_hh) -> (L, B, H), h_t = tanh or relu(xproj_t + h_{t-1} @ W_hh^T), both biases in xproj"""

    def forward(self, xproj, h0, w_hh, relu, reverse):
        m = _ArrayMath(self.device.backend)
        hs, h0 = _rnn_scan(m, xproj, h0, w_hh, relu, reverse)
        self.saved = (hs, h0)
        return m.stack(hs).astype(xproj.dtype, copy=False)

    def _recompute(self):
        xproj, h0, w_hh, relu, reverse = self.inputs
        return _rnn_scan(_TensorMath, xproj, h0, w_hh, relu, reverse)

    def backward(self, grad):
        xproj, h0_in, w_hh, relu, reverse = self.inputs
        m, (hs, h0), g, w_hh = self._math(grad, w_hh)
        L = xproj.shape[0]
        dh = None
        d_a = [None] * L
        for k, t in enumerate(reversed(_order(L, reverse))):
            dh = g[t] if dh is None else g[t] + dh
            h = hs[t]
            d_a[t] = dh * (h > 0) if relu else dh * (1 - h * h)
            if k < L - 1 or _needs(h0_in):
                dh = m.mm(d_a[t], w_hh)
        d_xproj = m.stack(d_a)
        hp = m.stack(_previous(hs, h0, reverse))
        d_w = m.mm(d_xproj.reshape(-1, d_xproj.shape[-1]).T, hp.reshape(-1, hp.shape[-1]))
        return self._wrap((d_xproj, dh if _needs(h0_in) else None, d_w)) + (None, None)


# --------------------------------------------------------------------------------------------- public
def _check(op: str, xproj: Tensor, h0, w_hh: Tensor, gates: int) -> int:
    hidden = w_hh.shape[-1]
    if w_hh.shape != (gates * hidden, hidden):
        raise RuntimeError(f"{op}: w_hh must be ({gates} * hidden, hidden), got shape {w_hh.shape}")
    if xproj.ndim != 3 or xproj.shape[-1] != gates * hidden:
        raise RuntimeError(f"{op}: expected xproj of shape (L, B, {gates * hidden}), got {xproj.shape}")
    if xproj.shape[0] == 0:
        raise RuntimeError(f"{op}: expected a sequence of at least one step, got xproj {xproj.shape}")
    if h0 is not None and h0.shape != (xproj.shape[1], hidden):
        raise RuntimeError(f"{op}: expected an initial state of shape {(xproj.shape[1], hidden)}, "
                           f"got {h0.shape}")
    return hidden


def lstm_recurrence(xproj: Tensor, h0: Tensor | None, c0: Tensor | None, w_hh: Tensor, reverse: bool = False):
    """Run an LSTM over precomputed input projections: returns (output (L, B, H), h_n (B, H), c_n (B, H)).

    xproj = x @ W_ih^T + b_ih + b_hh for every step; gates in the order i, f, g, o.
    """
    xproj, h0, c0, w_hh = autocast_inputs("lstm", xproj, h0, c0, w_hh)
    _check("lstm", xproj, h0, w_hh, 4)
    if c0 is not None:
        _check("lstm", xproj, c0, w_hh, 4)
    L = xproj.shape[0]
    packed = LSTMRecurrence.apply(xproj, h0, c0, w_hh, bool(reverse))
    return packed[:L], packed[0 if reverse else L - 1], packed[L]


def gru_recurrence(xproj: Tensor, h0: Tensor | None, w_hh: Tensor, b_hh: Tensor | None = None,
                   reverse: bool = False):
    """Run a GRU over precomputed input projections (x @ W_ih^T + b_ih): (output (L, B, H), h_n (B, H)).

    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); gates in the order r, z, n.
    """
    xproj, h0, w_hh, b_hh = autocast_inputs("gru", xproj, h0, w_hh, b_hh)
    _check("gru", xproj, h0, w_hh, 3)
    out = GRURecurrence.apply(xproj, h0, w_hh, b_hh, bool(reverse))
    return out, out[0 if reverse else xproj.shape[0] - 1]


def rnn_recurrence(xproj: Tensor, h0: Tensor | None, w_hh: Tensor, nonlinearity: str = "tanh",
                   reverse: bool = False):
    """Run an Elman RNN over precomputed input projections (x @ W_ih^T + b_ih + b_hh): (output, h_n)."""
    xproj, h0, w_hh = autocast_inputs("rnn", xproj, h0, w_hh)
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn: unknown nonlinearity {nonlinearity!r}; select from 'tanh' or 'relu'")
    _check("rnn", xproj, h0, w_hh, 1)
    out = RNNRecurrence.apply(xproj, h0, w_hh, nonlinearity == "relu", bool(reverse))
    return out, out[0 if reverse else xproj.shape[0] - 1]
