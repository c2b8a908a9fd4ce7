"""Matrix products: matmul with batching and broadcasting (1-d operands as in NumPy/PyTorch), mm, bmm, outer."""

from __future__ import annotations

from ..amp.autocast_mode import autocast_inputs
from ..autograd.function import Function
from .common import Tensor, broadcast_shapes, unbroadcast


class Matmul(Function):
    """a @ b for operands of at least 2 dims, batch dims broadcast."""

    def forward(self, a, b):
        if a.ndim > 2 and b.ndim == 2:
            # NOTE: a stack of rows times one matrix is one big GEMM, not a loop of small ones
            return self.device.backend.matmul(a.reshape(-1, a.shape[-1]), b).reshape(a.shape[:-1] + b.shape[-1:])
        return self.device.backend.matmul(a, b)

    def backward(self, g):
        a, b = self.inputs
        ga = unbroadcast(g @ b.mT, a.shape) if a.requires_grad else None
        gb = None
        if b.requires_grad:
            if a.ndim > 2 and b.ndim == 2:  # sum over the batch inside one GEMM
                gb = a.reshape(-1, a.shape[-1]).mT @ g.reshape(-1, g.shape[-1])
            else:
                gb = unbroadcast(a.mT @ g, b.shape)
        return ga, gb


def matmul(a: Tensor, b: Tensor) -> Tensor:
    a, b = autocast_inputs("matmul", a, b)
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"matmul: expected two Tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got shapes {a.shape} and {b.shape}")
    if a.dtype is not b.dtype:
        raise RuntimeError(f"matmul: expected both operands to have the same dtype, got {a.dtype} for {a.shape} "
                           f"and {b.dtype} for {b.shape}")
    k_a = a.shape[-1]
    k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if k_a != k_b:
        raise RuntimeError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied ({k_a} != {k_b})")
    if a.ndim > 2 or b.ndim > 2:
        broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2] if b.ndim > 1 else ())
    # 1-d operands: promote to a matrix, multiply, then drop the added dim
    if a.ndim == 1 and b.ndim == 1:
        return Matmul.apply(a.reshape(1, -1), b.reshape(-1, 1)).reshape(())
    if a.ndim == 1:
        return Matmul.apply(a.unsqueeze(0), b).squeeze(-2)
    if b.ndim == 1:
        return Matmul.apply(a, b.unsqueeze(-1)).squeeze(-1)
    return Matmul.apply(a, b)


def mm(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim != 2 or b.ndim != 2:
        raise RuntimeError(f"mm: expected 2-d tensors, got shapes {a.shape} and {b.shape}")
    return matmul(a, b)


def bmm(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise RuntimeError(f"bmm: expected 3-d tensors with the same batch size, got shapes {a.shape} and {b.shape}")
    return matmul(a, b)


def outer(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"outer: expected 1-d tensors, got shapes {a.shape} and {b.shape}")
    return a.unsqueeze(1) * b.unsqueeze(0)


def addmm(input: Tensor, mat1: Tensor, mat2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """beta * input + alpha * (mat1 @ mat2), input broadcast to the product's shape."""
    return _scaled_sum(input, mm(mat1, mat2), beta, alpha)


def baddbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """beta * input + alpha * (batch1 @ batch2), batch by batch."""
    return _scaled_sum(input, bmm(batch1, batch2), beta, alpha)


def _scaled_sum(input, product, beta, alpha):
    product = product if alpha == 1 else product * alpha
    if beta == 0:  # as PyTorch: input is then ignored, NaN and inf in it included
        return product
    return product + (input if beta == 1 else input * beta)
