"""Kernels of CPUBackend on NumPy arrays, each run on one piece of its input (CPUBackend cuts the input into
cache-sized pieces and spreads them over the cores): GELU forward and backward (ops.elementwise.Gelu calls
the backend's instead of its composed NumPy form), LayerNorm forward and backward over the last axis
(ops.nn.LayerNorm's).

GELU's tanh approximation is computed as x * sigmoid(2u), u = C (x + K x^3), which equals 0.5 x (1 + tanh(u)):
one exp instead of NumPy's tanh, which is about 1.5x slower on float32. Forward keeps s = sigmoid(2u) (or
Phi(x) for the erf form) for backward, d/dx = s + x s (1 - s) 2u' (or Phi(x) + x phi(x)): a saved array
costs one pass in forward and saves backward the exp (or erf) and its five passes (measured 25% off the pair).
"""

from __future__ import annotations

import math

import numpy as np

_C = math.sqrt(2.0 / math.pi)
_K = 0.044715
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu(x: np.ndarray, approximate: str, out: np.ndarray, saved: np.ndarray) -> None:
    """out = gelu(x) of a float32/float64 array (tanh approximation or exact, erf), and saved = what
    gelu_backward takes: sigmoid(2u) (tanh) or Phi(x) (erf); both written in place (no copies of a piece).
    float32's tanh form runs compiled (cpu_fused.py, 3x faster)."""
    if approximate == "tanh" and takes_compiled(x, out, saved):
        from . import cpu_fused

        cpu_fused.gelu_tanh(x, out, saved)
    elif approximate == "tanh":
        _exp_minus_2u(x, out=saved)
        saved += 1
        np.divide(1, saved, out=saved)  # sigmoid(2u); very negative x: 1 / inf = 0
    else:
        _cdf(x, out=saved)
    np.multiply(x, saved, out=out)


def gelu_backward(g: np.ndarray, x: np.ndarray, saved: np.ndarray, approximate: str, out: np.ndarray) -> None:
    """out = g * gelu'(x), from x and what gelu kept (saved); out may be g (written over)."""
    if approximate == "tanh" and takes_compiled(g, x, saved, out):
        from . import cpu_fused

        cpu_fused.gelu_tanh_backward(g, x, saved, None if out is g else out)
        return
    d = np.multiply(x, x, out=out if out is not g else None)
    if approximate == "tanh":
        d *= 6 * _C * _K
        d += 2 * _C  # 2u'
        d *= x
        d *= np.subtract(1, saved)
        d *= saved
        d += saved
    else:
        d *= -0.5  # Phi(x) + x phi(x)
        np.exp(d, out=d)
        d *= _INV_SQRT_2PI
        d *= x
        d += saved
    d *= g
    if d is not out:
        out[...] = d


def takes_compiled(*arrays) -> bool:
    """Whether cpu_fused's kernels take these arrays (None for an absent one): NumPy, float32, contiguous
    (float64 stays on NumPy's forms, exact to its rounding for the finite-difference checks; CuPy arrays on
    the CUDA backend's kernels). Every caller of cpu_fused asks here."""
    return all(a is None or (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous)
               for a in arrays)


def _exp_minus_2u(x, out):
    """exp(-2 C (x + K x^3)) into out; inf for very negative x, which gelu's division turns into 0."""
    e = np.multiply(x, x, out=out)
    e *= -2 * _C * _K
    e -= 2 * _C
    e *= x
    with np.errstate(over="ignore"):
        np.exp(e, out=e)


def _cdf(x, out):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2 into out."""
    from scipy.special import erf  # NOTE: NumPy has no erf; SciPy's is exact to float64 rounding

    np.multiply(x, 1 / math.sqrt(2.0), out=out)
    erf(out, out=out)
    out += 1
    out *= 0.5


def layer_norm_rows(x, weight, bias, eps: float, out, xhat, rstd) -> None:
    """out = xhat * weight + bias, xhat = (x - mean) * rstd, for rows x (n, C), writing xhat (kept for backward,
    which then skips recomputing it) and rstd (n, 1) too. Row sums by einsum: a few times faster than NumPy's
    sum over short rows, and no BLAS call (which could start threads of its own inside a piece). float32 runs
    compiled (cpu_fused.py)."""
    if takes_compiled(x, weight, bias, out, xhat, rstd):
        from . import cpu_fused

        cpu_fused.layer_norm_rows(x, weight, bias, eps, out, None if xhat is out else xhat, rstd)
        return
    inv_c = 1.0 / x.shape[-1]
    m = np.einsum("ij->i", x)[:, None]
    m *= inv_c
    d = np.subtract(x, m, out=xhat)
    var = np.einsum("ij,ij->i", d, d)[:, None]
    var *= inv_c
    var += eps
    np.sqrt(var, out=var)
    np.divide(1.0, var, out=var)
    rstd[...] = var
    d *= var
    if weight is not None:
        np.multiply(d, weight, out=out)
    elif out is not d:
        out[...] = d
    if bias is not None:
        out += bias


def layer_norm_backward_rows(g, xhat, weight, rstd, dx, sums) -> None:
    """dx = rstd (gxhat - mean(gxhat) - xhat mean(gxhat xhat)), gxhat = g * weight, for rows (n, C) of forward's
    xhat; adds the column sums of g * xhat and of g (the weight's and bias's gradients) into sums (2, C) unless
    sums is None (no affine part). float32 runs compiled (cpu_fused.py)."""
    if takes_compiled(g, xhat, weight, rstd, dx, sums):
        from . import cpu_fused

        cpu_fused.layer_norm_backward_rows(g, xhat, weight, rstd, None if dx is g else dx, sums)
        return
    inv_c = 1.0 / xhat.shape[-1]
    gxhat = g if weight is None else g * weight
    if sums is not None:
        sums[0] += np.einsum("ij,ij->j", g, xhat)
        sums[1] += np.einsum("ij->j", g)
    m1 = np.einsum("ij->i", gxhat)[:, None]
    m1 *= inv_c
    m2 = np.einsum("ij,ij->i", gxhat, xhat)[:, None]
    m2 *= inv_c
    np.subtract(gxhat, m1, out=dx)
    t = np.multiply(xhat, m2)
    dx -= t
    dx *= rstd


def cross_entropy_rows(x, t, ignore_index: int, smoothing: float, loss, lse) -> None:
    """Per row of logits x (n, C) and class indices t (n,): lse = logsumexp(x) and loss = lse - (1 - eps) x_t -
    eps mean(x) (0 where t is ignore_index), written into loss and lse (n,)."""
    m = x.max(axis=1)
    e = np.subtract(x, m[:, None])
    np.exp(e, out=e)
    np.log(np.einsum("ij->i", e), out=lse)
    lse += m
    valid = t != ignore_index
    picked = np.take_along_axis(x, np.where(valid, t, 0)[:, None], axis=1)[:, 0]
    np.subtract(lse, picked if smoothing == 0 else (1 - smoothing) * picked + smoothing * x.mean(axis=1), out=loss)
    loss[~valid] = 0


def cross_entropy_backward_rows(x, t, lse, g, ignore_index: int, smoothing: float, dx) -> None:
    """dx = g * (softmax(x) - (1 - eps) onehot(t) - eps / C) per row (0 where t is ignore_index); g (n,) or
    a number."""
    np.subtract(x, lse[:, None], out=dx)
    np.exp(dx, out=dx)
    if smoothing:
        dx -= smoothing / x.shape[1]
    valid = t != ignore_index
    rows = np.flatnonzero(valid)
    dx[rows, t[rows]] -= 1 - smoothing
    dx *= np.where(valid, g, 0)[:, None].astype(dx.dtype, copy=False)  # ignored rows 0, even where g is nan
