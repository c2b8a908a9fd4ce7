"""zigtensor.io: reading and writing tensors to files.

safetensors (our own reader and writer: strict validation, memory-mapped lazy loading, atomic writes):

    zt.save_file({"w": w}, "model.safetensors", metadata={"step": "10"})
    tensors = zt.load_file("model.safetensors")
    with zt.io.safe_open("model.safetensors") as f:
        w = f.get_tensor("w")

and whole objects (checkpoints: nested dicts and lists of tensors and plain values) in the same format, no pickle:

    zt.save({"model": model.state_dict(), "step": 10}, "ckpt.zt")
    ckpt = zt.load("ckpt.zt", map_location="cpu")
"""

from __future__ import annotations

from .errors import GGUFError, SafetensorsError
from .objects import load, save
from .safetensors import load_file, safe_open, save_file

__all__ = ["GGUFError", "SafetensorsError", "load", "load_file", "safe_open", "save", "save_file"]
