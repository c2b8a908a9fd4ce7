"""The model registry: a recipe's [model] section and what the data looks like -> a zigtensor.nn.Module,
and autoregressive sampling from the language models.

>>> info = DataInfo(kind="text", input_shape=(128,), vocab_size=96, block_size=128)
>>> model = build_model(recipe.model, info)                         # a GPT, CharLSTM, MLP or CNN
>>> out = generate(model, zt.tensor([[0]]), 100, temperature=0.8, top_k=20, seed=0)   # (1, 101) int64

Image models take float32 (N, C, H, W) images (normalized by the trainer) and return logits
(N, num_classes); language models take int64 (B, T) token ids and return logits (B, T, vocab_size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .. import models
from ..autograd.grad_mode import no_grad
from ..dtypes import INT, int64
from ..ops.shape import cat
from ..tensor import Tensor
from . import recipe as R


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data to be built."""

    kind: Literal["image", "text"]  # images with class labels, or token streams
    input_shape: tuple  # one example: (C, H, W) for images, (block_size,) for text
    num_classes: int | None = None  # image datasets: classes of the labels
    vocab_size: int | None = None  # text datasets: the tokenizer's vocabulary size
    block_size: int | None = None  # text datasets: tokens per training window


def _need(model: str, info: DataInfo, kind: str, *fields: str) -> None:
    if info.kind != kind:
        raise ValueError(f"model {model!r} needs {kind} data, got DataInfo(kind={info.kind!r})")
    for f in fields:
        if getattr(info, f) is None:
            raise ValueError(f"model {model!r} needs DataInfo.{f}, got None")


def _mlp(cfg: R.MLPConfig, info: DataInfo):
    _need("mlp", info, "image", "num_classes")
    return models.MLP(models.MLPConfig(in_features=int(np.prod(info.input_shape)), hidden=tuple(cfg.hidden),
                                       num_classes=info.num_classes, dropout=cfg.dropout))


def _cnn(cfg: R.CNNConfig, info: DataInfo):
    _need("cnn", info, "image", "num_classes")
    if len(info.input_shape) != 3:
        raise ValueError(f"model 'cnn' needs images of shape (C, H, W), got input_shape {info.input_shape}")
    return models.CNN(models.CNNConfig(input_shape=tuple(info.input_shape), channels=tuple(cfg.channels),
                                       hidden=cfg.hidden, num_classes=info.num_classes, dropout=cfg.dropout))


def _gpt(cfg: R.GPTConfig, info: DataInfo):
    _need("gpt", info, "text", "vocab_size")
    block_size = cfg.block_size if cfg.block_size is not None else info.block_size
    if block_size is None:
        raise ValueError("model 'gpt' needs a block_size: set model.block_size or give DataInfo.block_size")
    return models.GPT(models.GPTConfig(vocab_size=info.vocab_size, block_size=block_size, n_layer=cfg.n_layer,
                                       n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout,
                                       bias=cfg.bias))


def _lstm(cfg: R.LSTMConfig, info: DataInfo):
    _need("lstm", info, "text", "vocab_size")
    return models.CharLSTM(models.CharLSTMConfig(vocab_size=info.vocab_size, embed=cfg.embed,
                                                 hidden=cfg.hidden, num_layers=cfg.num_layers,
                                                 dropout=cfg.dropout))


BUILDERS = {"mlp": _mlp, "cnn": _cnn, "gpt": _gpt, "lstm": _lstm}  # recipe model name -> builder


def build_model(model_cfg, data_info: DataInfo):
    """The network of a recipe's [model] section (a dataclass of zigtensor.train.MODELS) for this data,
    initialized from the framework RNG (seed it first for a reproducible init)."""
    name = getattr(model_cfg, "name", None)
    builder = BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"unknown model {name!r}; the model registry has {', '.join(sorted(BUILDERS))}")
    return builder(model_cfg, data_info)


# ---------------------------------------------------------------------------------------------- sampling
def _sample(logits: np.ndarray, temperature: float, top_k: int | None, uniform: np.ndarray) -> np.ndarray:
    """One token per row of logits (B, V), by inverse-CDF sampling with the uniforms (B,) given."""
    logits = logits.astype(np.float64)
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = np.partition(logits, -top_k, axis=-1)[:, -top_k, None]  # the k-th largest of each row
        logits = np.where(logits < kth, -np.inf, logits)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    cdf = np.cumsum(p, -1)
    cdf /= cdf[:, -1:]
    tokens = (cdf < uniform[:, None]).sum(-1)
    return np.minimum(tokens, logits.shape[-1] - 1)  # guards against rounding in the last cdf entry


def generate(model, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             block_size: int | None = None, seed: int | None = None) -> Tensor:
    """Continue the token ids idx (B, T) int64 by max_new_tokens sampled tokens: (B, T + max_new_tokens).

    Each step feeds the model the last block_size tokens (default: model.config.block_size when the model
    has one), divides the last position's logits by temperature (0: always the most likely token), keeps
    the top_k most likely (None or 0: all) and samples. A model with `forward_with_state(idx, state)` (the
    LSTM) reads the prompt once and then only each new token, carrying its state instead of the prefix.
    Sampling draws from the framework RNG, or from a generator of its own seeded with seed (the framework
    RNG is then left untouched). The model is run in eval mode and put back in its mode after.
    """
    if not isinstance(idx, Tensor) or idx.ndim != 2 or idx.dtype.category != INT:
        got = f"{idx.dtype} of shape {idx.shape}" if isinstance(idx, Tensor) else type(idx).__name__
        raise ValueError(f"generate: expected idx as int64 token ids of shape (B, T), got {got}")
    if idx.shape[1] == 0:
        raise ValueError("generate: expected a prompt of at least one token, got idx of shape "
                         f"{idx.shape}")
    if max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"generate: temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 0:
        raise ValueError(f"generate: top_k must be >= 0 (0 or None: no limit), got {top_k}")
    top_k = top_k or None
    if block_size is None:
        block_size = getattr(getattr(model, "config", None), "block_size", None)
    backend = idx.device.backend
    rng = np.random.default_rng(seed) if seed is not None else None

    def uniforms(n: int) -> np.ndarray:
        if rng is not None:
            return rng.random(n)
        return backend.to_numpy(backend.rand((n,), np.float64))

    stateful = getattr(model, "forward_with_state", None)
    idx = idx.to(int64)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            state, step_input = None, idx
            for _ in range(max_new_tokens):
                if stateful is not None:
                    logits, state = stateful(step_input, state)  # only the tokens not yet read
                else:
                    crop = block_size is not None and idx.shape[1] > block_size
                    context = idx[:, -block_size:] if crop else idx
                    logits = model(context)
                last = backend.to_numpy(logits.data[:, -1, :])  # (B, vocab_size)
                tokens = _sample(last, temperature, top_k, uniforms(last.shape[0]))
                step_input = Tensor._wrap(backend.from_numpy(tokens.astype(np.int64)[:, None]), idx.device)
                idx = cat([idx, step_input], 1)
    finally:
        model.train(was_training)
    return idx
