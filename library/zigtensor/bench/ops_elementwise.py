"""Bench cases of kernels/elementwise.cu (64 MiB+ operands): add, GELU, a cast, the fused bias + GELU, and the
strided kernel as the naive baseline, beside CuPy's kernels and PyTorch on the same GPU when it has CUDA."""

from __future__ import annotations

from .ops import BenchContext, Row, register


def torch_cuda():
    """torch when it is installed with CUDA on this machine, else None (the rows then have no torch column)."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def torch_view(torch, x):
    """A torch tensor sharing x's memory (DLPack), or None when that fails (bfloat16 through old CuPy)."""
    try:
        return torch.from_dlpack(x)
    except Exception:  # noqa: BLE001  (no DLPack path for this dtype)
        return None


@register("elementwise")
def bench_elementwise(ctx: BenchContext) -> list[Row]:
    import ml_dtypes

    from zigtensor.backends.cuda_kernels import elementwise as ew

    cp = ctx.cp
    n = 2**24 if ctx.quick else 2**26  # float32: 64 MiB (quick) or 256 MiB per operand
    a = cp.random.random(n, dtype=cp.float32)
    b = cp.random.random(n, dtype=cp.float32)
    out = cp.empty_like(a)
    mib = n * 4 >> 20
    torch = torch_cuda()
    ta, tb, tout = (torch_view(torch, x) for x in (a, b, out)) if torch else (None, None, None)
    rows = []

    def add_rows(case, ours, cupy_ref, torch_ref, nbytes):
        t, t_ref = ctx.compare(ours, cupy_ref)
        rows.append(Row("elementwise", case, t, bytes=nbytes, ref_time_s=t_ref, reference="cupy"))
        if torch_ref is not None:
            t, t_ref = ctx.compare(ours, torch_ref)
            rows.append(Row("elementwise", case, t, bytes=nbytes, ref_time_s=t_ref, reference="torch"))

    add_rows(f"add f32, {mib} MiB x 2 -> {mib} MiB", lambda: ew.binary("add", a, b, out=out),
             lambda: cp.add(a, b, out=out), (lambda: torch.add(ta, tb, out=tout)) if ta is not None else None,
             3 * n * 4)
    gelu_ref = torch and ta is not None and (lambda: torch.nn.functional.gelu(ta))
    add_rows(f"gelu (erf) f32, {mib} MiB", lambda: ew.unary("gelu", a, out=out),
             None, gelu_ref or None, 2 * n * 4)
    half = cp.empty(n, dtype=ml_dtypes.bfloat16)
    t_half = torch_view(torch, half) if torch else None
    try:
        cp.copyto(half, a)
        cupy_cast = lambda: cp.copyto(half, a)  # noqa: E731
    except Exception:  # noqa: BLE001  (a CuPy without bfloat16 casts)
        cupy_cast = None
    add_rows(f"cast f32 -> bf16, {n >> 20}M elements", lambda: ew.copy(half, a), cupy_cast,
             (lambda: t_half.copy_(ta)) if t_half is not None and ta is not None else None, n * 6)
    # the fused Linear epilogue: (rows, 4096) + bias, GELU, in one pass
    cols = 4096
    x2, bias = a.reshape(-1, cols), b[:cols]
    out2 = out.reshape(-1, cols)
    t = ctx.time(lambda: ew.bias_act(x2, bias, "gelu", out=out2))
    t_two = ctx.time(lambda: ew.unary("gelu", ew.binary("add", x2, bias, out=out2), out=out2))
    rows.append(Row("elementwise", f"bias + gelu fused, {mib} MiB", t, bytes=2 * n * 4, ref_time_s=t_two,
                    reference="ours unfused (add, then gelu)"))
    # the strided kernel: a + a^T reads one operand across rows (no 16-byte packs, a division per dim)
    side = int(n**0.5)
    sq, osq = a[: side * side].reshape(side, side), out[: side * side].reshape(side, side)
    t, t_ref = ctx.compare(lambda: ew.binary("add", sq, sq.T, out=osq), lambda: cp.add(sq, sq.T, out=osq))
    rows.append(Row("elementwise", f"add f32 {side}x{side} + its transpose (strided kernel)", t,
                    bytes=3 * side * side * 4, ref_time_s=t_ref, reference="cupy"))
    return rows
