"""The model registry (zigtensor.train.models) and the models (zigtensor.models): building from recipe
sections, shapes, the GPT's causality and weight tying, agreement with the PyTorch twins of bench/train.py,
sampling, and `zt bench train` end to end."""

import subprocess
import sys

import numpy as np
import pytest
from oracle import torch

import zigtensor as zt
import zigtensor.nn.functional as F
from zigtensor.bench.train import bench_recipe, find_recipe, torch_twin
from zigtensor.train import CNNConfig, GPTConfig, LSTMConfig, MLPConfig, RecipeError
from zigtensor.train.models import BUILDERS, DataInfo, build_model, generate

IMAGES = DataInfo(kind="image", input_shape=(1, 28, 28), num_classes=10)
TEXT = DataInfo(kind="text", input_shape=(16,), vocab_size=37, block_size=16)

# one small config per registry name, as a recipe's [model] section gives it
CONFIGS = {
    "mlp": (MLPConfig(hidden=[32, 16], dropout=0.1), IMAGES),
    "cnn": (CNNConfig(channels=[4, 8], hidden=16, dropout=0.1), IMAGES),
    "gpt": (GPTConfig(n_layer=2, n_head=2, n_embd=16, dropout=0.1), TEXT),
    "lstm": (LSTMConfig(embed=8, hidden=16, num_layers=2, dropout=0.1), TEXT),
}


def build(name, seed=0):
    zt.manual_seed(seed)
    cfg, info = CONFIGS[name]
    return build_model(cfg, info)


def inputs(name, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    if CONFIGS[name][1].kind == "image":
        return rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    return rng.integers(0, TEXT.vocab_size, (batch, TEXT.block_size))


def test_registry_covers_the_recipe_models():
    from zigtensor.train import MODELS

    assert set(BUILDERS) == set(MODELS) == set(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_builds_and_output_shape(name):
    model = build(name)
    out = model(zt.tensor(inputs(name, batch=3)))
    want = (3, 10) if name in ("mlp", "cnn") else (3, TEXT.block_size, TEXT.vocab_size)
    assert out.shape == want and out.dtype is zt.float32
    assert all(p.requires_grad for p in model.parameters())


def test_build_errors():
    registry = "unknown model 'transformer'; the model registry has cnn, gpt, lstm, mlp"
    with pytest.raises(ValueError, match=registry):
        build_model(type("Section", (), {"name": "transformer"})(), TEXT)
    with pytest.raises(ValueError, match="model 'gpt' needs text data"):
        build_model(GPTConfig(), IMAGES)
    with pytest.raises(ValueError, match="model 'mlp' needs DataInfo.num_classes"):
        build_model(MLPConfig(), DataInfo(kind="image", input_shape=(1, 28, 28)))
    with pytest.raises(ValueError, match="model 'gpt' needs a block_size"):
        build_model(GPTConfig(), DataInfo(kind="text", input_shape=(8,), vocab_size=5))


def test_configs_map_from_the_recipe():
    gpt = build_model(GPTConfig(n_layer=3, n_head=2, n_embd=8, block_size=32, bias=False), TEXT)
    c = gpt.config
    assert (c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd) == (37, 32, 3, 2, 8)
    assert gpt.transformer.h[0].attn.c_attn.bias is None and gpt.transformer.ln_f.bias is None
    assert build_model(GPTConfig(n_embd=8, n_head=2), TEXT).config.block_size == 16  # from the data
    mlp = build_model(MLPConfig(hidden=[5, 6]), IMAGES)
    assert [(m.in_features, m.out_features) for m in [*mlp.layers, mlp.head]] == [(784, 5), (5, 6), (6, 10)]
    cnn = build_model(CNNConfig(channels=[3, 4, 5], hidden=7), IMAGES)
    assert cnn.fc.in_features == 5 * 3 * 3  # 28 -> 14 -> 7 -> 3
    lstm = build_model(LSTMConfig(embed=4, hidden=6, num_layers=3), TEXT)
    assert (lstm.lstm.input_size, lstm.lstm.hidden_size, lstm.lstm.num_layers) == (4, 6, 3)


def test_gpt_is_causal():
    model = build("gpt").eval()
    idx = inputs("gpt", batch=2)
    changed = idx.copy()
    changed[:, 10] = (changed[:, 10] + 1) % TEXT.vocab_size
    a, b = model(zt.tensor(idx)).numpy(), model(zt.tensor(changed)).numpy()
    np.testing.assert_array_equal(a[:, :10], b[:, :10])  # earlier positions do not see token 10
    assert np.abs(a[:, 10:] - b[:, 10:]).max() > 1e-4
    with pytest.raises(ValueError, match="length 17, the block size is only 16"):
        model(zt.zeros(1, 17, dtype=zt.int64))


def test_gpt_weight_tying_and_init():
    model = build("gpt")
    wte = model.transformer.wte.weight
    assert model.lm_head.weight is wte
    names = [n for n, _ in model.named_parameters()]
    assert "lm_head.weight" not in names and "transformer.wte.weight" in names  # counted once
    assert "lm_head.weight" in model.state_dict()  # saved under both names, as in PyTorch
    F.cross_entropy(model(zt.tensor(inputs("gpt"))).reshape(-1, TEXT.vocab_size),
                    zt.tensor(inputs("gpt", seed=1).reshape(-1))).backward()
    assert wte.grad is not None and np.abs(wte.grad.numpy()).sum() > 0
    zt.manual_seed(0)
    big = build_model(GPTConfig(n_layer=4, n_head=4, n_embd=64), DataInfo("text", (8,), vocab_size=500,
                                                                           block_size=8))
    std = lambda p: float(p.numpy().std())  # noqa: E731
    assert abs(std(big.transformer.h[0].mlp.c_fc.weight) - 0.02) < 2e-3
    assert abs(std(big.transformer.h[0].mlp.c_proj.weight) - 0.02 / np.sqrt(8)) < 1e-3  # GPT-2 scaled init
    assert not big.transformer.h[0].attn.c_attn.bias.numpy().any()
    assert big.get_num_params() == big.get_num_params(False) - 8 * 64


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_pytorch_twin(name):
    model = build(name).eval()
    twin = torch_twin(torch, name, model).eval()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in twin.parameters())
    x = inputs(name)
    got = model(zt.tensor(x)).numpy()
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_gpt_gradients_match_pytorch_twin():
    model = build("gpt").eval()  # eval: no dropout, so both compute the same function
    twin = torch_twin(torch, "gpt", model).eval()
    x, y = inputs("gpt"), inputs("gpt", seed=1)
    F.cross_entropy(model(zt.tensor(x)).reshape(-1, TEXT.vocab_size), zt.tensor(y.reshape(-1))).backward()
    torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)).reshape(-1, TEXT.vocab_size),
                                      torch.from_numpy(y.reshape(-1))).backward()
    tgrads = dict(twin.named_parameters())
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tgrads[n].grad.numpy(), atol=1e-5, rtol=1e-3, err_msg=n)


def test_dropout_only_in_training():
    model = build("gpt")
    x = zt.tensor(inputs("gpt"))
    zt.manual_seed(1)
    a = model(x).numpy()
    assert not np.array_equal(a, model(x).numpy())  # dropout differs between calls
    model.eval()
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())


# ---------------------------------------------------------------------------------------------- generate
PROMPT = [[1, 2, 3]]


@pytest.mark.parametrize("name", ["gpt", "lstm"])
def test_generate_is_seeded_and_leaves_the_model_mode(name):
    model = build(name)
    out = generate(model, zt.tensor(PROMPT), 20, temperature=0.9, top_k=5, seed=7)
    assert out.shape == (1, 23) and out.dtype is zt.int64 and out.tolist()[0][:3] == PROMPT[0]
    assert model.training  # put back in train mode after sampling in eval mode
    state = zt.get_rng_state()
    assert generate(model, zt.tensor(PROMPT), 20, temperature=0.9, top_k=5, seed=7).tolist() == out.tolist()
    assert zt.get_rng_state() == state  # a seed leaves the framework RNG alone
    assert generate(model, zt.tensor(PROMPT), 20, temperature=0.9, top_k=5, seed=8).tolist() != out.tolist()
    zt.manual_seed(3)
    a = generate(model, zt.tensor(PROMPT), 20).tolist()
    zt.manual_seed(3)
    assert generate(model, zt.tensor(PROMPT), 20).tolist() == a  # the framework RNG without a seed


def test_generate_greedy_and_top_k():
    model = build("gpt").eval()
    out = generate(model, zt.tensor(PROMPT), 5, temperature=0.0)
    idx = zt.tensor(PROMPT)
    for _ in range(5):  # greedy by hand
        nxt = int(model(idx).numpy()[0, -1].argmax())
        idx = zt.cat([idx, zt.tensor([[nxt]])], 1)
    assert out.tolist() == idx.tolist()
    # top_k=1 is greedy whatever the temperature
    assert generate(model, zt.tensor(PROMPT), 5, temperature=2.0, top_k=1, seed=0).tolist() == out.tolist()
    with pytest.raises(ValueError, match="expected idx as int64 token ids of shape"):
        generate(model, zt.tensor([1, 2]), 3)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate(model, zt.tensor(PROMPT), 3, temperature=-1.0)


class Recorder(zt.nn.Module):
    """A model that records the context lengths it is given and predicts token (last + 1) % vocab."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.lengths = vocab, []

    def forward(self, idx):
        self.lengths.append(idx.shape[1])
        last = idx.numpy()[:, -1]
        return zt.tensor(np.eye(self.vocab, dtype=np.float32)[(last + 1) % self.vocab][:, None, :] * 50)


def test_generate_crops_the_context_to_block_size():
    rec = Recorder(10)
    out = generate(rec, zt.tensor([[0, 1, 2]]), 8, top_k=1, block_size=5)
    assert out.tolist() == [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]]
    assert rec.lengths == [3, 4, 5, 5, 5, 5, 5, 5]
    gpt = build("gpt")  # block_size 16 from its config: 30 tokens from a 3-token prompt need cropping
    assert generate(gpt, zt.tensor(PROMPT), 30, seed=0).shape == (1, 33)


class FullRecompute(zt.nn.Module):
    """The LSTM without forward_with_state: generate then feeds it the whole sequence at every step."""

    def __init__(self, lstm):
        super().__init__()
        self.inner = lstm

    def forward(self, idx):
        return self.inner(idx)


def test_lstm_generate_carries_state_like_a_full_recompute():
    model = build("lstm").eval()
    idx = zt.tensor(inputs("lstm", batch=1))
    logits, state = model.forward_with_state(idx[:, :10])
    step_logits, _ = model.forward_with_state(idx[:, 10:], state)
    np.testing.assert_allclose(zt.cat([logits, step_logits], 1).numpy(), model(idx).numpy(), atol=1e-5)
    carried = generate(model, zt.tensor(PROMPT), 25, seed=3)
    recomputed = generate(FullRecompute(model), zt.tensor(PROMPT), 25, seed=3)
    assert carried.tolist() == recomputed.tolist()


# ---------------------------------------------------------------------------------------------- bench
RECIPE = """
[model]
name = "gpt"
n_layer = 1
n_head = 2
n_embd = 8
[data]
name = "shakespeare"
block_size = 8
[optim]
name = "adamw"
[train]
batch_size = 2
"""


def test_bench_recipe(tmp_path):
    from zigtensor.train import parse_recipe

    step, alone, tput, mem = bench_recipe(parse_recipe(RECIPE), batch_size=3, steps=1)
    assert step.zt_s > 0 and step.ref_s > 0 and "batch 3 x 8 tokens" in step.name
    assert alone.zt_s > 0 and alone.ref_s > 0
    assert tput.unit == "s/token" and tput.zt_s == pytest.approx(step.zt_s / 24)
    assert mem.unit == "B" and mem.zt_s > 0 and mem.ref_s is None
    path = tmp_path / "tiny.toml"
    path.write_text(RECIPE.replace('"gpt"\nn_layer', '"lstm"\nembed = 4\nhidden = 8\nnum_layers').replace(
        "n_head = 2\nn_embd = 8\n", ""))
    r = subprocess.run([sys.executable, "-m", "zigtensor_cli", "bench", "train", str(path), "--steps", "1",
                        "--batch-size", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "lstm" in r.stdout and "tokens/s" in r.stdout and "MiB" in r.stdout
    with pytest.raises(RecipeError, match="no-such-recipe: no such recipe file, and no shipped recipe"):
        find_recipe("no-such-recipe")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_bench_recipe_runs_a_mixed_precision_step_in_both_libraries(dtype, monkeypatch):
    """train.dtype puts both forwards under autocast (float16 with a loss scaler) and says so in the row."""
    from zigtensor import amp
    from zigtensor.train import parse_recipe

    entered = []
    real_enter = amp.autocast.__enter__
    monkeypatch.setattr(amp.autocast, "__enter__", lambda self: entered.append(self.dtype) or real_enter(self))
    step, *_ = bench_recipe(parse_recipe(RECIPE + f'dtype = "{dtype}"\n'), batch_size=2, steps=1)
    assert f"{dtype} autocast" in step.name and step.zt_s > 0 and step.ref_s > 0
    assert entered and set(entered) == {getattr(zt, dtype)}
