"""Activations as modules: ReLU, GELU, SiLU, Tanh, Sigmoid, LeakyReLU, Softmax and LogSoftmax, and those of
ops/activations.py (Softplus, ELU, SELU, Mish, ReLU6, Hardsigmoid, Hardswish, Softsign, LogSigmoid), and PReLU
(a learned negative slope).

inplace=True is accepted where PyTorch has it, and the result is a new tensor all the same (autograd needs the
input); it only shows in the repr.
"""

from __future__ import annotations

from ..ops import activations as act
from ..ops.elementwise import gelu, leaky_relu, relu, sigmoid, silu, tanh
from ..ops.nn import log_softmax, softmax
from ._args import check_float
from .module import Module, Parameter


class ReLU(Module):
    """y = max(x, 0).

    Args:
        inplace (bool): accepted for PyTorch compatibility (see the module docstring). Default: False.
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, x):
        return relu(x)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class GELU(Module):
    """y = x * Phi(x), Phi the standard normal CDF; approximate='tanh' uses
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    Args:
        approximate (str): 'none' or 'tanh'. Default: 'none'.
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """y = x * sigmoid(x) (swish).

    Args:
        inplace (bool): accepted for PyTorch compatibility. Default: False.
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, x):
        return silu(x)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Tanh(Module):
    """y = tanh(x)."""

    def forward(self, x):
        return tanh(x)


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x))."""

    def forward(self, x):
        return sigmoid(x)


class LeakyReLU(Module):
    """y = x if x > 0 else negative_slope * x.

    Args:
        negative_slope (float): slope for negative inputs. Default: 0.01.
        inplace (bool): accepted for PyTorch compatibility. Default: False.
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        check_float("LeakyReLU", "negative_slope", negative_slope)
        self.negative_slope = negative_slope
        self.inplace = bool(inplace)

    def forward(self, x):
        return leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class Softmax(Module):
    """y_i = exp(x_i) / sum_j exp(x_j) along dim.

    Args:
        dim (int): the dim that sums to one (required at call time, as implicit dims are deprecated).
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """y_i = x_i - log sum_j exp(x_j) along dim.

    Args:
        dim (int): the dim to normalize over.
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return log_softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softplus(Module):
    """y = log(1 + exp(beta x)) / beta, and x where beta x > threshold.

    Args:
        beta (float): sharpness. Default: 1.
        threshold (float): above it (in beta x) the function is linear. Default: 20.
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = check_float("Softplus", "beta", beta)
        if self.beta == 0:
            raise ValueError("Softplus: beta must be non-zero, got 0")
        self.threshold = check_float("Softplus", "threshold", threshold)

    def forward(self, x):
        return act.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class ELU(Module):
    """y = x if x > 0 else alpha (exp(x) - 1).

    Args:
        alpha (float): the value y approaches for large negative x, negated. Default: 1.
        inplace (bool): accepted for PyTorch compatibility. Default: False.
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = check_float("ELU", "alpha", alpha)
        self.inplace = bool(inplace)

    def forward(self, x):
        return act.elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class _Plain(Module):
    """An activation without arguments (inplace accepted where PyTorch has it): `fn` applied to the input."""

    fn = None

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, x):
        return type(self).fn(x)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class SELU(_Plain):
    """y = scale * ELU(x, alpha), scale 1.0507 and alpha 1.6733 (self-normalizing networks)."""

    fn = act.selu


class Mish(_Plain):
    """y = x tanh(softplus(x))."""

    fn = act.mish


class ReLU6(_Plain):
    """y = min(max(x, 0), 6)."""

    fn = act.relu6


class Hardsigmoid(_Plain):
    """y = relu6(x + 3) / 6."""

    fn = act.hardsigmoid


class Hardswish(_Plain):
    """y = x relu6(x + 3) / 6."""

    fn = act.hardswish


class Softsign(Module):
    """y = x / (1 + |x|)."""

    def forward(self, x):
        return act.softsign(x)


class LogSigmoid(Module):
    """y = log(sigmoid(x)), stable for any x."""

    def forward(self, x):
        return act.logsigmoid(x)


class PReLU(Module):
    """y = x if x > 0 else a * x with a learned slope a: one for all channels, or one per channel (dim 1).

    Args:
        num_parameters (int): 1, or the number of channels. Default: 1.
        init (float): the slopes' first value. Default: 0.25.
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
        from ..creation import full
        from ._args import check_int

        super().__init__()
        self.num_parameters = check_int("PReLU", "num_parameters", num_parameters)
        self.weight = Parameter(full((self.num_parameters,), check_float("PReLU", "init", init), dtype=dtype,
                                     device=device))

    def forward(self, x):
        from ..ops.elementwise import where

        a = self.weight
        if self.num_parameters > 1:
            if x.ndim < 2 or x.shape[1] != self.num_parameters:
                raise RuntimeError(f"PReLU: {self.num_parameters} slopes for input of shape {x.shape} (dim 1 must "
                                   f"have {self.num_parameters} channels)")
            a = a.reshape(-1, *([1] * (x.ndim - 2)))
        return where(x > 0, x, x * a)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class Hardtanh(Module):
    """y = min(max(x, min_val), max_val)."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        self.min_val = check_float("Hardtanh", "min_val", min_val)
        self.max_val = check_float("Hardtanh", "max_val", max_val)
        if self.max_val <= self.min_val:
            raise ValueError(f"Hardtanh: max_val ({max_val}) must be greater than min_val ({min_val})")
        self.inplace = bool(inplace)

    def forward(self, x):
        from ..ops.elementwise import clamp

        return clamp(x, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}" + (", inplace=True" if self.inplace else "")


class Threshold(Module):
    """y = x where x > threshold, else value."""

    def __init__(self, threshold: float, value: float, inplace: bool = False):
        super().__init__()
        self.threshold = check_float("Threshold", "threshold", threshold)
        self.value = check_float("Threshold", "value", value)
        self.inplace = bool(inplace)

    def forward(self, x):
        from ..ops.elementwise import where

        return where(x > self.threshold, x, self.value)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, value={self.value}" + (", inplace=True" if self.inplace else "")


class GLU(Module):
    """a * sigmoid(b) for the two halves a, b of dim (gated linear unit)."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        if x.shape[self.dim] % 2:
            raise RuntimeError(f"GLU: dim {self.dim} must have an even size, got {x.shape[self.dim]}")
        a, b = x.chunk(2, self.dim)
        return a * b.sigmoid()

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmin(Module):
    """softmax(-x) along dim."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return softmax(-x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
