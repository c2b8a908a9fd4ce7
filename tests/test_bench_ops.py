"""`zt bench ops` without a GPU: the registry, the derived figures, JSON lines, and the one-line refusal."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import zigtensor as zt
from zigtensor.bench import ops


def test_discover_imports_every_family_module():
    families = ops.discover()
    assert "copy" in families and all(ops.REGISTRY[f] for f in families)


def test_rows_derive_throughput_percent_and_ratio():
    peaks = ops.Peaks("H100", copy=3000.0, sgemm=50.0, bf16_gemm=None)
    copy = ops.Row("copy", "f32", time_s=2e-3, bytes=4 * 10**9, ref_time_s=3e-3, reference="cupy.copyto")
    assert copy.throughput == pytest.approx(2000.0) and copy.percent_of_peak(peaks) == pytest.approx(200 / 3)
    assert copy.ratio == pytest.approx(1.5)
    gemm = ops.Row("gemm", "f32 4096^3", time_s=1e-3, flops=2 * 4096**3, peak="sgemm")
    assert gemm.throughput == pytest.approx(2 * 4096**3 / 1e-3 / 1e12) and gemm.ratio is None
    assert ops.Row("gemm", "bf16", time_s=1.0, flops=1.0, peak="bf16_gemm").percent_of_peak(peaks) is None
    lines = [json.loads(s) for s in ops.json_lines(peaks, [copy, gemm])]
    assert lines[0]["peaks"]["device"] == "H100"
    assert lines[1]["unit"] == "GB/s" and lines[1]["ratio"] == pytest.approx(1.5)
    assert lines[2]["unit"] == "TFLOP/s" and lines[2]["percent_of_peak"] == pytest.approx(gemm.throughput / 50 * 100)
    with pytest.raises(ValueError, match="peak must be one of"):
        ops.Row("x", "y", 1.0, peak="fp8")
    with pytest.raises(ValueError, match="family must be a non-empty string"):
        ops.register("")


def test_unknown_family_is_refused_before_any_gpu_work():
    with pytest.raises(ValueError, match=r"unknown kernel families \['nope'\]; registered: \[.*'copy'"):
        ops.run(["nope"])


def test_cli_without_a_gpu_is_one_line():
    if zt.cuda.is_available():
        pytest.skip("a CUDA device is present")
    r = subprocess.run([sys.executable, "-m", "zigtensor_cli", "bench", "ops", "--quick"], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert r.stderr.startswith("error: RuntimeError: CUDA is not available: ") and r.stderr.count("\n") == 1
