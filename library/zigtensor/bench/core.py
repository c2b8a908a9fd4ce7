"""The core suite: autograd overhead of one recorded op, float32 matmul against NumPy, and one training step
of a 784-256-256-10 MLP with Adam against PyTorch eager. Run with `zt bench core`."""

from __future__ import annotations

import importlib
import platform

import numpy as np

import zigtensor as zt
import zigtensor.nn.functional as F

from .timing import Result, median_interleaved


def _torch():
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def autograd_overhead(repeats: int = 30) -> Result:
    """Median time of `a * b` on 4-element tensors that require grad (the graph is recorded)."""
    a = zt.randn(4, requires_grad=True)
    b = zt.randn(4, requires_grad=True)
    an, bn = a.numpy(), b.numpy()
    zt_s, np_s = median_interleaved([lambda: a * b, lambda: an * bn], repeats, inner=2000)
    return Result("recorded elementwise mul, 4 elements", zt_s, np_s, "numpy (no graph)")


def autograd_overhead_torch(repeats: int = 30) -> Result | None:
    torch = _torch()
    if torch is None:
        return None
    a, b = zt.randn(4, requires_grad=True), zt.randn(4, requires_grad=True)
    ta, tb = torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True)
    zt_s, t_s = median_interleaved([lambda: a * b, lambda: ta * tb], repeats, inner=2000)
    return Result("recorded elementwise mul, 4 elements", zt_s, t_s, "torch eager")


def matmul(n: int = 1024, repeats: int = 15) -> Result:
    a, b = zt.randn(n, n), zt.randn(n, n)
    an, bn = a.numpy(), b.numpy()
    zt_s, np_s = median_interleaved([lambda: a @ b, lambda: np.matmul(an, bn)], repeats, inner=3)
    return Result(f"matmul {n}x{n} float32", zt_s, np_s, "numpy.matmul")


MLP_SIZES = (784, 256, 256, 10)


def _mlp_data(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ws, bs = [], []
    for fan_in, fan_out in zip(MLP_SIZES, MLP_SIZES[1:]):
        bound = 1 / np.sqrt(fan_in)  # nn.Linear's default init
        ws.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32))
        bs.append(rng.uniform(-bound, bound, (fan_out,)).astype(np.float32))
    x = rng.standard_normal((batch, MLP_SIZES[0])).astype(np.float32)
    y = rng.integers(0, MLP_SIZES[-1], batch)
    return ws, bs, x, y


def mlp_step(batch: int = 128, repeats: int = 60) -> Result:
    """forward, cross-entropy, backward and an Adam update, per step."""
    ws, bs, x, y = _mlp_data(batch)
    params = [zt.tensor(p, requires_grad=True) for wb in zip(ws, bs) for p in wb]
    opt = zt.optim.Adam(params, lr=1e-3)
    zx, zy = zt.tensor(x), zt.tensor(y)

    def zt_step():
        h = zx
        for i in range(3):
            h = F.linear(h, params[2 * i], params[2 * i + 1])
            if i < 2:
                h = F.relu(h)
        loss = F.cross_entropy(h, zy)
        opt.zero_grad()
        loss.backward()
        opt.step()

    torch = _torch()
    if torch is None:
        (zt_s,) = median_interleaved([zt_step], repeats)
        return Result(f"MLP 784-256-256-10 Adam step, batch {batch}", zt_s, None, "torch eager")
    tparams = [torch.tensor(p, requires_grad=True) for wb in zip(ws, bs) for p in wb]
    topt = torch.optim.Adam(tparams, lr=1e-3)
    tx, ty = torch.tensor(x), torch.tensor(y)

    def torch_step():
        h = tx
        for i in range(3):
            h = torch.nn.functional.linear(h, tparams[2 * i], tparams[2 * i + 1])
            if i < 2:
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, ty)
        topt.zero_grad()
        loss.backward()
        topt.step()

    zt_s, t_s = median_interleaved([zt_step, torch_step], repeats)
    return Result(f"MLP 784-256-256-10 Adam step, batch {batch}", zt_s, t_s, "torch eager")


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    torch = _torch()
    versions = f"numpy {np.__version__}" + (f", torch {torch.__version__}" if torch else "")
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {versions}"


def run(quick: bool = False) -> list[Result]:
    scale = 3 if quick else 1
    results = [autograd_overhead(30 // scale)]
    t = autograd_overhead_torch(30 // scale)
    if t is not None:
        results.append(t)
    results.append(matmul(repeats=15 // scale))
    results.append(mlp_step(repeats=60 // scale))
    return results
