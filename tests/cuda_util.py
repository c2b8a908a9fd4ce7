"""Running the CUDA launcher tests (tests/test_cuda_*.py) on the GPU, and a subset on the CPU kernel emulator.

    @pytest.mark.parametrize("device,case", on_devices(CASES, emulated=CASES[:2]))
    def test_softmax(device, case, monkeypatch):
        dev = kernel_device(device, monkeypatch)      # skips when that device cannot run here
        x = dev.asarray(np_x)                           # cupy array, or numpy under the emulator
        ...dev.numpy(result)...

"cuda" cases carry the `cuda` mark and skip without CuPy or a GPU; "emulator" cases run the same launchers
and .cu files through tests/kernel_emulator.py (g++ and the CUDA headers needed, no GPU), so the kernels'
index math is checked on every machine that can build them.
"""

from __future__ import annotations

import kernel_emulator
import ml_dtypes
import numpy as np
import pytest

BF16 = np.dtype(ml_dtypes.bfloat16)
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), BF16, np.dtype(np.float64))

# Tolerances of a result computed in float32 (float64 for float64) and rounded once to its dtype, against a
# float64 reference on the same (already rounded) inputs.
TOLERANCE = {np.dtype(np.float32): (1e-5, 1e-6), np.dtype(np.float64): (1e-10, 1e-12),
             np.dtype(np.float16): (2e-3, 1e-4), BF16: (1.6e-2, 1e-3)}


def tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol) for results of this dtype."""
    return TOLERANCE[np.dtype(dtype)]


def _case_id(case) -> str:
    if isinstance(case, tuple):
        return "-".join(_case_id(c) for c in case)
    if isinstance(case, np.dtype) or (isinstance(case, type) and issubclass(case, np.generic)):
        return np.dtype(case).name
    return str(case).replace(" ", "")


_why: dict = {}


def why_no_gpu() -> str:
    """Why the GPU cases cannot run here ("" when they can), found once."""
    if "gpu" not in _why:
        try:
            from zigtensor import cuda

            cuda.require_cupy()
            _why["gpu"] = ""
        except (ImportError, RuntimeError) as e:
            _why["gpu"] = str(e).splitlines()[0]
    return _why["gpu"]


def on_devices(cases, emulated=()):
    """pytest params (device, case): every case on the GPU; the `emulated` ones also on the CPU emulator.

    NOTE: cases that cannot run here carry a static skip mark (a skip raised in each test costs a traceback
    apiece, and there are hundreds of GPU cases)."""
    gpu_marks = [pytest.mark.cuda] + ([pytest.mark.skip(reason=why_no_gpu())] if why_no_gpu() else [])
    why_emu = kernel_emulator.available()
    emu_marks = [pytest.mark.skip(reason=f"the kernel emulator cannot run here: {why_emu}")] if why_emu else []
    return ([pytest.param("cuda", c, marks=gpu_marks, id=f"cuda-{_case_id(c)}") for c in cases]
            + [pytest.param("emulator", c, marks=emu_marks, id=f"emulator-{_case_id(c)}") for c in emulated])


class KernelDevice:
    """Where a test's arrays live: CuPy on the GPU, or NumPy for the kernel emulator."""

    def __init__(self, name: str, xp):
        self.name, self.xp = name, xp
        self.emulated = name == "emulator"

    def asarray(self, a):
        """A device copy of a (a fresh NumPy copy under the emulator, as a transfer would give)."""
        return np.array(a, order="C", copy=True) if self.emulated else self.xp.asarray(np.ascontiguousarray(a))

    def numpy(self, a) -> np.ndarray:
        return np.asarray(a) if self.emulated else self.xp.asnumpy(a)

    def synchronize(self) -> None:
        if not self.emulated:
            self.xp.cuda.Device().synchronize()


def kernel_device(name: str, monkeypatch) -> KernelDevice:
    """The device for a test case, or a skip saying why it cannot run here."""
    from zigtensor.backends.cuda_kernels import _launch

    if name == "cuda":
        if why_no_gpu():
            pytest.skip(why_no_gpu())
        from zigtensor import cuda

        monkeypatch.setattr(_launch, "loader", None)
        return KernelDevice("cuda", cuda.require_cupy())
    why = kernel_emulator.available()
    if why:
        pytest.skip(f"the kernel emulator cannot run here: {why}")
    monkeypatch.setattr(_launch, "loader", kernel_emulator.load_kernel)
    return KernelDevice("emulator", np)


def rounded(rng, shape, dtype, low=-4.0, high=4.0) -> np.ndarray:
    """Uniform values already rounded to dtype (so the float64 reference sees exactly the kernel's inputs)."""
    return rng.uniform(low, high, size=shape).astype(dtype)


def assert_close(name: str, got: np.ndarray, want: np.ndarray, dtype, scale: float = 1.0) -> None:
    """got (any float dtype) against a float64 reference with the dtype's tolerance (times `scale`)."""
    rtol, atol = tolerance(dtype)
    got64, want64 = np.asarray(got).astype(np.float64), np.asarray(want).astype(np.float64)
    assert got64.shape == want64.shape, f"{name}: shape {got64.shape} != {want64.shape}"
    np.testing.assert_allclose(got64, want64, rtol=rtol * scale, atol=atol * scale, err_msg=name)
