"""Bench cases of kernels/random.cu on 64 MiB+ tensors: Philox uniform and normal samples and dropout forward
and backward, beside PyTorch's generators and native_dropout on the same GPU when it has CUDA. Bytes count
the samples written; dropout reads x and writes y and the one-byte mask (backward: reads dy and the mask,
writes dx)."""

from __future__ import annotations

import numpy as np

from .ops import BenchContext, Row, register
from .ops_elementwise import torch_cuda, torch_view
from .ops_softmax import host_random, mib, rows_for


def _dropout_case(ctx: BenchContext, torch, dtype) -> list[Row]:
    from zigtensor.backends.cuda_kernels import random as zr

    dtype = np.dtype(dtype)
    n = rows_for(ctx, 1024, dtype.itemsize) * 1024
    x, dy = host_random(ctx, (n,), dtype), host_random(ctx, (n,), dtype, -1, 1, seed=1)
    size = f"{dtype.name} {n} elements, {mib(n * dtype.itemsize)}"
    _, mask = zr.dropout(x, 0.1, 0, 0)
    tx = torch_view(torch, x) if torch else None
    ref = (lambda: torch.native_dropout(tx, 0.1, True)) if tx is not None else None
    t, t_ref = ctx.compare(lambda: zr.dropout(x, 0.1, 0, 1), ref)
    out = [Row("random", f"dropout forward {size}", t, bytes=n * (2 * dtype.itemsize + 1), ref_time_s=t_ref,
               reference="torch.native_dropout" if ref else "")]
    t = ctx.time(lambda: zr.dropout_backward(dy, mask, 0.1))
    out.append(Row("random", f"dropout backward {size}", t, bytes=n * (2 * dtype.itemsize + 1)))
    return out


def _sample_case(ctx: BenchContext, torch, name: str) -> Row:
    from zigtensor.backends.cuda_kernels import random as zr

    n = rows_for(ctx, 1024, 4) * 1024
    fn = zr.uniform if name == "uniform" else zr.normal
    ref = None
    if torch is not None:
        ref = (lambda: torch.rand(n, device="cuda")) if name == "uniform" else (lambda: torch.randn(n, device="cuda"))
    t, t_ref = ctx.compare(lambda: fn((n,), np.float32, 0, 0, xp=ctx.cp), ref)
    return Row("random", f"{name} float32 {n} samples, {mib(4 * n)}", t, bytes=4 * n, ref_time_s=t_ref,
               reference=f"torch.{'rand' if name == 'uniform' else 'randn'}" if ref else "")


@register("random")
def bench_random(ctx: BenchContext) -> list[Row]:
    import ml_dtypes

    torch = torch_cuda()
    rows = [_sample_case(ctx, torch, "uniform"), _sample_case(ctx, torch, "normal")]
    for dtype in (np.float32, ml_dtypes.bfloat16):
        rows += _dropout_case(ctx, torch, dtype)
    return rows
