"""A small CNN training step (MNIST-shaped) with Adam, zigtensor against PyTorch eager in one process.

    conv 1->32 3x3 pad 1, ReLU, maxpool 2, conv 32->64 3x3 pad 1, ReLU, maxpool 2, flatten,
    linear 3136->128, ReLU, linear 128->10; cross-entropy; Adam; batch 64 of 1x28x28

Both models start from the same weights (PyTorch's init, loaded through load_state_dict) and see the same
batch, so the two steps do the same arithmetic.
"""

from __future__ import annotations

import importlib

import numpy as np

import zigtensor as zt
import zigtensor.nn as nn
import zigtensor.nn.functional as F

from .timing import Result, median_interleaved


def _torch():
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def build(lib):
    """The benchmark model in `lib` (zigtensor.nn or torch.nn): the layers have the same names in both."""
    return lib.Sequential(
        lib.Conv2d(1, 32, 3, padding=1), lib.ReLU(), lib.MaxPool2d(2),  # (N, 32, 14, 14)
        lib.Conv2d(32, 64, 3, padding=1), lib.ReLU(), lib.MaxPool2d(2),  # (N, 64, 7, 7)
        lib.Flatten(), lib.Linear(64 * 7 * 7, 128), lib.ReLU(), lib.Linear(128, 10),
    )


def _batch(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, batch)


def cnn_step(repeats: int = 20, batch: int = 64, settle: float = 0.2) -> Result:
    """Median seconds of one step: forward, cross-entropy, backward, Adam update.

    Each sample is two consecutive steps after `settle` seconds of rest, so that neither library's spinning
    worker threads (OpenBLAS, OpenMP) slow the other down (see median_interleaved); settle=0 times strictly
    alternating single steps instead.
    """
    x, y = _batch(batch)
    model = build(nn)
    torch = _torch()
    if torch is not None:
        torch.manual_seed(0)
        tmodel = build(torch.nn)
        model.load_state_dict(tmodel.state_dict())
    opt = zt.optim.Adam(model.parameters(), lr=1e-3)
    zx, zy = zt.tensor(x), zt.tensor(y)

    def zt_step():
        loss = F.cross_entropy(model(zx), zy)
        opt.zero_grad()
        loss.backward()
        opt.step()

    name = f"CNN 2conv+2fc Adam step, batch {batch}"
    if torch is None:
        (zt_s,) = median_interleaved([zt_step], repeats, inner=2, settle=settle)
        return Result(name, zt_s, None, "torch eager")
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
    tx, ty = torch.tensor(x), torch.tensor(y)

    def torch_step():
        loss = torch.nn.functional.cross_entropy(tmodel(tx), ty)
        topt.zero_grad()
        loss.backward()
        topt.step()

    zt_s, t_s = median_interleaved([zt_step, torch_step], repeats, inner=2 if settle else 1, settle=settle)
    return Result(name, zt_s, t_s, "torch eager")


def run(quick: bool = False) -> list[Result]:
    return [cnn_step(repeats=7 if quick else 20)]


if __name__ == "__main__":
    for settle in (0.2, 0.0):
        r = cnn_step(settle=settle)
        print(f"{r.name} (settle {settle} s): zigtensor {r.zt_s * 1e3:.1f} ms, torch {r.ref_s * 1e3:.1f} ms, "
              f"zigtensor/torch {r.zt_s / r.ref_s:.2f}x")
