"""Timing helpers: medians over repeated runs, interleaved between contenders so drift hits both alike."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass


@dataclass
class Result:
    name: str
    zt_s: float  # median seconds per call, zigtensor
    ref_s: float | None  # the same for the reference (None when it is not installed)
    reference: str
    unit: str = "s"

    @property
    def ratio(self) -> float | None:
        """How many times faster zigtensor is than the reference (>1: faster)."""
        return None if self.ref_s is None else self.ref_s / self.zt_s


def median_interleaved(fns: list, repeats: int, inner: int = 1, warmup: int = 3,
                       settle: float = 0.0) -> list[float]:
    """Median seconds per call of each fn, running them in turns: A B A B ...

    settle: seconds to sleep, untimed, before each sample. NOTE: after a matmul, OpenBLAS's worker threads
    spin for ~0.1 s (OpenMP's for a while too); on a 2-core machine they take a core from whatever runs next,
    so a contender timed right after the other library's multithreaded work looks up to 2x slower than it is.
    Give multithreaded contenders (a training step against PyTorch) a settle of 0.2 s.
    """
    for _ in range(warmup):
        for f in fns:
            f()
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            if settle:
                time.sleep(settle)
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            samples[i].append((time.perf_counter() - t0) / inner)
    return [statistics.median(s) for s in samples]
