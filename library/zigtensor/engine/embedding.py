"""AsyncEmbeddingEngine: the engine interface for an encoder model (BERT / MiniLM), which only embeds.

It answers the server's calls the way AsyncLLMEngine does (`embed`, `health`, `stats`, `tokenizer`,
`model_name`, `max_model_len`, `shutdown`); `generate` raises a RequestError, as AsyncLLMEngine.embed does for a
decoder. Batches run one at a time on a worker thread, so the event loop never waits for the model.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import numpy as np

from .engine import EngineDeadError
from .request import RequestError


class AsyncEmbeddingEngine:
    """Embeddings from a zigtensor.llm BertEncoder (`encoder.embed(texts) -> float32 [len(texts), dim]`).

    Args:
        encoder: the encoder (LoadedModel.model of an encoder folder).
        model_name: the name the server reports.
        max_batch: texts per request at most.
    """

    def __init__(self, encoder, model_name: str = "model", max_batch: int = 2048):
        self.encoder = encoder
        self.tokenizer = encoder.tokenizer
        self.model_name = model_name
        self.max_model_len = encoder.max_seq_length
        self.max_batch = max_batch
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="zigtensor-embed")
        self._accepting = True
        self._in_flight = 0
        self.counters = {"requests": 0, "texts": 0, "prompt_tokens": 0}
        self.seconds = 0.0

    async def embed(self, texts) -> np.ndarray:
        """float32 [len(texts), dim]; texts is a string or a list of non-empty strings."""
        if not self._accepting:
            raise EngineDeadError("the engine is shutting down or stopped; it accepts no new requests")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts:
            raise RequestError("input must be a string or a non-empty list of strings", "input")
        if len(texts) > self.max_batch:
            raise RequestError(f"input has {len(texts)} texts; at most {self.max_batch} per request", "input")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t:
                raise RequestError(f"input[{i}] must be a non-empty string, got {t!r}", "input")
        self._in_flight += 1
        try:
            start = time.perf_counter()
            out = await asyncio.get_running_loop().run_in_executor(self._pool, self.encoder.embed, list(texts))
            self.seconds += time.perf_counter() - start
        finally:
            self._in_flight -= 1
        self.counters["requests"] += 1
        self.counters["texts"] += len(texts)
        self.counters["prompt_tokens"] += self.count_tokens(texts)
        return out

    def count_tokens(self, texts) -> int:
        """Tokens the encoder reads for texts (the `usage` of an embeddings response)."""
        return sum(len(self.tokenizer.encode(t)) for t in ([texts] if isinstance(texts, str) else texts))

    def generate(self, prompt, params=None, request_id: str | None = None):
        raise RequestError(f"model {self.model_name!r} is an encoder: it makes embeddings (/v1/embeddings), not "
                           "completions; serve a decoder model (e.g. smollm2) for completions and chat", "model")

    def abort(self, request_id: str) -> None:
        """Nothing to abort: an embedding request is not streamed."""

    def health(self) -> bool:
        return self._accepting

    def stats(self) -> dict:
        return {"model": self.model_name, "num_waiting": 0, "num_running": self._in_flight, "kv_blocks_used": 0,
                "kv_blocks_total": 0, **self.counters, "embed_seconds": self.seconds}

    async def shutdown(self, grace_period: float = 0.0) -> None:
        self._accepting = False
        deadline = time.monotonic() + grace_period
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)

    def __repr__(self) -> str:
        return f"AsyncEmbeddingEngine({self.model_name!r}, max_len={self.max_model_len})"
