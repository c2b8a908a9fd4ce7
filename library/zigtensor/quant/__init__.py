"""Quantized weights: the GPTQ / AWQ checkpoint layouts and their config (layouts, config), the quantized linear
that keeps weights packed at run time (qlinear), the token embedding read from a quantized tied LM head
(qembedding), GGUF tensors kept in their blocks (gguf_weight), and our own quantizers (rtn, gptq, awq, quantize);
install puts QuantLinears (and a QuantEmbedding) into a loaded Transformer."""

from .config import QuantConfig, find_quant_config
from .gguf_weight import GGUFBlocks
from .layouts import (
    QuantFormatError,
    QuantizedWeight,
    default_g_idx,
    pack_awq,
    pack_gptq,
    unpack_awq,
    unpack_gptq,
)
from .qembedding import QuantEmbedding
from .qlinear import QuantLinear

__all__ = [
    "GGUFBlocks", "QuantConfig", "QuantEmbedding", "QuantFormatError", "QuantLinear", "QuantizedWeight",
    "default_g_idx",
    "find_quant_config", "pack_awq", "pack_gptq", "unpack_awq", "unpack_gptq",
]
