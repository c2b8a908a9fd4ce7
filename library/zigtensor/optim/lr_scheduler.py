"""Learning-rate schedules: plain functions `schedule(step) -> lr`, and LRScheduler to apply one each step.

Each maker checks its arguments and returns a schedule; step 0 is the first optimizer step. The values are
those of PyTorch's schedulers with the same names (StepLR -> step_lr, ...), in their closed form.

>>> sched = lr_scheduler.warmup_cosine_lr(3e-4, warmup_steps=100, decay_steps=900, min_lr=3e-5)
>>> sched(0), sched(100), sched(1000)
(0.0, 0.0003, 3e-05)
>>> scheduler = lr_scheduler.LRScheduler(opt, sched)   # PyTorch-style: opt.step(); scheduler.step()
"""

from __future__ import annotations

import bisect
import math
import numbers


def _check(name: str, what: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}: invalid {what} {value!r}; expected {expected}")


def _check_int(name: str, what: str, value, low: int) -> None:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low
    _check(name, what, value, ok, f"an integer >= {low}")


def _check_lr(name: str, lr) -> None:
    _check(name, "learning rate", lr, isinstance(lr, numbers.Real) and lr >= 0, ">= 0")


def _schedule(description: str, fn):
    """Wrap fn(step) with a check of step and a readable name."""

    def schedule(step: int) -> float:
        _check_int(description.partition("(")[0], "step", step, 0)
        return float(fn(step))

    schedule.__name__ = schedule.__qualname__ = description
    return schedule


def _describe(name: str, **kwargs) -> str:
    return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


# ---------------------------------------------------------------------------------------------- basic
def constant_lr(lr: float, factor: float = 1.0, total_steps: int = 0):
    """lr * factor for the first total_steps steps, then lr (PyTorch's ConstantLR); a constant by default.

    Args:
        lr (float): the learning rate.
        factor (float): multiplier in [0, 1] during the first total_steps steps. Default 1.
        total_steps (int): how many steps use the factor. Default 0.

    >>> constant_lr(0.1, factor=0.5, total_steps=2)(1)
    0.05
    """
    name = "constant_lr"
    _check_lr(name, lr)
    _check(name, "factor", factor, 0 <= factor <= 1, "in [0, 1]")
    _check_int(name, "total_steps", total_steps, 0)
    return _schedule(_describe(name, lr=lr, factor=factor, total_steps=total_steps),
                     lambda t: lr * (factor if t < total_steps else 1.0))


def linear_lr(lr: float, start_factor: float = 1 / 3, end_factor: float = 1.0, total_steps: int = 5):
    """lr * (start + (end - start) * min(step, total_steps) / total_steps) (PyTorch's LinearLR).

    Args:
        lr (float): the learning rate the factors multiply.
        start_factor (float): factor at step 0, in [0, 1]. Default 1/3.
        end_factor (float): factor from step total_steps on, in [0, 1]. Default 1.
        total_steps (int): length of the ramp, > 0. Default 5.

    >>> linear_lr(0.1, start_factor=0.0, end_factor=1.0, total_steps=4)(1)
    0.025
    """
    name = "linear_lr"
    _check_lr(name, lr)
    _check(name, "start_factor", start_factor, 0 <= start_factor <= 1, "in [0, 1]")
    _check(name, "end_factor", end_factor, 0 <= end_factor <= 1, "in [0, 1]")
    _check_int(name, "total_steps", total_steps, 1)
    return _schedule(
        _describe(name, lr=lr, start_factor=start_factor, end_factor=end_factor, total_steps=total_steps),
        lambda t: lr * (start_factor + (end_factor - start_factor) * min(t, total_steps) / total_steps))


def step_lr(lr: float, step_size: int, gamma: float = 0.1):
    """lr * gamma ** (step // step_size) (PyTorch's StepLR).

    Args:
        lr (float): the initial learning rate.
        step_size (int): steps between two decays, > 0.
        gamma (float): multiplier applied at each decay, > 0. Default 0.1.

    >>> step_lr(1.0, step_size=10, gamma=0.5)(25)
    0.25
    """
    name = "step_lr"
    _check_lr(name, lr)
    _check_int(name, "step_size", step_size, 1)
    _check(name, "gamma", gamma, gamma > 0, "> 0")
    return _schedule(_describe(name, lr=lr, step_size=step_size, gamma=gamma),
                     lambda t: lr * gamma ** (t // step_size))


def multistep_lr(lr: float, milestones, gamma: float = 0.1):
    """lr * gamma ** (number of milestones <= step) (PyTorch's MultiStepLR; repeats count twice).

    Args:
        lr (float): the initial learning rate.
        milestones (list[int]): steps at which the learning rate is multiplied by gamma, each >= 0.
        gamma (float): multiplier applied at each milestone, > 0. Default 0.1.

    >>> multistep_lr(1.0, [3, 5], gamma=0.5)(4)
    0.5
    """
    name = "multistep_lr"
    _check_lr(name, lr)
    milestones = list(milestones)
    for m in milestones:
        _check_int(name, "milestone", m, 0)
    _check(name, "gamma", gamma, gamma > 0, "> 0")
    sorted_ms = sorted(milestones)
    return _schedule(_describe(name, lr=lr, milestones=milestones, gamma=gamma),
                     lambda t: lr * gamma ** bisect.bisect_right(sorted_ms, t))


def exponential_lr(lr: float, gamma: float):
    """lr * gamma ** step (PyTorch's ExponentialLR).

    Args:
        lr (float): the initial learning rate.
        gamma (float): multiplier applied every step, > 0.

    >>> exponential_lr(1.0, 0.5)(3)
    0.125
    """
    name = "exponential_lr"
    _check_lr(name, lr)
    _check(name, "gamma", gamma, gamma > 0, "> 0")
    return _schedule(_describe(name, lr=lr, gamma=gamma), lambda t: lr * gamma**t)


def cosine_annealing_lr(lr: float, T_max: int, eta_min: float = 0.0):  # noqa: N803  (PyTorch's name)
    """eta_min + (lr - eta_min) * (1 + cos(pi * step / T_max)) / 2 (PyTorch's CosineAnnealingLR, closed form).

    As in PyTorch the cosine goes on past T_max (the rate rises again over the next T_max steps); use
    warmup_cosine_lr(..., warmup_steps=0) for a rate that stays at its minimum.

    Args:
        lr (float): the initial (maximum) learning rate.
        T_max (int): steps from lr down to eta_min, > 0.
        eta_min (float): the minimum learning rate, >= 0. Default 0.

    >>> cosine_annealing_lr(1.0, T_max=4)(2)
    0.5
    """
    name = "cosine_annealing_lr"
    _check_lr(name, lr)
    _check_int(name, "T_max", T_max, 1)
    _check(name, "eta_min", eta_min, eta_min >= 0, ">= 0")
    return _schedule(_describe(name, lr=lr, T_max=T_max, eta_min=eta_min),
                     lambda t: eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t / T_max)) / 2)


def sequential_lr(schedules, milestones):
    """schedules[i] from milestones[i-1] on, each restarted at its own step 0 (PyTorch's SequentialLR).

    Args:
        schedules (list): n schedule functions.
        milestones (list[int]): n - 1 increasing steps at which the next schedule takes over.

    >>> s = sequential_lr([constant_lr(0.1), exponential_lr(0.1, 0.5)], milestones=[2])
    >>> [s(t) for t in range(4)]
    [0.1, 0.1, 0.1, 0.05]
    """
    name = "sequential_lr"
    schedules, milestones = list(schedules), list(milestones)
    for s in schedules:
        _check(name, "schedule", s, callable(s), "a function step -> lr")
    _check(name, "number of schedules", len(schedules), len(schedules) >= 1, ">= 1")
    _check(name, "number of milestones", len(milestones), len(milestones) == len(schedules) - 1,
           f"one fewer than the {len(schedules)} schedules")
    for m in milestones:
        _check_int(name, "milestone", m, 0)
    _check(name, "milestones", milestones, milestones == sorted(milestones), "in increasing order")

    def fn(t):
        i = bisect.bisect_right(milestones, t)
        return schedules[i](t - (milestones[i - 1] if i else 0))

    return _schedule(_describe(name, schedules=[s.__name__ for s in schedules], milestones=milestones), fn)


# ---------------------------------------------------------------------------------------------- warmup
def _check_common(name, lr, warmup_steps, min_lr, start_factor) -> None:
    _check_lr(name, lr)
    _check_int(name, "warmup_steps", warmup_steps, 0)
    _check(name, "min_lr", min_lr, min_lr >= 0, ">= 0")
    _check(name, "start_factor", start_factor, 0 <= start_factor <= 1, "in [0, 1]")


def _warmup(lr, steps, start_factor):
    """lr * (start_factor + (1 - start_factor) * step / steps) for step < steps."""
    return lambda t: lr * (start_factor + (1 - start_factor) * t / steps)


def _decay(shape: str, lr: float, min_lr: float, steps: int):
    """From lr at 0 to min_lr at steps (then held there), along a straight line or half a cosine."""
    if shape == "cosine":
        return lambda k: min_lr + (lr - min_lr) * (1 + math.cos(math.pi * min(k, steps) / steps)) / 2
    return lambda k: lr + (min_lr - lr) * min(k, steps) / steps


def _warmup_then(lr, warmup_steps, start_factor, pieces):
    """The warmup ramp, then pieces [(length or None, fn(k))], each fn starting again at k = 0."""
    if warmup_steps:
        pieces = [(warmup_steps, _warmup(lr, warmup_steps, start_factor))] + pieces

    def fn(t):
        for length, piece in pieces:
            if length is None or t < length:
                return piece(t)
            t -= length
        raise AssertionError("the last piece has no end")

    return fn


def warmup_cosine_lr(lr: float, warmup_steps: int, decay_steps: int, min_lr: float = 0.0,
                     start_factor: float = 0.0):
    """Linear warmup from lr * start_factor to lr over warmup_steps, then a half cosine down to min_lr.

    With start_factor > 0 it equals PyTorch's SequentialLR([LinearLR(start_factor, 1, warmup_steps),
    CosineAnnealingLR(decay_steps, min_lr)], [warmup_steps]) up to step warmup_steps + decay_steps; after
    that the rate stays at min_lr (PyTorch's cosine would rise again). With start_factor 0 it is Hugging
    Face's get_cosine_schedule_with_warmup (min_lr 0).

    Args:
        lr (float): the peak learning rate.
        warmup_steps (int): steps of the linear ramp, >= 0.
        decay_steps (int): steps from lr down to min_lr, > 0.
        min_lr (float): the final learning rate, >= 0. Default 0.
        start_factor (float): the first step's rate as a fraction of lr, in [0, 1]. Default 0.

    >>> warmup_cosine_lr(1.0, warmup_steps=2, decay_steps=2)(3)
    0.5
    """
    name = "warmup_cosine_lr"
    _check_common(name, lr, warmup_steps, min_lr, start_factor)
    _check_int(name, "decay_steps", decay_steps, 1)
    return _schedule(
        _describe(name, lr=lr, warmup_steps=warmup_steps, decay_steps=decay_steps, min_lr=min_lr,
                  start_factor=start_factor),
        _warmup_then(lr, warmup_steps, start_factor, [(None, _decay("cosine", lr, min_lr, decay_steps))]))


def warmup_linear_lr(lr: float, warmup_steps: int, decay_steps: int, min_lr: float = 0.0,
                     start_factor: float = 0.0):
    """Linear warmup from lr * start_factor to lr over warmup_steps, then a straight line down to min_lr.

    With start_factor > 0 it equals PyTorch's SequentialLR([LinearLR(start_factor, 1, warmup_steps),
    LinearLR(1, min_lr / lr, decay_steps)], [warmup_steps]); with start_factor 0 and min_lr 0 it is Hugging
    Face's get_linear_schedule_with_warmup. The rate stays at min_lr after the decay.

    Args:
        lr (float): the peak learning rate.
        warmup_steps (int): steps of the linear ramp, >= 0.
        decay_steps (int): steps from lr down to min_lr, > 0.
        min_lr (float): the final learning rate, >= 0. Default 0.
        start_factor (float): the first step's rate as a fraction of lr, in [0, 1]. Default 0.

    >>> warmup_linear_lr(1.0, warmup_steps=2, decay_steps=4)(4)
    0.5
    """
    name = "warmup_linear_lr"
    _check_common(name, lr, warmup_steps, min_lr, start_factor)
    _check_int(name, "decay_steps", decay_steps, 1)
    return _schedule(
        _describe(name, lr=lr, warmup_steps=warmup_steps, decay_steps=decay_steps, min_lr=min_lr,
                  start_factor=start_factor),
        _warmup_then(lr, warmup_steps, start_factor, [(None, _decay("linear", lr, min_lr, decay_steps))]))


def warmup_stable_decay_lr(lr: float, warmup_steps: int, stable_steps: int, decay_steps: int,
                           decay: str = "linear", min_lr: float = 0.0, start_factor: float = 0.0):
    """Warmup-stable-decay ("trapezoid"): linear warmup, lr held for stable_steps, then a decay to min_lr.

    Equals PyTorch's SequentialLR([LinearLR(start_factor, 1, warmup_steps), ConstantLR(1.0),
    LinearLR(1, min_lr / lr, decay_steps) or CosineAnnealingLR(decay_steps, min_lr)],
    [warmup_steps, warmup_steps + stable_steps]) for start_factor > 0, up to the end of the decay; the rate
    then stays at min_lr.

    Args:
        lr (float): the peak learning rate.
        warmup_steps (int): steps of the linear ramp, >= 0.
        stable_steps (int): steps at lr, >= 0.
        decay_steps (int): steps from lr down to min_lr, > 0.
        decay (str): shape of the decay, "linear" or "cosine". Default "linear".
        min_lr (float): the final learning rate, >= 0. Default 0.
        start_factor (float): the first step's rate as a fraction of lr, in [0, 1]. Default 0.

    >>> warmup_stable_decay_lr(1.0, warmup_steps=2, stable_steps=3, decay_steps=2)(6)
    0.5
    """
    name = "warmup_stable_decay_lr"
    _check_common(name, lr, warmup_steps, min_lr, start_factor)
    _check_int(name, "stable_steps", stable_steps, 0)
    _check_int(name, "decay_steps", decay_steps, 1)
    _check(name, "decay", decay, decay in ("linear", "cosine"), "'linear' or 'cosine'")
    pieces = [(stable_steps, lambda k: lr)] if stable_steps else []
    pieces.append((None, _decay(decay, lr, min_lr, decay_steps)))
    return _schedule(
        _describe(name, lr=lr, warmup_steps=warmup_steps, stable_steps=stable_steps, decay_steps=decay_steps,
                  decay=decay, min_lr=min_lr, start_factor=start_factor),
        _warmup_then(lr, warmup_steps, start_factor, pieces))


# ---------------------------------------------------------------------------------------------- the class
class LRScheduler:
    """Sets each parameter group's lr to schedule(step): step 0 at construction, then one more per .step().

    Args:
        optimizer (Optimizer): the optimizer whose param_groups' "lr" is set.
        schedule: a function step -> lr for every group, or a list of them, one per group.
        last_step (int): the step already done (-1 for a fresh run, so that construction applies step 0).
            Default -1.

    >>> scheduler = LRScheduler(opt, step_lr(0.1, step_size=30))
    >>> for batch in data:
    ...     loss_fn(model(batch)).backward(); opt.step(); opt.zero_grad(); scheduler.step()
    """

    def __init__(self, optimizer, schedule, last_step: int = -1):
        groups = getattr(optimizer, "param_groups", None)
        if groups is None:
            raise TypeError(f"LRScheduler: expected an Optimizer, got {type(optimizer).__name__}")
        schedules = list(schedule) if isinstance(schedule, (list, tuple)) else [schedule] * len(groups)
        if len(schedules) != len(groups):
            raise ValueError(f"LRScheduler: got {len(schedules)} schedules for {len(groups)} "
                             "parameter groups")
        for s in schedules:
            if not callable(s):
                raise TypeError(f"LRScheduler: a schedule must be a function step -> lr, got {s!r}")
        _check_int("LRScheduler", "last_step", last_step, -1)
        self.optimizer = optimizer
        self.schedules = schedules
        self.last_step = last_step
        self._last_lr: list[float] = []
        self.step()

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def _apply(self) -> None:
        self._last_lr = [s(self.last_step) for s in self.schedules]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        """The learning rate of each group, as last set."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """The step reached (the schedule functions are code, rebuilt by the caller, as with LambdaLR)."""
        return {"last_step": self.last_step, "last_lr": list(self._last_lr)}

    def load_state_dict(self, state_dict: dict) -> None:
        last_step = state_dict["last_step"]
        _check_int("LRScheduler.load_state_dict", "last_step", last_step, 0)
        self.last_step = last_step
        self._apply()

    def __repr__(self) -> str:
        names = ", ".join(getattr(s, "__name__", repr(s)) for s in self.schedules)
        return f"LRScheduler(step={self.last_step}, lr={self._last_lr}, schedules=[{names}])"
