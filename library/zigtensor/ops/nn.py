"""Neural-network ops: softmax and log-softmax, dropout, linear, normalizations, embedding and attention."""

from __future__ import annotations

import contextlib
import math

from ..amp.autocast_mode import autocast_inputs, is_autocast_enabled
from ..autograd.function import Function
from ..autograd.grad_mode import GradMode
from ..dtypes import FLOAT, INT, bfloat16, bool_, float16, float32, float64
from .common import Tensor, normalize_dim, to_float, unbroadcast
from .elementwise import where
from .reduce import _sum_by_matmul

_HALF_NP = (float16.np, bfloat16.np)


class Softmax(Function):
    save_output = True

    def forward(self, a, axis):
        self.axis = axis
        xp = self.xp
        if a.size == 0:
            return a.copy()
        fused = _fused(self, "softmax", a, axis, False)
        if fused is not None:
            return fused
        x = a.astype(float32.np) if a.dtype in _HALF_NP else a
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        e /= e.sum(axis=axis, keepdims=True)
        return e.astype(a.dtype, copy=False)

    def backward(self, g):
        out = self.output()
        fused = _fused_backward(self, "softmax_backward", out, g, self.axis, False)
        if fused is not None:
            return fused, None
        return out * (g - (g * out).sum(self.axis, keepdim=True)), None


def _fused(fn: Function, name: str, *args):
    """The backend's fused kernel `name` on arrays (CUDA), or None: no such kernel, or not for this case."""
    kernel = getattr(fn.device.backend, name, None)
    return None if kernel is None else kernel(*args)


def _fused_backward(fn: Function, name: str, out: Tensor, g: Tensor, *args):
    """A fused backward kernel's result as a Tensor, only when no graph is recorded (create_graph=False):
    higher-order gradients need the composed formula."""
    if GradMode.enabled:
        return None
    r = _fused(fn, name, out.data, g.data, *args)
    return None if r is None else Tensor._wrap(r, g.device)


class LogSoftmax(Function):
    save_output = True

    def forward(self, a, axis):
        self.axis = axis
        xp = self.xp
        if a.size == 0:
            return a.copy()
        fused = _fused(self, "softmax", a, axis, True)
        if fused is not None:
            return fused
        x = a.astype(float32.np) if a.dtype in _HALF_NP else a
        shifted = x - x.max(axis=axis, keepdims=True)
        shifted -= xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        return shifted.astype(a.dtype, copy=False)

    def backward(self, g):
        out = self.output()
        fused = _fused_backward(self, "softmax_backward", out, g, self.axis, True)
        if fused is not None:
            return fused, None
        return g - out.exp() * g.sum(self.axis, keepdim=True), None


def _softmax_input(op, x: Tensor, dim, dtype):
    if dim is None:
        raise TypeError(f"{op}: dim is required (implicit dim selection is deprecated in PyTorch)")
    [x] = autocast_inputs(op, x) if dtype is None else (x,)  # an explicit dtype wins, as in PyTorch
    if dtype is not None:
        x = x.to(dtype)
    x = to_float(x)
    return x, normalize_dim(dim, x.ndim, op) if x.ndim else None


def softmax(x: Tensor, dim=None, dtype=None) -> Tensor:
    """exp(x_i) / sum_j exp(x_j) along dim."""
    x, axis = _softmax_input("softmax", x, dim, dtype)
    return Softmax.apply(x, axis)


def log_softmax(x: Tensor, dim=None, dtype=None) -> Tensor:
    """x_i - log sum_j exp(x_j) along dim, computed stably."""
    x, axis = _softmax_input("log_softmax", x, dim, dtype)
    return LogSoftmax.apply(x, axis)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when not training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if x.dtype.category != FLOAT:  # as PyTorch: an integer input is an error, not a silent cast
        raise RuntimeError(f"dropout: expected a floating point input, got {x.dtype.name}")
    if p == 1.0:
        return x * 0.0
    return Dropout.apply(x, p)


class Dropout(Function):
    """x * mask / (1 - p), mask[e] = (u_e >= p) for uniforms u from the device's generator, in one op: the
    backend draws the mask and applies it (backend.dropout_forward), backward applies the same mask."""

    def forward(self, x, p):
        out, self.mask = self.device.backend.dropout_forward(x, p)
        return out

    def backward(self, g):
        p = self.inputs[1]
        if GradMode.enabled:  # create_graph: the composed form, recorded
            return g * Tensor._wrap(self.mask, g.device) * (1.0 / (1.0 - p)), None
        return Tensor._wrap(self.device.backend.dropout_backward(g.data, self.mask, p), g.device), None

    def release(self) -> None:
        super().release()
        self.mask = None


class Linear(Function):
    """x @ weight^T + bias in one op: one GEMM over all leading dims with the bias added in place, and a
    backward that gives the weight's gradient in the weight's own (out, in) layout."""

    def forward(self, x, weight, bias, residual=None):
        """x @ weight^T + bias, plus residual (of the output's shape) when given (LinearAdd)."""
        x2 = x.reshape(-1, x.shape[-1])
        r2 = None if residual is None else residual.reshape(-1, weight.shape[0])
        # CPU: split between the cores, the bias and the residual added per part
        out = _fused(self, "linear_forward", x2, weight, bias, r2)
        if out is None:
            out = self.device.backend.matmul(x2, weight.T)  # (N, out)
            if bias is not None:
                out += bias
            if r2 is not None:
                out += r2
        return out.reshape(x.shape[:-1] + weight.shape[:1])

    def backward(self, g):
        return self._grads(g, *self.inputs[:3])

    def _grads(self, g, x, weight, bias):
        """(dx, dweight, dbias) for the output's gradient g."""
        if not GradMode.enabled and weight.requires_grad and (bias is None or bias.requires_grad):
            # CPU: the products on arrays, large ones side by side (backend.linear_backward); not when a graph
            # is recorded
            fused = _fused(self, "linear_backward", g.data.reshape(-1, g.shape[-1]),
                           x.data.reshape(-1, x.shape[-1]), weight.data, x.requires_grad, bias is not None)
            if fused is not None:
                gx, gw, gb = (None if a is None else Tensor._wrap(a, g.device) for a in fused)
                if gb is not None and gb.shape != bias.shape:  # a bias of shape () or (1,), broadcast
                    gb = gb.sum().reshape(bias.shape)
                return None if gx is None else gx.reshape(x.shape), gw, gb
        gx = g @ weight if x.requires_grad else None  # (..., out) @ (out, in)
        gw = None
        if weight.requires_grad:
            gw = g.reshape(-1, g.shape[-1]).mT @ x.reshape(-1, x.shape[-1])  # (out, N) @ (N, in)
        gb = unbroadcast(g, bias.shape) if bias is not None and bias.requires_grad else None
        return gx, gw, gb


class LinearAdd(Linear):
    """residual + x @ weight^T + bias in one op (a pre-norm block's residual connections): each core adds the
    residual to its rows of the product while they are in cache, instead of one more pass on one core. Linear's
    forward with the residual given; the residual's gradient is the output's."""

    def backward(self, g):
        return *self._grads(g, *self.inputs[:3]), g


def linear_add(x: Tensor, weight: Tensor, bias: Tensor | None, residual: Tensor) -> Tensor:
    """residual + linear(x, weight, bias): one op (LinearAdd) when the residual has the product's shape and
    dtype and linear would be one op; else the two."""
    y_shape = x.shape[:-1] + weight.shape[:1]
    if residual.shape == y_shape and residual.dtype is x.dtype and residual.device is x.device \
            and x.dtype is weight.dtype and weight.ndim == 2 and x.shape[-1:] == weight.shape[-1:] \
            and not is_autocast_enabled(x.device.type) and (bias is None or (bias.dtype is x.dtype
                                                                          and bias.shape == weight.shape[:1])):
        return LinearAdd.apply(x, weight, bias, residual)
    return residual + linear(x, weight, bias)


class GeluLinear(Function):
    """residual + gelu(h) @ weight^T + bias in one op: a transformer MLP's activation and output projection.

    NOTE: on the CPU each core activates its rows of h and multiplies them while they are in cache, and in
    backward turns its rows of d gelu(h) = g @ weight into dh at once (CPUBackend.gelu_linear_forward/backward):
    two parallel regions and two passes over the (N, hidden) activations fewer per MLP than gelu then linear."""

    def forward(self, h, weight, bias, residual, approximate):
        self.h = self.xp.ascontiguousarray(h.reshape(-1, h.shape[-1]))
        r2 = None if residual is None else residual.reshape(-1, weight.shape[0])
        y, self.a, self.saved = self.device.backend.gelu_linear_forward(self.h, approximate, weight, bias, r2)
        return y.reshape(h.shape[:-1] + weight.shape[:1])

    def backward(self, g):
        h, weight, bias, residual, approximate = self.inputs
        if GradMode.enabled:  # create_graph: the composed ops, recorded
            from ..autograd import grad
            from .elementwise import gelu

            y = linear(gelu(h, approximate), weight, bias)
            params = [t for t in (h, weight, bias) if t is not None and t.requires_grad]
            got = iter(grad(y, params, g, create_graph=True))
            grads = tuple(next(got) if t is not None and t.requires_grad else None for t in (h, weight, bias))
        else:
            dh, dw, db = self.device.backend.gelu_linear_backward(g.data.reshape(-1, g.shape[-1]), self.h, self.a,
                                                                   self.saved, weight.data, approximate,
                                                                   bias is not None)
            wrap = lambda a: None if a is None else Tensor._wrap(a, g.device)  # noqa: E731
            grads = (wrap(dh.reshape(h.shape)), wrap(dw), wrap(db))
        return *grads, (g if residual is not None else None), None

    def release(self) -> None:
        super().release()
        self.h = self.a = self.saved = None


def gelu_linear(h: Tensor, weight: Tensor, bias: Tensor | None = None, residual: Tensor | None = None,
                approximate: str = "none") -> Tensor:
    """residual + linear(gelu(h, approximate), weight, bias) (no residual when None): one op (GeluLinear) where
    the backend has its kernels (the CPU) and every tensor is float32 or float64 of one dtype and device, outside
    autocast; else the composed ops."""
    from .elementwise import gelu

    y_shape = h.shape[:-1] + weight.shape[:1]
    be = h.device.backend
    fused = (hasattr(be, "gelu_linear_forward") and h.ndim >= 2 and h.dtype in (float32, float64)
             and not is_autocast_enabled(h.device.type) and weight.ndim == 2 and weight.shape[1:] == h.shape[-1:]
             and (bias is None or bias.shape == weight.shape[:1]) and (residual is None or residual.shape == y_shape)
             and approximate in ("none", "tanh")
             and all(t is None or (t.dtype is h.dtype and t.device is h.device) for t in (weight, bias, residual)))
    if not fused:
        y = linear(gelu(h, approximate), weight, bias)
        return y if residual is None else residual + y
    return GeluLinear.apply(h, weight, bias, residual, approximate)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias."""
    x, weight, bias = autocast_inputs("linear", x, weight, bias)
    if x.shape[-1:] != weight.shape[-1:]:
        raise RuntimeError(f"linear: input's last dim {x.shape} does not match weight {weight.shape} "
                           f"(expected input (*, {weight.shape[-1]}))")
    plain_bias = bias is None or (bias.dtype is x.dtype and bias.shape in ((), (1,), weight.shape[:1]))
    if weight.ndim == 2 and x.dtype is weight.dtype and plain_bias and x.device is weight.device:
        return Linear.apply(x, weight, bias)
    out = x @ weight.mT  # mixed dtypes or unusual shapes: composed, with matmul's checks and promotion
    return out if bias is None else out + bias


def _norm_axes(op: str, x: Tensor, normalized_shape) -> tuple:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or x.shape[x.ndim - len(shape):] != shape or len(shape) > x.ndim:
        raise RuntimeError(f"{op}: normalized_shape {list(shape)} does not match the trailing dims of input "
                           f"of shape {x.shape}")
    return shape, tuple(range(x.ndim - len(shape), x.ndim))


def _check_affine(op: str, name: str, p, shape) -> None:
    if p is not None and p.shape != shape:
        raise RuntimeError(f"{op}: expected {name} of shape {shape}, got {p.shape}")


class LayerNorm(Function):
    """(x - mean) * rstd * weight + bias over the trailing axes, rstd = 1 / sqrt(var + eps).

    One op rather than a dozen: forward keeps the normalized input and rstd, and backward is the closed
    form dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = g * weight.
    """

    def forward(self, x, weight, bias, axes, eps):
        fused = _fused(self, "layer_norm_forward", x, weight, bias, eps) if axes == (x.ndim - 1,) else None
        if fused is not None:  # the backend's kernels; `saved` is what its backward takes (CPU xhat, CUDA mean)
            out, self.saved, self.rstd = fused
            self.xhat = None
            return out
        xp = self.xp
        xf = x.astype(float32.np) if x.dtype in _HALF_NP else x
        xhat = xf - self._mean(xf, axes)
        var = self._mean(xp.square(xhat), axes)
        var += eps
        self.rstd = rstd = xp.sqrt(var, out=var)
        xp.divide(1, rstd, out=rstd)
        xhat *= rstd
        self.xhat = xhat
        out = xhat if weight is None else xhat * weight
        if bias is not None:
            out = out + bias if out is xhat else xp.add(out, bias, out=out)
        return out.astype(x.dtype, copy=out is xhat)

    def _mean(self, a, axes):
        total = _sum_by_matmul(self, a, axes, True)  # BLAS: several times faster than a.mean for short rows
        if total is None:
            return a.mean(axis=axes, keepdims=True)
        total *= 1 / math.prod(a.shape[-len(axes):])
        return total

    def _saved(self):
        """(xhat, rstd) as Tensors: the saved arrays, or, when backward records a graph (create_graph),
        recomputed from x with Tensor ops so that they carry their dependence on x."""
        x, axes, eps = self.inputs[0], self.inputs[3], self.inputs[4]
        if GradMode.enabled:
            d = x - x.mean(axes, keepdim=True)
            rstd = ((d * d).mean(axes, keepdim=True) + eps).rsqrt()
            return d * rstd, rstd
        return Tensor._wrap(self.xhat, x.device), Tensor._wrap(self.rstd, x.device)

    def backward(self, g):
        x, weight, bias, axes, _ = self.inputs
        if self.xhat is None and not GradMode.enabled:  # the fused forward's kernel pair
            dx, dw, db = self.device.backend.layer_norm_backward(g.data, x.data, None if weight is None else
                                                                 weight.data, self.saved, self.rstd, bias is not None)
            wrap = lambda a, t: Tensor._wrap(a, g.device) if a is not None and t is not None and \
                t.requires_grad else None  # noqa: E731
            return wrap(dx, x), wrap(dw, weight), wrap(db, bias), None, None
        xhat, rstd = self._saved()
        lead = tuple(range(x.ndim - len(axes)))
        gw = (g * xhat).sum(lead) if weight is not None and weight.requires_grad else None
        gb = g.sum(lead) if bias is not None and bias.requires_grad else None
        gx = None
        if x.requires_grad:
            gxhat = g if weight is None else g * weight
            gx = rstd * (gxhat - gxhat.mean(axes, keepdim=True)
                         - xhat * (gxhat * xhat).mean(axes, keepdim=True))
        return gx, gw, gb, None, None

    def release(self) -> None:
        super().release()
        self.xhat = self.rstd = self.saved = None


def layer_norm(x: Tensor, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the trailing normalized_shape dims."""
    x, weight, bias = autocast_inputs("layer_norm", x, weight, bias)
    shape, axes = _norm_axes("layer_norm", x, normalized_shape)
    _check_affine("layer_norm", "weight", weight, shape)
    _check_affine("layer_norm", "bias", bias, shape)
    x = to_float(x)
    if any(p is not None and p.dtype is not x.dtype for p in (weight, bias)):
        # mixed dtypes: composed from Tensor ops, which promote
        d = x - x.mean(axes, keepdim=True)
        out = d * ((d * d).mean(axes, keepdim=True) + eps).rsqrt()
        out = out if weight is None else out * weight
        return out if bias is None else out + bias
    return LayerNorm.apply(x, weight, bias, axes, eps)


class LayerNormLinear(Function):
    """linear(layer_norm(x, ln_weight, ln_bias), weight, bias) over the last axis, with LayerNorm's affine part
    folded into the product: y = xhat @ (weight * ln_weight)^T + (weight @ ln_bias + bias).

    NOTE: the pre-norm transformer feeds every LayerNorm into a Linear. Folded, LayerNorm writes only xhat (not
    xhat * w + b: two passes fewer), and backward gets d xhat straight from the product (g @ the folded
    weight) and the LayerNorm parameters' gradients from the weight gradient's product G = g^T xhat, which the
    Linear computes anyway: dweight = G * ln_weight + outer(sum g, ln_bias), d ln_weight = sum_k weight * G,
    d ln_bias = (sum g) @ weight; three more passes over the activations saved. The CPU backend's kernels
    (layer_norm_linear_forward/backward: each one parallel region); `layer_norm_linear` says when it applies.
    """

    def forward(self, x, ln_weight, ln_bias, weight, bias, eps):
        self.w_eff = weight * ln_weight  # (out, in)
        b_eff = None if ln_bias is None else weight @ ln_bias
        if bias is not None:
            b_eff = bias if b_eff is None else b_eff + bias
        out, self.xhat, self.rstd = self.device.backend.layer_norm_linear_forward(
            x.reshape(-1, x.shape[-1]), eps, self.w_eff, b_eff)
        return out.reshape(x.shape[:-1] + weight.shape[:1])

    def backward(self, g):
        x, ln_weight, ln_bias, weight, bias, eps = self.inputs
        if GradMode.enabled:  # create_graph: the composed ops, recorded
            y = linear(layer_norm(x, x.shape[-1:], ln_weight, ln_bias, eps), weight, bias)
            from ..autograd import grad

            params = [t for t in (x, ln_weight, ln_bias, weight, bias) if t is not None and t.requires_grad]
            got = iter(grad(y, params, g, create_graph=True))
            return tuple(next(got) if t is not None and t.requires_grad else None
                         for t in (x, ln_weight, ln_bias, weight, bias)) + (None,)
        dx, G, gsum = self.device.backend.layer_norm_linear_backward(g.data.reshape(-1, g.shape[-1]), self.xhat,
                                                                     self.rstd, self.w_eff)
        dw = G * ln_weight.data
        if ln_bias is not None:
            dw += self.xp.outer(gsum, ln_bias.data)
        d_ln_w = self.xp.einsum("ki,ki->i", weight.data, G)
        d_ln_b = None if ln_bias is None else gsum @ weight.data
        wrap = lambda a: None if a is None else Tensor._wrap(a, g.device)  # noqa: E731
        return (wrap(dx.reshape(x.shape)), wrap(d_ln_w), wrap(d_ln_b), wrap(dw),
                wrap(gsum) if bias is not None else None, None)

    def release(self) -> None:
        super().release()
        self.xhat = self.rstd = self.w_eff = None


def layer_norm_linear(x: Tensor, ln_weight: Tensor, ln_bias: Tensor | None, weight: Tensor, bias: Tensor | None,
                      eps: float = 1e-5) -> Tensor:
    """linear(layer_norm(x, (C,), ln_weight, ln_bias, eps), weight, bias): one op (LayerNormLinear) where the
    backend has its kernels (the CPU) and every tensor is float32 or float64 of one dtype, outside autocast;
    else the two ops."""
    be = x.device.backend
    fused = (hasattr(be, "layer_norm_linear_forward") and x.ndim >= 2
             and x.dtype in (float32, float64) and not is_autocast_enabled(x.device.type) and weight.ndim == 2
             and all(t is None or (t.dtype is x.dtype and t.device is x.device)
                     for t in (ln_weight, ln_bias, weight, bias))
             and ln_weight.shape == x.shape[-1:] and (ln_bias is None or ln_bias.shape == x.shape[-1:])
             and weight.shape[1:] == x.shape[-1:] and (bias is None or bias.shape == weight.shape[:1]))
    if not fused:
        return linear(layer_norm(x, x.shape[-1:], ln_weight, ln_bias, eps), weight, bias)
    return LayerNormLinear.apply(x, ln_weight, ln_bias, weight, bias, eps)


def rms_norm(x: Tensor, normalized_shape, weight=None, eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight; eps defaults to the dtype's machine epsilon, as in PyTorch."""
    x, weight = autocast_inputs("rms_norm", x, weight)
    shape, axes = _norm_axes("rms_norm", x, normalized_shape)
    _check_affine("rms_norm", "weight", weight, shape)
    if eps is None:
        import numpy as np

        eps = float(np.finfo(x.dtype.np).eps)
    fused = getattr(x.device.backend, "rms_norm_forward", None)
    if fused is not None and axes == (x.ndim - 1,) and x.dtype.category == FLOAT and (
            weight is None or weight.dtype is x.dtype):
        return RMSNorm.apply(x, weight, axes, eps)
    out = x * ((x * x).mean(axes, keepdim=True) + eps).rsqrt()
    return out if weight is None else out * weight


class RMSNorm(Function):
    """x * rstd * weight over the last axis, rstd = 1 / sqrt(mean(x^2) + eps), with the backend's fused kernels
    (CUDA only; the CPU composes rms_norm from Tensor ops). Backward: dx = rstd (gw - x rstd^2 mean(gw x)),
    gw = g * weight, and dweight = sum over rows of g x rstd; in Tensor ops when a graph is recorded."""

    def forward(self, x, weight, axes, eps):
        out, self.rstd = self.device.backend.rms_norm_forward(x, weight, eps)
        return out

    def backward(self, g):
        x, weight, axes, eps = self.inputs
        if not GradMode.enabled:
            dx, dw = self.device.backend.rms_norm_backward(g.data, x.data, None if weight is None else weight.data,
                                                           self.rstd)
            return (Tensor._wrap(dx, g.device) if x.requires_grad else None,
                    Tensor._wrap(dw, g.device) if weight is not None and weight.requires_grad else None, None, None)
        rstd = ((x * x).mean(axes, keepdim=True) + eps).rsqrt()
        gw = g if weight is None else g * weight
        dx = rstd * (gw - x * (rstd * rstd) * (gw * x).mean(axes, keepdim=True)) if x.requires_grad else None
        dw = None
        if weight is not None and weight.requires_grad:
            dw = (g * x * rstd).sum(tuple(range(x.ndim - 1)))
        return dx, dw, None, None

    def release(self) -> None:
        super().release()
        self.rstd = None


def batch_norm(x: Tensor, running_mean=None, running_var=None, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize over the batch (and spatial) dims per channel (dim 1); in training, update running stats."""
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input with at least 2 dims (N, C, ...), got shape {x.shape}")
    c = x.shape[1]
    named = (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias))
    for name, t in named:
        if t is not None and t.shape != (c,):
            raise RuntimeError(f"batch_norm: expected {name} of shape ({c},), got {t.shape}")
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, c) + (1,) * (x.ndim - 2)
    if training:
        n = x.numel() // c
        if n <= 1:
            raise ValueError("batch_norm: expected more than 1 value per channel when training, got input "
                             f"{x.shape}")
        mu = x.mean(axes, keepdim=True)
        d = x - mu
        v = (d * d).mean(axes, keepdim=True)
        if running_mean is not None or running_var is not None:
            from ..autograd.grad_mode import no_grad

            with no_grad():
                if running_mean is not None:
                    running_mean.copy_(running_mean * (1 - momentum) + mu.reshape(c) * momentum)
                if running_var is not None:
                    running_var.copy_(running_var * (1 - momentum) + v.reshape(c) * (momentum * n / (n - 1)))
        out = d * (v + eps).rsqrt()
    else:
        if running_mean is None or running_var is None:
            raise RuntimeError("batch_norm: running_mean and running_var are required when training=False")
        out = (x - running_mean.reshape(bshape)) * (running_var.reshape(bshape) + eps).rsqrt()
    if weight is not None:
        out = out * weight.reshape(bshape)
    if bias is not None:
        out = out + bias.reshape(bshape)
    return out


def group_norm(x: Tensor, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Split the channels (dim 1) into num_groups groups; normalize each group of each sample over its
    channels and positions: (x - mean) / sqrt(var + eps), then a per-channel weight and bias."""
    x, weight, bias = autocast_inputs("group_norm", x, weight, bias)
    if x.ndim < 2:
        raise RuntimeError(f"group_norm: expected input with at least 2 dims (N, C, ...), "
                           f"got shape {x.shape}")
    n, c = x.shape[:2]
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups <= 0:
        raise ValueError(f"group_norm: num_groups must be a positive int, got {num_groups!r}")
    if c % num_groups:
        raise RuntimeError(f"group_norm: expected the number of channels ({c}, input of shape {x.shape}) "
                           f"to be divisible by num_groups={num_groups}")
    _check_affine("group_norm", "weight", weight, (c,))
    _check_affine("group_norm", "bias", bias, (c,))
    g = x.reshape(n, num_groups, -1)  # (N, G, C/G * spatial)
    d = g - g.mean(-1, keepdim=True)
    out = (d * ((d * d).mean(-1, keepdim=True) + eps).rsqrt()).reshape(x.shape)
    bshape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        out = out * weight.reshape(bshape)
    if bias is not None:
        out = out + bias.reshape(bshape)
    return out


class Embedding(Function):
    def forward(self, weight, idx, padding_idx):
        fused = _fused(self, "embedding_forward", weight, idx)
        return weight[idx] if fused is None else fused

    def backward(self, g):
        from .index import IndexAdd

        weight, idx, padding_idx = self.inputs
        fused = getattr(self.device.backend, "embedding_backward", None)
        if fused is not None and not GradMode.enabled:
            dw = fused(g.data, idx, weight.shape[0])
            if padding_idx is not None:
                dw[padding_idx] = 0  # the padding row never receives a gradient
            return Tensor._wrap(dw, g.device), None, None
        if padding_idx is not None:
            keep = Tensor._wrap(idx != padding_idx, g.device).unsqueeze(-1)
            g = g * keep  # the padding row never receives a gradient
        return IndexAdd.apply(g, (idx,), weight.shape), None, None


def embedding(x: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of weight picked by the integer indices in x: output shape x.shape + (embedding_dim,)."""
    if not isinstance(x, Tensor) or x.dtype.category != INT:
        raise RuntimeError(f"embedding: expected integer indices, got "
                           f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
    if weight.ndim != 2:
        raise RuntimeError("embedding: weight must be 2-d (num_embeddings, embedding_dim), got shape "
                           f"{weight.shape}")
    if x.device is not weight.device:
        raise RuntimeError(f"embedding: indices on {x.device} but weight on {weight.device}")
    n = weight.shape[0]
    if x.numel():
        lo, hi = int(x.data.min()), int(x.data.max())
        if lo < 0 or hi >= n:
            raise IndexError(f"embedding: index {hi if hi >= n else lo} is out of range for {n} embeddings")
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise ValueError(f"embedding: padding_idx {padding_idx} must be within num_embeddings ({n})")
        padding_idx %= n
    return Embedding.apply(weight, x.data, padding_idx)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask=None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(q @ k^T * scale + mask) @ v over (..., L, E) queries and (..., S, E) keys.

    attn_mask: bool (True = may attend) or float (added to the scores), broadcast to (..., L, S).
    enable_gqa: key/value heads (dim -3) repeat to match the query heads (grouped-query attention).
    """
    query, key, value, attn_mask = autocast_inputs("scaled_dot_product_attention", query, key, value, attn_mask)
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise RuntimeError("scaled_dot_product_attention: expected (..., L, E) tensors, got query "
                           f"{query.shape}, key {key.shape}, value {value.shape}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise RuntimeError(f"scaled_dot_product_attention: shapes do not fit: query {query.shape}, key "
                           f"{key.shape}, value {value.shape} (need query E == key E and key S == value S)")
    if is_causal and attn_mask is not None:
        raise RuntimeError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        hq, hk = query.shape[-3], key.shape[-3]
        if hq % hk:
            raise RuntimeError(f"scaled_dot_product_attention: {hq} query heads are not a multiple of {hk} "
                               "kv heads")
        key = _repeat_heads(key, hq // hk)
        value = _repeat_heads(value, hq // hk)
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    flash = getattr(query.device.backend, "attention_forward", None)
    if flash is not None and dropout_p == 0.0 and query.ndim >= 3 and query.shape[:-2] == key.shape[:-2] == \
            value.shape[:-2] and query.dtype is key.dtype is value.dtype and \
            (attn_mask is None or not attn_mask.requires_grad):  # the kernels give no gradient to a mask
        mask = None if attn_mask is None else attn_mask.data
        result = flash(query.data, key.data, value.data, scale, is_causal, mask)
        if result is not None:  # None: a head dim or dtype the kernel does not take
            return FlashAttention.apply(query, key, value, scale, is_causal, attn_mask, result)
    if attn_mask is None:
        # the common cases (no mask, or causal) in one op; a causal row always sees at least key 0
        weights = ScaledSoftmax.apply(query @ key.mT, scale, _causal_bias(query, L, S) if is_causal else None)
        if dropout_p > 0.0:
            weights = dropout(weights, dropout_p)
        return weights @ value
    scores = (query * scale) @ key.mT
    if attn_mask.dtype is bool_:
        scores = where(attn_mask, scores, float("-inf"))
    elif attn_mask.dtype.category == FLOAT:
        if attn_mask.dtype is not query.dtype:
            raise TypeError("scaled_dot_product_attention: a float attn_mask must have the query's "
                            f"dtype {query.dtype}, got {attn_mask.dtype}")
        scores = scores + attn_mask
    else:
        raise TypeError("scaled_dot_product_attention: attn_mask must be bool or float, got "
                        f"{attn_mask.dtype}")
    # A query that may attend nowhere gets zeros, not nan (PyTorch's safe softmax).
    blocked = query.device.backend.xp.isneginf(scores.data).all(axis=-1, keepdims=True)
    if blocked.any():
        blocked = Tensor._wrap(blocked, query.device)
        weights = softmax(scores.masked_fill(blocked, 0.0), dim=-1).masked_fill(blocked, 0.0)
    else:
        weights = softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p)
    return weights @ value


class FlashAttention(Function):
    """softmax(q k^T scale + mask) v computed by the backend's flash-attention kernel (CUDA): `result` is the
    kernel's (out, lse), computed before apply so that an unsupported case falls back to the composed ops.
    Backward: the kernel's, or, when a graph is recorded, the same gradients from Tensor ops."""

    def forward(self, q, k, v, scale, causal, mask, result):
        out, self.lse = result
        self.saved_out = out
        return out

    def backward(self, g):
        q, k, v, scale, causal, mask, _ = self.inputs
        if not GradMode.enabled:
            dq, dk, dv = self.device.backend.attention_backward(
                q.data, k.data, v.data, self.saved_out, self.lse, g.data, scale, causal,
                None if mask is None else mask.data)
            return tuple(Tensor._wrap(t, g.device) for t in (dq, dk, dv)) + (None,) * 4
        s = (q @ k.mT) * scale
        if causal:
            s = s + Tensor._wrap(_causal_bias(q, q.shape[-2], k.shape[-2]), q.device).to(s.dtype)
        elif mask is not None:
            s = where(mask, s, float("-inf")) if mask.dtype is bool_ else s + mask
        p = softmax(s, dim=-1)
        dp = g @ v.mT
        ds = p * (dp - (dp * p).sum(-1, keepdim=True))
        return (ds @ k) * scale, (ds.mT @ q) * scale, p.mT @ g, None, None, None, None

    def release(self) -> None:
        super().release()
        self.lse = None


class ScaledSoftmax(Function):
    """softmax(scores * scale + bias) over the last axis; bias (an array broadcast to the scores, or None)
    holds 0 where a query may attend and -inf where it may not."""

    save_output = True

    def forward(self, s, scale, bias):
        xp = self.xp
        self.scale = scale
        if s.size == 0:
            return s.copy()
        out = xp.multiply(s, scale, dtype=float32.np if s.dtype in _HALF_NP else s.dtype)
        if bias is not None:
            out += bias
        # NOTE: each row is shifted by its first score instead of its maximum (a reduction NumPy does slowly):
        # key 0 is never masked (no bias, or a causal one), so the row's sum is >= exp(0) = 1 and the
        # result still depends on that row alone; a row whose sum overflows falls back to the maximum.
        errstate = getattr(xp, "errstate", None)
        with errstate(over="ignore") if errstate else contextlib.nullcontext():
            e = xp.exp(out - out[..., :1])
        total = self._row_sums(e)
        if not xp.isfinite(total).all():
            e = xp.exp(xp.subtract(out, out.max(axis=-1, keepdims=True), out=out), out=e)
            total = self._row_sums(e)
        e *= 1 / total
        return e.astype(s.dtype, copy=False)

    def _row_sums(self, e):
        total = _sum_by_matmul(self, e, (e.ndim - 1,), True)  # BLAS: several times faster than e.sum
        return e.sum(axis=-1, keepdims=True) if total is None else total

    def backward(self, g):
        out = self.output()
        return out * (g - (g * out).sum(-1, keepdim=True)) * self.scale, None, None


_CAUSAL_BIAS: dict = {}


def _causal_bias(x: Tensor, L: int, S: int):
    """(L, S) array: 0 on and below the diagonal, -inf above it, kept per device, dtype and size."""
    key = (x.device, x.dtype, L, S)
    bias = _CAUSAL_BIAS.get(key)
    if bias is None:
        xp = x.device.backend.xp
        np_dtype = float32.np if x.dtype.np in _HALF_NP else x.dtype.np
        bias = xp.where(xp.tri(L, S, dtype=bool), 0.0, -xp.inf).astype(np_dtype)
        if len(_CAUSAL_BIAS) >= 64:  # generation asks for every length up to the context: keep it small
            _CAUSAL_BIAS.clear()
        _CAUSAL_BIAS[key] = bias
    return bias


def _repeat_heads(x: Tensor, n: int) -> Tensor:
    # (..., H, S, E) -> (..., H*n, S, E) with each head repeated n times in a row
    lead, (h, s, e) = x.shape[:-3], x.shape[-3:]
    return x.unsqueeze(-3).expand(*lead, h, n, s, e).reshape(*lead, h * n, s, e)
