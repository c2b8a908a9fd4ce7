"""QuantLinear: nn.Linear's interface (forward(x) = x @ W.T + b) over weights that stay packed in memory.

>>> layer = QuantLinear.from_weights([qw_q, qw_k, qw_v], bias=None)   # parts concatenated along the output dim
>>> layer(x)                                                         # x (..., in_features) -> (..., out_features)

A layer holds one or more parts, each a block of output rows with its own storage:
- "int" parts (GPTQ / AWQ, our quantizers, and GGUF Q4_0 / Q4_1 / Q8_0 blocks): codes packed two per byte
  (4-bit, planar within each group: see _pack_codes) or one per byte (8-bit), rows (out, in_pad), with
  per-(row, group) float16 scales and uint8 zero points, W = (code - zero) * scale (Q4_1: float16 mins,
  W = code * scale + min). Act-order weights are stored with their columns sorted by group, so every group is
  one contiguous run of group_len columns; the input's columns are gathered once per forward (cols) to match.
  A ragged or uneven group is padded with zero-input columns.
- "gguf" parts: llama.cpp's raw blocks of the other types (Q4_K, Q6_K, Q5_K, ...), rows (out, bytes per row),
  decoded per tile with io/gguf.py's block decoders.
Parts with the same layout are merged, so a fused q/k/v of a column-order checkpoint is one part.

CPU forward (W4A16 with float32 activations): int parts of whole 32-column groups (16 for 8-bit; GGUF Q4_0 / Q4_1
/ Q8_0, GPTQ and AWQ at the usual group sizes) run quant/cpu_kernels.py (numba): up to KERNEL_MAX_ROWS input rows
its dequantize-multiply kernel, more rows tiles that it dequantizes, multiplied with BLAS. Other layouts: a few
rows multiply raw codes per group with BLAS, more rows dequantize tiles (TILE_ELEMENTS float32, cache-sized) with
NumPy. The full-precision matrix never exists. CUDA forward runs kernels/quant.cu (backends/cuda_kernels/quant.py).
Gradients flow to the input (g @ W, tile by tile, CPU only) and the bias, never to the packed weights (integers).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import nn
from ..autograd.function import Function
from ..creation import zeros as zeros_tensor
from ..io import gguf as gguf_io
from ..tensor import Tensor
from . import cpu_kernels
from .layouts import QuantFormatError, QuantizedWeight

# float32 elements of one dequantized tile (2 MiB): measured on the 2-core EPYC, 64K-element tiles ran batch-1
# products 2-4x slower (BLAS calls on few rows) and 1M-element ones no faster
TILE_ELEMENTS = 1 << 19
# batch rows up to which the CUDA path runs the matrix-vector kernel rather than the tensor-core GEMM
CUDA_GEMV_MAX_ROWS = 8
# batch rows up to which the CPU path runs cpu_kernels.py's kernel (layouts it supports) or multiplies raw codes
# per group (scales applied to partial sums; other layouts) rather than dequantizing whole tiles: the
# dequantization passes cost more than the product for a few rows. Measured (2-core EPYC VM, SmolLM2's Q4_1
# layers): the kernel ran 1.9x float32 BLAS at 4 rows, 1.6x at 8 and 1.05x at 32 (one thread); a whole SmolLM2
# prefill ran faster on it than on its dequantized tiles + BLAS up to 192 tokens (281 against 372 ms at 128,
# 516 against 551 at 192, even at 256)
GROUPED_MAX_ROWS = 16
KERNEL_MAX_ROWS = 192
# multiply-adds (weights x (rows + 2), the 2 for the dequantization) from which the kernel's output rows are split
# between the cores (cpu_kernels.py: a region costs about 10 us to start)
KERNEL_SPLIT_WORK = 1 << 18
# float32 elements of a tile that cpu_kernels.py dequantizes for many input rows (8 MiB, a per-thread scratch
# buffer that stays: every layer of SmolLM2 but its LM head whole; a 3072 x 576 product ran 1.3x slower in 2 MiB
# tiles, each its own BLAS call)
KERNEL_TILE_ELEMENTS = 1 << 21
# GGUF types whose blocks are int parts (a float16 scale per 32, 4-bit nibbles in the planar order, or int8)
GGUF_INT_TYPES = ("Q4_0", "Q4_1", "Q8_0")

_scratch = threading.local()


def _array_module(x):
    """cupy for a CuPy array (a layer moved to CUDA)."""
    from ..backends.cuda_kernels._launch import array_module

    return array_module(x)


def _kernel_chunks(work: int, m: int) -> int:
    """Threads for a kernel product of `work` weights (rows x in_pad) and m input rows: one below
    KERNEL_SPLIT_WORK, where a parallel region costs more than it saves."""
    return 1 if work * (m + 2) < KERNEL_SPLIT_WORK else cpu_kernels.threads()


def _cpu_device():
    from ..device import device

    return device("cpu")


def _scratch_buffer(n: int) -> np.ndarray:
    """A float32 buffer of at least n elements, one per thread, shared by every QuantLinear (tiles are transient)."""
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.size < n:
        buf = _scratch.buf = np.empty(n, dtype=np.float32)
    return buf


def _scratch_bytes(n: int) -> np.ndarray:
    """A uint8 buffer of at least n bytes, one per thread (the nibbles of a tile on their way to float32)."""
    buf = getattr(_scratch, "bytes", None)
    if buf is None or buf.size < n:
        buf = _scratch.bytes = np.empty(n, dtype=np.uint8)
    return buf[:n]


@dataclass
class PartInfo:
    """What one part is, for dispatch and for `zt info`."""

    kind: str                 # "int" or "gguf"
    rows: int                 # output rows of this part
    method: str               # "gptq", "awq", "rtn", "gguf"...
    bits: int                 # 4 or 8 ("gguf": the type's nominal bits)
    group_size: int           # the checkpoint's group size (-1: one group); gguf: elements per block
    act_order: bool
    in_pad: int = 0           # int: stored columns (in_features plus padding)
    group_len: int = 0        # int: stored columns per group
    n_groups: int = 0
    ggml_type: str = ""       # gguf: the block type
    names: tuple = ()         # the checkpoint layers this part came from
    pad_only: bool = False    # int: stored columns are the inputs in order, then padding (a ragged last group)


def _group_layout(w: QuantizedWeight, align: int = 8) -> tuple[np.ndarray | None, int, int]:
    """(cols, group_len, in_pad) for an int part: cols[j] = the input column feeding stored column j (in_features
    for a padding column), or None when stored columns are the input columns in order.

    Every group is stored as a run of group_len columns, group_len its largest member count rounded up to `align`
    (whole bytes of 4-bit codes, aligned words for the CUDA kernels); shorter groups are padded.
    """
    in_f, n_groups = w.in_features, w.n_groups
    counts = np.bincount(w.g_idx, minlength=n_groups)
    group_len = -(-int(counts.max()) // align) * align
    in_pad = group_len * n_groups
    order = np.argsort(w.g_idx, kind="stable")           # columns sorted by group, within a group in input order
    if in_pad == in_f and np.array_equal(order, np.arange(in_f)):
        return None, group_len, in_pad
    cols = np.full((n_groups, group_len), in_f, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for g in range(n_groups):
        cols[g, :counts[g]] = order[starts[g]:starts[g] + counts[g]]
    return cols.reshape(-1), group_len, in_pad


def _pack_codes(codes: np.ndarray, bits: int, group_len: int) -> np.ndarray:
    """uint8 (rows, in_pad) codes -> the stored form. 4-bit: two per byte, planar within each group: byte j of a
    group holds column j in its low nibble and column j + group_len / 2 in its high one.

    NOTE: planar rather than adjacent pairs so that `byte & 15` and `byte >> 4` are each a contiguous half of the
    group: the CPU path multiplies each half with a contiguous slice of x, and the CUDA kernels feed each half to
    its own tensor-core k-step, with no shuffling of nibbles.
    """
    if bits == 8:
        return np.ascontiguousarray(codes, dtype=np.uint8)
    rows, in_pad = codes.shape
    g = codes.reshape(rows, in_pad // group_len, group_len)
    half = group_len // 2
    return np.ascontiguousarray((g[:, :, :half] | (g[:, :, half:] << 4)).reshape(rows, in_pad // 2), dtype=np.uint8)


def kernel_name(kind: str, bits: int, batch_rows: int, device_type: str = "cpu", dtype: str = "float16",
                zero_point: bool = True, group_len: int = 128) -> str:
    """Which kernel a quantized part of this kind ("int" or "gguf"), bits, offset (zero points, or GGUF Q4_1's
    mins) and stored group length runs for a step of batch_rows rows on device_type, activations in dtype (CUDA):
    the dispatch of QuantLinear.forward and backends/cuda_kernels/quant.py, spelled out for `zt info`."""
    if device_type == "cuda":
        if kind != "int":
            return "cuda: not supported (GGUF blocks run on the CPU; load with keep_quantized=False)"
        if bits != 4 or not zero_point:
            return "cuda dequantize + gemm"
        if batch_rows <= CUDA_GEMV_MAX_ROWS or dtype not in ("float16", "bfloat16") or group_len % 32:
            return "cuda w4a16_gemv (quant.cu)"
        return "cuda w4a16_gemm mma.sync (quant.cu)"
    blas = "gemv" if batch_rows == 1 else "gemm"
    if kind == "gguf":
        return f"cpu gguf blocks decoded per tile + blas {blas}"
    if cpu_kernels.supports(bits, group_len):
        if batch_rows <= KERNEL_MAX_ROWS:
            return f"cpu int{bits} dequantize-multiply kernel (cpu_kernels.py)"
        return f"cpu int{bits} tiles dequantized by cpu_kernels.py + blas {blas}"
    if batch_rows <= GROUPED_MAX_ROWS:
        return f"cpu int{bits} codes per group + blas {blas}"
    return f"cpu int{bits} dequantized tiles + blas {blas}"


class QuantLinear(nn.Module):
    """A linear layer whose weight is stored quantized; see the module docstring.

    Args:
        in_features, out_features (int): as nn.Linear's.
        bias (bool): hold a float bias Parameter (loaded like nn.Linear's).
    Parts are added with add_int_part / add_gguf_part (in output-row order) or built by from_weights.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.bias = nn.Parameter(zeros_tensor(out_features), requires_grad=False) if bias else None
        self.parts: list[PartInfo] = []
        self._kernel_layouts: dict = {}   # part -> (its codes array, _kernel_layout's answer)
        self._plan: tuple | None = None    # (every part's codes array, _kernel_plan's answer)

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def from_weights(cls, weights: Sequence[QuantizedWeight], bias: np.ndarray | None = None,
                     method: str = "gptq") -> QuantLinear:
        """One layer from the QuantizedWeights of its parts (all with the same in_features), stacked along out."""
        if not weights:
            raise QuantFormatError("QuantLinear.from_weights: expected at least one QuantizedWeight, got none")
        in_f = weights[0].in_features
        for w in weights:
            if w.in_features != in_f:
                raise QuantFormatError(f"layer {w.name!r}: in_features={w.in_features}; expected {in_f} like "
                                       f"{weights[0].name!r} (parts of one layer share their input)")
        out_f = sum(w.out_features for w in weights)
        layer = cls(in_f, out_f, bias=bias is not None)
        if bias is not None:
            bias = np.asarray(bias, dtype=np.float32)
            if bias.shape != (out_f,):
                raise QuantFormatError(f"layer {weights[0].name!r}: bias has shape {bias.shape}; expected ({out_f},)")
            layer.bias.data = layer.bias.device.backend.from_numpy(bias.copy())
        for w in weights:
            layer.add_int_part(w, method)
        return layer

    def _buffer(self, i: int, what: str, arr: np.ndarray | None) -> None:
        if arr is not None and what in ("scales", "mins") and arr.dtype.kind == "f":
            # NOTE: held as their bits (uint16 / uint32): Module.to(dtype) casts floating buffers, and scales must
            # keep the precision they were quantized with whatever dtype the activations take
            arr = arr.view(np.uint16 if arr.dtype == np.float16 else np.uint32)
        self.register_buffer(f"part{i}_{what}", None if arr is None else Tensor._wrap(arr, self._device()),
                             persistent=False)

    def _device(self):
        return _cpu_device()

    def _get(self, i: int, what: str):
        data = self._raw(i, what)   # NOTE: on CUDA the raw CuPy array under the DeviceArray, as the launchers
        if data is not None and what in ("scales", "mins") and data.dtype.kind == "u":   # take (and reinterpret) it
            return data.view(np.float16 if data.dtype == np.uint16 else np.float32)
        return data

    def _raw(self, i: int, what: str):
        """Buffer `what` of part i as stored (scales and mins as their uint16 / uint32 bits), or None; on CUDA the
        CuPy array under the DeviceArray."""
        t = self._buffers.get(f"part{i}_{what}")
        return None if t is None else getattr(t.data, "_a", t.data)

    def add_int_part(self, w: QuantizedWeight, method: str = "gptq") -> None:
        """Append w's rows: codes packed, columns sorted by group (act-order), groups padded to one length."""
        if w.in_features != self.in_features:
            raise QuantFormatError(f"layer {w.name!r}: in_features={w.in_features}; expected {self.in_features}")
        cols, group_len, in_pad = _group_layout(w)
        codes = w.codes
        if cols is not None:
            codes = np.concatenate([codes, np.zeros((codes.shape[0], 1), np.uint8)], axis=1)[:, cols]
        pad_only = cols is not None and np.array_equal(cols[:w.in_features], np.arange(w.in_features)) \
            and bool((cols[w.in_features:] == w.in_features).all())
        info = PartInfo(kind="int", rows=w.out_features, method=method, bits=w.bits, group_size=w.group_size,
                        act_order=w.act_order, in_pad=in_pad, group_len=group_len, n_groups=w.n_groups,
                        names=(w.name,), pad_only=pad_only)
        scales = np.ascontiguousarray(w.scales.T, dtype=np.float16)
        if not np.array_equal(scales.astype(np.float32), w.scales.T):
            # NOTE: checkpoints store float16 scales; ours keep float32 ones exact rather than round them
            scales = np.ascontiguousarray(w.scales.T, dtype=np.float32)
        zeros = np.ascontiguousarray(w.zeros.T, dtype=np.uint8 if w.zeros.max() < 256 else np.int32)
        self._append_int(info, _pack_codes(codes, w.bits, group_len), scales, cols, zeros=zeros)

    def _append_int(self, info: PartInfo, packed, scales, cols, zeros=None, mins=None) -> None:
        """Add an int part's buffers (zeros: W = (code - zero) * scale; mins: W = code * scale + min), merged into
        the previous part when it has the same layout."""
        offset_name, offset = ("zeros", zeros) if mins is None else ("mins", mins)
        i = len(self.parts) - 1
        prev = self.parts[-1] if self.parts else None
        if prev is not None and self._mergeable(prev, info, cols, scales, offset_name, offset):
            prev.rows += info.rows
            prev.names += info.names
            prev.act_order |= info.act_order
            for what, arr in (("codes", packed), ("scales", scales), (offset_name, offset)):
                self._buffer(i, what, np.concatenate([self._get(i, what), arr], axis=0))
            return
        i += 1
        self.parts.append(info)
        self._buffer(i, "codes", packed)
        self._buffer(i, "scales", scales)
        self._buffer(i, offset_name, offset)
        self._buffer(i, "cols", None if cols is None else cols.astype(np.int32))

    def _mergeable(self, prev: PartInfo, info: PartInfo, cols, scales, offset_name: str, offset) -> bool:
        i = len(self.parts) - 1
        prev_cols = self._get(i, "cols")
        same_cols = (prev_cols is None and cols is None) or (
            prev_cols is not None and cols is not None and np.array_equal(prev_cols, cols))
        prev_offset = self._get(i, offset_name)
        return (prev.kind == "int" and same_cols and prev.bits == info.bits and prev.group_len == info.group_len
                and prev.in_pad == info.in_pad and prev.method == info.method and prev.ggml_type == info.ggml_type
                and prev_offset is not None and prev_offset.dtype == offset.dtype
                and self._get(i, "scales").dtype == scales.dtype)

    def add_gguf_part(self, raw: np.ndarray, ggml_type: str, rows: int, name: str = "") -> None:
        """Append rows kept as llama.cpp blocks: raw is uint8 (rows, bytes per row) of type ggml_type.

        Q4_0, Q4_1 and Q8_0 become int parts (their blocks are groups of 32 with a float16 scale, and Q4's nibble
        order is this file's planar one), run by the int kernels with results equal to ggml's dequantization;
        the other types stay as blocks, decoded per tile.
        """
        if ggml_type not in gguf_io._BLOCK_DECODERS:
            raise QuantFormatError(f"layer {name!r}: ggml type {ggml_type} cannot stay quantized; expected one of "
                                   f"{', '.join(gguf_io._BLOCK_DECODERS)}")
        block, block_bytes = gguf_io.GGML_BLOCK_LAYOUTS[ggml_type]
        if self.in_features % block:
            raise QuantFormatError(f"layer {name!r}: in_features={self.in_features} is not a multiple of {ggml_type}'s "
                                   f"block of {block}")
        expect = (rows, self.in_features // block * block_bytes)
        raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(rows, -1) if np.size(raw) == expect[0] * expect[1] \
            else None
        if raw is None:
            raise QuantFormatError(f"layer {name!r}: {ggml_type} data does not hold {rows} rows of "
                                   f"{self.in_features} inputs; expected {expect[0] * expect[1]} bytes as {expect}")
        from .gguf_weight import GGUF_BITS

        bits = GGUF_BITS[ggml_type]
        if ggml_type in GGUF_INT_TYPES:
            self._append_gguf_int(raw.reshape(rows, -1, block_bytes), ggml_type, rows, name)
            return
        i = len(self.parts)
        self.parts.append(PartInfo(kind="gguf", rows=rows, method="gguf", bits=bits, group_size=block,
                                   act_order=False, ggml_type=ggml_type, names=(name,)))
        self._buffer(i, "codes", raw)

    def _append_gguf_int(self, blocks: np.ndarray, ggml_type: str, rows: int, name: str) -> None:
        """Q4_0 {half d; u8 qs[16]}: (q - 8) d; Q4_1 {half d, m; u8 qs[16]}: q d + m; Q8_0 {half d; i8 qs[32]}:
        q d, stored as q + 128 with zero 128. Byte j of a Q4 block holds element j (low) and j + 16 (high)."""
        n_groups = blocks.shape[1]
        scales = np.ascontiguousarray(blocks[:, :, 0:2]).view(np.float16).reshape(rows, n_groups)
        mins = zeros = None
        if ggml_type == "Q4_0":
            packed, zeros = blocks[:, :, 2:18], np.full((rows, n_groups), 8, np.uint8)
        elif ggml_type == "Q4_1":
            packed = blocks[:, :, 4:20]
            mins = np.ascontiguousarray(blocks[:, :, 2:4]).view(np.float16).reshape(rows, n_groups)
        else:
            packed, zeros = blocks[:, :, 2:34] ^ np.uint8(0x80), np.full((rows, n_groups), 128, np.uint8)
        bits = 8 if ggml_type == "Q8_0" else 4
        info = PartInfo(kind="int", rows=rows, method="gguf", bits=bits, group_size=32, act_order=False,
                        in_pad=self.in_features, group_len=32, n_groups=n_groups, ggml_type=ggml_type, names=(name,))
        self._append_int(info, np.ascontiguousarray(packed).reshape(rows, -1), scales, None, zeros=zeros, mins=mins)

    def check_complete(self) -> None:
        rows = sum(p.rows for p in self.parts)
        if rows != self.out_features:
            names = [n for p in self.parts for n in p.names]
            raise QuantFormatError(f"layer {names}: parts hold {rows} output rows; expected {self.out_features}")

    # ------------------------------------------------------------------------------------------ reading
    def weight_nbytes(self) -> int:
        """Bytes of the stored weight (codes, scales, zeros, column maps; not the bias)."""
        return sum(int(b.data.nbytes) for name, b in self._buffers.items() if b is not None)

    def dequantize(self) -> np.ndarray:
        """The float32 weight (out, in) these parts stand for (for tests and export; forward never builds it)."""
        if any(not isinstance(self._get(i, "codes"), np.ndarray) for i in range(len(self.parts))):
            raise RuntimeError("QuantLinear.dequantize: the layer is on a GPU; move it with .cpu() first")
        out = np.empty((self.out_features, self.in_features), dtype=np.float32)
        row = 0
        for i, part in enumerate(self.parts):
            w = self._tile(i, part, 0, part.rows)
            if part.kind == "int":
                cols = self._get(i, "cols")
                if cols is None:
                    w = w[:, :self.in_features]
                else:   # scatter stored columns back to input order (padding columns drop out)
                    full = np.zeros((part.rows, self.in_features + 1), np.float32)
                    full[:, cols] = w[:, :cols.shape[0]]
                    w = full[:, :self.in_features]
            out[row:row + part.rows] = w
            row += part.rows
        return out

    def dequantize_rows(self, rows):
        """Output rows `rows` (an int array, any shape, values in [0, out_features)) of the weight as float32
        (*rows.shape, in_features), dequantizing only those rows: what a token embedding that shares this matrix
        (a tied LM head, quant/qembedding.py) reads for a batch of token ids. NumPy or CuPy, as the layer's codes.
        """
        codes0 = self._get(0, "codes") if self.parts else None
        xp = np if codes0 is None or isinstance(codes0, np.ndarray) else _array_module(codes0)
        idx = xp.asarray(rows).astype(np.int64, copy=False)
        flat = idx.reshape(-1)
        out = xp.empty((flat.shape[0], self.in_features), dtype=np.float32)
        start = 0
        for i, part in enumerate(self.parts):
            if len(self.parts) == 1:
                sel, local = None, flat
            else:   # the ids that fall in this part's block of rows
                sel = xp.nonzero((flat >= start) & (flat < start + part.rows))[0]
                local = flat[sel] - start
            start += part.rows
            if local.shape[0] == 0:
                continue
            w = self._gathered_rows(i, part, local, xp)
            if sel is None:
                out[...] = w
            else:
                out[sel] = w
        return out.reshape(*idx.shape, self.in_features)

    def _gathered_rows(self, i: int, part: PartInfo, local, xp):
        """Rows `local` of part i dequantized, float32 (len(local), in_features) in input-column order."""
        codes = self._get(i, "codes")[local]
        n = local.shape[0]
        if part.kind == "gguf":
            if xp is not np:
                raise NotImplementedError(f"QuantLinear {list(part.names)}: GGUF {part.ggml_type} blocks are decoded "
                                          "on the CPU only")
            _, block_bytes = gguf_io.GGML_BLOCK_LAYOUTS[part.ggml_type]
            return gguf_io._BLOCK_DECODERS[part.ggml_type](codes.reshape(-1, block_bytes)).reshape(n, self.in_features)
        if part.bits == 4:   # planar nibbles: the low ones are each group's first half of columns
            g = codes.reshape(n, part.n_groups, part.group_len // 2)
            w = xp.concatenate([g & 0xF, g >> 4], axis=2).astype(np.float32)
        else:
            w = codes.reshape(n, part.n_groups, part.group_len).astype(np.float32)
        scales = self._get(i, "scales")[local].astype(np.float32)[:, :, None]
        mins = self._get(i, "mins")
        if mins is None:
            w -= self._get(i, "zeros")[local].astype(np.float32)[:, :, None]
            w *= scales
        else:
            w *= scales
            w += mins[local].astype(np.float32)[:, :, None]
        w = w.reshape(n, part.in_pad)
        cols = self._get(i, "cols")
        if cols is None:
            return w
        if part.pad_only:   # the inputs in order, then padding columns
            return w[:, :self.in_features]
        full = xp.zeros((n, self.in_features + 1), dtype=np.float32)   # + the column padding writes (dropped)
        full[:, cols] = w
        return full[:, :self.in_features]

    def kernel_for(self, batch_rows: int, device_type: str = "cpu", dtype: str = "float16") -> str:
        """The kernel that runs this layer for a step of batch_rows rows (what `zt info` shows)."""
        names = {kernel_name(p.kind, p.bits, batch_rows, device_type, dtype, self._get(i, "mins") is None,
                             p.group_len) for i, p in enumerate(self.parts)}
        return " + ".join(sorted(names))

    # ------------------------------------------------------------------------------------------ compute
    def _tile(self, i: int, part: PartInfo, r0: int, r1: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows r0:r1 of part i dequantized to float32 (rows, in_pad) (gguf: (rows, in_features)), in out."""
        codes = self._get(i, "codes")[r0:r1]
        n = r1 - r0
        if part.kind == "gguf":
            block, block_bytes = gguf_io.GGML_BLOCK_LAYOUTS[part.ggml_type]
            w = gguf_io._BLOCK_DECODERS[part.ggml_type](codes.reshape(-1, block_bytes))
            return w.reshape(n, self.in_features)
        if out is None:
            out = np.empty(n * part.in_pad, dtype=np.float32)
        tile = out[:n * part.in_pad].reshape(n, part.n_groups, part.group_len)
        if part.bits == 4:
            half = part.group_len // 2
            g = codes.reshape(n, part.n_groups, half)
            np.copyto(tile[:, :, :half], g & 0xF, casting="unsafe")
            np.copyto(tile[:, :, half:], g >> 4, casting="unsafe")
        else:
            np.copyto(tile.reshape(n, part.in_pad), codes, casting="unsafe")
        mins = self._get(i, "mins")
        if mins is None:
            tile -= self._get(i, "zeros")[r0:r1, :, None]
            tile *= self._get(i, "scales")[r0:r1, :, None]
        else:
            tile *= self._get(i, "scales")[r0:r1, :, None]
            tile += mins[r0:r1, :, None]
        return tile.reshape(n, part.in_pad)

    def _part_input(self, i: int, part: PartInfo, x2: np.ndarray, x_ext: list) -> np.ndarray:
        """x2 (M, in) -> the part's stored column order (M, in_pad): gathered for act-order, zero-padded."""
        cols = self._get(i, "cols")
        if cols is None:
            return x2
        if part.pad_only:   # a ragged last group: the inputs, then zeros
            xp = np.zeros((x2.shape[0], part.in_pad), np.float32)
            xp[:, :self.in_features] = x2
            return xp
        if not x_ext:   # one zero column for the padding columns to read
            x_ext.append(np.concatenate([x2, np.zeros((x2.shape[0], 1), np.float32)], axis=1))
        return np.take(x_ext[0], cols, axis=1)

    def _grouped_matmul(self, i: int, part: PartInfo, xp: np.ndarray, out: np.ndarray) -> None:
        """Few input rows: y = sum_g s_g (x_g . c_g) - sum_g s_g z_g sum(x_g), with codes converted to float but
        never scaled: one BLAS product per group of the raw codes, the scales applied to the (groups, rows, M)
        partial sums, M/group_len as many values as the weight has."""
        m, n_groups, glen = xp.shape[0], part.n_groups, part.group_len
        xg = np.ascontiguousarray(xp.reshape(m, n_groups, glen).transpose(1, 2, 0))   # (G, glen, M)
        xsum = xg.sum(axis=1)                                                          # (G, M)
        codes, scales = self._get(i, "codes"), self._get(i, "scales")
        zeros, mins = self._get(i, "zeros"), self._get(i, "mins")
        half = glen // 2
        tile_rows = max(1, min(part.rows, TILE_ELEMENTS // max(1, part.in_pad)))
        buf = _scratch_buffer(tile_rows * part.in_pad)
        for r0 in range(0, part.rows, tile_rows):
            r1 = min(part.rows, r0 + tile_rows)
            n = r1 - r0
            c = codes[r0:r1]
            if part.bits == 4:
                g = c.reshape(n, n_groups, half)
                lo = buf[:n * n_groups * half].reshape(n, n_groups, half)
                hi = buf[n * n_groups * half:n * part.in_pad].reshape(n, n_groups, half)
                nib = _scratch_bytes(n * n_groups * half).reshape(n, n_groups, half)
                np.bitwise_and(g, 0xF, out=nib)
                np.copyto(lo, nib, casting="unsafe")
                np.right_shift(g, 4, out=nib)
                np.copyto(hi, nib, casting="unsafe")
                partial = np.matmul(lo.transpose(1, 0, 2), xg[:, :half])                 # (G, n, M)
                partial += np.matmul(hi.transpose(1, 0, 2), xg[:, half:])
            else:
                cf = buf[:n * part.in_pad].reshape(n, n_groups, glen)
                np.copyto(cf, c.reshape(n, n_groups, glen), casting="unsafe")
                partial = np.matmul(cf.transpose(1, 0, 2), xg)
            s = scales[r0:r1].astype(np.float32).T                                      # (G, n)
            if mins is None:
                partial -= zeros[r0:r1].T[:, :, None] * xsum[:, None, :]
                partial *= s[:, :, None]
            else:
                partial *= s[:, :, None]
                partial += mins[r0:r1].T.astype(np.float32)[:, :, None] * xsum[:, None, :]
            out[:, r0:r1] = partial.sum(axis=0).T

    def _kernel_layout(self, i: int, part: PartInfo) -> tuple:
        """(input order as cpu_kernels.matmul takes it, the kernel's layout arguments) of int part i, kept until its
        buffers are replaced (a decode step calls a layer's parts a hundred times: looking them up each time cost
        1-2 ms a step)."""
        codes = self._raw(i, "codes")
        hit = self._kernel_layouts.get(i)
        if hit is not None and hit[0] is codes:
            return hit[1]
        scales, mins = self._raw(i, "scales"), self._raw(i, "mins")
        offsets = self._raw(i, "zeros") if mins is None else mins
        if scales.dtype == np.uint32:   # float32 scales (and mins) held as their bits
            scales, offsets = scales.view(np.float32), offsets if mins is None else offsets.view(np.float32)
        plan = (cpu_kernels.kernel_order(part.bits, part.in_pad, part.group_len),
                (codes, scales, offsets, mins is not None, part.bits, part.group_len))
        self._kernel_layouts[i] = (codes, plan)
        return plan

    def _kernel_plan(self) -> list | None:
        """[(first output row, rows, kernel order, layout, rows * in_pad)] of the parts when every one runs
        cpu_kernels.matmul on the input as given (int parts of its layouts, no column gather or padding), else
        None; rebuilt when a part's codes are replaced. The few-row path of _cpu_matmul: a decode step's 121
        products each spent 10-15 us in the general loop's lookups."""
        codes = tuple(self._raw(i, "codes") for i in range(len(self.parts)))
        hit = self._plan
        if hit is not None and len(hit[0]) == len(codes) and all(a is b for a, b in zip(hit[0], codes)):
            return hit[1]
        plan, row = [], 0
        for i, part in enumerate(self.parts):
            if (part.kind != "int" or not cpu_kernels.supports(part.bits, part.group_len)
                    or self._raw(i, "cols") is not None):
                plan = None
                break
            order, layout = self._kernel_layout(i, part)
            plan.append((row, part.rows, order, layout, part.rows * part.in_pad))
            row += part.rows
        self._plan = (codes, plan)
        return plan

    def _kernel_matmul(self, i: int, part: PartInfo, xp: np.ndarray, out: np.ndarray) -> None:
        """out (M, part.rows) = xp @ W.T on cpu_kernels.py: up to KERNEL_MAX_ROWS rows its dequantize-multiply
        kernel (output rows split between numba's threads when the part is large enough to pay for it); more, tiles
        of W that it dequantizes on this thread, multiplied with BLAS."""
        order, layout = self._kernel_layout(i, part)
        if len(xp) <= KERNEL_MAX_ROWS:
            cpu_kernels.matmul(np.ascontiguousarray(xp), order, *layout, out,
                               _kernel_chunks(part.rows * part.in_pad, len(xp)))
            return
        xk = np.take(xp, order, axis=1) if len(order) else xp
        backend = _cpu_device().backend
        tile_rows = max(1, min(part.rows, KERNEL_TILE_ELEMENTS // part.in_pad))
        buf = _scratch_buffer(tile_rows * part.in_pad)
        for r0 in range(0, part.rows, tile_rows):
            r1 = min(part.rows, r0 + tile_rows)
            tile = buf[:(r1 - r0) * part.in_pad].reshape(r1 - r0, part.in_pad)
            cpu_kernels.dequantize(*layout, r0, r1, tile)
            out[:, r0:r1] = backend.matmul(xk, tile.T)   # the backend's plan: split between the cores or not

    def _cpu_matmul(self, x2: np.ndarray) -> np.ndarray:
        """x2 float32 (M, in) -> (M, out), tile by tile."""
        m = x2.shape[0]
        out = np.empty((m, self.out_features), dtype=np.float32)
        plan = self._kernel_plan() if m <= KERNEL_MAX_ROWS else None
        if plan is not None:
            x2 = np.ascontiguousarray(x2)
            for row, rows, order, layout, work in plan:
                cpu_kernels.matmul(x2, order, *layout, out[:, row:row + rows], _kernel_chunks(work, m))
            return out
        x_ext: list = []
        row = 0
        for i, part in enumerate(self.parts):
            dst = out[:, row:row + part.rows]
            row += part.rows
            if part.kind == "int":
                xp = self._part_input(i, part, x2, x_ext)
                if cpu_kernels.supports(part.bits, part.group_len):
                    self._kernel_matmul(i, part, xp, dst)
                    continue
                if m <= GROUPED_MAX_ROWS:
                    self._grouped_matmul(i, part, xp, dst)
                    continue
                width = part.in_pad
            else:
                xp, width = x2, self.in_features
            tile_rows = max(1, min(part.rows, TILE_ELEMENTS // max(1, width)))
            scratch = _scratch_buffer(tile_rows * width) if part.kind == "int" else None
            for r0 in range(0, part.rows, tile_rows):
                r1 = min(part.rows, r0 + tile_rows)
                dst[:, r0:r1] = xp @ self._tile(i, part, r0, r1, scratch).T
        return out

    def _cpu_matmul_t(self, g2: np.ndarray) -> np.ndarray:
        """g2 float32 (M, out) -> g2 @ W (M, in): the input gradient, tile by tile."""
        m = g2.shape[0]
        dx = np.zeros((m, self.in_features + 1), dtype=np.float32)   # + the column padding reads (dropped)
        row = 0
        for i, part in enumerate(self.parts):
            width = part.in_pad if part.kind == "int" else self.in_features
            tile_rows = max(1, min(part.rows, TILE_ELEMENTS // max(1, width)))
            acc = np.zeros((m, width), dtype=np.float32)
            for r0 in range(0, part.rows, tile_rows):
                r1 = min(part.rows, r0 + tile_rows)
                acc += g2[:, row + r0:row + r1] @ self._tile(i, part, r0, r1)
            cols = self._get(i, "cols") if part.kind == "int" else None
            if cols is None:
                dx[:, :width] += acc
            else:   # stored columns back to input order; every input column appears once in cols
                dx[:, cols] += acc
            row += part.rows
        return dx[:, :self.in_features]

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.shape[-1:] != (self.in_features,):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise RuntimeError(f"QuantLinear: input {got} does not match in_features={self.in_features} "
                               f"(expected (*, {self.in_features}))")
        return _QuantMatmul.apply(x, self, self.bias)

    def _array_forward(self, x, bias):
        """y = x @ W.T + b on the backend array x (..., in), in x's dtype (CPU: computed in float32)."""
        if not isinstance(x, np.ndarray):  # a CUDA DeviceArray: quant.cu's kernels on its CuPy array
            from ..backends.cuda_array import DeviceArray
            from ..backends.cuda_kernels import quant as cuda_quant

            return DeviceArray(cuda_quant.quant_linear_forward(self, getattr(x, "_a", x)))
        lead = x.shape[:-1]
        y = self._cpu_matmul(np.ascontiguousarray(x.reshape(-1, self.in_features), dtype=np.float32))
        if bias is not None:
            y += bias
        y = y.reshape(*lead, self.out_features)
        return y if x.dtype == np.float32 else y.astype(x.dtype)

    def _array_input_grad(self, g):
        """g @ W for the backend array g (..., out), in g's dtype."""
        if not isinstance(g, np.ndarray):
            raise NotImplementedError("QuantLinear: gradients through a quantized layer are computed on the CPU "
                                      "only; run the backward pass of a CUDA model without QuantLinear layers")
        lead = g.shape[:-1]
        dx = self._cpu_matmul_t(np.ascontiguousarray(g.reshape(-1, self.out_features), dtype=np.float32))
        dx = dx.reshape(*lead, self.in_features)
        return dx if g.dtype == np.float32 else dx.astype(g.dtype)

    def extra_repr(self) -> str:
        kinds = ", ".join(f"{p.method} {p.ggml_type or f'{p.bits}-bit g{p.group_size}'}"
                          f"{' act-order' if p.act_order else ''} x{p.rows}" for p in self.parts)
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, " \
               f"parts=[{kinds}]"


class _QuantMatmul(Function):
    """x @ W.T + b for a QuantLinear's packed W: the gradient flows to x (g @ W) and b; W is integers."""

    def forward(self, x, layer: QuantLinear, bias):
        self.layer = layer
        return layer._array_forward(x, bias)

    def backward(self, g):
        x, _, bias = self.inputs
        dx = _QuantMatmulT.apply(g, self.layer) if x.requires_grad else None
        db = None
        if bias is not None and bias.requires_grad:
            db = g.reshape(-1, g.shape[-1]).sum(0)
        return dx, None, db


class _QuantMatmulT(Function):
    """g @ W, the input gradient of _QuantMatmul (its own gradient is the forward product again)."""

    def forward(self, g, layer: QuantLinear):
        self.layer = layer
        return layer._array_input_grad(g)

    def backward(self, gg):
        return _QuantMatmul.apply(gg, self.layer, None), None
