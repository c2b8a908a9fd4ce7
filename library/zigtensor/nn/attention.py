"""Multi-head attention with PyTorch's parameters, shapes and mask conventions.

MultiheadAttention(q, k, v) = concat_h(softmax(q W_q^h (k W_k^h)^T / sqrt(d_head) + mask) v W_v^h) W_o^T + b_o

Masks follow nn.MultiheadAttention, not F.scaled_dot_product_attention: a bool mask marks with True the
positions that may NOT be attended; a float mask is added to the scores.
"""

from __future__ import annotations

import math

from ..creation import empty, ones, zeros
from ..dtypes import FLOAT, bool_
from ..tensor import Tensor
from . import functional as F
from . import init
from ._args import check_float, check_int
from .linear import Linear
from .module import Module, Parameter


class MultiheadAttention(Module):
    """Attention over num_heads heads of size embed_dim // num_heads, with input and output projections.

    Args:
        embed_dim (int): model width E (of the query and the output).
        num_heads (int): heads; must divide embed_dim.
        dropout (float): dropout on the attention weights, in training mode. Default: 0.0.
        bias (bool): biases on the input and output projections. Default: True.
        add_bias_kv, add_zero_attn: PyTorch's extras, not supported (must be False).
        kdim, vdim (int | None): feature sizes of key and value. Default: embed_dim. When either differs,
            the projections are q_proj_weight, k_proj_weight, v_proj_weight instead of one in_proj_weight.
        batch_first (bool): inputs and output are (N, L, E) instead of (L, N, E). Default: False.

    forward(query (L, N, E), key (S, N, kdim), value (S, N, vdim), key_padding_mask (N, S) = None,
    need_weights = True, attn_mask (L, S) or (N * num_heads, L, S) = None, average_attn_weights = True,
    is_causal = False) -> (output (L, N, E), weights (N, L, S) averaged over heads, (N, num_heads, L, S),
    or None). Unbatched inputs (L, E) give (L, E) and (L, S) / (num_heads, L, S).

    >>> mha = MultiheadAttention(16, 4, batch_first=True)
    >>> x = zt.randn(2, 5, 16)
    >>> out, w = mha(x, x, x)                          # out (2, 5, 16), w (2, 5, 5)
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        name = "MultiheadAttention"
        self.embed_dim = check_int(name, "embed_dim", embed_dim)
        self.num_heads = check_int(name, "num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"{name}: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.kdim = embed_dim if kdim is None else check_int(name, "kdim", kdim)
        self.vdim = embed_dim if vdim is None else check_int(name, "vdim", vdim)
        self.dropout = check_float(name, "dropout", dropout, 0.0, 1.0)
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError(f"{name}: add_bias_kv and add_zero_attn are not supported")
        self.batch_first = bool(batch_first)
        self.head_dim = embed_dim // num_heads
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        E = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(empty(3 * E, E, device=device, dtype=dtype))
            for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(n, None)
        else:
            self.q_proj_weight = Parameter(empty(E, E, device=device, dtype=dtype))
            self.k_proj_weight = Parameter(empty(E, self.kdim, device=device, dtype=dtype))
            self.v_proj_weight = Parameter(empty(E, self.vdim, device=device, dtype=dtype))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(empty(3 * E, device=device, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(E, E, bias=bias, device=device, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Xavier-uniform input projections, zero biases; out_proj.weight keeps Linear's init (as PyTorch)."""
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    # ------------------------------------------------------------------------------------------ forward
    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False):
        batched = self._check_inputs(query, key, value)
        self_attention = query is key and key is value
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        L, N, E = query.shape
        S = key.shape[0]
        H, D = self.num_heads, self.head_dim

        q, k, v = self._project(query, key, value, self_attention)  # (L*N, E), (S*N, E), (S*N, E)
        q = q.reshape(L, N, H, D).permute(1, 2, 0, 3)  # (N, H, L, D)
        k_t = k.reshape(S, N, H, D).permute(1, 2, 3, 0)  # (N, H, D, S)
        v = v.reshape(S, N, H, D).permute(1, 2, 0, 3)  # (N, H, S, D)

        scores = (q * (1.0 / math.sqrt(D))) @ k_t  # (N, H, L, S)
        mask = self._merged_mask(attn_mask, key_padding_mask, is_causal, L, S, N, query)
        if mask is not None:
            scores = scores + mask
        weights = F.softmax(scores, dim=-1)
        if self.dropout > 0 and self.training:
            weights = F.dropout(weights, self.dropout, training=True)
        out = (weights @ v).permute(2, 0, 1, 3).reshape(L * N, E)  # (L*N, E), heads side by side
        out = self.out_proj(out).reshape(L, N, E)

        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(1)
        return out, weights if batched else weights.squeeze(0)

    def _project(self, query, key, value, self_attention: bool):
        """The q, k, v projections of the flattened (length * batch, features) inputs."""
        E = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E : 2 * E], b[2 * E :])
        q2, k2, v2 = (t.reshape(t.shape[0] * t.shape[1], t.shape[2]) for t in (query, key, value))
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            if self_attention:  # one matmul for all three
                qkv = F.linear(q2, w, b)
                return qkv[:, :E], qkv[:, E : 2 * E], qkv[:, 2 * E :]
            wq, wk, wv = w[:E], w[E : 2 * E], w[2 * E :]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(q2, wq, bq), F.linear(k2, wk, bk), F.linear(v2, wv, bv)

    def _merged_mask(self, attn_mask, key_padding_mask, is_causal, L, S, N, like):
        """attn_mask and key_padding_mask as one additive float mask that broadcasts to (N, H, L, S)."""
        H = self.num_heads
        if attn_mask is None and is_causal:
            # NOTE: PyTorch takes is_causal as a hint and insists on the mask too; we build the causal mask
            attn_mask = ones(L, S, dtype=bool_, device=like.device).triu(1)
        mask = None
        if attn_mask is not None:
            m = _additive("attn_mask", attn_mask, like)
            if m.ndim == 2:
                if m.shape != (L, S):
                    raise RuntimeError(f"MultiheadAttention: the shape of the 2D attn_mask is {m.shape}, but "
                                       f"should be {(L, S)}")
            elif m.ndim == 3:
                if m.shape != (N * H, L, S):
                    raise RuntimeError(f"MultiheadAttention: the shape of the 3D attn_mask is {m.shape}, but "
                                       f"should be {(N * H, L, S)} (batch * num_heads, L, S)")
                m = m.reshape(N, H, L, S)
            else:
                raise RuntimeError(f"MultiheadAttention: attn_mask must be 2-D or 3-D, got shape {m.shape}")
            mask = m
        if key_padding_mask is not None:
            kpm = _additive("key_padding_mask", key_padding_mask, like)
            if kpm.shape != (N, S):
                raise RuntimeError(f"MultiheadAttention: expected key_padding_mask of shape {(N, S)} "
                                   f"(batch, source length), got {kpm.shape}")
            kpm = kpm.reshape(N, 1, 1, S)
            mask = kpm if mask is None else mask + kpm
        return mask

    def _check_inputs(self, query, key, value) -> bool:
        name = "MultiheadAttention"
        for n, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name}: expected {n} to be a Tensor, got {type(t).__name__}")
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise RuntimeError(f"{name}: query, key and value must all be 3-D (batched) or 2-D (unbatched), "
                               f"got query {query.shape}, key {key.shape}, value {value.shape}")
        for n, t, what in (("query", query, "embed_dim"), ("key", key, "kdim"), ("value", value, "vdim")):
            want = getattr(self, what)
            if t.shape[-1] != want:
                raise RuntimeError(f"{name}: expected {n} with last dim {what}={want}, got {n} of shape "
                                   f"{t.shape}")
        batch = 1 if self.batch_first else 0
        if key.shape[:-1] != value.shape[:-1]:
            raise RuntimeError(f"{name}: key and value must agree in length and batch, got key {key.shape} "
                               f"and value {value.shape}")
        if query.ndim == 3 and query.shape[1 - batch] != key.shape[1 - batch]:
            raise RuntimeError(f"{name}: query and key must have the same batch size, got query "
                               f"{query.shape} and key {key.shape}"
                               + (" (batch_first=True)" if self.batch_first else ""))
        return query.ndim == 3

    def extra_repr(self) -> str:
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if not self._qkv_same_embed_dim:
            s += f", kdim={self.kdim}, vdim={self.vdim}"
        if self.batch_first:
            s += ", batch_first=True"
        return s


def _additive(name: str, mask: Tensor, like: Tensor) -> Tensor:
    """A bool mask (True = masked) as 0 / -inf in like's dtype; a float mask as it is."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"MultiheadAttention: {name} must be a Tensor, got {type(mask).__name__}")
    if mask.dtype is bool_:
        return zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(mask, float("-inf"))
    if mask.dtype.category == FLOAT:
        return mask if mask.dtype is like.dtype else mask.to(like.dtype)
    raise TypeError(f"MultiheadAttention: only bool and floating {name} are supported, got {mask.dtype}")
