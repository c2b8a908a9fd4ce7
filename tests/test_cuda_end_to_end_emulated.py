"""The CUDA backend end to end without a GPU: tensors on 'cuda' run the real backends/cuda.py, cuda_array.py and
launchers, with kernels/*.cu under the kernel emulator and CuPy played by tests/cuda_dev.py.

Every test computes the same thing on the CPU and on the emulated device and compares on the host. Sizes are
tiny: the emulator runs blocks one after another. What this catches is integration: a host array where a
device one is expected, a NumPy function the CUDA array module lacks, a launcher given the wrong layout.
"""

from __future__ import annotations

import numpy as np
import pytest

import zigtensor as zt
import zigtensor.nn.functional as F
from zigtensor import amp
from zigtensor.autograd.grad_mode import no_grad

RTOL, ATOL = 1e-4, 1e-5


def _close(name: str, got, want, rtol: float = RTOL, atol: float = ATOL) -> None:
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=rtol, atol=atol,
                               err_msg=name)


def _on(device, *arrays, grad: bool = True):
    return [zt.tensor(a, device=device, requires_grad=grad) for a in arrays]


def _ops_and_grads(device, x, w, b, ids, targets):
    """A forward touching the backend's main families (GEMM, elementwise, reductions, norms, softmax, indexing,
    embedding, cross-entropy) and the gradients of its loss."""
    xt, wt, bt = _on(device, x, w, b)
    h = F.gelu(xt @ wt + bt)  # (4, 6)
    h = F.layer_norm(h, (6,))
    probs = F.softmax(h, dim=-1)
    picked = h[zt.tensor(ids, device=device)]  # advanced indexing: gather rows
    sliced = h.transpose(0, 1)[1:4].reshape(-1)  # a strided view made contiguous
    loss = F.cross_entropy(h, zt.tensor(targets, device=device)) + (probs * probs).sum() * 0.1 \
        + picked.mean() + sliced.max() + h.var(dim=0).sum()
    loss.backward()
    return loss.numpy(), probs.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def test_ops_and_backward_match_the_cpu(cuda_dev):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    w = rng.normal(size=(5, 6)).astype(np.float32)
    b = rng.normal(size=(6,)).astype(np.float32)
    ids, targets = np.array([3, 0, 3]), np.array([1, 5, 0, 2])
    want = _ops_and_grads("cpu", x, w, b, ids, targets)
    got = _ops_and_grads(cuda_dev, x, w, b, ids, targets)
    for name, g, wv in zip(("loss", "softmax", "x.grad", "w.grad", "b.grad"), got, want):
        _close(name, g, wv)


def _attention_and_grads(device, q, k, v, causal: bool):
    qt, kt, vt = _on(device, q, k, v)
    out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, enable_gqa=True)
    (out * out).sum().backward()
    return out.detach().numpy(), qt.grad.numpy(), kt.grad.numpy(), vt.grad.numpy()


@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_forward_and_backward_match_the_cpu(cuda_dev, causal, request):
    from emulated_cuda import LAUNCHES

    rng = np.random.default_rng(4)
    q = rng.normal(size=(1, 4, 8, 16)).astype(np.float32)
    k, v = (rng.normal(size=(1, 2, 8, 16)).astype(np.float32) for _ in range(2))  # grouped-query: 2 kv heads
    want = _attention_and_grads("cpu", q, k, v, causal)
    got = _attention_and_grads(cuda_dev, q, k, v, causal)
    if request.node.callspec.params["cuda_dev"] == "emulator":  # launches are counted on the emulator only
        assert any(name.startswith("attention.") for name in LAUNCHES), f"no attention kernel: {sorted(LAUNCHES)}"
    for name, g, w in zip(("out", "q.grad", "k.grad", "v.grad"), got, want):
        _close(name, g, w, atol=1e-4)


def _conv_and_grads(device, x, w, b):
    xt, wt, bt = _on(device, x, w, b)
    y = F.max_pool2d(F.relu(F.conv2d(xt, wt, bt, padding=1)), 2)
    (y * y).sum().backward()
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def test_conv_and_pool_forward_and_backward_match_the_cpu(cuda_dev, request):
    """Conv runs conv.cu's kernels (im2col / col2im + our GEMM) forward and backward."""
    import emulated_cuda

    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    w, b = rng.normal(size=(4, 3, 3, 3)).astype(np.float32), rng.normal(size=(4,)).astype(np.float32)
    want = _conv_and_grads("cpu", x, w, b)
    got = _conv_and_grads(cuda_dev, x, w, b)
    for name, g, wv in zip(("out", "x.grad", "w.grad", "b.grad"), got, want):
        _close(name, g, wv, atol=1e-4)
    if "emulator" in request.node.name:
        assert {"conv.im2col", "conv.col2im"} <= set(emulated_cuda.LAUNCHES), emulated_cuda.LAUNCHES


def test_attention_with_values_of_another_width_falls_back_to_the_composed_ops(cuda_dev):
    rng = np.random.default_rng(7)
    q, k = rng.normal(size=(1, 2, 4, 8)).astype(np.float32), rng.normal(size=(1, 2, 5, 8)).astype(np.float32)
    v = rng.normal(size=(1, 2, 5, 6)).astype(np.float32)
    want = F.scaled_dot_product_attention(*(zt.tensor(a) for a in (q, k, v))).numpy()
    got = F.scaled_dot_product_attention(*(zt.tensor(a, device=cuda_dev) for a in (q, k, v))).numpy()
    _close("attention with v of width 6", got, want)


def test_integer_matmul_matches_numpy(cuda_dev):
    rng = np.random.default_rng(5)
    for shape_a, shape_b in (((2, 3), (3, 4)), ((3,), (2, 3, 4)), ((2, 3), (3,))):
        a, b = rng.integers(-3, 4, shape_a), rng.integers(-3, 4, shape_b)
        got = (zt.tensor(a, device=cuda_dev) @ zt.tensor(b, device=cuda_dev)).numpy()
        assert got.dtype == np.int64 and np.array_equal(got, a @ b), (shape_a, shape_b)


def test_tensor_lives_on_the_device_and_refuses_implicit_host_copies(cuda_dev):
    from zigtensor.backends.cuda_array import DeviceArray

    t = zt.tensor(np.arange(6, dtype=np.float32), device=cuda_dev)
    assert isinstance(t.data, DeviceArray) and t.device.type == "cuda"
    with pytest.raises(TypeError, match="not converted to NumPy implicitly"):
        np.asarray(t.data)
    assert zt.cuda.is_available() and zt.cuda.device_count() == 1
    assert zt.cuda.get_device_properties(0).multi_processor_count > 0
    stats = zt.cuda.memory_stats()
    assert set(stats) >= {"allocated_bytes", "reserved_bytes", "device_free_bytes", "device_total_bytes"}
    start, end = zt.cuda.Event(), zt.cuda.Event()
    start.record()
    end.record()
    end.synchronize()
    assert start.elapsed_time(end) >= 0.0
    zt.cuda.synchronize()


def _gpt_step(device, idx, targets):
    """One AdamW step of a tiny GPT: (loss, the embedding's gradient, a weight after the step)."""
    from zigtensor.models.gpt import GPT, GPTConfig

    zt.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=32)).to(device)
    opt = zt.optim.AdamW(model.parameters(), lr=1e-2)
    logits = model(zt.tensor(idx, device=device))
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), zt.tensor(targets.reshape(-1), device=device))
    opt.zero_grad()
    loss.backward()
    grad = model.transformer.wte.weight.grad.numpy()
    opt.step()
    return loss.item(), grad, model.transformer.h[0].attn.c_attn.weight.numpy()


def test_gpt_training_step_matches_the_cpu(cuda_dev):
    rng = np.random.default_rng(1)
    idx, targets = rng.integers(0, 11, (2, 16)), rng.integers(0, 11, (2, 16))
    want = _gpt_step("cpu", idx, targets)
    got = _gpt_step(cuda_dev, idx, targets)
    _close("loss", got[0], want[0])
    _close("wte.grad", got[1], want[1], atol=1e-5)
    _close("weight after the step", got[2], want[2], atol=1e-5)


def _llama():
    from zigtensor.llm import ModelConfig
    from zigtensor.llm.transformer import Transformer

    config = ModelConfig(architecture="llama", vocab_size=23, hidden_size=32, num_layers=1, num_heads=4,
                         num_kv_heads=2, head_dim=8, intermediate_size=48, max_position_embeddings=32)
    zt.manual_seed(0)
    model = Transformer(config)
    for p in model.parameters():  # weights large enough that every layer moves the logits
        p.data[...] = np.random.default_rng(p.numel()).normal(0, 0.3, p.shape).astype(np.float32)
    return model


def _greedy(model, prompt, steps: int):
    """Prefill then `steps` greedy tokens through the KV cache: (tokens, every step's logits)."""
    from zigtensor.llm.kv_cache import KVCache

    device = model.transformer.wte.weight.device
    cache = KVCache.for_model(model, batch=1, max_len=len(prompt) + steps)
    tokens, logits = [], []
    with no_grad():
        out = model(zt.tensor(np.array([prompt]), device=device), cache=cache)
        for _ in range(steps):
            last = out.numpy()[0, -1]
            logits.append(last)
            tokens.append(int(last.argmax()))
            out = model(zt.tensor(np.array([[tokens[-1]]]), device=device), cache=cache)
    return tokens, logits


def test_llama_training_forward_runs_flash_attention_and_matches_the_cpu(cuda_dev, request):
    """The full causal forward of a GQA + rotary model on the device goes through the flash-attention kernels
    (no (T, T) scores), and its logits and gradients are the CPU's."""
    import emulated_cuda

    idx = np.random.default_rng(4).integers(0, 23, (2, 9))
    results = []
    for device in ("cpu", cuda_dev):
        model = _llama().to(device)
        logits = model(zt.tensor(idx, device=device))
        (logits * logits).mean().backward()
        results.append((logits.detach().numpy(), model.transformer.h[0].attn.c_attn.weight.grad.numpy()))
    _close("logits", results[1][0], results[0][0])
    _close("c_attn.weight.grad", results[1][1], results[0][1], atol=1e-4)
    if "emulator" in request.node.name:
        assert any(k.startswith("attention.attn_fwd") for k in emulated_cuda.LAUNCHES), emulated_cuda.LAUNCHES
        assert any(k.startswith("attention.attn_bwd") for k in emulated_cuda.LAUNCHES), emulated_cuda.LAUNCHES


def test_llama_greedy_decode_with_kv_cache_matches_the_cpu(cuda_dev):
    prompt = [3, 17, 5, 9, 1]
    model = _llama().prepare_for_inference()
    want_tokens, want_logits = _greedy(model, prompt, 3)
    got_tokens, got_logits = _greedy(model.to(cuda_dev).prepare_for_inference(), prompt, 3)
    assert got_tokens == want_tokens
    for i, (g, w) in enumerate(zip(got_logits, want_logits)):
        _close(f"logits of step {i}", g, w, rtol=1e-4, atol=1e-4)


def test_quant_linear_forward_matches_the_cpu(cuda_dev):
    from zigtensor.quant import QuantizedWeight
    from zigtensor.quant.qlinear import QuantLinear

    rng = np.random.default_rng(2)
    out_f, in_f, group = 8, 64, 32
    weight = QuantizedWeight(rng.integers(0, 16, (out_f, in_f)), rng.uniform(0.01, 0.1, (in_f // group, out_f)),
                             rng.integers(0, 16, (in_f // group, out_f)), np.arange(in_f, dtype=np.int32) // group,
                             4, group, name="w")
    layer = QuantLinear.from_weights([weight], bias=rng.standard_normal(out_f).astype(np.float32))
    for rows in (1, 3):
        x = rng.normal(size=(rows, in_f)).astype(np.float32)
        with no_grad():
            want = layer(zt.tensor(x)).numpy()
            on_device = layer.to(cuda_dev)
            got = on_device(zt.tensor(x, device=cuda_dev)).numpy()
            layer.to("cpu")
        _close(f"QuantLinear forward, {rows} rows", got, want, rtol=1e-4, atol=1e-4)


def test_gpt_step_with_dropout_clipping_and_bf16_autocast_runs(cuda_dev):
    """What a real training step adds (Philox dropout, gradient clipping, bf16 autocast, SGD with momentum):
    dropout draws differ from the CPU's generator, so this checks the step runs and stays finite."""
    from zigtensor.models.gpt import GPT, GPTConfig

    zt.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=32, dropout=0.1))
    model.to(cuda_dev)
    opt = zt.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    rng = np.random.default_rng(3)
    idx = zt.tensor(rng.integers(0, 11, (2, 16)), device=cuda_dev)
    targets = zt.tensor(rng.integers(0, 11, (2 * 16,)), device=cuda_dev)
    before = model.transformer.wte.weight.numpy().copy()
    for _ in range(2):
        with amp.autocast(cuda_dev.type, dtype=zt.bfloat16):
            logits = model(idx)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets)
        opt.zero_grad()
        loss.backward()
        norm = zt.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        assert np.isfinite(loss.item()) and np.isfinite(norm.item())
    after = model.transformer.wte.weight.numpy()
    assert np.isfinite(after).all() and not np.array_equal(after, before)


def test_float16_autocast_with_grad_scaler_matches_the_cpu(cuda_dev):
    """float16 autocast + GradScaler + Adam: the scaler's inf check and unscale run on the device."""
    from zigtensor.models.gpt import GPT, GPTConfig

    def step(device):
        zt.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=32)).to(device)
        opt, scaler = zt.optim.Adam(model.parameters(), lr=1e-2), amp.GradScaler(init_scale=1024.0)
        rng = np.random.default_rng(8)
        idx, targets = rng.integers(0, 11, (2, 8)), rng.integers(0, 11, (16,))
        with amp.autocast(device if isinstance(device, str) else device.type, dtype=zt.float16):
            logits = model(zt.tensor(idx, device=device))
            loss = F.cross_entropy(logits.reshape(-1, 11).float(), zt.tensor(targets, device=device))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.item(), scaler.get_scale(), model.transformer.wte.weight.numpy()

    want, got = step("cpu"), step(cuda_dev)
    _close("loss", got[0], want[0], rtol=1e-2, atol=1e-3)
    assert got[1] == want[1]
    _close("wte after the step", got[2], want[2], rtol=1e-2, atol=1e-3)


def test_llm_generate_greedy_and_sampled_on_the_device(cuda_dev):
    from types import SimpleNamespace

    from zigtensor.llm import LLM, SamplingParams

    def llm_of(model):
        llm = LLM.__new__(LLM)
        llm.loaded = SimpleNamespace(kind="decoder", name="random", model=model, tokenizer=None, config=model.config)
        llm.tokenizer, llm.config, llm.max_model_len = None, model.config, model.config.max_position_embeddings
        return llm

    prompts = [[3, 17, 5, 9, 1], [4, 2]]
    greedy = SamplingParams(max_tokens=3, temperature=0, ignore_eos=True)
    want = llm_of(_llama().prepare_for_inference()).generate(prompts, greedy)
    device_llm = llm_of(_llama().to(cuda_dev).prepare_for_inference())
    got = device_llm.generate(prompts, greedy)
    assert [o.outputs[0].token_ids for o in got] == [o.outputs[0].token_ids for o in want]
    sampled = device_llm.generate(prompts, SamplingParams(max_tokens=3, temperature=0.8, top_p=0.9, seed=1,
                                                          ignore_eos=True))
    assert all(len(o.outputs[0].token_ids) == 3 for o in sampled)


def test_engine_with_paged_kv_cache_matches_the_cpu(cuda_dev):
    from zigtensor.engine import EngineConfig, LLMEngine
    from zigtensor.engine.llm_runner import TransformerRunner
    from zigtensor.llm import SamplingParams

    prompts = [[1, 5, 9, 3, 2], [7], list(range(3, 12))]

    def run(model):
        engine = LLMEngine(TransformerRunner(model), None, EngineConfig(block_size=4, max_model_len=32,
                                                                         max_num_seqs=4, max_num_batched_tokens=12))
        params = SamplingParams(max_tokens=3, temperature=0, ignore_eos=True, logprobs=2)
        return [(o.outputs[0].token_ids, o.outputs[0].cumulative_logprob) for o in engine.generate(prompts, params)]

    want = run(_llama().prepare_for_inference())
    got = run(_llama().to(cuda_dev).prepare_for_inference())
    for (g_ids, g_lp), (w_ids, w_lp) in zip(got, want):
        assert g_ids == w_ids
        assert abs(g_lp - w_lp) < 1e-4


@pytest.mark.parametrize("kind", ["image", "text"])
def test_trainer_runs_a_recipe_on_the_device_like_the_cpu_and_resumes(cuda_dev, kind, tmp_path, monkeypatch,
                                                                       request):
    """What `zt train RECIPE --device cuda` runs (the Trainer: data, model, AdamW, clipping, evaluation,
    checkpoints, sampling) on the device: the same losses as on the CPU (dropout off: the two generators
    differ), and a run resumed from its checkpoint ends where the uninterrupted one does."""
    from tiny_recipes import IMAGE_RECIPE, TEXT_RECIPE, write_image_dataset, write_recipe

    from zigtensor.train import Trainer, load_recipe
    from zigtensor.train.metrics import read_metrics

    monkeypatch.chdir(tmp_path)
    if kind == "image":
        template, data = IMAGE_RECIPE, write_image_dataset(tmp_path / "images", n_train=64, n_test=32)
        model = ["model.hidden=[16]", "schedule.warmup_steps=1"]
    else:
        (tmp_path / "text.txt").write_text("the quick brown fox jumps over the lazy dog. " * 8)
        template, data, model = TEXT_RECIPE, tmp_path / "text.txt", ["model.n_embd=16", "sample.tokens=4"]
    settings = ["model.dropout=0.0", "train.steps=4", "train.batch_size=4", "train.log_every=1",
                "train.eval_every=2", "train.checkpoint_every=2", "eval.batches=1", *model]

    def run(out, device, *extra):
        recipe = write_recipe(tmp_path / f"{out}.toml", template, data, *settings, f'train.device="{device}"',
                              *extra)
        Trainer(load_recipe(recipe), tmp_path / out, progress=False, echo=lambda s: None).fit()
        return [(r["step"], r["split"], r["loss"]) for r in read_metrics(tmp_path / out / "metrics.jsonl")]

    on_cpu = run("cpu", "cpu")
    on_device = run("dev", "cuda")
    if request.node.callspec.params["cuda_dev"] == "emulator":  # the step ran on our kernels: GEMM, Adam
        import emulated_cuda

        assert {"gemm", "optim"} <= {name.split(".")[0] for name in emulated_cuda.LAUNCHES}, emulated_cuda.LAUNCHES
    assert [r[:2] for r in on_device] == [r[:2] for r in on_cpu]
    _close("losses", [r[2] for r in on_device], [r[2] for r in on_cpu], rtol=1e-4, atol=1e-5)
    # back to the step-2 checkpoint: the metrics after it are dropped, steps 3-4 run again, to the same end
    weights = {k: v.numpy().copy() for k, v in zt.load_file(tmp_path / "dev" / "model.safetensors").items()}
    ckpt = tmp_path / "dev" / "checkpoints" / "step_000002.safetensors"
    Trainer(load_recipe(tmp_path / "dev.toml"), tmp_path / "dev", resume=ckpt, progress=False,
            echo=lambda s: None).fit()
    resumed = [(r["step"], r["split"], r["loss"]) for r in read_metrics(tmp_path / "dev" / "metrics.jsonl")]
    assert resumed == on_device
    for k, v in zt.load_file(tmp_path / "dev" / "model.safetensors").items():
        assert np.array_equal(v.numpy(), weights[k]), k


def test_paged_attention_with_device_metadata_runs_the_kernel_and_matches_the_cpu(cuda_dev, request):
    """The engine's attention step on the device: AttentionMetadata built with the device's array module sends
    paged_attention to kernels/paged_attention.cu (one launch for a decode and a prefill chunk, grouped-query
    heads, a sliding window, a bfloat16 cache in scattered blocks); the CPU path's result on the same inputs."""
    import emulated_cuda
    import ml_dtypes

    from zigtensor.engine import AttentionMetadata, paged_attention

    rng = np.random.default_rng(7)
    block_size, context_lens, query_start_loc = 4, np.array([10, 7]), np.array([0, 1, 4])  # a decode, a chunk of 3
    tables = np.array([[5, 0, 3], [2, 4, -1]])
    k, v = (rng.normal(size=(6, block_size, 2, 16)).astype(ml_dtypes.bfloat16) for _ in range(2))
    q = rng.normal(size=(4, 4, 16)).astype(np.float32)
    cpu = AttentionMetadata.build(tables, context_lens, query_start_loc, block_size)
    want = paged_attention(q, k, v, cpu, 0.25, sliding_window=6)
    xp = cuda_dev.backend.xp
    meta = AttentionMetadata.build(tables, context_lens, query_start_loc, block_size, xp)
    got = paged_attention(xp.asarray(q), xp.asarray(k), xp.asarray(v), meta, 0.25, sliding_window=6)
    assert got.dtype == np.float32
    _close("paged attention", got.get(), want)
    if request.node.callspec.params["cuda_dev"] == "emulator":  # launches are counted on the emulator only
        assert emulated_cuda.LAUNCHES.get("paged_attention.paged_attention_fwd") == 1, emulated_cuda.LAUNCHES
