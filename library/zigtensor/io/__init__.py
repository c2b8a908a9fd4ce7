"""zigtensor.io: reading and writing tensors to files.

safetensors (our own reader and writer: strict validation, memory-mapped lazy loading, atomic writes):

    zt.save_file({"w": w}, "model.safetensors", metadata={"step": "10"})
    tensors = zt.load_file("model.safetensors")
    with zt.io.safe_open("model.safetensors") as f:
        w = f.get_tensor("w")
"""

from __future__ import annotations

from .errors import GGUFError, SafetensorsError
from .safetensors import load_file, safe_open, save_file

__all__ = ["GGUFError", "SafetensorsError", "load_file", "safe_open", "save_file"]
