"""kernels/embedding.cu through its launcher (backends/cuda_kernels/embedding.py) against PyTorch (CPU):
forward gather, backward with atomics and the deterministic sorted path (our bitonic sort of (id, position)
keys), padding_idx, repeated ids, every dtype, int64 and int32 ids, 16-byte and scalar rows."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_util import BF16, FLOAT_DTYPES, kernel_device, on_devices, rounded, tolerance
from oracle import oracle

from zigtensor.backends.cuda_kernels import embedding as emb

torch = oracle("torch")

F32, F16, F64 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)
I64, I32 = np.dtype(np.int64), np.dtype(np.int32)

# (V, D, ids shape): tiny, odd D (scalar path), many repeats of few ids, ids past one sort tile (1024), 3-d ids
GEOMETRY = [(5, 3, (4,)), (10, 64, (7, 3)), (50, 33, (200,)), (3, 128, (2000,)), (1000, 16, (3000,)),
            (64, 768, (4, 257)), (7, 8, (2, 3, 5))]
CASES = [(v, d, s, dtype, I64, det, pad) for v, d, s in GEOMETRY for dtype in FLOAT_DTYPES
         for det in (True, False) for pad in (None, 1)]
CASES += [(100, 40, (300,), F32, I32, True, None), (100, 40, (300,), BF16, I32, False, 3)]
EMULATED = [(10, 64, (7, 3), F32, I64, True, 1), (3, 128, (2000,), F32, I64, True, None),
            (50, 33, (200,), BF16, I32, False, None), (1000, 16, (3000,), F16, I64, True, 7),
            (7, 8, (2, 3, 5), F64, I64, False, 2)]


@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_embedding(device, case, monkeypatch):
    v, d, shape, dtype, idtype, deterministic, pad = case
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(0)
    weight = rounded(rng, (v, d), dtype)
    ids = rng.integers(0, v, size=shape).astype(idtype)
    out = emb.embedding_forward(dev.asarray(weight), dev.asarray(ids))
    assert out.dtype == dtype and out.shape == shape + (d,)
    np.testing.assert_array_equal(dev.numpy(out), weight[ids])  # a gather: exact

    grad = rounded(rng, shape + (d,), dtype, -1, 1)
    gw = emb.embedding_backward(dev.asarray(grad), dev.asarray(ids), v, padding_idx=pad, deterministic=deterministic)
    tw = torch.from_numpy(weight.astype(np.float64)).requires_grad_(True)
    torch.nn.functional.embedding(torch.from_numpy(ids.astype(np.int64)), tw, padding_idx=pad).backward(
        torch.from_numpy(grad.astype(np.float64)))
    assert gw.dtype == dtype and gw.shape == (v, d)
    rtol, atol = tolerance(dtype)
    repeats = np.bincount(ids.reshape(-1), minlength=v).max()
    np.testing.assert_allclose(dev.numpy(gw).astype(np.float64), tw.grad.numpy(), rtol=4 * rtol,
                               atol=4 * max(atol, rtol) * np.sqrt(repeats))
    if pad is not None:
        assert not dev.numpy(gw)[pad].astype(np.float64).any()


@pytest.mark.parametrize("device,case", on_devices([(5000, 77), (2**16 + 3, 1000)], [(1500, 40), (700, 3)]))
def test_sorted_keys_are_sorted(device, case, monkeypatch):
    n, v = case
    dev = kernel_device(device, monkeypatch)
    ids = np.random.default_rng(1).integers(-2, v + 2, size=n).astype(np.int64)  # a few out of range
    keys, padded = emb.sorted_keys(dev.asarray(ids), v)
    got = dev.numpy(keys)
    valid = np.where((ids >= 0) & (ids < v), ids, -1)
    want = np.sort((valid.astype(np.uint64) << np.uint64(32) | np.arange(n, dtype=np.uint64)).view(np.int64))
    assert padded >= max(n, 1024) and padded & (padded - 1) == 0
    np.testing.assert_array_equal(got[:n], want)
    assert (got[n:] == np.iinfo(np.int64).max).all()


@pytest.mark.parametrize("device,case", on_devices(["repeat"], ["repeat"]))
def test_deterministic_backward_repeats_bit_for_bit(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(2)
    ids = dev.asarray(rng.integers(0, 4, size=1500).astype(np.int64))  # long runs of equal ids
    grad = dev.asarray(rounded(rng, (1500, 24), F32))
    first = dev.numpy(emb.embedding_backward(grad, ids, 4))
    assert np.array_equal(first, dev.numpy(emb.embedding_backward(grad, ids, 4)))
    # the sum in position order, exactly as a sequential float32 loop adds it
    g, i = dev.numpy(grad), dev.numpy(ids)
    want = np.zeros((4, 24), np.float32)
    for row in range(1500):
        want[i[row]] += g[row]
    np.testing.assert_array_equal(first, want)


def test_bad_inputs_name_the_problem():
    w = np.zeros((4, 3), np.float32)
    with pytest.raises(TypeError, match="ids must be int64 or int32"):
        emb.embedding_forward(w, np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="weight must be 2-d"):
        emb.embedding_forward(np.zeros(4, np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="does not match ids"):
        emb.embedding_backward(np.zeros((2, 3), np.float32), np.zeros(3, np.int64), 4)
    with pytest.raises(ValueError, match="padding_idx 4 must be within"):
        emb.embedding_backward(np.zeros((2, 3), np.float32), np.zeros(2, np.int64), 4, padding_idx=4)
