"""Losses as modules, as PyTorch's nn.*Loss: each holds its options and calls its functional form (ops/loss.py).

    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    loss = criterion(logits, targets)

Class weights and pos_weight are buffers (they move with .to() and are saved in the state dict, as PyTorch's are);
a bad reduction is refused when the module is made, naming the module.
"""

from __future__ import annotations

from ..ops.loss import (
    _check_reduction,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from ._args import check_float, check_int
from .module import Module


class _Loss(Module):
    """fn(input, target, reduction=..., **options): `fn` the functional form; `options` the keyword arguments
    fixed at construction (tensors among them registered as buffers)."""

    fn = None
    reductions = ("none", "mean", "sum")

    def __init__(self, reduction: str = "mean", **options):
        super().__init__()
        _check_reduction(type(self).__name__, reduction, self.reductions)
        self.reduction = reduction
        self._option_names = tuple(options)
        for name, value in options.items():
            if name in ("weight", "pos_weight"):
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)

    def forward(self, input, target):
        return type(self).fn(input, target, reduction=self.reduction,
                             **{name: getattr(self, name) for name in self._option_names})

    def extra_repr(self) -> str:
        shown = [f"reduction={self.reduction!r}"] if self.reduction != "mean" else []
        return ", ".join(shown + [f"{n}={getattr(self, n)!r}" for n in self._option_names
                                  if n not in ("weight", "pos_weight")])


class L1Loss(_Loss):
    """Mean (or sum) absolute error |input - target|."""

    fn = l1_loss


class MSELoss(_Loss):
    """Mean (or sum) squared error (input - target)^2."""

    fn = mse_loss


class SmoothL1Loss(_Loss):
    """Squared error scaled by 0.5 / beta below beta, absolute error minus 0.5 beta above it."""

    fn = smooth_l1_loss

    def __init__(self, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction, beta=check_float("SmoothL1Loss", "beta", beta, 0.0))


class HuberLoss(_Loss):
    """Squared error halved below delta, delta * (|error| - delta / 2) above it."""

    fn = huber_loss

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        delta = check_float("HuberLoss", "delta", delta, 0.0)
        if delta == 0.0:
            raise ValueError("HuberLoss: delta must be > 0, got 0.0")
        super().__init__(reduction, delta=delta)


class NLLLoss(_Loss):
    """-input[n, target[n]] * weight[target[n]] over log-probabilities (class dim 1); ignore_index skipped."""

    fn = nll_loss

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(reduction, weight=weight, ignore_index=check_int("NLLLoss", "ignore_index", ignore_index,
                                                                          minimum=-(2**63)))


class CrossEntropyLoss(_Loss):
    """log_softmax over the class dim, then NLLLoss; targets are class indices or class probabilities."""

    fn = cross_entropy

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0):
        name = "CrossEntropyLoss"
        super().__init__(reduction, weight=weight,
                         ignore_index=check_int(name, "ignore_index", ignore_index, minimum=-(2**63)),
                         label_smoothing=check_float(name, "label_smoothing", label_smoothing, 0.0, 1.0))


class BCELoss(_Loss):
    """Binary cross entropy on probabilities in [0, 1] (each log clamped at -100)."""

    fn = binary_cross_entropy

    def __init__(self, weight=None, reduction: str = "mean"):
        super().__init__(reduction, weight=weight)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid and binary cross entropy in one stable formula; pos_weight scales the positive term per class."""

    fn = binary_cross_entropy_with_logits

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        super().__init__(reduction, weight=weight, pos_weight=pos_weight)


class KLDivLoss(_Loss):
    """KL(target || input) with input as log-probabilities (target too when log_target); 'batchmean' divides the
    sum by the batch size, the reduction that matches the mathematical definition."""

    fn = kl_div
    reductions = ("none", "mean", "sum", "batchmean")

    def __init__(self, reduction: str = "mean", log_target: bool = False):
        if not isinstance(log_target, bool):
            raise TypeError(f"KLDivLoss: log_target must be a bool, got {type(log_target).__name__}")
        super().__init__(reduction, log_target=log_target)
