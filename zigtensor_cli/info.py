"""`zt info`: what a safetensors file, a checkpoint, a training-run folder or a language model holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_MODEL = ("A .safetensors file (model, checkpoint or any other), a training-run folder, or a language model: a "
          "Hugging Face folder, a .gguf file or a short name (smollm2, minilm).")
_MAX_LEN = "Language models: tokens per sequence for the memory plan (default: the model's context length)."
_BUDGET = "Language models: memory for weights and KV cache, e.g. 8GiB (default: this machine's RAM)."


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _table(rows: list[tuple]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:  # the last column (bytes) right-aligned
        cells = [str(c).ljust(w) for c, w in zip(r[:-1], widths)] + [str(r[-1]).rjust(widths[-1])]
        lines.append("  ".join(cells).rstrip())
    return lines


def _state_line(state: dict) -> str:
    parts = [f"step {state['step']}"]
    if isinstance(state.get("data"), dict):
        parts.append("data " + ", ".join(f"{k} {v}" for k, v in state["data"].items()))
    for key, label in (("examples_seen", "examples seen"), ("lr", "lr"), ("best_val_loss", "best val loss"),
                       ("elapsed_s", "elapsed s")):
        v = state.get(key)
        if v is not None:
            parts.append(f"{label} {v:.4g}" if isinstance(v, float) else f"{label} {v}")
    return " | ".join(parts)


def _echo_file(s) -> None:
    kinds = {"checkpoint": "zigtensor checkpoint", "model": "zigtensor model", "safetensors": "safetensors"}
    typer.echo(f"{s.path}: {kinds[s.kind]}")
    rows = [("name", "shape", "dtype", "bytes")]
    rows += [(t.name, "(" + ", ".join(map(str, t.shape)) + ")", t.dtype, f"{t.nbytes:,}") for t in s.tensors]
    for line in _table(rows):
        typer.echo(f"  {line}")
    what = "model parameters" if s.kind == "checkpoint" else "parameters"
    typer.echo(f"total: {len(s.tensors)} tensors, {s.total_bytes:,} bytes ({_size(s.total_bytes)}), "
               f"{s.parameters:,} {what}")
    if s.lineage:
        typer.echo("lineage: " + " | ".join(f"{k} {v}" for k, v in s.lineage.items()))
    # the metadata not shown elsewhere: all of a foreign file's; a model's step, tokenizer, normalization
    shown = ("format", "recipe", "lineage") if s.kind == "model" else ()
    meta = {} if s.kind == "checkpoint" else {k: v for k, v in s.metadata.items() if k not in shown}
    if meta:
        typer.echo("metadata:")
        for k, v in meta.items():
            typer.echo(f"  {k}: {v if len(v) <= 200 else v[:197] + '...'}")
    if s.state:
        typer.echo(f"training state: {_state_line(s.state)}")
        if s.state.get("last_eval"):
            from zigtensor.train.trainer import format_eval

            ev = dict(s.state["last_eval"])
            typer.echo(f"last eval (step {ev.pop('step', '?')}): {format_eval(ev)}")
    if s.recipe:
        typer.echo("recipe:")
        for line in s.recipe.rstrip("\n").split("\n"):
            typer.echo(f"  {line}".rstrip())


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n:,} ({n / size:.1f}{unit})"
    return f"{n:,}"


def _echo_language_model(i) -> None:
    """The lines of a zigtensor.llm.info.ModelInfo."""
    typer.echo(f"{i.path}: {'language model' if i.kind == 'decoder' else 'sentence encoder'} ({i.format})")
    heads = f"{i.num_heads} heads" + (f", {i.num_kv_heads} KV heads" if i.num_kv_heads is not None else "")
    rows = [("architecture", i.architecture),
            ("layers", f"{i.num_layers}"),
            ("attention", f"{heads}, head dim {i.head_dim}"),
            ("hidden size", f"{i.hidden_size} (MLP {i.intermediate_size}, {i.activation}, {i.norm})"),
            ("vocabulary", f"{i.vocab_size:,}" + (" (embeddings tied to the output head)" if i.tied_embeddings
                                                  else "")),
            ("context length", f"{i.context_length:,}"),
            ("positions", i.positions),
            ("parameters", _count(i.parameters)),
            ("tensors", f"{i.tensor_count}: " + ", ".join(f"{n} {t}" for t, n in i.tensor_types.items()))]
    if i.tokenizer_kind is None:
        rows.append(("tokenizer", "none (pass token ids)"))
    else:
        rows.append(("tokenizer", i.tokenizer_kind))
        special = ", ".join(f"{k.removesuffix('_token')} {v}" for k, v in i.special_tokens.items())
        rows.append(("special tokens", special or "none"))
        if i.eos_token_ids:
            rows.append(("stop token ids", ", ".join(map(str, i.eos_token_ids))))
        rows.append(("chat template", "yes" if i.chat_template else "no"))
    m = i.memory
    if m is not None:
        rows += [("weights", f"{_size(m.weight_bytes)} as {m.weight_dtype} ({_size(m.file_bytes)} in the file)"),
                 ("KV cache", f"{m.kv_bytes_per_token:,} bytes per token ({m.kv_dtype}), "
                              f"{_size(m.kv_bytes_per_sequence)} per sequence of {m.max_model_len:,} tokens"),
                 ("memory budget", f"{_size(m.memory_budget)} ({m.budget_source}): {m.max_sequences:,} sequences of "
                                   f"{m.max_model_len:,} tokens fit beside the weights")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"  {k + ':':{width + 1}} {v}")
    if i.quantization:
        _echo_quantization(i.quantization, i.quantization_note)


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    out, start = [], None
    for k, n in enumerate(numbers):
        if start is None:
            start = n
        if k + 1 == len(numbers) or numbers[k + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(out)


def _echo_quantization(layers, note: str) -> None:
    """Per-layer quantization (layers that differ only by their index on one line) and the kernel each runs."""
    import re

    groups: dict[tuple[str, str], list[int]] = {}
    for q in layers:
        m = re.search(r"\.(\d+)\.", q.layer)
        template = q.layer if m is None else q.layer[:m.start()] + ".{}." + q.layer[m.end():]
        groups.setdefault((template, q.description), []).append(int(m.group(1)) if m else -1)
    typer.echo(f"  quantization: {len(layers)} linear layers ({note})")
    rows = [("layers", "quantization", "")]
    for (template, desc), idx in groups.items():
        rows.append((template.format(_ranges(sorted(idx))) if "{}" in template else template, desc, ""))
    for line in _table(rows):
        typer.echo(f"    {line}")
    kinds = {}
    for q in layers:  # one kernel table per distinct (method, bits)
        kinds.setdefault((q.method == "gguf", q.bits), q)
    for q in kinds.values():
        what = f"gguf {q.ggml_type}-type blocks" if q.method == "gguf" else f"int{q.bits} layers"
        typer.echo(f"  kernels for {what} by batch rows:")
        rows = [("batch", "cpu", "cuda", "")] + [(str(b), q.kernel(b, "cpu"), q.kernel(b, "cuda"), "")
                                                 for b in (1, 8, 32, 256)]
        for line in _table(rows):
            typer.echo(f"    {line}")


def info(
    model: Annotated[str, typer.Option("--model", help=_MODEL)],
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", min=1, help=_MAX_LEN)] = None,
    memory_budget: Annotated[str | None, typer.Option("--memory-budget", help=_BUDGET)] = None,
) -> None:
    """Tensors (name, shape, dtype, bytes), totals, metadata and training state of a model or a run; for a
    language model also its architecture, tokenizer and a memory plan for serving it."""
    from zigtensor.llm.info import describe, is_language_model
    from zigtensor.llm.train_run import is_train_run
    from zigtensor.train.summary import summarize

    language_model = is_language_model(model)
    training_output = Path(model).suffix == ".safetensors" or is_train_run(model)  # a zt file or run folder
    if training_output or not language_model:
        _echo_summary(summarize(Path(model)))
    if language_model:
        if training_output:
            typer.echo("")
        _echo_language_model(describe(model, max_model_len=max_model_len, memory_budget=memory_budget))


def _echo_summary(s) -> None:
    from zigtensor.train.summary import RunSummary

    if not isinstance(s, RunSummary):
        _echo_file(s)
        return
    typer.echo(f"run folder {s.folder}")
    if s.checkpoints:
        typer.echo("checkpoints: " + ", ".join(p.name for p in s.checkpoints))
    if s.state:
        typer.echo(f"newest checkpoint {s.state['checkpoint']}: {_state_line(s.state)}")
    for split, r in s.last_metrics.items():
        acc = f" acc {r['accuracy']:.4f}" if isinstance(r.get("accuracy"), (int, float)) else ""
        loss = f"loss {r['loss']:.4f}" if isinstance(r.get("loss"), (int, float)) else "no loss"
        typer.echo(f"last {split} metrics (step {r.get('step')}): {loss}{acc}")
    if s.model is not None:
        typer.echo("")
        _echo_file(s.model)
