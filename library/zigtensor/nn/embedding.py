"""Embedding: a lookup table of learned vectors."""

from __future__ import annotations

from ..autograd.grad_mode import no_grad
from ..creation import empty
from ..ops.nn import embedding
from ..tensor import Tensor
from . import init
from ._args import check_int
from .module import Module, Parameter


class Embedding(Module):
    """y[..., :] = weight[x[...], :] for integer indices x.

    Args:
        num_embeddings (int): rows of the table.
        embedding_dim (int): size of each vector.
        padding_idx (int or None): a row that starts at zero and never receives a gradient (negative counts
            from the end). Default: None.
        device, dtype: where and as what the weight is made.

    The weight (num_embeddings, embedding_dim) is drawn from N(0, 1), as in PyTorch.

    >>> nn.Embedding(10, 3, padding_idx=0)(zt.tensor([[0, 2], [4, 9]])).shape
    (2, 2, 3)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, *,
                 _weight: Tensor | None = None, _freeze: bool = False, device=None, dtype=None):
        super().__init__()
        self.num_embeddings = check_int("Embedding", "num_embeddings", num_embeddings, 0)
        self.embedding_dim = check_int("Embedding", "embedding_dim", embedding_dim, 0)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, int):
                raise TypeError(f"Embedding: padding_idx must be an int or None, got {padding_idx!r}")
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx must be within [-{num_embeddings}, "
                                 f"{num_embeddings}) (num_embeddings), got {padding_idx}")
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        if _weight is None:
            self.weight = Parameter(empty(num_embeddings, embedding_dim, dtype=dtype, device=device))
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(f"Embedding: _weight must have shape ({num_embeddings}, {embedding_dim}), "
                                 f"got {tuple(_weight.shape)}")
            self.weight = Parameter(_weight.detach(), requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True,
                        padding_idx: int | None = None) -> Embedding:
        """An Embedding whose weight is `embeddings` (shared, not copied), frozen unless freeze=False.

        >>> nn.Embedding.from_pretrained(zt.eye(3))(zt.tensor([1])).tolist()
        [[0.0, 1.0, 0.0]]
        """
        if not isinstance(embeddings, Tensor) or embeddings.ndim != 2:
            got = embeddings.shape if isinstance(embeddings, Tensor) else type(embeddings).__name__
            raise ValueError(f"Embedding.from_pretrained: embeddings must be a 2-d Tensor "
                             f"(num_embeddings, embedding_dim), got {got}")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx, _weight=embeddings, _freeze=freeze)

    def forward(self, x):
        return embedding(x, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s
