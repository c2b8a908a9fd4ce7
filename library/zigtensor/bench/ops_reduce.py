"""Bench cases of kernels/reduce.cu (64 MiB+ inputs): full sums and maxima, row and column reductions, beside
CuPy's reductions and PyTorch on the same GPU when it has CUDA."""

from __future__ import annotations

from .ops import BenchContext, Row, register
from .ops_elementwise import torch_cuda, torch_view


@register("reduce")
def bench_reduce(ctx: BenchContext) -> list[Row]:
    from zigtensor.backends.cuda_kernels import reduce as rd

    cp = ctx.cp
    n = 2**24 if ctx.quick else 2**26
    x = cp.random.random(n, dtype=cp.float32)
    mib = n * 4 >> 20
    torch = torch_cuda()
    tx = torch_view(torch, x) if torch else None
    rows = []
    cols = 4096
    m = x.reshape(-1, cols)
    tm = tx.reshape(-1, cols) if tx is not None else None
    cases = [
        (f"sum f32, all {mib} MiB", lambda: rd.reduce("sum", x), lambda: x.sum(), tx is not None and tx.sum),
        (f"max f32, all {mib} MiB", lambda: rd.reduce("max", x), lambda: x.max(), tx is not None and tx.max),
        (f"sum f32 rows ({n // cols}, {cols}) axis 1", lambda: rd.reduce("sum", m, (1,)), lambda: m.sum(axis=1),
         tm is not None and (lambda: tm.sum(1))),
        (f"sum f32 columns ({n // cols}, {cols}) axis 0", lambda: rd.reduce("sum", m, (0,)),
         lambda: m.sum(axis=0), tm is not None and (lambda: tm.sum(0))),
        (f"max f32 rows ({n // cols}, {cols}) axis 1", lambda: rd.reduce("max", m, (1,)), lambda: m.max(axis=1),
         tm is not None and (lambda: tm.amax(1))),
    ]
    for case, ours, cupy_ref, torch_ref in cases:
        t, t_ref = ctx.compare(ours, cupy_ref)
        rows.append(Row("reduce", case, t, bytes=n * 4, ref_time_s=t_ref, reference="cupy"))
        if torch_ref:
            t, t_ref = ctx.compare(ours, torch_ref)
            rows.append(Row("reduce", case, t, bytes=n * 4, ref_time_s=t_ref, reference="torch"))
    return rows
