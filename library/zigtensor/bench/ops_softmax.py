"""Bench cases of kernels/softmax.cu on 64 MiB+ inputs: softmax and log-softmax forward and backward, and
logsumexp, on rows of 1024 (a warp per row), 4096 and 16384 (a block per row, the row in registers) and
50257 (two passes), beside PyTorch on the same GPU when it has CUDA and beside our two-pass kernel (the
baseline of the cached ones). Bytes count one read of each input and one write of each output.

Also the helpers the other row-kernel bench modules (norm, cross_entropy, random, optim, embedding, pool)
share: host-generated inputs and the case sizes.
"""

from __future__ import annotations

import numpy as np

from .ops import BenchContext, Row, register
from .ops_elementwise import torch_cuda, torch_view

TARGET_BYTES = 64 * 2**20  # every case reads at least this much


def host_random(ctx: BenchContext, shape, dtype, low: float = -4.0, high: float = 4.0, seed: int = 0):
    """A device array of uniform values drawn on the host (any dtype, any array module)."""
    host = np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32).astype(dtype)
    return ctx.cp.asarray(host)


def rows_for(ctx: BenchContext, cols: int, itemsize: int) -> int:
    """Rows of `cols` elements that make TARGET_BYTES (2 when ctx.smoke: tests run the bench code on the kernel
    emulator with it)."""
    if getattr(ctx, "smoke", False):
        return 2
    return max(1, TARGET_BYTES // (cols * itemsize))


def mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.0f} MiB"


def _softmax_rows(ctx, torch, x, dy, size: str, variant: str, log: bool) -> list[Row]:
    from zigtensor.backends.cuda_kernels import softmax as sm

    name = "log_softmax" if log else "softmax"
    nbytes = x.size * x.dtype.itemsize
    y = sm.softmax(x, -1, log=log)
    tx, ty, tdy = (torch_view(torch, a) for a in (x, y, dy)) if torch else (None, None, None)
    ref = None
    if tx is not None:
        ref = (lambda: torch.log_softmax(tx, -1)) if log else (lambda: torch.softmax(tx, -1))
    t, t_ref = ctx.compare(lambda: sm.softmax(x, -1, log=log), ref)
    out = [Row("softmax", f"{name} forward {size} [{variant}]", t, bytes=2 * nbytes, ref_time_s=t_ref,
               reference="torch" if ref else "")]
    ref = None
    if ty is not None and tdy is not None:
        bwd = torch._log_softmax_backward_data if log else torch._softmax_backward_data
        ref = lambda: bwd(tdy, ty, -1, ty.dtype)  # noqa: E731
    t, t_ref = ctx.compare(lambda: sm.softmax_backward(y, dy, -1, log=log), ref)
    out.append(Row("softmax", f"{name} backward {size} [{variant}]", t, bytes=3 * nbytes, ref_time_s=t_ref,
                   reference="torch" if ref else ""))
    return out


def _softmax_case(ctx: BenchContext, torch, cols: int, dtype) -> list[Row]:
    from zigtensor.backends.cuda_kernels import softmax as sm
    from zigtensor.backends.cuda_kernels._launch import vec_width

    dtype = np.dtype(dtype)
    rows = rows_for(ctx, cols, dtype.itemsize)
    x = host_random(ctx, (rows, cols), dtype)
    dy = host_random(ctx, (rows, cols), dtype, -1, 1, seed=1)
    nbytes = rows * cols * dtype.itemsize
    size = f"{dtype.name} ({rows}, {cols}), {mib(nbytes)}"
    variant = sm.plan(cols, vec_width(dtype, x, cols=cols))[0]
    out = _softmax_rows(ctx, torch, x, dy, size, variant, False) + _softmax_rows(ctx, torch, x, dy, size, variant,
                                                                                  True)
    if variant != "online":  # the cached kernel against the two-pass one on the same rows
        t = ctx.time(lambda: sm.softmax(x, -1, variant="online"))
        out.append(Row("softmax", f"softmax forward {size} [online: baseline]", t, bytes=2 * nbytes))
    tx = torch_view(torch, x) if torch else None
    ref = (lambda: torch.logsumexp(tx, -1)) if tx is not None else None
    t, t_ref = ctx.compare(lambda: sm.logsumexp(x, -1), ref)
    out.append(Row("softmax", f"logsumexp {size}", t, bytes=nbytes, ref_time_s=t_ref, reference="torch" if ref else ""))
    return out


@register("softmax")
def bench_softmax(ctx: BenchContext) -> list[Row]:
    import ml_dtypes

    torch = torch_cuda()
    cases = [(1024, np.float32), (4096, np.float32), (16384, np.float32), (2048, ml_dtypes.bfloat16),
             (50257, np.float32)]
    return [row for cols, dtype in cases for row in _softmax_case(ctx, torch, cols, dtype)]
