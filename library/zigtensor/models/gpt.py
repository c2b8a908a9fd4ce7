"""The character GPT of `zt train`: zigtensor.llm's decoder-only transformer in GPT-2's configuration (token
and learned position embeddings, pre-norm blocks of causal self-attention and a GELU MLP, a final LayerNorm,
and a language-model head tied to the token embedding), with nanoGPT's hyper-parameter names.

>>> model = GPT(GPTConfig(vocab_size=96, block_size=64, n_layer=2, n_head=2, n_embd=32))
>>> model(zt.randint(0, 96, (4, 64))).shape
(4, 64, 96)

It is the transformer that serves Llama, Qwen2 and GPT-2 checkpoints (llm/transformer.py), so a trained run
loads into zigtensor.llm.LLM and generates with its KV cache. Parameter names follow nanoGPT
(transformer.wte, transformer.h.0.attn.c_attn, ...), which are GPT-2's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..llm.config import ModelConfig
from ..llm.transformer import Transformer


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

    def model_config(self) -> ModelConfig:
        """The transformer's ModelConfig of this GPT (architecture 'gpt')."""
        return ModelConfig.gpt(vocab_size=self.vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                               n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout, bias=self.bias)


class GPT(Transformer):
    """The transformer of GPTConfig's ModelConfig, initialized as GPT-2 (normal 0.02, residual projections
    scaled by 1/sqrt(2 n_layer), zero biases). `config` is the GPTConfig; `model_config` the ModelConfig."""

    def __init__(self, config: GPTConfig):
        super().__init__(config.model_config())
        self.config = config

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameters, each shared one counted once; non_embedding leaves out the position embedding (the
        token embedding stays, as it is also the head's weight)."""
        n = self.num_parameters()
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def extra_repr(self) -> str:
        return f"params={self.get_num_params(False):,}"
