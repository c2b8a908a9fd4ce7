"""How close a decode step comes to its matmuls: zigtensor's cached forward of one token per row against the
same model's float32 matmuls alone (every layer's four weight matrices and the LM head, nothing else), with
1 and 2 BLAS threads, per batch size (`python -m zigtensor.bench.decode_roofline [model]`).

A decode step streams every weight once; the matmuls alone are the floor NumPy's BLAS sets for it on this CPU
(the "roofline" of docs/benchmarks.md). The gap is what the step adds: norms, rotary, the cache write,
attention, the activation, Python. Both run the model's real weights in their inference layout, in turns.

>>> rows = decode_roofline("smollm2", batch_sizes=(1, 8), threads=(1, 2))
>>> rows[0]                                   # {'batch': 1, 'threads': 1, 'matmuls_ms': ..., 'step_ms': ...}
"""

from __future__ import annotations

import numpy as np

from .timing import median_interleaved


def _matmul_step(model, batch: int):
    """The step's weight matmuls alone, on activations of the step's shape."""
    layers = [(b.attn.c_attn.weight.data.T, b.attn.c_proj.weight.data.T, b.mlp.c_fc.weight.data.T,
               b.mlp.c_proj.weight.data.T) for b in model.transformer.h]
    head = model.lm_head.weight.data.T
    c = model.model_config
    x = np.full((batch, c.hidden_size), 0.01, dtype=np.float32)
    h = np.full((batch, c.intermediate_size), 0.01, dtype=np.float32)
    y = np.full((batch, c.num_heads * c.head_dim), 0.01, dtype=np.float32)

    def step():
        for qkv, proj, fc, down in layers:
            x @ qkv
            y @ proj
            x @ fc
            h @ down
        return x @ head

    return step


def _decode_step(model, batch: int, context: int):
    """One cached decode step of `batch` rows after `context` tokens (the cache is rewound after each)."""
    from ..autograd.grad_mode import no_grad
    from ..llm.kv_cache import KVCache
    from ..llm.transformer import token_tensor

    cache = KVCache.for_model(model, batch=batch, max_len=context + 1)
    with no_grad():
        model(token_tensor([[1] * context] * batch, cache.device), cache=cache, last_only=True)
    ids = token_tensor([[5]] * batch, cache.device)

    @no_grad()
    def step():
        cache.lengths[:] = context
        return model(ids, cache=cache).numpy()

    return step


def decode_roofline(model: str = "smollm2", batch_sizes=(1, 8, 32), threads=(1, 2), context: int = 96,
                    repeats: int = 15) -> list[dict]:
    """Median milliseconds of the matmuls alone and of zigtensor's decode step, per batch size and thread count."""
    from ..llm import LLM
    from ..llm.threads import blas_threads

    m = LLM(model).model
    if not all(hasattr(b.mlp, "c_fc") and hasattr(b.attn.c_attn, "weight") for b in m.transformer.h):
        raise ValueError(f"decode_roofline: {model!r} has layers without plain weight matrices")
    rows = []
    for batch in batch_sizes:
        fns = [_matmul_step(m, batch), _decode_step(m, batch, context)]
        for n in threads:
            with blas_threads(n):
                matmuls, step = median_interleaved(fns, repeats, settle=0.05)
            rows.append({"batch": batch, "threads": n, "matmuls_ms": matmuls * 1e3, "step_ms": step * 1e3})
    return rows


if __name__ == "__main__":
    import argparse

    from .core import machine

    parser = argparse.ArgumentParser(prog="python -m zigtensor.bench.decode_roofline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="smollm2", help="a model path or short name (default smollm2)")
    name = parser.parse_args().model
    print(f"{name}, machine: {machine()}; median ms per decode step (context 96), matmuls alone vs zigtensor")
    print(f"{'batch':>5} {'threads':>7} {'matmuls':>9} {'tok/s':>7} {'step':>9} {'tok/s':>7} {'step/matmuls':>12}")
    for r in decode_roofline(name):
        b = r["batch"]
        print(f"{b:>5} {r['threads']:>7} {r['matmuls_ms']:>9.1f} {1e3 * b / r['matmuls_ms']:>7.1f} "
              f"{r['step_ms']:>9.1f} {1e3 * b / r['step_ms']:>7.1f} {r['step_ms'] / r['matmuls_ms']:>12.2f}")
