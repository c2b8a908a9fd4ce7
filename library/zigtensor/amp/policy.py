"""Which dtype each autocast-aware op runs in: the op lists of PyTorch's autocast, in one table.

LOWER ops spend their time in matrix products, which 16-bit floats make faster (tensor cores, half the memory
traffic) at a precision loss the float32 accumulation inside the product keeps small. FLOAT32 ops need
float32's range or precision: exponentials and sums over many elements (softmax, reductions), statistics
(norms) and losses. Every other op runs in the dtype of its inputs, promoting as usual.

NOTE: PyTorch's CPU and CUDA lists differ; this table follows the CUDA one (ATen's AT_FORALL_FP32 and
AT_FORALL_FP32_SET_OPT_DTYPE) on every device, so that a model gives the same dtypes on the CPU as on a GPU.
Deviations: binary_cross_entropy runs in float32 (PyTorch's CUDA autocast refuses it, its CPU one runs it in
float32), the recurrences (LSTM, GRU, RNN) run in float32 (the cell state accumulates over every step; PyTorch
runs cuDNN's fused RNN in the lower dtype), and elementwise math (exp, log, pow, ...) keeps its input dtype.
"""

from __future__ import annotations

LOWER = "lower"  # floating inputs (float32, float16, bfloat16) cast to the autocast dtype
FLOAT32 = "float32"  # 16-bit floating inputs cast to float32

OP_POLICY = {
    # matrix products (mm and bmm go through matmul)
    "matmul": LOWER, "linear": LOWER, "conv1d": LOWER, "conv2d": LOWER, "conv_transpose2d": LOWER,
    "scaled_dot_product_attention": LOWER,
    # softmax and norms
    "softmax": FLOAT32, "log_softmax": FLOAT32, "layer_norm": FLOAT32, "group_norm": FLOAT32,
    "rms_norm": FLOAT32,
    # reductions (mean and var sum through sum, so they give float32 too)
    "sum": FLOAT32, "prod": FLOAT32, "cumsum": FLOAT32, "cumprod": FLOAT32, "logsumexp": FLOAT32,
    # losses
    "cross_entropy": FLOAT32, "nll_loss": FLOAT32, "mse_loss": FLOAT32, "l1_loss": FLOAT32,
    "smooth_l1_loss": FLOAT32, "huber_loss": FLOAT32, "binary_cross_entropy": FLOAT32,
    "binary_cross_entropy_with_logits": FLOAT32, "kl_div": FLOAT32,
    # recurrences
    "lstm": FLOAT32, "gru": FLOAT32, "rnn": FLOAT32,
}
