"""The bench cases of the kernel families (zigtensor/bench/ops_{softmax,norm,cross_entropy,random,optim,embedding,
pool}.py with two-row inputs, ops_{gemm,attention,conv,quant}.py with tiny shapes) run end to end on the CPU kernel
emulator (ctx.smoke), references included (NumPy, CPU PyTorch), so a GPU session finds them working; the timings
here mean nothing. Each compute case checks ours against its reference: a wrong result shows in the case label."""

from __future__ import annotations

import importlib.util
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from cuda_util import kernel_device

from zigtensor.bench import ops

FAMILIES = ["softmax", "norm", "cross_entropy", "random", "optim", "embedding", "pool", "gemm", "attention", "conv",
            "quant"]
# families timed against a reference in every smoke case: NumPy's matmul always, PyTorch's where it is installed
REFERENCED = {"gemm", "quant"} | ({"attention", "conv"} if importlib.util.find_spec("torch") else set())


class SmokeContext:
    """BenchContext's interface over NumPy: every function runs once, every time is 1 second."""

    smoke = True
    quick = True

    def __init__(self):
        self.cp = np
        self.device = SimpleNamespace(name="kernel emulator", multi_processor_count=4)

    def time(self, fn, warmup=None, repeats=None) -> float:
        fn()
        return 1.0

    def compare(self, fn, ref):
        fn()
        if ref is not None:
            ref()
        return 1.0, (None if ref is None else 1.0)


@pytest.mark.parametrize("family", FAMILIES)
def test_bench_family_runs(family, monkeypatch):
    kernel_device("emulator", monkeypatch)
    assert family in ops.discover()
    rows = [row for fn in ops.REGISTRY[family] for row in fn(SmokeContext())]
    assert rows, f"{family}: no bench rows"
    for row in rows:
        assert row.family == family and row.case
        assert row.time_s == 1.0 and (row.bytes > 0 or row.flops > 0) and math.isfinite(row.throughput)
        assert "MISMATCH" not in row.case, row.case
        if family in REFERENCED:
            assert row.ref_time_s == 1.0 and row.reference, f"{row.case}: no reference ran"


def test_attention_bench_covers_the_tensor_core_kernel_when_its_file_exists(monkeypatch):
    from zigtensor.bench import ops_attention

    kernel_device("emulator", monkeypatch)
    ops.discover()
    kinds = {row.case.split()[1] for row in ops_attention.bench_attention(SmokeContext())}
    assert kinds == ({"simt", "tc"} if ops_attention.tc_kernel_present() else {"simt"})


def test_attention_bench_skips_the_tensor_core_cases_without_their_file(monkeypatch):
    from zigtensor.bench import ops_attention

    kernel_device("emulator", monkeypatch)
    monkeypatch.setattr(ops_attention, "tc_kernel_present", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = ops_attention.bench_attention(SmokeContext())
    assert rows and all(" simt " in row.case for row in rows)
    assert any("flash_attention.cu is missing" in str(w.message) for w in caught)


def test_mismatch_names_a_wrong_result():
    from zigtensor.bench.kernel_refs import mismatch

    ctx = SmokeContext()
    ref = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    assert mismatch(ctx, ref + 1e-5, ref, 1e-3) == ""
    assert "MISMATCH" in mismatch(ctx, ref * 1.1, ref, 1e-3)
    assert "MISMATCH" in mismatch(ctx, ref * np.nan, ref, 1e-3)
    assert "shape" in mismatch(ctx, ref.T, ref, 1e-3)


def test_repeated_rejects_a_bad_call_count():
    from zigtensor.bench.graphs import repeated

    with pytest.raises(ValueError, match="calls"):
        repeated(SmokeContext(), lambda: None, 0)


class _FakeStream:
    """cupy.cuda.Stream's capture interface over NumPy: a capture keeps nothing and its graph's launch does
    nothing, or begin_capture refuses (the eager path)."""

    def __init__(self, refuse: bool = False):
        self.refuse = refuse

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self) -> None:
        pass

    def begin_capture(self) -> None:
        if self.refuse:
            raise RuntimeError("capture refused")

    def end_capture(self):
        return SimpleNamespace(launch=lambda: None)


class FakeCupy:
    """NumPy dressed as CuPy (random Generator, from_dlpack, memory pool, streams, graphs), so the bench code's
    GPU-only branches (device-drawn inputs, the vendor GEMM probe, graph capture and its eager fallback) run on
    the emulator."""

    __name__ = "fake_cupy"

    def __init__(self, refuse_capture: bool = False):
        self.cuda = SimpleNamespace(Stream=lambda non_blocking=False: _FakeStream(refuse_capture),
                                    get_current_stream=lambda: _FakeStream())

    def get_default_memory_pool(self):
        return SimpleNamespace(free_all_blocks=lambda: None)

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.mark.parametrize("family,refuse_capture", [("gemm", False), ("attention", False), ("conv", False),
                                                   ("quant", False), ("quant", True)])
def test_bench_family_gpu_branches(family, refuse_capture, monkeypatch):
    from zigtensor.bench import ops_quant

    kernel_device("emulator", monkeypatch)
    ops.discover()
    ctx = SmokeContext()
    ctx.cp = FakeCupy(refuse_capture)
    rows = [row for fn in ops.REGISTRY[family] for row in fn(ctx)]
    assert rows
    for row in rows:
        assert "MISMATCH" not in row.case, row.case
        if family in REFERENCED:
            assert row.reference and row.ref_time_s is not None, row.case
        if family == "quant":
            assert ("[eager (RuntimeError)]" if refuse_capture else "[graph]") in row.case, row.case
            assert row.time_s == pytest.approx(1.0 / ops_quant.CALLS)  # one replay of CALLS calls, per call
