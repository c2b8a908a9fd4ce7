"""QuantLinear (CPU W4A16 / W8A16 on packed weights, GGUF blocks) against dequantize-then-matmul on random shapes:
odd sizes, every group size, act-order, several parts, batch 1, 7, 21 and a large batch (every CPU path: the
compiled kernel for the layouts it supports, codes per group for the others, dequantized tiles for many rows)."""

from __future__ import annotations

import numpy as np
import pytest
from llm_fixtures import random_blocks
from oracle import oracle

import zigtensor as zt
from zigtensor.io import gguf as gguf_io
from zigtensor.quant import QuantFormatError, QuantizedWeight
from zigtensor.quant.qlinear import GROUPED_MAX_ROWS, KERNEL_MAX_ROWS, QuantLinear


def _weight(rng, out_f, in_f, bits, group_size, act_order=False, name="w"):
    n_groups = 1 if group_size == -1 else -(-in_f // group_size)
    g_idx = np.zeros(in_f, np.int32) if group_size == -1 else np.arange(in_f, dtype=np.int32) // group_size
    if act_order:
        g_idx = g_idx[rng.permutation(in_f)]
    maxq = (1 << bits) - 1
    return QuantizedWeight(rng.integers(0, maxq + 1, (out_f, in_f)), rng.uniform(0.01, 0.1, (n_groups, out_f)),
                           rng.integers(0, maxq + 1, (n_groups, out_f)), g_idx, bits, group_size, name=name)


def _reference(weights, x, bias):
    w = np.concatenate([qw.dequantize() for qw in weights]).astype(np.float64)
    y = x.astype(np.float64) @ w.T
    return y if bias is None else y + bias


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group_size", [-1, 16, 32, 64, 128])
@pytest.mark.parametrize("act_order", [False, True])
def test_random_shapes_against_dequantize_then_matmul(bits, group_size, act_order):
    rng = np.random.default_rng(bits * 100 + group_size + 7 * act_order)
    for out_f, in_f in [(1, 8), (13, 37), (70, 200), (129, 300)]:
        weights = [_weight(rng, out_f, in_f, bits, group_size, act_order, name=f"p{i}") for i in range(2)]
        bias = rng.standard_normal(2 * out_f).astype(np.float32)
        layer = QuantLinear.from_weights(weights, bias=bias)
        np.testing.assert_array_equal(layer.dequantize(), np.concatenate([w.dequantize() for w in weights]))
        for batch in (1, 7, GROUPED_MAX_ROWS + 5, KERNEL_MAX_ROWS + 3):
            x = rng.standard_normal((batch, in_f)).astype(np.float32)
            y = layer(zt.tensor(x)).numpy()
            want = _reference(weights, x, bias)
            assert y.shape == (batch, 2 * out_f) and y.dtype == np.float32
            np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(),
                                       err_msg=f"{out_f}x{in_f} batch {batch}")


def test_leading_dims_and_parts_of_different_layouts():
    rng = np.random.default_rng(3)
    parts = [_weight(rng, 24, 96, 4, 32, act_order=True, name="q"), _weight(rng, 16, 96, 4, 32, name="k"),
             _weight(rng, 16, 96, 8, -1, name="v"), _weight(rng, 8, 96, 4, 32, name="v2")]
    layer = QuantLinear.from_weights(parts)
    # k and v2 share a layout but are not adjacent; act-order q has its own column order
    assert [p.rows for p in layer.parts] == [24, 16, 16, 8]
    x = rng.standard_normal((2, 3, 96)).astype(np.float32)
    y = layer(zt.tensor(x)).numpy()
    assert y.shape == (2, 3, 64)
    np.testing.assert_allclose(y.reshape(6, 64), _reference(parts, x.reshape(6, 96), None), rtol=1e-4, atol=1e-4)
    merged = QuantLinear.from_weights([_weight(rng, 8, 64, 4, 32, name=n) for n in "abc"])
    assert len(merged.parts) == 1 and merged.parts[0].names == ("a", "b", "c")


def test_packed_bytes():
    rng = np.random.default_rng(4)
    w = _weight(rng, 256, 512, 4, 128)
    w.scales = w.scales.astype(np.float16).astype(np.float32)   # as checkpoints store them: kept float16
    layer = QuantLinear.from_weights([w])
    codes = 256 * 512 // 2
    assert layer.weight_nbytes() == codes + 256 * 4 * (2 + 1)   # + float16 scales and uint8 zeros per group
    assert layer.weight_nbytes() <= 0.3 * 2 * 256 * 512
    w8 = _weight(rng, 256, 512, 8, 128)
    w8.scales = w8.scales.astype(np.float16).astype(np.float32)
    assert QuantLinear.from_weights([w8]).weight_nbytes() == 256 * 512 + 256 * 4 * 3


@pytest.mark.parametrize("ggml_type", ["Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K", "Q5_K"])
def test_gguf_blocks_against_dequantize_then_matmul(ggml_type):
    rng = np.random.default_rng(5)
    block, block_bytes = gguf_io.GGML_BLOCK_LAYOUTS[ggml_type]
    in_f = 2 * 256
    part_rows = [int(r) for r in rng.integers(1, 40, 2)]
    layer = QuantLinear(in_f, sum(part_rows), bias=False)
    raws = []
    for rows in part_rows:
        raw = random_blocks(ggml_type, rows * in_f // block, rng).reshape(rows, -1)
        layer.add_gguf_part(raw, ggml_type, rows, name=f"blk.{rows}")
        raws.append(gguf_io.dequantize(raw, ggml_type, (rows, in_f)))
    layer.check_complete()
    w = np.concatenate(raws)
    np.testing.assert_array_equal(layer.dequantize(), w)
    # Q4_0 / Q8_0 run as int parts with a uint8 zero point (8, 128) per block beside the block's own bytes
    extra = 1 if ggml_type in ("Q4_0", "Q8_0") else 0
    assert layer.weight_nbytes() == w.shape[0] * in_f // block * (block_bytes + extra)
    assert {p.kind for p in layer.parts} == {"int" if ggml_type in ("Q4_0", "Q4_1", "Q8_0") else "gguf"}
    for batch in (1, 7, 40):
        x = rng.standard_normal((batch, in_f)).astype(np.float32)
        want = x.astype(np.float64) @ w.T.astype(np.float64)
        np.testing.assert_allclose(layer(zt.tensor(x)).numpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_bad_inputs():
    rng = np.random.default_rng(6)
    layer = QuantLinear.from_weights([_weight(rng, 8, 32, 4, 32, name="fc")])
    with pytest.raises(RuntimeError, match=r"QuantLinear: input \(2, 31\) does not match in_features=32"):
        layer(zt.tensor(np.zeros((2, 31), np.float32)))
    with pytest.raises(QuantFormatError, match=r"'b': in_features=16; expected 32"):
        QuantLinear.from_weights([_weight(rng, 8, 32, 4, 32, name="a"), _weight(rng, 8, 16, 4, 16, name="b")])
    with pytest.raises(QuantFormatError, match=r"'fc2'.*bias has shape \(7,\); expected \(8,\)"):
        QuantLinear.from_weights([_weight(rng, 8, 32, 4, 32, name="fc2")], bias=np.zeros(7))
    g = QuantLinear(64, 8)
    with pytest.raises(QuantFormatError, match=r"'blk\.0': Q8_0 data does not hold 8 rows of 64 inputs; expected "
                                               r"544 bytes as \(8, 68\)"):
        g.add_gguf_part(np.zeros(8 * 18, np.uint8), "Q8_0", 8, name="blk.0")
    with pytest.raises(QuantFormatError, match=r"'blk\.3': in_features=64 is not a multiple of Q4_K's block of 256"):
        g.add_gguf_part(np.zeros(144, np.uint8), "Q4_K", 1, name="blk.3")
    with pytest.raises(QuantFormatError, match=r"'blk\.1': ggml type F16 cannot stay quantized"):
        g.add_gguf_part(np.zeros(8 * 128, np.uint8), "F16", 8, name="blk.1")
    g.add_gguf_part(random_blocks("Q8_0", 8, rng), "Q8_0", 4, name="blk.2")
    with pytest.raises(QuantFormatError, match=r"parts hold 4 output rows; expected 8"):
        g.check_complete()


def test_dtype_casts_leave_the_quantization_alone():
    rng = np.random.default_rng(7)
    w = _weight(rng, 16, 64, 4, 32, name="fc")
    layer = QuantLinear.from_weights([w], bias=np.ones(16, np.float32))
    before = layer.dequantize()
    layer.half()   # casts the float bias; the codes, scales and zeros keep their bits
    np.testing.assert_array_equal(layer.dequantize(), before)
    assert layer.bias.dtype == zt.float16
    x = rng.standard_normal((3, 64)).astype(np.float16)
    y = layer(zt.tensor(x))
    assert y.dtype == zt.float16
    np.testing.assert_allclose(y.numpy(), x.astype(np.float64) @ before.T.astype(np.float64) + 1, rtol=2e-2,
                               atol=2e-2)


@pytest.mark.parametrize("batch", [1, GROUPED_MAX_ROWS + 3])
def test_gradients_flow_to_the_input_and_bias_as_torch_computes_them(batch):
    torch = oracle("torch")
    rng = np.random.default_rng(8)
    parts = [_weight(rng, 24, 80, 4, 32, act_order=True, name="q"), _weight(rng, 16, 80, 8, -1, name="k")]
    layer = QuantLinear.from_weights(parts, bias=rng.standard_normal(40).astype(np.float32))
    layer.bias.requires_grad_(True)
    x = rng.standard_normal((2, batch, 80)).astype(np.float32)
    g = rng.standard_normal((2, batch, 40)).astype(np.float32)
    xt = zt.tensor(x, requires_grad=True)
    layer(xt).backward(zt.tensor(g))
    tx = torch.tensor(x, requires_grad=True)
    tb = torch.tensor(layer.bias.numpy(), requires_grad=True)
    torch.nn.functional.linear(tx, torch.from_numpy(layer.dequantize()), tb).backward(torch.from_numpy(g))
    np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.bias.grad.numpy(), tb.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_the_few_row_kernel_path_covers_every_part():
    """Few input rows of a layer whose parts all run cpu_kernels.matmul go through one plan kept per layer
    (quant/qlinear.py's _kernel_plan), each part into its own output columns; a part with an act-order column
    gather sends the layer down the general loop instead (test_leading_dims_and_parts_of_different_layouts)."""
    rng = np.random.default_rng(21)
    parts = [_weight(rng, 24, 64, 4, 32, name="a"), _weight(rng, 8, 64, 8, 32, name="b"),
             _weight(rng, 12, 64, 4, 64, name="c")]
    layer = QuantLinear.from_weights(parts)
    assert len(layer.parts) == 3 and layer._kernel_plan() is not None
    for batch in (1, 3, KERNEL_MAX_ROWS):
        x = rng.standard_normal((batch, 64)).astype(np.float32)
        y = layer(zt.tensor(x)).numpy()
        assert y.shape == (batch, 44)
        np.testing.assert_allclose(y, _reference(parts, x, None), rtol=1e-4, atol=1e-4)
    gathered = QuantLinear.from_weights([_weight(rng, 8, 64, 4, 32, act_order=True, name="d")])
    assert gathered._kernel_plan() is None
