"""Malformed safetensors files, built in memory: (id, file bytes, words the error message must contain).

Each case breaks one rule of the format; everything else about it is valid. STRICTER names the cases the
reference library (safetensors 0.8) accepts and we refuse on purpose; it rejects all the others too.
"""

from __future__ import annotations

import struct

F32 = '{"dtype":"F32","shape":[2],"data_offsets":[0,8]}'  # a valid entry: 2 float32 = 8 bytes
D8 = b"\0" * 8


def st(header: str | bytes, data: bytes = b"", n: int | None = None, pad: bool = True) -> bytes:
    """A file: the header's text, padded with spaces to a multiple of 8, then data.

    n overrides the 8-byte header length field (to make it lie).
    """
    raw = header.encode("utf-8") if isinstance(header, str) else header
    if pad:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw) if n is None else n) + raw + data


def obj(*pairs: tuple[str, str]) -> str:
    """The JSON text of an object from (key, JSON text of the value) pairs; keys may repeat."""
    return "{" + ",".join(f'"{k}":{v}' for k, v in pairs) + "}"


def entry(begin: int, end: int, shape: str, dtype: str = "F32") -> str:
    return f'{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{begin},{end}]}}'


def e(dtype='"F32"', shape="[2]", offsets="[0,8]", data: bytes = D8) -> bytes:
    """A file with the single tensor 'a' from the JSON text of each of its fields."""
    return one(f'"dtype":{dtype},"shape":{shape},"data_offsets":{offsets}', data)


def one(fields: str, data: bytes = D8) -> bytes:
    """A file with the single tensor 'a' whose entry holds the JSON text fields."""
    return st(obj(("a", "{" + fields + "}")), data)


A = ("a", F32)
_VALID = st(obj(A), D8)

CASES = [
    # --- the 8-byte length and the header's bytes
    ("empty-file", b"", ["0 bytes", "8-byte header length"]),
    ("seven-bytes", b"\x08\0\0\0\0\0\0", ["7 bytes", "8-byte header length"]),
    ("length-only-zero", struct.pack("<Q", 0), ["header length 0", "too small"]),
    ("length-only-nonzero", struct.pack("<Q", 16), ["header length 16", "runs past the end"]),
    ("truncated-header", _VALID[:20], ["header length 56", "runs past the end", "only 12 bytes"]),
    ("header-size-past-eof", st(obj(A), D8, n=4096), ["header length 4096", "runs past the end"]),
    ("header-size-over-limit", st("{}", n=100_000_001), ["100000001", "exceeds the limit of 100000000"]),
    ("header-size-u64-max", st("{}", n=2**64 - 1), [str(2**64 - 1), "exceeds the limit"]),
    ("header-size-lies-short", st(obj(A), D8, n=20), ["not valid JSON"]),
    ("header-size-lies-long", st(obj(A), D8, n=64), ["not valid JSON", "Extra data"]),
    ("header-size-lies-into-bad-utf8", st(obj(A), b"\xff" * 8 + D8, n=64),
     ["not valid UTF-8", "byte 56"]),
    ("bad-utf8", st(obj(("\xff", F32)).encode("latin-1"), D8), ["not valid UTF-8", "byte 2"]),
    ("bad-utf8-truncated-seq", st(obj(("\xc3", F32)).encode("latin-1"), D8), ["not valid UTF-8"]),
    ("utf8-bom", st(b"\xef\xbb\xbf{}"), ["not valid JSON", "BOM"]),
    ("bad-json", st(obj(A)[:-2]), ["not valid JSON"]),
    ("bad-json-trailing-comma", st(obj(A)[:-1] + ",}", D8), ["not valid JSON"]),
    ("nul-padding", st(obj(A).encode() + b"\0" * 8, D8, pad=False), ["not valid JSON"]),
    ("json-nan", e(shape="[NaN]"), ["NaN", "not valid JSON"]),
    ("json-huge-integer", e(shape="[1" + "0" * 5000 + "]"), ["not valid JSON"]),
    ("json-deep-nesting", st('{"a":' + "[" * 100_000 + "]" * 100_000 + "}"), ["nested too deeply"]),
    ("json-array", st("[]"), ["must be a JSON object", "a JSON array"]),
    ("json-string", st('"abc"'), ["must be a JSON object", "a JSON string"]),
    ("json-null", st("null"), ["must be a JSON object", "JSON null"]),
    ("json-number", st("12345678"), ["must be a JSON object", "a JSON number"]),
    # --- tensor entries
    ("entry-array", st('{"a":[1,2]}'), ["tensor 'a'", "must be a JSON object", "a JSON array"]),
    ("entry-string", st('{"a":"F32"}'), ["tensor 'a'", "must be a JSON object", "a JSON string"]),
    ("missing-dtype", one('"shape":[2],"data_offsets":[0,8]'), ["tensor 'a'", "missing 'dtype'"]),
    ("missing-shape", one('"dtype":"F32","data_offsets":[0,8]'), ["tensor 'a'", "missing 'shape'"]),
    ("missing-offsets", one('"dtype":"F32","shape":[2]'), ["tensor 'a'", "missing 'data_offsets'"]),
    ("extra-key", one(F32[1:-1] + ',"order":"C"'), ["tensor 'a'", "unexpected key", "'order'"]),
    ("duplicate-entry-key", one(F32[1:-1] + ',"dtype":"F32"'), ["tensor 'a'", "'dtype' appears twice"]),
    ("unknown-dtype", e(dtype='"F33"'), ["tensor 'a'", "unknown dtype 'F33'"]),
    ("lowercase-dtype", e(dtype='"f32"'), ["tensor 'a'", "unknown dtype 'f32'"]),
    ("dtype-not-string", e(dtype="32"), ["tensor 'a'", "dtype must be a string", "32"]),
    ("shape-not-list", e(shape='"2"'), ["tensor 'a'", "shape must be a list"]),
    ("shape-object", e(shape='{"0":2}'), ["tensor 'a'", "shape must be a list", "a JSON object"]),
    ("shape-negative", e(shape="[-2]"), ["tensor 'a'", "shape entry 0 is -2", "negative"]),
    ("shape-float", e(shape="[2.0]"), ["tensor 'a'", "shape entry 0", "2.0", "not an integer"]),
    ("shape-string-entry", e(shape='["2"]'), ["tensor 'a'", "shape entry 0", "'2'", "not an integer"]),
    ("shape-bool-entry", e(shape="[true]", offsets="[0,4]", data=b"\0" * 4),
     ["tensor 'a'", "shape entry 0", "boolean", "not an integer"]),
    ("shape-null-entry", e(shape="[null]"), ["tensor 'a'", "shape entry 0", "null", "not an integer"]),
    ("shape-overflow", e(shape=f"[{2**62},{2**62}]"), ["tensor 'a'", "overflows 64 bits"]),
    ("shape-overflow-then-zero", e(shape=f"[{2**62},{2**62},0]", offsets="[0,0]", data=b""),
     ["tensor 'a'", "overflows 64 bits"]),
    ("bytes-overflow", e(dtype='"F64"', shape=f"[{2**62}]"), ["tensor 'a'", "overflows 64 bits", "F64"]),
    ("too-many-dims", e(shape="[" + ",".join(["1"] * 65) + "]", offsets="[0,4]", data=b"\0" * 4),
     ["tensor 'a'", "65 dimensions"]),
    ("subbyte-not-whole-bytes", e(dtype='"F4"', shape="[3]", offsets="[0,2]", data=b"\0\0"),
     ["tensor 'a'", "12 bits", "whole number of bytes"]),
    ("offsets-not-list", e(offsets='"0-8"'), ["tensor 'a'", "data_offsets must be a list"]),
    ("offsets-three", e(offsets="[0,8,8]"), ["tensor 'a'", "data_offsets must be", "3 entries"]),
    ("offsets-one", e(offsets="[8]"), ["tensor 'a'", "data_offsets must be", "1 entries"]),
    ("offsets-negative", e(offsets="[-8,0]"), ["tensor 'a'", "data_offsets begin is -8", "negative"]),
    ("offsets-float", e(offsets="[0,8.0]"), ["tensor 'a'", "data_offsets end", "8.0", "not an integer"]),
    ("offsets-begin-after-end", e(offsets="[8,0]"), ["tensor 'a'", "begin 8 > end 0"]),
    ("size-mismatch", e(shape="[3]"), ["tensor 'a'", "is 12 bytes", "span 8 bytes"]),
    ("size-mismatch-dtype", e(dtype='"F64"'), ["tensor 'a'", "F64", "is 16 bytes", "span 8 bytes"]),
    ("zero-size-with-bytes", e(shape="[0]"), ["tensor 'a'", "is 0 bytes", "span 8 bytes"]),
    # --- the layout of the data buffer
    ("not-from-zero", e(offsets="[4,12]", data=b"\0" * 12), ["gap of 4 bytes", "start of the data", "'a'"]),
    ("gap", st(obj(A, ("b", entry(12, 16, "[1]"))), b"\0" * 16),
     ["gap of 4 bytes", "tensor 'a' (which ends at 8)", "tensor 'b' (which begins at 12)"]),
    ("overlap", st(obj(A, ("b", entry(4, 12, "[2]"))), b"\0" * 12),
     ["tensor 'b'", "[4, 12]", "overlaps tensor 'a' [0, 8]"]),
    ("same-offsets", st(obj(A, ("b", F32)), D8), ["overlaps tensor"]),
    ("zero-size-inside-other", st(obj(A, ("z", entry(4, 4, "[0]"))), D8),
     ["tensor 'z'", "overlaps tensor 'a'"]),
    ("trailing-bytes", st(obj(A), D8 + b"\0\0\0"), ["3 trailing bytes", "declares 8 bytes"]),
    ("empty-header-trailing-bytes", st("{}", b"\0"), ["1 trailing bytes", "declares 0 bytes"]),
    ("data-shorter-than-offsets", st(obj(A), b"\0" * 5), ["truncated", "tensor 'a'", "3 missing"]),
    ("offsets-out-of-range", e(shape="[1024]", offsets="[0,4096]"),
     ["truncated", "tensor 'a'", "4088 missing"]),
    # --- __metadata__ and names
    ("metadata-array", st(obj(("__metadata__", "[]"), A), D8), ["__metadata__", "a JSON array"]),
    ("metadata-string", st(obj(("__metadata__", '"x"'), A), D8), ["__metadata__", "a JSON string"]),
    ("metadata-int-value", st(obj(("__metadata__", '{"k":1}'), A), D8),
     ["__metadata__['k']", "a JSON number", "expected a string"]),
    ("metadata-null-value", st(obj(("__metadata__", '{"k":null}'), A), D8),
     ["__metadata__['k']", "JSON null", "expected a string"]),
    ("metadata-object-value", st(obj(("__metadata__", '{"k":{}}'), A), D8),
     ["__metadata__['k']", "a JSON object", "expected a string"]),
    ("metadata-duplicate-key", st(obj(("__metadata__", '{"k":"1","k":"2"}'), A), D8),
     ["__metadata__ key 'k' appears twice"]),
    ("duplicate-metadata", st(obj(("__metadata__", "{}"), ("__metadata__", "{}"), A), D8),
     ["'__metadata__' appears twice"]),
    ("duplicate-tensor-name", st(obj(A, A), D8), ["'a' appears twice"]),
    ("lone-surrogate-name", st(obj(("\\ud800", F32)), D8), ["not valid Unicode", "surrogate"]),
]

# The reference library reads these; we refuse them (see zigtensor.io.safetensors).
STRICTER = {
    "extra-key", "duplicate-tensor-name", "metadata-duplicate-key", "too-many-dims",
}
