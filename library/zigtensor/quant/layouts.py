"""Packed layouts of quantized linear weights: GPTQ (AutoGPTQ / GPTQModel) and AWQ (AutoAWQ GEMM), in both
directions, around one plain in-memory form, QuantizedWeight.

>>> w = QuantizedWeight(codes, scales, zeros, g_idx, bits=4, group_size=128)
>>> tensors = pack_gptq(w)                 # {"qweight", "qzeros", "scales", "g_idx"} as AutoGPTQ writes them
>>> unpack_gptq(tensors, bits=4, group_size=128).dequantize()

The layouts (W is the linear weight, shape (out, in); code[o, i] in [0, 2**bits)):
- GPTQ qweight int32 (in * bits / 32, out): word [r, o] holds code[o, r * k + j] in bits [j*bits, (j+1)*bits),
  k = 32 / bits values per word, packed along the INPUT dim. qzeros int32 (n_groups, out * bits / 32): word
  [g, c] holds zero[g, c * k + j] the same way, packed along the OUTPUT dim. scales float16 (n_groups, out).
  g_idx int32 (in,): the group of each input column (act-order permutes it). n_groups = ceil(in / group_size).
  checkpoint_format "gptq" (AutoGPTQ's original) stores zero - 1; "gptq_v2" (GPTQModel) stores the zero.
- AWQ (GEMM, 4-bit) qweight int32 (in, out / 8): word [i, c] holds code[c * 8 + ORDER[j], i] in nibble j, with
  ORDER = [0, 2, 4, 6, 1, 3, 5, 7]; qzeros int32 (n_groups, out / 8) the same way; scales float16 (n_groups, out);
  groups are contiguous (no g_idx), so in must be a multiple of group_size.
W[o, i] = (code[o, i] - zero[g_idx[i], o]) * scale[g_idx[i], o] in every layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

SUPPORTED_BITS = (4, 8)
GPTQ_FORMATS = ("gptq", "gptq_v2")
# nibble j of an AWQ word holds output column 8 * c + AWQ_ORDER[j]
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


class QuantFormatError(ValueError):
    """A quantized checkpoint (or QuantizedWeight) that its layout does not allow: the message names the layer and
    the expected shape or value."""


def _where(name: str) -> str:
    return f"layer {name!r}" if name else "quantized weight"


def _check_bits(bits: int, name: str, allowed: tuple[int, ...] = SUPPORTED_BITS) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) not in allowed:
        raise QuantFormatError(f"{_where(name)}: bits={bits!r} is not supported; expected one of {list(allowed)}")
    return int(bits)


def _check_group_size(group_size: int, name: str) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) \
            or (int(group_size) != -1 and int(group_size) < 1):
        raise QuantFormatError(f"{_where(name)}: group_size={group_size!r} is not valid; expected -1 (one group over "
                               "all inputs) or a positive integer")
    return int(group_size)


def n_groups_for(in_features: int, group_size: int) -> int:
    """Number of quantization groups over the input dim (GPTQ's ceil(in / group_size); -1 means one group)."""
    return 1 if group_size == -1 else -(-in_features // group_size)


def default_g_idx(in_features: int, group_size: int) -> np.ndarray:
    """The g_idx of a layer quantized in column order: input i belongs to group i // group_size."""
    if group_size == -1:
        return np.zeros(in_features, dtype=np.int32)
    return (np.arange(in_features, dtype=np.int64) // group_size).astype(np.int32)


@dataclass
class QuantizedWeight:
    """One linear layer's weight W (out_features, in_features) as integer codes, per-group scales and zero points;
    the unpacked form every layout converts to and from (so quantizers and loaders share one representation)."""

    codes: np.ndarray     # uint8 (out, in), integer codes in [0, 2**bits)
    scales: np.ndarray    # float32 (n_groups, out)
    zeros: np.ndarray     # uint8/int32 (n_groups, out), the actual zero point (not minus one)
    g_idx: np.ndarray     # int32 (in,), group of each input column
    bits: int             # 4 or 8
    group_size: int       # -1: one group over all inputs
    name: str = ""        # the layer's name, for error messages

    def __post_init__(self) -> None:
        self.bits = _check_bits(self.bits, self.name)
        self.group_size = _check_group_size(self.group_size, self.name)
        where = _where(self.name)
        codes = np.asarray(self.codes)
        if codes.ndim != 2 or codes.shape[0] < 1 or codes.shape[1] < 1:
            raise QuantFormatError(f"{where}: codes have shape {codes.shape}; expected a 2-D (out_features, "
                                   "in_features) array")
        if not np.issubdtype(codes.dtype, np.integer):
            raise QuantFormatError(f"{where}: codes have dtype {codes.dtype}; expected an integer dtype (uint8)")
        out_f, in_f = codes.shape
        n_groups = n_groups_for(in_f, self.group_size)
        maxq = (1 << self.bits) - 1
        if codes.min() < 0 or codes.max() > maxq:
            raise QuantFormatError(f"{where}: codes span [{codes.min()}, {codes.max()}]; expected [0, {maxq}] "
                                   f"for bits={self.bits}")
        self.codes = codes.astype(np.uint8, copy=False)
        scales = np.asarray(self.scales)
        if scales.shape != (n_groups, out_f):
            raise QuantFormatError(f"{where}: scales have shape {scales.shape}; expected ({n_groups}, {out_f}) = "
                                   f"(n_groups for in_features={in_f}, group_size={self.group_size}; out_features)")
        if not np.all(np.isfinite(scales)):
            raise QuantFormatError(f"{where}: scales hold non-finite values; expected finite floats")
        self.scales = scales.astype(np.float32, copy=False)
        zeros = np.asarray(self.zeros)
        if zeros.shape != (n_groups, out_f):
            raise QuantFormatError(f"{where}: zeros have shape {zeros.shape}; expected ({n_groups}, {out_f})")
        if not np.issubdtype(zeros.dtype, np.integer):
            raise QuantFormatError(f"{where}: zeros have dtype {zeros.dtype}; expected integer zero points")
        # NOTE: a zero point may be 2**bits: AutoGPTQ's original format stores zero - 1 in `bits` bits, so it reads
        # back zeros in [1, 2**bits]; the other layouts store [0, 2**bits - 1].
        if zeros.min() < 0 or zeros.max() > maxq + 1:
            raise QuantFormatError(f"{where}: zero points span [{zeros.min()}, {zeros.max()}]; expected [0, "
                                   f"{maxq + 1}] for bits={self.bits}")
        self.zeros = zeros.astype(np.int32, copy=False)
        g_idx = np.asarray(self.g_idx)
        if g_idx.shape != (in_f,) or not np.issubdtype(g_idx.dtype, np.integer):
            raise QuantFormatError(f"{where}: g_idx has shape {g_idx.shape} and dtype {g_idx.dtype}; expected "
                                   f"integer ({in_f},)")
        if in_f and (g_idx.min() < 0 or g_idx.max() >= n_groups):
            raise QuantFormatError(f"{where}: g_idx spans [{g_idx.min()}, {g_idx.max()}]; expected groups in "
                                   f"[0, {n_groups - 1}]")
        self.g_idx = g_idx.astype(np.int32, copy=False)

    @property
    def out_features(self) -> int:
        return int(self.codes.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.codes.shape[1])

    @property
    def n_groups(self) -> int:
        return int(self.scales.shape[0])

    @property
    def act_order(self) -> bool:
        """True when g_idx is not the column-order assignment (a desc_act / act-order checkpoint)."""
        return not np.array_equal(self.g_idx, default_g_idx(self.in_features, self.group_size))

    def dequantize(self) -> np.ndarray:
        """float32 (out, in): W[o, i] = (codes[o, i] - zeros[g_idx[i], o]) * scales[g_idx[i], o]."""
        zeros = self.zeros.T[:, self.g_idx].astype(np.float32)
        scales = self.scales.T[:, self.g_idx]
        return (self.codes.astype(np.float32) - zeros) * scales


# ---------------------------------------------------------------------------------------------------- bit packing

def _pack_rows(values: np.ndarray, bits: int) -> np.ndarray:
    """(n, m) small unsigned ints -> int32 (n * bits / 32, m): 32/bits consecutive rows per word, row j of a word in
    bits [j*bits, (j+1)*bits)."""
    per_word = 32 // bits
    n, m = values.shape
    v = values.astype(np.uint32).reshape(n // per_word, per_word, m)
    word = np.zeros((n // per_word, m), dtype=np.uint32)
    for j in range(per_word):
        word |= v[:, j, :] << np.uint32(bits * j)
    return word.view(np.int32)


def _unpack_rows(words: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of _pack_rows: int32 (n', m) -> uint32 (n' * 32 / bits, m)."""
    per_word = 32 // bits
    w = np.ascontiguousarray(words).view(np.uint32)
    mask = np.uint32((1 << bits) - 1)
    out = np.empty((w.shape[0], per_word, w.shape[1]), dtype=np.uint32)
    for j in range(per_word):
        out[:, j, :] = (w >> np.uint32(bits * j)) & mask
    return out.reshape(w.shape[0] * per_word, w.shape[1])


def _as_int32_words(tensors: Mapping, key: str, shape: tuple[int, int], name: str) -> np.ndarray:
    arr = _require(tensors, key, name, shape)
    if arr.dtype not in (np.int32, np.uint32):
        raise QuantFormatError(f"{_where(name)}: {key} has dtype {arr.dtype}; expected int32 of shape {shape}")
    return np.ascontiguousarray(arr)


def _require(tensors: Mapping, key: str, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    if key not in tensors:
        want = f" of shape {shape}" if shape is not None else ""
        raise QuantFormatError(f"{_where(name)}: the checkpoint has no {key!r} tensor; expected one{want}")
    arr = np.asarray(tensors[key])
    if shape is not None and arr.shape != tuple(shape):
        raise QuantFormatError(f"{_where(name)}: {key} has shape {arr.shape}; expected {tuple(shape)}")
    return arr


def _scales_f16(w: QuantizedWeight) -> np.ndarray:
    s16 = w.scales.astype(np.float16)
    if not np.all(np.isfinite(s16)):
        raise QuantFormatError(f"{_where(w.name)}: scales overflow float16 (max |scale| {np.abs(w.scales).max()}); "
                               "expected |scale| <= 65504")
    return s16


# ---------------------------------------------------------------------------------------------------------- GPTQ

def pack_gptq(w: QuantizedWeight, checkpoint_format: str = "gptq") -> dict[str, np.ndarray]:
    """The tensors AutoGPTQ ("gptq": zeros stored minus one) or GPTQModel ("gptq_v2") write for one layer."""
    if checkpoint_format not in GPTQ_FORMATS:
        raise QuantFormatError(f"{_where(w.name)}: checkpoint_format={checkpoint_format!r}; expected one of "
                               f"{list(GPTQ_FORMATS)}")
    per_word = 32 // w.bits
    out_f, in_f = w.codes.shape
    for what, n in (("in_features", in_f), ("out_features", out_f)):
        if n % per_word:
            raise QuantFormatError(f"{_where(w.name)}: {what}={n} is not a multiple of {per_word} (32 / bits for "
                                   f"bits={w.bits}); GPTQ packs {per_word} codes per int32 word")
    maxq = (1 << w.bits) - 1
    zeros = w.zeros.astype(np.int64)
    if checkpoint_format == "gptq":
        if zeros.min() < 1:
            raise QuantFormatError(f"{_where(w.name)}: a zero point of 0 cannot be stored in the 'gptq' format "
                                   f"(it stores zero - 1 in {w.bits} bits, so zeros must lie in [1, {maxq + 1}]); "
                                   "clamp zeros to >= 1 or write checkpoint_format='gptq_v2'")
        zeros = zeros - 1
    elif zeros.max() > maxq:
        raise QuantFormatError(f"{_where(w.name)}: zero point {zeros.max()} does not fit {w.bits} bits in the "
                               f"'gptq_v2' format; expected zeros in [0, {maxq}]")
    return {
        "qweight": _pack_rows(w.codes.T, w.bits),
        "qzeros": _pack_rows(zeros.T.astype(np.uint32), w.bits).T.copy(),
        "scales": _scales_f16(w),
        "g_idx": w.g_idx.astype(np.int32).copy(),
    }


def gptq_shapes(in_features: int, out_features: int, bits: int, group_size: int) -> dict[str, tuple[int, ...]]:
    """The shape of each GPTQ tensor of a layer (what a loader checks and what errors name)."""
    per_word = 32 // bits
    n_groups = n_groups_for(in_features, group_size)
    return {"qweight": (in_features // per_word, out_features), "qzeros": (n_groups, out_features // per_word),
            "scales": (n_groups, out_features), "g_idx": (in_features,)}


def unpack_gptq(tensors: Mapping, bits: int, group_size: int, checkpoint_format: str = "gptq", name: str = "",
                desc_act: bool | None = None) -> QuantizedWeight:
    """One layer's GPTQ tensors -> QuantizedWeight, checking every shape against bits and group_size.

    g_idx may be missing when the layer is in column order (desc_act False or unknown); desc_act=True requires it.
    """
    bits = _check_bits(bits, name)
    group_size = _check_group_size(group_size, name)
    if checkpoint_format not in GPTQ_FORMATS:
        raise QuantFormatError(f"{_where(name)}: checkpoint_format={checkpoint_format!r}; expected one of "
                               f"{list(GPTQ_FORMATS)}")
    per_word = 32 // bits
    scales = _require(tensors, "scales", name, None)
    if scales.ndim != 2:
        raise QuantFormatError(f"{_where(name)}: scales has shape {scales.shape}; expected (n_groups, out_features)")
    out_f = int(scales.shape[1])
    qweight_raw = _require(tensors, "qweight", name, None)
    if qweight_raw.ndim != 2 or qweight_raw.shape[1] != out_f:
        raise QuantFormatError(f"{_where(name)}: qweight has shape {qweight_raw.shape}; expected (in_features * "
                               f"{bits} / 32, {out_f}) to match scales {scales.shape}")
    has_g_idx = tensors.get("g_idx") is not None
    # NOTE: g_idx (one entry per input) is the surest witness of in_features; without it qweight's rows tell
    in_f = int(qweight_raw.shape[0]) * per_word
    if has_g_idx and np.asarray(tensors["g_idx"]).ndim == 1 and np.asarray(tensors["g_idx"]).shape[0] % per_word == 0:
        in_f = int(np.asarray(tensors["g_idx"]).shape[0])
    shapes = gptq_shapes(in_f, out_f, bits, group_size)
    if out_f % per_word:
        raise QuantFormatError(f"{_where(name)}: out_features={out_f} (from scales {scales.shape}) is not a multiple "
                               f"of {per_word}; qzeros packs {per_word} zero points per int32 word")
    qweight = _as_int32_words(tensors, "qweight", shapes["qweight"], name)
    if scales.shape != shapes["scales"]:
        raise QuantFormatError(f"{_where(name)}: scales has shape {scales.shape}; expected {shapes['scales']} for "
                               f"in_features={in_f}, bits={bits} and group_size={group_size}")
    qzeros = _as_int32_words(tensors, "qzeros", shapes["qzeros"], name)
    if has_g_idx:
        g_idx = _require(tensors, "g_idx", name, shapes["g_idx"])
        if not np.issubdtype(g_idx.dtype, np.integer):
            raise QuantFormatError(f"{_where(name)}: g_idx has dtype {g_idx.dtype}; expected int32 {shapes['g_idx']}")
    elif desc_act:
        raise QuantFormatError(f"{_where(name)}: the checkpoint has no 'g_idx' tensor but desc_act is true; "
                               f"expected g_idx of shape {shapes['g_idx']}")
    else:
        g_idx = default_g_idx(in_f, group_size)
    codes = _unpack_rows(qweight, bits).T
    zeros = _unpack_rows(qzeros.T, bits).T.astype(np.int32)
    if checkpoint_format == "gptq":
        zeros = zeros + 1
    return QuantizedWeight(codes=codes.astype(np.uint8), scales=scales.astype(np.float32), zeros=zeros,
                           g_idx=g_idx.astype(np.int32), bits=bits, group_size=group_size, name=name)


# ----------------------------------------------------------------------------------------------------------- AWQ

def _awq_pack_cols(values: np.ndarray) -> np.ndarray:
    """(n, m) 4-bit values -> int32 (n, m / 8) in AWQ's interleaved nibble order."""
    n, m = values.shape
    v = values.astype(np.uint32).reshape(n, m // 8, 8)
    word = np.zeros((n, m // 8), dtype=np.uint32)
    for j, col in enumerate(AWQ_ORDER):
        word |= v[:, :, col] << np.uint32(4 * j)
    return word.view(np.int32)


def _awq_unpack_cols(words: np.ndarray) -> np.ndarray:
    w = np.ascontiguousarray(words).view(np.uint32)
    out = np.empty((w.shape[0], w.shape[1], 8), dtype=np.uint32)
    for j, col in enumerate(AWQ_ORDER):
        out[:, :, col] = (w >> np.uint32(4 * j)) & np.uint32(0xF)
    return out.reshape(w.shape[0], w.shape[1] * 8)


def awq_shapes(in_features: int, out_features: int, group_size: int) -> dict[str, tuple[int, ...]]:
    n_groups = n_groups_for(in_features, group_size)
    return {"qweight": (in_features, out_features // 8), "qzeros": (n_groups, out_features // 8),
            "scales": (n_groups, out_features)}


def pack_awq(w: QuantizedWeight) -> dict[str, np.ndarray]:
    """The tensors AutoAWQ's GEMM layout writes for one layer (4-bit, contiguous groups)."""
    _check_bits(w.bits, w.name, (4,))
    out_f, in_f = w.codes.shape
    if out_f % 8:
        raise QuantFormatError(f"{_where(w.name)}: out_features={out_f} is not a multiple of 8; AWQ packs 8 "
                               "output columns per int32 word")
    if w.group_size != -1 and in_f % w.group_size:
        raise QuantFormatError(f"{_where(w.name)}: in_features={in_f} is not a multiple of group_size="
                               f"{w.group_size}; AWQ groups are whole")
    if w.act_order:
        raise QuantFormatError(f"{_where(w.name)}: AWQ has no g_idx, so act-order weights cannot be written; "
                               "expected g_idx[i] = i // group_size")
    if w.zeros.max() > 15:
        raise QuantFormatError(f"{_where(w.name)}: zero point {w.zeros.max()} does not fit 4 bits; expected [0, 15]")
    return {"qweight": _awq_pack_cols(w.codes.T), "qzeros": _awq_pack_cols(w.zeros), "scales": _scales_f16(w)}


def unpack_awq(tensors: Mapping, group_size: int, name: str = "", bits: int = 4) -> QuantizedWeight:
    """One layer's AWQ GEMM tensors -> QuantizedWeight, checking every shape against group_size."""
    bits = _check_bits(bits, name, (4,))
    group_size = _check_group_size(group_size, name)
    qweight_raw = _require(tensors, "qweight", name, None)
    scales = _require(tensors, "scales", name, None)
    if qweight_raw.ndim != 2 or scales.ndim != 2:
        raise QuantFormatError(f"{_where(name)}: qweight {qweight_raw.shape} and scales {scales.shape}; expected "
                               "(in_features, out_features / 8) and (n_groups, out_features)")
    in_f, out_f = int(qweight_raw.shape[0]), int(qweight_raw.shape[1]) * 8
    if group_size != -1 and in_f % group_size:
        raise QuantFormatError(f"{_where(name)}: in_features={in_f} (from qweight {qweight_raw.shape}) is not a "
                               f"multiple of group_size={group_size}; AWQ groups are whole")
    shapes = awq_shapes(in_f, out_f, group_size)
    if scales.shape != shapes["scales"]:
        raise QuantFormatError(f"{_where(name)}: scales has shape {scales.shape}; expected {shapes['scales']} for "
                               f"qweight {qweight_raw.shape} and group_size={group_size}")
    qweight = _as_int32_words(tensors, "qweight", shapes["qweight"], name)
    qzeros = _as_int32_words(tensors, "qzeros", shapes["qzeros"], name)
    return QuantizedWeight(codes=_awq_unpack_cols(qweight).T.astype(np.uint8), scales=scales.astype(np.float32),
                           zeros=_awq_unpack_cols(qzeros).astype(np.int32), g_idx=default_g_idx(in_f, group_size),
                           bits=bits, group_size=group_size, name=name)
