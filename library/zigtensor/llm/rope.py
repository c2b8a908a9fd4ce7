"""Rotary position embeddings: the frequencies of each rope type, the cos/sin tables, and the rotation op.

A head's dims are two halves (x1, x2) rotated pairwise by the angle position * inv_freq[i] (the "rotate
half" layout of transformers; GGUF's interleaved layout is permuted back at load):

    rotate(x) = (x1 cos - x2 sin,  x2 cos + x1 sin)

>>> rope = RotaryEmbedding(config)
>>> cos, sin = rope.tables(np.array([[0, 1, 2]]), like=q)      # (1, 3, 1, head_dim / 2): positions -> angles
>>> q = rotate(q, cos, sin)                                     # q (B, T, H, head_dim)
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd.function import Function
from ..nn.module import Module
from ..tensor import Tensor
from .config import ModelConfig, RopeScaling


def inverse_frequencies(config: ModelConfig, seq_len: int | None = None) -> tuple[np.ndarray, float]:
    """(inv_freq (head_dim / 2,) float64, attention factor): transformers' ROPE_INIT_FUNCTIONS for the
    default, linear, dynamic, llama3 and yarn types. seq_len matters only for dynamic NTK scaling, which
    raises the base once the sequence outgrows max_position_embeddings. GGUF's per-frequency divisors
    (config.rope_freq_factors) divide the result."""
    inv_freq, factor = _inverse_frequencies(config, seq_len)
    if config.rope_freq_factors is not None:
        inv_freq = inv_freq / np.asarray(config.rope_freq_factors, dtype=np.float64)
    return inv_freq, factor


def _inverse_frequencies(config: ModelConfig, seq_len: int | None) -> tuple[np.ndarray, float]:
    dim, base = config.head_dim, config.rope_theta
    s: RopeScaling | None = config.rope_scaling
    exponents = np.arange(0, dim, 2, dtype=np.float64) / dim
    kind = "default" if s is None else s.rope_type
    if kind == "dynamic":
        max_pos = config.max_position_embeddings
        n = max(seq_len or max_pos, max_pos)
        base = base * ((s.factor * n / max_pos) - (s.factor - 1)) ** (dim / (dim - 2))
    inv_freq = 1.0 / base**exponents
    if kind == "linear":
        return inv_freq / s.factor, 1.0
    if kind == "llama3":
        old = s.original_max_position_embeddings
        low_wavelen, high_wavelen = old / s.low_freq_factor, old / s.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
        smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
        smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return np.where(medium, smoothed, scaled), 1.0
    if kind == "yarn":
        return _yarn(s, dim, base, inv_freq)
    return inv_freq, 1.0


def _yarn(s: RopeScaling, dim: int, base: float, inv_freq: np.ndarray) -> tuple[np.ndarray, float]:
    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    factor = s.attention_factor
    if factor is None:
        factor = mscale(s.factor, s.mscale) / mscale(s.factor, s.mscale_all_dim) if s.mscale and s.mscale_all_dim \
            else mscale(s.factor)

    def correction_dim(rotations):  # the dim whose wavelength makes `rotations` turns over the old context
        return dim * math.log(s.original_max_position_embeddings / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(s.beta_fast), correction_dim(s.beta_slow)
    if s.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # as transformers: avoids a division by zero
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    extrapolation = 1 - ramp  # 1: keep the frequency, 0: divide it by the factor
    return inv_freq / s.factor * (1 - extrapolation) + inv_freq * extrapolation, float(factor)


class RotaryEmbedding(Module):
    """cos/sin tables (positions, head_dim / 2), computed once in float64 and kept in float32 on the model's
    device; they grow (doubling) when a longer position is asked for. Non-persistent buffers: they move
    with model.to(device) and are not saved."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.inv_freq, self.attention_factor = inverse_frequencies(config)
        self.dynamic = config.rope_scaling is not None and config.rope_scaling.rope_type == "dynamic"
        self.register_buffer("cos", None, persistent=False)
        self.register_buffer("sin", None, persistent=False)

    def _angles(self, positions: np.ndarray, inv_freq: np.ndarray, like: Tensor):
        angles = positions.astype(np.float64)[..., None] * inv_freq  # (..., head_dim / 2)
        cos, sin = np.cos(angles) * self.attention_factor, np.sin(angles) * self.attention_factor
        backend = like.device.backend
        return (backend.from_numpy(cos.astype(like.dtype.np)), backend.from_numpy(sin.astype(like.dtype.np)))

    def _grow(self, n: int, like: Tensor) -> None:
        size = max(n, 2 * (0 if self.cos is None else self.cos.shape[0]), 256)
        cos, sin = self._angles(np.arange(size), self.inv_freq, like)
        self.cos, self.sin = Tensor._wrap(cos, like.device), Tensor._wrap(sin, like.device)

    def tables(self, positions: np.ndarray, like: Tensor):
        """(cos, sin) backend arrays of shape positions.shape + (1, head_dim / 2), in like's dtype and on its
        device, for positions (B, T) or (T,) of int."""
        top = int(positions.max()) + 1 if positions.size else 0
        if self.dynamic and top > self.config.max_position_embeddings:
            # NOTE: as transformers, the raised base applies to the positions of this forward only; keys already
            # cached keep the rotation they were stored with
            inv_freq, _ = inverse_frequencies(self.config, seq_len=top)
            cos, sin = self._angles(positions, inv_freq, like)
            return cos[..., None, :], sin[..., None, :]
        if self.cos is None or self.cos.shape[0] < top or self.cos.device is not like.device \
                or self.cos.dtype is not like.dtype:
            self._grow(top, like)
        idx = like.device.backend.from_numpy(np.asarray(positions))
        return self.cos.data[idx][..., None, :], self.sin.data[idx][..., None, :]

    def extra_repr(self) -> str:
        kind = "default" if self.config.rope_scaling is None else self.config.rope_scaling.rope_type
        return f"head_dim={self.config.head_dim}, theta={self.config.rope_theta}, type={kind}"


class Rotate(Function):
    """rotate(x, cos, sin) over the last axis of x (..., head_dim); cos and sin (..., head_dim / 2) broadcast.
    The backward is the inverse rotation, the same op with -sin."""

    def forward(self, x, cos, sin):
        self.cos, self.sin = cos, sin
        h = x.shape[-1] // 2
        x1, x2 = x[..., :h], x[..., h:]
        out = self.xp.empty(x.shape, dtype=x.dtype)
        o1, o2 = out[..., :h], out[..., h:]
        self.xp.multiply(x1, cos, out=o1)
        o1 -= x2 * sin
        self.xp.multiply(x2, cos, out=o2)
        o2 += x1 * sin
        return out

    def backward(self, g):
        return Rotate.apply(g, self.cos, -self.sin), None, None


def rotate(x: Tensor, cos, sin) -> Tensor:
    """x (..., head_dim) rotated by the angles whose cos and sin (backend arrays, ..., head_dim / 2) are given."""
    return Rotate.apply(x, cos, sin)
