"""A contiguous KV cache: per layer, K and V arrays of (batch, kv_heads, max_len, head_dim), preallocated on the
model's device, and the number of tokens each sequence (row) holds.

The transformer's cached forward writes a step's keys and values at each row's length and attends over the
first max(lengths) + T slots, masking what a row has not written. (The paged cache of the serving engine is
in zigtensor.engine; this one serves the offline API and `zt generate`.)

>>> cache = KVCache.for_model(model, batch=2, max_len=256)
>>> logits = model(prompt_ids, cache=cache, rows=slice(0, 1))   # prefill row 0
>>> logits = model(next_ids, cache=cache)                        # (2, 1) tokens: one decode step of both rows
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..device import device as as_device


class KVCache:
    """K and V of every layer for `batch` sequences of up to `max_len` tokens."""

    def __init__(self, num_layers: int, batch: int, num_kv_heads: int, head_dim: int, max_len: int,
                 dtype=dtypes.float32, device="cpu"):
        for name, v in (("num_layers", num_layers), ("batch", batch), ("num_kv_heads", num_kv_heads),
                        ("head_dim", head_dim), ("max_len", max_len)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"KVCache: {name} must be a positive int, got {v!r}")
        self.device = as_device(device)
        self.dtype = dtypes.as_dtype(dtype)
        self.batch, self.max_len = batch, max_len
        xp = self.device.backend.xp
        shape = (batch, num_kv_heads, max_len, head_dim)
        self.k = [xp.zeros(shape, dtype=self.dtype.np) for _ in range(num_layers)]
        self.v = [xp.zeros(shape, dtype=self.dtype.np) for _ in range(num_layers)]
        self.lengths = np.zeros(batch, dtype=np.int64)  # tokens held by each row (host side: read every step)

    @classmethod
    def for_model(cls, model, batch: int, max_len: int) -> KVCache:
        """A cache shaped for `model` (a Transformer), in the dtype and on the device of its weights."""
        c = model.model_config
        weight = model.transformer.wte.weight
        return cls(c.num_layers, batch, c.num_kv_heads, c.head_dim, max_len, weight.dtype, weight.device)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.k) + sum(a.nbytes for a in self.v)

    def rows(self, rows: slice | None) -> slice:
        """rows as a slice of this cache's batch (None: all of it)."""
        if rows is None:
            return slice(0, self.batch)
        start, stop, step = rows.indices(self.batch)
        if step != 1 or start >= stop:
            raise ValueError(f"KVCache: rows must be a non-empty contiguous slice of the {self.batch} rows, "
                             f"got {rows}")
        return slice(start, stop)

    def reserve(self, rows: slice, new_tokens: int) -> np.ndarray:
        """The start position of each row in `rows` for a step of new_tokens tokens, checked to fit."""
        starts = self.lengths[rows]
        if int(starts.max()) + new_tokens > self.max_len:
            raise ValueError(f"KVCache: {new_tokens} more tokens after {int(starts.max())} do not fit in the cache "
                             f"of max_len {self.max_len}")
        return starts

    def write(self, layer: int, rows: slice, starts: np.ndarray, k, v) -> None:
        """Store a step's keys and values, k and v of (rows, T, kv_heads, head_dim), at each row's start."""
        T = k.shape[1]
        ck, cv = self.k[layer], self.v[layer]
        first = int(starts[0])
        if (starts == first).all():  # the usual case (one row, or rows in step): one strided copy
            ck[rows, :, first:first + T] = k.transpose(0, 2, 1, 3)
            cv[rows, :, first:first + T] = v.transpose(0, 2, 1, 3)
            return
        xp = self.device.backend.xp
        row_idx = xp.asarray(np.arange(rows.start, rows.stop)[:, None])  # (B, 1)
        pos = xp.asarray(starts[:, None] + np.arange(T))  # (B, T)
        ck[row_idx, :, pos] = k  # advanced indices around a slice: the value is (B, T, kv_heads, head_dim)
        cv[row_idx, :, pos] = v

    def advance(self, rows: slice, new_tokens) -> None:
        self.lengths[rows] += new_tokens

    def reset(self, rows: slice | None = None) -> None:
        """Forget the tokens of rows (all by default): the next step writes from position 0."""
        self.lengths[self.rows(rows)] = 0

    def __repr__(self) -> str:
        return (f"KVCache(layers={len(self.k)}, batch={self.batch}, max_len={self.max_len}, "
                f"dtype={self.dtype.name}, device='{self.device}', lengths={self.lengths.tolist()})")
