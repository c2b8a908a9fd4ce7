"""safetensors: our own strict reader and writer of the format, memory-mapped and atomic.

The format (https://github.com/huggingface/safetensors): 8 bytes, a little-endian u64 N; N bytes of UTF-8
JSON, an object mapping each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} plus an optional
"__metadata__" object of string to string; then the data buffer, the tensors' C-order little-endian bytes
one after the other, with offsets relative to the buffer's start and the buffer ending exactly at the end of
the file.

Reading validates everything in the header before touching the data, so every malformed file raises
SafetensorsError (a ValueError) with a message naming the tensor and the numbers, and no allocation is sized
from an unchecked number. We are stricter than the reference library in two places where it silently accepts
a broken header: duplicate keys (it keeps the last) and unknown keys in a tensor entry (it ignores them).

Loaded tensors are views of a copy-on-write (MAP_PRIVATE, mmap.ACCESS_COPY) mapping of the file: loading
reads nothing until the data is used, and writing into a loaded tensor (any in-place op) copies the touched
pages privately, never into the file. Replacing the file with save_file gives the path a new inode, so
tensors that map the old file keep their data. Truncating or rewriting a mapped file in place (with some
other tool) is not safe: pages not yet copied may change, or fault with SIGBUS past the new end.
Exceptions: dtypes zigtensor lacks are converted on load (below), and the rare tensor whose data is not
aligned to its dtype in the file (the reference writer always aligns) is copied. BOOL tensors are read once
on load to check for bytes other than 0 and 1 (normalized to True). A private writable mapping counts in
full against the commit limit under vm.overcommit_memory=2; with the default heuristic it costs nothing.
Where the filesystem cannot map files at all, the file is read into memory instead.

Dtypes. Written and read as they are: F64, F32, F16, BF16 (ml_dtypes.bfloat16), I64, I32, I16, I8, U8, BOOL.
Read by widening, losslessly, into a new array: F8_E4M3, F8_E5M2 (and F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ) to
float32, since zigtensor has no float8 dtype; U16 to int32; U32 to int64. Not readable, with an error naming
the tensor and the dtype: U64 (int64 cannot hold values >= 2**63), C64 (no complex dtype), and the sub-byte
F4, F6_E2M3, F6_E3M2. These are still validated as known dtypes, so the rest of such a file loads through
safe_open.

Byte order: the format is little-endian and so is every host we support; big-endian hosts are out of scope
(arrays are viewed and written in native order without a byteswap).

Writing reproduces the reference writer (safetensors 0.8) byte for byte: tensors sorted by dtype in
descending order of the reference's Dtype enum (U64, I64, F64, C64, F32, U32, I32, BF16, F16, U16, I16,
F8_*, I8, U8, ..., BOOL), ties by name in code-point order; compact JSON with "__metadata__" first and each
entry's keys in the order dtype, shape, data_offsets; non-ASCII written as UTF-8, control characters escaped
as JSON requires; the header padded with spaces to a multiple of 8 bytes. The one difference: the reference
writes the keys of "__metadata__" in hash-map order, which changes from run to run; we sort them, so with more
than one metadata key the bytes match the reference's only up to that order.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
from collections.abc import Mapping

import ml_dtypes
import numpy as np

from .. import dtypes
from ..device import device as _as_device
from ..tensor import Tensor
from .atomic import atomic_write
from .errors import SafetensorsError

MAX_HEADER_SIZE = 100_000_000  # bytes, as the reference library
MAX_NDIM = 64  # NumPy's limit; a header asking for more is refused at parse time
_SIZE_LIMIT = 2**64  # element counts and byte sizes must fit a u64, as in the reference (usize)
_ENTRY_KEYS = ("dtype", "shape", "data_offsets")
_METADATA = "__metadata__"

# The reference's Dtype enum in declaration order (safetensors 0.8). The writer sorts by this order,
# descending; the names are the format's dtype strings. Bits per element.
_FORMAT_DTYPES = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32,
    "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
_RANK = {code: i for i, code in enumerate(_FORMAT_DTYPES)}

_WRITE = {
    dtypes.float64: "F64", dtypes.float32: "F32", dtypes.float16: "F16", dtypes.bfloat16: "BF16",
    dtypes.int64: "I64", dtypes.int32: "I32", dtypes.int16: "I16", dtypes.int8: "I8", dtypes.uint8: "U8",
    dtypes.bool_: "BOOL",
}
# How each format dtype is read: (dtype of the bytes in the file, zigtensor dtype it loads as), or a reason.
_READ: dict[str, tuple[np.dtype, dtypes.DType] | str] = {code: (d.np, d) for d, code in _WRITE.items()}
_READ.update({
    "F8_E4M3": (np.dtype(ml_dtypes.float8_e4m3fn), dtypes.float32),
    "F8_E5M2": (np.dtype(ml_dtypes.float8_e5m2), dtypes.float32),
    "F8_E8M0": (np.dtype(ml_dtypes.float8_e8m0fnu), dtypes.float32),
    "F8_E4M3FNUZ": (np.dtype(ml_dtypes.float8_e4m3fnuz), dtypes.float32),
    "F8_E5M2FNUZ": (np.dtype(ml_dtypes.float8_e5m2fnuz), dtypes.float32),
    "U16": (np.dtype(np.uint16), dtypes.int32),
    "U32": (np.dtype(np.uint32), dtypes.int64),
    "U64": "zigtensor has no uint64 and int64 cannot hold values >= 2**63",
    "C64": "zigtensor has no complex dtype",
    "F4": "zigtensor has no 4-bit float dtype (two values packed per byte)",
    "F6_E2M3": "zigtensor has no 6-bit float dtype",
    "F6_E3M2": "zigtensor has no 6-bit float dtype",
})


# ---------------------------------------------------------------------------------------------- reading
class _Entry:
    __slots__ = ("name", "code", "shape", "begin", "end")

    def __init__(self, name: str, code: str, shape: tuple, begin: int, end: int):
        self.name, self.code, self.shape, self.begin, self.end = name, code, shape, begin, end


class _Obj(list):
    """A JSON object as its list of (key, value) pairs, so that duplicate keys stay visible."""


def _short(value, limit: int = 60) -> str:
    r = repr(dict(value) if isinstance(value, _Obj) else value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _kind(value) -> str:
    if isinstance(value, _Obj):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON boolean"
    if value is None:
        return "JSON null"
    return "a JSON number"


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _decode_header(raw: bytes, where: str):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SafetensorsError(f"{where}: the header is not valid UTF-8: byte {e.start} of the header "
                               f"({raw[e.start:e.start + 4]!r}...) {e.reason}") from None
    try:
        return json.loads(text, object_pairs_hook=_Obj, parse_constant=_no_constants)
    except RecursionError:
        raise SafetensorsError(f"{where}: the header's JSON is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, integers past Python's digit limit
        raise SafetensorsError(f"{where}: the header is not valid JSON: {e}") from None


def _pairs(obj: _Obj, what: str, where: str) -> dict:
    out = {}
    for key, value in obj:
        if key in out:
            raise SafetensorsError(f"{where}: {what.format(key=_short(key))} appears twice in the header")
        out[key] = value
    return out


def _check_name(name: str, where: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise SafetensorsError(f"{where}: tensor name {_short(name)} is not valid Unicode "
                               "(it contains an unpaired surrogate escape)") from None


def _parse_metadata(value, where: str) -> dict[str, str] | None:
    if value is None:  # the reference accepts "__metadata__": null as no metadata
        return None
    if not isinstance(value, _Obj):
        raise SafetensorsError(f"{where}: __metadata__ must be a JSON object of string to string, "
                               f"got {_kind(value)}")
    md = _pairs(value, "__metadata__ key {key}", where)
    for k, v in md.items():
        if not isinstance(v, str):
            raise SafetensorsError(f"{where}: __metadata__[{_short(k)}] is {_kind(v)} ({_short(v)}), "
                                   "expected a string")
    return md


def _parse_entry(name: str, value, where: str) -> _Entry:
    t = f"{where}: tensor {_short(name)}"
    if not isinstance(value, _Obj):
        raise SafetensorsError(f"{t}: its entry must be a JSON object with dtype, shape and data_offsets, "
                               f"got {_kind(value)}")
    info = _pairs(value, f"tensor {_short(name)}: key {{key}}", where)
    for key in _ENTRY_KEYS:
        if key not in info:
            raise SafetensorsError(f"{t}: missing {key!r} (an entry has dtype, shape and data_offsets)")
    extra = [k for k in info if k not in _ENTRY_KEYS]
    if extra:
        raise SafetensorsError(f"{t}: unexpected key(s) {', '.join(_short(k) for k in extra)} "
                               "(an entry has only dtype, shape and data_offsets)")
    code = info["dtype"]
    if not isinstance(code, str):
        raise SafetensorsError(f"{t}: dtype must be a string, got {_kind(code)} ({_short(code)})")
    if code not in _FORMAT_DTYPES:
        raise SafetensorsError(f"{t}: unknown dtype {_short(code)}; the format's dtypes are "
                               f"{', '.join(_FORMAT_DTYPES)}")
    shape = info["shape"]
    if not isinstance(shape, list) or isinstance(shape, _Obj):
        raise SafetensorsError(f"{t}: shape must be a list of non-negative integers, got {_kind(shape)}")
    if len(shape) > MAX_NDIM:
        raise SafetensorsError(f"{t}: shape has {len(shape)} dimensions; at most {MAX_NDIM} are supported")
    count = 1
    for i, d in enumerate(shape):
        if not _is_int(d):
            raise SafetensorsError(f"{t}: shape entry {i} is {_kind(d)} ({_short(d)}), not an integer")
        if d < 0:
            raise SafetensorsError(f"{t}: shape entry {i} is {d}, which is negative")
        count *= d
        if count >= _SIZE_LIMIT:
            raise SafetensorsError(f"{t}: shape {_short(shape, 120)} overflows 64 bits: the first {i + 1} "
                                   f"dimensions already hold {_short(count)} elements")
    bits = count * _FORMAT_DTYPES[code]
    if bits % 8:
        raise SafetensorsError(f"{t}: {count} elements of {code} are {bits} bits, "
                               "not a whole number of bytes")
    nbytes = bits // 8
    if nbytes >= _SIZE_LIMIT:
        raise SafetensorsError(f"{t}: {code} x shape {_short(shape, 120)} is {nbytes} bytes, which overflows "
                               "64 bits")
    offsets = info["data_offsets"]
    if not isinstance(offsets, list) or isinstance(offsets, _Obj) or len(offsets) != 2:
        got = f"{len(offsets)} entries" if isinstance(offsets, list) and not isinstance(offsets, _Obj) \
            else _kind(offsets)
        raise SafetensorsError(f"{t}: data_offsets must be a list [begin, end] of two integers, got {got}")
    for label, x in zip(("begin", "end"), offsets):
        if not _is_int(x):
            raise SafetensorsError(f"{t}: data_offsets {label} is {_kind(x)} ({_short(x)}), not an integer")
        if x < 0:
            raise SafetensorsError(f"{t}: data_offsets {label} is {x}, which is negative")
    begin, end = offsets
    if begin > end:
        raise SafetensorsError(f"{t}: data_offsets [{begin}, {end}] has begin {begin} > end {end}")
    if end - begin != nbytes:
        raise SafetensorsError(f"{t}: dtype {code} x shape {_short(shape, 120)} is {nbytes} bytes, but "
                               f"data_offsets [{begin}, {end}] span {end - begin} bytes")
    return _Entry(name, code, tuple(shape), begin, end)


def _parse_header(raw: bytes, where: str) -> tuple[list[_Entry], dict[str, str] | None]:
    """The entries in data order, and the metadata; every field checked."""
    root = _decode_header(raw, where)
    if not isinstance(root, _Obj):
        raise SafetensorsError(f"{where}: the header must be a JSON object of tensor entries, "
                               f"got {_kind(root)}")
    fields = _pairs(root, "{key}", where)
    metadata = _parse_metadata(fields.pop(_METADATA), where) if _METADATA in fields else None
    entries = []
    for name, value in fields.items():
        _check_name(name, where)
        entries.append(_parse_entry(name, value, where))
    entries.sort(key=lambda e: (e.begin, e.end))  # as the reference: files may list entries in any order
    pos, prev = 0, None
    for e in entries:
        if e.begin > pos:
            where_prev = "the start of the data" if prev is None else \
                f"tensor {_short(prev.name)} (which ends at {pos})"
            raise SafetensorsError(f"{where}: gap of {e.begin - pos} bytes between {where_prev} and tensor "
                                   f"{_short(e.name)} (which begins at {e.begin}); tensor data must be "
                                   "contiguous from offset 0")
        if e.begin < pos:
            raise SafetensorsError(f"{where}: tensor {_short(e.name)} data_offsets [{e.begin}, {e.end}] "
                                   f"overlaps tensor {_short(prev.name)} [{prev.begin}, {prev.end}]")
        pos, prev = e.end, e
    return entries, metadata


def _read_header(f, size: int, where: str) -> tuple[int, list[_Entry], dict[str, str] | None]:
    """(N, entries, metadata) of an open file of the given size, or SafetensorsError."""
    if size < 8:
        raise SafetensorsError(f"{where}: the file is {size} bytes, too short for the 8-byte header length")
    n = int.from_bytes(f.read(8), "little")  # NOTE: little-endian by the format, whatever the host
    if n > MAX_HEADER_SIZE:
        raise SafetensorsError(f"{where}: header length {n} exceeds the limit of {MAX_HEADER_SIZE} bytes")
    if 8 + n > size:
        raise SafetensorsError(f"{where}: header length {n} runs past the end of the file: only {size - 8} "
                               f"bytes follow the 8-byte length (the file is {size} bytes)")
    if n < 2:
        raise SafetensorsError(f"{where}: header length {n} is too small for a JSON object")
    raw = f.read(n)
    if len(raw) != n:
        raise SafetensorsError(f"{where}: the file shrank while reading its header ({len(raw)} of {n} bytes)")
    entries, metadata = _parse_header(raw, where)
    data_end = entries[-1].end if entries else 0
    expected = 8 + n + data_end
    if expected < size:
        raise SafetensorsError(f"{where}: {size - expected} trailing bytes after the tensor data: the header "
                               f"declares {data_end} bytes of data, ending at byte {expected}, but the file "
                               f"is {size} bytes")
    if expected > size:
        raise SafetensorsError(f"{where}: the file is truncated: tensor {_short(entries[-1].name)} ends at "
                               f"data offset {data_end} (file byte {expected}), but the file is only {size} "
                               f"bytes ({expected - size} missing)")
    return n, entries, metadata


def _read_all(f, size: int, where: str) -> bytearray:
    buf, pos = bytearray(size), 0
    view = memoryview(buf)
    f.seek(0)
    while pos < size:
        got = f.readinto(view[pos:])
        if not got:
            raise SafetensorsError(f"{where}: the file shrank while reading it ({pos} of {size} bytes)")
        pos += got
    return buf


class _Slice:
    """get_slice's answer: shape and dtype without reading, and indexing that reads only what it selects."""

    def __init__(self, owner: safe_open, entry: _Entry):
        self._owner, self._entry = owner, entry

    def get_shape(self) -> list[int]:
        return list(self._entry.shape)

    def get_dtype(self) -> str:
        """The format's dtype string ('F32', 'BF16', ...), as the reference library gives it."""
        return self._entry.code

    @property
    def shape(self) -> tuple:
        return self._entry.shape

    def __getitem__(self, index) -> Tensor:
        """A new tensor holding a copy of the selected part (NumPy indexing rules)."""
        raw = self._owner._raw(self._entry)
        return self._owner._wrap(np.array(raw[index], copy=True), self._entry)


class safe_open:
    """Lazy, memory-mapped access to a safetensors file, validated when opened.

    >>> with safe_open("model.safetensors") as f:
    ...     names = f.keys()
    ...     w = f.get_tensor(names[0])           # a copy-on-write view of the file: reads on first use
    ...     rows = f.get_slice("emb")[:16]       # reads only those rows

    Tensors taken from the file stay valid after it is closed.
    """

    def __init__(self, path, device="cpu"):
        self._path = os.fspath(path)
        self._device = _as_device(device)
        self._mmap = None
        with open(self._path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            n, entries, self._metadata = _read_header(f, size, self._path)
            self._base = 8 + n
            if entries and entries[-1].end > 0:
                try:
                    self._mmap = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
                except (OSError, ValueError):  # a filesystem that cannot map files: read it all instead
                    self._mmap = _read_all(f, size, self._path)
        self._entries = {e.name: e for e in entries}  # in data order
        self._closed = False

    # --- the reference library's API ---------------------------------------------------------------------
    def keys(self) -> list[str]:
        """The tensor names, sorted."""
        return sorted(self._entries)

    def offset_keys(self) -> list[str]:
        """The tensor names in the order of their data in the file."""
        return list(self._entries)

    def metadata(self) -> dict[str, str] | None:
        return None if self._metadata is None else dict(self._metadata)

    def get_tensor(self, name: str) -> Tensor:
        entry = self._lookup(name)
        return self._wrap(self._raw(entry), entry)

    def get_slice(self, name: str) -> _Slice:
        return _Slice(self, self._lookup(name))

    # --- Python protocol ---------------------------------------------------------------------------------
    def __enter__(self) -> safe_open:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Forget the mapping; tensors already taken keep it alive (and valid) until they are gone."""
        self._closed = True
        m, self._mmap = self._mmap, None
        if m is not None and not isinstance(m, bytearray):
            with contextlib.suppress(BufferError):  # arrays still view it: unmapped when the last one goes
                m.close()

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._entries)} tensors"
        return f"safe_open({self._path!r}, {state})"

    # --- internals ---------------------------------------------------------------------------------------
    def _lookup(self, name: str) -> _Entry:
        if self._closed:
            raise ValueError(f"{self._path}: the file is closed (use the tensors inside the `with` block)")
        try:
            return self._entries[name]
        except KeyError:
            some = ", ".join(repr(k) for k in list(self._entries)[:5])
            raise KeyError(f"{self._path}: no tensor named {name!r} (it has {len(self._entries)}: "
                           f"{some}{', ...' if len(self._entries) > 5 else ''})") from None

    def _raw(self, e: _Entry) -> np.ndarray:
        """The tensor's bytes as an array of the file's dtype: a view of the mapping when possible."""
        kind = _READ[e.code]
        if isinstance(kind, str):
            raise SafetensorsError(f"{self._path}: tensor {_short(e.name)} has dtype {e.code}, which "
                                   f"zigtensor cannot load: {kind}")
        if self._closed:
            raise ValueError(f"{self._path}: the file is closed (use the tensors inside the `with` block)")
        np_dtype = kind[0]
        if e.end == e.begin:
            return np.empty(e.shape, dtype=np_dtype)
        count = (e.end - e.begin) // np_dtype.itemsize
        arr = np.frombuffer(self._mmap, dtype=np_dtype, count=count, offset=self._base + e.begin)
        if (self._base + e.begin) % np_dtype.alignment:
            arr = arr.copy()  # misaligned in the file (not written by the reference): an aligned copy
        return arr.reshape(e.shape)

    def _wrap(self, arr: np.ndarray, e: _Entry) -> Tensor:
        target = _READ[e.code][1]
        if e.code == "BOOL" and arr.size and (arr.view(np.uint8) > 1).any():
            arr = arr.view(np.uint8) != 0  # bytes other than 0/1 would make NumPy bools that compare oddly
        if arr.dtype != target.np:
            arr = arr.astype(target.np)  # lossless widening, see the module's docstring
        dev = self._device
        return Tensor._wrap(dev.backend.from_numpy(arr), dev)


def load_file(path, device="cpu") -> dict[str, Tensor]:
    """All tensors of a safetensors file, in file order, as copy-on-write views of a mapping of it.

    Nothing is read until used; writing into a tensor never writes the file. See the module docstring for
    the dtypes that are widened on load (float8 -> float32, uint16 -> int32, uint32 -> int64).
    """
    with safe_open(path, device=device) as f:
        return {name: f.get_tensor(name) for name in f.offset_keys()}


# ---------------------------------------------------------------------------------------------- writing
def _prepare(tensors, metadata) -> tuple[bytes, list[tuple[str, Tensor]]]:
    """Check the inputs and build the padded header; the tensors in the order their data is written."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"save_file: expected a dict of name -> Tensor, got {type(tensors).__name__}")
    items = []
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"save_file: tensor names must be strings, got {_short(name)} "
                            f"({type(name).__name__})")
        if name == _METADATA:
            raise SafetensorsError(f"save_file: {_METADATA!r} is reserved for the metadata and cannot name a "
                                   "tensor")
        if not isinstance(t, Tensor):
            raise TypeError(f"save_file: tensors[{_short(name)}] is a {type(t).__name__}, expected a Tensor")
        code = _WRITE.get(t.dtype)
        if code is None:
            raise SafetensorsError(f"save_file: tensors[{_short(name)}] has dtype {t.dtype}, which "
                                   "safetensors cannot store")
        items.append((name, t, code))
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise TypeError(f"save_file: metadata must be a dict of str -> str, "
                            f"got {type(metadata).__name__}")
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"save_file: metadata must map str -> str, got {_short(k)}: {_short(v)} "
                                f"({type(k).__name__} -> {type(v).__name__})")
    items.sort(key=lambda it: (-_RANK[it[2]], it[0]))  # the reference's order (module docstring)
    header: dict = {}
    if metadata is not None:
        header[_METADATA] = dict(sorted(metadata.items()))
    offset = 0
    for name, t, code in items:
        nbytes = t.numel() * t.dtype.itemsize
        header[name] = {"dtype": code, "shape": [int(d) for d in t.shape],
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    # json.dumps with these options escapes exactly what serde_json (the reference) escapes.
    try:
        raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError as e:
        raise SafetensorsError(f"save_file: a tensor name or metadata string is not valid Unicode: "
                               f"{e}") from None
    raw += b" " * (-len(raw) % 8)
    if len(raw) > MAX_HEADER_SIZE:
        raise SafetensorsError(f"save_file: the header would be {len(raw)} bytes, over the format's limit of "
                               f"{MAX_HEADER_SIZE}; no reader would open the file")
    return len(raw).to_bytes(8, "little") + raw, [(name, t) for name, t, _ in items]


def save_file(tensors: dict[str, Tensor], path, metadata: dict[str, str] | None = None) -> None:
    """Write tensors (and optional str -> str metadata) to path in the safetensors format, atomically.

    The bytes are those the reference library writes for the same dict. The file is replaced atomically
    (temporary file, fsync, rename, fsync of the folder): readers and tensors mapping the old file keep
    seeing it whole, and a failure leaves the old file and no temporary file behind.
    """
    head, ordered = _prepare(tensors, metadata)

    def write(f) -> None:
        f.write(head)
        for _, t in ordered:
            arr = np.ascontiguousarray(t.numpy())  # NOTE: native byte order is little-endian on our hosts
            f.write(memoryview(arr.reshape(-1).view(np.uint8)))

    atomic_write(path, write)
