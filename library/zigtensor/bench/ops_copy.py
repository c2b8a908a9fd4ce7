"""Bench cases of kernels/copy.cu against CuPy's own copy kernels (`cupy.copyto`)."""

from __future__ import annotations

from .ops import BenchContext, Row, register


@register("copy")
def bench_copy(ctx: BenchContext) -> list[Row]:
    import ml_dtypes

    from zigtensor.backends.cuda_kernels import copy as launch
    from zigtensor.backends.kernels import load_kernel

    cp = ctx.cp
    n = (2**24 if ctx.quick else 2**26)  # float32: 64 MiB (quick) or 256 MiB
    side = int(n**0.5)
    src = cp.random.random(n, dtype=cp.float32)
    dst = cp.empty_like(src)
    rows = []

    t, t_ref = ctx.compare(lambda: launch.copy(dst, src), lambda: cp.copyto(dst, src))
    rows.append(Row("copy", f"f32 contiguous, {n * 4 >> 20} MiB", t, bytes=2 * n * 4, ref_time_s=t_ref,
                    reference="cupy.copyto"))

    naive = load_kernel("copy", "copy_contiguous", {"SRC_T": "float", "DST_T": "float"})
    grid = min(-(-n // 256), 8 * ctx.device.multi_processor_count)
    t = ctx.time(lambda: naive(grid, 256, (src, dst, n)))
    rows.append(Row("copy", f"f32 contiguous, scalar loads (naive), {n * 4 >> 20} MiB", t, bytes=2 * n * 4))

    half = cp.empty(n, dtype=ml_dtypes.bfloat16)
    try:
        cp.copyto(half, src)
        ref = lambda: cp.copyto(half, src)  # noqa: E731
    except Exception:  # noqa: BLE001  (a CuPy without bfloat16 casts: no reference for this case)
        ref = None
    t, t_ref = ctx.compare(lambda: launch.copy(half, src), ref)
    rows.append(Row("copy", f"cast f32 -> bf16, {n >> 20}M elements", t, bytes=n * 6, ref_time_s=t_ref,
                    reference="cupy.copyto" if ref else ""))

    square = src[: side * side].reshape(side, side)
    out = cp.empty_like(square)
    t, t_ref = ctx.compare(lambda: launch.copy(out, square.T), lambda: cp.copyto(out, square.T))
    rows.append(Row("copy", f"f32 transpose {side}x{side} (strided)", t, bytes=2 * side * side * 4,
                    ref_time_s=t_ref, reference="cupy.copyto"))
    return rows
