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


def median_in_blocks(fns: list, repeats: int, blocks: int = 5, settle: float = 0.2) -> list[float]:
    """Median seconds per call of each fn, each timed alone: `blocks` rounds in which every fn runs a block of
    about repeats / blocks calls in a row, after `settle` idle seconds (and one untimed call), the order of the
    fns alternating from round to round.

    NOTE: between median_interleaved's turns (one library's idle threads spinning while the other runs) and
    timing each library once, one after the other (the host's speed drifts by 20% over a minute on a shared
    VM, and whichever ran in the slow minute looked slower), blocks spread over the whole run see the same
    drift and never meet the other library's spinning threads."""
    blocks = max(1, min(blocks, repeats))
    per = -(-repeats // blocks)
    samples = [[] for _ in fns]
    for r in range(blocks):
        order = list(range(len(fns))) if r % 2 == 0 else list(reversed(range(len(fns))))
        for i in order:
            if settle:
                time.sleep(settle)
            fns[i]()
            for _ in range(per):
                t0 = time.perf_counter()
                fns[i]()
                samples[i].append(time.perf_counter() - t0)
    return [statistics.median(s) for s in samples]
