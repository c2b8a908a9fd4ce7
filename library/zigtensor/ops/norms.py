"""Vector norms and what is built on them: zt.linalg.vector_norm / Tensor.norm, F.normalize, F.cosine_similarity,
zt.cdist.

A p-norm is (sum |x|^p)^(1/p); composed from pow and sum, its gradient at an all-zero vector would be
0 * inf = nan, where PyTorch gives 0. So the root is its own op (RootOfSum) whose gradient at a zero sum is 0;
everything else is the ops autograd already knows, on every device.
"""

from __future__ import annotations

import math
import numbers

from ..autograd.function import Function
from ..dtypes import FLOAT
from .common import Tensor, broadcast_shapes, normalize_dims
from .elementwise import abs, where


class RootOfSum(Function):
    """s ** (1 / p) of a sum of |x|^p (s >= 0), with gradient out / (p s), taken as 0 where s == 0."""

    save_output = True

    def forward(self, s, p):
        self.p = p
        return self.xp.sqrt(s) if p == 2 else s ** (1.0 / p)

    def backward(self, g):
        s = self.inputs[0]
        safe = where(s > 0, s, 1.0)  # out is 0 where s is: out / safe is then 0, never 0 / 0
        return g * self.output() / (safe * self.p), None


def vector_norm(x: Tensor, ord=2, dim=None, keepdim: bool = False) -> Tensor:
    """The ord-norm of x over dim (all dims when None), as torch.linalg.vector_norm: ord a real number > 0,
    inf (max |x|), -inf (min |x|) or 0 (count of non-zeros)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"vector_norm: expected a Tensor, got {type(x).__name__}")
    if x.dtype.category != FLOAT:
        raise RuntimeError(f"vector_norm: expected a floating point input, got {x.dtype}")
    if not isinstance(ord, numbers.Real) or isinstance(ord, bool) or math.isnan(ord) or ord < 0 and ord != -math.inf:
        raise ValueError(f"vector_norm: ord must be a non-negative number, inf or -inf, got {ord!r}")
    axes = normalize_dims(dim, x.ndim, "vector_norm")
    if ord == math.inf:
        return abs(x).amax(axes, keepdim) if x.ndim else abs(x)
    if ord == -math.inf:
        return abs(x).amin(axes, keepdim) if x.ndim else abs(x)
    if ord == 0:
        return (x != 0).sum(axes, keepdim).to(x.dtype)
    powered = x * x if ord == 2 else abs(x) if ord == 1 else abs(x) ** ord
    total = powered.sum(axes, keepdim)
    return total if ord == 1 else RootOfSum.apply(total, float(ord))


def norm(x: Tensor, p="fro", dim=None, keepdim: bool = False) -> Tensor:
    """Tensor.norm: 'fro' (the 2-norm of the entries) or a number, over dim (all dims when None)."""
    if p == "fro":
        p = 2
    if isinstance(p, str):
        raise ValueError(f"norm: p must be 'fro' or a number, got {p!r} (nuclear norms are not supported)")
    return vector_norm(x, p, dim, keepdim)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """input / max(||input||_p over dim, eps), as torch.nn.functional.normalize."""
    return input / vector_norm(input, p, dim, keepdim=True).clamp(min=eps)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """sum over dim of (x1 / max(||x1||, eps)) * (x2 / max(||x2||, eps)), broadcasting x1 against x2, as
    torch.nn.functional.cosine_similarity."""
    for name, t in (("x1", x1), ("x2", x2)):
        if not isinstance(t, Tensor):
            raise TypeError(f"cosine_similarity: expected {name} to be a Tensor, got {type(t).__name__}")
    shape = broadcast_shapes("cosine_similarity", x1.shape, x2.shape)  # dim counts in the common shape
    x1, x2 = x1.expand(*shape), x2.expand(*shape)
    return (normalize(x1, 2.0, dim, eps) * normalize(x2, 2.0, dim, eps)).sum(dim)


def cdist(x1: Tensor, x2: Tensor, p: float = 2.0) -> Tensor:
    """The p-norm distance between each row of x1 (*, P, M) and each row of x2 (*, R, M): (*, P, R), as
    torch.cdist (from the differences, so a zero distance has gradient 0, not nan)."""
    for name, t in (("x1", x1), ("x2", x2)):
        if not isinstance(t, Tensor) or t.ndim < 2:
            raise RuntimeError(f"cdist: {name} must be a Tensor of at least 2 dims (*, rows, features), got "
                               f"{getattr(t, 'shape', type(t).__name__)}")
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(f"cdist: x1 and x2 must have the same number of features, got {x1.shape[-1]} and "
                           f"{x2.shape[-1]}")
    return vector_norm(x1.unsqueeze(-2) - x2.unsqueeze(-3), p, dim=-1)
