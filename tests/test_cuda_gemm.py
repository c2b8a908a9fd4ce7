"""kernels/gemm.cu through its launcher (backends/cuda_kernels/gemm.py) against PyTorch (CPU, float64 on the same
rounded inputs): every kernel (naive, simt, tc with fp16/bf16 and tf32), both layouts of each operand (transposed
views), padded rows, edge tiles, batches with broadcasting, 1-D operands, alpha/beta and `out`. GPU cases are
marked `cuda`; a subset runs on the CPU kernel emulator (tensor-core fragments through zt_mma.cuh's stand-ins).
The kernel choice (plan) and the argument errors are tested without any device."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_util import BF16, kernel_device, on_devices
from oracle import oracle

from zigtensor.backends.cuda_kernels import gemm as G

torch = oracle("torch")

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
# normwise tolerance: max |got - want| <= TOL * max |want| (the output is rounded once to its dtype)
TOL = {F64: 1e-12, F32: 2e-5, F16: 2e-3, BF16: 1.6e-2, "tf32": 5e-3}


def _operand(dev, rng, rows, cols, dtype, trans=False, pad=0):
    """A (rows, cols) operand uniform in [-1, 1): (host view, device view) of one stored buffer, stored
    transposed when `trans` (unit stride down the rows) and with `pad` extra elements per stored row (a sliced
    view) when pad > 0."""
    stored = rng.uniform(-1, 1, (cols, rows + pad) if trans else (rows, cols + pad)).astype(dtype)

    def view(x):
        return x[:, :rows].T if trans else x[:, :cols]

    return view(stored), view(dev.asarray(stored))


def _reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return torch.matmul(torch.from_numpy(np.asarray(a, np.float64)),
                        torch.from_numpy(np.asarray(b, np.float64))).numpy()


def _check(name, got, want, tol):
    got = np.asarray(got).astype(np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    scale = max(float(np.abs(want).max()) if want.size else 0.0, 1e-30)
    err = float(np.abs(got - want).max()) if want.size else 0.0
    assert err <= tol * scale, f"{name}: max error {err:.3g} > {tol} * max |want| {scale:.3g}"


# (M, N, K): single elements, odd sizes, edges of the 64/128 tiles, k tails of every k tile (8, 16, 32)
SHAPES = [(1, 1, 1), (7, 5, 3), (16, 8, 16), (64, 64, 64), (65, 63, 33), (129, 130, 17), (200, 72, 264),
          (255, 257, 131), (512, 384, 768)]
LAYOUTS = [(0, 0), (1, 0), (0, 1), (1, 1)]
KERNELS = [("naive", F32), ("naive", F64), ("simt", F32), ("simt", F64), ("simt", F16), ("simt", BF16),
           ("tc", F16), ("tc", BF16), ("tf32", F32), ("auto", F32), ("auto", BF16)]
CASES = [(shape, layout, kernel, dtype) for shape in SHAPES for layout in LAYOUTS for kernel, dtype in KERNELS]
EMULATED = [((65, 63, 33), (0, 0), "simt", F32), ((37, 130, 21), (1, 1), "simt", F32),
            ((9, 20, 13), (1, 0), "simt", F64), ((40, 24, 33), (0, 1), "simt", BF16),
            ((70, 75, 37), (0, 0), "tc", BF16), ((70, 75, 37), (1, 1), "tc", F16),
            ((70, 75, 37), (1, 0), "tc", BF16), ((70, 75, 37), (0, 1), "tc", F16),
            ((70, 75, 37), (0, 1), "tf32", F32), ((70, 75, 37), (1, 0), "tf32", F32),
            ((17, 9, 5), (1, 0), "naive", F64)]


def _tol(kernel, dtype):
    return TOL["tf32"] if kernel == "tf32" else TOL[dtype]


@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_matmul_2d(device, case, monkeypatch):
    (m, n, k), (ta, tb), kernel, dtype = case
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(m * 1000 + n + k)
    # tensor cores need 16-byte rows: pad the stored rows to a multiple of 16 bytes (a sliced view), so the
    # contiguous dim can end inside a 16-byte chunk (zero-filled by cp.async)
    chunk = 16 // dtype.itemsize
    pad_a = (-(m if ta else k)) % chunk if kernel in ("tc", "tf32") else 0
    pad_b = (-(k if tb else n)) % chunk if kernel in ("tc", "tf32") else 0
    a, da = _operand(dev, rng, m, k, dtype, ta, pad_a)
    b, db = _operand(dev, rng, k, n, dtype, tb, pad_b)
    tile = G.TC_SMALL if dev.emulated else None  # NOTE: the emulator's launch limits allow 48 KB of shared memory
    forced = {"auto": None, "tf32": "tc"}.get(kernel, kernel)
    got = G.matmul(da, db, kernel=forced, tf32=kernel == "tf32", tile=tile)
    assert got.dtype == dtype
    _check(f"{kernel} {dtype} {m}x{n}x{k} layouts {ta}{tb}", dev.numpy(got), _reference(a, b), _tol(kernel, dtype))


BATCHED = [((3, 37, 29), (3, 29, 41)), ((2, 1, 33, 17), (3, 17, 40)), ((33, 17), (4, 17, 40)),
           ((5, 2, 64, 64), (64, 64)), ((2, 3, 4, 9, 8), (3, 1, 8, 7)), ((6, 130, 64), (6, 64, 130)),
           ((7,), (7, 9)), ((4, 9), (9,)), ((11,), (11,)), ((2, 0, 5), (5, 3)), ((3, 4, 0), (0, 6))]
BATCH_CASES = [(shapes, kernel, dtype) for shapes in BATCHED
               for kernel, dtype in [("simt", F32), ("tc", BF16), ("tf32", F32), ("naive", F32), ("auto", F16)]]
BATCH_EMULATED = [(((2, 1, 33, 17), (3, 17, 40)), "simt", F32), (((2, 3, 4, 9, 8), (3, 1, 8, 7)), "simt", F32),
                  (((3, 40, 32), (32, 48)), "tc", BF16), (((7,), (7, 9)), "simt", F32),
                  (((2, 0, 5), (5, 3)), "simt", F32)]


@pytest.mark.parametrize("device,case", on_devices(BATCH_CASES, BATCH_EMULATED))
def test_matmul_batched_broadcast(device, case, monkeypatch):
    (shape_a, shape_b), kernel, dtype = case
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(len(shape_a) * 10 + len(shape_b))
    a = rng.uniform(-1, 1, shape_a).astype(dtype)
    b = rng.uniform(-1, 1, shape_b).astype(dtype)
    aligned = all(s[-1] % (16 // dtype.itemsize) == 0 for s in (shape_a, shape_b))
    forced = {"auto": None, "tf32": "tc"}.get(kernel, kernel)
    if forced == "tc" and not aligned:
        forced = None  # the tensor-core kernel refuses unaligned rows; auto falls back to simt
    tile = G.TC_SMALL if dev.emulated else None
    got = G.matmul(dev.asarray(a), dev.asarray(b), kernel=forced, tf32=kernel == "tf32", tile=tile)
    want = _reference(a, b)
    assert got.shape == want.shape and got.dtype == dtype
    _check(f"{kernel} {shape_a} @ {shape_b}", dev.numpy(got), want, _tol(kernel, dtype))


@pytest.mark.parametrize("device,case", on_devices(["simt", "tc", "naive"], ["simt", "tc"]))
def test_alpha_beta_out(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    dtype = BF16 if case == "tc" else F32
    rng = np.random.default_rng(5)
    a, b = rng.uniform(-1, 1, (2, 40, 24)).astype(dtype), rng.uniform(-1, 1, (24, 56)).astype(dtype)
    c0 = rng.uniform(-1, 1, (2, 40, 56)).astype(dtype)
    tile = G.TC_SMALL if dev.emulated else None
    out = dev.asarray(c0)
    res = G.matmul(dev.asarray(a), dev.asarray(b), out=out, alpha=0.5, beta=-2.0, kernel=case, tile=tile)
    assert res is out
    want = 0.5 * _reference(a, b) - 2.0 * c0.astype(np.float64)
    _check("alpha/beta", dev.numpy(out), want, 2 * TOL[dtype])
    # a non-contiguous out: written through a temporary
    big = dev.asarray(np.zeros((2, 40, 112), dtype))
    view = big[..., ::2]
    G.matmul(dev.asarray(a), dev.asarray(b), out=view, kernel=case, tile=tile)
    _check("strided out", dev.numpy(view), _reference(a, b), TOL[dtype])
    assert not dev.numpy(big)[..., 1::2].any(), "matmul wrote outside the out view"


@pytest.mark.cuda
def test_cublas_option(monkeypatch):
    dev = kernel_device("cuda", monkeypatch)
    rng = np.random.default_rng(6)
    a, b = rng.uniform(-1, 1, (64, 32)).astype(F32), rng.uniform(-1, 1, (32, 48)).astype(F32)
    monkeypatch.setenv("ZT_GEMM", "cublas")
    got = G.matmul(dev.asarray(a), dev.asarray(b))
    _check("cublas", dev.numpy(got), _reference(a, b), TOL["tf32"])


@pytest.mark.cuda
def test_large_batch_splits_grid(monkeypatch):
    """More than 65535 matrices: the launcher splits blockIdx.z into launches with z0 offsets."""
    dev = kernel_device("cuda", monkeypatch)
    rng = np.random.default_rng(7)
    a, b = rng.uniform(-1, 1, (70000, 2, 3)).astype(F32), rng.uniform(-1, 1, (70000, 3, 2)).astype(F32)
    got = G.matmul(dev.asarray(a), dev.asarray(b), kernel="simt")
    _check("70000 batches", dev.numpy(got), _reference(a, b), TOL[F32])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [F16, BF16])
def test_mma_stand_ins_match_hardware(dtype, monkeypatch):
    """zt_mma.cuh's C++ stand-ins for ldmatrix / mma.sync (ZT_MMA_EMULATE) give the hardware's results: the
    fragment layouts the emulator tests rely on are those of the tensor cores."""
    dev = kernel_device("cuda", monkeypatch)
    from zigtensor.backends.cuda_kernels import _launch

    rng = np.random.default_rng(8)
    _, da = _operand(dev, rng, 64, 48, dtype, trans=True)
    _, db = _operand(dev, rng, 48, 56, dtype, trans=True)
    hw = G.matmul(da, db, kernel="tc", tile=G.TC_SMALL)
    real_kernel = _launch.kernel

    def emulated(family, name, defines):
        return real_kernel(family, name, {**defines, "ZT_MMA_EMULATE": 1})

    monkeypatch.setattr(_launch, "kernel", emulated)
    em = G.matmul(da, db, kernel="tc", tile=G.TC_SMALL)
    np.testing.assert_allclose(dev.numpy(em).astype(np.float64), dev.numpy(hw).astype(np.float64),
                               rtol=TOL[dtype], atol=TOL[dtype])


# ------------------------------------------------------------------------------------------ no device needed
def test_operand_layout():
    assert G.operand_layout(4, 6, 6, 1) == G.Layout(0, 6)
    assert G.operand_layout(4, 6, 1, 4) == G.Layout(1, 4)
    assert G.operand_layout(4, 6, 8, 1) == G.Layout(0, 8)       # padded rows
    assert G.operand_layout(4, 6, 2, 8) is None                  # no unit stride: copied
    assert G.operand_layout(4, 6, -6, 1) is None                 # reversed rows: copied
    assert G.operand_layout(1, 5, 0, 3) == G.Layout(1, 3)        # a row with stride 3: read transposed
    assert G.operand_layout(5, 1, 3, 0) == G.Layout(0, 3)        # a column with stride 3
    assert G.operand_layout(1, 5, 0, 1).ld % 8 == 0              # a size-1 dim leaves ld free: aligned


def _plan(dtype, m=256, n=256, k=64, lda=64, ldb=256, ptr=1 << 20, tf32=False, forced=None, sms=132, batch=1):
    return G.plan(dtype, dtype, m, n, k, batch, G.Layout(0, lda), G.Layout(0, ldb), ptr, ptr, (0, 0), (0, 0),
                  sms, tf32, forced)


def test_plan_picks_kernels():
    assert _plan(F32).kernel == "simt"
    assert _plan(F32, tf32=True).kernel == "tc"
    assert _plan(BF16).kernel == "tc" and _plan(F16).kernel == "tc"
    assert _plan(F64).kernel == "simt" and _plan(F64).defines["FP64"] == 1
    assert _plan(BF16, lda=63).kernel == "simt"           # rows not 16-byte aligned
    assert _plan(BF16, ptr=(1 << 20) + 8).kernel == "simt"
    assert _plan(F32, forced="naive").kernel == "naive"
    assert _plan(F32, ldb=254).defines["VEC_B"] == 0 and _plan(F32).defines["VEC_B"] == 1


def test_plan_tile_and_shared_memory():
    big = _plan(BF16, m=4096, n=4096, k=4096, lda=4096, ldb=4096)
    assert big.defines["BM"] == 128 and big.block == (128, 1, 1) and big.grid_xy == (32, 32)
    assert big.shared_mem == 4 * (128 * 40 + 32 * 136) * 2
    small = _plan(BF16, m=100, n=100)
    assert small.defines["BM"] == 64 and small.grid_xy == (2, 2)
    assert G.TcTile(128, 128, 64, 64, 3).smem_bytes(4, 1, 1) == 3 * (16 * 136 + 128 * 20) * 4


def test_plan_refusals():
    with pytest.raises(ValueError, match="16-byte aligned"):
        _plan(BF16, lda=63, forced="tc")
    with pytest.raises(ValueError, match="float64"):
        _plan(F64, forced="tc")
    with pytest.raises(TypeError, match="int32"):
        _plan(np.dtype(np.int32))


def test_matmul_argument_errors():
    a, b = np.zeros((3, 4), np.float32), np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match="inner dims differ"):
        G.matmul(a, b)
    with pytest.raises(TypeError, match="one dtype"):
        G.matmul(a, np.zeros((4, 2), np.float64))
    with pytest.raises(ValueError, match="beta"):
        G.matmul(a, np.zeros((4, 2), np.float32), beta=1.0)
    with pytest.raises(ValueError, match="kernel"):
        G.matmul(a, np.zeros((4, 2), np.float32), kernel="fast")
    with pytest.raises(ValueError, match="do not broadcast"):
        G.matmul(np.zeros((2, 3, 4), np.float32), np.zeros((3, 4, 2), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        G.matmul(a, np.zeros((4, 2), np.float32), out=np.zeros((3, 3), np.float32))
