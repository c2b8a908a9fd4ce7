"""GPTQ / AWQ packed layouts: round trips, hand-packed words, a loop-and-shift reference dequantizer written here
straight from the layout definitions (not from layouts.py), every malformed input, and the quantization configs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zigtensor.quant import (
    QuantConfig,
    QuantFormatError,
    QuantizedWeight,
    find_quant_config,
    pack_awq,
    pack_gptq,
    unpack_awq,
    unpack_gptq,
)


def _random_weight(rng, out_f, in_f, bits, group_size, act_order=False, min_zero=1, name="layer"):
    n_groups = 1 if group_size == -1 else -(-in_f // group_size)
    maxq = (1 << bits) - 1
    g_idx = np.zeros(in_f, dtype=np.int32) if group_size == -1 else np.arange(in_f, dtype=np.int32) // group_size
    if act_order:
        # act-order: columns are quantized in a permuted order, so column i's group is its rank's group
        g_idx = g_idx[rng.permutation(in_f)]
    # scales that are exact in float16, so packing (float16 scales) round-trips bit for bit
    scales = rng.uniform(0.001, 0.05, (n_groups, out_f)).astype(np.float16).astype(np.float32)
    return QuantizedWeight(codes=rng.integers(0, maxq + 1, (out_f, in_f)).astype(np.uint8), scales=scales,
                           zeros=rng.integers(min_zero, maxq + 1, (n_groups, out_f)).astype(np.int32),
                           g_idx=g_idx, bits=bits, group_size=group_size, name=name)


def _ref_dequant_gptq(t, bits, group_size, fmt):
    """W[o, i] from the GPTQ definition, one element at a time with Python ints."""
    per_word = 32 // bits
    mask = (1 << bits) - 1
    qweight, qzeros, scales, g_idx = t["qweight"], t["qzeros"], t["scales"], t["g_idx"]
    in_f, out_f = qweight.shape[0] * per_word, qweight.shape[1]
    w = np.zeros((out_f, in_f), dtype=np.float64)
    for o in range(out_f):
        for i in range(in_f):
            word = int(qweight[i // per_word, o]) & 0xFFFFFFFF
            code = (word >> (bits * (i % per_word))) & mask
            g = int(g_idx[i])
            zword = int(qzeros[g, o // per_word]) & 0xFFFFFFFF
            zero = (zword >> (bits * (o % per_word))) & mask
            if fmt == "gptq":
                zero += 1
            w[o, i] = (code - zero) * float(scales[g, o])
    return w


def _ref_dequant_awq(t, group_size):
    """W[o, i] from AutoAWQ's GEMM definition: nibble j of a word holds output 8c + [0, 2, 4, 6, 1, 3, 5, 7][j]."""
    order = [0, 2, 4, 6, 1, 3, 5, 7]
    qweight, qzeros, scales = t["qweight"], t["qzeros"], t["scales"]
    in_f, out_f = qweight.shape[0], qweight.shape[1] * 8
    w = np.zeros((out_f, in_f), dtype=np.float64)
    for o in range(out_f):
        nibble = order.index(o % 8)
        for i in range(in_f):
            g = 0 if group_size == -1 else i // group_size
            code = ((int(qweight[i, o // 8]) & 0xFFFFFFFF) >> (4 * nibble)) & 0xF
            zero = ((int(qzeros[g, o // 8]) & 0xFFFFFFFF) >> (4 * nibble)) & 0xF
            w[o, i] = (code - zero) * float(scales[g, o])
    return w


# --------------------------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group_size", [32, 128, -1])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("fmt", ["gptq", "gptq_v2"])
def test_gptq_round_trip_and_reference(bits, group_size, act_order, fmt):
    rng = np.random.default_rng(bits * 1000 + group_size + act_order)
    out_f, in_f = 24, 160   # 160 inputs: a ragged last group at group_size 128 (ceil -> 2 groups)
    w = _random_weight(rng, out_f, in_f, bits, group_size, act_order, min_zero=1 if fmt == "gptq" else 0)
    t = pack_gptq(w, checkpoint_format=fmt)
    per_word = 32 // bits
    n_groups = w.n_groups
    assert t["qweight"].shape == (in_f // per_word, out_f) and t["qweight"].dtype == np.int32
    assert t["qzeros"].shape == (n_groups, out_f // per_word) and t["qzeros"].dtype == np.int32
    assert t["scales"].shape == (n_groups, out_f) and t["scales"].dtype == np.float16
    assert t["g_idx"].shape == (in_f,) and t["g_idx"].dtype == np.int32
    back = unpack_gptq(t, bits, group_size, checkpoint_format=fmt, name="layer")
    np.testing.assert_array_equal(back.codes, w.codes)
    np.testing.assert_array_equal(back.zeros, w.zeros)
    np.testing.assert_array_equal(back.scales, w.scales)
    np.testing.assert_array_equal(back.g_idx, w.g_idx)
    assert back.act_order == (act_order and group_size != -1)   # one group: the permutation is invisible
    ref = _ref_dequant_gptq(t, bits, group_size, fmt)
    np.testing.assert_allclose(back.dequantize(), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(w.dequantize(), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("group_size", [32, 128, -1])
def test_awq_round_trip_and_reference(group_size):
    rng = np.random.default_rng(7 + group_size)
    out_f, in_f = 40, 256
    w = _random_weight(rng, out_f, in_f, 4, group_size, min_zero=0)
    w.zeros = np.minimum(w.zeros, 15)
    t = pack_awq(w)
    assert t["qweight"].shape == (in_f, out_f // 8) and t["qweight"].dtype == np.int32
    assert t["qzeros"].shape == (w.n_groups, out_f // 8)
    back = unpack_awq(t, group_size, name="layer")
    np.testing.assert_array_equal(back.codes, w.codes)
    np.testing.assert_array_equal(back.zeros, w.zeros)
    np.testing.assert_array_equal(back.scales, w.scales)
    np.testing.assert_allclose(back.dequantize(), _ref_dequant_awq(t, group_size), rtol=0, atol=1e-6)


def test_hand_packed_words():
    # GPTQ 4-bit: inputs 0..7 of one output with codes 0..7 -> word 0x76543210 (input 0 in the low nibble)
    codes = np.arange(8, dtype=np.uint8)[None, :].repeat(8, axis=0)
    w = QuantizedWeight(codes, np.ones((1, 8), np.float32), np.full((1, 8), 8), np.zeros(8, np.int32), 4, -1)
    t = pack_gptq(w, "gptq_v2")
    assert (t["qweight"].view(np.uint32) == 0x76543210).all()
    assert (t["qzeros"].view(np.uint32) == 0x88888888).all()
    assert (pack_gptq(w, "gptq")["qzeros"].view(np.uint32) == 0x77777777).all()   # zero - 1
    # AWQ: outputs 0..7 with codes 0..7 at one input -> nibbles in order [0, 2, 4, 6, 1, 3, 5, 7] = 0x75316420
    t = pack_awq(QuantizedWeight(codes.T.copy(), np.ones((1, 8), np.float32), np.arange(8)[None, :],
                                 np.zeros(8, np.int32), 4, -1))
    assert (t["qweight"].view(np.uint32) == 0x75316420).all()
    assert (t["qzeros"].view(np.uint32) == 0x75316420).all()
    # 8-bit GPTQ: 4 inputs per word, a code >= 128 in the top byte makes the int32 negative
    w8 = QuantizedWeight(np.array([[1, 2, 3, 200]], np.uint8).T.repeat(4, axis=1).T.copy(), np.ones((1, 4), np.float32),
                         np.full((1, 4), 128), np.zeros(4, np.int32), 8, -1)
    q = pack_gptq(w8, "gptq_v2")["qweight"]
    assert q.shape == (1, 4) and (q.view(np.uint32) == 0xC8030201).all() and (q < 0).all()


def test_dequantize_formula():
    w = QuantizedWeight(np.array([[3, 15], [0, 9]], np.uint8), np.array([[0.5, 2.0], [0.25, 1.0]], np.float32),
                        np.array([[8, 1], [0, 16]]), np.array([1, 0], np.int32), 4, 1)
    # W[o, i] = (codes[o, i] - zeros[g_idx[i], o]) * scales[g_idx[i], o]
    expect = np.array([[(3 - 0) * 0.25, (15 - 8) * 0.5], [(0 - 16) * 1.0, (9 - 1) * 2.0]], np.float32)
    np.testing.assert_array_equal(w.dequantize(), expect)


# ------------------------------------------------------------------------------------------------ malformed input

def _gptq_tensors(bits=4, group_size=32, out_f=16, in_f=64):
    rng = np.random.default_rng(0)
    return pack_gptq(_random_weight(rng, out_f, in_f, bits, group_size))


@pytest.mark.parametrize("mutate, match", [
    (lambda t: t.update(qweight=t["qweight"][:-1]), r"'blk\.q'.*qweight has shape \(7, 16\); expected \(8, 16\)"),
    (lambda t: t.update(qzeros=t["qzeros"][:, :1]), r"'blk\.q'.*qzeros has shape \(2, 1\); expected \(2, 2\)"),
    (lambda t: t.update(scales=t["scales"][:1]), r"'blk\.q'.*scales has shape \(1, 16\); expected \(2, 16\)"),
    (lambda t: t.update(g_idx=t["g_idx"][:-1]), r"'blk\.q'.*g_idx has shape \(63,\); expected \(64,\)"),
    (lambda t: t.update(g_idx=t["g_idx"] + 5), r"'blk\.q'.*g_idx spans \[5, 6\]; expected groups in \[0, 1\]"),
    (lambda t: t.pop("qweight"), r"'blk\.q'.*no 'qweight' tensor"),
    (lambda t: t.pop("qzeros"), r"'blk\.q'.*no 'qzeros' tensor; expected one of shape \(2, 2\)"),
    (lambda t: t.pop("scales"), r"'blk\.q'.*no 'scales' tensor"),
    (lambda t: t.update(qweight=t["qweight"].astype(np.float32)), r"qweight has dtype float32; expected int32"),
])
def test_gptq_malformed(mutate, match):
    t = _gptq_tensors()
    mutate(t)
    with pytest.raises(QuantFormatError, match=match):
        unpack_gptq(t, 4, 32, name="blk.q")


def test_gptq_config_contradicting_tensors():
    t = _gptq_tensors(bits=4, group_size=32)
    with pytest.raises(QuantFormatError, match=r"'blk\.q'.*qweight has shape \(8, 16\); expected \(16, 16\)"):
        unpack_gptq(t, 8, 32, name="blk.q")
    with pytest.raises(QuantFormatError, match=r"'blk\.q'.*scales has shape \(2, 16\); expected \(1, 16\)"):
        unpack_gptq(t, 4, 128, name="blk.q")
    with pytest.raises(QuantFormatError, match=r"'blk\.q'.*bits=3 is not supported"):
        unpack_gptq(t, 3, 32, name="blk.q")
    with pytest.raises(QuantFormatError, match=r"'blk\.q'.*group_size=0"):
        unpack_gptq(t, 4, 0, name="blk.q")
    with pytest.raises(QuantFormatError, match=r"checkpoint_format='marlin'"):
        unpack_gptq(t, 4, 32, checkpoint_format="marlin", name="blk.q")
    t.pop("g_idx")
    with pytest.raises(QuantFormatError, match=r"'blk\.q'.*scales has shape \(2, 16\); expected \(1, 16\)"):
        unpack_gptq(t, 8, 32, name="blk.q")   # without g_idx, 8-bit reads half the inputs: one group
    assert unpack_gptq(t, 4, 32, name="blk.q").g_idx[40] == 1       # column order when g_idx is absent
    with pytest.raises(QuantFormatError, match=r"no 'g_idx' tensor but desc_act is true; expected g_idx of shape"):
        unpack_gptq(t, 4, 32, name="blk.q", desc_act=True)


def test_awq_malformed():
    rng = np.random.default_rng(1)
    w = _random_weight(rng, 16, 64, 4, 32, min_zero=0)
    w.zeros = np.minimum(w.zeros, 15)
    t = pack_awq(w)
    with pytest.raises(QuantFormatError, match=r"'mlp'.*in_features=64 .* not a multiple of group_size=48"):
        unpack_awq(t, 48, name="mlp")
    with pytest.raises(QuantFormatError, match=r"'mlp'.*scales has shape \(2, 16\); expected \(1, 16\)"):
        unpack_awq(t, 64, name="mlp")
    with pytest.raises(QuantFormatError, match=r"'mlp'.*bits=8 is not supported; expected one of \[4\]"):
        unpack_awq(t, 32, name="mlp", bits=8)
    bad = dict(t, qzeros=t["qzeros"][:1])
    with pytest.raises(QuantFormatError, match=r"'mlp'.*qzeros has shape \(1, 2\); expected \(2, 2\)"):
        unpack_awq(bad, 32, name="mlp")
    with pytest.raises(QuantFormatError, match=r"'mlp'.*no 'qzeros' tensor"):
        unpack_awq({"qweight": t["qweight"], "scales": t["scales"]}, 32, name="mlp")
    with pytest.raises(QuantFormatError, match=r"'mlp'.*act-order weights cannot be written"):
        pack_awq(_random_weight(rng, 16, 64, 4, 32, act_order=True, min_zero=0, name="mlp"))


def test_quantized_weight_malformed():
    rng = np.random.default_rng(2)
    ok = dict(codes=np.zeros((8, 32), np.uint8), scales=np.ones((1, 8), np.float32), zeros=np.zeros((1, 8), np.int32),
              g_idx=np.zeros(32, np.int32), bits=4, group_size=32, name="fc")
    QuantizedWeight(**ok)
    for change, match in [
        (dict(codes=np.full((8, 32), 16, np.uint8)), r"'fc'.*codes span \[16, 16\]; expected \[0, 15\]"),
        (dict(scales=np.ones((2, 8), np.float32)), r"'fc'.*scales have shape \(2, 8\); expected \(1, 8\)"),
        (dict(zeros=np.zeros((1, 7), np.int32)), r"'fc'.*zeros have shape \(1, 7\); expected \(1, 8\)"),
        (dict(zeros=np.full((1, 8), 17)), r"'fc'.*zero points span \[17, 17\]; expected \[0, 16\]"),
        (dict(bits=2), r"'fc'.*bits=2 is not supported"),
        (dict(group_size=-2), r"'fc'.*group_size=-2"),
        (dict(g_idx=np.zeros(31, np.int32)), r"'fc'.*g_idx has shape \(31,\).*expected integer \(32,\)"),
    ]:
        with pytest.raises(QuantFormatError, match=match):
            QuantizedWeight(**{**ok, **change})
    w = _random_weight(rng, 8, 32, 4, 32, min_zero=0, name="fc")
    w.zeros[:] = 0
    with pytest.raises(QuantFormatError, match=r"'fc'.*zero point of 0 cannot be stored in the 'gptq' format"):
        pack_gptq(w, "gptq")
    pack_gptq(w, "gptq_v2")
    odd = _random_weight(rng, 12, 32, 4, 32, name="odd")
    with pytest.raises(QuantFormatError, match=r"'odd'.*out_features=12 is not a multiple of 8"):
        pack_gptq(odd)
    with pytest.raises(QuantFormatError, match=r"'odd'.*out_features=12 is not a multiple of 8"):
        pack_awq(odd)


# -------------------------------------------------------------------------------------------------------- configs

def test_config_spellings(tmp_path):
    gptq = {"quant_method": "gptq", "bits": 8, "group_size": -1, "desc_act": True, "sym": False,
            "checkpoint_format": "gptq_v2", "damp_percent": 0.1}
    c = QuantConfig.from_dict(gptq)
    assert (c.method, c.bits, c.group_size, c.desc_act, c.sym, c.checkpoint_format) == ("gptq", 8, -1, True, False,
                                                                                        "gptq_v2")
    assert c.to_hf_dict()["damp_percent"] == 0.1
    assert QuantConfig.from_dict(c.to_hf_dict()).to_hf_dict() == c.to_hf_dict()
    awq = QuantConfig.from_dict({"zero_point": True, "q_group_size": 64, "w_bit": 4, "version": "GEMM"})
    assert (awq.method, awq.bits, awq.group_size, awq.checkpoint_format) == ("awq", 4, 64, "gemm")
    assert QuantConfig.from_dict(awq.to_hf_dict()).group_size == 64
    # the three places a folder keeps it
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert find_quant_config(tmp_path) is None
    name, side = c.sidecar()
    (tmp_path / name).write_text(json.dumps(side))
    assert find_quant_config(tmp_path).bits == 8
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": dict(gptq, bits=4)}))
    with pytest.raises(QuantFormatError, match=r"quantize_config.json: bits=8 contradicts .*config.json"):
        find_quant_config(tmp_path)


@pytest.mark.parametrize("d, match", [
    ({"quant_method": "gptq", "bits": 3}, r"bits=3 is not supported for gptq; expected one of \[4, 8\]"),
    ({"quant_method": "awq", "bits": 8}, r"bits=8 is not supported for awq"),
    ({"quant_method": "awq", "version": "gemv"}, r"version='gemv' is not supported"),
    ({"quant_method": "bitsandbytes"}, r"quant_method='bitsandbytes' is not supported"),
    ({"quant_method": "gptq", "checkpoint_format": "marlin"}, r"Marlin-format"),
    ({"quant_method": "gptq", "group_size": 0}, r"group_size=0"),
])
def test_config_malformed(d, match):
    with pytest.raises(QuantFormatError, match=match):
        QuantConfig.from_dict(d, source="cfg")
