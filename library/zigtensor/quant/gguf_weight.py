"""GGUFBlocks: a GGUF linear weight kept as llama.cpp's quantized blocks instead of dequantized at load.

>>> ckpt = load_gguf_checkpoint(path, keep_quantized=True)
>>> w = ckpt.tensors["model.layers.0.self_attn.q_proj.weight"]     # GGUFBlocks(Q4_K, shape=(576, 576))
>>> w.raw.shape, w.dequantize().shape                              # (576, 336) uint8, (576, 576) float32

Blocks run along the input dim (ggml's contiguous one), so every output row is a whole number of blocks and rows
can be reordered (llama.cpp's rotary permutation undone) or sliced into tiles as bytes, without decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io import gguf as gguf_io

# ggml types kept quantized: every type io/gguf.py decodes block by block
KEEP_TYPES = tuple(gguf_io._BLOCK_DECODERS)
# bits per weight of each type's codes (its scales and mins come on top)
GGUF_BITS = {"Q8_0": 8, "Q6_K": 6, "Q5_0": 5, "Q5_1": 5, "Q5_K": 5, "Q4_0": 4, "Q4_1": 4, "Q4_K": 4}


@dataclass
class GGUFBlocks:
    """One linear weight's raw blocks: uint8 (out_features, bytes per row) of ggml_type, rows in HF order."""

    raw: np.ndarray
    ggml_type: str
    out_features: int
    in_features: int
    transposed: bool = False   # the HF tensor is the transpose of the weight (GPT-2's Conv1D (in, out))
    name: str = ""

    def __post_init__(self) -> None:
        if self.ggml_type not in KEEP_TYPES:
            raise gguf_io.GGUFError(f"tensor {self.name!r}: ggml type {self.ggml_type} cannot stay quantized; "
                                    f"expected one of {', '.join(KEEP_TYPES)}")
        block, block_bytes = gguf_io.GGML_BLOCK_LAYOUTS[self.ggml_type]
        if self.in_features % block:
            raise gguf_io.GGUFError(f"tensor {self.name!r}: {self.in_features} inputs are not whole {self.ggml_type} "
                                    f"blocks of {block}")
        expect = (self.out_features, self.in_features // block * block_bytes)
        if self.raw.size != expect[0] * expect[1]:
            raise gguf_io.GGUFError(f"tensor {self.name!r}: {self.raw.size} bytes of {self.ggml_type}; expected "
                                    f"{expect[0] * expect[1]} for ({self.out_features}, {self.in_features})")
        self.raw = self.raw.reshape(expect)

    @property
    def shape(self) -> tuple[int, int]:
        """The HF checkpoint tensor's shape (transposed for Conv1D)."""
        w = (self.out_features, self.in_features)
        return w[::-1] if self.transposed else w

    @property
    def nbytes(self) -> int:
        return int(self.raw.nbytes)

    def dequantize(self) -> np.ndarray:
        """The float32 tensor in its HF shape (what load_gguf_checkpoint gives without keep_quantized)."""
        w = gguf_io.dequantize(self.raw, self.ggml_type, (self.out_features, self.in_features), name=self.name)
        return np.ascontiguousarray(w.T) if self.transposed else w

    def __repr__(self) -> str:
        return f"GGUFBlocks({self.ggml_type}, shape={self.shape}, name={self.name!r})"
