"""kernels/elementwise.cu through its launcher (backends/cuda_kernels/elementwise.py) against NumPy (dtypes,
broadcasting, weak scalars, NaN rules) and PyTorch (GELU, SiLU). GPU cases are marked `cuda`; a subset runs
on the CPU kernel emulator (tests/kernel_emulator.py) everywhere; the layout planning is pure and runs here."""

import numpy as np
import pytest
import scipy.special
from cuda_util import BF16, assert_close, kernel_device, on_devices, rounded
from oracle import torch

from zigtensor.backends.cuda_kernels import elementwise as ew
from zigtensor.backends.cuda_kernels import strided as S

F32, F16, F64, I64, I32, I8, U8, B = (np.dtype(t) for t in (np.float32, np.float16, np.float64, np.int64,
                                                             np.int32, np.int8, np.uint8, np.bool_))


# ------------------------------------------------------------------------------------------ planning (no GPU)
def test_merge_dims_keeps_c_order_and_merges_contiguous_dims():
    assert S.merge_dims((64, 1024), [(1024, 1), (1024, 1)]) == ([65536], [[1], [1]])
    # a transposed operand keeps two dims; size-1 dims vanish
    assert S.merge_dims((4, 1, 8), [(8, 8, 1), (1, 1, 4)]) == ([4, 8], [[8, 1], [1, 4]])
    # broadcast (stride 0) merges with broadcast
    assert S.merge_dims((3, 5), [(5, 1), (0, 0)]) == ([15], [[1], [0]])
    assert S.merge_dims((), [()]) == ([], [[]])


def test_broadcast_strides_follow_numpy():
    assert S.broadcast_strides((4,), (1,), (3, 4)) == (0, 1)
    assert S.broadcast_strides((3, 1), (1, 1), (3, 4)) == (1, 0)
    with pytest.raises(ValueError, match=r"\(3,\) cannot be broadcast to \(4,\)"):
        S.broadcast_strides((3,), (1,), (4,))


def test_index_ctype_switches_to_64_bit_past_2_31():
    assert S.index_ctype([1024, 1024], [[1024, 1]]) == "int"
    assert S.index_ctype([2**31], [[1]]) == "long long"
    assert S.index_ctype([2, 2], [[2**31, 1]]) == "long long"


def test_compute_type_is_pytorchs_opmath():
    assert S.compute_ctype(F16, F16) == "float" and S.compute_ctype(BF16) == "float"
    assert S.compute_ctype(F32, F64) == "double" and S.compute_ctype(I8, B) == "long long"


def test_result_dtypes_are_numpys():
    assert ew._resolve("add", [ew.ScalarOperand(2.5), ew.ScalarOperand(1)], None)[1] == F64
    assert ew._resolve("add", [_Fake(I8), ew.ScalarOperand(2.5)], None)[1] == F64  # weak float: default float
    assert ew._resolve("add", [_Fake(F16), ew.ScalarOperand(2.5)], None)[1] == F16  # weak scalar keeps float16
    assert ew._resolve("less", [_Fake(I64), ew.ScalarOperand(0.5)], None) == ([F64, F64], B)
    assert ew._resolve("divide", [_Fake(I32), _Fake(I32)], None)[1] == F64
    assert ew._resolve("where", [_Fake(B), _Fake(F16), ew.ScalarOperand(0.0)], None)[1] == F16
    with pytest.raises(TypeError, match=r"subtract: not supported for operands of types \(bool, bool\)"):
        ew._resolve("subtract", [_Fake(B), _Fake(B)], None)
    with pytest.raises(ValueError, match="unknown op 'addd'"):
        ew._resolve("addd", [_Fake(F32), _Fake(F32)], None)


class _Fake:
    def __init__(self, dtype):
        self.dtype, self.shape = dtype, (2,)


# ------------------------------------------------------------------------------------------ kernels
BINARY = [("add", F32), ("subtract", F16), ("multiply", BF16), ("divide", F64), ("maximum", F32),
          ("minimum", F16), ("power", F32), ("floor_divide", F32), ("remainder", F64), ("floor_divide", I64),
          ("remainder", I32), ("less", F32), ("greater_equal", I64), ("equal", BF16), ("logical_xor", B),
          ("bitwise_and", I32), ("bitwise_or", B), ("add", I8)]


def _values(rng, shape, dtype, positive=False):
    if dtype == B:
        return rng.random(shape) > 0.5
    if dtype.kind in "iu":
        return rng.integers(1 if positive else -9, 10, size=shape).astype(dtype)
    return rounded(rng, shape, dtype, 0.25 if positive else -4.0, 4.0)


@pytest.mark.parametrize("device,case", on_devices(BINARY, emulated=[("add", F32), ("floor_divide", I64),
                                                                    ("less", F32)]))
def test_binary_broadcast_matches_numpy(device, case, monkeypatch):
    op, dtype = case
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(0)
    positive = op in ("power", "floor_divide", "remainder", "divide")
    a, b = _values(rng, (5, 1, 7), dtype), _values(rng, (3, 7), dtype, positive)
    got = ew.binary(op, dev.asarray(a), dev.asarray(b))
    want = getattr(np, op)(a, b)
    assert np.dtype(got.dtype) == want.dtype, f"{op}: dtype {got.dtype} != NumPy's {want.dtype}"
    _close(op, dev.numpy(got), want)


def _close(name, got, want):
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=name)
    else:
        assert_close(name, got, want.astype(np.float64), want.dtype)


@pytest.mark.parametrize("device,case", on_devices([F32, F16, BF16, F64], emulated=[F32]))
def test_contiguous_paths_vec_and_unaligned(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(1)
    a, b = _values(rng, (1031,), case), _values(rng, (1031,), case)
    da, db = dev.asarray(a), dev.asarray(b)
    _close("vec", dev.numpy(ew.binary("multiply", da, db)), a * b)
    # views starting one element in: contiguous but not 16-byte aligned -> the scalar-load kernels (1, 2, 3 operands)
    _close("contig", dev.numpy(ew.binary("multiply", da[1:], db[1:])), a[1:] * b[1:])
    _close("contig unary", dev.numpy(ew.unary("negative", da[1:])), -a[1:])
    with np.errstate(all="ignore"):
        lerp = (a[1:].astype(np.float64) + 0.25 * (b[1:].astype(np.float64) - a[1:])).astype(a.dtype)
    _close("contig ternary", dev.numpy(ew.ternary("lerp", da[1:], db[1:], 0.25)), lerp)


SCALARS = [("multiply", F16, 0.5), ("add", I8, 3), ("subtract", F32, 2), ("less", I64, 2.5), ("maximum", F32, 0),
           ("power", F64, 2), ("multiply", BF16, np.float32(3.0))]


@pytest.mark.parametrize("device,case", on_devices(SCALARS, emulated=SCALARS[:2]))
def test_scalar_operands_are_weak_like_numpy(device, case, monkeypatch):
    op, dtype, scalar = case
    dev = kernel_device(device, monkeypatch)
    a = _values(np.random.default_rng(2), (4, 6), dtype)
    for got, want in ((ew.binary(op, dev.asarray(a), scalar), getattr(np, op)(a, scalar)),
                      (ew.binary(op, scalar, dev.asarray(a)), getattr(np, op)(scalar, a))):
        assert np.dtype(got.dtype) == want.dtype
        _close(op, dev.numpy(got), want)


def test_integer_scalar_out_of_range_raises_like_numpy(monkeypatch):
    dev = kernel_device("emulator", monkeypatch)
    with pytest.raises(OverflowError, match="300 out of bounds for int8"):
        ew.binary("add", dev.asarray(np.zeros(3, np.int8)), 300)


UNARY = [("exp", F32), ("log", F16), ("sqrt", BF16), ("tanh", F64), ("sigmoid", F32), ("negative", I32),
         ("absolute", F16), ("sign", F32), ("floor", F32), ("rint", F64), ("trunc", F32), ("isnan", F32),
         ("isneginf", F32), ("logical_not", B), ("invert", B), ("invert", I8), ("reciprocal", F32), ("erf", F32),
         ("log1p", F32), ("square", I64)]


@pytest.mark.parametrize("device,case", on_devices(UNARY, emulated=[("exp", F32), ("sigmoid", F32),
                                                                  ("invert", B)]))
def test_unary_matches_numpy(device, case, monkeypatch):
    op, dtype = case
    dev = kernel_device(device, monkeypatch)
    x = _values(np.random.default_rng(3), (6, 9), dtype, positive=op in ("log", "sqrt", "log1p"))
    if dtype.kind == "f":
        x[0, :3] = [np.nan, np.inf, -np.inf] if op not in ("log", "sqrt", "log1p") else x[0, :3]
    got = ew.unary(op, dev.asarray(x))
    ref = {"sigmoid": lambda v: 1 / (1 + np.exp(-v.astype(np.float64))), "erf": scipy.special.erf,
           "isneginf": np.isneginf}.get(op, getattr(np, op, None))
    with np.errstate(all="ignore"):
        want = np.asarray(ref(x)).astype(got.dtype)
    _close(op, dev.numpy(got), want)


@pytest.mark.parametrize("device,case", on_devices([F32, BF16, F16], emulated=[F32]))
def test_gelu_silu_and_their_backwards_match_torch(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    x = rounded(np.random.default_rng(4), (33, 17), case)
    g = rounded(np.random.default_rng(5), (33, 17), case)
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    for op, approximate in (("gelu", "none"), ("gelu_tanh", "tanh")):
        y = torch.nn.functional.gelu(tx, approximate=approximate)
        (dx,) = torch.autograd.grad(y, tx, torch.tensor(g.astype(np.float64)))
        assert_close(op, dev.numpy(ew.unary(op, dev.asarray(x))), y.detach().numpy(), case)
        assert_close(op + "_backward", dev.numpy(ew.binary(op + "_backward", dev.asarray(g), dev.asarray(x))),
                     dx.numpy(), case, scale=2.0)
    y = torch.nn.functional.silu(tx)
    assert_close("silu", dev.numpy(ew.unary("silu", dev.asarray(x))), y.detach().numpy(), case)


@pytest.mark.parametrize("device,case", on_devices([(F32, BF16), (F16, F32), (F32, I64), (B, F32), (I64, F16)],
                                                   emulated=[(F32, BF16)]))
def test_cast_and_copy(device, case, monkeypatch):
    src, dst = case
    dev = kernel_device(device, monkeypatch)
    x = _values(np.random.default_rng(6), (4, 5), src)
    got = ew.cast(dev.asarray(x), dst)
    assert np.dtype(got.dtype) == dst
    _close("cast", dev.numpy(got), x.astype(dst))
    out = dev.asarray(np.zeros((3, 4, 5), dst))
    ew.copy(out, dev.asarray(x))  # broadcast over the leading dim
    _close("copy", dev.numpy(out), np.broadcast_to(x.astype(dst), (3, 4, 5)))


@pytest.mark.parametrize("device,case", on_devices([F32, F16], emulated=[F32]))
def test_where_and_clip(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(7)
    c, a, b = rng.random((4, 1)) > 0.5, _values(rng, (4, 6), case), _values(rng, (6,), case)
    _close("where", dev.numpy(ew.where(dev.asarray(c), dev.asarray(a), dev.asarray(b))), np.where(c, a, b))
    _close("where scalar", dev.numpy(ew.where(dev.asarray(c), dev.asarray(a), 0.0)), np.where(c, a, case.type(0)))
    _close("clip", dev.numpy(ew.ternary("clip", dev.asarray(a), -1.0, 1.5)), np.clip(a, -1.0, 1.5))


@pytest.mark.parametrize("device,case", on_devices([(F32, "gelu"), (BF16, "relu"), (F16, "silu"),
                                                    (F32, "gelu_tanh"), (F32, "none")],
                                                   emulated=[(F32, "gelu"), (BF16, "relu")]))
def test_bias_act_with_residual_matches_torch(device, case, monkeypatch):
    dtype, act = case
    dev = kernel_device(device, monkeypatch)
    rng = np.random.default_rng(8)
    x, bias, res = rounded(rng, (7, 64), dtype), rounded(rng, (64,), dtype), rounded(rng, (7, 64), dtype)
    t = torch.tensor(x.astype(np.float64)) + torch.tensor(bias.astype(np.float64))
    f = {"gelu": torch.nn.functional.gelu, "relu": torch.relu, "silu": torch.nn.functional.silu,
         "gelu_tanh": lambda v: torch.nn.functional.gelu(v, approximate="tanh"), "none": lambda v: v}[act]
    want = (f(t) + torch.tensor(res.astype(np.float64))).numpy()
    got = ew.bias_act(dev.asarray(x), dev.asarray(bias), act, dev.asarray(res))
    assert_close(f"bias_act {act}", dev.numpy(got), want, dtype, scale=2.0)
    # an odd width cannot use 16-byte packs: the scalar kernel
    got = ew.bias_act(dev.asarray(x[:, :63].copy()), dev.asarray(bias[:63].copy()), act)
    assert_close(f"bias_act {act} odd", dev.numpy(got), (f(t[:, :63])).numpy(), dtype, scale=2.0)


@pytest.mark.cuda
def test_strided_views_transposed_and_reversed(monkeypatch):
    dev = kernel_device("cuda", monkeypatch)
    rng = np.random.default_rng(9)
    a, b = rounded(rng, (8, 12), F32), rounded(rng, (12, 8), F32)
    da, db = dev.asarray(a), dev.asarray(b)
    _close("transposed", dev.numpy(ew.binary("add", da, db.T)), a + b.T)
    _close("reversed", dev.numpy(ew.binary("add", da[::-1, ::2], db.T[:, ::2])), a[::-1, ::2] + b.T[:, ::2])
    out = dev.asarray(np.zeros((12, 8), F32))
    ew.binary("multiply", da, 2.0, out=out.T)  # a strided output
    _close("strided out", dev.numpy(out), (a * 2).T)
