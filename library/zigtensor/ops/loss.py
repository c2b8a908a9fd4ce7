"""Loss functions with torch.nn.functional's names, arguments, defaults and semantics.

Every loss is a composition of differentiable Tensor ops (log_softmax, indexing, where, log, ...), so first-
and second-order gradients come from those ops; nothing here has its own backward. Float32 stays float32.

cross_entropy = log_softmax + nll_loss for class indices; class probabilities take a separate path. The
weighted 'mean' of nll_loss / cross_entropy divides by the summed weights of the non-ignored targets, as
PyTorch does; every other 'mean' divides by the element count (nan for an empty input).
"""

from __future__ import annotations

import warnings

from ..amp.autocast_mode import autocast_inputs
from ..autograd.function import Function
from ..autograd.grad_mode import GradMode
from ..dtypes import FLOAT, int64, uint8
from .common import Tensor, broadcast_shapes
from .elementwise import abs, clamp, exp, log, log1p, maximum, where
from .index import GetItem
from .nn import log_softmax, softmax

_REDUCTIONS = ("none", "mean", "sum")
_NAN = float("nan")


# --------------------------------------------------------------------------------------------- helpers
def _check_reduction(op: str, reduction, allowed=_REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"{op}: reduction must be one of {', '.join(repr(r) for r in allowed)}, "
                         f"got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    """Apply 'none' (elementwise losses), 'mean' (nan when empty) or 'sum'."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean()


def _divide(total: Tensor, denom, sign: float = 1.0) -> Tensor:
    """sign * total / denom; nan (as 0/0 gives in PyTorch) without NumPy's divide warning when denom is 0."""
    if isinstance(denom, Tensor):
        if float(denom.data) == 0.0:
            return total * _NAN
        return total / denom if sign == 1.0 else total / (denom * sign)
    return total * (sign / denom) if denom else total * _NAN


def _check_tensor(op: str, name: str, x) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected {name} to be a Tensor, got {type(x).__name__}")


def _check_float_input(op: str, x) -> None:
    _check_tensor(op, "input", x)
    if x.dtype.category != FLOAT:
        raise RuntimeError(f"{op}: expected a floating-point input, got {x.dtype}")


def _same_device(op: str, x: Tensor, name: str, other: Tensor) -> None:
    if other.device is not x.device:
        raise RuntimeError(f"{op}: {name} on {other.device} but input on {x.device}")


def _pair(op: str, input, target, *, warn: bool = True) -> None:
    """Elementwise losses: target broadcasts against input (with PyTorch's warning when the sizes differ)."""
    _check_float_input(op, input)
    _check_tensor(op, "target", target)
    _same_device(op, input, "target", target)
    if input.shape != target.shape:
        broadcast_shapes(op, input.shape, target.shape)
        if warn:
            warnings.warn(f"{op}: using a target size {target.shape} that is different to the input size "
                          f"{input.shape}; this will likely lead to incorrect results due to broadcasting. "
                          "Please ensure they have the same size.", UserWarning, stacklevel=3)


def _check_class_weight(op: str, input: Tensor, weight, c: int):
    if weight is None:
        return None
    _check_tensor(op, "weight", weight)
    _same_device(op, input, "weight", weight)
    if weight.shape != (c,):
        raise RuntimeError(f"{op}: weight tensor should be defined either for all {c} classes or no classes, "
                           f"but got weight of shape {weight.shape} (expected ({c},))")
    return weight if weight.dtype is input.dtype else weight.to(input.dtype)


def _check_elementwise_weight(op: str, name: str, input: Tensor, weight):
    if weight is None:
        return None
    _check_tensor(op, name, weight)
    _same_device(op, input, name, weight)
    try:
        ok = broadcast_shapes(op, input.shape, weight.shape) == input.shape
    except ValueError:
        ok = False
    if not ok:
        raise RuntimeError(f"{op}: {name} of shape {weight.shape} does not broadcast to the input shape "
                           f"{input.shape}")
    return weight


# --------------------------------------------------------------------------------------------- classification
def _nll(op: str, logp: Tensor, target: Tensor, weight, ignore_index: int, reduction: str,
         label_smoothing: float = 0.0) -> Tensor:
    """Negative log-likelihood of class indices on (N, C, d1, ...) log-probabilities (shapes already
    checked), optionally mixed with the label-smoothing term -sum_c w_c logp_c as cross_entropy does.
    """
    xp = logp.device.backend.xp
    t = target.data
    if t.dtype != int64.np:
        t = t.astype(int64.np)
    c = logp.shape[1]
    mask = None
    if t.size:
        ignored = t == ignore_index
        if ignored.any():
            mask = ~ignored
            valid = t[mask]
        else:
            valid = t
        if valid.size:
            lo, hi = int(valid.min()), int(valid.max())
            if lo < 0 or hi >= c:
                bad = lo if lo < 0 else hi
                raise IndexError(f"{op}: target {bad} is out of bounds: expected class indices in "
                                 f"[0, {c - 1}] (or ignore_index={ignore_index})")
        if mask is not None:
            t = xp.where(mask, t, 0)
    # pick logp[n, t[n, d...], d...]: index arrays for every dim, the target's in the class dim
    grids = xp.indices(t.shape, sparse=True) if t.ndim > 1 else (xp.arange(t.shape[0]),)
    key = (grids[0], t) + tuple(grids[1:])
    loss = GetItem.apply(logp, key)  # log-probability of the target class: shape of target
    w_t = None
    if weight is not None:
        w_t = GetItem.apply(weight, (t,))
        loss = loss * w_t
    if label_smoothing > 0.0:
        view = (1, c) + (1,) * (logp.ndim - 2)
        smooth = (logp if weight is None else logp * weight.reshape(view)).sum(1)
        loss = loss * (1.0 - label_smoothing) + smooth * (label_smoothing / c)
    if mask is not None:
        loss = where(Tensor._wrap(mask, logp.device), loss, 0.0)
    if reduction == "none":
        return -loss
    if reduction == "sum":
        return -(loss.sum())
    # mean: -sum / (count or summed weights of the non-ignored targets), the sign folded into the scale
    if w_t is None:
        return _divide(loss.sum(), t.size if mask is None else int(mask.sum()), -1.0)
    denom = (w_t if mask is None else where(Tensor._wrap(mask, logp.device), w_t, 0.0)).sum()
    return _divide(-(loss.sum()), denom)


def _index_target_shapes(op: str, input: Tensor, target: Tensor) -> None:
    if target.dtype is not int64 and target.dtype is not uint8:
        raise RuntimeError(f"{op}: expected target of class indices with dtype int64 (or uint8), got "
                           f"{target.dtype}")
    if input.ndim == 1:
        if target.ndim != 0:
            raise ValueError(f"{op}: unbatched input of shape {input.shape} expects a 0-d target, got target "
                             f"of shape {target.shape}")
        return
    want = (input.shape[0],) + input.shape[2:]
    if target.shape != want:
        if target.ndim == 0 or target.shape[0] != input.shape[0]:
            raise ValueError(f"{op}: expected input batch size ({input.shape[0]}) to match target batch size "
                             f"(target of shape {target.shape}, input of shape {input.shape})")
        raise ValueError(f"{op}: expected target of shape {want} for input of shape {input.shape}, got "
                         f"{target.shape}")


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """-input[n, target[n]] * weight[target[n]] over (C,), (N, C) or (N, C, d1, ...) log-probabilities.

    Targets equal to ignore_index contribute nothing; 'mean' divides by the summed weights of the rest.
    """
    input, weight = autocast_inputs("nll_loss", input, weight)
    return _nll_entry("nll_loss", input, target, weight, ignore_index, reduction, 0.0, log_probs=True)


def _nll_entry(op, input, target, weight, ignore_index, reduction, label_smoothing, log_probs):
    _check_reduction(op, reduction)
    _check_float_input(op, input)
    _check_tensor(op, "target", target)
    _same_device(op, input, "target", target)
    if input.ndim == 0:
        raise ValueError(f"{op}: expected input of shape (C,), (N, C) or (N, C, d1, ...), got a 0-d tensor")
    _index_target_shapes(op, input, target)
    c = input.shape[0] if input.ndim == 1 else input.shape[1]
    weight = _check_class_weight(op, input, weight, c)
    unbatched = input.ndim == 1
    if unbatched:
        input, target = input.unsqueeze(0), target.reshape(1)
    logp = input if log_probs else log_softmax(input, 1)
    out = _nll(op, logp, target, weight, ignore_index, reduction, label_smoothing)
    return out.reshape(()) if unbatched and reduction == "none" else out


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over the class dim (dim 1, or 0 for unbatched (C,) input) followed by nll_loss.

    target: int64 class indices of shape (N,) / (N, d1, ...) / () for unbatched, or float class probabilities
    of the input's shape. label_smoothing mixes in the uniform distribution over the C classes.
    """
    input, target, weight = autocast_inputs("cross_entropy", input, target, weight)
    op = "cross_entropy"
    _check_reduction(op, reduction)
    _check_float_input(op, input)
    _check_tensor(op, "target", target)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    if target.dtype.category != FLOAT:
        fused = _fused_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
        if fused is not None:
            return fused
        return _nll_entry(op, input, target, weight, ignore_index, reduction, label_smoothing,
                          log_probs=False)
    # class probabilities
    _same_device(op, input, "target", target)
    if input.ndim == 0:
        raise ValueError(f"{op}: expected input of shape (C,), (N, C) or (N, C, d1, ...), got a 0-d tensor")
    if target.shape != input.shape:
        want = (input.shape[0],) + input.shape[2:] if input.ndim > 1 else ()
        raise ValueError(f"{op}: a floating-point target holds class probabilities and must have the input's "
                         f"shape {input.shape}, got {target.shape} (for class indices pass an int64 target "
                         f"of shape {want})")
    cdim = 0 if input.ndim == 1 else 1
    c = input.shape[cdim]
    weight = _check_class_weight(op, input, weight, c)
    if target.dtype is not input.dtype:
        target = target.to(input.dtype)
    logp = log_softmax(input, cdim)
    if label_smoothing > 0.0:
        target = target * (1.0 - label_smoothing) + label_smoothing / c
    prod = logp * target
    if weight is not None:
        prod = prod * weight.reshape((c,) + (1,) * (input.ndim - cdim - 1))
    if reduction == "none":
        return -(prod.sum(cdim))
    total = -(prod.sum())
    if reduction == "sum":
        return total
    return _divide(total, input.numel() // c if c else 0)


class CrossEntropyRows(Function):
    """Per-row cross-entropy of (N, C) logits and int64 targets (0 for ignored rows) from the backend's fused
    kernels: log-softmax and the pick in one pass, the row log-sum-exps kept for backward.

    NOTE: the one loss with its own backward, because its kernel is fused. Backward is the kernel's, or, when
    a graph is recorded, (softmax(x) - target distribution) * g from Tensor ops."""

    def forward(self, logits, targets, ignore_index, smoothing):
        rows, self.lse = self.device.backend.cross_entropy_forward(logits, targets, ignore_index, smoothing)
        return rows

    def backward(self, g):
        x, target, ignore_index, smoothing = self.inputs
        if not GradMode.enabled:
            dx = self.device.backend.cross_entropy_backward(x.data, target.data, self.lse, g.data, ignore_index,
                                                            smoothing)
            return Tensor._wrap(dx, g.device), None, None, None
        from .index import one_hot

        c = x.shape[1]
        valid = target != ignore_index
        q = one_hot(where(valid, target, 0), c).to(x.dtype) * (1.0 - smoothing) + smoothing / c
        return (softmax(x, 1) - q) * (g * valid.to(g.dtype)).unsqueeze(1), None, None, None

    def release(self) -> None:
        super().release()
        self.lse = None


def _fused_cross_entropy(input: Tensor, target: Tensor, weight, ignore_index: int, reduction: str,
                         label_smoothing: float):
    """cross_entropy of (N, C) logits and int64 class indices on the backend's fused kernels (both backends have
    them), or None for weighted classes or other shapes (then composed from log_softmax and nll_loss)."""
    if getattr(input.device.backend, "cross_entropy_forward", None) is None or weight is not None or \
            input.ndim != 2 or target.dtype is not int64 or target.device is not input.device:
        return None
    op = "cross_entropy"
    _index_target_shapes(op, input, target)
    xp, t = input.device.backend.xp, target.data
    valid = t != ignore_index
    # one device-to-host read for the bounds check and the count of the mean
    stats = xp.stack([xp.where(valid, t, 0).min(), xp.where(valid, t, -1).max(), valid.sum()]) if t.size \
        else (0, -1, 0)
    stats = stats.get() if hasattr(stats, "get") else stats  # a device array: one read back
    lo, hi, count = (int(v) for v in stats)
    c = input.shape[1]
    if count and (lo < 0 or hi >= c):
        raise IndexError(f"{op}: target {lo if lo < 0 else hi} is out of bounds: expected class indices in "
                         f"[0, {c - 1}] (or ignore_index={ignore_index})")
    rows = CrossEntropyRows.apply(input, target, ignore_index, float(label_smoothing))  # in the logits' dtype
    if reduction == "none":
        return rows
    total = rows.sum()
    return total if reduction == "sum" else _divide(total, count)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         reduction: str = "mean") -> Tensor:
    """-w * (t * log(x) + (1 - t) * log(1 - x)) on probabilities x in [0, 1], each log clamped at -100."""
    op = "binary_cross_entropy"
    input, target, weight = autocast_inputs(op, input, target, weight)
    _check_reduction(op, reduction)
    _check_float_input(op, input)
    _check_tensor(op, "target", target)
    _same_device(op, input, "target", target)
    if target.shape != input.shape:
        raise ValueError(f"{op}: expected target of the input's shape {input.shape}, got {target.shape}")
    weight = _check_elementwise_weight(op, "weight", input, weight)
    has_zero = has_one = False
    if input.numel():
        lo, hi = float(input.data.min()), float(input.data.max())
        if not (lo >= 0.0 and hi <= 1.0):
            bad = hi if not hi <= 1.0 else lo
            raise RuntimeError(f"{op}: all elements of input should be between 0 and 1 (probabilities), "
                               f"got {bad}")
        has_zero, has_one = lo == 0.0, hi == 1.0
    loss = target * _clamped_log(input, has_zero) + (1 - target) * _clamped_log(1 - input, has_one)
    if weight is not None:
        loss = loss * weight
    return _reduce(-loss, reduction)


def _clamped_log(p: Tensor, has_zero: bool) -> Tensor:
    """max(log(p), -100), with log(0) = -100 and a zero (not nan) gradient there."""
    if not has_zero:
        return clamp(log(p), min=-100.0)
    pos = p > 0
    return clamp(where(pos, log(where(pos, p, 1.0)), -100.0), min=-100.0)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """binary_cross_entropy(sigmoid(x), t) computed stably: (1 - t) * x + (1 + (p - 1) * t) * softplus(-x).

    pos_weight (broadcast along the last dims, e.g. one per class) weights the positive term.
    """
    op = "binary_cross_entropy_with_logits"
    input, target, weight, pos_weight = autocast_inputs(op, input, target, weight, pos_weight)
    _check_reduction(op, reduction)
    _check_float_input(op, input)
    _check_tensor(op, "target", target)
    _same_device(op, input, "target", target)
    if target.shape != input.shape:
        raise ValueError(f"{op}: target size {target.shape} must be the same as input size {input.shape}")
    weight = _check_elementwise_weight(op, "weight", input, weight)
    pos_weight = _check_elementwise_weight(op, "pos_weight", input, pos_weight)
    # softplus(-x) = max(-x, 0) + log1p(exp(-|x|)); maximum splits the tie at 0, so the gradient there is
    # the true -1/2 (relu's subgradient 0 would give 0)
    sp = maximum(-input, 0.0) + log1p(exp(-abs(input)))
    if pos_weight is not None:
        sp = sp * ((pos_weight - 1) * target + 1)
    loss = (1 - target) * input + sp
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


# --------------------------------------------------------------------------------------------- regression
def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """(input - target)^2."""
    input, target = autocast_inputs("mse_loss", input, target)
    _check_reduction("mse_loss", reduction)
    _pair("mse_loss", input, target)
    d = input - target
    return _reduce(d * d, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """|input - target|."""
    input, target = autocast_inputs("l1_loss", input, target)
    _check_reduction("l1_loss", reduction)
    _pair("l1_loss", input, target)
    return _reduce(abs(input - target), reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5 * d^2 / beta where |d| < beta, else |d| - 0.5 * beta (d = input - target); beta = 0 is l1_loss."""
    op = "smooth_l1_loss"
    input, target = autocast_inputs(op, input, target)
    _check_reduction(op, reduction)
    _pair(op, input, target)
    if beta < 0:
        raise RuntimeError(f"{op}: beta must be non-negative, got {beta}")
    d = input - target
    if beta == 0:
        return _reduce(abs(d), reduction)
    ad = abs(d)
    return _reduce(where(ad < beta, d * d * (0.5 / beta), ad - 0.5 * beta), reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """0.5 * d^2 where |d| < delta, else delta * (|d| - 0.5 * delta) (d = input - target)."""
    op = "huber_loss"
    input, target = autocast_inputs(op, input, target)
    _check_reduction(op, reduction)
    _pair(op, input, target)
    if not delta > 0:
        raise RuntimeError(f"{op}: delta must be positive, got {delta}")
    d = input - target
    ad = abs(d)
    return _reduce(where(ad < delta, d * d * 0.5, (ad - 0.5 * delta) * delta), reduction)


def kl_div(input: Tensor, target: Tensor, reduction: str = "mean", log_target: bool = False) -> Tensor:
    """target * (log(target) - input) pointwise (0 where target is 0), input being log-probabilities;
    with log_target, exp(target) * (target - input).

    'batchmean' divides the sum by the batch size (the KL divergence proper); 'mean' divides by the element
    count, as PyTorch's 'mean' does.
    """
    op = "kl_div"
    input, target = autocast_inputs(op, input, target)
    _check_reduction(op, reduction, _REDUCTIONS + ("batchmean",))
    _pair(op, input, target, warn=False)
    if log_target:
        loss = exp(target) * (target - input)
    else:
        # xlogy(t, t) - t * input, with 0 * log(0) = 0 (and a finite gradient there)
        loss = target * (log(where(target == 0, 1.0, target)) - input)
    if reduction != "batchmean":
        return _reduce(loss, reduction)
    total = loss.sum()
    return _divide(total, input.shape[0]) if input.ndim else total


__all__ = [
    "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div",
]
