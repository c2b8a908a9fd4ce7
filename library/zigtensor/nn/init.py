"""Parameter initialization, in place and outside the graph, drawing from the framework RNG.

Each function mirrors torch.nn.init (same names, arguments, fan and gain rules) and returns its tensor.
"""

from __future__ import annotations

import contextlib
import math

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor


class _Skip:
    active = False


@contextlib.contextmanager
def skip_init():
    """Inside, every init function leaves its tensor as it is (uninitialized memory from zt.empty): for building
    a model whose parameters a checkpoint then replaces, without drawing (and paging in) values thrown away.

    >>> with nn.init.skip_init():
    ...     model = Transformer(config)          # then load every weight
    """
    previous, _Skip.active = _Skip.active, True
    try:
        yield
    finally:
        _Skip.active = previous


def calculate_gain(nonlinearity: str, param=None) -> float:
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
              "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"calculate_gain: negative_slope {slope!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(t: Tensor) -> tuple[int, int]:
    if t.ndim < 2:
        raise ValueError(f"fan in and fan out can not be computed for a tensor with fewer than 2 dimensions "
                         f"(shape {t.shape})")
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def _fan(t: Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode {mode!r} not supported, use 'fan_in' or 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return fan_in if mode == "fan_in" else fan_out


@no_grad()
def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    return t if _Skip.active else t.uniform_(a, b)


@no_grad()
def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    return t if _Skip.active else t.normal_(mean, std)


@no_grad()
def constant_(t: Tensor, val: float) -> Tensor:
    return t if _Skip.active else t.fill_(val)


def zeros_(t: Tensor) -> Tensor:
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    return constant_(t, 1.0)


def xavier_uniform_(t: Tensor, gain: float = 1.0) -> Tensor:
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)


def xavier_normal_(t: Tensor, gain: float = 1.0) -> Tensor:
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    if 0 in t.shape:
        return t
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(t, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(t, -bound, bound)


def kaiming_normal_(t: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    if 0 in t.shape:
        return t
    return normal_(t, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(t, mode)))


@no_grad()
def trunc_normal_(t: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Tensor:
    """Normal(mean, std) restricted to [a, b], by redrawing the values that fall outside."""
    if not a < b:
        raise ValueError(f"trunc_normal_: expected a < b, got a={a}, b={b}")
    if std <= 0:
        raise ValueError(f"trunc_normal_: expected std > 0, got {std}")
    if _Skip.active:
        return t
    lo, hi = (a - mean) / std, (b - mean) / std
    if hi < -6 or lo > 6:
        raise ValueError(f"trunc_normal_: [a, b] = [{a}, {b}] lies too far in the tail of N({mean}, {std}^2)")
    xp, backend = t.device.backend.xp, t.device.backend
    values = backend.randn(t.shape, t.dtype.np).astype("float64")
    bad = (values < lo) | (values > hi)
    while bad.any():
        values[bad] = backend.randn((int(bad.sum()),), "float64")
        bad = (values < lo) | (values > hi)
    t.data[...] = xp.asarray(values * std + mean, dtype=t.dtype.np)
    t._version += 1
    return t
