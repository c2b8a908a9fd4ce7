"""zigtensor.engine: continuous batching over a paged KV cache, with no HTTP in it.

>>> from zigtensor.engine import LLMEngine, EngineConfig, FakeModelRunner
>>> from zigtensor.llm import SamplingParams
>>> engine = LLMEngine(FakeModelRunner(vocab_size=64), config=EngineConfig(kv_blocks=32))
>>> engine.generate([[1, 2, 3]], SamplingParams(max_tokens=4, temperature=0))[0].outputs[0].token_ids

Pieces: kv_cache (blocks, block tables, device arrays), paged_attention, request (requests, sequences,
outputs), scheduler (the per-step token budget), model_runner (the model contract and a fake model), engine
(LLMEngine and AsyncLLMEngine), embedding (AsyncEmbeddingEngine for encoders), llm_runner (zigtensor.llm's
Transformer on the paged cache, and load_engine; imported on demand).
"""

from .embedding import AsyncEmbeddingEngine
from .engine import AsyncLLMEngine, EngineConfig, EngineDeadError, LLMEngine, RequestStream
from .kv_cache import BlockAllocator, BlockTables, KVCacheSpec, NoFreeBlocksError, PagedKVCache
from .model_runner import FakeModelRunner, ModelRunner, ScheduledBatch
from .paged_attention import AttentionMetadata, paged_attention
from .request import (
    CompletionOutput,
    QueueFullError,
    Request,
    RequestError,
    RequestMetrics,
    RequestOutput,
    RequestState,
    Sequence,
    SequenceStatus,
    TokenLogprob,
)
from .scheduler import Scheduler, SchedulerConfig, SchedulerOutput
