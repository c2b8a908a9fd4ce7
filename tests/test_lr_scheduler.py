"""Learning-rate schedules against PyTorch's schedulers, step by step, and the LRScheduler class."""

import math
import pickle
import warnings

import numpy as np
import pytest
from oracle import torch

import zigtensor as zt
from zigtensor.optim import lr_scheduler as S

LR = 0.1
T = torch.optim.lr_scheduler


def _torch_lrs(make, steps, lr=LR):
    """The lr PyTorch uses at each of `steps` optimizer steps (the scheduler stepped after each)."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make(opt)
        lrs = []
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return lrs


def _seq(*parts, milestones):
    return lambda opt: T.SequentialLR(opt, [make(opt) for make in parts], milestones=milestones)


# (our schedule, PyTorch's scheduler, steps)
CASES = {
    "constant": (S.constant_lr(LR), lambda o: T.ConstantLR(o, factor=1.0, total_iters=0), 20),
    "constant_factor": (S.constant_lr(LR, factor=0.25, total_steps=4),
                        lambda o: T.ConstantLR(o, 0.25, 4), 20),
    "linear": (S.linear_lr(LR, 0.2, 0.9, 7), lambda o: T.LinearLR(o, 0.2, 0.9, 7), 20),
    "linear_defaults": (S.linear_lr(LR), lambda o: T.LinearLR(o), 20),
    "step": (S.step_lr(LR, step_size=3, gamma=0.5), lambda o: T.StepLR(o, step_size=3, gamma=0.5), 25),
    "multistep": (S.multistep_lr(LR, [9, 2, 5, 5], gamma=0.3),
                  lambda o: T.MultiStepLR(o, [9, 2, 5, 5], gamma=0.3), 20),
    "exponential": (S.exponential_lr(LR, 0.9), lambda o: T.ExponentialLR(o, 0.9), 30),
    "cosine_past_T_max": (S.cosine_annealing_lr(LR, T_max=10, eta_min=0.01),
                          lambda o: T.CosineAnnealingLR(o, T_max=10, eta_min=0.01), 35),
    "warmup_cosine": (S.warmup_cosine_lr(LR, 5, 15, min_lr=0.001, start_factor=0.1),
                      _seq(lambda o: T.LinearLR(o, 0.1, 1.0, 5), lambda o: T.CosineAnnealingLR(o, 15, 0.001),
                           milestones=[5]), 21),
    "warmup_linear": (S.warmup_linear_lr(LR, 4, 16, min_lr=0.02, start_factor=0.25),
                      _seq(lambda o: T.LinearLR(o, 0.25, 1.0, 4), lambda o: T.LinearLR(o, 1.0, 0.2, 16),
                           milestones=[4]), 30),
    "wsd_linear": (S.warmup_stable_decay_lr(LR, 4, 6, 10, "linear", min_lr=0.005, start_factor=0.1),
                   _seq(lambda o: T.LinearLR(o, 0.1, 1.0, 4), lambda o: T.ConstantLR(o, 1.0, 0),
                        lambda o: T.LinearLR(o, 1.0, 0.05, 10), milestones=[4, 10]), 30),
    "wsd_cosine": (S.warmup_stable_decay_lr(LR, 3, 5, 12, "cosine", min_lr=0.005, start_factor=0.5),
                   _seq(lambda o: T.LinearLR(o, 0.5, 1.0, 3), lambda o: T.ConstantLR(o, 1.0, 0),
                        lambda o: T.CosineAnnealingLR(o, 12, 0.005), milestones=[3, 8]), 21),
    "sequential": (S.sequential_lr([S.exponential_lr(LR, 0.8), S.step_lr(LR, 4, 0.5)], milestones=[6]),
                   _seq(lambda o: T.ExponentialLR(o, 0.8), lambda o: T.StepLR(o, 4, 0.5),
                        milestones=[6]), 22),
}


@pytest.mark.parametrize("case", list(CASES))
def test_schedule_matches_pytorch(case):
    ours, make, steps = CASES[case]
    assert steps >= 20
    want = _torch_lrs(make, steps)
    np.testing.assert_allclose([ours(t) for t in range(steps)], want, rtol=1e-12, atol=1e-15)


def test_warmup_from_zero_is_hugging_face_s():
    """start_factor 0: get_cosine/linear_schedule_with_warmup, written out."""
    w, total = 4, 12
    cos, lin = S.warmup_cosine_lr(LR, w, total - w), S.warmup_linear_lr(LR, w, total - w)
    for t in range(20):
        if t < w:
            want_cos = want_lin = LR * t / w
        else:
            progress = min(1.0, (t - w) / (total - w))
            want_cos = LR * 0.5 * (1 + math.cos(math.pi * progress))
            want_lin = LR * max(0.0, (total - t) / (total - w))
        assert cos(t) == pytest.approx(want_cos, abs=1e-15) and lin(t) == pytest.approx(want_lin, abs=1e-15)


@pytest.mark.parametrize("schedule", [
    S.warmup_cosine_lr(LR, 2, 5, min_lr=0.01), S.warmup_linear_lr(LR, 2, 5, min_lr=0.01),
    S.warmup_stable_decay_lr(LR, 2, 3, 5, "cosine", min_lr=0.01),
])
def test_composite_schedules_hold_min_lr_after_the_decay(schedule):
    assert [schedule(t) for t in (12, 13, 1000)] == pytest.approx([0.01] * 3)


def test_no_warmup_and_no_stable_phase():
    s = S.warmup_stable_decay_lr(LR, 0, 0, 4, "linear")
    assert [s(t) for t in range(6)] == pytest.approx([0.1, 0.075, 0.05, 0.025, 0.0, 0.0])
    assert S.warmup_cosine_lr(LR, 0, 10)(0) == LR


def test_schedules_return_python_floats_and_have_readable_names():
    s = S.step_lr(LR, step_size=3)
    assert type(s(0)) is float and type(S.multistep_lr(1, [1])(0)) is float
    assert s.__name__ == "step_lr(lr=0.1, step_size=3, gamma=0.1)"


@pytest.mark.parametrize("make,match", [
    (lambda: S.step_lr(LR, step_size=0), "step_lr: invalid step_size 0"),
    (lambda: S.step_lr(LR, step_size=-2), "step_size -2"),
    (lambda: S.step_lr(LR, step_size=2.5), "step_size 2.5"),
    (lambda: S.step_lr(LR, 3, gamma=0.0), "gamma 0.0"),
    (lambda: S.step_lr(-0.1, 3), "learning rate -0.1"),
    (lambda: S.multistep_lr(LR, [2, -1]), "milestone -1"),
    (lambda: S.multistep_lr(LR, [2], gamma=-0.5), "gamma -0.5"),
    (lambda: S.exponential_lr(LR, 0), "exponential_lr: invalid gamma 0"),
    (lambda: S.cosine_annealing_lr(LR, T_max=0), "T_max 0"),
    (lambda: S.cosine_annealing_lr(LR, T_max=-5), "T_max -5"),
    (lambda: S.cosine_annealing_lr(LR, 10, eta_min=-1.0), "eta_min -1.0"),
    (lambda: S.constant_lr(LR, factor=1.5), "factor 1.5"),
    (lambda: S.constant_lr(LR, 0.5, total_steps=-1), "total_steps -1"),
    (lambda: S.linear_lr(LR, start_factor=-0.1), "start_factor -0.1"),
    (lambda: S.linear_lr(LR, total_steps=0), "total_steps 0"),
    (lambda: S.warmup_cosine_lr(LR, -1, 10), "warmup_steps -1"),
    (lambda: S.warmup_cosine_lr(LR, 5, 0), "decay_steps 0"),
    (lambda: S.warmup_linear_lr(LR, 5, 10, min_lr=-0.1), "min_lr -0.1"),
    (lambda: S.warmup_linear_lr(LR, 5, 10, start_factor=2), "start_factor 2"),
    (lambda: S.warmup_stable_decay_lr(LR, 1, -3, 10), "stable_steps -3"),
    (lambda: S.warmup_stable_decay_lr(LR, 1, 3, 10, decay="exp"), "decay 'exp'"),
    (lambda: S.sequential_lr([S.constant_lr(LR)], [3]), "number of milestones 1"),
    (lambda: S.sequential_lr([S.constant_lr(LR)] * 3, [5, 2]), r"milestones \[5, 2\]"),
    (lambda: S.step_lr(LR, 3)(-1), "step -1"),
    (lambda: S.constant_lr(LR)(1.5), "step 1.5"),
])
def test_bad_arguments_are_quoted(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ------------------------------------------------------------------------------------------ LRScheduler
def _sgd(lr=LR, groups=1):
    params = [zt.ones(3, requires_grad=True) for _ in range(groups)]
    return params, zt.optim.SGD([{"params": [p]} for p in params], lr=lr, momentum=0.9)


def test_scheduler_trains_like_pytorch_steplr():
    """SGD + StepLR in both frameworks, the same gradients: the same parameters after 20 steps."""
    rng = np.random.default_rng(0)
    (zp,), zopt = _sgd()
    tp = torch.ones(3, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=LR, momentum=0.9)
    zs, ts = S.LRScheduler(zopt, S.step_lr(LR, 4, 0.5)), T.StepLR(topt, 4, 0.5)
    for _ in range(20):
        g = rng.standard_normal(3)
        zp.grad, tp.grad = zt.tensor(g, dtype=zt.float32), torch.tensor(g, dtype=torch.float32)
        zopt.step()
        topt.step()
        zs.step()
        ts.step()
        assert zs.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
        assert zopt.param_groups[0]["lr"] == zs.get_last_lr()[0]
    np.testing.assert_allclose(zp.numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_scheduler_state_dict_resumes():
    schedule = S.warmup_cosine_lr(LR, 3, 10)
    _, opt = _sgd()
    sched = S.LRScheduler(opt, schedule)
    for _ in range(7):
        sched.step()
    state = pickle.loads(pickle.dumps(sched.state_dict()))
    _, opt2 = _sgd(lr=5.0)
    sched2 = S.LRScheduler(opt2, schedule)
    sched2.load_state_dict(state)
    assert sched2.last_step == 7 and sched2.get_last_lr() == [schedule(7)] == [opt2.param_groups[0]["lr"]]
    for _ in range(5):
        sched.step()
        sched2.step()
        assert sched2.get_last_lr() == sched.get_last_lr()


def test_scheduler_per_group_schedules_and_checks():
    _, opt = _sgd(groups=2)
    sched = S.LRScheduler(opt, [S.constant_lr(0.1), S.exponential_lr(1.0, 0.5)])
    assert sched.get_last_lr() == [0.1, 1.0]
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert "exponential_lr(lr=1.0, gamma=0.5)" in repr(sched)
    with pytest.raises(ValueError, match="got 1 schedules for 2 parameter groups"):
        S.LRScheduler(opt, [S.constant_lr(0.1)])
    with pytest.raises(TypeError, match="expected an Optimizer"):
        S.LRScheduler(object(), S.constant_lr(0.1))
    with pytest.raises(TypeError, match="must be a function"):
        S.LRScheduler(opt, 0.1)


def test_scheduler_last_step_starts_mid_schedule():
    _, opt = _sgd()
    sched = S.LRScheduler(opt, S.step_lr(LR, 2), last_step=3)
    assert sched.last_step == 4 and sched.get_last_lr() == [pytest.approx(LR * 0.01)]
    with pytest.raises(ValueError, match="last_step -2"):
        S.LRScheduler(opt, S.step_lr(LR, 2), last_step=-2)
