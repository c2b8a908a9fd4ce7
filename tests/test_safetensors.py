"""zigtensor.io safetensors: bit-exact round trips against the safetensors package, byte-identical files,
a corpus of malformed files, lazy memory-mapped access, copy-on-write loads and atomic writes."""

from __future__ import annotations

import json
import mmap
import os
import stat
import struct
import time
import tracemalloc

import numpy as np
import pytest
import safetensors_corpus as corpus
from oracle import oracle, torch, torch_dtype

import zigtensor as zt
from zigtensor.io import SafetensorsError, safe_open

oracle("safetensors")
import safetensors.numpy as st_numpy  # noqa: E402
import safetensors.torch as st_torch  # noqa: E402
from safetensors import safe_open as ref_safe_open  # noqa: E402

DTYPES = [zt.float64, zt.float32, zt.float16, zt.bfloat16, zt.int64, zt.int32, zt.int16, zt.int8, zt.uint8,
          zt.bool]
SHAPES = [(3, 4), (), (0,), (2, 0, 3), (7,), (2, 1, 3)]


# ---------------------------------------------------------------------------------------------------- helpers
def random_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Every dtype in every shape, filled with random bits (NaN payloads, -0.0, subnormals, inf included)."""
    rng = np.random.default_rng(seed)
    out = {}
    for dt in DTYPES:
        for i, shape in enumerate(SHAPES):
            n = int(np.prod(shape, dtype=np.int64))
            if dt is zt.bool:
                arr = rng.integers(0, 2, n).astype(np.bool_)
            else:
                arr = rng.integers(0, 256, n * dt.itemsize, dtype=np.uint8).view(dt.np)
            out[f"layer.{rng.integers(100)}.{dt.name}_{i}"] = arr.reshape(shape)
    return dict(sorted(out.items(), key=lambda kv: rng.random()))  # insertion order must not matter


def to_torch(arr: np.ndarray):
    if arr.dtype == zt.bfloat16.np:
        return torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(arr.copy())


def torch_bytes(t) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def zt_bytes(t: zt.Tensor) -> bytes:
    return np.ascontiguousarray(t.numpy()).tobytes()


def header_of(raw: bytes) -> tuple[bytes, bytes]:
    n = struct.unpack("<Q", raw[:8])[0]
    return raw[8:8 + n], raw[8 + n:]


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# ------------------------------------------------------------------------------------------------ round trips
def test_our_save_their_load(tmp_path):
    arrays = random_arrays(1)
    zt.save_file({k: zt.from_numpy(a) for k, a in arrays.items()}, tmp_path / "a.safetensors")
    theirs = st_torch.load_file(tmp_path / "a.safetensors")
    assert set(theirs) == set(arrays)
    for k, a in arrays.items():
        t = theirs[k]
        assert t.dtype == torch_dtype(zt.dtypes.from_numpy(a.dtype)), k
        assert tuple(t.shape) == a.shape, k
        assert torch_bytes(t) == a.tobytes(), k


def test_their_save_our_load(tmp_path):
    arrays = random_arrays(2)
    st_torch.save_file({k: to_torch(a) for k, a in arrays.items()}, tmp_path / "b.safetensors")
    ours = zt.load_file(tmp_path / "b.safetensors")
    assert set(ours) == set(arrays)
    for k, a in arrays.items():
        assert ours[k].dtype is zt.dtypes.from_numpy(a.dtype), k
        assert ours[k].shape == a.shape, k
        assert zt_bytes(ours[k]) == a.tobytes(), k


ESCAPES = {"é\n\x00\x1f\x7f\"\\/": "ü\u2028\t\r\b\f😀"}  # what JSON must escape, and what it must not


@pytest.mark.parametrize("metadata", [None, {}, {"format": "pt"}, ESCAPES],
                         ids=["none", "empty", "one-key", "escapes"])
def test_bytes_identical_to_reference(tmp_path, metadata):
    arrays = random_arrays(3)
    arrays["\u00e9\x01\"\\ name/😀"] = np.arange(3, dtype=np.float32)
    arrays[""] = np.zeros((), np.int8)
    zt.save_file({k: zt.from_numpy(a) for k, a in arrays.items()}, tmp_path / "ours", metadata=metadata)
    st_torch.save_file({k: to_torch(a) for k, a in arrays.items()}, tmp_path / "torch", metadata=metadata)
    st_numpy.save_file(arrays, tmp_path / "numpy", metadata=metadata)
    ours = read(tmp_path / "ours")
    assert ours == read(tmp_path / "torch")
    assert ours == read(tmp_path / "numpy")
    h = header_of(ours)[0]
    assert len(h) % 8 == 0 and h.rstrip(b" ").endswith(b"}") and len(h) - len(h.rstrip(b" ")) < 8


def test_many_metadata_keys(tmp_path):
    # The reference writes metadata keys in hash-map order (it varies between runs); we sort them.
    md = {f"key{i}": f"value {i}" for i in (3, 1, 2, 0)}
    arrays = random_arrays(4)
    zt.save_file({k: zt.from_numpy(a) for k, a in arrays.items()}, tmp_path / "ours", metadata=md)
    st_numpy.save_file(arrays, tmp_path / "ref", metadata=md)
    (h_ours, d_ours), (h_ref, d_ref) = header_of(read(tmp_path / "ours")), header_of(read(tmp_path / "ref"))
    assert d_ours == d_ref and len(h_ours) == len(h_ref)
    assert json.loads(h_ours) == json.loads(h_ref)
    assert list(json.loads(h_ours)["__metadata__"]) == sorted(md)
    with safe_open(tmp_path / "ref") as f:
        assert f.metadata() == md
    with ref_safe_open(tmp_path / "ours", "np") as f:
        assert f.metadata() == md


def test_zero_size_and_0d(tmp_path):
    tensors = {"scalar": zt.tensor(2.5), "empty": zt.zeros(0, 3), "empty_int": zt.zeros(4, 0, dtype=zt.int64),
               "scalar_bool": zt.tensor(True)}
    zt.save_file(tensors, tmp_path / "z")
    st_numpy.save_file({k: v.numpy() for k, v in tensors.items()}, tmp_path / "ref")
    assert read(tmp_path / "z") == read(tmp_path / "ref")
    back = zt.load_file(tmp_path / "z")
    for k, v in tensors.items():
        assert back[k].shape == v.shape and back[k].dtype is v.dtype
        assert zt_bytes(back[k]) == zt_bytes(v)
    assert back["scalar"].item() == 2.5 and back["scalar_bool"].item() is True
    # Only zero-size tensors: an empty data buffer, nothing to map.
    zt.save_file({"e": zt.zeros(0)}, tmp_path / "only-empty")
    assert zt.load_file(tmp_path / "only-empty")["e"].shape == (0,)
    zt.save_file({}, tmp_path / "nothing")
    assert read(tmp_path / "nothing") == b"\x08" + b"\0" * 7 + b"{}      "
    assert zt.load_file(tmp_path / "nothing") == {}


def test_bfloat16_bits_exact(tmp_path):
    bits = np.array([0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC1, 0xFFFF, 0x0001, 0x807F, 0x3F80], np.uint16)
    t = zt.from_numpy(bits.view(zt.bfloat16.np))
    zt.save_file({"b": t}, tmp_path / "b")
    assert (zt.load_file(tmp_path / "b")["b"].numpy().view(np.uint16) == bits).all()
    assert (st_torch.load_file(tmp_path / "b")["b"].view(torch.int16).numpy().view(np.uint16) == bits).all()


def test_noncontiguous_tensor_is_written_in_c_order(tmp_path):
    base = zt.arange(12, dtype=zt.float32).reshape(3, 4)
    zt.save_file({"t": base.T, "s": base[:, ::2]}, tmp_path / "nc")
    ref = {"t": np.ascontiguousarray(base.numpy().T), "s": np.ascontiguousarray(base.numpy()[:, ::2])}
    st_numpy.save_file(ref, tmp_path / "ref")
    assert read(tmp_path / "nc") == read(tmp_path / "ref")


# -------------------------------------------------------------------------------------------- dtypes we widen
def test_float8_widened_to_float32(tmp_path):
    bits = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    src = {"e4m3": bits.view(torch.float8_e4m3fn), "e5m2": bits.clone().view(torch.float8_e5m2),
           "x": torch.ones(2)}
    st_torch.save_file(src, tmp_path / "f8")
    out = zt.load_file(tmp_path / "f8")
    for k in ("e4m3", "e5m2"):
        assert out[k].dtype is zt.float32
        np.testing.assert_array_equal(out[k].numpy(), src[k].float().numpy())  # NaN == NaN here
    with safe_open(tmp_path / "f8") as f:
        assert f.get_slice("e4m3").get_dtype() == "F8_E4M3"
        np.testing.assert_array_equal(f.get_slice("e5m2")[10:20].numpy(), src["e5m2"][10:20].float().numpy())


def test_unsigned_widened_or_refused(tmp_path):
    src = {"u16": torch.tensor([0, 1, 65535], dtype=torch.uint16),
           "u32": torch.tensor([0, 2**32 - 1], dtype=torch.uint32),
           "u64": torch.tensor([2**63 + 5], dtype=torch.uint64), "ok": torch.arange(3)}
    st_torch.save_file(src, tmp_path / "u")
    with pytest.raises(SafetensorsError, match=r"tensor 'u64' has dtype U64.*int64 cannot hold"):
        zt.load_file(tmp_path / "u")
    with safe_open(tmp_path / "u") as f:  # the rest of the file still loads
        u16, u32 = f.get_tensor("u16"), f.get_tensor("u32")
        assert f.get_tensor("ok").tolist() == [0, 1, 2]
    assert u16.dtype is zt.int32 and u16.tolist() == [0, 1, 65535]
    assert u32.dtype is zt.int64 and u32.tolist() == [0, 2**32 - 1]


def test_complex_refused_with_its_name(tmp_path):
    st_torch.save_file({"c": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "c")
    with pytest.raises(SafetensorsError, match="tensor 'c' has dtype C64.*no complex dtype"):
        zt.load_file(tmp_path / "c")


def test_misaligned_data_and_odd_bools(tmp_path):
    # Written by hand: a 1-byte tensor first leaves the float32 misaligned; BOOL bytes other than 0/1.
    header = ('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
              '"b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]},'
              '"c":{"dtype":"BOOL","shape":[3],"data_offsets":[9,12]}}')
    data = b"\x07" + np.array([1.5, -2.0], "<f4").tobytes() + b"\x00\x02\xff"
    (tmp_path / "m").write_bytes(corpus.st(header, data))
    out = zt.load_file(tmp_path / "m")
    assert out["a"].tolist() == [7] and out["b"].tolist() == [1.5, -2.0]
    assert out["c"].tolist() == [False, True, True] and (out["c"] == zt.tensor([False, True, True])).all()


# -------------------------------------------------------------------------------------------- malformed files
@pytest.mark.parametrize("name,raw,words", corpus.CASES, ids=[c[0] for c in corpus.CASES])
def test_malformed_file_raises(tmp_path, name, raw, words):
    path = tmp_path / name
    path.write_bytes(raw)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(SafetensorsError) as info:
            zt.load_file(path)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert msg.startswith(str(path)), msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert elapsed < 1.0
    assert peak < 16 * len(raw) + (1 << 20), f"{peak} bytes allocated to reject a {len(raw)}-byte file"
    with pytest.raises(SafetensorsError):
        safe_open(path)


def test_corpus_is_large_and_distinct():
    assert len(corpus.CASES) >= 40
    assert len({c[0] for c in corpus.CASES}) == len({c[1] for c in corpus.CASES}) == len(corpus.CASES)


@pytest.mark.parametrize("name,raw", [c[:2] for c in corpus.CASES], ids=[c[0] for c in corpus.CASES])
def test_reference_agrees_on_corpus(tmp_path, name, raw):
    """The reference rejects every case too, except the few where we are stricter on purpose."""
    path = tmp_path / name
    path.write_bytes(raw)
    try:
        with ref_safe_open(path, "pt") as f:
            for k in f.offset_keys():
                f.get_tensor(k)
        accepted = True
    except Exception:
        accepted = False
    assert accepted == (name in corpus.STRICTER)


# -------------------------------------------------------------------------------------------------- safe_open
def test_safe_open_api(tmp_path):
    arrays = {"b": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "a": np.arange(5, dtype=np.float64),
              "c": np.array([1, 2], np.int8)}
    st_numpy.save_file(arrays, tmp_path / "s", metadata={"k": "v"})
    with safe_open(tmp_path / "s") as f:
        assert f.keys() == ["a", "b", "c"] and f.offset_keys() == ["a", "b", "c"]
        assert f.metadata() == {"k": "v"} and "b" in f and len(f) == 3
        np.testing.assert_array_equal(f.get_tensor("b").numpy(), arrays["b"])
        s = f.get_slice("b")
        assert s.get_shape() == [2, 3, 4] and s.get_dtype() == "F32"
        for idx in [(slice(None), slice(1, 3)), 1, (Ellipsis, 0), (0, 2, 3)]:
            np.testing.assert_array_equal(s[idx].numpy(), arrays["b"][idx])
        with pytest.raises(KeyError, match="no tensor named 'zz'"):
            f.get_tensor("zz")
        kept = f.get_tensor("c")
    with pytest.raises(ValueError, match="closed"):
        f.get_tensor("a")
    assert kept.tolist() == [1, 2]  # tensors outlive the file object
    st_numpy.save_file(arrays, tmp_path / "nometa")
    with safe_open(tmp_path / "nometa") as f:
        assert f.metadata() is None


def test_safe_open_is_lazy(tmp_path):
    """A 4 GiB tensor in a sparse file: opening, listing, metadata and a view read almost nothing."""
    big = 2**30  # float32 elements
    header = json.dumps({"__metadata__": {"note": "sparse"},
                         "big": {"dtype": "F32", "shape": [big], "data_offsets": [0, 4 * big]},
                         "tail": {"dtype": "I64", "shape": [1], "data_offsets": [4 * big, 4 * big + 8]}},
                        separators=(",", ":"))
    path = tmp_path / "sparse"
    with open(path, "wb") as f:
        f.write(corpus.st(header))
        f.truncate(f.tell() + 4 * big + 8)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with safe_open(path) as f:
            assert f.keys() == ["big", "tail"] and f.metadata() == {"note": "sparse"}
            t = f.get_tensor("big")
            first = f.get_slice("big")[:4]
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert t.shape == (big,) and first.tolist() == [0.0] * 4
    assert peak < (1 << 20) and elapsed < 0.5, (peak, elapsed)
    assert not t.numpy().flags.owndata  # a view of the mapping, not a copy


def test_inplace_ops_never_write_the_file(tmp_path):
    path = tmp_path / "cow"
    zt.save_file({"w": zt.arange(6, dtype=zt.float32), "i": zt.arange(4)}, path)
    before = read(path)
    loaded = zt.load_file(path)
    assert not loaded["w"].numpy().flags.owndata  # memory-mapped
    loaded["w"].add_(100.0)
    loaded["w"][0] = -1.0
    loaded["i"].zero_()
    assert loaded["w"].tolist() == [-1.0, 101.0, 102.0, 103.0, 104.0, 105.0]
    del loaded
    assert read(path) == before
    assert zt.load_file(path)["w"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_no_mmap_falls_back_to_reading(tmp_path, monkeypatch):
    def no_mmap(*args, **kwargs):
        raise OSError("this filesystem cannot map files")

    zt.save_file({"a": zt.arange(5, dtype=zt.float32), "b": zt.tensor([True, False])}, tmp_path / "f")
    monkeypatch.setattr(mmap, "mmap", no_mmap)
    out = zt.load_file(tmp_path / "f")
    assert out["a"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and out["b"].tolist() == [True, False]


# ---------------------------------------------------------------------------------------------- atomic writes
def _listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_overwrite_while_mapped_keeps_loaded_data(tmp_path):
    path = tmp_path / "m.safetensors"
    zt.save_file({"w": zt.arange(1000, dtype=zt.float32)}, path)
    old = zt.load_file(path)["w"]
    inode = os.stat(path).st_ino
    zt.save_file({"w": zt.full((1000,), 7.0)}, path)
    assert os.stat(path).st_ino != inode
    assert old.tolist() == list(range(1000))  # the old mapping still reads the old file
    assert zt.load_file(path)["w"].tolist() == [7.0] * 1000
    assert _listing(tmp_path) == ["m.safetensors"]


@pytest.mark.parametrize("tensors,metadata,error", [
    ({"a": zt.ones(2), "b": [1.0, 2.0]}, None, TypeError),
    ({"a": zt.ones(2), 3: zt.ones(2)}, None, TypeError),
    ({"__metadata__": zt.ones(2)}, None, SafetensorsError),
    ({"a": zt.ones(2)}, {"k": 1}, TypeError),
    ({"a": zt.ones(2)}, ["k"], TypeError),
    ([zt.ones(2)], None, TypeError),
], ids=["value-not-tensor", "name-not-str", "reserved-name", "metadata-not-str", "metadata-not-dict",
        "not-dict"])
def test_invalid_save_leaves_old_file(tmp_path, tensors, metadata, error):
    path = tmp_path / "keep"
    zt.save_file({"old": zt.ones(3)}, path)
    before = read(path)
    with pytest.raises(error):
        zt.save_file(tensors, path, metadata=metadata)
    assert read(path) == before and _listing(tmp_path) == ["keep"]


@pytest.mark.parametrize("where", ["numpy", "fsync", "replace"])
def test_failure_midway_leaves_old_file_and_no_temp(tmp_path, monkeypatch, where):
    path = tmp_path / "keep"
    zt.save_file({"old": zt.ones(3)}, path)
    before = read(path)

    def boom(*args, **kwargs):
        raise OSError(f"injected failure in {where}")

    if where == "numpy":
        calls = []
        real = zt.Tensor.numpy

        def numpy_then_fail(self):
            calls.append(1)
            if len(calls) == 2:  # the second tensor, after the first was written
                raise RuntimeError("injected failure in numpy")
            return real(self)

        monkeypatch.setattr(zt.Tensor, "numpy", numpy_then_fail)
    else:
        monkeypatch.setattr(os, where, boom)
    with pytest.raises((OSError, RuntimeError), match="injected"):
        zt.save_file({"a": zt.ones(1000), "b": zt.ones(1000)}, path)
    monkeypatch.undo()
    assert read(path) == before and _listing(tmp_path) == ["keep"]


def test_file_modes(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    zt.save_file({"a": zt.ones(1)}, tmp_path / "new")
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o666 & ~umask
    os.chmod(tmp_path / "new", 0o600)
    zt.save_file({"a": zt.ones(2)}, tmp_path / "new")
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o600


def test_save_through_symlink_replaces_target(tmp_path):
    (tmp_path / "blobs").mkdir()
    target = tmp_path / "blobs" / "x"
    zt.save_file({"a": zt.ones(1)}, target)
    os.symlink(target, tmp_path / "link")
    zt.save_file({"a": zt.zeros(1)}, tmp_path / "link")
    assert (tmp_path / "link").is_symlink()
    assert zt.load_file(target)["a"].tolist() == [0.0]


def test_exports():
    assert zt.save_file is zt.io.save_file and zt.load_file is zt.io.load_file
    assert issubclass(zt.io.SafetensorsError, ValueError)
