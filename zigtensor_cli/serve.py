"""`zt serve`: an OpenAI-compatible server for a model (completions, chat, embeddings, metrics)."""

from __future__ import annotations

import re
from typing import Annotated

import typer

_MODEL = "A Hugging Face folder, a .gguf file, a zt train run folder, or a short name (smollm2, minilm)."
_KEEP = "A .gguf file's quantized weights stay in their blocks (less memory; CPU only; GPTQ/AWQ always do)."
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_bytes(text: str) -> int:
    """'2GiB', '512MB', '1000000' -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r} is not a size: expected a positive number with an optional unit "
                                 f"({', '.join(u for u in _UNITS if u)}), e.g. 2GiB")
    return int(float(match.group(1)) * _UNITS[unit])


def serve(
    model: Annotated[str, typer.Option("--model", help=_MODEL)],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8080,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda[:i].")] = "cpu",
    dtype: Annotated[str | None, typer.Option("--dtype", help="Weights' dtype (default float32).")] = None,
    keep_quantized: Annotated[bool, typer.Option("--keep-quantized", help=_KEEP)] = False,
    max_model_len: Annotated[int | None, typer.Option(
        "--max-model-len", min=2, help="Context length: prompt + output tokens (default: the model's).")] = None,
    max_num_seqs: Annotated[int, typer.Option("--max-num-seqs", min=1, help="Sequences per batch at most.")] = 32,
    max_num_batched_tokens: Annotated[int, typer.Option(
        "--max-num-batched-tokens", min=1, help="Tokens per engine step (decodes and prefill chunks).")] = 512,
    kv_blocks: Annotated[int | None, typer.Option(
        "--kv-blocks", min=1, help="KV-cache blocks in the pool (or use --memory-budget).")] = None,
    memory_budget: Annotated[str | None, typer.Option(
        "--memory-budget", help="KV-cache size in bytes, e.g. 2GiB (or use --kv-blocks).")] = None,
    block_size: Annotated[int, typer.Option("--block-size", min=1, help="Tokens per KV-cache block.")] = 16,
    max_queue: Annotated[int, typer.Option(
        "--max-queue", min=1, help="Waiting requests at most; more get 429 with Retry-After.")] = 1024,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", envvar="ZT_API_KEY", help="Require 'Authorization: Bearer KEY' on every route but /health.")
    ] = None,
    served_model_name: Annotated[str | None, typer.Option(
        "--served-model-name", help="The model name clients send (default: --model as given).")] = None,
    grace_period: Annotated[float, typer.Option(
        "--grace-period", min=0, help="Seconds running requests get to finish on Ctrl-C / SIGTERM.")] = 30.0,
    max_body_size: Annotated[str, typer.Option("--max-body-size", help="Largest request body (413 above).")] = "4MiB",
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level.")] = "info",
) -> None:
    """Serve a model over HTTP with the OpenAI API (/v1/completions, /v1/chat/completions, /v1/embeddings,
    /v1/models), plus /health, /metrics, /tokenize and /detokenize."""
    from zigtensor.engine import EngineConfig
    from zigtensor.engine.llm_runner import load_engine
    from zigtensor.llm.loader import resolve_model
    from zigtensor.serve import ServeConfig, run

    if kv_blocks is not None and memory_budget is not None:
        raise typer.BadParameter("give --kv-blocks or --memory-budget, not both", param_hint="--kv-blocks")
    resolve_model(model)  # NOTE: a wrong --model fails now, not after the port is bound
    name = served_model_name or model
    engine_config = EngineConfig(
        model_name=name, max_model_len=max_model_len, block_size=block_size, kv_blocks=kv_blocks,
        memory_budget=parse_bytes(memory_budget) if memory_budget is not None else None, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens, max_queue=max_queue)
    config = ServeConfig(served_model_name=name, api_key=api_key, max_body_bytes=parse_bytes(max_body_size))
    typer.echo(f"loading {model} on {device}; /health answers 503 until it is ready", err=True)
    run(lambda: load_engine(model, device=device, dtype=dtype, config=engine_config,
                                    keep_quantized=keep_quantized), config, host=host, port=port,
        grace_period=grace_period, log_level=log_level)
