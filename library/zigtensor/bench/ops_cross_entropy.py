"""Bench cases of kernels/cross_entropy.cu on 64 MiB+ logits: the fused forward (one read of the logits),
the backward (one read, one write) and both together against PyTorch's cross_entropy forward and
forward + backward on the same GPU when it has CUDA; 1000 classes (a warp per row), 32768 and 50257
(GPT-2's vocabulary, odd: scalar loads) classes (a block per row)."""

from __future__ import annotations

import numpy as np

from .ops import BenchContext, Row, register
from .ops_elementwise import torch_cuda, torch_view
from .ops_softmax import host_random, mib, rows_for


def _case(ctx: BenchContext, torch, classes: int, dtype) -> list[Row]:
    from zigtensor.backends.cuda_kernels import cross_entropy as ce

    dtype = np.dtype(dtype)
    rows = rows_for(ctx, classes, dtype.itemsize)
    logits = host_random(ctx, (rows, classes), dtype, -8, 8)
    targets = ctx.cp.asarray(np.random.default_rng(1).integers(0, classes, rows).astype(np.int64))
    nbytes = rows * classes * dtype.itemsize
    size = f"{dtype.name} ({rows}, {classes}), {mib(nbytes)}"
    _, lse = ce.cross_entropy_forward(logits, targets, label_smoothing=0.1)
    tl, tt = (torch_view(torch, a) for a in (logits, targets)) if torch else (None, None)
    ok = tl is not None and tt is not None
    ref = (lambda: torch.nn.functional.cross_entropy(tl, tt, reduction="none", label_smoothing=0.1)) if ok else None
    t, t_ref = ctx.compare(lambda: ce.cross_entropy_forward(logits, targets, label_smoothing=0.1), ref)
    out = [Row("cross_entropy", f"forward {size}", t, bytes=nbytes, ref_time_s=t_ref,
               reference="torch" if ref else "")]
    t = ctx.time(lambda: ce.cross_entropy_backward(logits, targets, lse, 1.0 / rows, label_smoothing=0.1))
    out.append(Row("cross_entropy", f"backward {size}", t, bytes=2 * nbytes))

    def ours_both():
        _, lse_ = ce.cross_entropy_forward(logits, targets, label_smoothing=0.1)
        ce.cross_entropy_backward(logits, targets, lse_, 1.0 / rows, label_smoothing=0.1)

    ref = None
    if ok:
        leaf = tl.detach().requires_grad_(True)

        def ref():
            loss = torch.nn.functional.cross_entropy(leaf, tt, label_smoothing=0.1)
            torch.autograd.grad(loss, leaf)

    t, t_ref = ctx.compare(ours_both, ref)
    out.append(Row("cross_entropy", f"forward + backward {size}", t, bytes=3 * nbytes, ref_time_s=t_ref,
                   reference="torch (autograd)" if ref else ""))
    return out


@register("cross_entropy")
def bench_cross_entropy(ctx: BenchContext) -> list[Row]:
    import ml_dtypes

    torch = torch_cuda()
    cases = [(1000, np.float32), (32768, np.float32), (50257, ml_dtypes.bfloat16), (50257, np.float32)]
    return [row for classes, dtype in cases for row in _case(ctx, torch, classes, dtype)]
