"""kernels/random.cu (Philox4x32-10) through its launcher (backends/cuda_kernels/random.py).

A NumPy Philox4x32-10 written here from the published algorithm is checked against Random123's known-answer
vectors on the CPU (no GPU needed); the kernel's raw output, uniform, normal and dropout are then checked
against that reference bit for bit (or to float rounding), on the GPU and on the CPU kernel emulator.
"""

from __future__ import annotations

import numpy as np
import pytest
from cuda_util import BF16, kernel_device, on_devices

from zigtensor.backends.cuda_kernels import _launch
from zigtensor.backends.cuda_kernels import random as zrandom

F32, F16, F64 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)
M0, M1 = 0xD2511F53, 0xCD9E8D57  # Salmon et al. 2011, table 2; the same in Random123, curand and PyTorch
W0, W1 = 0x9E3779B9, 0xBB67AE85  # the Weyl key increments (golden ratio, sqrt(3) - 1)
MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counters: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Reference Philox4x32-10: counters (n, 4), keys (n, 2) uint32 -> (n, 4) uint32."""
    c = [counters[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = keys[:, 0].astype(np.uint64), keys[:, 1].astype(np.uint64)
    for r in range(10):
        if r:
            k0, k1 = (k0 + np.uint64(W0)) & MASK32, (k1 + np.uint64(W1)) & MASK32
        p0, p1 = np.uint64(M0) * c[0], np.uint64(M1) * c[2]  # 32 x 32 bits: exact in uint64
        hi0, lo0, hi1, lo1 = p0 >> np.uint64(32), p0 & MASK32, p1 >> np.uint64(32), p1 & MASK32
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return np.stack(c, axis=1).astype(np.uint32)


# Known answers, format "counter[4] key[2] -> output[4]" in hex. The first three are the "philox4x32 10"
# lines of Random123's tests/kat_vectors (https://github.com/DEShawResearch/random123); the others come from
# the examples/kat_vectors file distributed with Random123 (as stored in girving/random123-manual at commit
# 61e8479252c42f0f8c0490dec55237d7c01bf509), which exercise each counter and key word on its own.
KAT = """
00000000 00000000 00000000 00000000 00000000 00000000   6627e8d5 e169c58d bc57ac4c 9b00dbd8
ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   408f276d 41c83b0e a20bc7c6 6d5451fd
243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   d16cfe09 94fdcceb 5001e420 24126ea1
00000001 00000000 00000000 00000000 00000001 00000000   ac08141b dfc5ccbe 79c07a47 a7f66093
00000000 00000001 00000000 00000000 00000001 00000000   833ff8dc 225c963c 232b88b3 0b334b07
00000000 00000000 00000001 00000000 00000001 00000000   07071c12 428264b6 3909104b 6da2bda2
00000000 00000000 00000000 00000001 00000001 00000000   127bee41 1e047488 48842b20 0a393496
00000000 00000000 80000000 00000000 00000000 00000001   d9da65af eced57ba c34d2661 91fe931f
243f6a88 85a308d3 13198a2e 03707344 00000000 ffffffff   08f7720c 845ee9e0 502ccd3d a9a00e27
452821e6 38d01377 be5466cf 34e90c6c 00000000 80000000   94ca5566 14924b2f 28214292 59faeaee
"""


def _kat() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [[int(w, 16) for w in line.split()] for line in KAT.strip().splitlines()]
    a = np.array(rows, dtype=np.uint32)
    return a[:, :4], a[:, 4:6], a[:, 6:]


def test_reference_philox_matches_random123_known_answers():
    counters, keys, want = _kat()
    np.testing.assert_array_equal(philox4x32_10(counters, keys), want)


# ------------------------------------------------------------------------------------------ kernels
def _words(n_groups: int, seed: int, offset: int) -> np.ndarray:
    """The reference's four words for groups 0..n_groups-1 of a launch, as the kernels number them."""
    g = np.arange(n_groups, dtype=np.uint64)
    counters = np.stack([g & MASK32, g >> np.uint64(32), np.full_like(g, offset & 0xFFFFFFFF),
                         np.full_like(g, offset >> 32)], axis=1).astype(np.uint32)
    keys = np.tile(np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32), (n_groups, 1))
    return philox4x32_10(counters, keys)


def _unit(words: np.ndarray, bits: int) -> np.ndarray:
    return (words >> np.uint32(32 - bits)).astype(np.float64) * 2.0**-bits


SEED, OFFSET = 0x0123456789ABCDEF, 0xFEDCBA9876543210  # both words of both exercised


@pytest.mark.parametrize("device,case", on_devices(["kat"], ["kat"]))
def test_kernel_matches_known_answers(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    counters, keys, want = _kat()
    rng = np.random.default_rng(0)
    more_c = rng.integers(0, 2**32, size=(300, 4), dtype=np.uint64).astype(np.uint32)
    more_k = rng.integers(0, 2**32, size=(300, 2), dtype=np.uint64).astype(np.uint32)
    counters, keys = np.concatenate([counters, more_c]), np.concatenate([keys, more_k])
    got = dev.numpy(zrandom.philox4x32_10(dev.asarray(counters), dev.asarray(keys)))
    np.testing.assert_array_equal(got[:len(want)], want)
    np.testing.assert_array_equal(got, philox4x32_10(counters, keys))


UNIFORM_CASES = [(F32, 1000), (F16, 999), (BF16, 1001), (F64, 1003), (F32, 3), (F32, 1 << 20)]


@pytest.mark.parametrize("device,case", on_devices(UNIFORM_CASES, UNIFORM_CASES[:5]))
def test_uniform_is_the_reference_bit_for_bit(device, case, monkeypatch):
    dtype, n = case
    dev = kernel_device(device, monkeypatch)
    got = dev.numpy(zrandom.uniform((n,), dtype, SEED, OFFSET, xp=dev.xp))
    if dtype == F64:
        w = _words(-(-n // 2), SEED, OFFSET).astype(np.uint64).reshape(-1, 2)
        want = ((w[:, 0] << np.uint64(21)) | (w[:, 1] >> np.uint64(11))).astype(np.float64) * 2.0**-53
    else:
        bits = {F32: 24, F16: 11, BF16: 8}[dtype]
        want = _unit(_words(-(-n // 4), SEED, OFFSET).reshape(-1), bits)
    want = want[:n].astype(dtype)
    assert got.dtype == dtype and got.shape == (n,)
    np.testing.assert_array_equal(got, want)
    assert got.min() >= 0 and got.max() < 1
    shifted = dev.numpy(zrandom.uniform((n,), dtype, SEED, OFFSET, low=-2.0, high=3.0, xp=dev.xp))
    np.testing.assert_allclose(shifted.astype(np.float64), -2.0 + 5.0 * want.astype(np.float64),
                               rtol=0, atol=5.0 * 2.0**-{F32: 22, F16: 9, BF16: 6, F64: 50}[dtype])


NORMAL_CASES = [(F32, 1001), (F16, 998), (BF16, 37), (F64, 1001), (F32, 1 << 20)]


@pytest.mark.parametrize("device,case", on_devices(NORMAL_CASES, NORMAL_CASES[:4]))
def test_normal_is_box_muller_of_the_reference(device, case, monkeypatch):
    dtype, n = case
    dev = kernel_device(device, monkeypatch)
    got = dev.numpy(zrandom.normal((n,), dtype, SEED, OFFSET, mean=1.5, std=2.0, xp=dev.xp)).astype(np.float64)
    if dtype == F64:
        w = _words(-(-n // 2), SEED, OFFSET).astype(np.uint64)
        u = lambda a, b: ((a << np.uint64(21)) | (b >> np.uint64(11))).astype(np.float64) * 2.0**-53  # noqa: E731
        u1, u2 = 1.0 - u(w[:, 0], w[:, 1]), u(w[:, 2], w[:, 3])
        r = np.sqrt(-2 * np.log(u1))
        z = np.stack([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)], axis=1).reshape(-1)
        tol = 1e-12
    else:
        w = _words(-(-n // 4), SEED, OFFSET)
        u1 = ((w[:, 0::2] >> np.uint32(8)).astype(np.float64) + 1) * 2.0**-24
        u2 = _unit(w[:, 1::2], 24)
        r = np.sqrt(-2 * np.log(u1))
        z = np.stack([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)], axis=2).reshape(-1)
        tol = {F32: 2e-5, F16: 4e-3, BF16: 3e-2}[dtype]
    want = 1.5 + 2.0 * z[:n]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    if n >= 1 << 20:  # the moments of a million samples
        assert abs(got.mean() - 1.5) < 0.01 and abs(got.std() - 2.0) < 0.01


DROPOUT_CASES = [(F32, 1000, 0.1), (F16, 1003, 0.5), (BF16, 17, 0.9), (F64, 1001, 0.25), (F32, 1 << 20, 0.3)]


@pytest.mark.parametrize("device,case", on_devices(DROPOUT_CASES, DROPOUT_CASES[:4]))
def test_dropout_mask_is_the_reference(device, case, monkeypatch):
    dtype, n, p = case
    dev = kernel_device(device, monkeypatch)
    x = np.random.default_rng(1).uniform(-2, 2, n).astype(dtype)
    y, mask = zrandom.dropout(dev.asarray(x), p, SEED, OFFSET)
    y, mask = dev.numpy(y), dev.numpy(mask)
    keep = _unit(_words(-(-n // 4), SEED, OFFSET).reshape(-1), 24)[:n] >= np.float32(p)
    np.testing.assert_array_equal(mask, keep)
    scale = 1.0 / (1.0 - p)
    want = (x.astype(np.float64) * np.where(keep, scale, 0.0)).astype(dtype)
    np.testing.assert_allclose(y.astype(np.float64), want.astype(np.float64), rtol=1e-2 if dtype == BF16 else 1e-3)
    dy = np.random.default_rng(2).uniform(-1, 1, n).astype(dtype)
    dx = dev.numpy(zrandom.dropout_backward(dev.asarray(dy), dev.asarray(mask), p))
    want_dx = (dy.astype(np.float64) * np.where(keep, scale, 0.0)).astype(dtype)
    np.testing.assert_allclose(dx.astype(np.float64), want_dx.astype(np.float64), rtol=1e-2 if dtype == BF16 else 1e-3)
    if n >= 1 << 20:
        assert abs(mask.mean() - (1 - p)) < 0.005


@pytest.mark.parametrize("device,case", on_devices(["grid"], ["grid"]))
def test_values_do_not_depend_on_the_launch(device, case, monkeypatch):
    """Any grid and block size, any offset into a launch: the same numbers; another offset: other numbers."""
    dev = kernel_device(device, monkeypatch)
    n = 4099
    k = _launch.kernel("random", "random_uniform", {"T": "float"})
    outs = []
    for grid, block in ((1, 32), (3, 64), (40, 128)):
        out = dev.xp.empty(n, dtype=np.float32)
        k(grid, block, (out, n, 0.0, 1.0, 7, 11))
        outs.append(dev.numpy(out))
    assert all(np.array_equal(outs[0], o) for o in outs[1:])
    again = dev.numpy(zrandom.uniform((n,), F32, 7, 11, xp=dev.xp))
    assert np.array_equal(outs[0], again)
    other = dev.numpy(zrandom.uniform((n,), F32, 7, 12, xp=dev.xp))
    assert np.mean(other == again) < 0.01


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64\)"):
        zrandom.uniform((3,), F32, -1, 0, xp=np)
    with pytest.raises(ValueError, match="expected finite low <= high"):
        zrandom.uniform((3,), F32, 0, 0, low=2.0, high=1.0, xp=np)
    with pytest.raises(TypeError, match="dtype must be float16"):
        zrandom.normal((3,), np.int32, 0, 0, xp=np)
    with pytest.raises(ValueError, match="probability has to be between 0 and 1"):
        zrandom.dropout(np.zeros(3, np.float32), 1.5, 0, 0)
    with pytest.raises(ValueError, match="mask must be a bool array"):
        zrandom.dropout_backward(np.zeros(3, np.float32), np.zeros(3, np.uint8), 0.5)
