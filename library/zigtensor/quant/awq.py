"""AWQ (Lin et al. 2023, as AutoAWQ runs it): protect the weights that meet large activations by scaling input
channels before group quantization, then clip each group's range; the scales are folded into the op before the
linear, so the saved model computes the same function with weights that quantize better.

For a linear y = x W^T with calibration inputs X:
  scale search   s = mean|x|^alpha per input channel, normalized to sqrt(max s * min s) = 1, for alpha on a grid in
                 [0, 1); the alpha whose Q(W diag(s)) diag(s)^-1 gives the smallest output error on X wins
                 (alpha = 0 is plain RTN, so the search never does worse than RTN on the calibration data);
  folding        W <- W diag(s), and the previous op's output channels are divided by s: the RMSNorm weight before
                 q/k/v and gate/up, v_proj's rows before o_proj (only when their widths match: no GQA), up_proj's
                 rows before down_proj (silu(gate) * up is linear in up);
  clip search    each group's range is clamped to max|w| * (1 - i / n_grid), i < max_shrink * n_grid, per output row
                 and group, keeping the clamp with the smallest error of that group's share of the output
                 (skipped for q and k, as AutoAWQ does: attention scores amplify their errors).
Output errors are measured exactly on all calibration tokens through the inputs' Gram matrix G = X^T X:
||X D^T||^2 = sum((D G) * D) for D = Q - W, which costs out * in^2 instead of out * in * tokens.
"""

from __future__ import annotations

import numpy as np

from .calibration import param_array, set_param
from .layouts import QuantizedWeight
from .rtn import check_settings, fake_quantize, grouped, rtn_quantize

N_GRID = 20
MAX_SHRINK = 0.5


class Activations:
    """What AWQ needs of a linear's calibration inputs: the Gram matrix X^T X and mean |x| per channel."""

    def __init__(self, in_features: int):
        self.in_features = int(in_features)
        self.gram = np.zeros((self.in_features, self.in_features), dtype=np.float64)
        self.abs_sum = np.zeros(self.in_features, dtype=np.float64)
        self.rows = 0

    def add(self, x) -> None:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Activations.add: inputs have {x.shape[-1]} features, expected {self.in_features}")
        x = x.reshape(-1, self.in_features)
        self.gram += (x.T @ x).astype(np.float64)
        self.abs_sum += np.abs(x).sum(axis=0, dtype=np.float64)
        self.rows += x.shape[0]

    @property
    def mean_abs(self) -> np.ndarray:
        if self.rows == 0:
            raise ValueError("AWQ: no calibration inputs were recorded for this layer")
        return self.abs_sum / self.rows

    def divide(self, s: np.ndarray) -> None:
        """The inputs become x / s (the scales were folded into the previous op)."""
        self.gram /= np.outer(s, s)
        self.abs_sum /= s


def output_error(diff: np.ndarray, gram: np.ndarray) -> float:
    """||X diff^T||^2 for diff (out, in), from G = X^T X (in, in)."""
    d = np.asarray(diff, dtype=np.float32)
    return float(np.sum((d @ gram) * d, dtype=np.float64))


def search_scale(weight: np.ndarray, acts: Activations, bits: int = 4, group_size: int = 128, sym: bool = False,
                 n_grid: int = N_GRID, min_zero: int = 0) -> tuple[np.ndarray, float]:
    """(s, alpha): the per-input-channel scales s = mean|x|^alpha (normalized) minimizing the output error of the
    group-quantized scaled weight, Q(W diag(s)) diag(s)^-1, over alpha in {0, 1/n_grid, ..., 1 - 1/n_grid}."""
    w = np.asarray(weight, dtype=np.float32)
    check_settings(bits, group_size, w.shape[1])
    if isinstance(n_grid, bool) or not isinstance(n_grid, int) or n_grid < 1:
        raise ValueError(f"AWQ: n_grid must be a positive int, got {n_grid!r}")
    x_mean = acts.mean_abs
    gram = acts.gram.astype(np.float32)
    best = (np.inf, None, 0.0)
    for k in range(n_grid):
        alpha = k / n_grid
        s = np.maximum(x_mean ** alpha, 1e-4)
        s = (s / np.sqrt(s.max() * s.min())).astype(np.float32)
        q = fake_quantize(w * s, bits, group_size, sym, min_zero) / s
        err = output_error(q - w, gram)
        if err < best[0]:
            best = (err, s, alpha)
    return best[1], best[2]


def search_clip(weight: np.ndarray, gram: np.ndarray, bits: int = 4, group_size: int = 128, sym: bool = False,
                n_grid: int = N_GRID, max_shrink: float = MAX_SHRINK, min_zero: int = 0) -> np.ndarray:
    """Per (output row, group) the clamp max|w| * (1 - i / n_grid), i < max_shrink * n_grid, whose quantized
    group changes that group's share of the output least; returns the clamps (out, n_groups)."""
    w = np.asarray(weight, dtype=np.float32)
    out_f, in_f = w.shape
    width = check_settings(bits, group_size, in_f)
    wg = grouped(w, width)  # (out, n_groups, width), a short last group zero-padded
    n_groups = wg.shape[1]
    padded = np.zeros((n_groups * width, n_groups * width), dtype=np.float32)
    padded[:in_f, :in_f] = gram
    # the Gram matrix of each group's inputs: (n_groups, width, width)
    blocks = np.stack([padded[g * width:(g + 1) * width, g * width:(g + 1) * width] for g in range(n_groups)])
    org_max = np.abs(wg).max(axis=2)  # (out, n_groups)
    best_err = np.full((out_f, n_groups), np.inf)
    best_max = org_max.copy()
    for i in range(max(1, int(max_shrink * n_grid))):
        max_val = org_max * (1 - i / n_grid)
        clipped = np.clip(wg, -max_val[..., None], max_val[..., None])
        q = grouped(fake_quantize(clipped.reshape(out_f, -1)[:, :in_f], bits, group_size, sym, min_zero), width)
        d = (q - wg).transpose(1, 0, 2)  # (n_groups, out, width)
        err = np.sum((d @ blocks) * d, axis=2).T  # (out, n_groups)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_max = np.where(better, max_val, best_max)
    return best_max


def clip_weight(weight: np.ndarray, max_abs: np.ndarray, group_size: int) -> np.ndarray:
    """weight (out, in) with each group clamped to [-max_abs, max_abs] (max_abs: (out, n_groups))."""
    w = np.asarray(weight, dtype=np.float32)
    out_f, in_f = w.shape
    g = grouped(w, in_f if group_size == -1 else group_size)
    return np.clip(g, -max_abs[..., None], max_abs[..., None]).reshape(out_f, -1)[:, :in_f]


def awq_quantize(weight: np.ndarray, acts: Activations, bits: int = 4, group_size: int = 128, sym: bool = False,
                 n_grid: int = N_GRID, clip: bool = True, min_zero: int = 0,
                 name: str = "") -> tuple[QuantizedWeight, np.ndarray]:
    """AWQ for a lone linear layer (no previous op to fold into): (quantized W diag(s), s); the layer then runs as
    y = (x / s) Q^T. The model-level quantizer folds s into the previous op instead (awq_block)."""
    s, _ = search_scale(weight, acts, bits, group_size, sym, n_grid, min_zero)
    w = np.asarray(weight, dtype=np.float32) * s
    if clip:
        gram = acts.gram / np.outer(s, s)
        w = clip_weight(w, search_clip(w, gram, bits, group_size, sym, n_grid, min_zero=min_zero), group_size)
    return rtn_quantize(w, bits, group_size, sym, min_zero, name=name), s


def awq_block(block, acts: dict[str, Activations], config, bits: int = 4, group_size: int = 128, sym: bool = False,
              n_grid: int = N_GRID, min_zero: int = 0, prefix: str = "") -> dict[str, QuantizedWeight]:
    """AWQ on one decoder block of our Transformer (pre-RMSNorm, gated MLP; fused c_attn = [q; k; v] and
    mlp.c_fc = [gate; up] rows), from its float inputs acts[name] for "attn.c_attn", "attn.c_proj", "mlp.c_fc",
    "mlp.c_proj". Folds the scales into ln_1, ln_2, the v rows and the up rows (block's parameters change), and
    returns the quantized weights by those names (prefix + name). min_zero: as in rtn.minmax_grid."""
    c = config
    if c.norm != "rmsnorm" or not c.gated_mlp:
        raise ValueError(f"AWQ folds scales into RMSNorm weights and a gated MLP's up rows; architecture "
                         f"{c.architecture!r} (norm {c.norm}, gated_mlp={c.gated_mlp}) is not supported")
    attn, mlp = block.attn, block.mlp
    q_rows, kv_rows = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    hidden = c.intermediate_size
    weights = {"attn.c_attn": param_array(attn.c_attn.weight), "attn.c_proj": param_array(attn.c_proj.weight),
               "mlp.c_fc": param_array(mlp.c_fc.weight), "mlp.c_proj": param_array(mlp.c_proj.weight)}

    def fold_into_rows(linear, rows: slice, s: np.ndarray, name: str) -> None:
        weights[name][rows] /= s[:, None]
        if linear.bias is not None:
            b = param_array(linear.bias)
            b[rows] /= s
            set_param(linear.bias, b)

    # 1. input_layernorm -> q, k, v
    s, _ = search_scale(weights["attn.c_attn"], acts["attn.c_attn"], bits, group_size, sym, n_grid, min_zero)
    set_param(block.ln_1.weight, param_array(block.ln_1.weight) / s)
    weights["attn.c_attn"] *= s
    acts["attn.c_attn"].divide(s)
    # 2. v_proj -> o_proj, only when v's rows are o's inputs one to one (no grouped-query attention)
    if kv_rows == q_rows:
        s, _ = search_scale(weights["attn.c_proj"], acts["attn.c_proj"], bits, group_size, sym, n_grid, min_zero)
        fold_into_rows(attn.c_attn, slice(q_rows + kv_rows, None), s, "attn.c_attn")
        weights["attn.c_proj"] *= s
        acts["attn.c_proj"].divide(s)
    # 3. post_attention_layernorm -> gate, up
    s, _ = search_scale(weights["mlp.c_fc"], acts["mlp.c_fc"], bits, group_size, sym, n_grid, min_zero)
    set_param(block.ln_2.weight, param_array(block.ln_2.weight) / s)
    weights["mlp.c_fc"] *= s
    acts["mlp.c_fc"].divide(s)
    # 4. up_proj -> down_proj
    s, _ = search_scale(weights["mlp.c_proj"], acts["mlp.c_proj"], bits, group_size, sym, n_grid, min_zero)
    fold_into_rows(mlp.c_fc, slice(hidden, None), s, "mlp.c_fc")
    weights["mlp.c_proj"] *= s
    acts["mlp.c_proj"].divide(s)

    out = {}
    for name, w in weights.items():
        rows = slice(q_rows + kv_rows, None) if name == "attn.c_attn" else slice(None)  # q and k are not clipped
        max_abs = search_clip(w[rows], acts[name].gram, bits, group_size, sym, n_grid, min_zero=min_zero)
        w[rows] = clip_weight(w[rows], max_abs, group_size)
        out[name] = rtn_quantize(w, bits, group_size, sym, min_zero, name=prefix + name)
    return out
