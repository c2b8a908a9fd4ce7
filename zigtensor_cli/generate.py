"""`zt generate`: complete a prompt with a language model, streaming the text to stdout as it is produced."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

_MODEL = "A Hugging Face folder, a .gguf file, a zt train run folder, or a short name (smollm2)."
_KEEP = "A .gguf file's quantized weights stay in their blocks (less memory; CPU only; GPTQ/AWQ always do)."
_CHAT = "Wrap the prompt as a user message in the model's chat template."


def generate(
    model: Annotated[str, typer.Option("--model", help=_MODEL)],
    prompt: Annotated[str, typer.Option("--prompt", help="The text to complete (or the user message with --chat).")],
    chat: Annotated[bool, typer.Option("--chat", help=_CHAT)] = False,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Tokens to generate at most.")] = 128,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="0 is greedy.")] = 1.0,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass, in (0, 1].")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", help="Keep the k most likely tokens (0: all).")] = 0,
    seed: Annotated[int | None, typer.Option("--seed", help="Makes sampling reproducible.")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda[:i].")] = "cpu",
    keep_quantized: Annotated[bool, typer.Option("--keep-quantized", help=_KEEP)] = False,
) -> None:
    """Generate a completion, printed as it is produced; timing (prompt and generated tokens/s) goes to stderr."""
    from zigtensor.llm import LLM, SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed)
    llm = LLM(model, device=device, keep_quantized=keep_quantized)
    typer.echo(f"loaded {llm.loaded.path} in {llm.loaded.load_seconds:.1f} s", err=True)
    source = llm.chat_prompt_ids([{"role": "user", "content": prompt}]) if chat else prompt
    metrics = reason = None
    for delta in llm.generate_stream(source, params):
        if delta.text:
            sys.stdout.write(delta.text)
            sys.stdout.flush()
        reason = delta.finish_reason or reason
        metrics = delta.metrics or metrics
    sys.stdout.write("\n")
    sys.stdout.flush()
    if metrics is not None:
        typer.echo(f"prompt: {metrics.prompt_tokens} tokens, {metrics.prompt_tokens_per_second:.1f} tokens/s | "
                   f"generated: {metrics.generated_tokens} tokens, {metrics.decode_tokens_per_second:.1f} tokens/s "
                   f"| finish: {reason}", err=True)
