"""Mixed precision: zt.amp.autocast against torch.autocast, zt.amp.GradScaler against torch.amp.GradScaler,
and recipes with train.dtype bfloat16 / float16 that learn and resume bit for bit.

The op cases run on the CPU, and on CUDA where a GPU is present (autocast then targets "cuda"); PyTorch's CPU
autocast is the oracle wherever its op lists agree with the CUDA ones that zigtensor follows on every device.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cuda_util import why_no_gpu
from oracle import compare, torch
from tiny_recipes import IMAGE_RECIPE, TEXT_RECIPE, write_image_dataset, write_recipe

import zigtensor as zt
import zigtensor.nn.functional as F
from zigtensor import amp
from zigtensor.amp.policy import FLOAT32, LOWER, OP_POLICY
from zigtensor.train import load_recipe
from zigtensor.train.checkpoint import load_checkpoint
from zigtensor.train.metrics import read_metrics
from zigtensor.train.trainer import Trainer, TrainingError

TF = torch.nn.functional
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    bool(why_no_gpu()), reason=why_no_gpu() or "GPU present")])]
HALF = {"bfloat16": (zt.bfloat16, torch.bfloat16), "float16": (zt.float16, torch.float16)}
# one rounding to the 16-bit dtype apart (sums may be added in another order)
HALF_TOL = {"bfloat16": (2e-2, 2e-2), "float16": (2e-3, 2e-3)}


def inputs(device, *shapes, seed=0, dtype=np.float32):
    """The same random arrays as zigtensor tensors on device and as torch CPU tensors."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return [zt.tensor(a, device=device) for a in arrays], [torch.from_numpy(a.copy()) for a in arrays]


# ---------------------------------------------------------------------------------------------- the op lists
def _aten_list(header: str, macro: str) -> set:
    body = re.search(rf"#define {macro}\(_\)(.*?)\n\n", header, re.S)
    return set(re.findall(r"_\((\w+)", body.group(1)))


def test_policy_follows_pytorchs_cuda_op_lists():
    """Every op in amp/policy.py is where ATen's autocast lists (the CUDA ones) put it, bar the documented
    deviations."""
    header_path = Path(torch.__file__).parent / "include" / "ATen" / "autocast_mode.h"
    if not header_path.is_file():
        pytest.skip(f"this PyTorch install has no {header_path}")
    header = header_path.read_text()
    lower = _aten_list(header, "AT_FORALL_LOWER_PRECISION_FP")
    fp32 = _aten_list(header, "AT_FORALL_FP32") | _aten_list(header, "AT_FORALL_FP32_SET_OPT_DTYPE")
    composite = {"cross_entropy"}  # log_softmax then nll_loss, both float32 in ATen
    deviations = {"binary_cross_entropy", "lstm", "gru", "rnn"}  # see the policy's docstring
    for op, policy in OP_POLICY.items():
        assert policy in (LOWER, FLOAT32), op
        if op in composite | deviations:
            continue
        assert op in (lower if policy is LOWER else fp32), f"{op}: {policy} here, not in ATen's {policy} list"
    assert {"matmul", "linear", "conv1d", "conv2d", "conv_transpose2d", "scaled_dot_product_attention"} <= lower


# ---------------------------------------------------------------------------------------------- op dtypes
def _mask(lib, shape):
    rng = np.random.default_rng(5)
    m = rng.standard_normal(shape).astype(np.float32)
    return torch.from_numpy(m) if lib is torch else zt.tensor(m)


# name -> (shapes of the float inputs, fn(F, lib, *inputs)); both libraries spell these the same way
LOWER_CASES = {
    "matmul": ([(5, 7), (7, 3)], lambda F, lib, a, b: a @ b),
    "matmul_batched": ([(2, 5, 7), (7, 3)], lambda F, lib, a, b: lib.matmul(a, b)),
    "matmul_vector": ([(7,), (7, 3)], lambda F, lib, a, b: lib.matmul(a, b)),
    "mm": ([(5, 7), (7, 3)], lambda F, lib, a, b: lib.mm(a, b)),
    "bmm": ([(2, 5, 7), (2, 7, 3)], lambda F, lib, a, b: lib.bmm(a, b)),
    "linear": ([(4, 5, 8), (6, 8), (6,)], lambda F, lib, x, w, b: F.linear(x, w, b)),
    "linear_no_bias": ([(4, 8), (6, 8)], lambda F, lib, x, w: F.linear(x, w)),
    "conv1d": ([(2, 3, 9), (4, 3, 3), (4,)], lambda F, lib, x, w, b: F.conv1d(x, w, b, padding=1)),
    "conv2d": ([(2, 3, 6, 6), (4, 3, 3, 3), (4,)], lambda F, lib, x, w, b: F.conv2d(x, w, b, stride=2)),
    "conv_transpose2d": ([(2, 3, 4, 4), (3, 4, 3, 3), (4,)],
                         lambda F, lib, x, w, b: F.conv_transpose2d(x, w, b, stride=2)),
    "sdpa_causal": ([(2, 2, 6, 8)] * 3, lambda F, lib, q, k, v: F.scaled_dot_product_attention(q, k, v,
                                                                                               is_causal=True)),
    "sdpa_float_mask": ([(2, 2, 6, 8)] * 3, lambda F, lib, q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=_mask(lib, (6, 6)))),
}


@pytest.mark.parametrize("half", ["bfloat16", "float16"])
@pytest.mark.parametrize("case", list(LOWER_CASES))
@pytest.mark.parametrize("device", DEVICES)
def test_matrix_products_run_in_the_autocast_dtype(case, half, device):
    """float32 inputs in, 16-bit results out, with torch.autocast's values; the float32 leaves get float32
    gradients (the casts are recorded)."""
    shapes, fn = LOWER_CASES[case]
    zt_dtype, torch_dtype = HALF[half]
    (zs, ts) = inputs(device, *shapes)
    for t in (*zs, *ts):
        t.requires_grad_(True)
    dev = zt.device(device)
    mask_device = zt.get_default_device()
    zt.set_default_device(dev)  # the float mask of sdpa_float_mask is made on the default device
    try:
        with amp.autocast(dev.type, dtype=zt_dtype):
            got = fn(F, zt, *zs)
    finally:
        zt.set_default_device(mask_device)
    with torch.autocast("cpu", dtype=torch_dtype):
        want = fn(TF, torch, *ts)
    assert want.dtype == torch_dtype  # the oracle agrees that this op runs in the low dtype
    assert got.dtype is zt_dtype
    atol, rtol = HALF_TOL[half]
    compare(case, got, want, atol, rtol)
    # backward outside the region, as PyTorch recommends; the gradients land on the float32 inputs
    weights = np.random.default_rng(1).standard_normal(got.shape).astype(np.float32)
    (got.float() * zt.tensor(weights, device=device)).sum().backward()
    (want.float() * torch.from_numpy(weights)).sum().backward()
    for i, (z, t) in enumerate(zip(zs, ts)):
        assert z.grad.dtype is zt.float32, f"input {i}: gradient {z.grad.dtype}"
        scale = float(np.abs(t.grad.numpy()).max()) or 1.0
        compare(f"{case} grad {i}", z.grad, t.grad, 4 * atol * scale, 4 * rtol)


def _class_target(lib, n, c):
    t = np.random.default_rng(3).integers(0, c, n)
    return torch.from_numpy(t) if lib is torch else zt.tensor(t)


LOSS_CASES = {
    "cross_entropy": ([(6, 5)], lambda F, lib, x: F.cross_entropy(x, _class_target(lib, 6, 5))),
    "cross_entropy_smoothing": ([(6, 5)], lambda F, lib, x: F.cross_entropy(x, _class_target(lib, 6, 5),
                                                                           label_smoothing=0.1)),
    "nll_loss": ([(6, 5)], lambda F, lib, x: F.nll_loss(x, _class_target(lib, 6, 5))),
    "mse_loss": ([(6, 5), (6, 5)], lambda F, lib, x, y: F.mse_loss(x, y)),
    "l1_loss": ([(6, 5), (6, 5)], lambda F, lib, x, y: F.l1_loss(x, y)),
    "smooth_l1_loss": ([(6, 5), (6, 5)], lambda F, lib, x, y: F.smooth_l1_loss(x, y)),
    "huber_loss": ([(6, 5), (6, 5)], lambda F, lib, x, y: F.huber_loss(x, y, delta=0.5)),
    "binary_cross_entropy": ([(6, 5), (6, 5)], lambda F, lib, p, q: F.binary_cross_entropy(p, q)),
    "binary_cross_entropy_with_logits": ([(6, 5), (6, 5)], lambda F, lib, x, q: F.binary_cross_entropy_with_logits(
        x, q)),
    "kl_div": ([(6, 5), (6, 5)], lambda F, lib, x, y: F.kl_div(x, y.abs(), reduction="batchmean")),
    "prod": ([(6, 5)], lambda F, lib, x: x.prod(1)),
}


@pytest.mark.parametrize("half", ["bfloat16", "float16"])
@pytest.mark.parametrize("case", list(LOSS_CASES))
@pytest.mark.parametrize("device", DEVICES)
def test_losses_run_in_float32(case, half, device):
    """16-bit inputs (a model's output under autocast) give float32 losses, with torch.autocast's values."""
    shapes, fn = LOSS_CASES[case]
    zt_dtype, torch_dtype = HALF[half]
    zs, ts = inputs(device, *shapes)
    if case.startswith("binary_cross_entropy"):  # probabilities: p (bce only) and the target q
        probs = slice(0 if case == "binary_cross_entropy" else 1, 2)
        zs[probs], ts[probs] = [zt.sigmoid(z) for z in zs[probs]], [t.sigmoid() for t in ts[probs]]
    zs, ts = [z.to(zt_dtype) for z in zs], [t.to(torch_dtype) for t in ts]
    dev = zt.device(device)
    saved = zt.get_default_device()
    zt.set_default_device(dev)  # the class targets are made on the default device
    try:
        with amp.autocast(dev.type, dtype=zt_dtype):
            got = fn(F, zt, *zs)
    finally:
        zt.set_default_device(saved)
    with torch.autocast("cpu", dtype=torch_dtype):
        want = fn(TF, torch, *ts)
    assert want.dtype == torch.float32 and got.dtype is zt.float32
    compare(case, got, want, 1e-5, 1e-4)  # the same 16-bit inputs, computed in float32 by both


# ops that PyTorch's CUDA autocast runs in float32 but its CPU autocast leaves in the input dtype: the
# oracle is the op on the float32 inputs
FLOAT32_CASES = {
    "softmax": lambda F, x: F.softmax(x, dim=-1),
    "log_softmax": lambda F, x: F.log_softmax(x, dim=1),
    "layer_norm": lambda F, x: F.layer_norm(x, (5,)),
    "group_norm": lambda F, x: F.group_norm(x.reshape(6, 4, 5), 2),
    "rms_norm": lambda F, x: F.rms_norm(x, (5,), eps=1e-6),
    "sum": lambda F, x: x.sum(0),
    "mean": lambda F, x: x.mean(),  # through sum
    "cumsum": lambda F, x: x.cumsum(1),
    "cumprod": lambda F, x: x.cumprod(1),
    "logsumexp": lambda F, x: x.logsumexp(1),
}


@pytest.mark.parametrize("half", ["bfloat16", "float16"])
@pytest.mark.parametrize("case", list(FLOAT32_CASES))
@pytest.mark.parametrize("device", DEVICES)
def test_softmax_norms_and_reductions_run_in_float32(case, half, device):
    fn = FLOAT32_CASES[case]
    zt_dtype, torch_dtype = HALF[half]
    [z], [t] = inputs(device, (24, 5))
    z16, t16 = z.to(zt_dtype), t.to(torch_dtype)
    with amp.autocast(zt.device(device).type, dtype=zt_dtype):
        got = fn(F, z16)
    assert got.dtype is zt.float32
    compare(case, got, fn(TF, t16.float()), 1e-5, 1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_float64_and_integers_are_never_cast(device):
    [a, b], _ = inputs(device, (3, 4), (4, 2), dtype=np.float64)
    i = zt.arange(6, device=device).reshape(2, 3)
    with amp.autocast(zt.device(device).type):
        assert (a @ b).dtype is zt.float64
        assert F.softmax(a, -1).dtype is zt.float64
        assert (i @ i.mT).dtype is zt.int64
        assert i.sum().dtype is zt.int64


def test_an_explicit_dtype_wins_over_autocast():
    x = zt.randn(3, 4).bfloat16()
    with amp.autocast("cpu"):
        assert x.sum(dtype=zt.bfloat16).dtype is zt.bfloat16
        assert F.softmax(x, -1, dtype=zt.float16).dtype is zt.float16
        assert F.softmax(x, -1).dtype is zt.float32


# ---------------------------------------------------------------------------------------------- the region
def test_regions_nest_switch_off_and_restore():
    a, b = zt.randn(3, 4), zt.randn(4, 2)
    assert not amp.is_autocast_enabled("cpu")
    with amp.autocast("cpu", dtype=zt.float16):
        assert amp.is_autocast_enabled("cpu") and amp.get_autocast_dtype("cpu") is zt.float16
        assert (a @ b).dtype is zt.float16
        with amp.autocast("cpu", enabled=False):
            assert (a @ b).dtype is zt.float32 and not amp.is_autocast_enabled("cpu")
        with amp.autocast("cpu", dtype=zt.bfloat16):
            assert (a @ b).dtype is zt.bfloat16
        assert (a @ b).dtype is zt.float16
    assert (a @ b).dtype is zt.float32
    assert amp.get_autocast_dtype("cpu") is zt.bfloat16 and amp.get_autocast_dtype("cuda") is zt.float16


def test_a_region_of_another_device_type_leaves_cpu_tensors_alone():
    a, b = zt.randn(3, 4), zt.randn(4, 2)
    with amp.autocast("cuda"):  # no CUDA tensor is made: works without a GPU
        assert (a @ b).dtype is zt.float32
        assert amp.is_autocast_enabled("cuda") and not amp.is_autocast_enabled("cpu")


def test_autocast_decorates_a_function_and_survives_an_exception():
    @amp.autocast("cpu")
    def forward(a, b):
        return a @ b

    a, b = zt.randn(3, 4), zt.randn(4, 2)
    assert forward(a, b).dtype is zt.bfloat16
    assert (a @ b).dtype is zt.float32
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        forward(a, a)
    assert not amp.is_autocast_enabled("cpu")


def test_backward_inside_the_region_equals_backward_outside():
    """Backward ops are never autocast: the same gradients wherever backward is called."""
    rng = np.random.default_rng(0)
    x = zt.tensor(rng.standard_normal((4, 8)).astype(np.float32))
    w = zt.tensor(rng.standard_normal((3, 8)).astype(np.float32), requires_grad=True)
    y = zt.tensor([0, 1, 2, 1])
    grads = []
    for inside in (False, True):
        w.grad = None
        with amp.autocast("cpu"):
            loss = F.cross_entropy(F.layer_norm(F.linear(x, w), (3,)), y)
            if inside:
                loss.backward()
        if not inside:
            loss.backward()
        grads.append(w.grad.numpy().copy())
    assert np.array_equal(grads[0], grads[1])


def test_a_parameter_is_cast_once_per_region_and_again_after_it_changes():
    zt.manual_seed(0)
    w = zt.nn.Parameter(zt.randn(4, 4))
    x = zt.randn(2, 4)
    with amp.autocast("cpu"):
        first, second = F.linear(x, w), F.linear(x, w)
        assert first.grad_fn.inputs[1] is second.grad_fn.inputs[1]  # one cast, shared
        with zt.no_grad():
            w.mul_(2.0)
        third = F.linear(x, w)
        assert third.grad_fn.inputs[1] is not first.grad_fn.inputs[1]
        compare("recast", third, first * 2.0, 0.0, 0.0)
        # gradient accumulation inside one region: the second backward goes through a fresh cast
        F.linear(x, w).sum().backward()
        F.linear(x, w).sum().backward()
    want = 2 * x.sum(0).to(zt.bfloat16).float().expand(4, 4)
    compare("accumulated", w.grad, want, 2e-2, 2e-2)  # (each backward's product is rounded to bfloat16)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"device_type": "gpu"}, ValueError, "device_type must be one of 'cpu', 'cuda'.*got 'gpu'"),
    ({"device_type": "cuda:0"}, ValueError, "without an index.*got 'cuda:0'"),
    ({"device_type": "cpu", "dtype": zt.float32}, ValueError, "bfloat16 or zigtensor.float16, got zigtensor.float32"),
    ({"device_type": "cpu", "enabled": "yes"}, TypeError, "enabled and cache_enabled must be bools"),
])
def test_bad_autocast_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        amp.autocast(**kwargs)


# ---------------------------------------------------------------------------------------------- GradScaler
def _twin_models(device):
    """The same two-layer model and SGD (momentum) in zigtensor and PyTorch."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) * 0.5 for s in ((6, 4), (6,), (2, 6), (2,))]
    zp = [zt.nn.Parameter(zt.tensor(a, device=device)) for a in arrays]
    tp = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    return zp, tp, zt.optim.SGD(zp, lr=0.1, momentum=0.9), torch.optim.SGD(tp, lr=0.1, momentum=0.9)


def _forward(lib, F, p, x, y):
    h = F.linear(x, p[0], p[1])
    return F.mse_loss(F.linear(h.tanh(), p[2], p[3]), y)


# step -> (parameter index, value) written into that gradient after backward
INJECTED = {2: (0, float("inf")), 3: (2, float("nan")), 4: (1, float("-inf")), 9: (3, float("inf"))}


@pytest.mark.parametrize("device", DEVICES)
def test_grad_scaler_matches_torch_step_for_step(device):
    """The same scales, the same skipped steps, the same gradients and weights as torch.amp.GradScaler, over
    steps with inf and nan gradients, growth and back-off; and the same state_dict after each update."""
    zp, tp, zopt, topt = _twin_models(device)
    kwargs = {"init_scale": 2.0**10, "growth_factor": 4.0, "backoff_factor": 0.25, "growth_interval": 3}
    zs, ts = amp.GradScaler(**kwargs), torch.amp.GradScaler("cpu", **kwargs)
    rng = np.random.default_rng(1)
    scales, skipped = [], []
    for step in range(14):
        x, y = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((8, 2)).astype(np.float32)
        zopt.zero_grad()
        topt.zero_grad()
        zs.scale(_forward(zt, F, zp, zt.tensor(x, device=device), zt.tensor(y, device=device))).backward()
        ts.scale(_forward(torch, TF, tp, torch.from_numpy(x), torch.from_numpy(y))).backward()
        if step in INJECTED:
            i, v = INJECTED[step]
            zp[i].grad.data.reshape(-1)[0] = v
            tp[i].grad.view(-1)[0] = v
        before = [p.numpy().copy() for p in zp]
        zs.unscale_(zopt)
        ts.unscale_(topt)
        for i, (z, t) in enumerate(zip(zp, tp)):
            compare(f"step {step} grad {i}", z.grad, t.grad, 1e-6, 1e-5)
        zs.step(zopt)
        ts.step(topt)
        zs.update()
        ts.update()
        skipped.append(all(np.array_equal(b, p.numpy()) for b, p in zip(before, zp)))
        scales.append(zs.get_scale())
        assert zs.get_scale() == ts.get_scale(), f"step {step}: scale {zs.get_scale()} vs {ts.get_scale()}"
        assert zs.state_dict() == ts.state_dict(), f"step {step}"
        for i, (z, t) in enumerate(zip(zp, tp)):
            compare(f"step {step} weight {i}", z, t, 1e-6, 1e-5)
    assert skipped == [s in INJECTED for s in range(14)]
    assert any(b > a for a, b in zip(scales, scales[1:])) and min(scales) < 2.0**10  # it grew and backed off


def test_grad_scaler_state_dict_resumes_the_same_sequence():
    zp, _, zopt, _ = _twin_models("cpu")
    a = amp.GradScaler(init_scale=8.0, growth_interval=2)
    x, y = zt.randn(8, 4), zt.randn(8, 2)

    def iteration(scaler, inject):
        zopt.zero_grad()
        scaler.scale(_forward(zt, F, zp, x, y)).backward()
        if inject:
            zp[0].grad = zp[0].grad * float("inf")
        scaler.step(zopt)
        scaler.update()

    for inject in (False, True, False):
        iteration(a, inject)
    b = amp.GradScaler()
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict() == {"scale": 4.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                                "growth_interval": 2, "_growth_tracker": 1}
    for scaler in (a, b):
        iteration(scaler, False)
    assert a.state_dict() == b.state_dict() and a.get_scale() == 8.0


def test_a_scale_that_would_overflow_stays():
    """growth_factor * scale beyond float32's range keeps the scale, as in PyTorch."""
    zw, tw = zt.nn.Parameter(zt.ones(3)), torch.nn.Parameter(torch.ones(3))
    zopt, topt = zt.optim.SGD([zw], lr=0.1), torch.optim.SGD([tw], lr=0.1)
    zs = amp.GradScaler(init_scale=2.0**126, growth_interval=1)
    ts = torch.amp.GradScaler("cpu", init_scale=2.0**126, growth_interval=1)
    for _ in range(3):
        for scaler, opt, w in ((zs, zopt, zw), (ts, topt, tw)):
            opt.zero_grad()
            scaler.scale((w * 1e-3).sum()).backward()
            scaler.step(opt)
            scaler.update()
        assert zs.get_scale() == ts.get_scale()
    assert zs.get_scale() == 2.0**127
    compare("weights", zw, tw, 0.0, 1e-6)


def test_grad_scaler_call_order_errors():
    zp, _, zopt, _ = _twin_models("cpu")
    s = amp.GradScaler()
    with pytest.raises(RuntimeError, match="scale\\(\\) has not been called yet"):
        s.step(zopt)
    s.scale(_forward(zt, F, zp, zt.randn(8, 4), zt.randn(8, 2))).backward()
    s.unscale_(zopt)
    with pytest.raises(RuntimeError, match="already called on this optimizer since the last update"):
        s.unscale_(zopt)
    s.step(zopt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called since the last update"):
        s.step(zopt)
    with pytest.raises(RuntimeError, match="called after step"):
        s.unscale_(zopt)
    s.update()
    with pytest.raises(RuntimeError, match="no inf checks were recorded prior to update"):
        s.update()
    with pytest.raises(RuntimeError, match="closures are not supported"):
        s.step(zopt, closure=lambda: None)
    empty = zt.optim.SGD([zt.nn.Parameter(zt.zeros(2))], lr=0.1)
    with pytest.raises(RuntimeError, match="none of its parameters has a gradient"):
        s.step(empty)


def test_grad_scaler_refuses_float16_gradients_and_bad_settings():
    p = zt.nn.Parameter(zt.ones(3, dtype=zt.float16))
    opt = zt.optim.SGD([p], lr=0.1)
    s = amp.GradScaler()
    with np.errstate(over="ignore"):  # 2 * 2**16 is beyond float16: the gradient is inf
        s.scale((p * 2).sum()).backward()
    with pytest.raises(ValueError, match="float16 gradient; keep the parameters \\(master weights\\) in float32"):
        s.unscale_(opt)
    for kwargs, match in (({"init_scale": 0}, "init_scale must be a positive number, got 0"),
                          ({"growth_factor": 1.0}, "growth_factor must be > 1.0, got 1.0"),
                          ({"backoff_factor": 1.5}, "backoff_factor must be < 1.0, got 1.5"),
                          ({"growth_interval": 0}, "growth_interval must be a positive int, got 0")):
        with pytest.raises(ValueError, match=re.escape(match)):
            amp.GradScaler(**kwargs)
    with pytest.raises(RuntimeError, match="state dict is empty"):
        s.load_state_dict({})
    with pytest.raises(TypeError, match="got 'cuda' for init_scale; unlike torch.amp.GradScaler it takes no device"):
        amp.GradScaler("cuda")


def test_a_disabled_grad_scaler_passes_through():
    zp, _, zopt, _ = _twin_models("cpu")
    s = amp.GradScaler(enabled=False)
    loss = _forward(zt, F, zp, zt.randn(8, 4), zt.randn(8, 2))
    assert s.scale(loss) is loss
    loss.backward()
    before = zp[0].numpy().copy()
    s.step(zopt)
    s.update()
    assert not np.array_equal(before, zp[0].numpy())
    assert s.state_dict() == {} and s.get_scale() == 1.0 and not s.is_enabled()


def test_scale_keeps_a_float16_loss_from_overflowing():
    """A 0-d float16 loss times the scale is float32 (as PyTorch's scale tensor makes it); lists are scaled
    element by element."""
    s = amp.GradScaler()
    loss = zt.tensor(3.0, dtype=zt.float16)
    scaled = s.scale(loss)
    assert scaled.dtype is zt.float32 and scaled.item() == 3.0 * 2**16
    pair = s.scale([loss, zt.tensor(1.0)])
    assert isinstance(pair, list) and [t.item() for t in pair] == [3.0 * 2**16, 2.0**16]


# ---------------------------------------------------------------------------------------------- recipes

# float16 runs use a scaler that starts too high and grows every 4 steps, so that steps are skipped (at the
# start and again after each growth) and the scaler's state matters when resuming
INIT_SCALE, GROWTH_INTERVAL = 2.0**24, 4


def _test_scaler(recipe):
    return amp.GradScaler(init_scale=INIT_SCALE, growth_interval=GROWTH_INTERVAL) \
        if recipe.train.dtype == "float16" else None


SCALER = f"""
import zigtensor.amp, zigtensor.train.trainer as T
T.make_grad_scaler = lambda recipe: zigtensor.amp.GradScaler(init_scale={INIT_SCALE}, \\
    growth_interval={GROWTH_INTERVAL}) if recipe.train.dtype == "float16" else None
"""

# stop (as Ctrl-C does) after the n-th training step, n from the environment variable STOP_AFTER
STOP = SCALER + """
import os, sys
n, calls, step = int(os.environ["STOP_AFTER"]), [0], T.Trainer.train_step
def patched(self, *a, **k):
    out = step(self, *a, **k)
    calls[0] += 1
    if calls[0] == n:
        self._stop = True
    return out
T.Trainer.train_step = patched
sys.argv = ["zt", *sys.argv[1:]]
from zigtensor_cli.app import main
main()
"""


@pytest.fixture(scope="module")
def amp_recipes(tmp_path_factory):
    """{(kind, dtype): recipe path} for kind image/text and dtype bfloat16/float16."""
    root = tmp_path_factory.mktemp("amp_data")
    write_image_dataset(root / "images", 256, 64)
    (root / "text.txt").write_text("hello world, hello zigtensor!\n" * 100)
    out = {}
    for kind, template, path, shape in (("image", IMAGE_RECIPE, root / "images", ()),
                                        ("text", TEXT_RECIPE, root / "text.txt", ("train.batch_size=8",))):
        for dtype in ("bfloat16", "float16"):
            out[kind, dtype] = write_recipe(root / f"{kind}_{dtype}.toml", template, path, *shape, "train.steps=40",
                                            "train.checkpoint_every=10", "train.eval_every=20",
                                            f"train.dtype={dtype!r}")
    return out


@pytest.fixture(scope="module")
def amp_runs(amp_recipes, tmp_path_factory):
    """Uninterrupted runs of every recipe, with the SCALER patch: {(kind, dtype): out folder}."""
    root = tmp_path_factory.mktemp("amp_runs")
    outs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setattr("zigtensor.train.trainer.make_grad_scaler", _test_scaler)  # SCALER, in this process
        for key, recipe in amp_recipes.items():
            outs[key] = root / "_".join(key)
            Trainer(load_recipe(recipe), outs[key], progress=False, echo=lambda s: None).fit()
    return outs


@pytest.mark.parametrize("kind", ["image", "text"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_mixed_precision_run_learns(kind, dtype, amp_runs):
    out = amp_runs[kind, dtype]
    records = read_metrics(out / "metrics.jsonl")
    train = [r for r in records if r["split"] == "train"]
    assert train[-1]["loss"] < 0.6 * train[0]["loss"], [r["loss"] for r in train]
    val = [r for r in records if r["split"] == "val"]
    assert val[-1]["loss"] < val[0]["loss"]
    weights = zt.load_file(out / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {zt.float32}  # master weights stay float32
    if dtype == "float16":
        skipped = [r["skipped_steps"] for r in train]
        assert skipped[0] > 0 and sum(skipped[1:]) > 0, skipped  # the scaler skipped steps; the run went on
        assert all(r["loss_scale"] < INIT_SCALE for r in train)
    else:
        assert "skipped_steps" not in train[0] and "loss_scale" not in train[0]


def _cli(script, *args, cwd, env):
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


@pytest.mark.parametrize("kind, dtype, stop_after", [("image", "bfloat16", 13), ("text", "float16", 17)])
def test_a_mixed_precision_run_resumes_bit_identically(kind, dtype, stop_after, amp_recipes, amp_runs, tmp_path):
    """Stopped after step k in one process and resumed with --resume auto in another: the same metrics
    and final weights, bit for bit, as the uninterrupted run (float16: the scaler's state too)."""
    out = tmp_path / "run"
    r = _cli(STOP, "train", amp_recipes[kind, dtype], "--out", out, cwd=tmp_path, env={"STOP_AFTER": str(stop_after)})
    assert r.returncode == 130, r.stderr
    ckpt = load_checkpoint(out / "checkpoints" / f"step_{stop_after:06d}.safetensors")
    if dtype == "float16":
        state = ckpt.trainer["grad_scaler"]
        assert state["scale"] < INIT_SCALE and state["growth_interval"] == GROWTH_INTERVAL
    r = _cli(SCALER + "\nimport sys\nsys.argv = ['zt', *sys.argv[1:]]\nfrom zigtensor_cli.app import main\nmain()\n",
             "train", amp_recipes[kind, dtype], "--out", out, "--resume", "auto", cwd=tmp_path, env={})
    assert r.returncode == 0, r.stderr
    ref = amp_runs[kind, dtype]
    a, b = zt.load_file(ref / "model.safetensors"), zt.load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)

    def losses(run):
        return [(x["step"], x["split"], x["loss"], x.get("skipped_steps"), x.get("loss_scale"))
                for x in read_metrics(run / "metrics.jsonl")]

    assert losses(ref) == losses(out)


def test_a_diverging_float16_run_still_stops(amp_recipes, tmp_path):
    """The scaler absorbs overflowed gradients, not a loss that is itself inf or nan."""
    recipe = write_recipe(tmp_path / "diverge.toml", Path(amp_recipes["image", "float16"]).read_text(), None,
                          "optim.lr=1e30")
    with pytest.raises(TrainingError, match=r"step \d+: the loss is (nan|inf)"):
        Trainer(load_recipe(recipe), tmp_path / "run", progress=False, echo=lambda s: None).fit()


@pytest.mark.parametrize("init_scale, stops", [(2.0**16, False), (0.5, True)])
def test_an_overflowed_gradient_stops_the_run_only_below_a_loss_scale_of_one(init_scale, stops, amp_recipes,
                                                                            tmp_path, monkeypatch):
    """A non-finite gradient norm is a skipped step while the scale is >= 1 (scaling caused the overflow),
    and a divergence below it (the gradients overflow unscaled)."""
    import zigtensor.train.trainer as T

    recipe = write_recipe(tmp_path / "short.toml", Path(amp_recipes["image", "float16"]).read_text(), None,
                          "train.steps=3")
    monkeypatch.setattr(T, "make_grad_scaler", lambda r: amp.GradScaler(init_scale=init_scale))
    real_clip = T.clip_grad_norm_

    def overflowed(params, clip):  # the gradient norm of a step whose float16 gradients overflowed
        real_clip(params, clip)
        return zt.tensor(float("inf"))

    monkeypatch.setattr(T, "clip_grad_norm_", overflowed)
    trainer = Trainer(load_recipe(recipe), tmp_path / "run", progress=False, echo=lambda s: None)
    if stops:
        with pytest.raises(TrainingError, match=r"step 1: the gradient norm is inf"):
            trainer.fit()
    else:
        trainer.fit()  # the steps are not skipped (the gradients are finite): only the norm overflowed
        [train] = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train"]
        assert train["skipped_steps"] == 0 and train["grad_norm"] == float("inf")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_every_recipe_model_trains_a_step_in_mixed_precision(dtype, tmp_path):
    """mlp, cnn, gpt and lstm under autocast: float32 parameters, float32 gradients, a finite loss that an
    optimizer step lowers."""
    from zigtensor.models import CNN, GPT, MLP, CharLSTM, CharLSTMConfig, CNNConfig, GPTConfig, MLPConfig

    zt.manual_seed(0)
    image, labels = zt.randn(8, 1, 28, 28), zt.randint(0, 10, (8,))
    tokens = zt.randint(0, 17, (4, 17))
    cases = {
        "mlp": (MLP(MLPConfig(in_features=784, hidden=(32,), num_classes=10)), image, labels),
        "cnn": (CNN(CNNConfig(channels=(4, 8), hidden=16)), image, labels),
        "gpt": (GPT(GPTConfig(vocab_size=17, block_size=16, n_layer=1, n_head=2, n_embd=32)), tokens[:, :-1],
                tokens[:, 1:]),
        "lstm": (CharLSTM(CharLSTMConfig(vocab_size=17, embed=8, hidden=16, num_layers=2)), tokens[:, :-1],
                 tokens[:, 1:]),
    }
    for name, (model, x, y) in cases.items():
        opt = zt.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(3):
            with amp.autocast("cpu", dtype=HALF[dtype][0]):
                logits = model(x)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            assert logits.dtype is HALF[dtype][0] and loss.dtype is zt.float32, name
            opt.zero_grad()
            loss.backward()
            assert {p.grad.dtype for p in model.parameters()} == {zt.float32}, name
            opt.step()
            losses.append(loss.item())
        assert all(np.isfinite(losses)) and losses[-1] < losses[0], (name, losses)


def test_train_dtype_passes_a_dry_run(amp_recipes, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from zigtensor_cli.app import app

    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["train", str(amp_recipes["image", "bfloat16"]), "--dry-run"])
    assert r.exit_code == 0, r.output
