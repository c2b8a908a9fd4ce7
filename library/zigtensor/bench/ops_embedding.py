"""Bench cases of kernels/embedding.cu: the gather of GPT-2's token embedding (50257 x 768) for 64 MiB+ of
output rows, and its backward both ways (deterministic sort-and-sum, float atomics) beside PyTorch's
embedding forward and embedding_dense_backward on the same GPU when it has CUDA. Bytes count the rows read
and written (the weight gradient's zero fill included for the backward)."""

from __future__ import annotations

import numpy as np

from .ops import BenchContext, Row, register
from .ops_elementwise import torch_cuda, torch_view
from .ops_softmax import host_random, mib, rows_for


def _case(ctx: BenchContext, torch, dtype) -> list[Row]:
    from zigtensor.backends.cuda_kernels import embedding as emb

    dtype = np.dtype(dtype)
    vocab, dim = (50257, 768) if not getattr(ctx, "smoke", False) else (50, 8)
    n = rows_for(ctx, dim, dtype.itemsize)
    weight = host_random(ctx, (vocab, dim), dtype)
    ids = ctx.cp.asarray(np.random.default_rng(1).integers(0, vocab, n).astype(np.int64))
    grad = host_random(ctx, (n, dim), dtype, -1, 1, seed=2)
    rows_bytes = n * dim * dtype.itemsize
    size = f"{dtype.name} {n} ids x {dim}, {mib(rows_bytes)}"
    tw, ti, tg = (torch_view(torch, a) for a in (weight, ids, grad)) if torch else (None, None, None)
    ok = all(a is not None for a in (tw, ti, tg))
    ref = (lambda: torch.nn.functional.embedding(ti, tw)) if ok else None
    t, t_ref = ctx.compare(lambda: emb.embedding_forward(weight, ids), ref)
    out = [Row("embedding", f"forward {size}", t, bytes=2 * rows_bytes, ref_time_s=t_ref,
               reference="torch" if ref else "")]
    ref = (lambda: torch.ops.aten.embedding_dense_backward(tg, ti, vocab, -1, False)) if ok else None
    wbytes = vocab * dim * dtype.itemsize
    for deterministic in (True, False):
        t, t_ref = ctx.compare(lambda d=deterministic: emb.embedding_backward(grad, ids, vocab, deterministic=d), ref)
        out.append(Row("embedding", f"backward {'sorted' if deterministic else 'atomic'} {size}", t,
                       bytes=rows_bytes + wbytes, ref_time_s=t_ref, reference="torch" if ref else ""))
    return out


@register("embedding")
def bench_embedding(ctx: BenchContext) -> list[Row]:
    import ml_dtypes

    torch = torch_cuda()
    return _case(ctx, torch, np.float32) + _case(ctx, torch, ml_dtypes.bfloat16)
