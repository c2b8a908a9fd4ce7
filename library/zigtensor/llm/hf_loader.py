"""Hugging Face model folders: config.json, the weights (model.safetensors, or shards listed in
model.safetensors.index.json), the tokenizer files and generation_config.json.

>>> folder = HFFolder("path/to/model")
>>> folder.config["model_type"], len(folder.tensor_names())
('llama', 273)
>>> tensors = folder.tensors()          # name -> Tensor, memory-mapped: nothing is read until used

Weights are read with zigtensor's own safetensors reader (zigtensor.io); PyTorch .bin checkpoints are not
supported (they are pickles).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..io.safetensors import safe_open
from .weights import WeightsError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: cannot read {what}: {e}") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object for {what}, got {type(data).__name__}")
    return data


def is_hf_folder(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file()


class HFFolder:
    """The files of one HF model folder, checked when opened."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such folder")
        if not (self.path / "config.json").is_file():
            raise WeightsError(f"{self.path}: not a Hugging Face model folder (no config.json)")
        self.config = _read_json(self.path / "config.json", "the model config")
        gen = self.path / "generation_config.json"
        self.generation_config = _read_json(gen, "the generation config") if gen.is_file() else {}
        self.shards = self._shards()

    def _shards(self) -> dict[str, list[str]]:
        """shard file name -> the tensor names it holds (None: all of it)."""
        index = self.path / INDEX
        if index.is_file():
            weight_map = _read_json(index, "the shard index").get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise WeightsError(f"{index}: no 'weight_map' of tensor name -> shard file")
            shards: dict[str, list[str]] = {}
            for name, shard in weight_map.items():
                shards.setdefault(shard, []).append(name)
            for shard in shards:
                if not (self.path / shard).is_file():
                    raise WeightsError(f"{index}: lists shard {shard!r}, which is not in {self.path}")
            return shards
        if (self.path / SINGLE).is_file():
            return {SINGLE: None}
        found = sorted(p.name for p in self.path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".gguf"))
        hint = f" (it has {', '.join(found)}: only safetensors weights are read)" if found else ""
        raise WeightsError(f"{self.path}: no {SINGLE} or {INDEX}{hint}")

    def tensors(self) -> dict:
        """name -> Tensor of every weight, memory-mapped (copy-on-write): read only when used."""
        out = {}
        for shard, names in self.shards.items():
            with safe_open(self.path / shard) as f:
                keys = f.offset_keys() if names is None else names
                for name in keys:
                    if name not in f:
                        raise WeightsError(f"{self.path / INDEX}: {name!r} is listed in shard {shard!r}, "
                                           "which does not hold it")
                    out[name] = f.get_tensor(name)
        return out

    def tensor_types(self) -> dict[str, str]:
        """name -> safetensors dtype (F32, BF16, ...), from the headers only."""
        types = {}
        for shard in self.shards:
            with safe_open(self.path / shard) as f:
                for name in f.offset_keys():
                    types[name] = f.get_slice(name).get_dtype()
        return types

    def tensor_shapes(self) -> dict[str, tuple]:
        shapes = {}
        for shard in self.shards:
            with safe_open(self.path / shard) as f:
                for name in f.offset_keys():
                    shapes[name] = tuple(f.get_slice(name).get_shape())
        return shapes

    def has_tokenizer(self) -> bool:
        return (self.path / "tokenizer.json").is_file()

    def __repr__(self) -> str:
        return f"HFFolder({str(self.path)!r}, model_type={self.config.get('model_type')!r}, shards={len(self.shards)})"

