"""A decoder-only transformer in the shape of GPT-2 (nanoGPT's model.py): token and learned position
embeddings, pre-norm blocks of causal self-attention and a GELU MLP, a final LayerNorm, and a language-model
head tied to the token embedding.

>>> model = GPT(GPTConfig(vocab_size=96, block_size=64, n_layer=2, n_head=2, n_embd=32))
>>> model(zt.randint(0, 96, (4, 64))).shape
(4, 64, 96)

Parameter names follow nanoGPT (transformer.wte, transformer.h.0.attn.c_attn, ...), so GPT-2 checkpoints map
onto them. NOTE: the pieces a Llama-style variant swaps (the norm, the position encoding, the attention's
key/value heads, the MLP) are each one module or one line here, so they can become GPTConfig options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import nn
from ..creation import arange
from ..dtypes import int64
from ..nn import functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 96  # tokens in the vocabulary (rows of wte, columns of the logits)
    block_size: int = 128  # longest context: rows of the position embedding
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # model width, a multiple of n_head
    dropout: float = 0.0  # on the embeddings, the attention weights and each residual branch
    bias: bool = True  # biases in the Linears and LayerNorms (GPT-2: True)

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd ({self.n_embd}) must be a multiple of n_head "
                             f"({self.n_head})")


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        B, T, C = x.shape  # batch, sequence length, width (n_embd)
        nh, hs = self.n_head, C // self.n_head
        qkv = self.c_attn(x).reshape(B, T, 3, nh, hs)  # (B, T, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, nh * hs): the heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU (HF's "gelu_new"), and cheaper than erf
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x)): pre-norm residual blocks."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embedding
            wpe=nn.Embedding(config.block_size, config.n_embd),  # learned position embedding
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: the head scores each token by its embedding (one matrix, two uses)
        self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: residual projections scaled by 1/sqrt(2 n_layer)
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameters, each shared one counted once; non_embedding leaves out the position embedding (the
        token embedding stays, as it is also the head's weight)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(self, idx):
        """Token ids (B, T) int64 -> logits (B, T, vocab_size)."""
        B, T = idx.shape
        if self.config.block_size < T:
            raise ValueError(f"GPT: cannot forward a sequence of length {T}, the block size is only "
                             f"{self.config.block_size}")
        pos = arange(T, dtype=int64, device=idx.device)  # (T,)
        tok_emb = self.transformer.wte(idx)  # (B, T, C)
        pos_emb = self.transformer.wpe(pos)  # (T, C)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        return self.lm_head(x)  # (B, T, vocab_size)

    def extra_repr(self) -> str:
        return f"params={self.get_num_params(False):,}"
