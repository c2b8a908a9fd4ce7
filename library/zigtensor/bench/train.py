"""One training step of a recipe's model, zigtensor against the same network in PyTorch eager.

    results = bench_recipe(find_recipe("shakespeare_gpt"), batch_size=16, steps=20)
    zt bench train shakespeare_gpt --batch-size 16      # or a path: zt bench train my_recipe.toml

The zigtensor model comes from zigtensor.train.models.build_model, as `zt train` builds it; its PyTorch twin
is written below with torch.nn, with the same parameter names, and starts from a copy of the zigtensor
weights. Both see the same synthetic batch (random images and labels, or random token windows: the data
set is not loaded, so the vocabulary is 96 for the char tokenizer, 256 for bytes) and run forward, loss,
backward, gradient clipping (when the recipe's train.grad_clip > 0) and the recipe's optimizer (the forward
under autocast when train.dtype is bfloat16 or float16, float16 with a loss scaler, as `zt train` runs it), in turns
(median_interleaved) so drift hits both alike, and then each library alone, in alternating blocks of steps
(median_in_blocks; see bench_recipe).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib
import tracemalloc
from pathlib import Path

import numpy as np

import zigtensor as zt
import zigtensor.nn.functional as F

from ..train import recipe as R
from ..train.models import DataInfo, build_model
from ..train.trainer import make_autocast, make_grad_scaler
from .timing import Result, median_in_blocks, median_interleaved

CHAR_VOCAB = 96  # the char tokenizer's vocabulary in these benchmarks (Shakespeare's has about this many)
RECIPES_DIR = Path(__file__).resolve().parents[3] / "recipes"  # the shipped recipes of a source checkout


def _torch():
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def find_recipe(name_or_path: str, overrides=()) -> R.Recipe:
    """A recipe from a TOML path, or by the name of a shipped recipe in recipes/ ("gpt" or "gpt.toml")."""
    p = Path(name_or_path)
    if not p.exists():
        shipped = RECIPES_DIR / (p.name if p.suffix == ".toml" else f"{p.name}.toml")
        if p.parent == Path(".") and shipped.exists():
            p = shipped
        else:
            names = sorted(f.stem for f in RECIPES_DIR.glob("*.toml")) if RECIPES_DIR.is_dir() else []
            raise R.RecipeError(f"{name_or_path}: no such recipe file, and no shipped recipe of that name "
                                f"(shipped: {', '.join(names) or 'none'})")
    return R.load_recipe(p, overrides)


def data_info(recipe: R.Recipe) -> DataInfo:
    """The DataInfo of the recipe's dataset, without loading it (see the module docstring)."""
    d = recipe.data
    if isinstance(d, R.ImageDataConfig):
        return DataInfo(kind="image", input_shape=(1, 28, 28), num_classes=10)
    vocab = CHAR_VOCAB if d.tokenizer == "char" else 256
    return DataInfo(kind="text", input_shape=(d.block_size,), vocab_size=vocab, block_size=d.block_size)


# ---------------------------------------------------------------------------------------------- PyTorch twins
_TWINS = {}


def torch_twins(torch) -> dict:
    """{recipe model name: PyTorch class}: each twin takes the zigtensor model's config and has its
    parameter names, shapes and forward."""
    if _TWINS:
        return _TWINS
    tnn, tF = torch.nn, torch.nn.functional

    class MLP(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.dropout = c.dropout
            widths = [c.in_features, *c.hidden]
            self.layers = tnn.ModuleList([tnn.Linear(a, b) for a, b in zip(widths, widths[1:])])
            self.head = tnn.Linear(widths[-1], c.num_classes)

        def forward(self, x):
            x = x.reshape(x.shape[0], -1)
            for layer in self.layers:
                x = tF.dropout(tF.relu(layer(x)), self.dropout, self.training)
            return self.head(x)

    class CNN(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.dropout = c.dropout
            ch, h, w = c.input_shape
            convs = []
            for out in c.channels:
                convs.append(tnn.Conv2d(ch, out, 3, padding=1))
                ch, h, w = out, h // 2, w // 2
            self.convs = tnn.ModuleList(convs)
            self.fc = tnn.Linear(ch * h * w, c.hidden)
            self.head = tnn.Linear(c.hidden, c.num_classes)

        def forward(self, x):
            for conv in self.convs:
                x = tF.max_pool2d(tF.relu(conv(x)), 2)
            x = tF.relu(self.fc(x.reshape(x.shape[0], -1)))
            return self.head(tF.dropout(x, self.dropout, self.training))

    class CausalSelfAttention(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.n_head, self.dropout = c.n_head, c.dropout
            self.c_attn = tnn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
            self.c_proj = tnn.Linear(c.n_embd, c.n_embd, bias=c.bias)
            self.resid_dropout = tnn.Dropout(c.dropout)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
            y = tF.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                                is_causal=True)
            return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))

    class GPTMLP(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.c_fc = tnn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
            self.gelu = tnn.GELU(approximate="tanh")
            self.c_proj = tnn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
            self.dropout = tnn.Dropout(c.dropout)

        def forward(self, x):
            return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))

    class Block(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.ln_1 = tnn.LayerNorm(c.n_embd, bias=c.bias)
            self.attn = CausalSelfAttention(c)
            self.ln_2 = tnn.LayerNorm(c.n_embd, bias=c.bias)
            self.mlp = GPTMLP(c)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.transformer = tnn.ModuleDict(dict(
                wte=tnn.Embedding(c.vocab_size, c.n_embd), wpe=tnn.Embedding(c.block_size, c.n_embd),
                drop=tnn.Dropout(c.dropout), h=tnn.ModuleList([Block(c) for _ in range(c.n_layer)]),
                ln_f=tnn.LayerNorm(c.n_embd, bias=c.bias)))
            self.lm_head = tnn.Linear(c.n_embd, c.vocab_size, bias=False)
            self.lm_head.weight = self.transformer.wte.weight

        def forward(self, idx):
            pos = torch.arange(idx.shape[1], dtype=torch.long)
            x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
            for block in self.transformer.h:
                x = block(x)
            return self.lm_head(self.transformer.ln_f(x))

    class CharLSTM(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.embedding = tnn.Embedding(c.vocab_size, c.embed)
            self.lstm = tnn.LSTM(c.embed, c.hidden, num_layers=c.num_layers, batch_first=True,
                                 dropout=c.dropout if c.num_layers > 1 else 0.0)
            self.head = tnn.Linear(c.hidden, c.vocab_size)

        def forward(self, idx):
            return self.head(self.lstm(self.embedding(idx))[0])

    _TWINS.update(mlp=MLP, cnn=CNN, gpt=GPT, lstm=CharLSTM)
    return _TWINS


def torch_twin(torch, name: str, model):
    """The PyTorch twin of a zigtensor model built for recipe model `name`, holding a copy of its weights."""
    twin = torch_twins(torch)[name](model.config)
    state = {k: torch.from_numpy(np.array(v.numpy(), dtype=np.float32))
             for k, v in model.state_dict().items()}
    twin.load_state_dict(state)
    return twin


# ---------------------------------------------------------------------------------------------- optimizers
_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
               "lion": "Lion"}


def _optimizer(lib, cfg, params):
    """lib.optim.<class of cfg.name>(params, **the other fields), or None when lib has no such class."""
    cls = getattr(lib.optim, _OPTIMIZERS[cfg.name], None)
    if cls is None:
        return None
    kwargs = {k: v for k, v in vars(cfg).items() if k != "name"}
    return cls(params, **kwargs)


# ---------------------------------------------------------------------------------------------- the step
def _batch(info: DataInfo, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    if info.kind == "image":
        x = rng.standard_normal((batch, *info.input_shape)).astype(np.float32)
        return x, rng.integers(0, info.num_classes, batch)
    x = rng.integers(0, info.vocab_size, (batch, info.block_size))
    return x, rng.integers(0, info.vocab_size, (batch, info.block_size))


def _peak_bytes(fn) -> int:
    """Peak host memory traced by tracemalloc while fn runs, above what was allocated when it started."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def bench_recipe(recipe: R.Recipe, batch_size: int | None = None, steps: int = 20,
                 device: str | None = None) -> list[Result]:
    """Time one training step of the recipe's model in zigtensor and in PyTorch eager (when installed), on
    device (default: the recipe's train.device; both libraries on it, each step synchronized on a GPU).

    Returns four rows: the median step time with the two libraries in turns (unit "s"); the same with
    each library's steps run alone, one library after the other; the seconds per example or per token of
    the first row (unit "s/sample" or "s/token"; its inverse is the throughput); and zigtensor's peak host
    memory during one step (unit "B", in zt_s): what tracemalloc sees NumPy allocate for activations,
    gradients and optimizer temporaries, above the memory held before the step. PyTorch's CPU allocator is
    invisible to tracemalloc, so that row has no reference.
    """
    info = data_info(recipe)
    batch = batch_size or recipe.train.batch_size
    name = recipe.model.name
    device = str(zt.device(device or recipe.train.device))
    on_gpu = device != "cpu"
    zt.manual_seed(recipe.train.seed)
    model = build_model(recipe.model, info)
    model.to(device)
    model.train()
    params = list(model.parameters())
    opt = _optimizer(zt, recipe.optim, params)
    clip = recipe.train.grad_clip
    x, y = _batch(info, batch)
    zx, zy = zt.tensor(x, device=device), zt.tensor(y.reshape(-1), device=device)

    # train.dtype bfloat16/float16: the forward under autocast, float16 with a loss scaler, as the trainer runs it
    # (and PyTorch's twin with torch.autocast and its GradScaler)
    dtype = recipe.train.dtype
    autocast = make_autocast(dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, device=device)))
    scaler = make_grad_scaler(recipe)

    def zt_step():
        with autocast:
            logits = model(zx)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), zy)
        opt.zero_grad()
        (loss if scaler is None else scaler.scale(loss)).backward()
        if scaler is not None:
            scaler.unscale_(opt)
        if clip > 0:
            zt.nn.utils.clip_grad_norm_(params, clip)
        if scaler is None:
            opt.step()
        else:
            scaler.step(opt)
            scaler.update()
        if on_gpu:  # NOTE: kernels run asynchronously; a step is timed to its end
            zt.cuda.synchronize()

    fns = [zt_step]
    torch = _torch()
    if torch is not None:
        twin = torch_twin(torch, name, model).to(device)
        twin.train()
        tparams = list(twin.parameters())
        topt = _optimizer(torch, recipe.optim, tparams)
        tx, ty = torch.from_numpy(x).to(device), torch.from_numpy(y.reshape(-1)).to(device)

        t_autocast = (torch.autocast(device.partition(":")[0], dtype=getattr(torch, dtype))
                      if dtype != "float32" else contextlib.nullcontext())
        t_scaler = torch.amp.GradScaler(device.partition(":")[0]) if dtype == "float16" else None

        def torch_step():
            with t_autocast:
                logits = twin(tx)
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ty)
            topt.zero_grad()
            (loss if t_scaler is None else t_scaler.scale(loss)).backward()
            if t_scaler is not None:
                t_scaler.unscale_(topt)
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(tparams, clip)
            if t_scaler is None:
                topt.step()
            else:
                t_scaler.step(topt)
                t_scaler.update()
            if on_gpu:
                torch.cuda.synchronize()

        if topt is not None:
            fns.append(torch_step)
    times = median_interleaved(fns, steps)
    zt_s, ref_s = times[0], (times[1] if len(times) > 1 else None)
    # NOTE: in turns, each library's idle worker threads (OpenBLAS, OpenMP) still spin while the other
    # runs, which slows both, PyTorch more; timed alone, in blocks with a pause between, they do not meet.
    alone = median_in_blocks(fns, steps)
    n_params = sum(p.numel() for p in params)
    if info.kind == "text":
        per, unit = batch * info.block_size, "token"
        shape = f"batch {batch} x {info.block_size} tokens"
    else:
        per, unit = batch, "sample"
        shape = f"batch {batch}"
    precision = "" if dtype == "float32" else f", {dtype} autocast"
    step = f"{name} ({n_params / 1e6:.2f}M params) {recipe.optim.name} step{precision}, {shape}, in turns"
    rows = [
        Result(step, zt_s, ref_s, "torch eager"),
        Result(f"{name} step, each library timed alone", alone[0], alone[1] if len(alone) > 1 else None,
               "torch eager"),
        Result(f"{name} throughput ({unit}s/s)", zt_s / per, None if ref_s is None else ref_s / per,
               "torch eager", unit=f"s/{unit}"),
    ]
    if not on_gpu:  # (tracemalloc sees host allocations only)
        rows.append(Result(f"{name} peak host memory of a step", _peak_bytes(zt_step), None,
                           "tracemalloc (NumPy allocations)", unit="B"))
    return rows


def _describe(r: Result) -> str:
    if r.unit == "B":
        return f"{r.name}: {r.zt_s / 2**20:.1f} MiB"
    if r.unit.startswith("s/"):
        ref = f", torch {1 / r.ref_s:,.0f}" if r.ref_s else ""
        return f"{r.name}: zigtensor {1 / r.zt_s:,.0f}{ref}"
    ref = f", torch {r.ref_s * 1e3:.1f} ms, torch/zigtensor {r.ratio:.2f}x" if r.ref_s else ""
    return f"{r.name}: zigtensor {r.zt_s * 1e3:.1f} ms{ref}"


if __name__ == "__main__":
    import sys

    for r in bench_recipe(find_recipe(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None):
        print(_describe(r))
