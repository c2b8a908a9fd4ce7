"""Diagonals: Tensor.diagonal (a view of the diagonal of two dims), zt.diag (a vector's diagonal matrix, or a
matrix's diagonal) and zt.trace, as PyTorch's.

The diagonal is gathered by advanced indexing (its gradient scatters back); a diagonal matrix is the vector times
an identity, padded to place an offset diagonal: ops autograd already knows, on every device.
"""

from __future__ import annotations

import numbers

from .common import Tensor, normalize_dim


def _check_offset(op: str, offset) -> int:
    if not isinstance(offset, numbers.Integral) or isinstance(offset, bool):
        raise TypeError(f"{op}: the offset must be an int, got {type(offset).__name__}")
    return int(offset)


def diagonal(x: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The entries x[..., i, i + offset] of dims dim1 and dim2 as the last dim (the other dims first, in order)."""
    from ..creation import arange
    from .shape import movedim

    offset = _check_offset("diagonal", offset)
    if x.ndim < 2:
        raise RuntimeError(f"diagonal: expected a tensor of at least 2 dims, got shape {x.shape}")
    d1, d2 = normalize_dim(dim1, x.ndim, "diagonal"), normalize_dim(dim2, x.ndim, "diagonal")
    if d1 == d2:
        raise RuntimeError(f"diagonal: dim1 and dim2 must differ, both are {d1}")
    moved = movedim(movedim(x, d1, -1), d2 if d2 < d1 else d2 - 1, -1)  # (..., rows, cols)
    rows, cols = moved.shape[-2], moved.shape[-1]
    start_r, start_c = max(-offset, 0), max(offset, 0)
    n = max(min(rows - start_r, cols - start_c), 0)
    i = arange(start_r, start_r + n, device=x.device)
    j = arange(start_c, start_c + n, device=x.device)
    return moved[..., i, j]


def diag(x: Tensor, diagonal: int = 0) -> Tensor:
    """A 1-d x: the square matrix with x on the diagonal'th diagonal; a 2-d x: that diagonal of x."""
    from ..creation import eye
    from .padding import pad

    offset = _check_offset("diag", diagonal)
    if x.ndim == 2:
        return globals()["diagonal"](x, offset)
    if x.ndim != 1:
        raise RuntimeError(f"diag: expected a 1-d or 2-d tensor, got shape {x.shape}")
    square = x.unsqueeze(-1) * eye(x.shape[0], dtype=x.dtype, device=x.device)
    k = abs(offset)
    return pad(square, (k, 0, 0, k) if offset > 0 else (0, k, k, 0)) if k else square


def trace(x: Tensor) -> Tensor:
    """The sum of a matrix's main diagonal."""
    if x.ndim != 2:
        raise RuntimeError(f"trace: expected a 2-d tensor, got shape {x.shape}")
    return diagonal(x).sum()
