"""zigtensor.nn.functional (import as F): the functional forms of activations, layers and losses."""

from __future__ import annotations

from ..ops.elementwise import gelu, leaky_relu, relu, sigmoid, silu, tanh
from ..ops.index import one_hot
from ..ops.nn import (
    batch_norm, dropout, embedding, layer_norm, linear, log_softmax, rms_norm, scaled_dot_product_attention,
    softmax,
)

__all__ = [
    "relu", "gelu", "silu", "sigmoid", "tanh", "leaky_relu", "softmax", "log_softmax", "dropout", "linear",
    "layer_norm", "rms_norm", "batch_norm", "embedding", "scaled_dot_product_attention", "one_hot",
]
