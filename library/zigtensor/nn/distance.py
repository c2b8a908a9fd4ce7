"""Distances between vectors as modules: CosineSimilarity and PairwiseDistance, as PyTorch's."""

from __future__ import annotations

from ..ops.norms import cosine_similarity, vector_norm
from .module import Module


class CosineSimilarity(Module):
    """F.cosine_similarity(x1, x2, dim, eps)."""

    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1, x2):
        return cosine_similarity(x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    """||x1 - x2 + eps||_p over the last dim (eps keeps the gradient finite where x1 == x2), as PyTorch's."""

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False):
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1, x2):
        return vector_norm(x1 - x2 + self.eps, self.norm, dim=-1, keepdim=self.keepdim)
