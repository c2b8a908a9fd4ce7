"""ops.causal_attention.CausalAttention (the transformer's training attention on packed q/k/v) against PyTorch's
scaled_dot_product_attention: outputs and the gradient of qkv, for one and several query blocks, grouped-query
heads, sliding windows, float32 and float64, the overflow fallback, second derivatives (create_graph) and the
CPU backend's thread split."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import torch

import zigtensor as zt
from zigtensor.ops import causal_attention as CA
from zigtensor.ops.causal_attention import CausalAttention


def torch_attention(t, n_head, n_kv_head, scale, window, composed=False):
    """(B, T, n_head * hd) from PyTorch's SDPA on the packed (B, T, heads, hd) tensor t."""
    B, T, _, hd = t.shape
    q = t[:, :, :n_head].transpose(1, 2)
    k = t[:, :, n_head:n_head + n_kv_head].transpose(1, 2)
    v = t[:, :, n_head + n_kv_head:].transpose(1, 2)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None]
    allowed = j <= i
    if window is not None:
        allowed &= j > i - window
    if composed:  # twice differentiable (PyTorch's fused CPU kernel has no second derivative)
        k, v = (u.repeat_interleave(n_head // n_kv_head, dim=1) for u in (k, v))
        y = ((q @ k.mT) * scale).masked_fill(~allowed, float("-inf")).softmax(-1) @ v
    else:
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale,
                                                             enable_gqa=True)
    return y.transpose(1, 2).reshape(B, T, n_head * hd)


CASES = [  # B, T, n_head, n_kv_head, hd, window, query block
    (3, 128, 4, 4, 16, None, 64),  # two blocks, as the recipe GPT runs
    (2, 100, 4, 2, 8, None, 32),  # uneven blocks, grouped-query heads
    (2, 37, 6, 2, 8, 5, 16),  # sliding window narrower than a block
    (2, 70, 2, 1, 8, 40, 32),  # window wider than a block, one kv head
    (1, 1, 2, 2, 4, None, 64),  # a single position
]


@pytest.mark.parametrize("B,T,nh,nkv,hd,window,block", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_torch(monkeypatch, B, T, nh, nkv, hd, window, block, dtype):
    monkeypatch.setattr(CA, "QUERY_BLOCK", block)
    monkeypatch.setattr(CA, "PIECE_BYTES", 1)  # one batch row per piece: the pieces' seams are exercised
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((B, T, nh + 2 * nkv, hd)) * 2).astype(dtype)
    g = rng.standard_normal((B, T, nh * hd)).astype(dtype)
    scale = hd ** -0.5
    x = zt.tensor(a, requires_grad=True)
    y = CausalAttention.apply(x, nh, nkv, scale, window)
    y.backward(zt.tensor(g))
    t = torch.tensor(a, requires_grad=True)
    ty = torch_attention(t, nh, nkv, scale, window)
    ty.backward(torch.tensor(g))
    tol = dict(atol=1e-10, rtol=1e-8) if dtype == np.float64 else dict(atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), **tol)
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), **tol)


def test_row_that_would_overflow_is_redone_with_its_maximum():
    """Scores far above the diagonal one: shifting by the diagonal overflows exp; the result stays finite."""
    B, T, nh, hd = 1, 8, 1, 4
    a = np.zeros((B, T, 3 * nh, hd), np.float32)
    a[0, :, 0] = 1.0  # queries
    a[0, 0, 1] = 60.0  # key 0 scores 120 against every query: exp(120 - 0) overflows float32
    a[0, :, 2] = np.arange(T * hd, dtype=np.float32).reshape(T, hd)
    x = zt.tensor(a, requires_grad=True)
    y = CausalAttention.apply(x, nh, nh, 2.0, None)
    y.sum().backward()
    t = torch.tensor(a, requires_grad=True)
    torch_attention(t, nh, nh, 2.0, None).sum().backward()
    assert np.isfinite(y.numpy()).all()
    np.testing.assert_allclose(y.numpy(), torch_attention(torch.tensor(a), nh, nh, 2.0, None).numpy(), atol=1e-4)
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), atol=1e-4)


def test_second_derivative_matches_torch():
    """create_graph=True: the gradient is built from Tensor ops and can be differentiated again."""
    B, T, nh, nkv, hd = 2, 6, 2, 1, 4
    rng = np.random.default_rng(1)
    a = rng.standard_normal((B, T, nh + 2 * nkv, hd))
    x = zt.tensor(a, requires_grad=True)
    (gx,) = zt.autograd.grad(CausalAttention.apply(x, nh, nkv, 0.5, 3).square().sum(), [x], create_graph=True)
    gx.square().sum().backward()
    t = torch.tensor(a, requires_grad=True)
    (tgx,) = torch.autograd.grad(torch_attention(t, nh, nkv, 0.5, 3, composed=True).square().sum(), [t],
                                 create_graph=True)
    tgx.square().sum().backward()
    np.testing.assert_allclose(gx.detach().numpy(), tgx.detach().numpy(), atol=1e-10, rtol=1e-8)
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), atol=1e-9, rtol=1e-7)


def test_one_thread_and_several_agree(monkeypatch):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((5, 20, 6, 4)).astype(np.float32)
    results = []
    for threads in ("1", "3"):
        monkeypatch.setenv("ZT_NUM_THREADS", threads)
        x = zt.tensor(a, requires_grad=True)
        y = CausalAttention.apply(x, 2, 2, 0.5, None)
        y.square().sum().backward()
        results.append((y.numpy(), x.grad.numpy()))
    for one, many in zip(*results):
        np.testing.assert_array_equal(one, many)


def test_bad_arguments_are_named(monkeypatch):
    x = zt.zeros((1, 4, 5, 2))
    with pytest.raises(ValueError, match=r"qkv of shape \(1, 4, 5, 2\) does not hold 2 query heads"):
        CausalAttention.apply(x, 2, 2, 1.0, None)
    with pytest.raises(ValueError, match="window must be a positive number of keys or None, got 0"):
        CausalAttention.apply(zt.zeros((1, 4, 3, 2)), 1, 1, 1.0, 0)
    monkeypatch.setenv("ZT_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="ZT_NUM_THREADS must be a positive integer, got 'two'"):
        CausalAttention.apply(zt.zeros((2, 4, 3, 2)), 1, 1, 1.0, None)
