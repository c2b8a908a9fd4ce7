"""kernels/sort.cu through its launcher (backends/cuda_kernels/sort.py) against NumPy's stable argsort: every
storage type, ascending and descending, ties, NaN, lengths that are and are not powers of two, any axis. GPU cases
are marked `cuda`; the same cases run on the CPU kernel emulator everywhere."""

import ml_dtypes
import numpy as np
import pytest
from cuda_util import kernel_device, on_devices

from zigtensor.backends.cuda_kernels import sort as sk


def reference(x: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    """NumPy's stable order; descending: larger first, equal keys in their order, NaN first (PyTorch's)."""
    if not descending:
        return np.argsort(x, axis=axis, kind="stable")
    flipped = np.flip(x, axis)
    n = x.shape[axis]
    return n - 1 - np.flip(np.argsort(flipped, axis=axis, kind="stable"), axis)


CASES = [
    ("float32", (5, 37), -1, False), ("float32", (5, 37), -1, True),
    ("float32", (3, 64), 1, True),  # a power of two
    ("float32", (1,), 0, False), ("float32", (4, 1), 1, True),
    ("float16", (6, 19), 0, False), ("bfloat16", (2, 33), -1, True),
    ("float64", (2, 3, 9), 1, True), ("int64", (4, 50), -1, False), ("int64", (4, 50), -1, True),
    ("bool", (3, 17), -1, True), ("int32", (0, 5), -1, False),
]


def _input(dtype: str, shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("int"):
        return rng.integers(-5, 6, size=shape).astype(dtype)  # many ties
    dt = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    x = np.round(rng.uniform(-4, 4, size=shape) * 2) / 2  # halves: ties
    if x.size > 4:
        x.reshape(-1)[[1, 3]] = np.nan
    return x.astype(dt)


@pytest.mark.parametrize("device, case", on_devices(CASES, emulated=CASES))
def test_argsort_matches_numpys_stable_order(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    dtype, shape, axis, descending = case
    x = _input(dtype, shape)
    got = dev.numpy(sk.argsort(dev.asarray(x), axis, descending))
    want = reference(x.astype(np.float64) if dtype == "bfloat16" else x, axis, descending)
    assert got.dtype == np.int64 and got.shape == x.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("device, case", on_devices([0], emulated=[0]))
def test_argsort_of_a_scalar(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    assert dev.numpy(sk.argsort(dev.asarray(np.float32(3.0)))).tolist() == 0
