"""zigtensor.llm: pretrained language models (Llama, Mistral, Qwen2, GPT-2, SmolLM2 from GGUF), sentence
encoders (BERT / MiniLM) and the GPT that `zt train` trains, run by zigtensor's own layers.

>>> from zigtensor.llm import LLM, SamplingParams
>>> llm = LLM("smollm2")
>>> llm.generate(["Once upon a time"], SamplingParams(max_tokens=32, temperature=0.7, seed=0))[0].text

Modules: config (ModelConfig from config.json), transformer (the decoder-only model), rope, kv_cache,
weights (checkpoint names -> parameters), bert, tokenizer, sampling, hf_loader / gguf_model / train_run
(the three checkpoint sources), loader (load_model), api (LLM), info (what `zt info` prints).
"""

from .api import LLM
from .config import ModelConfig
from .loader import load_model
from .outputs import CompletionOutput, RequestOutput
from .sampling import SamplingParams

__all__ = ["LLM", "SamplingParams", "ModelConfig", "load_model", "RequestOutput", "CompletionOutput"]
