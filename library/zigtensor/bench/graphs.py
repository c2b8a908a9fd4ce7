"""Timing kernels shorter than their Python launch: `calls` calls captured into one CUDA graph and replayed, so a
CUDA-event sample measures the kernels back to back, not the launcher's host work between them.

>>> run, how = repeated(ctx, lambda: w4a16_matmul(x, codes, scales, zeros, 128), calls=20)
>>> seconds_per_call = ctx.time(run) / 20

A matrix-vector product of a 4096 x 4096 int4 layer moves ~9 MB: ~3 us on an H100, less than the checked launch
costs on the host (argument checks, a plan, a CuPy launch). Without a graph both ours and the reference would time
Python. Where capture fails (an operation that synchronizes, a library that allocates), the calls run eagerly
back to back and `how` says so, with the reason, for the case label.

NOTE: memory the captured calls allocate and free (their temporaries) returns to CuPy's pool after the capture
while the graph still writes it on every replay; the callers replay only within one bench case, whose inputs
stay allocated, so such writes land in scratch memory only. The captured calls' results are kept alive with
the graph.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def repeated(ctx, fn: Callable, calls: int, graph: bool = True) -> tuple[Callable, str]:
    """(run, how): run() makes `calls` calls of fn (one under the emulator, where ctx.cp is NumPy); how is
    "graph", "eager" or "eager (<why the capture failed>)"."""
    if not isinstance(calls, int) or calls < 1:
        raise ValueError(f"repeated: calls must be a positive int, got {calls!r}")
    if ctx.cp is np:
        return fn, "eager"
    cp = ctx.cp
    fn()  # compiled, cached and its pool blocks held before the capture
    cp.cuda.get_current_stream().synchronize()

    def eager():
        for _ in range(calls):
            fn()

    if not graph:
        return eager, "eager"
    stream = cp.cuda.Stream(non_blocking=True)
    kept = []
    try:
        with stream:
            stream.begin_capture()
            try:
                for _ in range(calls):
                    kept.append(fn())
            finally:
                captured = stream.end_capture()
    except Exception as e:  # noqa: BLE001  (not capturable: time the eager calls instead)
        cp.cuda.get_current_stream().synchronize()
        return eager, f"eager ({type(e).__name__})"

    def run():
        captured.launch()
        return kept

    return run, "graph"
