"""`zt bench ops`: every kernel family timed with CUDA events beside its reference (CuPy, cuBLAS, or PyTorch on
the same GPU), as a percentage of peaks measured at the start of the run.

Families register their cases in `zigtensor/bench/ops_<family>.py`:

    from .ops import Row, register

    @register("gemm")
    def bench_gemm(ctx) -> list[Row]:
        t, t_ref = ctx.compare(lambda: ours(a, b), lambda: ctx.cp.matmul(a, b))
        return [Row("gemm", "f32 4096^3", t, flops=2 * 4096**3, peak="sgemm", ref_time_s=t_ref,
                    reference="cuBLAS (cupy.matmul)")]

Conventions: `bytes` counts what a kernel must read plus write (so a copy of N bytes moves 2N), the same
count the copy peak uses; `flops` counts a multiply-add as 2. Timing: `warmup` untimed calls, then the
median of `repeats` calls, each between two CUDA events on the current stream.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

REGISTRY: dict[str, list[Callable]] = {}
PEAK_UNITS = {"copy": "GB/s", "sgemm": "TFLOP/s", "bf16_gemm": "TFLOP/s"}


def register(family: str):
    """Decorator: `fn(ctx) -> list[Row]` becomes one of `family`'s benchmarks."""
    if not isinstance(family, str) or not family:
        raise ValueError(f"register: family must be a non-empty string, got {family!r}")

    def add(fn: Callable) -> Callable:
        REGISTRY.setdefault(family, []).append(fn)
        return fn

    return add


def discover() -> list[str]:
    """Import every zigtensor/bench/ops_*.py (each registers its family); the families known afterwards."""
    from zigtensor import bench

    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("ops_"):
            importlib.import_module(f"zigtensor.bench.{info.name}")
    return sorted(REGISTRY)


@dataclass
class Row:
    family: str
    case: str
    time_s: float  # median seconds per call, ours
    bytes: int = 0  # bytes read + written (memory-bound cases)
    flops: float = 0.0  # floating-point operations (compute-bound cases)
    peak: str = "copy"  # which measured peak the percentage is of: copy, sgemm, bf16_gemm
    ref_time_s: float | None = None
    reference: str = ""

    def __post_init__(self):
        if self.peak not in PEAK_UNITS:
            raise ValueError(f"Row {self.family}/{self.case}: peak must be one of {sorted(PEAK_UNITS)}, "
                             f"got {self.peak!r}")

    @property
    def throughput(self) -> float:
        """GB/s for the copy peak, TFLOP/s for the GEMM peaks."""
        if self.peak == "copy":
            return self.bytes / self.time_s / 1e9
        return self.flops / self.time_s / 1e12

    @property
    def ratio(self) -> float | None:
        """Reference time / ours (>1: ours is faster)."""
        return None if self.ref_time_s is None else self.ref_time_s / self.time_s

    def percent_of_peak(self, peaks: Peaks) -> float | None:
        peak = getattr(peaks, self.peak)
        return None if not peak else 100.0 * self.throughput / peak


@dataclass
class Peaks:
    device: str
    copy: float  # device-to-device copy, GB/s (read + write)
    sgemm: float | None  # cuBLAS SGEMM at 4096^3, TFLOP/s
    bf16_gemm: float | None  # cuBLAS BF16 GEMM (fp32 accumulation) at 4096^3, TFLOP/s
    notes: list[str] = field(default_factory=list)


class BenchContext:
    """What a family's benchmark gets: `cp` (CuPy), `device` (zt.cuda.DeviceProperties), `peaks`, `quick`,
    and CUDA-event timers."""

    def __init__(self, quick: bool = False):
        from zigtensor import cuda

        self.cp = cuda.require_cupy()
        self.device = cuda.get_device_properties()
        self.quick = quick
        self.warmup, self.repeats = (2, 5) if quick else (5, 30)
        self.peaks: Peaks | None = None

    def _sample(self, fn: Callable) -> float:
        cp = self.cp
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return cp.cuda.get_elapsed_time(start, end) / 1e3

    def time(self, fn: Callable, warmup: int | None = None, repeats: int | None = None) -> float:
        """Median seconds per call of fn on the current stream."""
        for _ in range(self.warmup if warmup is None else warmup):
            fn()
        self.cp.cuda.get_current_stream().synchronize()
        return statistics.median(self._sample(fn) for _ in range(self.repeats if repeats is None else repeats))

    def compare(self, fn: Callable, ref: Callable | None) -> tuple[float, float | None]:
        """Median seconds of ours and of the reference (None: no reference), sampled in turns so clock and
        thermal drift hit both alike."""
        for _ in range(self.warmup):
            fn()
            if ref is not None:
                ref()
        self.cp.cuda.get_current_stream().synchronize()
        ours, theirs = [], []
        for _ in range(self.repeats):
            ours.append(self._sample(fn))
            if ref is not None:
                theirs.append(self._sample(ref))
        return statistics.median(ours), (statistics.median(theirs) if theirs else None)


def _gemm_peak(ctx: BenchContext, dtype, n: int = 4096) -> float:
    cp = ctx.cp
    a = cp.random.random((n, n), dtype=cp.float32).astype(dtype)
    b = cp.random.random((n, n), dtype=cp.float32).astype(dtype)
    c = cp.empty((n, n), dtype=dtype)
    return 2.0 * n**3 / ctx.time(lambda: cp.matmul(a, b, out=c)) / 1e12


def _torch_bf16_gemm_peak(ctx: BenchContext, n: int = 4096) -> float:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    return 2.0 * n**3 / ctx.time(lambda: torch.matmul(a, b)) / 1e12


def _copy_seconds(ctx: BenchContext, nbytes: int) -> float:
    src = ctx.cp.ones(nbytes, dtype=ctx.cp.uint8)
    dst = ctx.cp.empty_like(src)
    return ctx.time(lambda: dst.data.copy_from_device_async(src.data, nbytes))


def measure_peaks(ctx: BenchContext) -> Peaks:
    """Device-to-device copy GB/s (cudaMemcpy of 512 MiB, 256 MiB with quick) and cuBLAS GEMM TFLOP/s at
    4096^3 in float32 (true SGEMM: CuPy leaves TF32 off unless CUPY_TF32=1) and bfloat16."""
    import ml_dtypes

    nbytes = (256 if ctx.quick else 512) * 2**20
    copy_s = _copy_seconds(ctx, nbytes)
    notes = []
    sgemm = _gemm_peak(ctx, ctx.cp.float32)
    try:
        bf16 = _gemm_peak(ctx, ml_dtypes.bfloat16)
        ref = "cupy.matmul"
    except Exception as e:  # noqa: BLE001  (CuPy builds without bfloat16 matmul: PyTorch, if present)
        notes.append(f"cupy bfloat16 matmul failed ({type(e).__name__}: {e}); bf16 peak from torch")
        try:
            bf16, ref = _torch_bf16_gemm_peak(ctx), "torch.matmul"
        except Exception as e2:  # noqa: BLE001
            bf16, ref = None, None
            notes.append(f"no bf16 GEMM peak: {type(e2).__name__}: {e2}")
    if ref:
        notes.append(f"bf16 GEMM peak measured with {ref}")
    return Peaks(ctx.device.name, 2 * nbytes / copy_s / 1e9, sgemm, bf16, notes)


def run(families: list[str] | None = None, quick: bool = False,
        progress: Callable[[str], None] | None = None) -> tuple[Peaks, list[Row]]:
    """Measure the peaks, then run the registered benchmarks of `families` (all by default)."""
    known = discover()
    wanted = families if families else known
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"unknown kernel families {unknown}; registered: {known}")
    ctx = BenchContext(quick=quick)
    ctx.peaks = measure_peaks(ctx)
    rows: list[Row] = []
    for family in wanted:
        for fn in REGISTRY[family]:
            if progress:
                progress(f"{family}: {fn.__name__}")
            rows.extend(fn(ctx))
            ctx.cp.get_default_memory_pool().free_all_blocks()
    return ctx.peaks, rows


def json_lines(peaks: Peaks, rows: list[Row]) -> list[str]:
    """One JSON object for the peaks, then one per row with its derived figures."""
    lines = [json.dumps({"peaks": asdict(peaks)})]
    for r in rows:
        d = asdict(r)
        d.update(unit="GB/s" if r.peak == "copy" else "TFLOP/s", throughput=r.throughput,
                 percent_of_peak=r.percent_of_peak(peaks), ratio=r.ratio)
        lines.append(json.dumps(d))
    return lines
