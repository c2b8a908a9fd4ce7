"""IDX files (the MNIST format): read and write them, and load an MNIST-style folder by dataset name.

An IDX file is a header, then the array's items in C order, all big-endian:

    bytes 0-1     0x00 0x00
    byte  2       dtype code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3       ndim
    4 * ndim      the dims, each an unsigned 32-bit int
    the rest      prod(dims) items, nothing after them

A file may be gzip-compressed; the reader tells by its first two bytes (0x1f 0x8b), never by its name.

>>> images, labels = load_image_dataset("fashion-mnist", split="train")
>>> images.shape, images.dtype, labels.dtype
((60000, 28, 28), dtype('uint8'), dtype('int64'))
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetNotFoundError

_DTYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("=").str[1:]: code for code, dt in _DTYPES.items()}  # "u1", "i4", "f8", ...
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """The array held by the (uncompressed) IDX bytes raw; name is the file that errors mention."""
    if len(raw) < 4:
        raise ValueError(f"{name}: not an IDX file: {len(raw)} bytes, shorter than the 4-byte magic")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{name}: not an IDX file: magic 0x{raw[:4].hex()} does not start with 0x0000")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02x} ({dt.name})" for c, dt in _DTYPES.items())
        raise ValueError(f"{name}: unknown IDX dtype code 0x{code:02x} in magic 0x{raw[:4].hex()}; "
                         f"expected one of {known}")
    if ndim == 0:
        raise ValueError(f"{name}: the IDX header declares 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{name}: truncated IDX header: {ndim} dims need a {header}-byte header, "
                         f"the file has {len(raw)} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _DTYPES[code]
    expected, found = math.prod(dims) * dtype.itemsize, len(raw) - header
    if found != expected:
        why = "truncated" if found < expected else f"{found - expected} trailing bytes"
        raise ValueError(f"{name}: IDX size mismatch: shape {dims} of {dtype.name} needs {expected} bytes of "
                         f"data after the {header}-byte header, found {found} ({why})")
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(dims), offset=header)
    return data.reshape(dims).astype(dtype.newbyteorder("="))  # a native-endian, writable copy


def read_idx(path) -> np.ndarray:
    """The array stored in the IDX file at path, gzip-compressed or not.

    Raises ValueError, naming the file and the numbers, for a bad magic, an unknown dtype code, a
    truncated file or a size that does not match the header.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return parse_idx(raw, str(path))


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write array as an IDX file; compress with gzip when asked, or by default when path ends in .gz."""
    arr = np.asarray(array)
    code = _CODES.get(arr.dtype.newbyteorder("=").str[1:])
    if code is None:
        raise ValueError(f"write_idx: IDX has no dtype code for {arr.dtype}; expected one of "
                         + ", ".join(dt.name for dt in _DTYPES.values()))
    if not 1 <= arr.ndim <= 255 or any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"write_idx: IDX cannot hold shape {arr.shape}")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = header + np.ascontiguousarray(arr, dtype=_DTYPES[code]).tobytes()
    if compress is None:
        compress = str(path).endswith(".gz")
    if compress:
        raw = gzip.compress(raw, mtime=0)
    with open(path, "wb") as f:
        f.write(raw)


# ---------------------------------------------------------------------------------------------- MNIST folders
_SPLITS = {"train": "train", "test": "t10k"}


def _candidates(split: str, what: str) -> list[str]:
    """File names for one part of a split: the original spelling (train-images-idx3-ubyte) and the common
    variant with a dot (train-images.idx3-ubyte), each raw or gzipped."""
    rank = "idx3" if what == "images" else "idx1"
    names = [f"{_SPLITS[split]}-{what}-{rank}-ubyte", f"{_SPLITS[split]}-{what}.{rank}-ubyte"]
    return [n + ext for n in names for ext in ("", ".gz")]


def _check_split(split) -> None:
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(map(repr, _SPLITS))}")


def _missing(folder: Path, split: str) -> str | None:
    """Why folder cannot give this split (a phrase), or None when it can."""
    if not folder.is_dir():
        return f"no folder {folder}"
    for what in ("images", "labels"):
        if not any((folder / n).is_file() for n in _candidates(split, what)):
            return f"no {_candidates(split, what)[0]}[.gz] in {folder}"
    return None


def load_mnist_folder(path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W), labels int64 (N,)) of one split ("train" or "test") of an MNIST-format
    folder: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
    t10k-labels-idx1-ubyte, each raw or gzipped (.gz)."""
    _check_split(split)
    folder = Path(path)
    why = _missing(folder, split)
    if why is not None:
        raise DatasetNotFoundError(f"{why} (an MNIST-format folder holds train-/t10k- images-idx3-ubyte and "
                                   "labels-idx1-ubyte files, gzipped or not)")
    files = {what: next(folder / n for n in _candidates(split, what) if (folder / n).is_file())
             for what in ("images", "labels")}
    images, labels = read_idx(files["images"]), read_idx(files["labels"])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{files['images']}: expected uint8 images of shape (N, H, W), got {images.dtype} "
                         f"of shape {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"{files['labels']}: expected uint8 labels of shape (N,), got {labels.dtype} of "
                         f"shape {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} images in {files['images'].name} but {len(labels)} labels "
                         f"in {files['labels'].name}")
    return images, labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------- by name
IMAGE_DATASETS = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",  # Debian's dataset-fashion-mnist package
    "mnist": None,  # no standard location: pass path
}
_INSTALL = {"fashion-mnist": "apt-get install dataset-fashion-mnist"}


def load_image_dataset(name: str, path=None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) of a named MNIST-format dataset.

    Args:
        name (str): "fashion-mnist" (default location /usr/share/datasets/fashion-mnist) or "mnist".
        path (str | Path | None): the folder with the IDX files; None uses the dataset's default location.
        split (str): "train" or "test". Default "train".

    Raises DatasetNotFoundError (one line: what is missing, how to install it or which path to set).
    """
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset {name!r}; expected one of "
                         f"{', '.join(sorted(IMAGE_DATASETS))}")
    _check_split(split)
    set_path = "set path (data.path in a recipe) to a folder with the IDX files " + ", ".join(
        _candidates(s, w)[0] + "[.gz]" for s in _SPLITS for w in ("images", "labels"))
    if path is None and IMAGE_DATASETS[name] is None:
        raise DatasetNotFoundError(f"{name} has no default location; {set_path}")
    folder = Path(path if path is not None else IMAGE_DATASETS[name])
    why = _missing(folder, split)
    if why is not None:
        install = f"install it with '{_INSTALL[name]}', or " if name in _INSTALL else ""
        raise DatasetNotFoundError(f"{name} not found: {why}; {install}{set_path}")
    return load_mnist_folder(folder, split)
