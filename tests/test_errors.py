"""Errors are part of the API: a bad shape, dtype or device raises, naming the op and both operands."""

from __future__ import annotations

import pytest

import zigtensor as zt
import zigtensor.nn.functional as F

SHAPE_ERRORS = [
    ("add", lambda: zt.ones(2, 3) + zt.ones(4), r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"),
    ("sub", lambda: zt.ones(2, 3) - zt.ones(2, 2), r"sub: shapes \(2, 3\) and \(2, 2\)"),
    ("mul", lambda: zt.ones(3) * zt.ones(2), r"mul: shapes \(3,\) and \(2,\)"),
    ("div", lambda: zt.ones(3) / zt.ones(2, 2), r"div: shapes \(3,\) and \(2, 2\)"),
    ("pow", lambda: zt.ones(3) ** zt.ones(2), r"pow: shapes \(3,\) and \(2,\)"),
    ("eq", lambda: zt.ones(3) == zt.ones(2), r"eq: shapes \(3,\) and \(2,\)"),
    ("maximum", lambda: zt.maximum(zt.ones(3), zt.ones(2)), r"maximum: shapes \(3,\) and \(2,\)"),
    ("where", lambda: zt.where(zt.ones(2, 3) > 0, zt.ones(4), 0.0), r"where: shapes \(2, 3\) and \(4,\)"),
    ("matmul", lambda: zt.ones(3, 4) @ zt.ones(5, 2),
     r"matmul: shapes \(3, 4\) and \(5, 2\) cannot be multiplied"),
    ("matmul_batch", lambda: zt.ones(2, 3, 4) @ zt.ones(3, 4, 5), r"matmul: shapes .*\(2,\) and \(3,\)"),
    ("reshape", lambda: zt.ones(2, 3).reshape(4, 2),
     r"reshape: shape '\[4, 2\]' is invalid for input of size 6"),
    ("view", lambda: zt.ones(2, 3).view(5), r"view: shape '\[5\]' is invalid for input of size 6"),
    ("expand", lambda: zt.ones(2, 3).expand(3, 3), r"expand: .*target sizes \(3, 3\), tensor shape \(2, 3\)"),
    ("cat", lambda: zt.cat([zt.ones(2, 3), zt.ones(2, 4)]),
     r"cat: .*shape \(2, 3\) and tensor 1 has shape \(2, 4\)"),
    ("stack", lambda: zt.stack([zt.ones(2, 3), zt.ones(2, 4)]),
     r"stack: .*\(2, 3\) at entry 0 and \(2, 4\) at entry 1"),
    ("permute", lambda: zt.ones(2, 3).permute(0), r"permute: .*tensor has 2 dims, got 1"),
    ("repeat", lambda: zt.ones(2, 3).repeat(2), r"repeat: number of repeat dims \(1\)"),
    ("split", lambda: zt.ones(4).split([1, 2]), r"split: split sizes \[1, 2\] .*\(4\)"),
    ("linear", lambda: F.linear(zt.ones(3, 4), zt.ones(5, 3)), r"linear: .*\(3, 4\).*\(5, 3\)"),
    ("layer_norm", lambda: F.layer_norm(zt.ones(2, 3), (4,)),
     r"layer_norm: normalized_shape \[4\] .*\(2, 3\)"),
    ("embedding", lambda: F.embedding(zt.tensor([0]), zt.ones(3)), r"embedding: weight must be 2-d.*\(3,\)"),
    ("sdpa", lambda: F.scaled_dot_product_attention(zt.ones(2, 4), zt.ones(3, 5), zt.ones(3, 5)),
     r"scaled_dot_product_attention: .*query \(2, 4\), key \(3, 5\), value \(3, 5\)"),
    ("add_", lambda: zt.ones(2).add_(zt.ones(2, 2)),
     r"add_: output with shape \(2,\) .*broadcast shape \(2, 2\)"),
    ("setitem", lambda: zt.zeros(2, 3).__setitem__(0, zt.ones(4)), r"__setitem__: .*\(2, 3\)"),
    ("backward", lambda: (zt.ones(2, requires_grad=True) * 2).backward(zt.ones(3)),
     r"gradient has shape \(3,\) but the output has shape \(2,\)"),
]


@pytest.mark.parametrize("name,f,match", SHAPE_ERRORS, ids=[c[0] for c in SHAPE_ERRORS])
def test_shape_errors(name, f, match):
    with pytest.raises((ValueError, RuntimeError), match=match):
        f()


DIM_ERRORS = [
    ("sum", lambda: zt.ones(2, 3).sum(2),
     r"sum: dimension out of range \(expected to be in range of \[-2, 1\], but got 2\)"),
    ("mean", lambda: zt.ones(2, 3).mean(-3), r"mean: dimension out of range"),
    ("max", lambda: zt.ones(2, 3).max(5), r"max: dimension out of range"),
    ("softmax", lambda: zt.ones(2, 3).softmax(2), r"softmax: dimension out of range"),
    ("transpose", lambda: zt.ones(2, 3).transpose(0, 2), r"transpose: dimension out of range"),
    ("unsqueeze", lambda: zt.ones(2, 3).unsqueeze(4), r"unsqueeze: dimension out of range"),
    ("cat", lambda: zt.cat([zt.ones(2), zt.ones(2)], 1), r"cat: dimension out of range"),
    ("index", lambda: zt.ones(2, 3)[2], r"index: .*\(2, 3\)"),
    ("gather", lambda: zt.ones(2, 3).gather(0, zt.tensor([[2]])),
     r"gather: index 2 is out of bounds .*size 2"),
    ("max_empty", lambda: zt.ones(0, 3).max(), r"max: expected a non-empty tensor .*\(0, 3\)"),
]


@pytest.mark.parametrize("name,f,match", DIM_ERRORS, ids=[c[0] for c in DIM_ERRORS])
def test_dim_errors(name, f, match):
    with pytest.raises(IndexError, match=match):
        f()


DTYPE_ERRORS = [
    ("matmul", lambda: zt.ones(2, 2) @ zt.ones(2, 2, dtype=zt.int64),
     r"matmul: .*float32 for \(2, 2\) and .*int64 for \(2, 2\)", RuntimeError),
    ("bitwise", lambda: zt.ones(2) & zt.ones(2),
     r"bitwise_and: not defined for floating tensors \(got float32 and float32\)",
     TypeError),
    ("where", lambda: zt.where(zt.ones(2), zt.ones(2), 0.0),
     r"where: condition must be a bool tensor, got .*float32",
     TypeError),
    ("mean", lambda: zt.ones(2, dtype=zt.int64).mean(), r"mean: .*int64", RuntimeError),
    ("pow", lambda: zt.tensor([2]) ** -1, r"pow: integers to negative integer powers", RuntimeError),
    ("add_", lambda: zt.tensor([1, 2]).add_(0.5),
     r"add_: result type .*float32 can't be cast to .*int64", RuntimeError),
    ("index", lambda: zt.ones(3)[zt.tensor([0.5])],
     r"index: tensors used as indices must be long, int or bool, got .*float32",
     IndexError),
    ("gather", lambda: zt.ones(2, 2).gather(0, zt.zeros(2, 2, dtype=zt.int32)),
     r"gather: .*int64.*int32", RuntimeError),
    ("scatter_add", lambda: zt.ones(2).scatter_add(0, zt.tensor([0]), zt.ones(1, dtype=zt.float64)),
     r"scatter_add: expected src dtype .*float32.*float64", RuntimeError),
    ("masked_fill", lambda: zt.ones(2).masked_fill(zt.ones(2), 0.0),
     r"masked_fill: expected a bool mask .*float32",
     RuntimeError),
    ("embedding", lambda: F.embedding(zt.tensor([0.0]), zt.ones(2, 2)),
     r"embedding: expected integer indices, got .*float32",
     RuntimeError),
    ("one_hot", lambda: F.one_hot(zt.tensor([0], dtype=zt.int32)), r"one_hot: .*int64.*int32", RuntimeError),
    ("requires_grad", lambda: zt.ones(2, dtype=zt.int64).requires_grad_(),
     r"floating point dtype .*int64", RuntimeError),
    ("add_str", lambda: zt.ones(2) + "x", r"add: expected a Tensor or a Python number, got str", TypeError),
    ("rand", lambda: zt.rand(2, dtype=zt.int64), r"rand: expected a floating dtype, got .*int64", TypeError),
    ("dtype_name", lambda: zt.ones(2, dtype="float128"), r"unknown dtype name 'float128'", TypeError),
    ("sdpa_mask", lambda: F.scaled_dot_product_attention(zt.ones(2, 2), zt.ones(2, 2), zt.ones(2, 2),
                                                         attn_mask=zt.ones(2, 2, dtype=zt.int32)),
     r"scaled_dot_product_attention: attn_mask must be bool or float, got .*int32", TypeError),
]


@pytest.mark.parametrize("name,f,match,exc", DTYPE_ERRORS, ids=[c[0] for c in DTYPE_ERRORS])
def test_dtype_errors(name, f, match, exc):
    with pytest.raises(exc, match=match):
        f()


def test_misc_errors():
    with pytest.raises(RuntimeError, match="item: a tensor with 2 elements"):
        zt.ones(2).item()
    with pytest.raises(RuntimeError, match="unknown device 'tpu'"):
        zt.ones(2).to("tpu")
    with pytest.raises(ValueError, match="clamp: at least one of min and max"):
        zt.ones(2).clamp()
    with pytest.raises(ValueError, match="div: rounding_mode must be"):
        zt.ones(2).div(2, rounding_mode="up")


# --------------------------------------------------------------------------------------------- devices
DEVICE_ERRORS = [  # (name, op on a cpu tensor a and a cuda:0 tensor b, the op named in the message)
    ("add", lambda a, b: a + b, "add"),
    ("radd", lambda a, b: b + a, "add"),
    ("sub", lambda a, b: a - b, "sub"),
    ("mul", lambda a, b: a * b, "mul"),
    ("div", lambda a, b: a / b, "div"),
    ("pow", lambda a, b: a ** b, "pow"),
    ("eq", lambda a, b: a == b, "eq"),
    ("lt", lambda a, b: a < b, "lt"),
    ("maximum", lambda a, b: zt.maximum(a, b), "maximum"),
    ("where", lambda a, b: zt.where(a > 0, a, b), "where"),
    ("matmul", lambda a, b: a.reshape(1, 2) @ b.reshape(2, 1), "matmul"),
    ("cat", lambda a, b: zt.cat([a, b]), "cat"),
    ("stack", lambda a, b: zt.stack([a, b]), "stack"),
    ("linear", lambda a, b: F.linear(a, b.reshape(1, 2)), "matmul"),
    ("index", lambda a, b: a[b.long()], "index"),
    ("gather", lambda a, b: a.gather(0, b.long()), "gather"),
    ("masked_fill", lambda a, b: a.masked_fill(b > 0, 0.0), "masked_fill"),
    ("embedding", lambda a, b: F.embedding(b.long(), a.reshape(2, 1)), "embedding"),
    ("setitem", lambda a, b: a.__setitem__(0, b[0]), "__setitem__"),
    ("sdpa", lambda a, b: F.scaled_dot_product_attention(a.reshape(1, 2), b.reshape(1, 2), a.reshape(1, 2)),
     "matmul"),
]


@pytest.mark.parametrize("name,f,op", DEVICE_ERRORS, ids=[c[0] for c in DEVICE_ERRORS])
def test_mixed_devices(fake_cuda, name, f, op):
    a, b = zt.tensor([1.0, 0.0]), zt.tensor([1.0, 0.0], device="cuda:0")
    assert b.device is fake_cuda
    with pytest.raises(RuntimeError, match=rf"^{op}: .*(cpu.*cuda:0|cuda:0.*cpu)"):
        f(a, b)


def test_mixed_devices_message_names_op(fake_cuda):
    a, b = zt.ones(2, 3), zt.ones(2, 3, device="cuda")
    with pytest.raises(RuntimeError, match=r"add: expected all tensors on the same device, found cpu"):
        a + b
    with pytest.raises(RuntimeError, match=r"eq: .*cuda:0 .* and cpu"):
        _ = b == a
    # 'cuda' and 'cuda:0' are the same device
    assert (b + zt.ones(2, 3, device="cuda:0")).device is fake_cuda


def test_same_fake_device_works(fake_cuda):
    x = zt.randn(3, 4, device=fake_cuda, requires_grad=True)
    w = zt.randn(4, 2, device="cuda:0", requires_grad=True)
    y = F.softmax(x @ w, -1).sum()
    y.backward()
    assert y.device is fake_cuda and x.grad.device is fake_cuda and w.grad.device is fake_cuda


def test_fake_device_is_gone_after_fixture():
    # the fixture undoes its registration: 'cuda' has no backend again (no CUDA here) or is the real one
    try:
        dev = zt.ones(1, device="cuda").device
    except RuntimeError as e:
        assert "cuda" in str(e)
    else:
        assert type(dev.backend).__name__ != "FakeCUDABackend"
