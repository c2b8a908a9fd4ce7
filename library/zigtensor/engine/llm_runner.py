"""TransformerRunner: zigtensor.llm's Transformer on the engine's paged KV cache.

The engine batches sequences of different lengths, each with a chunk of new tokens, into one flat row of
tokens. This runner walks the model's own layers over that row (so the weights, norms, rotary tables and MLPs
are exactly the ones `LLM` and `zt train` use) and replaces only the attention's cache step: each layer writes
the new keys and values through the slot mapping and attends with paged_attention over the block tables. The
final norm and the head run on the batch's logit rows only (the last token of each sequence's chunk, and every
token of a chunk whose prompt log-probabilities were asked for).
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from ..autograd.grad_mode import no_grad
from ..llm.array_forward import ArrayOps
from ..llm.threads import decode_threads
from ..quant import cpu_kernels
from ..quant.qlinear import KERNEL_MAX_ROWS, QuantLinear
from ..tensor import Tensor
from .engine import AsyncLLMEngine, EngineConfig, LLMEngine
from .kv_cache import KVCacheSpec
from .model_runner import ModelRunner, ScheduledBatch
from .paged_attention import AttentionMetadata, paged_attention


class TransformerRunner(ModelRunner):
    """Runs a zigtensor.llm.Transformer (decoder-only) for the engine.

    Args:
        model: a Transformer with its weights loaded; it is put in inference mode (eval, no gradients, weights
            laid out for decode matmuls).

    The cache has the dtype and the device of the model's weights.
    """

    def __init__(self, model):
        model.prepare_for_inference()
        self.model = model
        c = self.config = model.model_config
        weight = model.transformer.wte.weight
        self.device = weight.device
        self.kv_cache_spec = KVCacheSpec(num_layers=c.num_layers, num_kv_heads=c.num_kv_heads, head_dim=c.head_dim,
                                         dtype=weight.dtype)
        self.vocab_size = c.vocab_size
        self.max_model_len = c.max_position_embeddings
        # decode attention on numba's threads only where the step's products run there too (packed weights, at
        # most KERNEL_MAX_ROWS tokens): its OpenMP workers spin after a region, and BLAS's threads beside them ran
        # a float32 step 3x slower
        quantized = any(isinstance(mod, QuantLinear) for mod in model.modules())
        self.attention_threads = cpu_kernels.threads() if quantized and self.device.type == "cpu" else 1

    def _wrap(self, array) -> Tensor:
        return Tensor._wrap(self.device.backend.from_numpy(array), self.device)

    @no_grad()
    def forward(self, batch: ScheduledBatch) -> np.ndarray:
        m, c = self.model, self.config
        top = int(batch.positions.max()) + 1
        if top > c.max_position_embeddings and c.position == "learned":
            raise ValueError(f"TransformerRunner: position {top - 1} is past the model's "
                             f"{c.max_position_embeddings} learned positions")
        steps = decode_threads.step(batch.num_tokens) if self.device.type == "cpu" else contextlib.nullcontext()
        with steps:
            x = m.transformer.wte(self._wrap(batch.token_ids[None]))  # (1, N, C): every sequence's tokens in one row
            if c.position == "learned":
                x = x + m.transformer.wpe(self._wrap(batch.positions))
            cos = sin = None
            if m.rope is not None:
                cos, sin = m.rope.tables(batch.positions, like=x)  # (N, 1, head_dim / 2)
            threads = self.attention_threads if batch.num_tokens <= KERNEL_MAX_ROWS else 1
            meta = AttentionMetadata.build(batch.block_tables, batch.context_lens, batch.query_start_loc,
                                           self.kv_cache.block_size, self.device.backend.xp, threads=threads)
            ops = ArrayOps.for_model(m)
            if ops is not None:  # no graph: the layers on arrays (zigtensor.llm.array_forward)
                logits = self._forward_arrays(ops, x.data, batch, cos, sin, meta)
            else:
                logits = self._forward_tensors(x, batch, cos, sin, meta)
        return self.device.backend.to_numpy(logits).astype(np.float32, copy=False)

    def _forward_arrays(self, ops: ArrayOps, x, batch: ScheduledBatch, cos, sin, meta: AttentionMetadata):
        m, backend = self.model, self.device.backend
        slots = backend.from_numpy(batch.slot_mapping)
        cache = self.kv_cache
        rotary = ops.rotary(cos, sin)
        for layer, block in enumerate(m.transformer.h):
            attn = block.attn
            q, k, v = ops.qkv(attn, ops.norm(block.ln_1, x), rotary)
            cache.write(layer, slots, k[0], v[0])
            y = paged_attention(q[0], cache.k[layer], cache.v[layer], meta, attn.scale, sliding_window=attn.window)
            y = y.reshape(x.shape[:2] + (-1,)).astype(x.dtype, copy=False)  # (1, N, n_head * head_dim)
            x = x + ops.linear(attn.c_proj, y)
            x = x + ops.mlp(block.mlp, ops.norm(block.ln_2, x))
        last = x[0][backend.from_numpy(batch.logit_indices)]  # (rows, C)
        return ops.linear(m.lm_head, ops.norm(m.transformer.ln_f, last))

    def _forward_tensors(self, x: Tensor, batch: ScheduledBatch, cos, sin, meta: AttentionMetadata):
        m = self.model
        slots = self.device.backend.from_numpy(batch.slot_mapping)
        for layer, block in enumerate(m.transformer.h):
            x = x + self._attention(block.attn, block.ln_1(x), layer, cos, sin, slots, meta)
            x = x + block.mlp(block.ln_2(x))
        last = x[0][self._wrap(batch.logit_indices)]  # (rows, C)
        return m.lm_head(m.transformer.ln_f(last)).data

    def _attention(self, attn, h: Tensor, layer: int, cos, sin, slots, meta: AttentionMetadata) -> Tensor:
        from ..llm.rope import rotate

        N = h.shape[1]
        nh, nkv, hd = attn.n_head, attn.n_kv_head, attn.head_dim
        qkv = attn.c_attn(h).reshape(1, N, nh + 2 * nkv, hd)  # q heads, k heads, v heads
        if cos is not None:
            qk = rotate(qkv[:, :, :nh + nkv], cos, sin)
            q, k = qk[:, :, :nh], qk[:, :, nh:]
        else:
            q, k = qkv[:, :, :nh], qkv[:, :, nh:nh + nkv]
        v = qkv[:, :, nh + nkv:]
        cache = self.kv_cache
        cache.write(layer, slots, k.data[0], v.data[0])
        y = paged_attention(q.data[0], cache.k[layer], cache.v[layer], meta, attn.scale,
                            sliding_window=attn.window)  # (N, nh, hd) float32
        y = y.reshape(1, N, nh * hd).astype(h.dtype.np, copy=False)
        return attn.c_proj(Tensor._wrap(y, self.device))

    def __repr__(self) -> str:
        c = self.config
        return (f"TransformerRunner({c.architecture}, layers={c.num_layers}, heads={c.num_heads}/{c.num_kv_heads}, "
                f"vocab={c.vocab_size}, device='{self.device}')")


def load_engine(model, device="cpu", dtype=None, config: EngineConfig | None = None, keep_quantized: bool = False):
    """The async engine that serves a model name or path (anything zigtensor.llm.load_model takes; keep_quantized
    as there: a GGUF file's quantized weights stay in their blocks).

    A decoder runs in an AsyncLLMEngine over a TransformerRunner; an encoder (BERT / MiniLM) gets an
    AsyncEmbeddingEngine. The engine reports `config.model_name`, or the model as given when that is unset.
    """
    from ..llm.loader import load_model
    from .embedding import AsyncEmbeddingEngine

    config = config or EngineConfig()
    loaded = load_model(model, device=device, dtype=dtype, keep_quantized=keep_quantized)
    name = config.model_name or str(model)
    if loaded.kind == "encoder":
        return AsyncEmbeddingEngine(loaded.model, model_name=name)
    config = dataclasses.replace(config, model_name=name)
    return AsyncLLMEngine(LLMEngine(TransformerRunner(loaded.model), loaded.tokenizer, config))
