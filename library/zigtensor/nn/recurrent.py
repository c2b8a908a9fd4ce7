"""Recurrent layers: RNN (Elman, tanh or relu), LSTM and GRU, stacked and optionally bidirectional.

Parameter names, shapes, gate order and initialization follow PyTorch, so state dicts load both ways.
Each layer and direction projects the whole input sequence with one matmul and runs the recurrence as one
op (zigtensor.ops.recurrent), which keeps the per-step work to one gate matmul and a few array ops.
"""

from __future__ import annotations

import math
import warnings

from ..creation import empty
from ..ops.recurrent import gru_recurrence, lstm_recurrence, rnn_recurrence
from ..ops.shape import cat, stack
from ..tensor import Tensor
from . import functional as F
from . import init
from ._args import check_float, check_int
from .module import Module, Parameter


class RNNBase(Module):
    """What RNN, LSTM and GRU share: parameters per layer and direction, argument checks, stacking."""

    gates = 1  # gate blocks stacked in the weights: RNN 1, LSTM 4 (i, f, g, o), GRU 3 (r, z, n)
    n_states = 1  # initial states: h0, or (h0, c0) for the LSTM

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        input_size = check_int(name, "input_size", input_size)
        hidden_size = check_int(name, "hidden_size", hidden_size)
        num_layers = check_int(name, "num_layers", num_layers)
        dropout = check_float(name, "dropout", dropout, 0.0, 1.0)
        if proj_size:
            raise NotImplementedError(f"{name}: proj_size={proj_size} (LSTM projections) is not supported")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout={dropout} has no effect with num_layers=1 (dropout is applied "
                          "between layers, never after the last one)", stacklevel=2)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout = float(dropout)
        self.proj_size = 0
        directions = 2 if bidirectional else 1
        g = self.gates * hidden_size
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * directions
            for direction in range(directions):
                sfx = _suffix(layer, direction)
                setattr(self, "weight_ih" + sfx, Parameter(empty(g, layer_in, dtype=dtype, device=device)))
                setattr(self, "weight_hh" + sfx, Parameter(empty(g, hidden_size, dtype=dtype, device=device)))
                if self.bias:
                    setattr(self, "bias_ih" + sfx, Parameter(empty(g, dtype=dtype, device=device)))
                    setattr(self, "bias_hh" + sfx, Parameter(empty(g, dtype=dtype, device=device)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias from uniform(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as PyTorch does."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def flatten_parameters(self) -> None:
        """Kept for PyTorch compatibility (cuDNN weight packing); nothing to do here."""

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def all_weights(self) -> list:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if self.bias else ("weight_ih", "weight_hh")
        return [[getattr(self, n + _suffix(layer, d)) for n in names]
                for layer in range(self.num_layers) for d in range(self.num_directions)]

    # ------------------------------------------------------------------------------------------ forward
    def _run_layer(self, x: Tensor, states: list, sfx: str, reverse: bool):
        """One layer in one direction over x (L, B, In): (output (L, B, H), [final states (B, H)])."""
        raise NotImplementedError

    def _params(self, sfx: str):
        p = self._parameters
        if self.bias:
            return p["weight_ih" + sfx], p["weight_hh" + sfx], p["bias_ih" + sfx], p["bias_hh" + sfx]
        return p["weight_ih" + sfx], p["weight_hh" + sfx], None, None

    @staticmethod
    def _project(x: Tensor, w_ih: Tensor, bias) -> Tensor:
        L, B, n_in = x.shape
        # NOTE: (L*B, In) @ (In, G*H) as one 2-d matmul; a batched 3-d one would sum weight gradients per step
        return F.linear(x.reshape(L * B, n_in), w_ih, bias).reshape(L, B, w_ih.shape[0])

    def _check_input(self, x) -> bool:
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected input to be a Tensor, got {type(x).__name__}")
        if x.ndim not in (2, 3):
            raise ValueError(f"{name}: expected input of 2 (L, H_in) or 3 dims (L, N, H_in) "
                             f"{'(N, L, H_in) ' if self.batch_first else ''}, got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {x.shape[-1]} (input of shape {x.shape})")
        if x.shape[1 if x.ndim == 3 and self.batch_first else 0] == 0:
            raise RuntimeError(f"{name}: expected a sequence of at least one step, got input of shape "
                               f"{x.shape}")
        return x.ndim == 3

    def _check_state(self, h, which: str, batched: bool, batch: int) -> Tensor:
        name = type(self).__name__
        if not isinstance(h, Tensor):
            raise TypeError(f"{name}: expected {which} to be a Tensor, got {type(h).__name__}")
        lead = self.num_layers * self.num_directions
        if batched:
            if h.ndim != 3:
                raise RuntimeError(f"{name}: for batched 3-D input, {which} should also be 3-D but got a "
                                   f"{h.ndim}-D tensor of shape {h.shape}")
            expected = (lead, batch, self.hidden_size)
        else:
            if h.ndim != 2:
                raise RuntimeError(f"{name}: for unbatched 2-D input, {which} should also be 2-D but got a "
                                   f"{h.ndim}-D tensor of shape {h.shape}")
            expected = (lead, self.hidden_size)
        if h.shape != expected:
            raise RuntimeError(f"{name}: expected {which} of size {expected}, got {h.shape}")
        return h if batched else h.unsqueeze(1)

    def _forward(self, input: Tensor, hx):
        """input and a list of n_states initial states (or None): (output, [final states])."""
        batched = self._check_input(input)
        if not batched:
            x = input.unsqueeze(1)
        elif self.batch_first:
            x = input.transpose(0, 1)
        else:
            x = input
        B = x.shape[1]
        names = ["hx"] if self.n_states == 1 else ["h_0", "c_0"]
        init_states = [None] * self.n_states if hx is None else \
            [self._check_state(h, n, batched, B) for h, n in zip(hx, names)]
        finals = [[] for _ in range(self.n_states)]
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                idx = layer * self.num_directions + d
                states = [None if h is None else h[idx] for h in init_states]
                out, last = self._run_layer(x, states, _suffix(layer, d), reverse=d == 1)
                outs.append(out)
                for f, s in zip(finals, last):
                    f.append(s)
            x = outs[0] if len(outs) == 1 else cat(outs, -1)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        finals = [stack(f) for f in finals]
        if not batched:
            return x.squeeze(1), [f.squeeze(1) for f in finals]
        return (x.transpose(0, 1) if self.batch_first else x), finals

    # ------------------------------------------------------------------------------------------ repr
    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu), stacked num_layers deep.

    Args:
        input_size (int), hidden_size (int), num_layers (int, 1), nonlinearity ('tanh' | 'relu', 'tanh'),
        bias (bool, True), batch_first (bool, False), dropout (float, 0.0: between layers, in training only),
        bidirectional (bool, False).

    forward(input (L, N, H_in) or (L, H_in), h_0 (D*num_layers, N, H) or None) -> (output (L, N, D*H), h_n).

    >>> rnn = RNN(10, 20, num_layers=2)
    >>> out, h_n = rnn(zt.randn(5, 3, 10))          # out (5, 3, 20), h_n (2, 3, 20)
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity {nonlinearity!r}; select from 'tanh' or 'relu'")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def _run_layer(self, x, states, sfx, reverse):
        w_ih, w_hh, b_ih, b_hh = self._params(sfx)
        xproj = self._project(x, w_ih, None if b_ih is None else b_ih + b_hh)
        out, h_n = rnn_recurrence(xproj, states[0], w_hh, self.nonlinearity, reverse)
        return out, [h_n]

    def forward(self, input: Tensor, hx: Tensor | None = None):
        out, (h_n,) = self._forward(input, None if hx is None else [hx])
        return out, h_n

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else s + ", nonlinearity='relu'"


class LSTM(RNNBase):
    """Long short-term memory, gates i, f, g, o (PyTorch's order):

        i, f, o = sigmoid(.), g = tanh(.) of x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
        c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)

    Args: as RNN, without nonlinearity (proj_size is not supported).

    forward(input, (h_0, c_0) or None) -> (output (L, N, D*H), (h_n, c_n) each (D*num_layers, N, H)).

    >>> lstm = LSTM(10, 20, num_layers=2, batch_first=True)
    >>> out, (h_n, c_n) = lstm(zt.randn(3, 5, 10))  # out (3, 5, 20)
    """

    gates = 4
    n_states = 2

    def _run_layer(self, x, states, sfx, reverse):
        w_ih, w_hh, b_ih, b_hh = self._params(sfx)
        xproj = self._project(x, w_ih, None if b_ih is None else b_ih + b_hh)
        out, h_n, c_n = lstm_recurrence(xproj, states[0], states[1], w_hh, reverse)
        return out, [h_n, c_n]

    def forward(self, input: Tensor, hx=None):
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"LSTM: hx must be a tuple (h_0, c_0) of two Tensors, got {type(hx).__name__}")
        out, (h_n, c_n) = self._forward(input, hx)
        return out, (h_n, c_n)


class GRU(RNNBase):
    """Gated recurrent unit, gates r, z, n (PyTorch's order):

        r, z = sigmoid(x_t W_i{r,z}^T + b_i{r,z} + h_{t-1} W_h{r,z}^T + b_h{r,z})
        n = tanh(x_t W_in^T + b_in + r * (h_{t-1} W_hn^T + b_hn)),  h_t = (1 - z) * n + z * h_{t-1}

    Args and forward: as RNN, without nonlinearity.

    >>> gru = GRU(10, 20, bidirectional=True)
    >>> out, h_n = gru(zt.randn(5, 3, 10))          # out (5, 3, 40), h_n (2, 3, 20)
    """

    gates = 3

    def _run_layer(self, x, states, sfx, reverse):
        w_ih, w_hh, b_ih, b_hh = self._params(sfx)
        out, h_n = gru_recurrence(self._project(x, w_ih, b_ih), states[0], w_hh, b_hh, reverse)
        return out, [h_n]

    def forward(self, input: Tensor, hx: Tensor | None = None):
        out, (h_n,) = self._forward(input, None if hx is None else [hx])
        return out, h_n
