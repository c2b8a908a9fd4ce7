"""Bench cases of 2-d convolution (backends/cuda_kernels/conv.py: im2col in kernels/conv.cu, then our GEMM) beside
torch.nn.functional.conv2d on the same GPU (cuDNN), forward and backward (input and weight gradients).

Shapes: ResNet-50's 3x3 convolutions (64 channels at 56x56, 128 at 28x28, 256 at 14x14, batch 32) and the two of
recipes/fashion_cnn.toml (1 -> 32 channels at 28x28, 32 -> 64 at 14x14, batch 64), in float32 and bfloat16, with
bias, padding 1. FLOPs count the convolution's multiply-adds (2 N C_out OH OW C_in KH KW) forward and twice that
backward (input and weight gradients); float32 rows are % of SGEMM, bfloat16 ones of the bf16 GEMM peak.

NOTE: cuDNN runs float32 convolutions on TF32 tensor cores unless told not to; ours run true float32 (ZT_TF32 off),
so the float32 references run with torch.backends.cudnn.allow_tf32 = False. cudnn.benchmark is on: the reference
is cuDNN's fastest algorithm for each shape (found during the warm-up).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from .kernel_refs import BF16, SIXTEEN_BIT, is_smoke, mismatch, random_array, tolerance, torch_for, torch_tensor
from .ops import BenchContext, Row, register


@dataclass(frozen=True)
class ConvCase:
    name: str
    batch: int
    c_in: int
    c_out: int
    size: int  # H = W
    dtype: object
    backward: bool = False
    kernel: int = 3
    padding: int = 1

    def label(self) -> str:
        what = "backward (dx, dw)" if self.backward else "forward"
        return (f"{what} {np.dtype(self.dtype).name} {self.name} N{self.batch} {self.c_in}->{self.c_out} "
                f"{self.size}x{self.size} k{self.kernel}")

    def flops(self) -> float:
        out = self.size + 2 * self.padding - self.kernel + 1
        f = 2.0 * self.batch * self.c_out * out * out * self.c_in * self.kernel * self.kernel
        return 2 * f if self.backward else f


def cases(smoke: bool) -> list[ConvCase]:
    f32 = np.dtype(np.float32)
    if smoke:  # tiny; 8 input channels make C KH KW = 72 (16-byte bfloat16 rows: the tensor-core GEMM runs)
        return [ConvCase(name, 2, c_in, 8, 6, dtype, bwd) for name, c_in in (("resnet-like", 8), ("fashion-like", 1))
                for dtype in (f32, BF16) for bwd in (False, True)]
    shapes = [("resnet50 conv2_x", 32, 64, 64, 56), ("resnet50 conv3_x", 32, 128, 128, 28),
              ("resnet50 conv4_x", 32, 256, 256, 14), ("fashion_cnn conv1", 64, 1, 32, 28),
              ("fashion_cnn conv2", 64, 32, 64, 14)]
    return [ConvCase(name, n, ci, co, hw, dtype, bwd) for name, n, ci, co, hw in shapes for dtype in (f32, BF16)
            for bwd in (False, True)]


@contextlib.contextmanager
def _cudnn(torch, allow_tf32: bool):
    """cuDNN settings for the reference (see the module docstring), restored afterwards."""
    flags = torch.backends.cudnn
    saved = (flags.allow_tf32, flags.benchmark)
    flags.allow_tf32, flags.benchmark = allow_tf32, True
    try:
        yield
    finally:
        flags.allow_tf32, flags.benchmark = saved


def _case(ctx: BenchContext, torch, c: ConvCase) -> Row:
    from zigtensor.backends.cuda_kernels import conv

    x = random_array(ctx, (c.batch, c.c_in, c.size, c.size), c.dtype, seed=1)
    w = random_array(ctx, (c.c_out, c.c_in, c.kernel, c.kernel), c.dtype, seed=2)
    b = random_array(ctx, (c.c_out,), c.dtype, seed=3)
    y = conv.conv2d_forward(x, w, b, padding=c.padding)
    dy = random_array(ctx, tuple(y.shape), c.dtype, seed=4)
    sixteen = np.dtype(c.dtype) in SIXTEEN_BIT
    tx, tw, tb, tdy = (torch_tensor(torch, a) for a in (x, w, b, dy)) if torch else [None] * 4
    have_ref = all(t is not None for t in (tx, tw, tb, tdy))
    ref, note = None, ""
    with _cudnn(torch, allow_tf32=False) if have_ref else contextlib.nullcontext():
        conv2d = torch.nn.functional.conv2d if have_ref else None
        if c.backward:
            def ours():
                return conv.conv2d_backward(dy, x, w, padding=c.padding, needs=(True, True, False))[:2]

            if have_ref:
                leaves = [tx.detach().requires_grad_(True), tw.detach().requires_grad_(True)]
                t_y = conv2d(*leaves, tb, padding=c.padding)
                ref = lambda: torch.autograd.grad(t_y, leaves, tdy, retain_graph=True)  # noqa: E731
                # NOTE: the weight gradient sums N OH OW products: 16-bit outputs get a looser bound
                tol = 5e-2 if sixteen else 1e-3
                note = "".join(mismatch(ctx, mine, theirs, tol) for mine, theirs in zip(ours(), ref()))
        else:
            def ours():
                return conv.conv2d_forward(x, w, b, padding=c.padding)

            if have_ref:
                ref = lambda: conv2d(tx, tw, tb, padding=c.padding)  # noqa: E731
                note = mismatch(ctx, y, ref(), tolerance(c.dtype))
        t, t_ref = ctx.compare(ours, ref)
    reference = "cuDNN (torch conv2d" + (", TF32 off)" if not sixteen else ")") if ref is not None else ""
    return Row("conv", c.label() + note, t, flops=c.flops(), peak="bf16_gemm" if sixteen else "sgemm",
               ref_time_s=t_ref, reference=reference)


@register("conv")
def bench_conv(ctx: BenchContext) -> list[Row]:
    torch = torch_for(ctx)
    rows = []
    for c in cases(is_smoke(ctx)):
        rows.append(_case(ctx, torch, c))
        if ctx.cp is not np:
            ctx.cp.get_default_memory_pool().free_all_blocks()
    return rows
