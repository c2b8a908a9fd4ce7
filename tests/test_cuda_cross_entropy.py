"""kernels/cross_entropy.cu through its launcher (backends/cuda_kernels/cross_entropy.py) against PyTorch's
cross_entropy (CPU, float64 on the same rounded logits): per-row loss and logsumexp, gradient with per-row
upstream weights, ignore_index, label smoothing, every logits dtype and target dtype, short rows (a warp
each) and long rows (a block each), 16-byte and scalar access."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_util import BF16, FLOAT_DTYPES, kernel_device, on_devices, rounded, tolerance
from oracle import oracle

from zigtensor.backends.cuda_kernels import cross_entropy as ce

torch = oracle("torch")

F32, F16, F64 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)
I64, I32, U8 = np.dtype(np.int64), np.dtype(np.int32), np.dtype(np.uint8)

SHAPES = [(1, 1), (7, 10), (33, 100), (5, 1000), (3, 1025), (2, 3, 40), (2, 32768), (4, 50257)]
CASES = [(shape, dtype, eps, I64) for shape in SHAPES for dtype in FLOAT_DTYPES for eps in (0.0, 0.1)]
CASES += [((9, 200), F32, 0.0, I32), ((9, 200), BF16, 0.1, U8)]
EMULATED = [((33, 100), F32, 0.1, I64), ((5, 1000), BF16, 0.0, I32), ((3, 1025), F16, 0.2, U8),
            ((2, 5000), F32, 0.1, I64), ((4, 3, 10), F64, 0.0, I64)]
IGNORE = -100


def _inputs(case, seed):
    shape, dtype, _, tdtype = case
    rng = np.random.default_rng(seed)
    logits = rounded(rng, shape, dtype, -6, 6)
    classes = shape[-1]
    targets = rng.integers(0, min(classes, 256), size=shape[:-1]).astype(tdtype)
    if tdtype != U8 and targets.size > 2:
        targets.reshape(-1)[1] = IGNORE  # one ignored row
    return logits, targets


@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_cross_entropy(device, case, monkeypatch):
    shape, dtype, eps, _ = case
    dev = kernel_device(device, monkeypatch)
    logits, targets = _inputs(case, 0)
    loss, lse = ce.cross_entropy_forward(dev.asarray(logits), dev.asarray(targets), IGNORE, eps)
    tl = torch.from_numpy(logits.astype(np.float64)).requires_grad_(True)
    tt = torch.from_numpy(targets.astype(np.int64))
    flat = tl.reshape(-1, shape[-1])
    want = torch.nn.functional.cross_entropy(flat, tt.reshape(-1), reduction="none", ignore_index=IGNORE,
                                             label_smoothing=eps)
    stat = F64 if dtype == F64 else F32
    assert loss.dtype == stat and loss.shape == shape[:-1] and lse.shape == shape[:-1]
    rtol, atol = tolerance(stat)
    # NOTE: loss = lse - x_t: cancellation, so an absolute tolerance at the scale of the logits
    np.testing.assert_allclose(dev.numpy(loss).reshape(-1), want.detach().numpy(), rtol=8 * rtol, atol=80 * atol)
    np.testing.assert_allclose(dev.numpy(lse), torch.logsumexp(tl.detach(), -1).numpy(), rtol=8 * rtol,
                               atol=80 * atol)

    grad = np.random.default_rng(1).uniform(0.5, 1.5, size=shape[:-1])
    dlogits = ce.cross_entropy_backward(dev.asarray(logits), dev.asarray(targets), lse,
                                        dev.asarray(grad.astype(stat)), IGNORE, eps)
    want.backward(torch.from_numpy(grad.reshape(-1)))
    assert dlogits.dtype == dtype and dlogits.shape == shape
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(dev.numpy(dlogits).astype(np.float64), tl.grad.numpy(), rtol=4 * rtol,
                               atol=4 * max(atol, rtol * 1.5))


@pytest.mark.parametrize("device,case", on_devices(["scalar grad"], ["scalar grad"]))
def test_scalar_grad_and_bad_targets(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    logits = rounded(np.random.default_rng(2), (4, 12), F32)
    targets = np.array([3, IGNORE, 11, 0], dtype=np.int64)
    _, lse = ce.cross_entropy_forward(dev.asarray(logits), dev.asarray(targets), IGNORE, 0.0)
    d = dev.numpy(ce.cross_entropy_backward(dev.asarray(logits), dev.asarray(targets), lse, 0.25, IGNORE, 0.0))
    tl = torch.from_numpy(logits.astype(np.float64)).requires_grad_(True)
    torch.nn.functional.cross_entropy(tl, torch.from_numpy(targets), ignore_index=IGNORE, reduction="sum").mul(
        0.25).backward()
    np.testing.assert_allclose(d, tl.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert not d[1].any()  # the ignored row
    bad = np.array([3, 12, -1, 0], dtype=np.int64)  # out of range and not ignored: NaN, never a stray read
    loss, _ = ce.cross_entropy_forward(dev.asarray(logits), dev.asarray(bad), IGNORE, 0.0)
    assert np.isnan(dev.numpy(loss)[1:3]).all() and np.isfinite(dev.numpy(loss)[[0, 3]]).all()


def test_bad_inputs_name_the_problem():
    x = np.zeros((3, 5), np.float32)
    with pytest.raises(TypeError, match="targets must be class indices"):
        ce.cross_entropy_forward(x, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"targets of shape \(4,\) do not match logits \(3, 5\)"):
        ce.cross_entropy_forward(x, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="label_smoothing must be between"):
        ce.cross_entropy_forward(x, np.zeros(3, np.int64), label_smoothing=1.5)
    with pytest.raises(ValueError, match="grad must be a number or an array of shape"):
        ce.cross_entropy_backward(x, np.zeros(3, np.int64), np.zeros(3, np.float32), np.zeros(4, np.float32))
