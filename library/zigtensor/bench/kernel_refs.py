"""What the compute-bound `zt bench ops` families (ops_gemm, ops_attention, ops_conv, ops_quant) share: their
inputs, their references (PyTorch and cuBLAS on the same GPU) and the check that ours computed the same thing.

Under the CPU kernel emulator (ctx.smoke, tests/test_cuda_bench_cases.py) the arrays are NumPy ones and the
PyTorch reference is the CPU build, so the reference code runs in the tests too; on a GPU it is torch with CUDA
(None without it: the rows then have no reference column).
"""

from __future__ import annotations

import contextlib

import ml_dtypes
import numpy as np

BF16 = np.dtype(ml_dtypes.bfloat16)
SIXTEEN_BIT = (np.dtype(np.float16), BF16)


def is_smoke(ctx) -> bool:
    return bool(getattr(ctx, "smoke", False))


def torch_for(ctx):
    """torch for the reference column: CPU torch under the emulator smoke run, torch with CUDA on a GPU, else None."""
    try:
        import torch
    except ImportError:
        return None
    if is_smoke(ctx):
        return torch
    return torch if torch.cuda.is_available() else None


def torch_tensor(torch, x):
    """A torch tensor sharing x's memory (DLPack), or None when no zero-copy path exists.

    NOTE: DLPack carries no bfloat16 in NumPy (and in some CuPy builds): such arrays go through a uint16 view,
    re-read as bfloat16 by torch."""
    try:
        return torch.from_dlpack(x)
    except Exception:  # noqa: BLE001  (this dtype has no DLPack path here: the uint16 view below)
        pass
    if np.dtype(x.dtype) != BF16:
        return None
    try:
        return torch.from_dlpack(x.view(np.uint16)).view(torch.bfloat16)
    except Exception:  # noqa: BLE001  (old torch: no uint16 tensors)
        return None


def cast(x, dtype):
    """x.astype(dtype), through our cast kernel (kernels/elementwise.cu) where the array library has no such cast
    (a CuPy without bfloat16 loops)."""
    try:
        return x.astype(dtype)
    except Exception:  # noqa: BLE001  (no cast loop for this dtype pair in the array library)
        from ..backends.cuda_kernels import elementwise

        return elementwise.cast(x, np.dtype(dtype))


def random_array(ctx, shape, dtype, seed: int = 0, low: float = -1.0, high: float = 1.0):
    """Uniform values in [low, high) of `dtype` on the bench's device (drawn there on a GPU, on the host under the
    emulator)."""
    xp = ctx.cp
    if xp is np:
        host = np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32)
        return host.astype(dtype)
    x = xp.random.default_rng(seed).random(shape, dtype=xp.float32)
    x *= high - low
    x += low
    return cast(x, dtype)


def tolerance(dtype) -> float:
    """Largest |ours - reference| / max |reference| accepted for results of this dtype (fp32 accumulation in a
    different order, one rounding to the output dtype)."""
    return 2e-2 if np.dtype(dtype) in SIXTEEN_BIT else 1e-3


def mismatch(ctx, ours, ref, tol: float) -> str:
    """'' when ours matches ref (an array or a torch tensor) to tol, relative to ref's largest magnitude, else a
    note for the case label: the bench keeps timing (the other cases' figures stay useful) but the row says its
    result is wrong."""
    xp = ctx.cp
    ref32 = as_float32(ctx, ref)
    ours32 = as_float32(ctx, ours)
    if tuple(ours32.shape) != tuple(ref32.shape):
        return f" [MISMATCH: shape {tuple(ours32.shape)} vs reference {tuple(ref32.shape)}]"
    scale = max(float(xp.abs(ref32).max()), 1e-30) if ref32.size else 1.0
    err = float(xp.abs(ours32 - ref32).max()) / scale if ref32.size else 0.0
    if not err <= tol:  # NaN counts as a mismatch
        return f" [MISMATCH: max rel err {err:.2g} > {tol:g}]"
    return ""


def as_float32(ctx, x):
    """x (an array of the bench's module, or a torch tensor) as a float32 array of the bench's module."""
    if hasattr(x, "detach"):  # torch
        t = x.detach().float().contiguous()
        return t.cpu().numpy() if ctx.cp is np else ctx.cp.from_dlpack(t)
    return cast(ctx.cp.asarray(x), np.float32)


@contextlib.contextmanager
def cublas_float32(ctx, tf32: bool):
    """cupy.matmul on float32 runs true SGEMM (tf32=False) or cuBLAS's TF32 tensor-core path (tf32=True) inside.

    NOTE: CuPy picks float32's cuBLAS compute type once (TF32 only with CUPY_TF32=1); we set it explicitly so each
    of our kernels meets its own kind: gemm_simt against SGEMM, gemm_tc on tf32 inputs against cuBLAS TF32."""
    if getattr(ctx.cp, "__name__", "") != "cupy":  # NumPy under the emulator: no cuBLAS to configure
        yield
        return
    from cupy._core import _routines_linalg as linalg

    previous = linalg.get_compute_type(np.float32)
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if tf32 else linalg.COMPUTE_TYPE_DEFAULT)
    try:
        yield
    finally:
        linalg.set_compute_type(np.float32, previous)


def matmul_fn(ctx, dtype):
    """(f, name, uses_torch): f(a, b) computes a @ b on the bench's device with the vendor library, cupy.matmul
    (cuBLAS), or torch.matmul on the same memory where this CuPy cannot multiply the dtype (bfloat16), returning a
    torch tensor then; f is None (name '') when neither can."""
    xp = ctx.cp
    if xp is np:
        return np.matmul, "numpy.matmul (emulator run)", False
    probe = cast(xp.ones((16, 16), dtype=np.float32), dtype)
    try:
        xp.matmul(probe, probe)
        return xp.matmul, "cuBLAS (cupy.matmul)", False
    except Exception:  # noqa: BLE001  (a CuPy without bfloat16 GEMM: PyTorch's cuBLAS call instead)
        pass
    torch = torch_for(ctx)
    if torch is None or torch_tensor(torch, probe) is None:
        return None, "", False
    return (lambda a, b: torch.matmul(torch_tensor(torch, a), torch_tensor(torch, b))), "cuBLAS (torch.matmul)", True


def matmul_call(ctx, a, b):
    """(fn, name): fn() computes a @ b as matmul_fn says (the torch views made once); (None, '') when nothing
    can."""
    f, name, uses_torch = matmul_fn(ctx, a.dtype)
    if f is None:
        return None, ""
    if uses_torch:
        import torch

        ta, tb = torch_tensor(torch, a), torch_tensor(torch, b)
        return (lambda: torch.matmul(ta, tb)), name
    return (lambda: f(a, b)), name
