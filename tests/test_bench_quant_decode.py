"""zigtensor/bench/quant_decode.py (`zt bench quant-decode`) on the CPU with a tiny random Llama: both paths build,
quantize, run and report a finite rate; the int4 model really holds QuantLinears and fewer bytes; the CLI runs.
Timings here mean nothing (a shared 2-core VM)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from zigtensor.bench import quant_decode as QD
from zigtensor_cli.app import app

TINY = dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=256, max_len=64)


def test_bench_quant_decode_runs_both_paths_on_cpu():
    b = QD.bench_quant_decode(config=QD.llama_config(**TINY), group_size=32, context=8, steps=2, warmup=1)
    assert b.device == "cpu" and b.parameters > 0
    assert [p.name for p in b.paths] == ["float32", "int4 rtn g32"]
    for p in b.paths:
        assert p.step_s > 0 and math.isfinite(p.tokens_per_s) and p.tokens_per_s > 0
    assert b.paths[1].weight_bytes < b.paths[0].weight_bytes  # packed codes replace the float matrices
    assert "int4" in b.paths[1].kernel and math.isfinite(b.ratio) and b.ratio > 0


def test_quantized_model_matches_its_dequantized_weights():
    """The int4 model installs a QuantLinear per linear (the LM head too) whose output is its RTN weights'."""
    from zigtensor.autograd.grad_mode import no_grad
    from zigtensor.llm.transformer import token_tensor
    from zigtensor.quant import QuantLinear

    model = QD.random_llama(QD.llama_config(**TINY), seed=3)
    w = model.transformer.h[0].mlp.c_fc.weight.numpy()
    assert abs(float(w.std()) - QD.INIT_STD) < 0.002 and np.all(model.transformer.ln_f.weight.numpy() == 1.0)
    quantized = QD.quantize_linears(model, 4, 32)
    assert set(quantized) == set(QD.linear_names(model)) and "lm_head" in quantized
    ids = token_tensor([[3, 7, 11]], "cpu")
    for name, qw in quantized.items():  # the float model run with the quantized weights, for the reference
        model.get_submodule(name).weight.data = qw.dequantize().astype(np.float32)
    with no_grad():
        want = model(ids).numpy()
    QD.install_quant_linears(model, quantized, model.transformer.wte.weight.device)
    assert all(isinstance(model.get_submodule(n), QuantLinear) for n in quantized)
    with no_grad():
        got = model(ids).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad", [dict(group_size=0), dict(context=0), dict(steps=0), dict(warmup=-1)])
def test_bad_settings_are_named(bad):
    settings = dict(config=QD.llama_config(**TINY), group_size=32, context=8, steps=2) | bad
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        QD.bench_quant_decode(**settings)


def test_llama_config_defaults_to_tinyllama_shape():
    c = QD.llama_config()
    assert (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size, c.vocab_size) == \
        (2048, 32, 4, 64, 5632, 32000)
    with pytest.raises(ValueError, match="heads"):
        QD.llama_config(hidden=100, heads=3)


def test_cli_help_and_a_tiny_run():
    r = CliRunner().invoke(app, ["bench", "quant-decode", "--help"])
    assert r.exit_code == 0, r.output
    for option in ("--device", "--layers", "--hidden", "--group-size", "--steps"):
        assert option in r.output
    r = CliRunner().invoke(app, ["bench", "quant-decode", "--layers", "1", "--hidden", "64", "--group-size", "32",
                                 "--context", "4", "--steps", "2"])
    assert r.exit_code == 0, r.output
    assert "int4 / float32:" in r.output and "tokens/s" in r.output
