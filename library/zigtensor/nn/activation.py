"""Activations as modules: ReLU, GELU, SiLU, Tanh, Sigmoid, LeakyReLU, Softmax and LogSoftmax.

inplace=True is accepted where PyTorch has it, and the result is a new tensor all the same (autograd needs the
input); it only shows in the repr.
"""

from __future__ import annotations

from ..ops.elementwise import gelu, leaky_relu, relu, sigmoid, silu, tanh
from ..ops.nn import log_softmax, softmax
from ._args import check_float
from .module import Module


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
