"""`zt train` outputs as language models: a run folder (or its model.safetensors, or a checkpoint) whose recipe
trained a GPT becomes the transformer's ModelConfig, its weights and its character or byte tokenizer.

>>> run = read_train_run("runs/shakespeare_gpt")
>>> run.config.architecture, run.config.num_layers, run.tokenizer.vocab_size
('gpt', 4, 65)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data.text import tokenizer_from_dict
from ..io.safetensors import load_file, safe_open
from ..train.checkpoint import FORMAT, MODEL_FORMAT, list_checkpoints
from .config import ModelConfig
from .tokenizer import IncrementalDecoder
from .weights import WeightsError


@dataclass
class TrainRun:
    path: Path  # the weights file read
    config: ModelConfig
    tensors: dict  # name -> Tensor (our parameter names)
    tensor_types: dict  # name -> safetensors dtype (F32, BF16, ...)
    tokenizer: TrainTokenizer | None
    recipe: str  # TOML


class TrainTokenizer:
    """The char or byte tokenizer of a training run with the interface of llm.Tokenizer: no special tokens, no
    chat template."""

    bos_token_id = None
    eos_token_id = None
    chat_template = None
    special_tokens = {"bos_token": None, "eos_token": None, "unk_token": None, "pad_token": None}

    def __init__(self, inner):
        self.inner = inner
        self.kind = f"{inner.kind} (zt train)"
        self.eos_token_ids: set[int] = set()

    @property
    def vocab_size(self) -> int:
        return self.inner.vocab_size

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.inner.encode(text).tolist()

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.inner.decode(list(ids))

    def incremental_decoder(self, prompt_ids=(), skip_special_tokens: bool = True) -> IncrementalDecoder:
        return IncrementalDecoder(self, prompt_ids, skip_special_tokens)

    def apply_chat_template(self, messages, add_generation_prompt: bool = True, **kwargs) -> str:
        raise ValueError("a zt train model has no chat template; pass a plain prompt instead")

    def __repr__(self) -> str:
        return f"TrainTokenizer({self.inner!r})"


def is_train_run(path) -> bool:
    """A run folder (model.safetensors or checkpoints/ with recipe.toml) or a zigtensor model/checkpoint file."""
    p = Path(path)
    if p.is_dir():
        return (p / "model.safetensors").is_file() and _format(p / "model.safetensors") == MODEL_FORMAT \
            or bool(list_checkpoints(p / "checkpoints"))
    return p.is_file() and p.suffix == ".safetensors" and _format(p) in (MODEL_FORMAT, FORMAT)


def _format(path: Path) -> str | None:
    try:
        with safe_open(path) as f:
            return (f.metadata() or {}).get("format")
    except (OSError, ValueError):
        return None


def _weights_file(path: Path) -> Path:
    if path.is_file():
        return path
    model = path / "model.safetensors"
    if model.is_file():
        return model
    checkpoints = list_checkpoints(path / "checkpoints")
    if not checkpoints:
        raise WeightsError(f"{path}: not a zt train run (no model.safetensors and no checkpoints/)")
    return checkpoints[-1]


def read_train_run(path) -> TrainRun:
    """The config, weights and tokenizer of a zt train run folder or weights file (a GPT recipe)."""
    from ..models.gpt import GPTConfig
    from ..train.recipe import parse_recipe

    file = _weights_file(Path(path))
    with safe_open(file) as f:
        meta = f.metadata() or {}
        types = {name: f.get_slice(name).get_dtype() for name in f.offset_keys()}
    if "recipe" not in meta:
        raise WeightsError(f"{file}: no 'recipe' metadata (not written by zt train)")
    recipe = parse_recipe(meta["recipe"], source=f"{file} (recipe metadata)")
    if recipe.model.name != "gpt":
        raise WeightsError(f"{file}: its recipe trains model {recipe.model.name!r}; only 'gpt' runs are language "
                           "models the LLM API runs")
    info = json.loads(meta.get("data_info", "{}"))
    vocab_size = info.get("vocab_size")
    block_size = recipe.model.block_size or info.get("block_size")
    if not isinstance(vocab_size, int) or not isinstance(block_size, int):
        raise WeightsError(f"{file}: metadata 'data_info' gives no vocab_size and block_size ({info!r})")
    m = recipe.model
    config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=m.n_layer, n_head=m.n_head,
                       n_embd=m.n_embd, dropout=0.0, bias=m.bias).model_config()
    tensors = load_file(file)
    if meta.get("format") == FORMAT:  # a checkpoint: the model's tensors are model.<name>
        tensors = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    types = {name: types[name if meta.get("format") != FORMAT else "model." + name] for name in tensors}
    tokenizer = TrainTokenizer(tokenizer_from_dict(json.loads(meta["tokenizer"]))) if "tokenizer" in meta else None
    return TrainRun(path=file, config=config, tensors=tensors, tensor_types=types, tokenizer=tokenizer,
                    recipe=meta["recipe"])
