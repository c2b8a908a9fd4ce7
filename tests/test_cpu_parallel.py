"""The CPU backend's own threading: CPUBackend.parallel, large matmuls split between the cores with OpenBLAS on
one thread (blas_threads.py), and the GELU and LayerNorm kernels that run in pieces on those threads, each
against NumPy or PyTorch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from oracle import torch

import zigtensor as zt
import zigtensor.nn.functional as F
from zigtensor.backends import blas_threads
from zigtensor.backends import cpu as cpu_backend


def backend():
    return zt.tensor([0.0]).device.backend


@pytest.mark.parametrize("threads", ["1", "2", "5"])
def test_parallel_covers_every_index_once(monkeypatch, threads):
    monkeypatch.setenv("ZT_NUM_THREADS", threads)
    seen = np.zeros(1000, int)

    def chunk(i, j):
        seen[i:j] += 1

    backend().parallel(chunk, 1000, grain=10)
    assert (seen == 1).all()


def test_parallel_inside_a_chunk_runs_on_that_thread(monkeypatch):
    """A chunk that splits again (a split matmul inside a kernel) does not wait on the pool it runs in."""
    monkeypatch.setenv("ZT_NUM_THREADS", "2")
    seen = np.zeros((2, 100), int)

    def inner(i, j, row):
        seen[row, i:j] += 1

    def outer(i, j):
        for row in range(i, j):
            backend().parallel(lambda a, b, row=row: inner(a, b, row), 100)

    backend().parallel(outer, 2)
    assert (seen == 1).all()


def test_parallel_raises_a_chunk_error(monkeypatch):
    monkeypatch.setenv("ZT_NUM_THREADS", "2")

    def chunk(i, j):
        if i > 0:
            raise KeyError(f"chunk {i}")

    with pytest.raises(KeyError, match="chunk 50"):
        backend().parallel(chunk, 100)


def test_openblas_thread_count_is_read_and_set():
    before = blas_threads.blas_threads()
    if before is None:
        pytest.skip("NumPy's BLAS is not OpenBLAS")
    try:
        assert blas_threads.set_blas_threads(2) and blas_threads.blas_threads() == 2
        assert blas_threads.set_blas_threads(1) and blas_threads.blas_threads() == 1
    finally:
        blas_threads.set_blas_threads(before)
    with pytest.raises(ValueError, match="expected a positive thread count, got 0"):
        blas_threads.set_blas_threads(0)


@pytest.mark.parametrize("shape", [(700, 300, 200), (40, 3000, 900), (256, 64, 8)])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_split_matmul_matches_numpy(monkeypatch, shape, layout):
    """Rows split (tall a) or columns split (wide b), on contiguous and transposed operands."""
    monkeypatch.setenv("ZT_NUM_THREADS", "2")
    monkeypatch.setattr(blas_threads, "blas_threads", lambda: 1)  # the split path, whatever BLAS runs on now
    M, K, N = shape
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    if layout == "F":
        a, b = np.asfortranarray(a), np.asfortranarray(b)
    np.testing.assert_allclose(backend().matmul(a, b), a @ b, rtol=1e-12, atol=1e-10)
    v, u = rng.standard_normal(M), rng.standard_normal(K)  # vector-matrix and matrix-vector
    np.testing.assert_allclose(backend().matmul(v, a), v @ a, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(backend().matmul(a, u), a @ u, rtol=1e-12, atol=1e-10)
    bias = rng.standard_normal(M)  # Linear's product with its bias: x (N, K) @ w.T + bias for w (M, K)
    got = backend().linear_forward(b.T, a, bias)
    if M * K * N < 1 << 21:  # too small to split: Linear runs matmul and adds the bias itself
        assert got is None
    else:
        np.testing.assert_allclose(got, b.T @ a.T + bias, rtol=1e-12, atol=1e-10)


def _plan(monkeypatch, a, b, short_spin=True, busy=False):
    monkeypatch.setenv("ZT_NUM_THREADS", "2")
    monkeypatch.setattr(blas_threads, "blas_threads", lambda: 1)
    monkeypatch.setattr(blas_threads, "spin_is_short", lambda: short_spin)
    monkeypatch.setattr(cpu_backend, "_machine_busy", lambda: busy)
    return backend()._matmul_plan(a, b)


def test_matmul_plan_by_size_spin_and_load(monkeypatch):
    """Medium products go to OpenBLAS's threads only while their spin is short and the cores are free; large
    ones are split between zigtensor's threads; small ones run as they are."""
    medium = np.ones((128, 784), np.float32), np.ones((784, 256), np.float32)  # 25.7M multiply-adds
    large = np.ones((4096, 128), np.float32), np.ones((128, 384), np.float32)  # 201M
    small = np.ones((64, 64), np.float32), np.ones((64, 64), np.float32)
    assert _plan(monkeypatch, *medium) == "blas"
    assert _plan(monkeypatch, *medium, short_spin=False) == "split"
    assert _plan(monkeypatch, *medium, busy=True) == "split"
    assert _plan(monkeypatch, *large) == "split"
    assert _plan(monkeypatch, *small) == "one"
    assert _plan(monkeypatch, medium[0], medium[1][:, 0]) == "one"  # a matrix-vector product is never "blas"
    seen = []
    backend().parallel(lambda i, j: seen.append(backend()._matmul_plan(*medium)), 2)
    assert sorted(seen) == ["blas", "split"]  # the caller's chunk may; a pool thread's chunk never does


def test_medium_matmul_on_blas_threads_matches_numpy_and_restores_one_thread(monkeypatch):
    calls = []
    real = blas_threads.set_blas_threads
    monkeypatch.setattr(blas_threads, "set_blas_threads", lambda n: calls.append(n) or real(n))
    rng = np.random.default_rng(7)
    a, w = rng.standard_normal((128, 784)), rng.standard_normal((256, 784))
    assert _plan(monkeypatch, a, w.T) == "blas"
    np.testing.assert_allclose(backend().matmul(a, w.T), a @ w.T, rtol=1e-12, atol=1e-10)
    assert calls == [2, 1]
    assert backend().linear_forward(a, w, None) is None  # Linear then runs matmul (on BLAS's threads)


@pytest.mark.parametrize("shape, plan", [((128, 784, 256), "blas"), ((4096, 128, 384), "split"), ((3, 4, 5), "one")])
def test_matmul_writes_into_out_for_every_plan(monkeypatch, shape, plan):
    """matmul(a, b, out=): the LSTM's step products go through it (onto OpenBLAS's threads for medium sizes)."""
    n, k, m = shape
    rng = np.random.default_rng(9)
    a, w = rng.standard_normal((n, k)), rng.standard_normal((m, k))
    assert _plan(monkeypatch, a, w.T) == plan
    out = np.full((n, m), np.nan)
    assert backend().matmul(a, w.T, out=out) is out
    np.testing.assert_allclose(out, a @ w.T, rtol=1e-12, atol=1e-10)
    half = np.empty((n, m), np.float16)
    backend().matmul(a.astype(np.float16), w.T.astype(np.float16), out=half)
    np.testing.assert_allclose(half, (a.astype(np.float16).astype(np.float32) @ w.T.astype(np.float16)
                                      .astype(np.float32)).astype(np.float16), rtol=1e-3, atol=1e-3)


def test_openblas_spin_is_shortened_only_before_numpy_loads():
    """zigtensor sets OPENBLAS_THREAD_TIMEOUT when it is imported before NumPy (OpenBLAS reads it as it loads),
    never after, and never over the user's value; the CLI sets the same value."""
    from zigtensor_cli.app import OPENBLAS_SPIN

    assert (blas_threads.SPIN_ENV, str(blas_threads.SHORT_SPIN)) == OPENBLAS_SPIN
    env = {k: v for k, v in os.environ.items() if k != blas_threads.SPIN_ENV}
    show = "import os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    run = lambda code, **extra: subprocess.run([sys.executable, "-c", code], env={**env, **extra}, text=True,  # noqa: E731
                                               capture_output=True, check=True).stdout.split()
    assert run(f"import zigtensor; {show}") == [str(blas_threads.SHORT_SPIN)]
    assert run(f"import numpy, zigtensor; {show}") == ["None"]
    assert run(f"import zigtensor; {show}", OPENBLAS_THREAD_TIMEOUT="25") == ["25"]


@pytest.mark.parametrize("approximate", ["tanh", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gelu_kernels_match_torch(approximate, dtype):
    """Large enough to be split between threads and cut into pieces; extreme inputs give no nan."""
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((3, 270001)) * 4).astype(dtype)
    a[0, :6] = [-100.0, -30.0, -1e-3, 0.0, 30.0, 100.0]
    g = rng.standard_normal(a.shape).astype(dtype)
    x = zt.tensor(a, requires_grad=True)
    y = F.gelu(x, approximate=approximate)
    y.backward(zt.tensor(g))
    t = torch.tensor(a, requires_grad=True)
    ty = torch.nn.functional.gelu(t, approximate=approximate)
    ty.backward(torch.tensor(g))
    tol = dict(atol=1e-12, rtol=1e-10) if dtype == np.float64 else dict(atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), **tol)
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), **tol)


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_kernels_match_torch(affine):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 3000, 96)) * 3 + 1
    g = rng.standard_normal(a.shape)
    w, b = (rng.standard_normal(96) if affine else None for _ in range(2))
    x = zt.tensor(a, requires_grad=True)
    zw, zb = (None if p is None else zt.tensor(p, requires_grad=True) for p in (w, b))
    F.layer_norm(x, (96,), zw, zb).backward(zt.tensor(g))
    t = torch.tensor(a, requires_grad=True)
    tw, tb = (None if p is None else torch.tensor(p, requires_grad=True) for p in (w, b))
    torch.nn.functional.layer_norm(t, (96,), tw, tb).backward(torch.tensor(g))
    tol = dict(atol=1e-10, rtol=1e-8)
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), **tol)
    if affine:
        np.testing.assert_allclose(zw.grad.numpy(), tw.grad.numpy(), **tol)
        np.testing.assert_allclose(zb.grad.numpy(), tb.grad.numpy(), **tol)


@pytest.mark.parametrize("plan, threads", [("split", "2"), ("split", "5"), ("blas", "2"), ("one", "1")])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("input_grad", [True, False])
def test_linear_backward_on_arrays_matches_torch(monkeypatch, plan, threads, bias, input_grad):
    """Linear's backward on arrays (backend.linear_backward) over a 3-d input, for each way the products run
    (split side by side between the cores, on OpenBLAS's threads, one call each), with and without the input's
    gradient, against PyTorch; the same Linear under create_graph takes the composed backward and agrees too."""
    monkeypatch.setenv("ZT_NUM_THREADS", threads)
    monkeypatch.setattr(blas_threads, "blas_threads", lambda: 1)
    monkeypatch.setattr(blas_threads, "spin_is_short", lambda: plan == "blas")
    monkeypatch.setattr(cpu_backend, "_machine_busy", lambda: False)
    rng = np.random.default_rng(5)
    a, w, g = rng.standard_normal((6, 170, 96)), rng.standard_normal((130, 96)), rng.standard_normal((6, 170, 130))
    b = rng.standard_normal(130) if bias else None
    assert backend()._matmul_plan(g.reshape(-1, 130).T, a.reshape(-1, 96)) == plan
    dx, dw, db = backend().linear_backward(g.reshape(-1, 130), a.reshape(-1, 96), w, input_grad, bias)
    assert (dx is None) != input_grad and (db is None) != bias
    t = [torch.tensor(p, requires_grad=True) for p in (a, w, b) if p is not None]
    t[0].requires_grad_(input_grad)
    torch.nn.functional.linear(*t).backward(torch.tensor(g))
    for create_graph in (False, True):
        z = [zt.tensor(p, requires_grad=True) for p in (a, w, b) if p is not None]
        z[0].requires_grad = input_grad
        F.linear(*z).backward(zt.tensor(g), create_graph=create_graph)
        for zp, tp in zip(z, t):
            assert (zp.grad is None) == (tp.grad is None)
            if tp.grad is not None:
                np.testing.assert_allclose(zp.grad.numpy(), tp.grad.numpy(), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("plan, threads", [("split", "2"), ("split", "3"), ("blas", "2"), ("one", "1")])
def test_layer_norm_linear_in_one_region_matches_torch(monkeypatch, plan, threads):
    """LayerNorm folded into the Linear it feeds: normalize and multiply in one region, and d xhat with
    LayerNorm's backward in the region of the weight gradient, for each way the products run."""
    monkeypatch.setenv("ZT_NUM_THREADS", threads)
    monkeypatch.setattr(blas_threads, "blas_threads", lambda: 1)
    monkeypatch.setattr(blas_threads, "spin_is_short", lambda: plan == "blas")
    monkeypatch.setattr(cpu_backend, "_machine_busy", lambda: False)
    rng = np.random.default_rng(10)
    arrays = [rng.standard_normal(s) for s in ((4, 600, 64), (64,), (64,), (96, 64), (96,))]
    g = rng.standard_normal((4, 600, 96))
    assert backend()._matmul_plan(arrays[0].reshape(-1, 64), arrays[3].T) == plan
    z = [zt.tensor(a, requires_grad=True) for a in arrays]
    t = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = F.layer_norm_linear(*z)
    assert type(y.grad_fn).__name__ == "LayerNormLinear"
    y.backward(zt.tensor(g))
    ty = torch.nn.functional.linear(torch.nn.functional.layer_norm(t[0], (64,), t[1], t[2]), t[3], t[4])
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-11)
    for a, b in zip(z, t):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-11, atol=1e-10)


@pytest.mark.parametrize("approximate", ["tanh", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("plan, threads, residual", [("split", "2", True), ("split", "3", False),
                                                     ("blas", "2", True), ("one", "1", True)])
def test_gelu_linear_in_one_region_matches_torch(monkeypatch, plan, threads, residual, dtype, approximate):
    """A GELU and the Linear it feeds (plus a residual): activate and multiply in one region, and d gelu(h)
    turned into dh in the region of the weight gradient, for each way the products run."""
    monkeypatch.setenv("ZT_NUM_THREADS", threads)
    monkeypatch.setattr(blas_threads, "blas_threads", lambda: 1)
    monkeypatch.setattr(blas_threads, "spin_is_short", lambda: plan == "blas")
    monkeypatch.setattr(cpu_backend, "_machine_busy", lambda: False)
    rng = np.random.default_rng(12)
    arrays = [(rng.standard_normal(s) * 2).astype(dtype) for s in ((4, 300, 256), (64, 256), (64,), (4, 300, 64))]
    if not residual:
        arrays[3] = None
    g = rng.standard_normal((4, 300, 64)).astype(dtype)
    assert backend()._matmul_plan(arrays[0].reshape(-1, 256), arrays[1].T) == plan
    z = [None if a is None else zt.tensor(a, requires_grad=True) for a in arrays]
    t = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    y = F.gelu_linear(*z, approximate=approximate)
    assert type(y.grad_fn).__name__ == "GeluLinear"
    y.backward(zt.tensor(g))
    ty = torch.nn.functional.linear(torch.nn.functional.gelu(t[0], approximate=approximate), t[1], t[2])
    if residual:
        ty = ty + t[3]
    ty.backward(torch.tensor(g))
    tol = dict(rtol=1e-11, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=5e-4)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), **tol)
    for a, b in zip(z, t):
        if a is not None:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **tol)


def test_gelu_linear_second_derivatives_match_the_composed_ops():
    """create_graph=True: GeluLinear's backward is the composed ops, recorded, so gradients of gradients work."""
    rng = np.random.default_rng(13)
    h, w, b = (zt.tensor(rng.standard_normal(s), requires_grad=True) for s in ((3, 5, 8), (4, 8), (4,)))

    def grad_of_grad(y):
        gh, = zt.autograd.grad(y.sum(), [h], create_graph=True)
        return zt.autograd.grad((gh ** 2).sum(), [h])[0].numpy()

    fused = F.gelu_linear(h, w, b, approximate="tanh")
    assert type(fused.grad_fn).__name__ == "GeluLinear"
    np.testing.assert_allclose(grad_of_grad(fused), grad_of_grad(F.linear(F.gelu(h, approximate="tanh"), w, b)),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", ["2", "3"])
def test_split_linear_adds_the_residual_per_part(monkeypatch, threads):
    """The residual of LinearAdd added by each core to its rows (a tall product) or columns (a wide one)."""
    monkeypatch.setenv("ZT_NUM_THREADS", threads)
    monkeypatch.setattr(blas_threads, "blas_threads", lambda: 1)
    monkeypatch.setattr(blas_threads, "spin_is_short", lambda: False)
    rng = np.random.default_rng(11)
    for n, k, m in ((3000, 64, 96), (40, 300, 2000)):
        x, w, b, r = (rng.standard_normal(s) for s in ((n, k), (m, k), (m,), (n, m)))
        np.testing.assert_allclose(backend().linear_forward(x, w, b, r), x @ w.T + b + r, rtol=1e-12, atol=1e-10)


def test_linear_backward_leaves_16_bit_floats_to_tensor_ops():
    g = np.ones((4, 3), np.float16)
    assert backend().linear_backward(g, np.ones((4, 2), np.float16), np.ones((3, 2), np.float16), True, True) is None


def test_layer_norm_parameter_gradients_are_the_same_bits_every_run(monkeypatch):
    """With more threads than two, the pieces' column sums still add in row order, not in the order the
    threads finish."""
    monkeypatch.setenv("ZT_NUM_THREADS", "5")
    rng = np.random.default_rng(8)
    x, g = rng.standard_normal((20000, 64)).astype(np.float32), rng.standard_normal((20000, 64)).astype(np.float32)
    w, b = np.ones(64, np.float32), np.zeros(64, np.float32)
    _, xhat, rstd = backend().layer_norm_forward(x, w, b, 1e-5)
    runs = [backend().layer_norm_backward(g, x, w, xhat, rstd, True) for _ in range(6)]
    for dx, dw, db in runs[1:]:
        for got, want in zip((dx, dw, db), runs[0]):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_kernels_split_between_threads_match_torch(monkeypatch, smoothing, reduction):
    """The CPU backend's fused cross-entropy rows (split between threads, in pieces) with ignored targets."""
    monkeypatch.setenv("ZT_NUM_THREADS", "2")
    rng = np.random.default_rng(6)
    a = rng.standard_normal((9000, 37)) * 5
    t = rng.integers(0, 37, 9000)
    t[::7] = -100
    g = rng.standard_normal(9000) if reduction == "none" else 1.0
    x = zt.tensor(a, requires_grad=True)
    loss = F.cross_entropy(x, zt.tensor(t), reduction=reduction, label_smoothing=smoothing)
    loss.backward(zt.tensor(g) if reduction == "none" else None)
    tx = torch.tensor(a, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tx, torch.tensor(t), reduction=reduction, label_smoothing=smoothing)
    tl.backward(torch.tensor(g) if reduction == "none" else None)
    np.testing.assert_allclose(loss.numpy(), tl.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("threads", ["1", "2", "3"])
@pytest.mark.parametrize("case", ["conv_batched", "conv", "conv_groups"])
def test_conv_split_over_images_matches_torch(monkeypatch, threads, case):
    """Conv's chunks of images run on the cores (forward, input and weight gradients, each core's weight
    gradient summed in order): against PyTorch, on a batch that spreads over every core count."""
    monkeypatch.setenv("ZT_NUM_THREADS", threads)
    rng = np.random.default_rng(7)
    c_in, c_out, groups = {"conv_batched": (1, 8, 1), "conv": (6, 10, 1), "conv_groups": (6, 4, 2)}[case]
    x = rng.standard_normal((9, c_in, 12, 11)).astype(np.float32)
    w = (rng.standard_normal((c_out, c_in // groups, 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    g = rng.standard_normal((9, c_out, 6, 6)).astype(np.float32)
    zx, zw, zb = (zt.tensor(a, requires_grad=True) for a in (x, w, b))
    F.conv2d(zx, zw, zb, stride=2, padding=1, groups=groups).backward(zt.tensor(g))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    torch.nn.functional.conv2d(tx, tw, tb, stride=2, padding=1, groups=groups).backward(torch.tensor(g))
    for z, t in ((zx, tx), (zw, tw), (zb, tb)):
        np.testing.assert_allclose(z.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threads", ["1", "2", "3"])
@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
def test_max_pool_split_over_images_matches_torch(monkeypatch, threads, kwargs):
    """MaxPool's images on the cores (64K elements a core at least): values, and gradients also where windows
    overlap."""
    monkeypatch.setenv("ZT_NUM_THREADS", threads)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((12, 16, 32, 32)).astype(np.float32)
    zx, tx = zt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    zy, ty = F.max_pool2d(zx, **kwargs), torch.nn.functional.max_pool2d(tx, **kwargs)
    np.testing.assert_array_equal(zy.numpy(), ty.detach().numpy())
    g = rng.standard_normal(ty.shape).astype(np.float32)
    zy.backward(zt.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(zx.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-6)
