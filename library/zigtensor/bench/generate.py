"""Greedy decoding: zigtensor.llm.LLM.generate against Hugging Face transformers' generate on the same model,
in one run: tokens per second at each batch size, timed in turns; then the load time and the resident memory of
each library, each measured in a fresh process (`zt bench generate`).

>>> rows = bench_generate("smollm2", batch_sizes=(1, 8), tokens=64)
>>> rows[0].name, 1 / rows[0].zt_s, 1 / rows[0].ref_s                 # tokens/s of both at batch 1

Both libraries run float32 weights on CPU (transformers dequantizes a GGUF file to float32 too), from the same
prompt, for exactly `tokens` new tokens (the end-of-sequence token is ignored), and the two token sequences are
compared: a speed-up that changes the output would be no speed-up.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from .timing import Result

PROMPT = "The history of the printing press begins"


@dataclass
class LoadStats:
    seconds: float  # from the call to a model ready to generate
    rss_bytes: int  # resident memory of the process after loading
    peak_rss_bytes: int  # the most resident memory the process had while loading


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    """The high-water mark of this process's resident memory (VmHWM).

    NOTE: not getrusage's ru_maxrss, which a process started by fork + exec inherits from its parent's image
    (Linux keeps the larger of the two across exec): a child started by a parent holding 1.7 GB reported 1.7 GB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource  # no VmHWM (not Linux): the rusage figure

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _load_hf(model: str, device: str = "cpu", dtype: str | None = None):
    """transformers' model and tokenizer for a zigtensor model name or path (GGUF files through gguf_file=), on
    device ("cpu", "cuda[:i]") in dtype (a torch dtype name; None: float32)."""
    import torch
    import transformers

    from ..llm.loader import resolve_model

    path = resolve_model(model)
    kwargs = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
    folder = path.parent if path.suffix == ".gguf" else path
    torch_dtype = getattr(torch, dtype or "float32")
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, **kwargs).eval().to(device)
    tok = transformers.AutoTokenizer.from_pretrained(folder, **kwargs)
    return hf, tok


def measure_load(library: str, model: str, keep_quantized: bool = False) -> LoadStats:
    """Load the model with `library` ("zigtensor" or "transformers") in this process and measure it."""
    start = time.perf_counter()
    if library == "zigtensor":
        from ..llm import LLM

        LLM(model, keep_quantized=keep_quantized)
    elif library == "transformers":
        _load_hf(model)
    else:
        raise ValueError(f"measure_load: library must be 'zigtensor' or 'transformers', got {library!r}")
    return LoadStats(time.perf_counter() - start, _rss(), _peak_rss())


def load_in_subprocess(library: str, model: str, keep_quantized: bool = False) -> LoadStats | None:
    """measure_load in a fresh Python process (so that neither library's memory counts for the other)."""
    code = ("import json, sys; from zigtensor.bench.generate import measure_load; "
            "s = measure_load(sys.argv[1], sys.argv[2], sys.argv[3] == '1'); print(json.dumps(s.__dict__))")
    r = subprocess.run([sys.executable, "-c", code, library, model, "1" if keep_quantized else "0"],
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        return None
    return LoadStats(**json.loads(r.stdout.strip().splitlines()[-1]))


def decode_threads() -> str:
    """The BLAS threads zigtensor used for decode steps here, as text: ZT_DECODE_THREADS when set, else the
    count the timed choice (llm/threads.py) settled on per step size so far."""
    import os

    from ..llm.threads import decode_threads as tuner
    from ..llm.threads import step_threads

    if os.environ.get("ZT_DECODE_THREADS") is not None:
        n = step_threads(1)
        return "BLAS default" if n is None else str(n)
    picks = tuner.summary()
    if not picks:
        return f"timed per step among {', '.join(map(str, tuner.candidates))}"
    return "timed per step, picked " + ", ".join(f"{n} for steps of up to {tokens} tokens"
                                                 for tokens, n in picks.items())


def decode_weight_bytes(model) -> int:
    """Bytes of weights one decode step reads, for a zigtensor model or a torch one: every parameter and buffer
    array once (a tied matrix once), except the tables a step only looks rows up in (token and position
    embeddings other than the LM head's own matrix, rotary tables). Quantized layers count their packed bytes."""
    import numpy as np

    torch_model = not hasattr(model, "transformer")  # zigtensor's Transformer; a transformers model otherwise
    head = model.get_output_embeddings() if torch_model else model.lm_head
    if torch_model:
        import torch

        key, size = (lambda t: t.data_ptr()), (lambda t: t.nbytes)

        def lookup(m):  # transformers names each architecture's rotary module <Arch>RotaryEmbedding
            return isinstance(m, torch.nn.Embedding) or type(m).__name__.endswith("RotaryEmbedding")
    else:
        from .. import nn
        from ..llm.rope import RotaryEmbedding

        key, size = (lambda t: id(t.data)), (lambda t: t.data.nbytes)

        def lookup(m):
            return isinstance(m, (nn.Embedding, RotaryEmbedding))

    def arrays(module):
        return [t for t in [*module.parameters(), *module.buffers()] if t is not None]

    keep = {key(t) for t in arrays(head)}
    skip = {key(t) for m in model.modules() if lookup(m) for t in arrays(m)} - keep
    sizes = {key(t): size(t) for t in arrays(model) if key(t) not in skip}
    return int(np.sum(list(sizes.values()), dtype=np.int64))


def copy_bandwidth(device: str = "cpu", nbytes: int = 256 * 2**20) -> tuple[float, str]:
    """(bytes moved per second, read plus written, copying nbytes on device; how it was measured): what a decode
    step's stream of weights is held against (its "roofline")."""
    import numpy as np

    if device == "cpu":
        src = np.ones(nbytes, np.uint8)
        dst = np.empty_like(src)
        seconds = statistics.median(_timed(lambda: np.copyto(dst, src)) for _ in range(7))
        return 2 * nbytes / seconds, f"NumPy copy of {nbytes >> 20} MiB, one thread"
    from zigtensor import cuda

    from .ops import BenchContext, _copy_seconds

    cuda.set_device(device)  # NOTE: the device the models run on; BenchContext times the current one
    return 2 * nbytes / _copy_seconds(BenchContext(quick=True), nbytes), f"cudaMemcpy of {nbytes >> 20} MiB"


def roofline_rows(rows: list[Result], batch_sizes, roofline: dict) -> list[dict]:
    """Per batch size and library: the bytes of weights a decode step reads over the seconds a step took (a
    generated token's seconds times the batch: the short prompt's prefill included, one step's worth of weight
    reads among `tokens`), and that as a fraction of the measured copy bandwidth."""
    out = []
    for r, batch in zip(rows, batch_sizes):
        for library, per_token in (("zigtensor", r.zt_s), ("transformers", r.ref_s)):
            nbytes = roofline["weight_bytes"].get(library)
            if per_token and nbytes:
                rate = nbytes / (per_token * batch)
                out.append({"batch": batch, "library": library, "weight_bytes": nbytes, "bytes_per_s": rate,
                            "of_copy": rate / roofline["copy_bytes_per_s"]})
    return out


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _time_batch(llm, hf, tok, prompts: list[list[int]], tokens: int, repeats: int):
    """(median seconds of each library, the token ids each produced) for greedy decoding of prompts."""
    from ..llm import SamplingParams

    params = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)
    outputs = [None, None]

    def run_ours():
        outputs[0] = [o.token_ids for o in llm.generate(prompts, params)]

    fns = [run_ours]
    if hf is not None:
        import torch

        ids = torch.tensor(prompts, device=hf.device)

        def run_hf():
            with torch.no_grad():
                out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                                  min_new_tokens=tokens, do_sample=False, pad_token_id=tok.eos_token_id)
            outputs[1] = out[:, ids.shape[1]:].tolist()

        fns.append(run_hf)
    for f in fns:  # warm-up
        f()
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            time.sleep(0.2)  # NOTE: lets the other library's spinning BLAS/OpenMP threads go idle
            samples[i].append(_timed(f))
    return [statistics.median(t) for t in samples], outputs


def bench_generate(model: str = "smollm2", batch_sizes=(1, 8), tokens: int = 64, repeats: int = 3,
                   reference: bool = True, torch_threads: int | None = None, progress=None,
                   device: str = "cpu", dtype: str | None = None,
                   keep_quantized: bool = False) -> tuple[list[Result], dict]:
    """Greedy tokens/s of zigtensor and (when installed and reference) transformers per batch size, in turns,
    and the load figures. torch_threads: torch.set_num_threads for transformers (None: torch's default).
    device and dtype ("float32", "bfloat16", "float16"; None: the model's default) apply to both libraries;
    keep_quantized to zigtensor's (a GGUF file's blocks stay packed: LLM's argument).
    Returns (rows, facts): rows in seconds per generated token (Result.unit 's/token'); facts:
    {'same_tokens': {batch: bool}, 'load': {library: LoadStats | None}, 'torch_threads': int | None,
    'roofline': {'weight_bytes': {library: int}, 'copy_bytes_per_s': float, 'copy_how': str}} (roofline_rows
    turns it and the rows into each library's weight bandwidth per batch size)."""
    from ..llm import LLM

    say = progress or (lambda s: None)
    say(f"loading {model} (zigtensor)")
    llm = LLM(model, device=device, dtype=dtype, keep_quantized=keep_quantized)
    hf = tok = None
    if reference:
        try:
            say(f"loading {model} (transformers)")
            hf, tok = _load_hf(model, device, dtype)
            import torch

            if torch_threads is not None:
                torch.set_num_threads(torch_threads)
            torch_threads = torch.get_num_threads()
        except ImportError:
            hf = None
    prompt_ids = llm.tokenizer.encode(PROMPT) if llm.tokenizer is not None else list(range(8))
    rows, same = [], {}
    for batch in batch_sizes:
        say(f"batch {batch}: {tokens} tokens per sequence, {repeats} runs each, in turns")
        seconds, outputs = _time_batch(llm, hf, tok, [prompt_ids] * batch, tokens, repeats)
        n = batch * tokens
        rows.append(Result(f"greedy decode, batch {batch}, {tokens} tokens", seconds[0] / n,
                           seconds[1] / n if hf is not None else None, "transformers generate", unit="s/token"))
        if hf is not None:
            same[batch] = outputs[0] == outputs[1]
    reference_ran = hf is not None
    say("decode roofline: weight bytes per step, copy bandwidth")
    roofline = {"weight_bytes": {"zigtensor": decode_weight_bytes(llm.model)}}
    if reference_ran:
        roofline["weight_bytes"]["transformers"] = decode_weight_bytes(hf)
    roofline["copy_bytes_per_s"], roofline["copy_how"] = copy_bandwidth(device)
    llm = hf = None  # free both before the load measurements start their processes
    say("load time and memory, each library in a fresh process")
    load = {"zigtensor": load_in_subprocess("zigtensor", model, keep_quantized)}
    if reference:
        load["transformers"] = load_in_subprocess("transformers", model)
    return rows, {"same_tokens": same, "load": load, "torch_threads": torch_threads if reference_ran else None,
                  "roofline": roofline}
