"""Dropout: of elements (Dropout), and of whole channels (Dropout1d/2d/3d)."""

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


class _ChannelDropout(Dropout):
    """Whole channels zeroed: one Bernoulli draw per (sample, channel), the same for every position, the kept
    channels scaled by 1/(1-p) (F.dropout over a (N, C, 1, ...) mask)."""

    spatial = 1

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        name = type(self).__name__
        if x.ndim not in (self.spatial + 1, self.spatial + 2):
            raise RuntimeError(f"{name}: expected a ({self.spatial + 1} or {self.spatial + 2})-d input (N, C, ...) or "
                               f"(C, ...), got shape {x.shape}")
        batched = x.ndim == self.spatial + 2
        keep = x.shape[:2] if batched else x.shape[:1]
        mask = dropout(x.new_ones(keep), self.p, True)
        return x * mask.reshape(*keep, *([1] * self.spatial))


class Dropout1d(_ChannelDropout):
    """Channel dropout for (N, C, L) or (C, L)."""

    spatial = 1


class Dropout2d(_ChannelDropout):
    """Channel dropout for (N, C, H, W) or (C, H, W)."""

    spatial = 2


class Dropout3d(_ChannelDropout):
    """Channel dropout for (N, C, D, H, W) or (C, D, H, W)."""

    spatial = 3
