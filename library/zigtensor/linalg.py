"""zigtensor.linalg: torch.linalg's names for the linear algebra zigtensor has."""

from .ops.linalg import matmul
from .ops.norms import vector_norm

__all__ = ["matmul", "vector_norm"]
