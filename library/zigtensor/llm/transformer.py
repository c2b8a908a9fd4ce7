"""One decoder-only transformer for Llama, Mistral, Qwen2, GPT-2 and the character GPT of `zt train`.

    x = wte(ids) [+ wpe(positions)]                      learned positions (GPT-2) or rotary ones (Llama)
    each block:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))       pre-norm: RMSNorm or LayerNorm
    logits = lm_head(ln_f(x))                            lm_head tied to wte or its own matrix

Parameter names are nanoGPT's (transformer.wte, transformer.h.0.attn.c_attn, ...), which are GPT-2's; the
Llama family's separate q/k/v and gate/up projections are stored fused (c_attn = [q; k; v] rows,
mlp.c_fc = [gate; up] rows), so a decode step runs one matmul for each. weights.py maps checkpoint names
onto these.

Two ways to run it, one set of layers:
- model(ids) (B, T) -> logits (B, T, vocab): the full causal forward, for training (autograd) and scoring.
- model(ids, cache=kv_cache, rows=slice) -> logits: writes the step's keys and values into a KVCache at each
  row's length and attends over the cached prefix: a prompt (prefill) or one token per row (decode).

>>> model = Transformer(ModelConfig.gpt(vocab_size=65, block_size=128, n_layer=4, n_head=4, n_embd=128))
>>> model(zt.randint(0, 65, (2, 16))).shape
(2, 16, 65)
"""

from __future__ import annotations

import math

import numpy as np

from .. import nn
from ..autograd.function import Function
from ..autograd.grad_mode import no_grad
from ..dtypes import INT, bfloat16, float16, float32, int64
from ..nn import functional as F
from ..ops.causal_attention import CausalAttention, fused_attention_applies
from ..ops.nn import ScaledSoftmax
from ..ops.shape import cat
from ..tensor import Tensor
from .array_forward import ArrayOps
from .config import ModelConfig
from .kv_cache import KVCache
from .rope import RotaryEmbedding, rotate

_ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
                "relu": F.relu}


class _Step:
    """What every layer of one forward shares: the rotary tables, the attention masks (one per window size),
    and where the step's keys and values go in the cache."""

    def __init__(self, positions: np.ndarray, cache: KVCache | None, rows: slice | None, starts, cos, sin):
        self.positions = positions  # (T,) without a cache, (B, T) with one
        self.cache, self.rows, self.starts = cache, rows, starts
        self.cos, self.sin = cos, sin
        self.keys = positions.shape[-1] if cache is None else int(starts.max()) + positions.shape[-1]
        self._masks: dict = {}

    def mask(self, window: int | None, groups: int, like: Tensor):
        """An additive mask (0 where allowed, -1e30 where not) broadcasting to the scores (B, kv_heads, groups * T,
        S), or None when every query may see every key. Query rows are ordered (group, position), so the mask
        repeats per group."""
        key = (window, groups)
        if key not in self._masks:
            self._masks[key] = self._build(window, groups, like)
        return self._masks[key]

    def _build(self, window, groups, like):
        pos = self.positions  # (T,) or (B, T)
        T, S = pos.shape[-1], self.keys
        if pos.ndim == 2 and (pos[:, :1] == pos[0, 0]).all():
            pos = pos[0]  # every row at the same place: one mask for the batch
        if window is None and T == 1 and pos.ndim == 1 and pos[0] == S - 1:
            return None  # one new token per row, each seeing all the keys
        j = np.arange(S)
        allowed = j <= pos[..., None]  # (..., T, S) causal
        if window is not None:
            allowed &= j > pos[..., None] - window
        np_dtype = float32.np if like.dtype in (float16, bfloat16) else like.dtype.np
        # NOTE: a large finite negative rather than -inf: a window can mask key 0, which ScaledSoftmax shifts
        # by, and -inf - -inf would be nan (it then falls back to the row maximum, as on overflow)
        bias = np.where(allowed, np.array(0, np_dtype), np.array(-1e30, np_dtype))
        if groups > 1 and T > 1:
            bias = np.concatenate([bias] * groups, axis=-2)  # (..., groups * T, S)
        if bias.ndim == 3:
            bias = bias[:, None]  # (B, 1, groups * T, S)
        return like.device.backend.from_numpy(bias)


class Attention(nn.Module):
    """Causal self-attention with num_kv_heads key/value heads shared by groups of query heads (GQA; GPT-2:
    as many as query heads), rotary or no positions, an optional sliding window."""

    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        c = config
        self.layer, self.n_head, self.n_kv_head, self.head_dim = layer, c.num_heads, c.num_kv_heads, c.head_dim
        self.scale, self.window, self.dropout = c.scale, c.layer_window(layer), c.dropout
        self.c_attn = nn.Linear(c.hidden_size, (c.num_heads + 2 * c.num_kv_heads) * c.head_dim, bias=c.qkv_bias)
        self.c_proj = nn.Linear(c.num_heads * c.head_dim, c.hidden_size, bias=c.out_bias)
        self.resid_dropout = nn.Dropout(c.dropout)

    def forward(self, x: Tensor, step: _Step, norm: nn.Module | None = None,
                residual: Tensor | None = None) -> Tensor:
        """Attention over x, or over norm(x) when a norm is given (folded into c_attn where it can be); plus
        the residual when one is given (added in c_proj's product where it can be)."""
        B, T, _ = x.shape
        nh, nkv, hd = self.n_head, self.n_kv_head, self.head_dim
        g = nh // nkv  # query heads per key/value head
        qkv = norm_linear(norm, self.c_attn, x).reshape(B, T, nh + 2 * nkv, hd)  # (B, T, heads, hd): q, k, v heads
        dropout = self.dropout if self.training else 0.0
        # the full causal forward (training) in one op: CausalAttention on the CPU, the backend's flash-attention
        # kernels on a GPU (no (T, T) scores either way)
        cpu_op = step.cache is None and fused_attention_applies(qkv, dropout)
        flash = step.cache is None and x.device.type != "cpu" and not dropout and self.window is None
        if cpu_op or flash:
            if step.cos is not None:  # q and k rotated, packed again with v
                qkv = cat([rotate(qkv[:, :, :nh + nkv], step.cos, step.sin), qkv[:, :, nh + nkv:]], 2)
            if cpu_op:
                y = CausalAttention.apply(qkv, nh, nkv, self.scale, self.window)  # (B, T, nh * hd)
            else:
                q, k, v = (t.transpose(1, 2) for t in (qkv[:, :, :nh], qkv[:, :, nh:nh + nkv], qkv[:, :, nh + nkv:]))
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale, enable_gqa=g > 1)
                y = y.transpose(1, 2).reshape(B, T, nh * hd)
            return project(self.c_proj, self.resid_dropout, y, residual)
        if step.cos is not None:
            qk = rotate(qkv[:, :, :nh + nkv], step.cos, step.sin)  # q and k rotated in one op
            q, k = qk[:, :, :nh], qk[:, :, nh:]
        else:
            q, k = qkv[:, :, :nh], qkv[:, :, nh:nh + nkv]
        v = qkv[:, :, nh + nkv:]
        if step.cache is not None:
            cache, rows = step.cache, step.rows
            cache.write(self.layer, rows, step.starts, k.data, v.data)
            S = step.keys
            # the cache is not part of any graph: its views are wrapped as they are, K already transposed
            keys_t = Tensor._wrap(cache.k[self.layer][rows, :, :S].swapaxes(-1, -2), x.device)  # (B, nkv, hd, S)
            values = Tensor._wrap(cache.v[self.layer][rows, :, :S], x.device)  # (B, nkv, S, hd)
        else:
            keys_t, values = k.permute(0, 2, 3, 1), v.transpose(1, 2)  # (B, nkv, hd, T), (B, nkv, T, hd)
        if g == 1 or T == 1:  # (B, nkv, g * T, hd): each key/value head meets its g query heads in one matmul
            q = q.reshape(B, nkv, g, hd) if T == 1 else q.transpose(1, 2)
        else:
            q = q.reshape(B, T, nkv, g, hd).permute(0, 2, 3, 1, 4).reshape(B, nkv, g * T, hd)
        weights = ScaledSoftmax.apply(q @ keys_t, self.scale, step.mask(self.window, g, x))  # (B, nkv, gT, S)
        if self.dropout and self.training:
            weights = F.dropout(weights, self.dropout)
        y = weights @ values  # (B, nkv, g * T, hd)
        if T == 1:
            y = y.reshape(B, 1, nh * hd)
        elif g == 1:
            y = y.transpose(1, 2).reshape(B, T, nh * hd)
        else:
            y = y.reshape(B, nkv, g, T, hd).permute(0, 3, 1, 2, 4).reshape(B, T, nh * hd)
        return project(self.c_proj, self.resid_dropout, y, residual)

    def extra_repr(self) -> str:
        s = f"heads={self.n_head}, kv_heads={self.n_kv_head}, head_dim={self.head_dim}"
        return s + (f", window={self.window}" if self.window else "")


class SwiGLU(Function):
    """act(gate) * up for h = [gate | up] along the last axis, act = silu: one op for the five of the composed
    form (two slices, sigmoid, two products), which a decode step runs in every layer."""

    def forward(self, h, hidden):
        gate, up = h[..., :hidden], h[..., hidden:]
        # NOTE: silu(x) = x sigmoid(x) = x (1 + tanh(x / 2)) / 2: no exp(-x) to overflow for large negative x
        out = self.xp.multiply(gate, 0.5)
        self.xp.tanh(out, out=out)
        out += 1
        out *= gate
        out *= 0.5
        out *= up
        return out

    def backward(self, g):
        h, hidden = self.inputs
        gate, up = h[..., :hidden], h[..., hidden:]
        s = gate.sigmoid()
        d_gate = g * up * (s * (1 + gate * (1 - s)))  # d silu = s (1 + gate (1 - s))
        d_up = g * gate * s
        return cat([d_gate, d_up], -1), None


class MLP(nn.Module):
    """c_proj(act(c_fc(x))), or with a gated MLP c_proj(act(gate(x)) * up(x)), gate and up fused in c_fc."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.gated, self.hidden = c.gated_mlp, c.intermediate_size
        self.act = _ACTIVATIONS[c.activation]
        self.gelu = {"gelu": "none", "gelu_tanh": "tanh"}.get(c.activation)  # GELU's approximate, None for others
        self.c_fc = nn.Linear(c.hidden_size, (2 if c.gated_mlp else 1) * c.intermediate_size, bias=c.mlp_bias)
        self.c_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=c.mlp_bias)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: Tensor, norm: nn.Module | None = None, residual: Tensor | None = None) -> Tensor:
        """The MLP of x, or of norm(x) when a norm is given (folded into c_fc where it can be); plus the residual
        when one is given (added in c_proj's product where it can be). A GELU and c_proj are one op
        (F.gelu_linear) where dropout does nothing."""
        h = norm_linear(norm, self.c_fc, x)
        if not self.gated and self.gelu is not None and _plain(self.c_proj, nn.Linear) \
                and (self.dropout.p == 0 or not self.dropout.training):
            return F.gelu_linear(h, self.c_proj.weight, self.c_proj.bias, residual, self.gelu)
        if not self.gated:
            h = self.act(h)
        elif self.act is F.silu:
            h = SwiGLU.apply(h, self.hidden)
        else:
            h = self.act(h[..., :self.hidden]) * h[..., self.hidden:]
        return project(self.c_proj, self.dropout, h, residual)


def norm_linear(norm: nn.Module | None, linear: nn.Module, x: Tensor) -> Tensor:
    """linear(norm(x)) (linear(x) without a norm): one op where a LayerNorm feeds a plain Linear
    (ops.nn.LayerNormLinear, on the CPU), the two modules otherwise."""
    if norm is None:
        return linear(x)
    if _plain(norm, nn.LayerNorm) and _plain(linear, nn.Linear) and norm.weight is not None \
            and len(norm.normalized_shape) == 1:
        return F.layer_norm_linear(x, norm.weight, norm.bias, linear.weight, linear.bias, norm.eps)
    return linear(norm(x))


def _plain(module: nn.Module, cls: type) -> bool:
    """Whether module is a cls whose forward is the class's own: the fused ops below stand in for its forward,
    which must not bypass one set on the instance (quant/calibration.py's intercept records a layer's inputs
    that way)."""
    return type(module) is cls and "forward" not in module.__dict__


def project(linear: nn.Module, dropout: nn.Dropout, h: Tensor, residual: Tensor | None) -> Tensor:
    """dropout(linear(h)), plus the residual when one is given: added in the product (F.linear_add) where
    dropout does nothing (p 0, or eval) and linear is a plain Linear."""
    if residual is None:
        return dropout(linear(h))
    if _plain(linear, nn.Linear) and (dropout.p == 0 or not dropout.training):
        return F.linear_add(h, linear.weight, linear.bias, residual)
    return residual + dropout(linear(h))


def _norm(config: ModelConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.hidden_size, eps=config.norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)


class Block(nn.Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x)): pre-norm residual blocks."""

    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.ln_1 = _norm(config)
        self.attn = Attention(config, layer)
        self.ln_2 = _norm(config)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, step: _Step) -> Tensor:
        x = self.attn(x, step, norm=self.ln_1, residual=x)
        return self.mlp(x, norm=self.ln_2, residual=x)


class Transformer(nn.Module):
    """The decoder-only transformer of a ModelConfig (see the module docstring).

    Args:
        config (ModelConfig): sizes and variant choices.
        init (bool): draw GPT-2's initial weights (normal 0.02, residual projections scaled by
            1/sqrt(2 n_layer)); False leaves every parameter uninitialized, for a checkpoint to replace.
    """

    def __init__(self, config: ModelConfig, init: bool = True):
        super().__init__()
        if not init:
            with nn.init.skip_init():
                self._build(config)
            return
        self._build(config)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * config.num_layers))

    def _build(self, config: ModelConfig) -> None:
        c = self.model_config = self.config = config
        modules = dict(wte=nn.Embedding(c.vocab_size, c.hidden_size))
        if c.position == "learned":
            modules["wpe"] = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        modules.update(drop=nn.Dropout(c.dropout), h=nn.ModuleList([Block(c, i) for i in range(c.num_layers)]),
                       ln_f=_norm(c))
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_word_embeddings:  # the head scores each token by its embedding: one matrix, two uses
            self.lm_head.weight = self.transformer.wte.weight
        self.rope = RotaryEmbedding(c) if c.position == "rope" else None

    @staticmethod
    def _init_weights(module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)

    def num_parameters(self) -> int:
        """Parameters, a tied matrix counted once."""
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------------------------------ forward
    def forward(self, idx: Tensor, cache: KVCache | None = None, rows: slice | None = None,
                last_only: bool = False) -> Tensor:
        """Token ids idx (B, T) int -> logits (B, T, vocab) (last_only: (B, 1, vocab), the last position's).

        With a cache, the T tokens of each row follow the row's cached ones (rows: which rows of the cache the
        B sequences are; default all) and their keys and values are added to the cache.
        """
        if not isinstance(idx, Tensor) or idx.ndim != 2 or idx.dtype.category != INT:
            got = f"{idx.dtype} of shape {idx.shape}" if isinstance(idx, Tensor) else type(idx).__name__
            raise ValueError(f"Transformer: expected token ids as an int tensor of shape (B, T), got {got}")
        B, T = idx.shape
        c = self.model_config
        starts = None
        if cache is None:
            positions = np.arange(T)
        else:
            rows = cache.rows(rows)
            if rows.stop - rows.start != B:
                raise ValueError(f"Transformer: {B} sequences given for cache rows {rows.start}:{rows.stop}")
            starts = cache.reserve(rows, T)
            positions = starts[:, None] + np.arange(T)  # (B, T)
        end = int(positions.max()) + 1 if T else 0
        if c.position == "learned" and end > c.max_position_embeddings:
            raise ValueError(f"Transformer: cannot forward a sequence of length {end}, the block size is only "
                             f"{c.max_position_embeddings}")
        wte = self.transformer.wte
        x = wte(idx)  # (B, T, C)
        if c.position == "learned":
            pos = Tensor._wrap(idx.device.backend.from_numpy(positions.astype(np.int64)), idx.device)
            x = x + self.transformer.wpe(pos)  # (T, C) or (B, T, C)
        x = self.transformer.drop(x)
        cos = sin = None
        if self.rope is not None:
            cos, sin = self.rope.tables(positions, like=x)  # (T, 1, hd/2) or (B, T, 1, hd/2)
        step = _Step(positions, cache, rows, starts, cos, sin)
        ops = ArrayOps.for_model(self) if cache is not None else None
        if ops is not None:  # no graph to record: the same layers on arrays (array_forward.py)
            return self._cached_forward_arrays(ops, x, step, last_only)
        for block in self.transformer.h:
            x = block(x, step)
        if cache is not None:
            cache.advance(rows, T)
        if last_only:
            x = x[:, -1:]
        return norm_linear(self.transformer.ln_f, self.lm_head, x)

    # ------------------------------------------------------------------------------------------ inference
    def _cached_forward_arrays(self, ops: ArrayOps, x: Tensor, step: _Step, last_only: bool) -> Tensor:
        """forward's layers with a cache and no graph, on arrays: what Block and Attention compute, without the
        cost of a Tensor op around each array op (a third of a decode step's time)."""
        like, x = x, x.data
        cache, rows, S, T = step.cache, step.rows, step.keys, x.shape[1]
        rotary = ops.rotary(step.cos, step.sin)
        for block in self.transformer.h:
            attn = block.attn
            q, k, v = ops.qkv(attn, ops.norm(block.ln_1, x), rotary)
            cache.write(attn.layer, rows, step.starts, k, v)
            keys_t = cache.k[attn.layer][rows, :, :S].swapaxes(-1, -2)  # (B, nkv, hd, S)
            values = cache.v[attn.layer][rows, :, :S]  # (B, nkv, S, hd)
            mask = step.mask(attn.window, attn.n_head // attn.n_kv_head, like)
            x = x + ops.linear(attn.c_proj, ops.attend(attn, q, keys_t, values, mask))
            x = x + ops.mlp(block.mlp, ops.norm(block.ln_2, x))
        cache.advance(rows, T)
        if last_only:
            x = x[:, -1:]
        return ops.wrap(ops.linear(self.lm_head, ops.norm(self.transformer.ln_f, x)))

    def prepare_for_inference(self) -> Transformer:
        """Eval mode, no gradients, and each Linear's weight laid out as the matmul reads it.

        NOTE: Linear computes x @ W.T; with W (out, in) stored column-major, W.T is a C-contiguous (in, out)
        matrix, which OpenBLAS streams fastest for the few rows of a decode step (measured 1.5x over the
        row-major layout at batch 1 on the 2-core CPU). Values and shapes do not change.
        """
        self.eval()
        self.requires_grad_(False)
        if self.transformer.wte.weight.device.type != "cpu":  # our GEMM kernels read either layout in place
            return self
        xp = self.transformer.wte.weight.device.backend.xp
        seen = set()
        for m in self.modules():
            if isinstance(m, nn.Linear) and id(m.weight) not in seen:
                seen.add(id(m.weight))
                m.weight.data = xp.asfortranarray(m.weight.data)
        return self

    @no_grad()
    def logits(self, idx: Tensor, cache: KVCache | None = None, rows: slice | None = None,
               last_only: bool = False) -> Tensor:
        """forward under no_grad (generation and scoring)."""
        return self(idx, cache=cache, rows=rows, last_only=last_only)

    def extra_repr(self) -> str:
        c = self.model_config
        return f"architecture={c.architecture}, params={self.num_parameters():,}"


def token_tensor(ids, device) -> Tensor:
    """A (B, T) int64 tensor of token ids from a list of lists or an array, on device."""
    from ..creation import tensor

    return tensor(np.asarray(ids, dtype=np.int64), dtype=int64, device=device)
