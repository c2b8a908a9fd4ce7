"""zigtensor.io.gguf against the gguf package: our block decoders equal gguf.quants.dequantize bit for bit."""

from __future__ import annotations

import os

import numpy as np
import pytest
from llm_fixtures import encode_tensor, random_blocks, smollm2_gguf, write_gguf
from oracle import oracle

from zigtensor.io import GGUFError
from zigtensor.io.gguf import GGML_BLOCK_LAYOUTS, dequantize, open_gguf, tensor_nbytes

gguf = oracle("gguf")

QUANTIZED = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
QUANTIZABLE = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "BF16"]  # types gguf.quants.quantize can produce


def _oracle(raw: np.ndarray, type_name: str) -> np.ndarray:
    return gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[type_name]).astype(np.float32)


def test_block_layouts_match_ggml():
    for name, layout in GGML_BLOCK_LAYOUTS.items():
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]] == layout, name


@pytest.mark.parametrize("type_name", QUANTIZED)
@pytest.mark.parametrize("rows", [1, 5])
def test_random_blocks_match_oracle(type_name, rows):
    rng = np.random.default_rng(rows)
    block, nbytes = GGML_BLOCK_LAYOUTS[type_name]
    per_row = 3
    raw = random_blocks(type_name, rows * per_row, rng).reshape(rows, per_row * nbytes)
    got = dequantize(raw, type_name, (rows, per_row * block))
    want = _oracle(raw, type_name)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("type_name", QUANTIZABLE)
def test_quantized_values_match_oracle(type_name):
    rng = np.random.default_rng(1)
    values = rng.standard_normal((4, 2, 64)).astype(np.float32) * 3
    raw = gguf.quants.quantize(values, gguf.GGMLQuantizationType[type_name])
    got = dequantize(raw, type_name, values.shape)
    np.testing.assert_array_equal(got, _oracle(raw, type_name))
    # and the decoded values are the quantized approximation of the input
    scale = {"BF16": 1e-2, "Q8_0": 2e-2}.get(type_name, 0.5)
    np.testing.assert_allclose(got, values, atol=scale * np.abs(values).max())


@pytest.mark.parametrize("type_name,dtype", [("F32", np.float32), ("F16", np.float16)])
def test_float_types(type_name, dtype):
    values = np.random.default_rng(2).standard_normal((3, 7)).astype(dtype)
    got = dequantize(values.view(np.uint8), type_name, (3, 7))
    np.testing.assert_array_equal(got, values.astype(np.float32))
    np.testing.assert_array_equal(dequantize(values.tobytes(), type_name, (3, 7)), got)


def test_bf16_special_values():
    import ml_dtypes

    values = np.array([0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, 1e-40, 3e38], dtype=ml_dtypes.bfloat16)
    got = dequantize(values.view(np.uint8), "BF16", (8,))
    np.testing.assert_array_equal(got, values.astype(np.float32))
    assert np.signbit(got[1])


def test_unsupported_type_names_tensor_and_type():
    with pytest.raises(GGUFError, match=r"tensor 'blk.0.attn_q.weight': ggml type Q2_K is not supported"):
        dequantize(np.zeros(84, np.uint8), "Q2_K", (256,), name="blk.0.attn_q.weight")
    with pytest.raises(GGUFError, match="IQ4_XS"):
        dequantize(np.zeros(136, np.uint8), gguf.GGMLQuantizationType.IQ4_XS, (256,))


def test_bad_sizes():
    with pytest.raises(GGUFError, match=r"takes 36 bytes, got 34"):
        dequantize(np.zeros(34, np.uint8), "Q4_0", (2, 32), name="w")
    with pytest.raises(GGUFError, match=r"last dimension of shape \(2, 48\) is 48, not a multiple of 32"):
        dequantize(np.zeros(54, np.uint8), "Q4_0", (2, 48))
    assert tensor_nbytes("Q6_K", (3, 512)) == 3 * 2 * 210


# ---------------------------------------------------------------------------------------------- files
TENSORS = {
    "a.f32": ((3, 5), "F32"),
    "b.f16": ((2, 4, 6), "F16"),
    "c.bf16": ((8, 4), "BF16"),
    "d.q8_0": ((2, 64), "Q8_0"),
    "e.q4_0": ((3, 32), "Q4_0"),
    "f.q4_1": ((32,), "Q4_1"),
    "g.q5_0": ((4, 96), "Q5_0"),
    "h.q5_1": ((2, 32), "Q5_1"),
    "i.q4_k": ((2, 256), "Q4_K"),
    "j.q5_k": ((3, 512), "Q5_K"),
    "k.q6_k": ((2, 2, 256), "Q6_K"),
}
METADATA = {"test.count": 7, "test.negative": -3, "test.ratio": 0.25, "test.flag": True, "test.name": "zig ✓",
            "test.words": ["a", "bc", "ü"], "test.numbers": [1, 2, 3]}


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    return write_gguf(str(tmp_path_factory.mktemp("gguf") / "small.gguf"), "test", METADATA, TENSORS)


def test_file_metadata_plain_values(small_file):
    f = open_gguf(small_file)
    assert f.version == 3
    assert f.metadata["general.architecture"] == "test"
    for key, value in METADATA.items():
        assert f.metadata[key] == pytest.approx(value) if isinstance(value, float) else f.metadata[key] == value
        assert type(f.metadata[key]) is type(value), key
    assert "GGUF.version" not in f.metadata


def test_file_tensors_match_oracle(small_file):
    f = open_gguf(small_file)
    reader = gguf.GGUFReader(small_file)
    assert list(f.tensors) == list(TENSORS)
    for t in reader.tensors:
        info = f.tensors[t.name]
        shape, type_name = TENSORS[t.name]
        assert info.shape == shape and info.ggml_type == type_name and info.numel == int(np.prod(shape))
        assert info.nbytes == t.n_bytes == tensor_nbytes(type_name, shape)
        got = f.load(t.name)
        assert got.shape == shape and got.dtype == np.float32
        np.testing.assert_array_equal(got.reshape(-1), _oracle(t.data, type_name).reshape(-1), err_msg=t.name)
    with pytest.raises(KeyError, match="no tensor named 'nope'"):
        f.load("nope")


def test_not_gguf(tmp_path):
    p = tmp_path / "model.gguf"
    p.write_text("this is not a model")
    with pytest.raises(GGUFError, match=r"model.gguf: not a GGUF file: it starts with b'this', expected the magic"):
        open_gguf(p)
    with pytest.raises(GGUFError, match="no such file"):
        open_gguf(tmp_path / "missing.gguf")
    with pytest.raises(GGUFError, match="is a directory"):
        open_gguf(tmp_path)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        open_gguf(empty)


@pytest.mark.parametrize("keep", [6, 40, 300, 0.5, "data-1"])
def test_truncated(small_file, tmp_path, keep):
    with open(small_file, "rb") as f:
        data = f.read()
    if keep == "data-1":  # one byte short of the last tensor's data (the file ends in alignment padding)
        n = max(i.offset + i.nbytes for i in open_gguf(small_file).tensors.values()) - 1
    else:
        n = int(len(data) * keep) if isinstance(keep, float) else keep
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:n])
    with pytest.raises(GGUFError, match="truncated") as e:
        open_gguf(cut)
    assert "\n" not in str(e.value) and str(cut) in str(e.value)


def test_unsupported_tensor_type_in_file(tmp_path):
    path = str(tmp_path / "q2k.gguf")
    w = gguf.GGUFWriter(path, "test")
    w.add_tensor("w.q2k", np.zeros((1, 84), np.uint8), raw_shape=(1, 84), raw_dtype=gguf.GGMLQuantizationType.Q2_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = open_gguf(path)
    assert f.tensors["w.q2k"].ggml_type == "Q2_K"
    with pytest.raises(GGUFError, match="tensor 'w.q2k': ggml type Q2_K is not supported"):
        f.load("w.q2k")


def test_encode_tensor_helper_shapes():
    # the helper the model tests use writes rows of whole blocks
    raw = encode_tensor((2, 256), "Q6_K", np.random.default_rng(0))
    assert raw.shape == (2, 210)


# ------------------------------------------------------------------------------------------ real file
@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_gguf()
    return open_gguf(path), gguf.GGUFReader(path)


def test_smollm2_metadata(smollm2):
    smollm2, reader = smollm2
    assert set(smollm2.metadata) == {k for k in reader.fields if not k.startswith("GGUF.")}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        want = field.contents()
        assert smollm2.metadata[key] == want, key
        assert isinstance(smollm2.metadata[key], (str, int, float, bool, list)), key
    assert smollm2.metadata["general.architecture"] == "llama"
    assert len(smollm2.metadata["tokenizer.ggml.tokens"]) == 49152
    assert {t.ggml_type for t in smollm2.tensors.values()} == {"F32", "Q4_1", "Q8_0"}


def test_smollm2_tensors_match_oracle(smollm2):
    smollm2, reader = smollm2
    by_name = {t.name: t for t in reader.tensors}
    assert set(by_name) == set(smollm2.tensors)
    last = max(int(n.split(".")[1]) for n in by_name if n.startswith("blk."))
    chosen = [n for n in by_name if n == "token_embd.weight" or n.startswith(("blk.0.", f"blk.{last}."))]
    assert len(chosen) == 19
    for name in chosen:
        t = by_name[name]
        info = smollm2.tensors[name]
        assert info.shape == tuple(reversed(t.shape.tolist())) and info.ggml_type == t.tensor_type.name
        got = smollm2.load(name)
        np.testing.assert_array_equal(got, _oracle(t.data, info.ggml_type).reshape(info.shape), err_msg=name)
    assert os.path.getsize(smollm2.path) >= max(i.offset + i.nbytes for i in smollm2.tensors.values())
