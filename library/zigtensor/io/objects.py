"""zt.save / zt.load: a nested object of tensors (a checkpoint: model and optimizer state dicts, the step, the
config) in one safetensors file, as torch.save / torch.load are used, without pickle.

    zt.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": 1200}, "ckpt.zt")
    ckpt = zt.load("ckpt.zt", map_location="cpu")

The tensors are the file's tensors (named t0, t1, ...); the structure around them is JSON in the file's metadata
(key "zigtensor.object"). What can be stored: dicts (keys str, int, float, bool or None), lists, tuples, str, int,
float (nan and inf too), bool, None, zigtensor Tensors (with requires_grad and device) and NumPy arrays. Anything
else is refused at save time with its path in the object, so loading never runs code from the file (PyTorch's
`weights_only=True`, by construction). A tensor that appears twice (tied weights) is stored once and loads as one
tensor in both places.
"""

from __future__ import annotations

import json
import math
import numbers

import numpy as np

from .errors import SafetensorsError
from .safetensors import load_file, save_file

OBJECT_KEY = "zigtensor.object"
FORMAT = "zigtensor.save-1"


def _path(path: str, key) -> str:
    return f"{path}[{key!r}]"


def save(obj, f) -> None:
    """Write obj (see the module docstring for what it may hold) to the file path f, atomically."""
    from ..creation import from_numpy
    from ..tensor import Tensor

    tensors: dict[str, Tensor] = {}
    names: dict[int, str] = {}  # id(tensor or array) -> its name: a shared tensor is stored once
    keep = []  # NOTE: holds the objects whose ids are keys, so no id is reused while saving

    def tensor_name(value, array: np.ndarray | None) -> str:
        name = names.get(id(value))
        if name is None:
            name = names[id(value)] = f"t{len(tensors)}"
            tensors[name] = from_numpy(np.ascontiguousarray(array)) if array is not None else value.detach()
            keep.append(value)
        return name

    def encode(value, path: str):
        if value is None or isinstance(value, (bool, str)):
            return {"value": value}
        if isinstance(value, numbers.Integral):
            return {"value": int(value)}
        if isinstance(value, numbers.Real):
            v = float(value)
            return {"float": repr(v)} if not math.isfinite(v) else {"value": v}
        if isinstance(value, Tensor):
            return {"tensor": tensor_name(value, None), "requires_grad": bool(value.requires_grad),
                    "device": str(value.device)}
        if isinstance(value, np.ndarray):
            return {"ndarray": tensor_name(value, value)}
        if isinstance(value, dict):
            items = []
            for k, v in value.items():
                if not (k is None or isinstance(k, (str, bool, numbers.Integral, numbers.Real))):
                    raise TypeError(f"zt.save: cannot store a dict key of type {type(k).__name__} at {path}; keys "
                                    "must be str, int, float, bool or None")
                items.append([encode(k, path), encode(v, _path(path, k))])
            return {"dict": items}
        if isinstance(value, (list, tuple)):
            kind = "list" if isinstance(value, list) else "tuple"
            return {kind: [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        raise TypeError(f"zt.save: cannot store an object of type {type(value).__name__} at {path}; zt.save holds "
                        "dicts, lists, tuples, str, numbers, bool, None, Tensors and NumPy arrays (no pickle)")

    structure = encode(obj, "obj")
    save_file(tensors, f, metadata={OBJECT_KEY: json.dumps(structure), "format": FORMAT})


def load(f, map_location=None):
    """The object zt.save wrote to f. Tensors go to map_location (a device or its name) when given, else to the
    device they were saved from."""
    from ..device import device as as_device
    from .safetensors import safe_open

    with safe_open(f) as handle:
        metadata = handle.metadata() or {}
    raw = metadata.get(OBJECT_KEY)
    if raw is None:
        raise SafetensorsError(f"zt.load: {f} was not written by zt.save (no {OBJECT_KEY!r} in its metadata); "
                               "read plain safetensors files with zt.load_file")
    stored = load_file(f)
    target = None if map_location is None else as_device(map_location)
    loaded: dict[str, object] = {}

    def saved_device(name: str):
        try:
            return as_device(name)
        except RuntimeError as e:
            raise RuntimeError(f"zt.load: {f} holds tensors saved on {name}, which is not available here "
                               f"({str(e).splitlines()[0]}); pass map_location='cpu' to load them on the CPU") from None

    def decode(node):
        if "value" in node:
            return node["value"]
        if "float" in node:
            return float(node["float"])
        if "tensor" in node:
            name = node["tensor"]
            if name not in loaded:
                t = stored[name]
                dev = target if target is not None else saved_device(node.get("device", "cpu"))
                t = t.to(dev) if dev is not t.device else t
                loaded[name] = t.detach().requires_grad_(True) if node.get("requires_grad") else t
            return loaded[name]
        if "ndarray" in node:
            name = node["ndarray"]
            if name not in loaded:
                loaded[name] = np.array(stored[node["ndarray"]].numpy())
            return loaded[name]
        if "dict" in node:
            return {decode(k): decode(v) for k, v in node["dict"]}
        if "list" in node:
            return [decode(v) for v in node["list"]]
        if "tuple" in node:
            return tuple(decode(v) for v in node["tuple"])
        raise SafetensorsError(f"zt.load: {f} has an object node of unknown kind {sorted(node)}")

    try:
        return decode(json.loads(raw))
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise SafetensorsError(f"zt.load: the object structure in {f} is damaged ({type(e).__name__}: {e})") from None
