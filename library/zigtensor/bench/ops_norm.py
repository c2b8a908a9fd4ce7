"""Bench cases of kernels/norm.cu on 64 MiB+ inputs: LayerNorm and RMSNorm forward and backward (dx, and dw/db
through per-block partial sums), widths 768, 1024 and 4096, beside PyTorch on the same GPU when it has CUDA
and beside our looped (uncached) kernel as the baseline. Bytes count x read and y written (forward), x and dy
read and dx written (backward); the row statistics and parameter gradients are small beside them."""

from __future__ import annotations

import numpy as np

from .ops import BenchContext, Row, register
from .ops_elementwise import torch_cuda, torch_view
from .ops_softmax import host_random, mib, rows_for


def _layer_norm_case(ctx: BenchContext, torch, cols: int, dtype) -> list[Row]:
    from zigtensor.backends.cuda_kernels import norm

    dtype = np.dtype(dtype)
    rows = rows_for(ctx, cols, dtype.itemsize)
    x, dy = host_random(ctx, (rows, cols), dtype), host_random(ctx, (rows, cols), dtype, -1, 1, seed=1)
    w, b = host_random(ctx, (cols,), dtype, 0.5, 1.5, seed=2), host_random(ctx, (cols,), dtype, -1, 1, seed=3)
    nbytes = rows * cols * dtype.itemsize
    size = f"{dtype.name} ({rows}, {cols}), {mib(nbytes)}"
    _, mean, rstd = norm.layer_norm_forward(x, w, b)
    t = [torch_view(torch, a) for a in (x, dy, w, b, mean, rstd)] if torch else [None] * 6
    ok = all(a is not None for a in t)
    ref = (lambda: torch.nn.functional.layer_norm(t[0], (cols,), t[2], t[3], 1e-5)) if ok else None
    t_ours, t_ref = ctx.compare(lambda: norm.layer_norm_forward(x, w, b), ref)
    out = [Row("norm", f"layer_norm forward {size}", t_ours, bytes=2 * nbytes, ref_time_s=t_ref,
               reference="torch" if ref else "")]
    ref = None
    if ok:
        tm, tr = t[4].reshape(rows, 1), t[5].reshape(rows, 1)
        ref = lambda: torch.ops.aten.native_layer_norm_backward(t[1], t[0], [cols], tm, tr, t[2], t[3],  # noqa: E731
                                                                [True, True, True])
    t_ours, t_ref = ctx.compare(lambda: norm.layer_norm_backward(dy, x, w, mean, rstd), ref)
    out.append(Row("norm", f"layer_norm backward {size}", t_ours, bytes=3 * nbytes, ref_time_s=t_ref,
                   reference="torch" if ref else ""))
    t_ours = ctx.time(lambda: norm.layer_norm_forward(x, w, b, variant="looped"))
    out.append(Row("norm", f"layer_norm forward {size} [looped: baseline]", t_ours, bytes=2 * nbytes))
    t_ours = ctx.time(lambda: norm.layer_norm_backward(dy, x, w, mean, rstd, variant="looped"))
    out.append(Row("norm", f"layer_norm backward {size} [looped: baseline]", t_ours, bytes=3 * nbytes))
    return out


def _rms_norm_case(ctx: BenchContext, torch, cols: int, dtype) -> list[Row]:
    from zigtensor.backends.cuda_kernels import norm

    dtype = np.dtype(dtype)
    rows = rows_for(ctx, cols, dtype.itemsize)
    x, dy = host_random(ctx, (rows, cols), dtype), host_random(ctx, (rows, cols), dtype, -1, 1, seed=1)
    w = host_random(ctx, (cols,), dtype, 0.5, 1.5, seed=2)
    nbytes = rows * cols * dtype.itemsize
    size = f"{dtype.name} ({rows}, {cols}), {mib(nbytes)}"
    _, rstd = norm.rms_norm_forward(x, w, 1e-6)
    tx, tw = (torch_view(torch, a) for a in (x, w)) if torch else (None, None)
    ref = None
    if tx is not None and tw is not None and hasattr(torch.nn.functional, "rms_norm"):
        ref = lambda: torch.nn.functional.rms_norm(tx, (cols,), tw, 1e-6)  # noqa: E731
    t_ours, t_ref = ctx.compare(lambda: norm.rms_norm_forward(x, w, 1e-6), ref)
    out = [Row("norm", f"rms_norm forward {size}", t_ours, bytes=2 * nbytes, ref_time_s=t_ref,
               reference="torch" if ref else "")]
    t_ours = ctx.time(lambda: norm.rms_norm_backward(dy, x, w, rstd))
    out.append(Row("norm", f"rms_norm backward {size}", t_ours, bytes=3 * nbytes))
    return out


@register("norm")
def bench_norm(ctx: BenchContext) -> list[Row]:
    import ml_dtypes

    torch = torch_cuda()
    bf16 = ml_dtypes.bfloat16
    rows = []
    for cols, dtype in ((1024, np.float32), (4096, np.float32), (768, bf16), (4096, bf16)):
        rows += _layer_norm_case(ctx, torch, cols, dtype)
    for cols, dtype in ((4096, np.float32), (4096, bf16)):
        rows += _rms_norm_case(ctx, torch, cols, dtype)
    return rows
