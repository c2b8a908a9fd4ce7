"""QuantEmbedding: a token embedding whose table is a quantized LM head's weight, stored once for both uses.

>>> head = QuantLinear.from_weights([qw])           # qw: the (vocab, hidden) matrix, 4-bit group-wise
>>> wte = QuantEmbedding(head)                      # model.lm_head = head; model.transformer.wte = wte
>>> wte(ids)                                        # ids (B, T) -> (B, T, hidden): only those rows dequantized

With tied word embeddings the embedding table and the LM head are one matrix E (vocab, hidden): logits = h @ E.T
and the embedding of token t is row t of E, i.e. output row t of the head's linear. The head runs as any
QuantLinear (W4A16); a lookup gathers the packed codes, scales and zero points of the rows of its ids and
dequantizes just those (QuantLinear.dequantize_rows), so a batch never expands the table to float.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..dtypes import INT, float32
from ..tensor import Tensor
from .qlinear import QuantLinear


class QuantEmbedding(nn.Module):
    """nn.Embedding's forward over the rows of a QuantLinear (the tied LM head); see the module docstring.

    The table is not a submodule: the LM head owns it, so the model holds (and counts, moves, lists) it once.
    There is no parameter to train: the codes are integers, so the output carries no gradient.
    """

    def __init__(self, table: QuantLinear):
        super().__init__()
        if not isinstance(table, QuantLinear):
            raise TypeError(f"QuantEmbedding: expected the QuantLinear whose rows are the embeddings, got "
                            f"{type(table).__name__}")
        self.num_embeddings, self.embedding_dim = table.out_features, table.in_features
        # NOTE: a plain attribute, not a registered module (see the class docstring)
        object.__setattr__(self, "table", table)
        # NOTE: a zero-size float tensor that carries the dtype and device the embeddings come out in: Module.to
        # casts and moves it with the model, and code that asks `wte.weight.device / .dtype` (KV caches, the
        # engine, the decode path's choice) reads it through `weight`
        self.register_buffer("activation_like", Tensor._wrap(np.zeros(0, np.float32), table._device()),
                             persistent=False)

    @property
    def weight(self) -> Tensor:
        """A zero-size tensor of the dtype and device of the embeddings (the table itself is packed: `table`)."""
        return self.activation_like

    def forward(self, idx: Tensor) -> Tensor:
        if not isinstance(idx, Tensor) or idx.dtype.category != INT:
            got = f"{idx.dtype} tensor" if isinstance(idx, Tensor) else type(idx).__name__
            raise TypeError(f"QuantEmbedding: expected integer token ids as a Tensor, got {got}")
        ids = idx.data
        if ids.size:
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.num_embeddings:
                bad = lo if lo < 0 else hi
                raise IndexError(f"QuantEmbedding: token id {bad} is out of range; expected ids in "
                                 f"[0, {self.num_embeddings - 1}]")
        like = self.activation_like
        rows = self.table.dequantize_rows(getattr(ids, "_a", ids))  # CUDA: the CuPy array under the DeviceArray
        if like.dtype is not float32:
            rows = rows.astype(like.data.dtype)
        if not isinstance(rows, np.ndarray):  # CUDA: the device's array type
            from ..backends.cuda_array import DeviceArray

            rows = DeviceArray(rows)
        return Tensor._wrap(rows, like.device)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, rows of the quantized LM head"
