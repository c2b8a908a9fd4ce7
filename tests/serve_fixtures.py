"""Test helpers for the server: a small real tokenizer, engines over the fake model, a uvicorn server in a thread.

The tokenizer is a byte-level BPE trained here on a few sentences (tokenizers' BpeTrainer, ~320 tokens, with
ChatML special tokens and template), so prompts, chat templates, incremental detokenization and stop strings run
through the same code as with a downloaded model, in milliseconds.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import uvicorn
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from zigtensor.engine import AsyncLLMEngine, EngineConfig, FakeModelRunner, LLMEngine
from zigtensor.llm.tokenizer import Tokenizer
from zigtensor.serve import GracefulServer, ServeConfig, create_app

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A server answers many clients at once, and each client streams its tokens.",
    "Paged attention reads keys and values through a block table.",
    "Continuous batching adds new requests between two steps of the model.",
    "Hello world! How are you today? I am fine, thank you.",
    "Numbers like 0123456789 and punctuation: commas, dots; dashes - and quotes \"too\".",
    "Schöne Grüße, café, naïve, 日本語, emoji 🙂 make multi-byte characters.",
] * 4
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def bpe_tokenizer(vocab_size: int = 320) -> Tokenizer:
    backend = BackendTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS, trainer)
    return Tokenizer(backend, special_tokens={"eos_token": "<|endoftext|>"},
                     eos_token_ids=[backend.token_to_id("<|im_end|>")], chat_template=CHATML, kind="test BPE")


TOKENIZER = bpe_tokenizer()


def fake_engine(tokenizer: Tokenizer = TOKENIZER, step_delay: float = 0.0, runner=None, **config) -> AsyncLLMEngine:
    """An AsyncLLMEngine over the fake model (logits hashed from the whole cached history)."""
    config = {"model_name": "fake", "block_size": 4, "kv_blocks": 512, "max_num_seqs": 16,
              "max_num_batched_tokens": 256, "max_model_len": 256, **config}
    runner = runner or FakeModelRunner(vocab_size=tokenizer.vocab_size, step_delay=step_delay)
    return AsyncLLMEngine(LLMEngine(runner, tokenizer, EngineConfig(**config)))


def sync_engine(tokenizer: Tokenizer = TOKENIZER, **config) -> LLMEngine:
    """The same model without threads or HTTP: the reference that served outputs are compared with."""
    config = {"model_name": "fake", "block_size": 4, "kv_blocks": 512, "max_num_seqs": 16,
              "max_num_batched_tokens": 256, "max_model_len": 256, **config}
    return LLMEngine(FakeModelRunner(vocab_size=tokenizer.vocab_size), tokenizer, EngineConfig(**config))


class ServerThread:
    """A real uvicorn server on 127.0.0.1 (a free port) in a thread, serving `engine` through create_app.

    >>> with ServerThread(fake_engine()) as srv:
    ...     httpx.get(srv.url + "/health")
    """

    def __init__(self, engine, config: ServeConfig | None = None, grace_period: float = 5.0):
        self.engine = engine
        self.app = create_app(engine, config or ServeConfig())
        uv_config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = GracefulServer(self.app, uv_config, grace_period)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        self.port = self.server.port  # NOTE: kept: the server forgets its sockets once it shuts down
        while self.engine is not None and httpx.get(self.url + "/health").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server's /health never answered 200")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the server did not shut down"

    def run_on_loop(self, coroutine_fn):
        """Run coroutine_fn() on the server's event loop; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine_fn(), self.server.loop).result(timeout=10)

    def running_tasks(self) -> list[asyncio.Task]:
        """The unfinished tasks on the server's loop (uvicorn's own, and any a request left behind)."""
        async def others():
            here = asyncio.current_task()
            return [t for t in asyncio.all_tasks() if t is not here and not t.done()]

        return self.run_on_loop(others)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until(predicate, timeout: float = 2.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def tiny_llama_folder(folder, transformers, torch):
    """A random-weight Llama (2 layers, GQA) saved with save_pretrained, with TOKENIZER's tokenizer.json and
    ChatML template beside it: a model folder that zigtensor's loader reads like a downloaded one. Returns the
    HF model (the oracle)."""
    import json

    config = transformers.LlamaConfig(vocab_size=TOKENIZER.vocab_size, hidden_size=64, intermediate_size=96,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=256, initializer_range=0.25, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = None  # random weights: generate the full length, as ignore_eos does
    model.save_pretrained(folder)
    TOKENIZER.backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "chat_template": CHATML}))
    return model
