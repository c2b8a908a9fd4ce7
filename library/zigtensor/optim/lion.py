"""Lion (EvoLved Sign Momentum), Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"."""

from __future__ import annotations

from ..creation import zeros_like
from .optimizer import Optimizer, check_range


class Lion(Optimizer):
    """p -= lr * (sign(b1 m + (1-b1) g) + wd p);  m = b2 m + (1-b2) g.

    Every coordinate moves by exactly lr (plus decay), so Lion wants a learning rate 3-10x smaller than
    AdamW's and a weight decay 3-10x larger. The weight decay is decoupled, as in AdamW.

    Args:
        params: tensors or parameter groups (dicts with "params" and per-group options)
        lr (float): learning rate. Default 1e-4.
        betas (tuple[float, float]): interpolation factor of the update direction, and decay rate of the
            momentum. Default (0.9, 0.99).
        weight_decay (float): decoupled weight decay. Default 0.

    >>> opt = zt.optim.Lion(model.parameters(), lr=3e-5, weight_decay=0.1)
    """

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        check_range("Lion", "learning rate", lr)
        check_range("Lion", "beta parameter at index 0", betas[0], 0.0, 1.0)
        check_range("Lion", "beta parameter at index 1", betas[1], 0.0, 1.0)
        check_range("Lion", "weight_decay value", weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    def init_state(self, p, state, group):
        state["step"] = 0
        state["exp_avg"] = zeros_like(p)

    def update(self, p, g, state, group, xp):
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        state["step"] += 1
        m = state["exp_avg"].data
        direction = xp.sign(b1 * m + (1 - b1) * g)
        if wd:
            p *= 1 - lr * wd
        direction *= lr
        p -= direction
        m *= b2
        m += (1 - b2) * g
