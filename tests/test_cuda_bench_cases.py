"""The bench cases of the row-kernel families (zigtensor/bench/ops_{softmax,norm,cross_entropy,random,optim,
embedding,pool}.py) run end to end on the CPU kernel emulator with two-row inputs (ctx.smoke), so a GPU
session finds them working; the timings here mean nothing."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from cuda_util import kernel_device

from zigtensor.bench import ops

FAMILIES = ["softmax", "norm", "cross_entropy", "random", "optim", "embedding", "pool"]


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
        assert row.time_s == 1.0 and row.bytes > 0 and math.isfinite(row.throughput)
