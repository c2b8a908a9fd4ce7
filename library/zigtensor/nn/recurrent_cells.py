"""One step of a recurrent layer: RNNCell, LSTMCell and GRUCell, as PyTorch's (parameter names, shapes, gate
order i, f, g, o / r, z, n, and initialization), written with the ops autograd knows, so every device has them.

    cell = nn.LSTMCell(10, 20)
    h, c = cell(x_t, (h, c))            # x_t (batch, 10) or (10,); the state defaults to zeros
"""

from __future__ import annotations

import math

from ..creation import empty, zeros
from ..tensor import Tensor
from . import functional as F
from . import init
from ._args import check_int
from .module import Module, Parameter


class _CellBase(Module):
    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        self.input_size = check_int(name, "input_size", input_size)
        self.hidden_size = check_int(name, "hidden_size", hidden_size)
        self.bias = bool(bias)
        g = self.gates * self.hidden_size
        self.weight_ih = Parameter(empty(g, self.input_size, dtype=dtype, device=device))
        self.weight_hh = Parameter(empty(g, self.hidden_size, dtype=dtype, device=device))
        if self.bias:
            self.bias_ih = Parameter(empty(g, dtype=dtype, device=device))
            self.bias_hh = Parameter(empty(g, dtype=dtype, device=device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias from uniform(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as PyTorch does."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _input(self, x: Tensor) -> tuple[Tensor, bool]:
        if not isinstance(x, Tensor) or x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: expected input of shape (batch, {self.input_size}) or "
                             f"({self.input_size},), got {getattr(x, 'shape', type(x).__name__)}")
        return (x.unsqueeze(0), True) if x.ndim == 1 else (x, False)

    def _state(self, h, x: Tensor, unbatched: bool) -> Tensor:
        if h is None:
            return zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
        h = h.unsqueeze(0) if unbatched else h
        if h.shape != (x.shape[0], self.hidden_size):
            raise ValueError(f"{type(self).__name__}: expected a state of shape ({x.shape[0]}, {self.hidden_size}), "
                             f"got {h.shape if not unbatched else h.shape[1:]}")
        return h

    def _projections(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return F.linear(x, self.weight_ih, self.bias_ih), F.linear(h, self.weight_hh, self.bias_hh)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(_CellBase):
    """h' = nonlinearity(W_ih x + b_ih + W_hh h + b_hh), nonlinearity 'tanh' or 'relu'."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        x, unbatched = self._input(x)
        xi, hh = self._projections(x, self._state(h, x, unbatched))
        out = (xi + hh).tanh() if self.nonlinearity == "tanh" else (xi + hh).relu()
        return out.squeeze(0) if unbatched else out

    def extra_repr(self) -> str:
        return super().extra_repr() + (", nonlinearity=relu" if self.nonlinearity == "relu" else "")


class LSTMCell(_CellBase):
    """(h', c') from gates i, f, g, o: c' = f c + i g, h' = o tanh(c')."""

    gates = 4

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        x, unbatched = self._input(x)
        h, c = (None, None) if state is None else state
        h, c = self._state(h, x, unbatched), self._state(c, x, unbatched)
        xi, hh = self._projections(x, h)
        i, f, g, o = (xi + hh).chunk(4, 1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)


class GRUCell(_CellBase):
    """h' = (1 - z) n + z h, n = tanh(W_in x + b_in + r (W_hn h + b_hn)), r and z sigmoid gates."""

    gates = 3

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        x, unbatched = self._input(x)
        h = self._state(h, x, unbatched)
        xi, hh = self._projections(x, h)
        xr, xz, xn = xi.chunk(3, 1)
        hr, hz, hn = hh.chunk(3, 1)
        r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
        n = (xn + r * hn).tanh()
        out = (1 - z) * n + z * h
        return out.squeeze(0) if unbatched else out
