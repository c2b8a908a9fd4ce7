"""RMSprop, plain, centered and with momentum: PyTorch's update."""

from __future__ import annotations

from ..creation import zeros_like
from .optimizer import Optimizer, check_range


class RMSprop(Optimizer):
    """v = alpha v + (1-alpha) g^2;  p -= lr * g / (sqrt(v - mean(g)^2 if centered else v) + eps).

    Args:
        params: tensors or parameter groups (dicts with "params" and per-group options)
        lr (float): learning rate. Default 1e-2.
        alpha (float): smoothing constant of the squared-gradient average. Default 0.99.
        eps (float): added to the denominator. Default 1e-8.
        weight_decay (float): L2 penalty added to the gradient. Default 0.
        momentum (float): momentum factor applied to the normalized step. Default 0.
        centered (bool): normalize by an estimate of the gradient's variance instead of its second moment.
            Default False.
        maximize (bool): ascend the objective instead of descending it. Default False.

    >>> opt = zt.optim.RMSprop(model.parameters(), lr=1e-3, momentum=0.9, centered=True)
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 maximize=False):
        check_range("RMSprop", "learning rate", lr)
        check_range("RMSprop", "epsilon value", eps)
        check_range("RMSprop", "momentum value", momentum)
        check_range("RMSprop", "weight_decay value", weight_decay)
        check_range("RMSprop", "alpha value", alpha)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def init_state(self, p, state, group):
        state["step"] = 0
        state["square_avg"] = zeros_like(p)
        if group["momentum"] > 0:
            state["momentum_buffer"] = zeros_like(p)
        if group["centered"]:
            state["grad_avg"] = zeros_like(p)

    def update(self, p, g, state, group, xp):
        lr, alpha, eps, wd, momentum = (group[k] for k in ("lr", "alpha", "eps", "weight_decay", "momentum"))
        state["step"] += 1
        if group["maximize"]:
            g = -g
        if wd:
            g = g + wd * p
        v = state["square_avg"].data
        v *= alpha
        v += (1 - alpha) * (g * g)
        if group["centered"]:
            _lerp_(state["grad_avg"].data, g, 1 - alpha)
            avg = state["grad_avg"].data
            avg = xp.sqrt(v - avg * avg)
        else:
            avg = xp.sqrt(v)
        avg += eps
        if momentum > 0:
            buf = state["momentum_buffer"].data
            buf *= momentum
            buf += g / avg
            p -= lr * buf
        else:
            avg = xp.divide(g, avg, out=avg)
            avg *= lr
            p -= avg


def _lerp_(start, end, weight: float) -> None:
    """start += weight * (end - start), in PyTorch's two-sided form (exact at weight 0 and 1)."""
    if weight < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)
