"""Adam's relatives, with PyTorch's updates step for step: Adamax (an infinity-norm second moment), NAdam (Nesterov
momentum in Adam, with PyTorch's momentum decay schedule) and RAdam (the variance of the adaptive rate rectified,
plain momentum SGD while it is undefined). Their state dicts load into and from PyTorch's names."""

from __future__ import annotations

import math

from ..creation import zeros_like
from .optimizer import Optimizer, check_adam_args, check_range


def _directed_grad(p, g, group):
    """The gradient each of these steps along: negated to maximize; with weight decay added to it (L2), or, with
    decoupled_weight_decay, applied to the parameter itself first (AdamW's form)."""
    if group["maximize"]:
        g = -g
    wd = group["weight_decay"]
    if wd:
        if group.get("decoupled_weight_decay"):
            p *= 1 - group["lr"] * wd
        else:
            g = g + wd * p
    return g


def _update_moments(state, g, beta1: float, beta2: float):
    """Adam's running mean and mean square of the gradient, in place: (m, v)."""
    m, v = state["exp_avg"].data, state["exp_avg_sq"].data
    m += (g - m) * (1 - beta1)
    v *= beta2
    v += (1 - beta2) * (g * g)
    return m, v


class Adamax(Optimizer):
    """m = beta1 m + (1-beta1) g;  u = max(beta2 u, |g| + eps);  p -= lr / (1 - beta1^t) * m / u."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, maximize=False):
        check_adam_args("Adamax", lr, betas, eps, weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def init_state(self, p, state, group):
        state["step"] = 0
        state["exp_avg"] = zeros_like(p)
        state["exp_inf"] = zeros_like(p)

    def update(self, p, g, state, group, xp):
        (beta1, beta2), eps, lr = group["betas"], group["eps"], group["lr"]
        state["step"] += 1
        g = _directed_grad(p, g, group)
        m, u = state["exp_avg"].data, state["exp_inf"].data
        m += (g - m) * (1 - beta1)
        xp.maximum(u * beta2, xp.abs(g) + eps, out=u)
        p -= (lr / (1 - beta1 ** state["step"])) * (m / u)


class NAdam(Optimizer):
    """Adam with Nesterov momentum: mu_t = beta1 (1 - 0.5 * 0.96^(t * momentum_decay)), the step mixing the
    gradient (weight (1 - mu_t) / (1 - prod mu)) and the momentum (mu_{t+1} / (1 - prod mu up to t+1))."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, maximize=False):
        check_adam_args("NAdam", lr, betas, eps, weight_decay)
        check_range("NAdam", "momentum_decay value", momentum_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize))

    def init_state(self, p, state, group):
        state["step"] = 0
        state["mu_product"] = 1.0
        state["exp_avg"] = zeros_like(p)
        state["exp_avg_sq"] = zeros_like(p)

    def update(self, p, g, state, group, xp):
        (beta1, beta2), eps, lr = group["betas"], group["eps"], group["lr"]
        step = state["step"] = state["step"] + 1
        g = _directed_grad(p, g, group)
        decay = group["momentum_decay"]
        mu = beta1 * (1 - 0.5 * 0.96 ** (step * decay))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * decay))
        state["mu_product"] *= mu
        m, v = _update_moments(state, g, beta1, beta2)
        denom = xp.sqrt(v / (1 - beta2 ** step)) + eps
        p -= (lr * (1 - mu) / (1 - state["mu_product"])) * (g / denom)
        p -= (lr * mu_next / (1 - state["mu_product"] * mu_next)) * (m / denom)


class RAdam(Optimizer):
    """Adam whose adaptive rate is used only once its variance is tractable (rho_t > 5), scaled by the
    rectification term; before that, SGD with the bias-corrected momentum."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, decoupled_weight_decay=False,
                 maximize=False):
        check_adam_args("RAdam", lr, betas, eps, weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))

    def init_state(self, p, state, group):
        state["step"] = 0
        state["exp_avg"] = zeros_like(p)
        state["exp_avg_sq"] = zeros_like(p)

    def update(self, p, g, state, group, xp):
        (beta1, beta2), eps, lr = group["betas"], group["eps"], group["lr"]
        step = state["step"] = state["step"] + 1
        g = _directed_grad(p, g, group)
        m, v = _update_moments(state, g, beta1, beta2)
        corrected = m / (1 - beta1 ** step)
        bias2 = 1 - beta2 ** step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * beta2 ** step / bias2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            p -= corrected * lr * (math.sqrt(bias2) / (xp.sqrt(v) + eps)) * rect
        else:
            p -= corrected * lr


class Adadelta(Optimizer):
    """v = rho v + (1-rho) g^2;  d = sqrt(a + eps) / sqrt(v + eps) * g;  a = rho a + (1-rho) d^2;  p -= lr d."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, maximize=False):
        check_range("Adadelta", "learning rate", lr)
        check_range("Adadelta", "rho value", rho, 0.0, 1.0001)
        check_range("Adadelta", "epsilon value", eps)
        check_range("Adadelta", "weight_decay value", weight_decay)
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))

    def init_state(self, p, state, group):
        state["step"] = 0
        state["square_avg"] = zeros_like(p)
        state["acc_delta"] = zeros_like(p)

    def update(self, p, g, state, group, xp):
        rho, eps, lr = group["rho"], group["eps"], group["lr"]
        state["step"] += 1
        g = _directed_grad(p, g, group)
        v, a = state["square_avg"].data, state["acc_delta"].data
        v *= rho
        v += (1 - rho) * (g * g)
        delta = xp.sqrt(a + eps) / xp.sqrt(v + eps) * g
        a *= rho
        a += (1 - rho) * (delta * delta)
        p -= lr * delta
