"""zigtensor.train.recipe: TOML -> validated dataclasses, overrides, exact one-line errors, round trips."""

from __future__ import annotations

import dataclasses

import pytest

import zigtensor as zt
from zigtensor.optim import lr_scheduler
from zigtensor.train import (
    OPTIMIZERS,
    SCHEDULES,
    AdamWConfig,
    ConstantSchedule,
    EvalConfig,
    GPTConfig,
    MLPConfig,
    Recipe,
    RecipeError,
    SampleConfig,
    TrainConfig,
    load_recipe,
    parse_recipe,
    recipe_to_dict,
    recipe_to_toml,
)

IMAGES = '[model]\nname = "mlp"\n\n[data]\nname = "fashion-mnist"\n'
TEXT = '[model]\nname = "gpt"\n\n[data]\nname = "shakespeare"\n'


def _error(text: str, overrides=()) -> str:
    with pytest.raises(RecipeError) as e:
        parse_recipe(text, overrides, source="recipe.toml")
    assert isinstance(e.value, ValueError)
    message = str(e.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------- defaults
def test_minimal_recipe_gets_the_defaults():
    r = parse_recipe(IMAGES)
    assert isinstance(r, Recipe)
    assert r.model == MLPConfig(hidden=[256, 128], dropout=0.0)
    assert r.optim == AdamWConfig() and r.optim.lr == 1e-3 and r.optim.betas == (0.9, 0.999)
    assert r.schedule == ConstantSchedule()
    assert r.train == TrainConfig() and r.train.steps == 1000 and r.train.device == "cpu"
    assert r.eval == EvalConfig() and r.sample is None
    assert r.data.path is None and r.data.val_fraction == 0.1


def test_language_model_recipe_is_resolved():
    r = parse_recipe(TEXT + "block_size = 64\n")
    assert r.model == GPTConfig(block_size=64)  # taken from data.block_size
    assert r.sample == SampleConfig()  # language models sample by default
    assert parse_recipe(TEXT, ["model.block_size=256"]).model.block_size == 256


@pytest.mark.parametrize("schedule, steps, resolved", [
    ('name = "cosine"', 500, dict(decay_steps=500, min_lr=0.0)),
    ('name = "warmup_cosine"\nwarmup_steps = 100', 500, dict(decay_steps=400)),
    ('name = "warmup_linear"\nwarmup_steps = 0\nmin_lr = 1e-5', 500, dict(decay_steps=500, min_lr=1e-5)),
    ('name = "wsd"\nwarmup_steps = 100', 600, dict(decay_steps=100, stable_steps=400, decay="linear")),
    ('name = "wsd"\nwarmup_steps = 10\ndecay_steps = 30', 100, dict(decay_steps=30, stable_steps=60)),
    ('name = "step"\nstep_size = 30', 100, dict(step_size=30, gamma=0.1)),
])
def test_schedules_are_resolved(schedule, steps, resolved):
    r = parse_recipe(IMAGES + f"[schedule]\n{schedule}\n", [f"train.steps={steps}"])
    for k, v in resolved.items():
        assert getattr(r.schedule, k) == v


# ---------------------------------------------------------------------------------------------- errors
OPTIM_ADAM = IMAGES + '[optim]\nname = "adam"\n'
TRAIN_KEYS = ("steps, batch_size, seed, eval_every, log_every, checkpoint_every, keep_checkpoints, "
              "grad_clip, device, dtype")


@pytest.mark.parametrize("text, overrides, message", [
    # unknown keys, with the closest valid name or the list of valid ones
    (IMAGES + "[optim]\nlrr = 0.1\n", [],
     "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"),
    (IMAGES, ["optim.lrr=0.1"],
     "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"),
    (IMAGES + "[trian]\nsteps = 1\n", [],
     "unknown key 'trian' (did you mean 'train'?)"),
    (OPTIM_ADAM + "momentum = 0.9\n", [],
     "unknown key 'optim.momentum' (valid keys for optimizer 'adam': name, lr, betas, eps, weight_decay, "
     "amsgrad)"),
    (IMAGES, ["train.foo=1"],
     f"unknown key 'train.foo' (valid keys: {TRAIN_KEYS})"),
    ('[model]\nnme = "mlp"\n[data]\nname = "mnist"\n', [],
     "unknown key 'model.nme' (did you mean 'model.name'?)"),
    (IMAGES, ["model.bias=1"],
     "unknown key 'model.bias' (valid keys for model 'mlp': name, hidden, dropout)"),
    # wrong types: ints are floats, bools are never numbers
    (IMAGES + '[optim]\nlr = "fast"\n', [], "optim.lr: expected float, got str ('fast')"),
    (IMAGES, ["optim.lr=fast"], "optim.lr: expected float, got str ('fast')"),
    (IMAGES, ["optim.lr=true"], "optim.lr: expected float, got bool (True)"),
    (IMAGES, ["train.steps=true"], "train.steps: expected int, got bool (True)"),
    (IMAGES, ["train.steps=10.5"], "train.steps: expected int, got float (10.5)"),
    (IMAGES, ["train.steps=[1]"], "train.steps: expected int, got list ([1])"),
    (IMAGES, ["train.steps={a = 1}"], "train.steps: expected int, got table ({'a': 1})"),
    (IMAGES, ["train.device=1"], "train.device: expected str, got int (1)"),
    (TEXT, ["model.bias=1"], "model.bias: expected bool, got int (1)"),
    (IMAGES, ["model.hidden=128"], "model.hidden: expected list[int], got int (128)"),
    (IMAGES, ["model.hidden=[128, 'a']"], "model.hidden[1]: expected int, got str ('a')"),
    (IMAGES, ["model.hidden=[128, 0]"], "model.hidden[1]: expected a positive int, got 0"),
    (IMAGES, ["optim.betas=0.9"], "optim.betas: expected tuple[float, float], got float (0.9)"),
    (IMAGES, ["optim.betas=[0.9]"], "optim.betas: expected 2 values (tuple[float, float]), got 1 ([0.9])"),
    (IMAGES, ["optim.betas=[0.9, 1]"], "optim.betas[1]: expected a float in [0, 1), got 1"),
    (IMAGES, ["train=3"], "train: expected table, got int (3)"),
    (IMAGES, ["model.name=3"], "model.name: expected str, got int (3)"),
    (IMAGES, ["train.seed=" + "x" * 80],
     "train.seed: expected int, got str ('" + "x" * 56 + "...)"),  # long values are cut short
    # choices
    (IMAGES, ["train.device=tpu"],
     "train.device: expected one of cpu, cuda, got 'tpu' (did you mean 'cpu'?)"),
    (IMAGES, ["train.dtype=float61"],
     "train.dtype: expected one of float32, bfloat16, float16, got 'float61' (did you mean 'float16'?)"),
    (IMAGES, ["train.dtype=fp8"],
     "train.dtype: expected one of float32, bfloat16, float16, got 'fp8'"),
    # required keys
    ('[data]\nname = "mnist"\npath = "x"\n', [], "missing required key 'model.name'"),
    ('[model]\nhidden = [1]\n[data]\nname = "mnist"\n', [], "missing required key 'model.name'"),
    ('[model]\nname = "mlp"\n', [], "missing required key 'data.name'"),
    ('[model]\nname = "mlp"\n[data]\nname = "mnist"\n', [],
     "missing required key 'data.path' (dataset 'mnist' has no default location)"),
    ('[model]\nname = "gpt"\n[data]\nname = "text"\n', [],
     "missing required key 'data.path' (dataset 'text' has no default location)"),
    (IMAGES + '[schedule]\nname = "step"\n', [], "missing required key 'schedule.step_size'"),
    (IMAGES + '[schedule]\nname = "warmup_cosine"\n', [], "missing required key 'schedule.warmup_steps'"),
    # registry names
    (IMAGES, ['model.name="mpl"'],
     "model.name: unknown model 'mpl'; expected one of cnn, gpt, lstm, mlp (did you mean 'mlp'?)"),
    (IMAGES, ["optim.name=lbfgs"],
     "optim.name: unknown optimizer 'lbfgs'; expected one of adagrad, adam, adamw, lion, rmsprop, sgd"),
    (IMAGES, ["data.name=fashion_mnist"],
     "data.name: unknown dataset 'fashion_mnist'; expected one of fashion-mnist, mnist, shakespeare, text "
     "(did you mean 'fashion-mnist'?)"),
    (IMAGES, ["schedule.name=cosin"],
     "schedule.name: unknown schedule 'cosin'; expected one of constant, cosine, step, warmup_cosine, "
     "warmup_linear, wsd (did you mean 'cosine'?)"),
    # ranges
    (IMAGES, ["train.steps=0"], "train.steps: expected a positive int, got 0"),
    (IMAGES, ["train.seed=-1"], "train.seed: expected a non-negative int, got -1"),
    (IMAGES, ["optim.lr=0"], "optim.lr: expected a positive float, got 0"),
    (IMAGES, ["optim.lr=-1e-3"], "optim.lr: expected a positive float, got -0.001"),
    (IMAGES, ["optim.lr=inf"], "optim.lr: expected a finite float, got inf"),
    (IMAGES, ["model.dropout=1.5"], "model.dropout: expected a float in [0, 1), got 1.5"),
    (IMAGES, ["data.val_fraction=1"], "data.val_fraction: expected a float in [0, 1), got 1"),
    (IMAGES, ["train.grad_clip=-1.0"], "train.grad_clip: expected a non-negative float, got -1.0"),
    (IMAGES + '[schedule]\nname = "warmup_cosine"\nwarmup_steps = 1\nstart_factor = 2\n', [],
     "schedule.start_factor: expected a float in [0, 1], got 2"),
    # rules between fields and sections
    (TEXT, ["model.n_embd=100", "model.n_head=3"],
     "model.n_embd: expected a multiple of model.n_head (3), got 100"),
    (TEXT, ["model.block_size=64"],
     "model.block_size: expected an int >= data.block_size (128), got 64"),
    (IMAGES, ["model.name=gpt"],
     "model.name: model 'gpt' needs a text dataset (shakespeare, text), got data.name 'fashion-mnist'"),
    (TEXT, ["model.name=cnn"],
     "model.name: model 'cnn' needs an image dataset (fashion-mnist, mnist), got data.name 'shakespeare'"),
    (TEXT, ["eval.split=test"],
     "eval.split: dataset 'shakespeare' has no test split; expected 'val'"),
    (IMAGES, ["data.val_fraction=0"],
     "eval.split: data.val_fraction is 0, so there is no val split; set data.val_fraction > 0 or "
     "eval.split = \"test\""),
    (TEXT, ["data.val_fraction=0"],
     "eval.split: data.val_fraction is 0, so there is no val split; set data.val_fraction > 0"),
    (IMAGES + "[sample]\ntokens = 10\n", [],
     "sample: only language models (gpt, lstm) generate text; model.name is 'mlp'"),
    (IMAGES, ["optim.name=sgd", "optim.nesterov=true"],
     "optim.nesterov: needs optim.momentum > 0 and optim.dampening = 0, got momentum 0.0 and dampening 0.0"),
    (IMAGES + '[schedule]\nname = "warmup_linear"\nwarmup_steps = 100\n', ["train.steps=100"],
     "schedule.warmup_steps: expected an int < train.steps (100) when schedule.decay_steps is absent, "
     "got 100"),
    (IMAGES + '[schedule]\nname = "wsd"\nwarmup_steps = 10\ndecay_steps = 95\n', ["train.steps=100"],
     "schedule.decay_steps: expected an int <= train.steps - schedule.warmup_steps (90) when "
     "schedule.stable_steps is absent, got 95"),
    # malformed TOML and overrides
    ('[model]\nname = "mlp"\nsteps = @\n', [],
     "recipe.toml: invalid TOML at line 3, column 9: Invalid value"),
    ('[model]\nname = "mlp', [],
     "recipe.toml: invalid TOML at line 2, column 12: Unterminated string"),
    (IMAGES + '[model]\n', [],
     "recipe.toml: invalid TOML at line 6, column 7: Cannot declare ('model',) twice"),
    (IMAGES, ["train.steps"], "override 'train.steps': expected key.path=value, e.g. optim.lr=3e-4"),
    (IMAGES, ["=3"], "override '=3': expected key.path=value, e.g. optim.lr=3e-4"),
    (IMAGES, ["train..steps=3"], "override 'train..steps=3': expected key.path=value, e.g. optim.lr=3e-4"),
    (IMAGES, ["model.hidden=[1,"], "override 'model.hidden=[1,': invalid TOML value: Invalid value"),
    (IMAGES, ['data.path="/x'], "override 'data.path=\"/x': invalid TOML value: Unterminated string"),
    (IMAGES, ["model.name.x=1"], "override 'model.name.x=1': model.name is not a table"),
])
def test_error_messages(text, overrides, message):
    assert _error(text, overrides) == message


def test_load_recipe_file_errors(tmp_path):
    with pytest.raises(RecipeError) as e:
        load_recipe(tmp_path / "nope.toml")
    assert str(e.value) == f"{tmp_path / 'nope.toml'}: no such recipe file"
    (tmp_path / "bad.toml").write_bytes(b'[model]\nname = "ml\xe9"\n')
    with pytest.raises(RecipeError) as e:
        load_recipe(tmp_path / "bad.toml")
    assert str(e.value) == f"{tmp_path / 'bad.toml'}: not UTF-8 text (byte 0xe9 at offset 18)"
    (tmp_path / "recipe.toml").write_text('[model]\nname = "mlp"\n[optim]\nlr = \n')
    with pytest.raises(RecipeError) as e:
        load_recipe(tmp_path / "recipe.toml")
    assert str(e.value) == f"{tmp_path / 'recipe.toml'}: invalid TOML at line 4, column 6: Invalid value"


# ---------------------------------------------------------------------------------------------- overrides
def test_overrides():
    r = parse_recipe(IMAGES, ["optim.lr=3e-4", "train.steps=200", "model.hidden=[128, 64]",
                              'data.name="mnist"', "data.path=/data/mnist", "train.device=cuda",
                              " optim.betas = [0.8, 0.95] ", "schedule.name=cosine", "train.steps=300"])
    assert r.optim.lr == 3e-4 and r.model.hidden == [128, 64]
    assert r.data.name == "mnist" and r.data.path == "/data/mnist"  # bare words are strings
    assert r.train.device == "cuda" and r.optim.betas == (0.8, 0.95)
    assert r.train.steps == 300 and r.schedule.decay_steps == 300  # the last override wins; resolved after
    assert isinstance(parse_recipe(IMAGES, ["optim.lr=1"]).optim.lr, float)  # an int is a fine float
    r = parse_recipe(IMAGES + '[optim]\nname = "sgd"\nmomentum = 0.9\n', ["optim.nesterov=true"])
    assert r.optim.name == "sgd" and r.optim.nesterov is True and r.optim.momentum == 0.9


def test_a_table_without_name_keeps_the_default_registry_entry():
    r = parse_recipe(IMAGES + "[optim]\nweight_decay = 0.1\n")
    assert r.optim == AdamWConfig(weight_decay=0.1)


# ---------------------------------------------------------------------------------------------- round trips
ROUND_TRIPS = [
    IMAGES,
    IMAGES.replace('"mlp"', '"cnn"') + '[optim]\nname = "sgd"\nmomentum = 0.9\nnesterov = true\n',
    IMAGES.replace('"fashion-mnist"', '"mnist"\npath = "/data/m n"\ntrain_size = 1000')
    + '[eval]\nsplit = "test"\n',
    TEXT + 'tokenizer = "bytes"\nblock_size = 32\n[optim]\nname = "lion"\n[schedule]\nname = "wsd"\n'
           'warmup_steps = 10\ndecay = "cosine"\n[sample]\n'
           'prompt = "O Romeo, \\"Romeo\\"\\\\ \\t\\u007f é\\n"\ntop_k = 5\n',
    TEXT.replace('"gpt"', '"lstm"') + '[optim]\nname = "rmsprop"\ncentered = true\n[schedule]\n'
                                      'name = "step"\nstep_size = 7\n',
    IMAGES + '[optim]\nname = "adagrad"\n[schedule]\nname = "warmup_linear"\nwarmup_steps = 5\n[train]\n'
             'dtype = "bfloat16"\n',
]


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_round_trip(tmp_path, text):
    r = parse_recipe(text)
    out = recipe_to_toml(r)
    (tmp_path / "resolved.toml").write_text(out)
    again = load_recipe(tmp_path / "resolved.toml")
    assert again == r
    assert recipe_to_toml(again) == out
    assert "None" not in out and recipe_to_dict(again) == recipe_to_dict(r)


def test_round_trip_text_is_readable():
    out = recipe_to_toml(parse_recipe(TEXT + '[sample]\nprompt = "a\\"b\\n"\n'))
    assert out.startswith('[model]\nname = "gpt"\nn_layer = 4\n')
    assert '\n\n[optim]\nname = "adamw"\nlr = 0.001\nbetas = [0.9, 0.999]\n' in out
    assert 'prompt = "a\\"b\\n"\n' in out
    assert "path =" not in out  # None values (default locations) are left out
    assert parse_recipe(ROUND_TRIPS[3]).sample.prompt == 'O Romeo, "Romeo"\\ \t\x7f é\n'


# ---------------------------------------------------------------------------------------------- the library
OPTIMIZER_CLASSES = {"sgd": zt.optim.SGD, "adam": zt.optim.Adam, "adamw": zt.optim.AdamW,
                     "rmsprop": zt.optim.RMSprop, "adagrad": zt.optim.Adagrad, "lion": zt.optim.Lion}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_fields_are_the_constructor_arguments(name):
    cfg = parse_recipe(IMAGES, [f"optim.name={name}"]).optim
    kwargs = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "name"}
    opt = OPTIMIZER_CLASSES[name]([zt.nn.Parameter(zt.zeros(2))], **kwargs)
    assert opt.param_groups[0]["lr"] == cfg.lr


SCHEDULE_FUNCTIONS = {"step": lr_scheduler.step_lr, "warmup_cosine": lr_scheduler.warmup_cosine_lr,
                      "warmup_linear": lr_scheduler.warmup_linear_lr,
                      "wsd": lr_scheduler.warmup_stable_decay_lr}


@pytest.mark.parametrize("name", sorted(SCHEDULE_FUNCTIONS))
def test_schedule_fields_are_the_function_arguments(name):
    extra = ["schedule.step_size=10"] if name == "step" else ["schedule.warmup_steps=10"]
    cfg = parse_recipe(IMAGES, [f"schedule.name={name}", *extra]).schedule
    assert set(SCHEDULES) == {"constant", "step", "cosine", "warmup_cosine", "warmup_linear", "wsd"}
    kwargs = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "name"}
    schedule = SCHEDULE_FUNCTIONS[name](1e-3, **kwargs)
    assert schedule(0) <= 1e-3
