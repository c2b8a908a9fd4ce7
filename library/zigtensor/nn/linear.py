"""Linear and Identity."""

from __future__ import annotations

import math

from ..creation import empty
from ..ops.nn import linear
from . import init
from ._args import check_int
from .module import Module, Parameter


class Identity(Module):
    """y = x. Takes (and ignores) any constructor arguments, so it can stand in for another layer.

    >>> nn.Identity(54, unused="x")(zt.ones(2)).shape
    (2,)
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Linear(Module):
    """y = x @ W^T + b.

    Args:
        in_features (int): size of the input's last dim.
        out_features (int): size of the output's last dim.
        bias (bool): learn an additive bias b. Default: True.
        device, dtype: where and as what the parameters are made. Default: the default device and dtype.

    W (out_features, in_features) and b (out_features,) are drawn from U(-1/sqrt(in_features),
    1/sqrt(in_features)): PyTorch's kaiming_uniform_(a=sqrt(5)) and its bias rule.

    >>> nn.Linear(4, 8)(zt.randn(2, 4)).shape
    (2, 8)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_features = check_int("Linear", "in_features", in_features, 0)
        self.out_features = check_int("Linear", "out_features", out_features, 0)
        self.weight = Parameter(empty(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={bias}"
