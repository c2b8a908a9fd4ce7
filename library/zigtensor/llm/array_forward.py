"""The Transformer's layers on NumPy arrays: the no-grad path of every cached step (LLM's prefill and decode,
the engine's runner).

A decode step of a small model is a few hundred tiny ops around a few big matmuls. Through Tensors each op pays
for argument checks, dtype lookups and a Tensor wrapper. Measured on the 2-core CPU with one BLAS thread:
everything but the weight matmuls took 14 ms of a 41 ms batch-1 SmolLM2 step (25 of 91 ms at batch 8); the
per-step cost of the ops alone (a SmolLM2-shaped model of tiny widths) fell from 11 to 5 ms at batch 1 and from
15 to 9 ms at batch 8 here. The layers are the same modules with the same weights and formulas.

    ops = ArrayOps.for_model(model)          # None where this path does not apply (not CPU float32, training)
    rotary = ops.rotary(cos, sin)            # once per step
    h = ops.norm(block.ln_1, x)              # x: a (..., C) array
    q, k, v = ops.qkv(block.attn, h, rotary)
    ...

Modules this file does not know (a LayerNorm, another activation) are called as modules on a Tensor wrapping
the array, so every model still runs, only slower; a QuantLinear runs its own array forward.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd.grad_mode import GradMode
from ..dtypes import float32
from ..nn import functional as F
from ..quant.qlinear import QuantLinear
from ..tensor import Tensor
from . import array_kernels


class ArrayOps:
    """Array versions of the Transformer's layer ops, on one device (see the module docstring)."""

    def __init__(self, device):
        self.device = device
        self.backend = device.backend
        self.xp = device.backend.xp

    @classmethod
    def for_model(cls, model) -> ArrayOps | None:
        """The ops for `model`'s device, or None where its forward must record a graph, runs dropout, or has
        weights other than CPU float32 (the Tensor path handles those)."""
        weight = model.transformer.wte.weight
        if GradMode.enabled or model.training or weight.device.type != "cpu" or weight.dtype is not float32:
            return None
        ops = getattr(model, "_array_ops", None)
        if ops is None or ops.device is not weight.device:
            ops = model._array_ops = cls(weight.device)
        return ops

    def wrap(self, array) -> Tensor:
        return Tensor._wrap(array, self.device)

    def linear(self, m, x):
        """m(x) for x (..., in_features): one product over all leading dims for nn.Linear and QuantLinear."""
        x2 = x.reshape(-1, x.shape[-1])
        if type(m) is QuantLinear:
            return m._array_forward(x2, None if m.bias is None else m.bias.data).reshape(x.shape[:-1] + (-1,))
        if type(m) is not nn.Linear:
            return m(self.wrap(x)).data
        w = m.weight.data
        out = self.backend.matmul(x2, w.T)
        if m.bias is not None:
            out += m.bias.data
        return out.reshape(x.shape[:-1] + w.shape[:1])

    def norm(self, m, x):
        """m(x) for the model's norms: RMSNorm by array_kernels.rms_norm (the formula of the CPU backend's
        rms_norm_forward in one pass a row), anything else as a module."""
        weight = m.weight if type(m) is nn.RMSNorm else None
        if weight is None or m.normalized_shape != x.shape[-1:] or x.dtype != np.float32:
            return m(self.wrap(x)).data
        eps = m.eps if m.eps is not None else float(np.finfo(x.dtype).eps)
        rows = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
        out = np.empty_like(rows)
        array_kernels.rms_norm(rows, weight.data, np.float32(eps), out)
        return out.reshape(x.shape)

    def rotary(self, cos, sin):
        """The rotation tables of a step from RotaryEmbedding.tables' cos and sin (..., 1, head_dim / 2), or None
        without rotary positions: cos (..., 1, 1, h) and [-sin, sin] (..., 1, 2, h), made once for all layers."""
        if cos is None:
            return None
        return cos[..., None, :], self.xp.stack([-sin, sin], axis=-2)

    def rotate(self, x, tables):
        """rope's rotation of x (..., head_dim) in three ops: with x = (x1, x2) as (..., 2, h) and its halves
        swapped (a view), x cos + swapped [-sin, sin] = (x1 cos - x2 sin, x2 cos + x1 sin), bit for bit what
        rope.Rotate computes in seven."""
        cos, signed_sin = tables
        halves = x.reshape(x.shape[:-1] + (2, x.shape[-1] // 2))
        out = halves * cos
        out += halves[..., ::-1, :] * signed_sin
        return out.reshape(x.shape)

    def qkv(self, attn, x, rotary):
        """(q, k, v) of an Attention for x (B, T, C): (B, T, heads, head_dim) each, q and k rotated when the
        step has rotary tables (self.rotary)."""
        B, T = x.shape[:2]
        nh, nkv, hd = attn.n_head, attn.n_kv_head, attn.head_dim
        qkv = self.linear(attn.c_attn, x).reshape(B, T, nh + 2 * nkv, hd)
        qk = qkv[:, :, :nh + nkv] if rotary is None else self.rotate(qkv[:, :, :nh + nkv], rotary)
        return qk[:, :, :nh], qk[:, :, nh:], qkv[:, :, nh + nkv:]

    def mlp(self, mlp, x):
        """An MLP module's output for x: the gated SiLU MLP on arrays, other activations as Tensor ops."""
        h = self.linear(mlp.c_fc, x)
        if not mlp.gated:
            h = mlp.act(self.wrap(h)).data
        elif mlp.act is F.silu and h.dtype == np.float32:
            h = self.silu_mul(h, mlp.hidden)
        else:
            h = mlp.act(self.wrap(h[..., :mlp.hidden])).data * h[..., mlp.hidden:]
        return self.linear(mlp.c_proj, h)

    def silu_mul(self, h, hidden: int):
        """silu(gate) * up for h = [gate, up] (..., 2 * hidden) float32, by array_kernels.silu_mul."""
        rows = np.ascontiguousarray(h.reshape(-1, h.shape[-1]))
        out = np.empty((rows.shape[0], hidden), np.float32)
        array_kernels.silu_mul(rows, hidden, out, np.empty(2 * hidden, np.int32))
        return out.reshape(h.shape[:-1] + (hidden,))

    def softmax_(self, scores, scale: float, bias):
        """softmax(scores * scale + bias) over the last axis, in place (bias: an additive mask or None)."""
        xp = self.xp
        scores *= scale
        if bias is not None:
            scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        xp.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        return scores

    def attend(self, attn, q, keys_t, values, mask):
        """Attention of q (B, T, n_head, hd) over keys_t (B, kv_heads, hd, S) and values (B, kv_heads, S, hd), mask
        as _Step.mask gives it (rows ordered (group, position)); returns (B, T, n_head * hd)."""
        B, T = q.shape[:2]
        nh, nkv, hd = attn.n_head, attn.n_kv_head, attn.head_dim
        g = nh // nkv
        if g == 1 or T == 1:  # (B, nkv, g * T, hd): each key/value head meets its g query heads in one matmul
            q = q.reshape(B, nkv, g, hd) if T == 1 else q.transpose(0, 2, 1, 3)
        else:
            q = q.reshape(B, T, nkv, g, hd).transpose(0, 2, 3, 1, 4).reshape(B, nkv, g * T, hd)
        weights = self.softmax_(self.backend.matmul(q, keys_t), attn.scale, mask)  # (B, nkv, gT, S)
        y = self.backend.matmul(weights, values)  # (B, nkv, g * T, hd)
        if T == 1:
            return y.reshape(B, 1, nh * hd)
        if g == 1:
            return y.transpose(0, 2, 1, 3).reshape(B, T, nh * hd)
        return y.reshape(B, nkv, g, T, hd).transpose(0, 3, 1, 2, 4).reshape(B, T, nh * hd)
