"""Bench cases of kernels/optim.cu: one fused Adam(W) and one SGD-with-momentum step over the parameters of
GPT-2 small (124M float32 parameters in 148 tensors), beside torch.optim's fused AdamW and foreach SGD on the
same GPU when it has CUDA. Bytes count what an update must move: Adam reads p, g, m, v and writes p, m, v
(28 bytes a parameter), SGD reads p, g, buf and writes p, buf (20)."""

from __future__ import annotations

import numpy as np

from .ops import BenchContext, Row, register
from .ops_elementwise import torch_cuda, torch_view


def gpt2_small_shapes(smoke: bool = False) -> list[tuple[int, ...]]:
    """The parameter shapes of GPT-2 small (tied embeddings); a few small ones with smoke."""
    if smoke:
        return [(7, 5), (13,), (600,)]
    d, ff, layers = 768, 3072, 12
    shapes = [(50257, d), (1024, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, ff), (ff,), (ff, d), (d,)]
    return shapes + [(d,), (d,)]


@register("optim")
def bench_optim(ctx: BenchContext) -> list[Row]:
    from zigtensor.backends.cuda_kernels import optim

    cp = ctx.cp
    shapes = gpt2_small_shapes(getattr(ctx, "smoke", False))
    rng = np.random.default_rng(0)
    params = [cp.asarray(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
    grads = [cp.asarray(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
    m, v, buf = ([cp.zeros(s, dtype=np.float32) for s in shapes] for _ in range(3))
    n = sum(p.size for p in params)
    size = f"{len(shapes)} tensors, {n / 1e6:.1f}M float32 parameters"
    torch = torch_cuda()
    tp = [torch_view(torch, p) for p in params] if torch else None
    tg = [torch_view(torch, g) for g in grads] if torch else None
    rows = []

    step = {"t": 0}

    def adam():
        step["t"] += 1
        optim.adam_step(params, grads, m, v, None, step["t"], lr=1e-4, decoupled=True, weight_decay=0.01)

    ref = None
    if tp is not None:
        for p, g in zip(tp, tg):
            p.grad = g
        ref = torch.optim.AdamW(tp, lr=1e-4, weight_decay=0.01, fused=True).step
    t, t_ref = ctx.compare(adam, ref)
    rows.append(Row("optim", f"AdamW step, {size}", t, bytes=28 * n, ref_time_s=t_ref,
                    reference="torch.optim.AdamW(fused=True)" if ref else ""))

    def sgd():
        optim.sgd_step(params, grads, buf, False, lr=1e-3, momentum=0.9)

    ref = torch.optim.SGD(tp, lr=1e-3, momentum=0.9, foreach=True).step if tp is not None else None
    t, t_ref = ctx.compare(sgd, ref)
    rows.append(Row("optim", f"SGD momentum step, {size}", t, bytes=20 * n, ref_time_s=t_ref,
                    reference="torch.optim.SGD(foreach=True)" if ref else ""))
    return rows
