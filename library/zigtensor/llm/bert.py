"""A BERT encoder (MiniLM and the other sentence-transformers BERTs) and sentence embeddings: token states
pooled over the non-padding tokens (mean, as sentence-transformers' Pooling does by default), then
L2-normalized when the model folder lists a Normalize module.

    x = LayerNorm(word + position + token_type embeddings)
    each layer (post-norm):  x = LN(x + attn(x));  x = LN(x + W2 gelu(W1 x))

Parameter names are the Hugging Face ones (embeddings.word_embeddings, encoder.layer.0.attention.self.query,
...), so a checkpoint loads by name.

>>> enc = BertEncoder.from_folder("path/to/all-MiniLM-L6-v2")
>>> enc.embed(["a sentence", "another one"]).shape
(2, 384)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import nn
from ..autograd.grad_mode import no_grad
from ..creation import tensor
from ..dtypes import as_dtype, float32, int64
from ..nn import functional as F
from ..tensor import Tensor
from .config import ConfigError
from .weights import WeightsError

_ACT = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda x: F.gelu(x, approximate="tanh")}


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    activation: str = "gelu"
    pad_token_id: int = 0

    @classmethod
    def from_hf(cls, config: dict) -> BertConfig:
        if config.get("model_type") != "bert":
            raise ConfigError(f"BertConfig: expected model_type 'bert', got {config.get('model_type')!r}")
        kind = config.get("position_embedding_type", "absolute")
        if kind != "absolute":
            raise ConfigError(f"config.json: position_embedding_type {kind!r} is not supported (only 'absolute')")
        act = config.get("hidden_act", "gelu")
        if act not in _ACT:
            raise ConfigError(f"config.json: hidden_act {act!r} is not supported; expected one of {', '.join(_ACT)}")
        try:
            return cls(vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
                       num_layers=config["num_hidden_layers"], num_heads=config["num_attention_heads"],
                       intermediate_size=config["intermediate_size"],
                       max_position_embeddings=config.get("max_position_embeddings", 512),
                       type_vocab_size=config.get("type_vocab_size", 2),
                       layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)), activation=act,
                       pad_token_id=config.get("pad_token_id") or 0)
        except KeyError as e:
            raise ConfigError(f"config.json of a bert model has no {e.args[0]!r}") from None


class BertEmbeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, ids: Tensor) -> Tensor:
        T = ids.shape[1]
        pos = tensor(np.arange(T), dtype=int64, device=ids.device)
        types = tensor(np.zeros(T, dtype=np.int64), dtype=int64, device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(pos) + self.token_type_embeddings(types)
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.heads = c.num_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = (lin(x).reshape(B, T, self.heads, C // self.heads).transpose(1, 2)
                   for lin in (self.query, self.key, self.value))  # each (B, heads, T, head_dim)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # mask (B, 1, 1, T): True = a real token
        return y.transpose(1, 2).reshape(B, T, C)


class BertSelfOutput(nn.Module):
    def __init__(self, c: BertConfig, width: int):
        super().__init__()
        self.dense = nn.Linear(width, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, h: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(h) + residual)


class BertAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c, c.hidden_size)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.act = _ACT[c.activation]

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertSelfOutput(c, c.intermediate_size)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoderStack(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(c) for _ in range(c.num_layers)])

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertModel(nn.Module):
    """ids (B, T) and a padding mask (B, T) (1 = token, 0 = padding) -> token states (B, T, hidden)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoderStack(config)

    def forward(self, ids: Tensor, attention_mask: Tensor) -> Tensor:
        T = ids.shape[1]
        if self.config.max_position_embeddings < T:
            raise ValueError(f"BertModel: {T} tokens is more than the {self.config.max_position_embeddings} "
                             "positions the model has")
        mask = attention_mask.reshape(attention_mask.shape[0], 1, 1, T).bool()
        return self.encoder(self.embeddings(ids), mask)


def mean_pool(states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean pooling: the average of the states of the real (mask 1) tokens."""
    m = mask[..., None].astype(states.dtype)
    return (states * m).sum(1) / np.maximum(m.sum(1), 1e-9)


class BertEncoder:
    """A BertModel with its tokenizer and sentence-transformers' pooling settings."""

    def __init__(self, model: BertModel, tokenizer, pooling: str = "mean", normalize: bool = True,
                 max_seq_length: int | None = None):
        if pooling not in ("mean", "cls", "max"):
            raise ValueError(f"BertEncoder: pooling must be 'mean', 'cls' or 'max', got {pooling!r}")
        self.model, self.tokenizer, self.pooling, self.normalize = model, tokenizer, pooling, normalize
        self.max_seq_length = min(max_seq_length or model.config.max_position_embeddings,
                                  model.config.max_position_embeddings)
        self.tokenizer.backend.enable_truncation(self.max_seq_length)

    @classmethod
    def from_folder(cls, path, tensors: dict, config: dict, tokenizer, device="cpu", dtype=None) -> BertEncoder:
        """The encoder of an HF/sentence-transformers folder whose config.json, weights and tokenizer are given."""
        bert_config = BertConfig.from_hf(config)
        model = BertModel(bert_config)
        load_bert_weights(model, tensors, str(path), dtype)
        model.to(device).eval().requires_grad_(False)
        pooling, normalize, max_len = _sentence_transformers_settings(Path(path))
        return cls(model, tokenizer, pooling, normalize, max_len)

    @no_grad()
    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """One embedding per text, float32 (len(texts), hidden): pooled, L2-normalized when the model says so."""
        if isinstance(texts, str):
            texts = [texts]
        out = []
        device = self.model.embeddings.word_embeddings.weight.device
        for start in range(0, len(texts), batch_size):
            ids = [self.tokenizer.encode(t) for t in texts[start:start + batch_size]]
            T = max(len(i) for i in ids)
            padded = np.full((len(ids), T), self.model.config.pad_token_id, dtype=np.int64)
            mask = np.zeros((len(ids), T), dtype=np.int64)
            for r, i in enumerate(ids):
                padded[r, :len(i)], mask[r, :len(i)] = i, 1
            states = self.model(tensor(padded, device=device), tensor(mask, device=device)).numpy()
            out.append(self._pool(states.astype(np.float32), mask))
        emb = np.concatenate(out) if out else np.zeros((0, self.model.config.hidden_size), np.float32)
        if self.normalize:  # torch.nn.functional.normalize(p=2, eps=1e-12), as sentence-transformers' Normalize
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb

    def _pool(self, states: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.pooling == "cls":
            return states[:, 0]
        if self.pooling == "max":
            return np.where(mask[..., None] > 0, states, -1e9).max(1)
        return mean_pool(states, mask)


def _sentence_transformers_settings(folder: Path) -> tuple[str, bool, int | None]:
    """(pooling, normalize, max_seq_length) from modules.json, the Pooling config and sentence_bert_config.json;
    a plain HF folder gets mean pooling without normalization, as sentence-transformers builds for it."""
    def read(name):
        p = folder / name
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None

    modules = read("modules.json") or []
    types = [m.get("type", "") for m in modules if isinstance(m, dict)]
    normalize = any(t.endswith("Normalize") for t in types)
    pooling = "mean"
    for m in modules:
        if isinstance(m, dict) and m.get("type", "").endswith("Pooling"):
            cfg = read(f"{m.get('path', '')}/config.json") or {}
            if cfg.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif cfg.get("pooling_mode_max_tokens"):
                pooling = "max"
    settings = read("sentence_bert_config.json") or {}
    return pooling, normalize, settings.get("max_seq_length")


def load_bert_weights(model: BertModel, tensors: dict, where: str, dtype=None) -> None:
    """Set model's parameters from tensors by HF name ('bert.' prefixes dropped); every parameter must be there
    with its shape. Tensors of heads and poolers the encoder does not use are ignored."""
    target = float32 if dtype is None else as_dtype(dtype)
    names = {(k[len("bert."):] if k.startswith("bert.") else k): k for k in tensors}
    problems = []
    for name, p in model.named_parameters():
        if name not in names:
            problems.append(f"missing tensor {name!r} (expected shape {p.shape})")
            continue
        value = tensors[names[name]]
        arr = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
        if tuple(arr.shape) != p.shape:
            problems.append(f"tensor {name!r} has shape {tuple(arr.shape)}, expected {p.shape}")
            continue
        p.data = p.device.backend.from_numpy(np.ascontiguousarray(arr, dtype=target.np))
        p.dtype = target
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise WeightsError(f"{where}: " + "; ".join(problems[:3]) + more)
