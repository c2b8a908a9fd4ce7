"""SGD with momentum, dampening, Nesterov momentum and L2 weight decay: PyTorch 2.x's update."""

from __future__ import annotations

from ..creation import zeros_like
from .optimizer import Optimizer, check_range


class SGD(Optimizer):
    """d = g + wd p;  buf = momentum buf + (1-dampening) d;  p -= lr (d + momentum buf if nesterov else buf).

    On the first step the momentum buffer is the (decayed) gradient itself, as in PyTorch, so dampening
    does not shrink it.

    Args:
        params: tensors or parameter groups (dicts with "params" and per-group options)
        lr (float): learning rate. Default 1e-3.
        momentum (float): momentum factor. Default 0.
        dampening (float): dampening of the gradient added to the momentum buffer. Default 0.
        weight_decay (float): L2 penalty added to the gradient. Default 0.
        nesterov (bool): Nesterov momentum (needs momentum > 0 and dampening 0). Default False.
        maximize (bool): ascend the objective instead of descending it. Default False.

    >>> opt = zt.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 maximize=False):
        check_range("SGD", "learning rate", lr)
        check_range("SGD", "momentum value", momentum)
        check_range("SGD", "weight_decay value", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"SGD: Nesterov momentum requires a momentum > 0 and zero dampening, got "
                             f"momentum={momentum!r}, dampening={dampening!r}")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def init_state(self, p, state, group):
        # NOTE: the buffer is allocated here (update only sees arrays) and filled with the first gradient
        # in update, where "step" tells that it is the first.
        state["step"] = 0
        state["momentum_buffer"] = zeros_like(p) if group["momentum"] else None

    def _step_fused(self, group: dict) -> bool:
        params, fused = self._fused_params(group, "sgd_step")
        if params is None:
            return False
        if group["momentum"] and any(self.state[p]["momentum_buffer"] is None for p in params):
            raise RuntimeError("SGD: momentum was turned on after the first step; set it when the optimizer is "
                               "created")
        for first in (True, False):  # parameters on their first step copy the gradient into the buffer
            ps = [p for p in params if (self.state[p]["step"] == 0) == first]
            if not ps:
                continue
            buffers = [self.state[p]["momentum_buffer"].data for p in ps] if group["momentum"] else None
            fused([p.data for p in ps], [p.grad.data for p in ps], buffers, first, lr=group["lr"],
                  momentum=group["momentum"], dampening=group["dampening"], weight_decay=group["weight_decay"],
                  nesterov=group["nesterov"], maximize=group["maximize"])
        for p in params:
            self.state[p]["step"] += 1
            p._version += 1
        return True

    def update(self, p, g, state, group, xp):
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        state["step"] += 1
        if group["maximize"]:
            g = -g
        if wd:
            g = g + wd * p
        if momentum:
            if state["momentum_buffer"] is None:
                raise RuntimeError("SGD: momentum was turned on after the first step; set it when the "
                                   "optimizer is created")
            buf = state["momentum_buffer"].data
            if state["step"] == 1:
                buf[...] = g
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        p -= lr * g
