"""The numba kernels shared by the CPU paths (backends/numba_kernels.py) and the array path's row kernels
(llm/array_kernels.py), against float64 NumPy and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import oracle

import zigtensor as zt
from zigtensor import nn
from zigtensor.backends.numba_kernels import exp_
from zigtensor.llm.array_forward import ArrayOps


def test_exp_is_within_3e7_of_float64():
    x = np.concatenate([np.linspace(-87, 88, 200_001), [0.0, -1e-8, 1e-8, np.log(2), -np.log(2), 88.0, -87.0]])
    x = x.astype(np.float32)
    got = x.copy()
    exp_(got, np.empty(len(x), np.int32))
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(got - want) / want) < 3.1e-7
    assert got[-7] == 1.0                       # exp(0) exactly: a softmax's largest weight before the sum
    very_negative = np.array([-100.0, -1e30, -np.inf], np.float32)
    exp_(very_negative, np.empty(3, np.int32))
    assert np.all(very_negative < 1e-37)        # below float32's normal range: nothing for a softmax


@pytest.mark.parametrize("shape,eps", [((1, 8, 576), 1e-5), ((2, 3, 7), 1e-6), ((5, 64), None), ((1, 1, 1), 1e-5)])
def test_array_path_rms_norm_matches_torch(shape, eps):
    torch = oracle("torch")
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    m = nn.RMSNorm(shape[-1], eps=eps)
    m.weight.data[...] = rng.uniform(0.5, 1.5, shape[-1]).astype(np.float32)
    got = ArrayOps(zt.device("cpu")).norm(m, x)
    want = torch.nn.functional.rms_norm(torch.tensor(x, dtype=torch.float64), (shape[-1],),
                                        torch.tensor(m.weight.data, dtype=torch.float64),
                                        eps=eps if eps is not None else float(np.finfo(np.float32).eps))
    assert got.shape == x.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want.numpy(), rtol=2e-6, atol=1e-6)


def test_array_path_rms_norm_takes_strided_rows():
    m = nn.RMSNorm(4, eps=1e-5)
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)[:, ::2]   # not contiguous
    got = ArrayOps(zt.device("cpu")).norm(m, x)
    want = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(got, want, rtol=2e-6)


def test_tanh_from_exp_halves_is_within_a_few_ulp_of_float64():
    """numba_kernels.tanh_parts (the LSTM cell's tanh): relative error small also near 0, where 1 - 2 / (exp(2x)
    + 1) would cancel, and exactly +-1 far out."""
    from numba import njit

    from zigtensor.backends.numba_kernels import exp_reduce, tanh_parts

    @njit
    def tanh(x, out, bits):
        scaled = bits.view(np.float32)
        r = np.empty_like(x)
        for j in range(x.shape[0]):
            r[j], bits[j] = exp_reduce(np.float32(2.0) * x[j])
        for j in range(x.shape[0]):
            out[j] = tanh_parts(r[j], scaled[j])

    tiny = np.geomspace(1e-30, 1, 2000)
    x = np.concatenate([np.linspace(-50, 50, 100_001), tiny, -tiny, [0.0]]).astype(np.float32)
    got = np.empty_like(x)
    tanh(x, got, np.empty(len(x), np.int32))
    want = np.tanh(x.astype(np.float64))
    assert np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-38)) < 5e-7
    assert got[-1] == 0.0 and got[0] == -1.0 and got[100_000] == 1.0
