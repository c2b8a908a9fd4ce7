"""Bench cases of the W4A16 kernels (kernels/quant.cu through backends/cuda_kernels/quant.py, what QuantLinear runs
on CUDA) beside dequantize-then-cuBLAS on the same GPU: issue 8's int4 GEMM at batch 1, 8 and 32.

Layers of a 7B Llama (4096 -> 4096, 4096 -> 11008, 11008 -> 4096), 4-bit codes with group size 128 and zero
points, float16 and bfloat16 activations. Two rows per case, ours timed against each reference in turns:
    vs "dequantize + matmul"   the weight dequantized to the activations' dtype (CuPy array ops on the layout's
                               definition: planar nibbles, W = (code - zero) * scale), then cuBLAS
    vs "matmul alone"          cuBLAS on the weight dequantized once beforehand (the 16-bit model's cost)
Every row counts the bytes our kernel must move (packed codes, float32 scales, uint8 zeros, x read, y written) and
is a % of the copy peak: at these batch sizes the product is bound by memory, not by the tensor cores (a 16-bit
weight at batch 32 is 64 flops per byte of int4 weight, well under an H100's ~300).

Each timed call is `CALLS` calls captured into one CUDA graph (bench/graphs.py): a batch-1 product of these layers
takes microseconds, less than a launch from Python; the label says "graph" or why the calls ran eagerly. Each case
checks ours against the dequantize + matmul result first; a mismatch is named in the case label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graphs import repeated
from .kernel_refs import BF16, as_float32, cast, is_smoke, matmul_fn, mismatch
from .ops import BenchContext, Row, register

GROUP = 128
CALLS = 20  # calls per timed graph replay


@dataclass(frozen=True)
class QuantCase:
    name: str
    n: int  # out features
    k: int  # in features
    batch: int
    dtype: object
    group: int = GROUP

    def label(self, kernel: str) -> str:
        return (f"w4a16_{kernel} {np.dtype(self.dtype).name} {self.name} {self.k}->{self.n} g{self.group} "
                f"batch {self.batch}")

    def bytes_moved(self) -> int:
        groups = self.k // self.group
        item = np.dtype(self.dtype).itemsize
        return self.n * self.k // 2 + self.n * groups * 5 + self.batch * (self.k + self.n) * item


def cases(smoke: bool) -> list[QuantCase]:
    """Batch 1 and 8 take the gemv kernel, 32 the tensor-core gemm (quant.plan); the emulator gets tiny layers with
    the same kernel choices (groups of 32: the gemm's smallest)."""
    f16 = np.dtype(np.float16)
    if smoke:
        return [QuantCase("tiny", 24, 64, batch, dtype, group=32) for batch in (1, 9) for dtype in (f16, BF16)]
    layers = [("attn o_proj", 4096, 4096), ("mlp up_proj", 11008, 4096), ("mlp down_proj", 4096, 11008)]
    return [QuantCase(name, n, k, batch, dtype) for name, n, k in layers for dtype in (f16, BF16)
            for batch in (1, 8, 32)]


def dequantize(xp, codes, scales, zeros, group: int, dtype):
    """The (N, K) weight of dtype from quant.cu's layout, straight from its definition (the reference's first
    step): byte j of a group holds column j (low nibble) and column j + group / 2 (high nibble)."""
    n, half = codes.shape
    g = codes.reshape(n, 2 * half // group, group // 2)
    w = xp.concatenate([g & 0xF, g >> 4], axis=2).astype(np.float32)
    w -= zeros.astype(np.float32)[:, :, None]
    w *= scales[:, :, None]
    return cast(w.reshape(n, 2 * half), dtype)


def _weights(ctx: BenchContext, c: QuantCase):
    """Random packed codes (every nibble 0..15), float32 scales ~ a 0.02-std weight's, uint8 zero points."""
    xp, groups = ctx.cp, c.k // c.group
    if xp is np:
        rng = np.random.default_rng(c.n + c.k + c.batch)
        codes = rng.integers(0, 256, (c.n, c.k // 2), dtype=np.uint8)
        scales = rng.uniform(0.002, 0.01, (c.n, groups)).astype(np.float32)
        zeros = rng.integers(0, 16, (c.n, groups), dtype=np.uint8)
        x = rng.uniform(-1, 1, (c.batch, c.k)).astype(np.float32).astype(c.dtype)
        return x, codes, scales, zeros
    rng = xp.random.default_rng(c.n + c.k + c.batch)
    codes = rng.integers(0, 256, (c.n, c.k // 2), dtype=np.int32).astype(np.uint8)
    scales = rng.random((c.n, groups), dtype=np.float32) * 0.008 + 0.002
    zeros = rng.integers(0, 16, (c.n, groups), dtype=np.int32).astype(np.uint8)
    x = cast(rng.random((c.batch, c.k), dtype=np.float32) * 2 - 1, c.dtype)
    return x, codes, scales, zeros


def _case(ctx: BenchContext, c: QuantCase) -> list[Row]:
    from zigtensor.backends.cuda_kernels import quant as Q

    xp = ctx.cp
    x, codes, scales, zeros = _weights(ctx, c)
    kernel = Q.plan(c.batch, c.group, c.dtype)
    matmul, mm_name, uses_torch = matmul_fn(ctx, c.dtype)

    def ours():
        return Q.w4a16_matmul(x, codes, scales, zeros, c.group)

    rows = []
    if matmul is None:  # no vendor GEMM for this dtype here: ours alone
        run, how = repeated(ctx, ours, CALLS)
        t = ctx.time(run) / (1 if xp is np else CALLS)
        return [Row("quant", f"{c.label(kernel)} [{how}]", t, bytes=c.bytes_moved())]
    w_t = dequantize(xp, codes, scales, zeros, c.group, c.dtype).T  # pre-dequantized, read transposed in place

    def dequant_matmul():
        return matmul(x, dequantize(xp, codes, scales, zeros, c.group, c.dtype).T)

    def matmul_alone():
        return matmul(x, w_t)

    want = as_float32(ctx, dequant_matmul())
    # NOTE: ours rounds once from fp32 accumulation, the reference its dequantized weight first, then the output
    note = mismatch(ctx, ours(), want, 3e-2)
    calls = 1 if xp is np else CALLS
    run_ours, how_ours = repeated(ctx, ours, CALLS)
    for ref_fn, what in ((dequant_matmul, "dequantize + matmul"), (matmul_alone, "matmul alone")):
        run_ref, how_ref = repeated(ctx, ref_fn, CALLS, graph=not uses_torch)
        t, t_ref = ctx.compare(run_ours, run_ref)
        how = how_ours if how_ours == how_ref else f"ours {how_ours}, ref {how_ref}"
        rows.append(Row("quant", f"{c.label(kernel)} vs {what} [{how}]{note}", t / calls, bytes=c.bytes_moved(),
                        ref_time_s=t_ref / calls, reference=f"{what}: {mm_name}"))
    return rows


@register("quant")
def bench_quant(ctx: BenchContext) -> list[Row]:
    rows = []
    for c in cases(is_smoke(ctx)):
        rows += _case(ctx, c)
        if ctx.cp is not np:
            ctx.cp.get_default_memory_pool().free_all_blocks()
    return rows
