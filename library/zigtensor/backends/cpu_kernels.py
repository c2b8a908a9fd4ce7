"""Kernels of CPUBackend on NumPy arrays, each run on one piece of its input (CPUBackend cuts the input into
cache-sized pieces and spreads them over the cores): GELU forward and backward (ops.elementwise.Gelu calls
the backend's instead of its composed NumPy form), LayerNorm forward and backward over the last axis
(ops.nn.LayerNorm's).

GELU's tanh approximation is computed as x * sigmoid(2u), u = C (x + K x^3), which equals 0.5 x (1 + tanh(u)):
one exp instead of NumPy's tanh, which is about 1.5x slower on float32. Backward recomputes sigmoid(2u) from
x (the backend interface keeps nothing between the two), d/dx = s + x s (1 - s) 2u', s = sigmoid(2u).
"""

from __future__ import annotations

import math

import numpy as np

_C = math.sqrt(2.0 / math.pi)
_K = 0.044715
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    """gelu(x) of a float32/float64 array, tanh approximation or exact (erf)."""
    if approximate == "tanh":
        e = _exp_minus_2u(x)
        e += 1
        return np.divide(x, e, out=e)  # x / (1 + exp(-2u)) = x sigmoid(2u)
    cdf = _cdf(x)
    cdf *= x
    return cdf


def gelu_backward(g: np.ndarray, x: np.ndarray, approximate: str) -> np.ndarray:
    """g * gelu'(x)."""
    if approximate == "tanh":
        s = _exp_minus_2u(x)
        s += 1
        np.divide(1, s, out=s)  # sigmoid(2u)
        d = x * x
        d *= 6 * _C * _K
        d += 2 * _C  # 2u'
        d *= x
        d *= np.subtract(1, s)
        d *= s
        d += s
    else:
        d = x * x  # Phi(x) + x phi(x)
        d *= -0.5
        np.exp(d, out=d)
        d *= _INV_SQRT_2PI
        d *= x
        d += _cdf(x)
    d *= g
    return d


def _exp_minus_2u(x):
    """exp(-2 C (x + K x^3)); inf for very negative x, which gelu's division turns into -0."""
    e = x * x
    e *= -2 * _C * _K
    e -= 2 * _C
    e *= x
    with np.errstate(over="ignore"):
        return np.exp(e, out=e)


def _cdf(x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    from scipy.special import erf  # NOTE: NumPy has no erf; SciPy's is exact to float64 rounding

    cdf = erf(x * (1 / math.sqrt(2.0)))
    cdf += 1
    cdf *= 0.5
    return cdf


def layer_norm_rows(x, weight, bias, eps: float, out, mean, rstd) -> None:
    """out = (x - mean) * rstd * weight + bias for rows x (n, C), writing mean and rstd (n, 1) too.
    Row sums by einsum: a few times faster than NumPy's sum over short rows, and no BLAS call (which could
    start threads of its own inside a piece)."""
    inv_c = 1.0 / x.shape[-1]
    m = np.einsum("ij->i", x)[:, None]
    m *= inv_c
    mean[...] = m
    d = np.subtract(x, m, out=out)
    var = np.einsum("ij,ij->i", d, d)[:, None]
    var *= inv_c
    var += eps
    np.sqrt(var, out=var)
    np.divide(1.0, var, out=var)
    rstd[...] = var
    d *= var
    if weight is not None:
        d *= weight
    if bias is not None:
        d += bias


def layer_norm_backward_rows(g, x, weight, mean, rstd, dx, sums) -> None:
    """dx = rstd (gxhat - mean(gxhat) - xhat mean(gxhat xhat)), gxhat = g * weight, for rows (n, C); adds
    the column sums of g * xhat and of g (the weight's and bias's gradients) into sums (2, C)."""
    inv_c = 1.0 / x.shape[-1]
    xhat = np.subtract(x, mean)
    xhat *= rstd
    gxhat = g if weight is None else g * weight
    sums[0] += np.einsum("ij,ij->j", g, xhat)
    sums[1] += np.einsum("ij->j", g)
    m1 = np.einsum("ij->i", gxhat)[:, None]
    m1 *= inv_c
    m2 = np.einsum("ij,ij->i", gxhat, xhat)[:, None]
    m2 *= inv_c
    np.subtract(gxhat, m1, out=dx)
    xhat *= m2
    dx -= xhat
    dx *= rstd
