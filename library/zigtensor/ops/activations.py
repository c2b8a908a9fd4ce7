"""More activations, composed from the elementwise ops (so autograd and every device come with them): softplus,
elu, selu, mish, hardswish, hardsigmoid, relu6, softsign, logsigmoid, with PyTorch's definitions and arguments.

Where a formula has an exp that could overflow in the branch `where` discards, its input is clamped first: a
discarded inf would still turn the gradient into nan (0 * inf).
"""

from __future__ import annotations

from .common import to_float
from .elementwise import abs, clamp, exp, log1p, tanh, where

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def softplus(x, beta: float = 1.0, threshold: float = 20.0):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (where the two agree in float)."""
    x = to_float(x)
    bx = x * beta
    return where(bx > threshold, x, log1p(exp(clamp(bx, max=threshold))) / beta)


def elu(x, alpha: float = 1.0):
    """x for x > 0, alpha (exp(x) - 1) otherwise."""
    x = to_float(x)
    return where(x > 0, x, (exp(clamp(x, max=0.0)) - 1) * alpha)


def selu(x):
    """scale * elu(x, alpha) with the self-normalizing constants of Klambauer et al."""
    return elu(x, SELU_ALPHA) * SELU_SCALE


def mish(x):
    """x tanh(softplus(x))."""
    x = to_float(x)
    return x * tanh(softplus(x))


def relu6(x):
    """min(max(x, 0), 6)."""
    return clamp(x, 0.0, 6.0)


def hardsigmoid(x):
    """relu6(x + 3) / 6: 0 below -3, 1 above 3, linear between."""
    return relu6(to_float(x) + 3.0) / 6.0


def hardswish(x):
    """x * relu6(x + 3) / 6 (MobileNetV3)."""
    x = to_float(x)
    return x * hardsigmoid(x)


def softsign(x):
    """x / (1 + |x|)."""
    x = to_float(x)
    return x / (abs(x) + 1.0)


def logsigmoid(x):
    """log(sigmoid(x)) = min(x, 0) - log(1 + exp(-|x|)): exact and finite for any x."""
    x = to_float(x)
    return clamp(x, max=0.0) - log1p(exp(-abs(x)))
