"""F.pad: padding the last dims of a tensor, as torch.nn.functional.pad.

    F.pad(x, (1, 2))                    # last dim: 1 before, 2 after, zeros
    F.pad(x, (1, 1, 2, 0), value=-1.0)  # last dim by (1, 1), the one before it by (2, 0)
    F.pad(x, (2, 2), mode="reflect")    # also "replicate" and "circular"

Constant padding is one op whose adjoint is itself with the pads negated (a negative pad crops, as in PyTorch),
so gradients of any order come for free. The other modes are a gather of each padded dim by an index (the
reflected, repeated or wrapped positions), whose gradient sums the copies back.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd.function import Function
from .common import Tensor

MODES = ("constant", "reflect", "replicate", "circular")


class ConstantPad(Function):
    """out = input padded by pads ((before, after) per dim, every dim; negative crops) with value."""

    def forward(self, a, pads, value):
        self.pads = pads
        out_shape = tuple(n + lo + hi for n, (lo, hi) in zip(a.shape, pads))
        src = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for n, (lo, hi) in zip(a.shape, pads))
        dst = tuple(slice(max(lo, 0), m - max(hi, 0)) for m, (lo, hi) in zip(out_shape, pads))
        out = self.xp.full(out_shape, value, dtype=a.dtype)
        out[dst] = a[src]
        return out

    def backward(self, g):
        return ConstantPad.apply(g, tuple((-lo, -hi) for lo, hi in self.pads), 0), None, None


def _positions(mode: str, n: int, lo: int, hi: int) -> np.ndarray:
    """The source position of each output position along one dim."""
    inner = np.arange(n)
    if mode == "reflect":  # mirror without repeating the edge: 2 1 | 0 1 2 3 | 2 1
        return np.concatenate([lo - np.arange(lo), inner, n - 2 - np.arange(hi)])
    if mode == "replicate":
        return np.concatenate([np.zeros(lo, np.int64), inner, np.full(hi, n - 1)])
    return np.concatenate([inner[n - lo:], inner, inner[:hi]])  # circular


def pad(input: Tensor, pad, mode: str = "constant", value=None) -> Tensor:
    """input padded over its last len(pad) // 2 dims: pad = (last_before, last_after, next_before, ...)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"pad: expected input to be a Tensor, got {type(input).__name__}")
    if mode not in MODES:
        raise ValueError(f"pad: mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    try:
        pads = tuple(pad)
    except TypeError:
        raise TypeError(f"pad: pad must be a sequence of ints, got {type(pad).__name__}") from None
    if not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in pads):
        raise TypeError(f"pad: pad must be a sequence of ints, got {pad!r}")
    if len(pads) % 2 or len(pads) // 2 > input.ndim:
        raise ValueError(f"pad: pad must have an even length of at most 2 * ndim ({2 * input.ndim}), got "
                         f"{len(pads)} values {pads}")
    k = len(pads) // 2
    per_dim = [(0, 0)] * (input.ndim - k) + [(int(pads[2 * i]), int(pads[2 * i + 1])) for i in reversed(range(k))]
    if mode == "constant":
        for d, ((lo, hi), n) in enumerate(zip(per_dim, input.shape)):
            if n + lo + hi < 0:
                raise ValueError(f"pad: pads {(lo, hi)} of dim {d} leave a negative size ({n} + {lo} + {hi})")
        fill = 0 if value is None else value
        if not isinstance(fill, numbers.Number) or isinstance(fill, bool):
            raise TypeError(f"pad: value must be a number, got {type(value).__name__}")
        return ConstantPad.apply(input, tuple(per_dim), fill)
    if value not in (None, 0):
        raise ValueError(f"pad: value is only for mode 'constant', got value={value!r} with mode {mode!r}")
    out = input
    for d, ((lo, hi), n) in enumerate(zip(per_dim, input.shape)):
        if lo == hi == 0:
            continue
        limit = {"reflect": n - 1, "replicate": None, "circular": n}[mode]
        if lo < 0 or hi < 0 or n == 0 or (limit is not None and max(lo, hi) > limit):
            what = {"reflect": f"less than the size of dim {d} ({n})", "replicate": "non-negative, on a non-empty "
                    "dim", "circular": f"at most the size of dim {d} ({n})"}[mode]
            raise ValueError(f"pad: {mode} padding of dim {d} must be {what}, got {(lo, hi)}")
        from ..creation import tensor

        out = out.index_select(d, tensor(_positions(mode, n, lo, hi).astype(np.int64), device=input.device))
    return out
