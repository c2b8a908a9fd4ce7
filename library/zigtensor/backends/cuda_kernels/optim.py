"""Fused optimizer steps over lists of tensors, on kernels/optim.cu: one launch per (parameter dtype, gradient
dtype) group, whatever the number of tensors.

    sgd_step(params, grads, momentum_buffers, first_step, lr=0.1, momentum=0.9)
    adam_step(params, grads, exp_avgs, exp_avg_sqs, None, t, lr=1e-3, decoupled=True, weight_decay=0.01)

Everything is updated in place. The step count's bias corrections are computed here on the host. Optimizer
state (momentum buffers, moments) is float32 (float64 for float64 parameters). `masters` (float32 copies of
bfloat16/float16 parameters) makes the step update the masters and write the parameters rounded from them.
`grad_scale` multiplies every gradient first (1 / loss scale under fp16 loss scaling).
"""

from __future__ import annotations

import math

import numpy as np

from ._launch import DeviceArrayCache, array_module, blocks, check_float, ctype, data_ptr, kernel, sm_count

CHUNK = 65536  # elements per block-sized piece of a tensor (a multiple of 4)
THREADS = 512
_TABLE_CACHE = 64
_tables = DeviceArrayCache(_TABLE_CACHE)


def _cached(xp, key: tuple, make):
    """A small device array built by make(), kept per (array module, key): the same tensors, hence the same
    addresses and sizes, recur every step, so their tables are uploaded once."""
    return _tables.get((xp.__name__, key), make)


def _pointer_table(xp, arrays):
    """uint64 device array of the arrays' addresses, or None when there are no arrays (a NULL table)."""
    if arrays is None:
        return None
    ptrs = tuple(data_ptr(a) for a in arrays)
    return _cached(xp, ("ptr", ptrs), lambda: xp.asarray(np.array(ptrs, dtype=np.uint64)))


def _layout(xp, params):
    """(sizes, chunk_starts, total chunks): int64 device arrays of the tensors' sizes and of the first global
    chunk of each (then the total), and the total."""
    sizes, chunk = tuple(int(p.size) for p in params), CHUNK
    starts = [0]
    for n in sizes:
        starts.append(starts[-1] + -(-n // chunk))
    arrays = _cached(xp, ("layout", sizes, chunk), lambda: (xp.asarray(np.array(sizes, dtype=np.int64)),
                                                     xp.asarray(np.array(starts, dtype=np.int64))))
    return arrays[0], arrays[1], starts[-1]


def _check_lists(op: str, params, named: dict) -> None:
    n = len(params)
    for name, lst in named.items():
        if lst is not None and len(lst) != n:
            raise ValueError(f"{op}: {len(lst)} {name} for {n} params")
    for i, p in enumerate(params):
        check_float(op, f"params[{i}]", p)
        if not p.flags.c_contiguous:
            raise ValueError(f"{op}: params[{i}] must be C-contiguous (it is updated in place)")
        state = np.float64 if p.dtype == np.float64 else np.float32
        for name, lst in named.items():
            if lst is None:
                continue
            a = lst[i]
            if tuple(a.shape) != tuple(p.shape):
                raise ValueError(f"{op}: {name}[{i}] has shape {tuple(a.shape)}, params[{i}] {tuple(p.shape)}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{op}: {name}[{i}] must be C-contiguous")
            if name == "grads":
                check_float(op, f"grads[{i}]", a)
            elif a.dtype != state:
                raise TypeError(f"{op}: {name}[{i}] must be {np.dtype(state).name} (the state of a "
                                f"{p.dtype} parameter), got {a.dtype}")


def _groups(params, grads):
    """Indices of the tensors grouped by (parameter dtype, gradient dtype): one launch each."""
    out: dict = {}
    for i, (p, g) in enumerate(zip(params, grads)):
        out.setdefault((np.dtype(p.dtype), np.dtype(g.dtype)), []).append(i)
    return out


def _pick(lst, idx):
    return None if lst is None else [lst[i] for i in idx]


def _launch(op: str, name: str, params, grads, tables_after_grads: list, scalars: tuple) -> None:
    xp = array_module(params[0])
    for (pdtype, gdtype), idx in _groups(params, grads).items():
        group = [params[i] for i in idx]
        sizes, starts, total = _layout(xp, group)
        if total == 0:
            continue
        defines = {"PT": ctype(pdtype), "GT": ctype(gdtype), "ST": "double" if pdtype == np.float64 else "float"}
        tables = [_pointer_table(xp, _pick(t, idx)) for t in tables_after_grads]
        k = kernel("optim", name, defines)
        k(blocks(total, 1, cap=sm_count(xp) * 8), THREADS,
          (_pointer_table(xp, group), _pointer_table(xp, [grads[i] for i in idx]), *tables, sizes, starts, len(idx),
           CHUNK, *scalars))


def _number(op: str, name: str, v, low: float = 0.0) -> float:
    if not isinstance(v, (int, float, np.floating, np.integer)) or isinstance(v, bool) or not math.isfinite(v) \
            or v < low:
        raise ValueError(f"{op}: {name} must be a finite number >= {low}, got {v!r}")
    return float(v)


def sgd_step(params, grads, momentum_buffers=None, first_step: bool = False, *, lr: float, momentum: float = 0.0,
             dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False,
             masters=None, grad_scale: float = 1.0) -> None:
    """One SGD step on every tensor (PyTorch's update, see kernels/optim.cu); momentum needs the buffers, which
    the first step (first_step=True) fills with the gradient."""
    op = "sgd_step"
    if not params:
        return
    if momentum and momentum_buffers is None:
        raise ValueError(f"{op}: momentum={momentum} needs momentum_buffers")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"{op}: Nesterov momentum needs momentum > 0 and dampening 0, got momentum={momentum}, "
                         f"dampening={dampening}")
    _check_lists(op, params, {"grads": grads, "momentum_buffers": momentum_buffers if momentum else None,
                              "masters": masters})
    scalars = (_number(op, "lr", lr), _number(op, "momentum", momentum), float(dampening),
               _number(op, "weight_decay", weight_decay), int(bool(nesterov)), int(bool(maximize)),
               int(bool(first_step)), _number(op, "grad_scale", grad_scale))
    _launch(op, "sgd_step", params, grads, [momentum_buffers if momentum else None, masters], scalars)


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=None, step: int = 1, *, lr: float,
              beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
              decoupled: bool = False, amsgrad: bool = False, maximize: bool = False, masters=None,
              grad_scale: float = 1.0) -> None:
    """One Adam step on every tensor (decoupled=True: AdamW's decoupled weight decay); `step` is the step number
    after this update (1 on the first), for the bias corrections; amsgrad needs max_exp_avg_sqs."""
    op = "adam_step"
    if not params:
        return
    if not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"{op}: step must be an int >= 1 (the count including this step), got {step!r}")
    b1, b2 = beta1, beta2
    for i, b in enumerate((b1, b2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{op}: invalid beta parameter at index {i}: {b!r} (expected 0 <= beta < 1)")
    if amsgrad and max_exp_avg_sqs is None:
        raise ValueError(f"{op}: amsgrad needs max_exp_avg_sqs")
    _check_lists(op, params, {"grads": grads, "exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs,
                              "max_exp_avg_sqs": max_exp_avg_sqs if amsgrad else None, "masters": masters})
    bc1 = 1.0 - b1**step
    bc2_sqrt = math.sqrt(1.0 - b2**step)
    scalars = (_number(op, "lr", lr), float(b1), float(b2), _number(op, "eps", eps),
               _number(op, "weight_decay", weight_decay), bc1, bc2_sqrt, int(bool(decoupled)), int(bool(amsgrad)),
               int(bool(maximize)), _number(op, "grad_scale", grad_scale))
    _launch(op, "adam_step", params, grads,
            [exp_avgs, exp_avg_sqs, max_exp_avg_sqs if amsgrad else None, masters], scalars)
