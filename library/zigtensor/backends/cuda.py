"""The CUDA backend: `xp` is our array module (cuda_array.py, every op on kernels/*.cu), plus the entry points
the CPU backend has (conversions, matmul, index_add, erf, the RNG) and the fused kernels ops may use.

Fused entry points are optional: an op asks `getattr(backend, "softmax", None)` and keeps its own
composition when the backend has none (the CPU) or when the entry point returns None (a case its kernel does
not cover). Entry points take and return DeviceArrays. Each one is bound only when its launcher module
(backends/cuda_kernels/<family>.py) imports, so a missing family degrades to the composed ops instead of
failing. Without CuPy or a GPU, create() raises zigtensor.cuda's one-line RuntimeError.
"""

from __future__ import annotations

import importlib
import os

import numpy as np

from . import cuda_array
from .cuda_array import DeviceArray
from .cuda_kernels import elementwise as _ew

_HALF = (np.dtype(np.float16), np.dtype(cuda_array.bfloat16))


def _raw(x):
    return None if x is None else x._a


def _wrap(x):
    return None if x is None else DeviceArray(x)


def _launcher(family: str):
    """backends/cuda_kernels/<family>.py, or None while that family's kernels are not there."""
    try:
        return importlib.import_module(f"{__package__}.cuda_kernels.{family}")
    except ImportError:
        return None


def _integer_matmul(a, b):
    """a @ b for integer or bool arrays (CuPy arrays in and out), which the GEMM kernels do not take: one
    broadcast product and one reduction over K, exact, in NumPy's result dtype (bool: any of the ands).
    NOTE: M * K * N elements of temporary memory; integer products are rare and small (indices, masks)."""
    x, y = DeviceArray(a), DeviceArray(b)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dim, got shapes {x.shape} and {y.shape}")
    vec_x, vec_y = x.ndim == 1, y.ndim == 1
    x = x.reshape(1, -1) if vec_x else x
    y = y.reshape(-1, 1) if vec_y else y
    if x.shape[-1] != y.shape[-2]:
        raise ValueError(f"matmul: inner dims differ: a {tuple(a.shape)} @ b {tuple(b.shape)}")
    products = cuda_array.multiply(cuda_array.expand_dims(x, -1), cuda_array.expand_dims(y, -3))
    dt = np.result_type(a.dtype, b.dtype)
    out = cuda_array.any(products, axis=-2) if dt == np.bool_ else cuda_array.sum(products, axis=-2, dtype=dt)
    if vec_x:
        out = out.reshape(out.shape[:-2] + out.shape[-1:])
    if vec_y:
        out = out.reshape(out.shape[:-1])
    return out._a


def gemm(a, b, out=None):
    """(..., M, K) @ (..., K, N) on CuPy arrays with our GEMM kernels (cuBLAS only with ZT_GEMM=cublas); integer
    and bool operands by _integer_matmul. out: a CuPy array of the result's shape and a's dtype to write into
    (NumPy's matmul(out=)); the result (out when given)."""
    if np.dtype(a.dtype).kind in "biu" and np.dtype(b.dtype).kind in "biu":
        result = _integer_matmul(a, b)
        if out is None:
            return result
        _ew.copy(out, result)
        return out
    if os.environ.get("ZT_GEMM") == "cublas":
        from .. import cuda

        return cuda.require_cupy().matmul(a, b, out=out)
    mod = _launcher("gemm")
    if mod is None:
        raise NotImplementedError("matmul on CUDA needs the GEMM kernels (backends/cuda_kernels/gemm.py), which are "
                                  "missing; set ZT_GEMM=cublas to use cuBLAS instead")
    return mod.matmul(a, b, out=out)


class CUDABackend:
    name = "cuda"
    xp = cuda_array
    array_type = DeviceArray

    def __init__(self, device):
        from .. import cuda

        self.device = device
        self._cupy = cuda.require_cupy()
        if device.index is not None and device.index >= cuda.device_count():
            raise RuntimeError(f"device {device} does not exist: {cuda.device_count()} CUDA device(s) found")
        cuda.set_device(device.index or 0)
        self._bind_fused()
        from ..random import initial_seed

        self.seed(initial_seed())

    # --- conversion -------------------------------------------------------------------------------------
    def asarray(self, data, np_dtype=None):
        return cuda_array.asarray(data, np_dtype)

    def to_numpy(self, arr) -> np.ndarray:
        return arr.get()  # NOTE: a copy, unlike the CPU backend's view

    def from_numpy(self, arr: np.ndarray):
        # NOTE: np.asarray(order="C"), not np.ascontiguousarray, which makes a 0-d array 1-d
        return DeviceArray(self._cupy.asarray(np.asarray(arr, order="C")))

    # --- the few ops xp does not cover the same way on every device --------------------------------------
    def matmul(self, a, b):
        return DeviceArray(gemm(a._a, b._a))

    def index_add(self, target, index, values) -> None:
        """target[index] += values, accumulating over repeated indices (atomics)."""
        from .cuda_kernels import index as _ix

        key = cuda_array._normalize_key(index)
        if cuda_array._is_basic(key):
            target[key] += values
            return
        view, adv_axes, arrays, bpos = cuda_array._prepare_advanced(target._a, key)
        _ix.put(view, adv_axes, arrays, bpos, cuda_array._operand(values), accumulate=True)

    def erf(self, x):
        return DeviceArray(_ew.unary("erf", x._a))

    # --- fused elementwise (ours) ---------------------------------------------------------------------------
    def gelu(self, x, approximate: str = "none"):
        """(gelu(x), None) in one pass (erf form, or the tanh approximation): backward recomputes from x, which
        costs a kernel less memory traffic than a saved array would."""
        return DeviceArray(_ew.unary("gelu" if approximate == "none" else "gelu_tanh", x._a)), None

    def gelu_backward(self, g, x, approximate: str = "none", saved=None):
        """g * gelu'(x) in one pass (saved: gelu's None)."""
        op = "gelu_backward" if approximate == "none" else "gelu_tanh_backward"
        return DeviceArray(_ew.binary(op, g._a, x._a))

    def bias_act(self, x, bias, act: str = "none", residual=None):
        """act(x + bias) (+ residual) in one pass over x (..., N), bias (N,)."""
        return DeviceArray(_ew.bias_act(x._a, _raw(bias), act, _raw(residual)))

    # --- random numbers: Philox4x32-10, state (seed, offset) ------------------------------------------------
    def seed(self, seed: int) -> None:
        self._seed, self._offset = int(seed), 0

    def get_rng_state(self):
        return {"seed": self._seed, "offset": self._offset}

    def set_rng_state(self, state) -> None:
        if not isinstance(state, dict) or set(state) != {"seed", "offset"}:
            raise ValueError(f"set_rng_state: a CUDA generator state is {{'seed': int, 'offset': int}}, got {state!r}")
        self._seed, self._offset = int(state["seed"]), int(state["offset"])

    def _next_offset(self) -> int:
        """The offset of the next draw: each draw is its own Philox stream (cuda_kernels/random.py)."""
        offset = self._offset
        self._offset += 1
        return offset

    def _draw(self, kind: str, shape, np_dtype):
        from .cuda_kernels import random as _random

        fn = _random.uniform if kind == "uniform" else _random.normal
        return DeviceArray(fn(tuple(int(s) for s in shape), np.dtype(np_dtype), self._seed, self._next_offset()))

    def rand(self, shape, np_dtype):
        return self._draw("uniform", shape, np_dtype)

    def randn(self, shape, np_dtype):
        return self._draw("normal", shape, np_dtype)

    def randint(self, low, high, shape, np_dtype):
        u = self._draw("uniform", shape, np.float64)
        span = int(high) - int(low)
        # floor(low + u * span), u in [0, 1): every integer of [low, high) equally likely up to 2^-53
        v = cuda_array.floor(cuda_array.multiply(u, float(span)))  # noqa: F821 (generated ufuncs)
        return cuda_array.add(v.astype(np.int64), int(low)).astype(np_dtype)  # noqa: F821

    def dropout_forward(self, x, p: float):
        """(x * mask / (1 - p), mask) in one kernel, mask drawn from the next Philox stream (kernels/random.cu)."""
        from .cuda_kernels import random as _random

        y, mask = _random.dropout(x._a, p, self._seed, self._next_offset())
        return DeviceArray(y), DeviceArray(mask)

    def dropout_backward(self, g, mask, p: float):
        from .cuda_kernels import random as _random

        return DeviceArray(_random.dropout_backward(g._a, mask._a, p))

    def argsort(self, a, axis: int, descending: bool):
        from .cuda_kernels import sort as _sort

        return DeviceArray(_sort.argsort(a._a, axis, descending))

    def permutation(self, n: int):
        # NOTE: a permutation needs a sort, which has no kernel of ours: drawn on the host from the same
        # (seed, offset) stream and uploaded (it is made once per epoch, not per step)
        gen = np.random.Generator(np.random.Philox(key=self._seed, counter=self._next_offset()))
        return self.from_numpy(gen.permutation(n).astype(np.int64))

    # --- fused kernels of the other families (bound when present) ------------------------------------------
    def _bind_fused(self) -> None:
        softmax, norm = _launcher("softmax"), _launcher("norm")
        ce, emb, att, opt = _launcher("cross_entropy"), _launcher("embedding"), _launcher("attention"), \
            _launcher("optim")
        if softmax is not None:
            self.softmax = lambda x, axis, log=False: _wrap(softmax.softmax(x._a, axis, log))
            self.softmax_backward = lambda y, dy, axis, log=False: _wrap(softmax.softmax_backward(y._a, dy._a, axis,
                                                                                                  log))
        if norm is not None:
            self.layer_norm_forward = lambda x, w, b, eps: tuple(
                _wrap(t) for t in norm.layer_norm_forward(x._a, _raw(w), _raw(b), eps))
            self.layer_norm_backward = lambda dy, x, w, mean, rstd, has_bias: tuple(
                _wrap(t) for t in norm.layer_norm_backward(dy._a, x._a, _raw(w), mean._a, rstd._a, has_bias=has_bias))
            self.rms_norm_forward = lambda x, w, eps: tuple(_wrap(t) for t in norm.rms_norm_forward(x._a, _raw(w),
                                                                                                   eps))
            self.rms_norm_backward = lambda dy, x, w, rstd: tuple(
                _wrap(t) for t in norm.rms_norm_backward(dy._a, x._a, _raw(w), rstd._a))
        if ce is not None:
            self.cross_entropy_forward = lambda logits, targets, ignore_index, smoothing: self._cross_entropy(
                ce, logits, targets, ignore_index, smoothing)
            self.cross_entropy_backward = lambda logits, targets, lse, g_rows, ignore_index, smoothing: _wrap(
                ce.cross_entropy_backward(logits._a, targets._a, lse._a, g_rows._a, ignore_index, smoothing))
        if emb is not None:
            self.embedding_forward = lambda weight, ids: _wrap(emb.embedding_forward(weight._a, ids._a))
            self.embedding_backward = lambda g, ids, num: _wrap(emb.embedding_backward(g._a, ids._a, num))
        if att is not None:
            self.attention_forward = self._attention_forward
            self.attention_backward = self._attention_backward
            self._att = att
        if opt is not None:
            self._opt = opt
            self.adam_step = self._adam_step
            self.sgd_step = self._sgd_step
        conv = _launcher("conv")
        if conv is not None:
            self._conv = conv
            self.conv2d_forward = self._conv2d_forward
            self.conv2d_backward = self._conv2d_backward
        pool = _launcher("pool")
        if pool is not None:
            self._pool = pool
            self.max_pool2d_forward = self._max_pool2d_forward
            self.max_pool2d_backward = self._max_pool2d_backward
            self.avg_pool2d_forward = self._avg_pool2d_forward
            self.avg_pool2d_backward = self._avg_pool2d_backward

    @staticmethod
    def _conv_padding(geom):
        """(top, left) padding of ops.conv's Geometry, or None when it is not symmetric (conv.cu's contract)."""
        (top, bottom), (left, right) = geom.pads
        return (top, left) if (top, left) == (bottom, right) else None

    def _conv2d_forward(self, x, w, b, geom, groups):
        """conv.cu's forward (im2col + our GEMM, bias added) for ops.conv.Conv, or None for a float dtype or
        padding it does not take."""
        padding = self._conv_padding(geom)
        if padding is None or x.dtype != w.dtype or np.dtype(x.dtype).kind != "f":
            return None
        return DeviceArray(self._conv.conv2d_forward(x._a, w._a, _raw(b), geom.stride, padding, geom.dilation,
                                                     groups))

    def _conv2d_backward(self, g, x, w, geom, groups, needs):
        """(dx, dw, db) of _conv2d_forward, an entry None where `needs` says it is not wanted."""
        out = self._conv.conv2d_backward(g._a, x._a, w._a, geom.stride, self._conv_padding(geom), geom.dilation,
                                         groups, needs=needs)
        return tuple(None if t is None else DeviceArray(t) for t in out)

    @staticmethod
    def _pool_args(geom, ceil_mode: bool) -> dict:
        """pool.cu's launcher arguments for ops.conv's pooling Geometry: its bottom/right pads follow from
        the top/left ones and ceil_mode."""
        (top, _), (left, _) = geom.pads
        return dict(kernel_size=geom.kernel, stride=geom.stride, padding=(top, left), ceil_mode=ceil_mode)

    @staticmethod
    def _pool_takes(x) -> bool:
        """pool.cu's cases: a float dtype and (H, W) planes whose positions fit its int arithmetic."""
        dt = np.dtype(x.dtype)
        return (dt.kind == "f" or dt in _HALF) and x.shape[-2] * x.shape[-1] < 2**31

    def _max_pool2d_forward(self, x, geom, ceil_mode):
        """(y, int64 indices: PyTorch's flat positions h * W + w in each plane) of pool.cu for ops.conv's
        pooling, or None for a case it does not take."""
        if not self._pool_takes(x):
            return None
        y, indices = self._pool.max_pool2d_forward(x._a, dilation=geom.dilation, **self._pool_args(geom, ceil_mode))
        return DeviceArray(y), DeviceArray(indices)

    def _max_pool2d_backward(self, g, indices, shape, geom, ceil_mode):
        return DeviceArray(self._pool.max_pool2d_backward(g._a, indices._a, tuple(shape), dilation=geom.dilation,
                                                          **self._pool_args(geom, ceil_mode)))

    def _avg_pool2d_forward(self, x, geom, ceil_mode, count_include_pad, divisor_override):
        """pool.cu's average pooling for ops.conv, or None for a case it does not take."""
        if not self._pool_takes(x):
            return None
        return DeviceArray(self._pool.avg_pool2d_forward(x._a, count_include_pad=count_include_pad,
                                                         divisor_override=divisor_override,
                                                         **self._pool_args(geom, ceil_mode)))

    def _avg_pool2d_backward(self, g, shape, geom, ceil_mode, count_include_pad, divisor_override):
        return DeviceArray(self._pool.avg_pool2d_backward(g._a, tuple(shape), count_include_pad=count_include_pad,
                                                          divisor_override=divisor_override,
                                                          **self._pool_args(geom, ceil_mode)))

    @staticmethod
    def _cross_entropy(ce, logits, targets, ignore_index, smoothing):
        """(per-row losses in the logits' dtype, as the CPU's composed loss gives them; lse in float32/64)."""
        rows, lse = ce.cross_entropy_forward(logits._a, targets._a, ignore_index, smoothing)
        rows = DeviceArray(rows)
        return rows.astype(logits.dtype, copy=False), DeviceArray(lse)

    def _attention_forward(self, q, k, v, scale, causal, mask=None):
        """(out, lse) of flash attention, or None for a case the kernel does not take (head dim, dtype, values
        of another width than the queries)."""
        if v.shape[-1] != q.shape[-1] or k.shape[-1] != q.shape[-1]:
            return None  # NOTE: the kernels take one head dim D for q, k and v; the composed ops take any
        try:
            out, lse = self._att.flash_attention_forward(q._a, k._a, v._a, scale, causal, _raw(mask))
        except NotImplementedError:
            return None
        return DeviceArray(out), DeviceArray(lse)

    def _attention_backward(self, q, k, v, out, lse, dout, scale, causal, mask=None):
        return tuple(DeviceArray(t) for t in self._att.flash_attention_backward(
            q._a, k._a, v._a, out._a, lse._a, dout._a, scale, causal, _raw(mask)))

    def _adam_step(self, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step, **hyper) -> None:
        """One Adam/AdamW step over lists of DeviceArrays (in place), in few launches."""
        self._opt.adam_step([p._a for p in params], [g._a for g in grads], [m._a for m in exp_avgs],
                            [v._a for v in exp_avg_sqs],
                            None if max_exp_avg_sqs is None else [v._a for v in max_exp_avg_sqs], step, **hyper)

    def _sgd_step(self, params, grads, momentum_buffers, first_step: bool, **hyper) -> None:
        self._opt.sgd_step([p._a for p in params], [g._a for g in grads],
                           None if momentum_buffers is None else [b._a for b in momentum_buffers], first_step,
                           **hyper)

    def __repr__(self) -> str:
        return f"CUDABackend({self.device})"


def create(device) -> CUDABackend:
    return CUDABackend(device)
