"""Adam and AdamW (decoupled weight decay): the update of PyTorch's single-tensor implementation."""

from __future__ import annotations

import math

import numpy as np

from ..backends.cpu_kernels import takes_compiled
from ..creation import zeros_like
from .optimizer import Optimizer, check_adam_args


class Adam(Optimizer):
    """m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr * m_hat / (sqrt(v_hat) + eps).

    Args:
        params: tensors or parameter groups (dicts with "params" and per-group options)
        lr (float): learning rate. Default 1e-3.
        betas (tuple[float, float]): decay rates of the first and second moments. Default (0.9, 0.999).
        eps (float): added to the denominator. Default 1e-8.
        weight_decay (float): L2 penalty added to the gradient (AdamW decouples it instead). Default 0.
        amsgrad (bool): use the maximum of past second moments. Default False.
        maximize (bool): ascend the objective instead of descending it. Default False.
    """

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False):
        check_adam_args(type(self).__name__, lr, betas, eps, weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def init_state(self, p, state, group):
        state["step"] = 0
        state["exp_avg"] = zeros_like(p)
        state["exp_avg_sq"] = zeros_like(p)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = zeros_like(p)

    def update(self, p, g, state, group, xp):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"].data, state["exp_avg_sq"].data
        vmax = state["max_exp_avg_sq"].data if group["amsgrad"] else None
        if takes_compiled(p, g, m, v, vmax):  # float32 on the CPU: the same bits in one compiled pass
            from ..backends import cpu_fused

            f32 = np.float32
            cpu_fused.adam(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                           None if vmax is None else vmax.reshape(-1), f32(b1), f32(1 - b1), f32(b2), f32(1 - b2),
                           f32(eps), f32(wd), f32(1 - lr * wd), self.decoupled, group["maximize"],
                           f32(lr / (1 - b1**t)), f32(1 / math.sqrt(1 - b2**t)))
            return
        if group["maximize"]:
            g = -g
        if wd:
            if self.decoupled:
                p *= 1 - lr * wd
            else:
                g = g + wd * p
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        if vmax is not None:
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        step_size = lr / (1 - b1**t)
        denom = xp.sqrt(v)
        denom *= 1 / math.sqrt(1 - b2**t)
        denom += eps
        # p -= step_size * m / denom, with one temporary
        denom = xp.divide(m, denom, out=denom)
        denom *= step_size
        p -= denom


    def _step_fused(self, group: dict) -> bool:
        params, fused = self._fused_params(group, "adam_step")
        if params is None:
            return False
        # one launch set per distinct step count (parameters that joined later are behind)
        by_step: dict = {}
        for p in params:
            state = self.state[p]
            state["step"] += 1
            by_step.setdefault(state["step"], []).append(p)
        for step, ps in by_step.items():
            states = [self.state[p] for p in ps]
            fused([p.data for p in ps], [p.grad.data for p in ps], [s["exp_avg"].data for s in states],
                  [s["exp_avg_sq"].data for s in states],
                  [s["max_exp_avg_sq"].data for s in states] if group["amsgrad"] else None, step,
                  lr=group["lr"], beta1=group["betas"][0], beta2=group["betas"][1], eps=group["eps"],
                  weight_decay=group["weight_decay"], decoupled=self.decoupled, amsgrad=group["amsgrad"],
                  maximize=group["maximize"])
        for p in params:
            p._version += 1
        return True


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr * weight_decay before the Adam step. Default wd 1e-2."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)

