"""CPUBackend's compiled float32 kernels (backends/cpu_fused.py) against PyTorch in float64, in the forms
cpu_kernels.py calls them: separate and shared output arrays, with and without the affine parts, sliding
windows and scores far above the diagonal."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import oracle

from zigtensor.backends import cpu_fused, cpu_kernels


def _torch64(a):
    torch = oracle("torch")
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def test_gelu_tanh_and_its_gradient_match_torch():
    torch = oracle("torch")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(10_001) * 4).astype(np.float32)
    x[:7] = [-100.0, -30.0, -9.0, -1e-3, 0.0, 17.0, 100.0]
    g = rng.standard_normal(x.shape).astype(np.float32)
    out, saved, dx = (np.empty_like(x) for _ in range(3))
    cpu_fused.gelu_tanh(x, out, saved)
    cpu_fused.gelu_tanh_backward(g, x, saved, dx)
    t = _torch64(x)
    y = torch.nn.functional.gelu(t, approximate="tanh")
    y.backward(torch.tensor(g, dtype=torch.float64))
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx))


def _softmax64(s, r0, window):
    """The reference: float64 softmax of each row over the keys it sees, 0 elsewhere."""
    n, rows, keys = s.shape
    want = np.zeros(s.shape)
    for i in range(rows):
        last = min(r0 + i + 1, keys)
        first = max(0, last - window) if window else 0
        row = s[:, i, first:last].astype(np.float64)
        e = np.exp(row - row.max(axis=-1, keepdims=True))
        want[:, i, first:last] = e / e.sum(axis=-1, keepdims=True)
    return want


@pytest.mark.parametrize("r0,keys,window", [(0, 64, 0), (64, 128, 0), (0, 5, 0), (32, 96, 7), (0, 64, 1)])
def test_causal_softmax_matches_float64(r0, keys, window):
    rng = np.random.default_rng(r0 + keys + window)
    rows = keys - r0
    s = (rng.standard_normal((3, rows, keys)) * 6).astype(np.float32)
    s[0, rows - 1, 0] = 1000.0   # far above the diagonal score: the row is shifted again by its maximum
    s[1, rows // 2, :] = -5e4    # every score equal and very negative
    want = _softmax64(s, r0, window)
    inv_total = np.full((3, rows), np.nan, np.float32)
    cpu_fused.causal_softmax(s, r0, window, inv_total)
    got = s * inv_total[..., None]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_rows_match_torch(affine):
    torch = oracle("torch")
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((37, 96)) * 3 + 1).astype(np.float32)
    x[0] = 5.0  # a constant row: variance 0, rstd = 1 / sqrt(eps)
    w, b = ((rng.standard_normal(96).astype(np.float32) if affine else None) for _ in range(2))
    g = rng.standard_normal(x.shape).astype(np.float32)
    out, xhat, rstd = np.empty_like(x), np.empty_like(x), np.empty((37, 1), np.float32)
    cpu_kernels.layer_norm_rows(x, w, b, 1e-5, out, xhat, rstd)
    t = _torch64(x)
    tw, tb = (None if p is None else _torch64(p) for p in (w, b))
    y = torch.nn.functional.layer_norm(t, (96,), tw, tb, eps=1e-5)
    y.backward(torch.tensor(g, dtype=torch.float64))
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=1e-5, atol=1e-5)

    sums = np.zeros((2, 96), np.float32) if affine else None
    dx = np.empty_like(x)
    cpu_kernels.layer_norm_backward_rows(g, xhat, w, rstd, dx, sums)
    np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-4, atol=2e-4)
    if affine:
        np.testing.assert_allclose(sums[0], tw.grad.numpy(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(sums[1], tb.grad.numpy(), rtol=1e-5, atol=1e-4)

    # the shared-array forms (out is xhat; dx written over g) give the same values
    shared = np.empty_like(x)
    cpu_kernels.layer_norm_rows(x, None, None, 1e-5, shared, shared, np.empty_like(rstd))
    np.testing.assert_array_equal(shared, xhat)
    if not affine:
        over = g.copy()
        cpu_kernels.layer_norm_backward_rows(over, xhat, None, rstd, over, None)
        np.testing.assert_array_equal(over, dx)


def test_float64_stays_on_numpy():
    """float64 pieces take the NumPy forms, exact to float64 rounding (what finite differences need)."""
    x = np.linspace(-3, 3, 11)
    out, saved = np.empty_like(x), np.empty_like(x)
    cpu_kernels.gelu(x, "tanh", out, saved)
    want = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(out, want, rtol=1e-15, atol=1e-15)
    assert not cpu_kernels.takes_compiled(x) and cpu_kernels.takes_compiled(x.astype(np.float32), None)


@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.1}, {"amsgrad": True, "maximize": True},
                                     {"weight_decay": 0.3, "amsgrad": True}])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_compiled_adam_gives_the_numpy_forms_bits(name, options, monkeypatch):
    """float32 Adam runs cpu_fused.adam; 20 steps of it and of Adam.update's NumPy form end on the same bits."""
    import zigtensor as zt
    from zigtensor.optim import adam

    finals = []
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(adam, "takes_compiled", lambda *arrays: False)
        rng = np.random.default_rng(0)
        p = zt.tensor(rng.standard_normal((300, 70)).astype(np.float32), requires_grad=True)
        opt = getattr(zt.optim, name)([p], lr=0.05, **options)
        for _ in range(20):
            p.grad = zt.tensor(rng.standard_normal((300, 70)).astype(np.float32))
            opt.step()
        finals.append(p.numpy().copy())
    np.testing.assert_array_equal(finals[0], finals[1])
