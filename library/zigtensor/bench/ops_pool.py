"""Bench cases of kernels/pool.cu: 2x2 max pooling (with indices) and 3x3 stride-2 average pooling of a
(64, 64, 112, 112) float32 activation (196 MiB), forward and backward, beside PyTorch on the same GPU when
it has CUDA. Bytes count the input read and the output (and int64 indices) written; backward the reverse."""

from __future__ import annotations

from .ops import BenchContext, Row, register
from .ops_elementwise import torch_cuda, torch_view
from .ops_softmax import host_random, mib


@register("pool")
def bench_pool(ctx: BenchContext) -> list[Row]:
    import numpy as np

    from zigtensor.backends.cuda_kernels import pool

    shape = (2, 3, 12, 12) if getattr(ctx, "smoke", False) else (64, 64, 112, 112)
    x = host_random(ctx, shape, np.float32)
    xbytes = x.size * 4
    size = f"float32 {shape}, {mib(xbytes)}"
    torch = torch_cuda()
    tx = torch_view(torch, x) if torch else None
    rows = []

    y, idx = pool.max_pool2d_forward(x, 2)
    out_bytes = y.size * (4 + 8)
    ref = (lambda: torch.nn.functional.max_pool2d(tx, 2, return_indices=True)) if tx is not None else None
    t, t_ref = ctx.compare(lambda: pool.max_pool2d_forward(x, 2), ref)
    rows.append(Row("pool", f"max_pool2d 2x2 forward {size}", t, bytes=xbytes + out_bytes, ref_time_s=t_ref,
                    reference="torch" if ref else ""))
    dy = host_random(ctx, y.shape, np.float32, -1, 1, seed=1)
    t = ctx.time(lambda: pool.max_pool2d_backward(dy, idx, x.shape, 2))
    rows.append(Row("pool", f"max_pool2d 2x2 backward {size}", t, bytes=xbytes + out_bytes))

    y = pool.avg_pool2d_forward(x, 3, 2, 1)
    ref = (lambda: torch.nn.functional.avg_pool2d(tx, 3, 2, 1)) if tx is not None else None
    t, t_ref = ctx.compare(lambda: pool.avg_pool2d_forward(x, 3, 2, 1), ref)
    rows.append(Row("pool", f"avg_pool2d 3x3/2 forward {size}", t, bytes=xbytes + y.size * 4, ref_time_s=t_ref,
                    reference="torch" if ref else ""))
    dy = host_random(ctx, y.shape, np.float32, -1, 1, seed=2)
    t = ctx.time(lambda: pool.avg_pool2d_backward(dy, x.shape, 3, 2, 1))
    rows.append(Row("pool", f"avg_pool2d 3x3/2 backward {size}", t, bytes=xbytes + y.size * 4))
    return rows
