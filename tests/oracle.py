"""The oracles, in one place: PyTorch (CPU) for values and gradients, float64 finite differences.

One line per test case:

    helper_test_op([(45, 65)], lambda x: x.exp())                      # same lambda for torch and zigtensor
    helper_test_op([(3, 4), (4,)], lambda x, y: x + y, layout="T")     # transposed (non-contiguous) inputs
    helper_test_op([(4, 5)], torch_fn, zt_fn)                          # when the spellings differ

With ZT_REQUIRE_ORACLES=1 (CI), a missing oracle fails the run instead of skipping.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

import zigtensor as zt

FORWARD_ATOL, FORWARD_RTOL = 1e-5, 1e-3
GRAD_ATOL, GRAD_RTOL = 1e-4, 1e-3


def oracle(name: str):
    """Import an oracle library, or skip (fail under ZT_REQUIRE_ORACLES=1) when it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        if os.environ.get("ZT_REQUIRE_ORACLES") == "1":
            pytest.fail(f"oracle {name!r} is required (ZT_REQUIRE_ORACLES=1) but cannot be imported: {e}",
                        pytrace=False)
        pytest.skip(f"oracle {name!r} not installed", allow_module_level=True)


torch = oracle("torch")

_TORCH_DTYPES = {
    zt.float32: torch.float32, zt.float64: torch.float64, zt.float16: torch.float16, zt.bfloat16: torch.bfloat16,
    zt.int64: torch.int64, zt.int32: torch.int32, zt.int8: torch.int8, zt.uint8: torch.uint8, zt.bool: torch.bool,
    zt.int16: torch.int16,
}


def torch_dtype(dtype):
    return _TORCH_DTYPES[dtype]


def to_numpy(x) -> np.ndarray:
    """Values of a torch or zigtensor tensor as a NumPy array (bfloat16 widened to float32)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.numpy()
    arr = x.numpy()
    return arr.astype(np.float32) if arr.dtype == zt.bfloat16.np else arr


def _make_array(rng, shape, dtype, low, high):
    if dtype == zt.bool:
        return rng.random(shape) > 0.5
    if dtype.is_floating_point:
        return rng.uniform(low, high, size=shape).astype(np.float64)
    return rng.integers(int(low), int(high) + 1, size=shape).astype(dtype.np)


def _layout(arr: np.ndarray, layout: str | None, make):
    """Return (torch, zt) tensors with the same values laid out non-contiguously as asked."""
    if layout is None or arr.ndim == 0:
        return make(arr)
    if layout == "T":  # transposed view of a contiguous buffer
        t, z = make(np.ascontiguousarray(arr.T))
        return t.T, z.T
    if layout == "sliced":  # every other element of a wider buffer along the last dim
        wide = np.repeat(arr, 2, axis=-1)
        t, z = make(wide)
        idx = (slice(None),) * (arr.ndim - 1) + (slice(None, None, 2),)
        return t[idx], z[idx]
    raise ValueError(f"unknown layout {layout!r}")


def make_inputs(shapes, dtype=zt.float32, low=-2.0, high=2.0, seed=0, layout=None, requires_grad=True, values=None):
    """Seeded uniform(low, high) inputs as matching (torch, zigtensor) leaf tensors."""
    rng = np.random.default_rng(seed)
    arrays = values if values is not None else [_make_array(rng, s, dtype, low, high) for s in shapes]
    ts, zs = [], []
    for arr in arrays:
        arr = np.asarray(arr)
        grad = requires_grad and dtype.is_floating_point and arr.dtype.kind == "f"

        def make(a, grad=grad):
            t = torch.tensor(a.astype(np.float64) if a.dtype.kind == "f" else a,
                             dtype=torch_dtype(dtype) if a.dtype.kind == "f" else None)
            z = zt.tensor(a.astype(np.float64) if a.dtype.kind == "f" else a,
                          dtype=dtype if a.dtype.kind == "f" else None)
            return t, z

        t, z = _layout(arr, layout, make)
        if grad:  # leaves that keep the (possibly strided) layout of the view
            t = t.detach().requires_grad_(True)
            z = zt.Tensor._wrap(z.data, z.device).requires_grad_(True)
        ts.append(t)
        zs.append(z)
    return ts, zs


def compare(name, got, want, atol, rtol):
    g, w = to_numpy(got), to_numpy(want)
    assert g.shape == w.shape, f"{name}: shape {g.shape} != torch's {w.shape}"
    np.testing.assert_allclose(g.astype(np.float64) if g.dtype.kind != "b" else g,
                               w.astype(np.float64) if w.dtype.kind != "b" else w,
                               atol=atol, rtol=rtol, err_msg=name)


# On CUDA, sums are added in another order (tree reductions, split-K) and float32 products may run on
# tensor cores (TF32): results are compared with at least these (atol, rtol) per dtype there.
CUDA_TOLERANCE = {zt.float32: (1e-4, 2e-3), zt.float64: (1e-10, 1e-7), zt.float16: (1e-2, 1e-2),
                  zt.bfloat16: (2e-2, 2e-2)}
CUDA_TF32_TOLERANCE = (1e-2, 1e-2)  # float32 under ZT_TF32=1


def device_tolerance(dtype, atol: float, rtol: float) -> tuple[float, float]:
    """(atol, rtol) for results of dtype on the default device: the caller's on the CPU, never tighter than
    CUDA_TOLERANCE on CUDA."""
    if zt.get_default_device().type != "cuda" or dtype not in CUDA_TOLERANCE:
        return atol, rtol
    floor = CUDA_TF32_TOLERANCE if dtype is zt.float32 and os.environ.get("ZT_TF32") == "1" else CUDA_TOLERANCE[dtype]
    return max(atol, floor[0]), max(rtol, floor[1])


def _outputs(x):
    return list(x) if isinstance(x, (tuple, list)) else [x]


def helper_test_op(shapes, torch_fn, zt_fn=None, *, dtype=zt.float32, low=-2.0, high=2.0, atol=FORWARD_ATOL,
                   rtol=FORWARD_RTOL, grad_atol=GRAD_ATOL, grad_rtol=GRAD_RTOL, forward_only=False, layout=None,
                   values=None, seed=0):
    """Run the op in torch and zigtensor on the same inputs; compare shapes, dtypes, values and gradients.

    Gradients are of a seeded random weighting of the first floating output (a plain sum hides errors that
    cancel, as softmax's does).
    """
    zt_fn = zt_fn or torch_fn
    atol, rtol = device_tolerance(dtype, atol, rtol)
    grad_atol, grad_rtol = device_tolerance(dtype, grad_atol, grad_rtol)
    ts, zs = make_inputs(shapes, dtype, low, high, seed, layout, values=values)
    t_out, z_out = _outputs(torch_fn(*ts)), _outputs(zt_fn(*zs))
    assert len(t_out) == len(z_out), f"{len(z_out)} outputs, torch gives {len(t_out)}"
    for i, (t, z) in enumerate(zip(t_out, z_out)):
        assert isinstance(z, zt.Tensor), f"output {i} is {type(z).__name__}, expected a Tensor"
        assert torch_dtype(z.dtype) == t.dtype, f"output {i}: dtype {z.dtype} != torch's {t.dtype}"
        compare(f"forward output {i}", z, t, atol, rtol)
    if forward_only:
        return
    t_first = next((t for t in t_out if t.requires_grad), None)
    if t_first is None:
        return
    z_first = z_out[t_out.index(t_first)]
    w = np.random.default_rng(seed + 1).uniform(0.5, 1.5, size=tuple(t_first.shape))
    (t_first * torch.tensor(w, dtype=t_first.dtype)).sum().backward()
    (z_first * zt.tensor(w, dtype=z_first.dtype)).sum().backward()
    for i, (t, z) in enumerate(zip(ts, zs)):
        if not t.requires_grad:
            continue
        if t.grad is None:
            assert z.grad is None or not np.any(to_numpy(z.grad)), f"input {i}: zigtensor has a gradient, torch none"
            continue
        assert z.grad is not None, f"input {i}: no gradient from zigtensor"
        assert z.grad.dtype is z.dtype, f"input {i}: grad dtype {z.grad.dtype} != input dtype {z.dtype}"
        compare(f"gradient of input {i}", z.grad, t.grad, grad_atol, grad_rtol)


# ------------------------------------------------------------------------------------------ finite differences
def _numeric_grad(f, arrays, i, eps):
    base = [a.copy() for a in arrays]
    flat = base[i].reshape(-1)
    out = np.zeros(flat.size)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        up = float(f(*[zt.tensor(a) for a in base]).item())
        flat[k] = old - eps
        down = float(f(*[zt.tensor(a) for a in base]).item())
        flat[k] = old
        out[k] = (up - down) / (2 * eps)
    return out.reshape(arrays[i].shape)


def _weighted(f, out_shape_seed):
    """Reduce f's output to a scalar with fixed random weights."""
    cache = {}

    def g(*xs):
        out = f(*xs)
        if out.shape not in cache:
            cache[out.shape] = np.random.default_rng(out_shape_seed).uniform(0.5, 1.5, size=out.shape)
        return (out * zt.tensor(cache[out.shape], dtype=out.dtype)).sum()

    return g


def gradcheck(f, shapes, *, low=-2.0, high=2.0, seed=0, eps=1e-6, atol=1e-6, rtol=1e-4, values=None, only=None):
    """float64 central differences against autograd, for every input (or the indices in `only`)."""
    rng = np.random.default_rng(seed)
    arrays = values if values is not None else [rng.uniform(low, high, size=s) for s in shapes]
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    loss = _weighted(f, seed + 7)
    xs = [zt.tensor(a, requires_grad=True) for a in arrays]
    loss(*xs).backward()
    for i, x in enumerate(xs):
        if only is not None and i not in only:
            continue
        num = _numeric_grad(loss, arrays, i, eps)
        got = np.zeros_like(arrays[i]) if x.grad is None else x.grad.numpy()
        np.testing.assert_allclose(got, num, atol=atol, rtol=rtol, err_msg=f"gradient of input {i}")


def gradgradcheck(f, shapes, *, low=-2.0, high=2.0, seed=0, eps=1e-6, atol=1e-5, rtol=1e-3, values=None):
    """Second order: the gradient of (weighted first-order gradients) against finite differences of them."""
    first = _weighted(f, seed + 7)

    def grad_sum(*xs):
        xs = [x if x.requires_grad else x.detach().requires_grad_(True) for x in xs]
        grads = zt.autograd.grad(first(*xs), xs, create_graph=True, allow_unused=True)
        total = None
        for j, g in enumerate(grads):
            if g is None:
                continue
            w = np.random.default_rng(seed + 11 + j).uniform(0.5, 1.5, size=g.shape)
            term = (g * zt.tensor(w, dtype=g.dtype)).sum()
            total = term if total is None else total + term
        return total

    gradcheck(lambda *xs: grad_sum(*xs), shapes, low=low, high=high, seed=seed, eps=eps, atol=atol, rtol=rtol,
              values=values)
