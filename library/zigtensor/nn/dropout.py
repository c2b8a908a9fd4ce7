"""Dropout."""

from __future__ import annotations

from ..ops.nn import dropout
from ._args import check_float
from .module import Module


class Dropout(Module):
    """y = x * m / (1 - p) with m ~ Bernoulli(1 - p) per element in training; y = x in eval mode.

    Args:
        p (float): probability of zeroing an element, in [0, 1]. Default: 0.5.
        inplace (bool): accepted for PyTorch compatibility; the result is always a new tensor (autograd
            needs the input). Default: False.

    >>> nn.Dropout(0.1).eval()(zt.ones(3)).tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        try:
            check_float("Dropout", "p", p, 0.0, 1.0)
        except ValueError:
            raise ValueError(f"Dropout: dropout probability has to be between 0 and 1, "
                             f"but got {p!r}") from None
        self.p = p
        self.inplace = bool(inplace)

    def forward(self, x):
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
