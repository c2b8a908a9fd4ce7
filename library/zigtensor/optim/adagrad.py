"""Adagrad with learning-rate decay: PyTorch's (dense) update."""

from __future__ import annotations

from ..creation import full_like
from .optimizer import Optimizer, check_range


class Adagrad(Optimizer):
    """s += g^2;  p -= lr / (1 + (t-1) lr_decay) * g / (sqrt(s) + eps).

    Args:
        params: tensors or parameter groups (dicts with "params" and per-group options)
        lr (float): learning rate. Default 1e-2.
        lr_decay (float): learning-rate decay per step. Default 0.
        weight_decay (float): L2 penalty added to the gradient. Default 0.
        initial_accumulator_value (float): starting value of the sum of squared gradients. Default 0.
        eps (float): added to the denominator. Default 1e-10.
        maximize (bool): ascend the objective instead of descending it. Default False.

    >>> opt = zt.optim.Adagrad(model.parameters(), lr=0.1, lr_decay=1e-3)
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 maximize=False):
        check_range("Adagrad", "learning rate", lr)
        check_range("Adagrad", "lr_decay value", lr_decay)
        check_range("Adagrad", "weight_decay value", weight_decay)
        check_range("Adagrad", "initial_accumulator_value", initial_accumulator_value)
        check_range("Adagrad", "epsilon value", eps)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))

    def init_state(self, p, state, group):
        state["step"] = 0
        state["sum"] = full_like(p, group["initial_accumulator_value"])

    def update(self, p, g, state, group, xp):
        state["step"] += 1
        if group["maximize"]:
            g = -g
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        s = state["sum"].data
        s += g * g
        std = xp.sqrt(s)
        std += group["eps"]
        std = xp.divide(g, std, out=std)
        std *= clr
        p -= std
