"""GGUF files: metadata and tensors read through the `gguf` package, quantized blocks decoded by our own NumPy code.

The format (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): the magic b"GGUF", a version, a list of
typed key/value metadata (`general.architecture`, `llama.block_count`, `tokenizer.ggml.tokens`, ...), a list of
tensor infos (name, dims, ggml type, offset), then the aligned tensor data. The `gguf` package parses the header;
we turn its fields into plain Python values and decode the tensor bytes ourselves, one function per type below,
written from ggml's block structs (ggml-common.h) so they can become on-the-fly int4/int8 kernels later.

    f = open_gguf("model.gguf")
    f.metadata["general.architecture"]           # 'llama'
    f.tensors["blk.0.attn_q.weight"]            # GGUFTensorInfo(shape=(576, 576), ggml_type='Q4_1', ...)
    w = f.load("blk.0.attn_q.weight")           # float32 array of that shape

Shapes are in PyTorch order (the slowest dimension first): ggml lists dims fastest first, so a linear weight
of ggml shape [in, out] is (out, in) here, as in the HF checkpoint it came from.

A quantized row is a run of blocks; each block holds `block size` elements in `bytes per block` bytes (the
table `GGML_BLOCK_LAYOUTS`). Scales `d` (and offsets `m`/`dmin`) are float16. The element order inside a block
is not always the natural one (low nibbles first, then high nibbles), so each decoder says where element j
comes from. Every decoder computes in float32 in the same order as ggml's reference `dequantize_row_*`, so its
output equals ggml's (and the gguf package's) bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import GGUFError

GGUF_MAGIC = b"GGUF"
QK_K = 256  # elements per super-block of the K-quants

# ggml type name -> (elements per block, bytes per block), as in ggml's type traits
GGML_BLOCK_LAYOUTS: dict[str, tuple[int, int]] = {
    "F32": (1, 4),
    "F16": (1, 2),
    "BF16": (1, 2),
    "Q8_0": (32, 2 + 32),                       # d, 32 x int8
    "Q4_0": (32, 2 + 16),                       # d, 32 x 4-bit
    "Q4_1": (32, 2 + 2 + 16),                   # d, m, 32 x 4-bit
    "Q5_0": (32, 2 + 4 + 16),                   # d, 32 high bits, 32 x low 4 bits
    "Q5_1": (32, 2 + 2 + 4 + 16),               # d, m, 32 high bits, 32 x low 4 bits
    "Q4_K": (QK_K, 2 + 2 + 12 + QK_K // 2),     # d, dmin, 8 x (6-bit scale, 6-bit min), 256 x 4-bit
    "Q5_K": (QK_K, 2 + 2 + 12 + QK_K // 8 + QK_K // 2),  # ... as Q4_K plus 256 high bits
    "Q6_K": (QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2),  # 256 x low 4 bits, 256 x high 2 bits, 16 x int8 scale, d
}

# Rows of blocks decoded per step: bounds the temporaries of a large tensor to a few tens of MB.
_CHUNK_BLOCKS = 1 << 16


# ------------------------------------------------------------------------------------------- block decoders
# Each takes `blocks`, a (n_blocks, bytes per block) uint8 array, and returns (n_blocks, block size) float32.
def _half(blocks: np.ndarray, at: int) -> np.ndarray:
    """The float16 at byte `at` of each block, as a (n_blocks, 1) float32 column."""
    return blocks[:, at:at + 2].view(np.float16).astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """Bytes [.., 16] -> 4-bit values [.., 32]: element j is the low nibble of byte j, element j+16 its high one."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _high_bits(qh: np.ndarray) -> np.ndarray:
    """4 bytes per block read as a little-endian uint32 -> its 32 bits, bit j for element j, as uint8 0/1."""
    bits = qh.view("<u4") >> np.arange(32, dtype=np.uint32)
    return (bits & 1).astype(np.uint8)


def dequantize_q8_0(blocks: np.ndarray) -> np.ndarray:
    # block_q8_0 { half d; int8 qs[32]; }: x = qs * d
    d = _half(blocks, 0)
    return blocks[:, 2:34].view(np.int8).astype(np.float32) * d


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    # block_q4_0 { half d; uint8 qs[16]; }: x = (q - 8) * d
    d = _half(blocks, 0)
    q = _nibbles(blocks[:, 2:18]).astype(np.int8) - np.int8(8)
    return q.astype(np.float32) * d


def dequantize_q4_1(blocks: np.ndarray) -> np.ndarray:
    # block_q4_1 { half d; half m; uint8 qs[16]; }: x = q * d + m
    d, m = _half(blocks, 0), _half(blocks, 2)
    q = _nibbles(blocks[:, 4:20])
    return q.astype(np.float32) * d + m


def dequantize_q5_0(blocks: np.ndarray) -> np.ndarray:
    # block_q5_0 { half d; uint8 qh[4]; uint8 qs[16]; }: q = low nibble | high bit << 4; x = (q - 16) * d
    d = _half(blocks, 0)
    q = _nibbles(blocks[:, 6:22]) | (_high_bits(blocks[:, 2:6]) << 4)
    return (q.astype(np.int8) - np.int8(16)).astype(np.float32) * d


def dequantize_q5_1(blocks: np.ndarray) -> np.ndarray:
    # block_q5_1 { half d; half m; uint8 qh[4]; uint8 qs[16]; }: x = q * d + m
    d, m = _half(blocks, 0), _half(blocks, 2)
    q = _nibbles(blocks[:, 8:24]) | (_high_bits(blocks[:, 4:8]) << 4)
    return q.astype(np.float32) * d + m


def _k_scales_mins(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 12 packed bytes of a Q4_K/Q5_K block -> 8 six-bit scales and 8 six-bit mins (ggml's get_scale_min_k4).

    Sub-blocks 0-3 keep their scale and min in the low 6 bits of bytes 0-3 and 4-7; sub-blocks 4-7 keep the low
    4 bits in byte 8-11 (scale in the low nibble, min in the high) and the top 2 bits in the spare top bits of
    bytes 0-3 (scale) and 4-7 (min).
    """
    s0, s1, s2 = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    sc = np.concatenate([s0 & 63, (s2 & 0x0F) | ((s0 >> 6) << 4)], axis=1)
    mn = np.concatenate([s1 & 63, (s2 >> 4) | ((s1 >> 6) << 4)], axis=1)
    return sc.astype(np.float32), mn.astype(np.float32)


def _k_nibbles(qs: np.ndarray) -> np.ndarray:
    """128 bytes -> (n, 8, 32) 4-bit values: bytes 32i..32i+31 hold sub-block 2i (low nibbles) and 2i+1 (high)."""
    qs = qs.reshape(-1, 4, 1, 32)
    return np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32)


def dequantize_q4_k(blocks: np.ndarray) -> np.ndarray:
    # block_q4_K { half d; half dmin; uint8 scales[12]; uint8 qs[128]; }, 8 sub-blocks of 32:
    # x = (d * scale) * q - (dmin * min)
    d, dmin = _half(blocks, 0), _half(blocks, 2)
    sc, mn = _k_scales_mins(blocks[:, 4:16])
    q = _k_nibbles(blocks[:, 16:144]).astype(np.float32)
    y = (d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]
    return y.reshape(-1, QK_K)


def dequantize_q5_k(blocks: np.ndarray) -> np.ndarray:
    # block_q5_K { half d; half dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }: as Q4_K, with the fifth
    # bit of element l of sub-block j in bit j of qh[l]
    d, dmin = _half(blocks, 0), _half(blocks, 2)
    sc, mn = _k_scales_mins(blocks[:, 4:16])
    qh = blocks[:, 16:48]
    high = (qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1  # (n, 8, 32)
    q = (_k_nibbles(blocks[:, 48:176]) | (high << 4)).astype(np.float32)
    y = (d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]
    return y.reshape(-1, QK_K)


def dequantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    # block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d; }: two halves of 128 elements; in half h,
    # quarter k (32 elements) takes its low 4 bits from ql[64h + 32(k%2) + l] (low nibble for k < 2, high for
    # k >= 2) and its high 2 bits from bits 2k..2k+1 of qh[32h + l]. q is signed with offset 32; each run of 16
    # elements has its own int8 scale: x = (d * scale) * (q - 32)
    ql = blocks[:, 0:128].reshape(-1, 2, 2, 32)
    low = np.concatenate([ql & 0x0F, ql >> 4], axis=2)  # (n, half, quarter, 32)
    qh = blocks[:, 128:192].reshape(-1, 2, 1, 32)
    high = (qh >> np.array([0, 2, 4, 6], dtype=np.uint8)[None, None, :, None]) & 3
    q = ((low | (high << 4)).astype(np.int8) - np.int8(32)).astype(np.float32).reshape(-1, 16, 16)
    scales = blocks[:, 192:208].view(np.int8).astype(np.float32)
    d = _half(blocks, 208)
    return ((d * scales)[:, :, None] * q).reshape(-1, QK_K)


_BLOCK_DECODERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Q8_0": dequantize_q8_0,
    "Q4_0": dequantize_q4_0,
    "Q4_1": dequantize_q4_1,
    "Q5_0": dequantize_q5_0,
    "Q5_1": dequantize_q5_1,
    "Q4_K": dequantize_q4_k,
    "Q5_K": dequantize_q5_k,
    "Q6_K": dequantize_q6_k,
}


def _type_name(ggml_type) -> str:
    """A ggml type given as a name ('Q4_K'), a gguf.GGMLQuantizationType or its integer id -> the name."""
    if isinstance(ggml_type, str):
        return ggml_type
    name = getattr(ggml_type, "name", None)
    if name is not None:
        return name
    import gguf

    try:
        return gguf.GGMLQuantizationType(int(ggml_type)).name
    except ValueError:
        raise GGUFError(f"unknown ggml type id {ggml_type!r}") from None


def tensor_nbytes(ggml_type, shape) -> int:
    """Bytes that a tensor of this ggml type and (PyTorch-order) shape takes in a GGUF file."""
    name = _type_name(ggml_type)
    block, nbytes = GGML_BLOCK_LAYOUTS[name]
    n = int(np.prod(shape, dtype=np.int64))
    return n // block * nbytes


def dequantize(raw, ggml_type, shape, name: str | None = None) -> np.ndarray:
    """Decode a tensor's bytes (as stored in GGUF) into a float32 array of `shape` (PyTorch order).

    Args:
        raw: the tensor's bytes: a NumPy array of any dtype (read as its raw bytes), or bytes.
        ggml_type: the type name ('Q4_K', 'F16', ...), a gguf.GGMLQuantizationType or its id.
        shape: the shape in PyTorch order; the last dimension is the one ggml stores contiguously.
        name: the tensor's name, for error messages.

    >>> dequantize(np.float16([1.5, -2]).view(np.uint8), "F16", (2,))
    array([ 1.5, -2. ], dtype=float32)
    """
    what = f"tensor {name!r}" if name else "tensor"
    type_name = _type_name(ggml_type)
    if type_name not in GGML_BLOCK_LAYOUTS:
        raise GGUFError(f"{what}: ggml type {type_name} is not supported; supported types: "
                        f"{', '.join(GGML_BLOCK_LAYOUTS)}")
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise GGUFError(f"{what}: negative dimension in shape {shape}")
    block, block_bytes = GGML_BLOCK_LAYOUTS[type_name]
    row = shape[-1] if shape else 1
    if row % block:
        raise GGUFError(f"{what}: {type_name} packs {block} elements per block, but the last dimension of "
                        f"shape {shape} is {row}, not a multiple of {block}")
    data = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else \
        np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    expected = tensor_nbytes(type_name, shape)
    if data.size != expected:
        raise GGUFError(f"{what}: {type_name} of shape {shape} takes {expected} bytes, got {data.size}")
    if type_name == "F32":
        return data.view("<f4").astype(np.float32).reshape(shape)
    if type_name == "F16":
        return data.view("<f2").astype(np.float32).reshape(shape)
    if type_name == "BF16":  # the top 16 bits of a float32
        return (data.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    decode = _BLOCK_DECODERS[type_name]
    blocks = data.reshape(-1, block_bytes)
    out = np.empty((blocks.shape[0], block), dtype=np.float32)
    for start in range(0, blocks.shape[0], _CHUNK_BLOCKS):
        out[start:start + _CHUNK_BLOCKS] = decode(blocks[start:start + _CHUNK_BLOCKS])
    return out.reshape(shape)


# ------------------------------------------------------------------------------------------------ files
@dataclass(frozen=True)
class GGUFTensorInfo:
    name: str
    shape: tuple[int, ...]  # PyTorch order (ggml's dims reversed)
    ggml_type: str  # 'F32', 'Q4_K', ...
    nbytes: int  # bytes of data in the file
    offset: int  # absolute byte offset of the data in the file

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def _plain(field) -> Any:
    """A gguf ReaderField -> str, int, float, bool or a list of those."""
    value = field.contents()
    if isinstance(value, np.generic):
        return value.item()
    return value


class GGUFFile:
    """An open GGUF file: `metadata` (plain Python values), `tensors` (name -> GGUFTensorInfo), `load(name)`.

    The data stays memory-mapped (read-only); `raw(name)` is the stored bytes, `load(name)` the float32 values.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._reader = _open_reader(self.path)
        self.metadata: dict[str, Any] = {}
        for key, field in self._reader.fields.items():
            if key.startswith("GGUF."):  # the header counts the reader exposes as fields
                continue
            try:
                self.metadata[key] = _plain(field)
            except (UnicodeDecodeError, ValueError, IndexError) as e:
                raise GGUFError(f"{self.path}: metadata key {key!r} cannot be read ({e})") from None
        self.version = int(self._reader.fields["GGUF.version"].parts[0][0])
        self.tensors: dict[str, GGUFTensorInfo] = {}
        size = os.path.getsize(self.path)
        for t in self._reader.tensors:
            info = GGUFTensorInfo(name=t.name, shape=tuple(int(d) for d in reversed(t.shape.tolist())),
                                  ggml_type=t.tensor_type.name, nbytes=int(t.n_bytes), offset=int(t.data_offset))
            if info.offset + info.nbytes > size:
                raise GGUFError(f"{self.path}: truncated: tensor {info.name!r} needs bytes up to "
                                f"{info.offset + info.nbytes}, the file has {size}")
            self.tensors[t.name] = info
        self._by_name = {t.name: t for t in self._reader.tensors}

    def __repr__(self) -> str:
        return (f"GGUFFile({self.path!r}, version={self.version}, {len(self.metadata)} keys, "
                f"{len(self.tensors)} tensors)")

    def _info(self, name: str) -> GGUFTensorInfo:
        if name not in self.tensors:
            raise KeyError(f"{self.path}: no tensor named {name!r} ({len(self.tensors)} tensors, "
                           f"e.g. {', '.join(list(self.tensors)[:3])})")
        return self.tensors[name]

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as stored (a read-only uint8 view of the mapped file)."""
        self._info(name)
        return self._by_name[name].data.reshape(-1).view(np.uint8)

    def load(self, name: str) -> np.ndarray:
        """The tensor dequantized to a float32 array of its PyTorch-order shape."""
        info = self._info(name)
        return dequantize(self.raw(name), info.ggml_type, info.shape, name=name)


def _reader_class():
    import gguf

    class Reader(gguf.GGUFReader):
        # NOTE: the reader slices its np.memmap once per metadata value (250k times for a 49k-token vocabulary),
        # and every memmap slice runs memmap.__array_finalize__; slicing a plain ndarray view of the same
        # mapping parses the header 3x faster. Tensor data stay views of the read-only mapping.
        def _get(self, offset, dtype, count=1, override_order=None):
            if type(self.data) is np.memmap:
                self.data = self.data.view(np.ndarray)
            return super()._get(offset, dtype, count, override_order)

    return Reader


def _open_reader(path: str):

    if not os.path.exists(path):
        raise GGUFError(f"{path}: no such file")
    if os.path.isdir(path):
        raise GGUFError(f"{path}: is a directory, expected a .gguf file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] != GGUF_MAGIC:
        raise GGUFError(f"{path}: not a GGUF file: it starts with {head[:4]!r}, expected the magic {GGUF_MAGIC!r}")
    if len(head) < 8:
        raise GGUFError(f"{path}: truncated: {len(head)} bytes, too short for a GGUF header")
    try:
        return _reader_class()(path)
    except Exception as e:  # the reader raises what NumPy raises when a count or offset runs past the end
        size = os.path.getsize(path)
        reason = " ".join(str(e).split()) or type(e).__name__
        raise GGUFError(f"{path}: truncated or corrupt GGUF file ({size} bytes): {reason}") from None


def open_gguf(path: str | os.PathLike) -> GGUFFile:
    """Open a GGUF file: parse its header and metadata; tensors are read when loaded."""
    return GGUFFile(path)
