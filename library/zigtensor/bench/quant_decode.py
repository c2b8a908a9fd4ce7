"""Batch-1 decode step of a 1B-class random-weight Llama, int4 against the same model in its float dtype
(`zt bench quant-decode`): issue 8's "int4 decode at least 3x our bf16 path" on a GPU, int4 against float32 on
the CPU (NumPy has no 16-bit BLAS, so float32 is the CPU's fast float path).

>>> bench = bench_quant_decode(device="cuda")              # TinyLlama-1.1B's shape: 22 layers, 1.1B parameters
>>> bench.ratio                                              # int4 tokens/s over the float model's

The model is built with zigtensor.llm directly (ModelConfig + Transformer, no checkpoint): GPT-2's N(0, 0.02)
weights, drawn in parallel threads, norms at 1. Every linear layer, the LM head included, is quantized by
round-to-nearest (quant/rtn.py, 4-bit, group 128, asymmetric) from those float32 weights and installed as a
QuantLinear (packed codes; on CUDA the W4A16 kernels of kernels/quant.cu); the token embedding and the norms stay
in the float dtype. The same model object runs both paths, the float one first: its linears are then replaced.

A decode step is one token through the cached forward (KVCache) after `context` prompt tokens, the cache
rewound before each step so every step sees the same context; the time is the median over `steps` steps after
`warmup`, each step synchronized (CUDA) before its clock stops.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

INIT_STD = 0.02


def llama_config(hidden: int = 2048, layers: int = 22, heads: int | None = None, kv_heads: int | None = None,
                 intermediate: int | None = None, vocab: int = 32000, max_len: int = 2048):
    """A Llama ModelConfig shaped like TinyLlama-1.1B by default (hidden 2048, 32 heads of 64, 4 kv heads,
    intermediate 5632, vocab 32000, 22 layers: 1.1B parameters; 16 layers make 0.84B). heads default to
    hidden / 64, kv heads to an eighth of them, intermediate to 2.75 hidden (rounded to a multiple of 128)."""
    from ..llm.config import ModelConfig

    for name, v in (("hidden", hidden), ("layers", layers), ("vocab", vocab), ("max_len", max_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"llama_config: {name} must be a positive int, got {v!r}")
    heads = heads if heads is not None else max(1, hidden // 64)
    if hidden % heads:
        raise ValueError(f"llama_config: hidden={hidden} is not a multiple of heads={heads}")
    kv_heads = kv_heads if kv_heads is not None else max(1, heads // 8)
    intermediate = intermediate if intermediate is not None else max(128, round(hidden * 2.75 / 128) * 128)
    return ModelConfig(architecture="llama", vocab_size=vocab, hidden_size=hidden, num_layers=layers,
                       num_heads=heads, num_kv_heads=kv_heads, head_dim=hidden // heads,
                       intermediate_size=intermediate, max_position_embeddings=max_len, norm="rmsnorm",
                       norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1, eos_token_ids=(2,))


def _workers() -> int:
    return max(1, min(16, os.cpu_count() or 1))


def random_llama(config, seed: int = 0):
    """A float32 CPU Transformer of config with N(0, INIT_STD) matrices and unit norms.

    NOTE: drawn per parameter in threads (NumPy's generators release the GIL): a 1B model's single-threaded
    nn.init takes ~20 s on a 2-core VM, time a lent GPU machine should not spend waiting."""
    from ..llm.transformer import Transformer

    model = Transformer(config, init=False)
    params = list(model.named_parameters())

    def fill(i: int) -> None:
        name, p = params[i]
        arr = p.data
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or not arr.flags.c_contiguous:
            raise TypeError(f"random_llama: {name} is not a C-contiguous float32 CPU array ({type(arr).__name__})")
        if arr.ndim >= 2:
            np.random.default_rng([seed, i]).standard_normal(out=arr, dtype=np.float32)
            arr *= INIT_STD
        else:  # norm weights 1, biases 0
            arr[...] = 1.0 if name.endswith("weight") else 0.0

    with ThreadPoolExecutor(_workers()) as pool:
        list(pool.map(fill, range(len(params))))
    return model


def linear_names(model, lm_head: bool = True) -> list[str]:
    """The nn.Linear layers a quantized checkpoint stores packed: every block's, and the LM head when asked."""
    from .. import nn

    return [name for name, m in model.named_modules()
            if type(m) is nn.Linear and (lm_head or name != "lm_head")]


def quantize_linears(model, bits: int = 4, group_size: int = 128, lm_head: bool = True) -> dict:
    """{layer name: QuantizedWeight} by RTN from the model's float CPU weights (threads: one layer each)."""
    from ..quant.rtn import rtn_quantize

    names = linear_names(model, lm_head)
    weights = {n: np.asarray(model.get_submodule(n).weight.numpy(), dtype=np.float32) for n in names}
    with ThreadPoolExecutor(_workers()) as pool:
        done = pool.map(lambda n: rtn_quantize(weights[n], bits, group_size, name=n), names)
        return dict(zip(names, done))


def install_quant_linears(model, quantized: dict, device) -> None:
    """Replace each named nn.Linear by a QuantLinear of its QuantizedWeight, on device."""
    from ..quant import QuantLinear

    for name, qw in quantized.items():
        layer = QuantLinear.from_weights([qw], method="rtn").to(device)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer)


def resident_bytes(model) -> int:
    """Bytes of the model's parameters and buffers, each tensor once (a tied head is the embedding)."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += int(np.prod(t.shape)) * t.dtype.itemsize
    return total


def inference_mode(model, device) -> None:
    """Eval mode, no gradients; on the CPU also Transformer.prepare_for_inference's column-major weights.

    NOTE: prepare_for_inference calls xp.asfortranarray, which the CUDA array module does not have (and the
    layout it makes is an OpenBLAS matter): on CUDA only its first two steps."""
    if device.type == "cpu":
        model.prepare_for_inference()
    else:
        model.eval()
        model.requires_grad_(False)


def _device_name(device) -> str:
    if device.type == "cuda":
        from .. import cuda

        return cuda.get_device_properties(device).name
    from .core import machine

    return machine()


def _synchronizer(device):
    if device.type == "cuda":
        from .. import cuda

        return cuda.synchronize
    return lambda: None


def decode_step_seconds(model, context: int, steps: int, warmup: int) -> float:
    """Median seconds of a batch-1 cached decode step after `context` tokens (see the module docstring)."""
    from ..autograd.grad_mode import no_grad
    from ..llm.kv_cache import KVCache
    from ..llm.transformer import token_tensor

    device = model.transformer.wte.weight.device
    sync = _synchronizer(device)
    cache = KVCache.for_model(model, batch=1, max_len=context + 1)
    prompt = (np.arange(context) % (model.model_config.vocab_size - 1) + 1)[None, :]
    with no_grad():
        model(token_tensor(prompt, device), cache=cache, last_only=True)
        ids = token_tensor([[5]], device)
        times = []
        for i in range(warmup + steps):
            cache.lengths[:] = context
            sync()
            t0 = time.perf_counter()
            model(ids, cache=cache, last_only=True)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclass
class DecodePath:
    name: str  # "bfloat16", "float32" or "int4 rtn g128"
    step_s: float
    weight_bytes: int  # resident parameters and buffers
    kernel: str  # what runs the linears at batch 1

    @property
    def tokens_per_s(self) -> float:
        return 1.0 / self.step_s


@dataclass
class QuantDecodeBench:
    device: str
    device_name: str  # the GPU's name, or the CPU's
    config: object  # ModelConfig
    parameters: int
    group_size: int
    context: int
    steps: int
    paths: list[DecodePath] = field(default_factory=list)
    setup_s: dict = field(default_factory=dict)  # what building the bench took: init, quantize, to device

    @property
    def ratio(self) -> float | None:
        """int4 tokens/s over the float path's (issue 8's target on a GPU: >= 3)."""
        return self.paths[0].step_s / self.paths[1].step_s if len(self.paths) == 2 else None


def bench_quant_decode(device: str = "cpu", layers: int = 22, hidden: int = 2048, dtype: str | None = None,
                       group_size: int = 128, context: int = 128, steps: int = 20, warmup: int = 3,
                       lm_head: bool = True, config=None, seed: int = 0, progress=None) -> QuantDecodeBench:
    """Build, quantize and time both paths (see the module docstring). dtype: the float path's (default bfloat16
    on CUDA, float32 on the CPU); config overrides layers and hidden (a ModelConfig, e.g. a tiny one for tests)."""
    from ..device import device as as_device
    from ..quant import QuantLinear

    dev = as_device(device)
    dtype = dtype or ("bfloat16" if dev.type == "cuda" else "float32")
    for name, v in (("group_size", group_size), ("context", context), ("steps", steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"bench_quant_decode: {name} must be a positive int, got {v!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"bench_quant_decode: warmup must be a non-negative int, got {warmup!r}")
    config = config or llama_config(hidden=hidden, layers=layers, max_len=max(2048, context + 1))
    if context + 1 > config.max_position_embeddings:
        raise ValueError(f"bench_quant_decode: context {context} does not fit max_position_embeddings "
                         f"{config.max_position_embeddings}")
    say = progress or (lambda s: None)
    bench = QuantDecodeBench(str(dev), _device_name(dev), config, 0, group_size, context, steps)

    t0 = time.perf_counter()
    say(f"building a random {config.num_layers}-layer Llama (hidden {config.hidden_size})")
    model = random_llama(config, seed)
    bench.parameters = model.num_parameters()
    bench.setup_s["init"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say(f"quantizing {len(linear_names(model, lm_head))} linear layers (RTN 4-bit, group {group_size})")
    quantized = quantize_linears(model, 4, group_size, lm_head)
    bench.setup_s["quantize"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model.to(dev, dtype=dtype)
    inference_mode(model, dev)
    bench.setup_s["to device"] = time.perf_counter() - t0
    say(f"timing the {dtype} decode step on {dev}")
    float_kernel = "nn.Linear (our GEMM)" if dev.type == "cuda" else "nn.Linear (NumPy BLAS)"
    bench.paths.append(DecodePath(dtype, decode_step_seconds(model, context, steps, warmup), resident_bytes(model),
                                  float_kernel))
    say(f"  {dtype}: {bench.paths[-1].tokens_per_s:.1f} tokens/s")

    install_quant_linears(model, quantized, dev)
    del quantized
    inference_mode(model, dev)
    if dev.type == "cuda":
        from .. import cuda

        cuda.empty_cache()  # the float linears' blocks
    probe = next(m for m in model.modules() if isinstance(m, QuantLinear))
    name = f"int4 rtn g{group_size}"
    say(f"timing the {name} decode step on {dev}")
    bench.paths.append(DecodePath(name, decode_step_seconds(model, context, steps, warmup), resident_bytes(model),
                                  probe.kernel_for(1, dev.type, dtype)))
    say(f"  {name}: {bench.paths[-1].tokens_per_s:.1f} tokens/s")
    return bench
