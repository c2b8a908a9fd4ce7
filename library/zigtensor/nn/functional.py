"""zigtensor.nn.functional (import as F): the functional forms of activations, layers and losses."""

from __future__ import annotations

from ..ops.conv import (
    adaptive_avg_pool1d, adaptive_avg_pool2d, avg_pool1d, avg_pool2d, conv1d, conv2d, fold, max_pool1d,
    max_pool2d, unfold,
)
from ..ops.activations import elu, hardsigmoid, hardswish, logsigmoid, mish, relu6, selu, softplus, softsign
from ..ops.conv_transpose import conv_transpose2d
from ..ops.elementwise import gelu, leaky_relu, relu, sigmoid, silu, tanh
from ..ops.index import one_hot
from ..ops.loss import (
    binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, huber_loss, kl_div, l1_loss,
    mse_loss, nll_loss, smooth_l1_loss,
)
from ..ops.interpolate import interpolate, pixel_shuffle, pixel_unshuffle
from ..ops.norms import cosine_similarity, normalize
from ..ops.padding import pad
from ..ops.nn import (
    batch_norm, dropout, embedding, gelu_linear, group_norm, layer_norm, layer_norm_linear, linear, linear_add,
    log_softmax, rms_norm, scaled_dot_product_attention, softmax,
)

__all__ = [
    "relu", "gelu", "silu", "sigmoid", "tanh", "leaky_relu", "softmax", "log_softmax", "dropout", "linear",
    "linear_add", "gelu_linear",
    "layer_norm", "layer_norm_linear", "rms_norm", "batch_norm", "embedding", "scaled_dot_product_attention", "one_hot",
    "conv1d", "conv2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "unfold", "fold", "conv_transpose2d", "group_norm", "pad",
    "normalize", "cosine_similarity", "interpolate", "pixel_shuffle", "pixel_unshuffle",
    "softplus", "elu", "selu", "mish", "relu6", "hardsigmoid", "hardswish", "softsign", "logsigmoid",
    "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div",
]
