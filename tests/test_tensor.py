"""Tensor attributes, conversions, repr, __setitem__ and moving between devices."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from oracle import to_numpy, torch

import zigtensor as zt


@pytest.mark.cpu_only  # the default device is the CPU
def test_attributes():
    x = zt.zeros(2, 3, 4)
    assert x.shape == (2, 3, 4) and x.ndim == 3 and x.dim() == 3 and x.numel() == 24
    assert x.size() == (2, 3, 4) and x.size(-1) == 4 and x.size(1) == 3
    assert x.dtype is zt.float32 and x.device == zt.device("cpu") and str(x.device) == "cpu"
    assert x.element_size() == 4 and x.is_floating_point and len(x) == 2
    assert not x.requires_grad and x.grad is None and x.grad_fn is None and x.is_leaf
    s = zt.tensor(3.0)
    assert s.shape == () and s.ndim == 0 and s.numel() == 1
    e = zt.zeros(0, 3)
    assert e.numel() == 0 and e.shape == (0, 3)


def test_numpy_item_tolist():
    x = zt.tensor([[1.5, 2.0], [3.0, -4.0]])
    assert isinstance(x.numpy(), np.ndarray) and x.numpy().dtype == np.float32
    assert x.tolist() == [[1.5, 2.0], [3.0, -4.0]]
    assert x[1, 0].item() == 3.0 and isinstance(x[1, 0].item(), float)
    assert zt.tensor(7).item() == 7 and isinstance(zt.tensor(7).item(), int)
    assert zt.tensor([True]).item() is True
    assert zt.tensor(2.5).tolist() == 2.5
    assert float(zt.tensor(2.5)) == 2.5 and int(zt.tensor(3)) == 3 and bool(zt.tensor(1))
    assert [1, 2, 3][zt.tensor(1)] == 2  # __index__
    with pytest.raises(RuntimeError, match="item: a tensor with 4 elements"):
        x.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)
    # numpy() shares memory on the CPU; np.asarray works
    np.testing.assert_array_equal(np.asarray(x), x.numpy())


def test_numpy_16bit():
    assert zt.ones(2, dtype=zt.float16).numpy().dtype == np.float16
    assert zt.ones(2, dtype=zt.bfloat16).numpy().dtype == zt.bfloat16.np
    assert zt.tensor([1.5], dtype=zt.bfloat16).tolist() == [1.5]


def test_iteration_and_len():
    x = zt.arange(6).reshape(3, 2)
    rows = list(x)
    assert len(rows) == 3 and rows[2].tolist() == [4, 5]
    with pytest.raises(TypeError, match="0-d"):
        len(zt.tensor(1.0))
    with pytest.raises(TypeError, match="0-d"):
        iter(zt.tensor(1.0))


@pytest.mark.cpu_only  # numpy() shares memory on the CPU only
def test_detach():
    x = zt.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    assert d.tolist() == [2.0, 4.0]
    assert np.shares_memory(d.numpy(), y.numpy())


@pytest.mark.cpu_only  # numpy() shares memory on the CPU only
def test_clone_and_contiguous():
    x = zt.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    c = x.clone()
    assert c.grad_fn is not None and not np.shares_memory(c.numpy(), x.numpy())
    (c * zt.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    assert x.grad.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    t = x.detach().T
    assert not t.is_contiguous()
    tc = t.contiguous()
    assert tc.is_contiguous() and tc.tolist() == [[1.0, 3.0], [2.0, 4.0]]
    assert tc.contiguous() is tc


@pytest.mark.cpu_only  # repr says device='cpu'
def test_repr():
    x = zt.tensor([[1.0, 2.5], [3.0, 4.0]], requires_grad=True)
    r = repr(x)
    assert r.startswith("tensor([[1.0, 2.5],") and "4.0" in r
    assert "dtype=float32" in r and "device='cpu'" in r and "requires_grad=True" in r
    r = repr(x * 2)
    assert "grad_fn=<MulBackward>" in r and "5." in r
    assert repr(zt.tensor(3)) == "tensor(3, dtype=int64, device='cpu')"
    assert "size=(0, 3)" in repr(zt.zeros(0, 3))
    assert "True" in repr(zt.tensor([True, False])) and "dtype=bool" in repr(zt.tensor([True]))
    assert "dtype=bfloat16" in repr(zt.ones(2, dtype=zt.bfloat16))
    assert str(x) == repr(x)
    assert f"{zt.tensor(2.5):.2f}" == "2.50"
    big = repr(zt.arange(5000))
    assert "..." in big and len(big) < 500


def test_pickle():
    x = zt.tensor([[1.0, 2.0]], dtype=zt.float64, requires_grad=True)
    y = pickle.loads(pickle.dumps(x))
    assert y.dtype is zt.float64 and y.requires_grad and y.tolist() == x.tolist()


def test_requires_grad_():
    x = zt.ones(2)
    assert x.requires_grad_() is x and x.requires_grad
    with pytest.raises(RuntimeError, match="floating point"):
        zt.ones(2, dtype=zt.int64).requires_grad_()


@pytest.mark.cpu_only  # to("cpu") returns the tensor itself on the CPU only
def test_to_variants():
    x = zt.tensor([1.5, 2.5])
    assert x.to(zt.float64).dtype is zt.float64
    assert x.to("cpu") is x and x.to(zt.device("cpu")) is x and x.cpu() is x
    assert x.to("cpu", zt.float16).dtype is zt.float16
    assert x.to(dtype=zt.int32).tolist() == [1, 2]
    other = zt.zeros(1, dtype=zt.float64)
    assert x.to(other).dtype is zt.float64
    c = x.to(zt.float32, copy=True)
    assert c is not x and not np.shares_memory(c.numpy(), x.numpy())
    assert x.type() is zt.float32 and x.type(zt.int64).dtype is zt.int64


# ------------------------------------------------------------------------------------------ __setitem__
SETITEM_CASES = [
    (1, 5.0), ((0, 2), -1.0), (slice(1, 3), 7.0), ((slice(None), 1), 0.5), ((slice(None, None, 2), 0), 9.0),
    (Ellipsis, 2.0), ((Ellipsis, -1), 3.0), ((None, 1), 4.0), ((1, slice(None)), "row"), ("mask", 0.0),
    ("intlist", 1.0), ("mask", "maskvals"), (slice(0, 3), "broadcast"),
]


def _resolve(key, value, t):
    if key == "mask":
        key = t > 0
    elif key == "intlist":
        key = [0, 2]
    if value == "row":
        value = np.array([10.0, 20.0, 30.0, 40.0])
    elif value == "maskvals":
        value = np.arange(1.0, 1.0 + int((t > 0).sum()))
    elif value == "broadcast":
        value = np.array([1.0, 2.0, 3.0, 4.0])
    return key, value


@pytest.mark.parametrize("key,value", SETITEM_CASES, ids=str)
def test_setitem(key, value):
    base = np.random.default_rng(0).uniform(-2, 2, size=(3, 4))
    t, z = torch.tensor(base), zt.tensor(base, dtype=zt.float64)
    tk, tv = _resolve(key, value, t)
    zk, zv = _resolve(key, value, z)
    t[tk] = torch.tensor(tv) if isinstance(tv, np.ndarray) else tv
    z[zk] = zt.tensor(zv, dtype=zt.float64) if isinstance(zv, np.ndarray) else zv
    np.testing.assert_allclose(z.numpy(), to_numpy(t))


def test_setitem_casts_and_versions():
    z = zt.zeros(3, dtype=zt.int64)
    v = z._version
    z[0] = 2.7  # cast to the tensor's dtype, as torch
    z[1:] = zt.tensor([5, 6], dtype=zt.int32)
    assert z.tolist() == [2, 5, 6] and z.dtype is zt.int64 and z._version > v
    z[zt.tensor(0)] = 9
    assert z.tolist() == [9, 5, 6]


def test_setitem_outside_graph_only():
    x = zt.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="__setitem__: in-place modification of a leaf"):
        x[0] = 2.0
    y = x * 2
    with pytest.raises(RuntimeError, match="__setitem__"):
        y[0] = 2.0
    with zt.no_grad():
        x[0] = 5.0
    assert x.tolist() == [5.0, 1.0, 1.0] and x.requires_grad


def test_setitem_errors():
    z = zt.zeros(2, 3)
    with pytest.raises(RuntimeError, match=r"__setitem__: .*\(2, 3\)"):
        z[0] = zt.ones(4)
    with pytest.raises((IndexError, RuntimeError), match="(2, 3)"):
        z[5] = 1.0


def test_inplace_methods():
    x = zt.tensor([1.0, 2.0])
    x.add_(1).mul_(2).sub_(zt.tensor([1.0, 1.0])).div_(2)
    assert x.tolist() == [1.5, 2.5]
    x.zero_()
    assert x.tolist() == [0.0, 0.0]
    x.fill_(3)
    x.copy_(zt.tensor([4.0, 5.0]))
    assert x.tolist() == [4.0, 5.0]
    x.clamp_(max=4.5)
    assert x.tolist() == [4.0, 4.5]
    i = zt.tensor([1, 2])
    with pytest.raises(RuntimeError, match="can't be cast"):
        i.add_(0.5)
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        x.add_(zt.ones(2, 2))


# ------------------------------------------------------------------------------------------ devices
def test_device_parsing():
    assert zt.device("cpu") is zt.device("cpu") and zt.device(None) == zt.device("cpu")
    assert zt.device("cpu") == "cpu"
    with pytest.raises(RuntimeError, match="unknown device 'tpu'"):
        zt.device("tpu")
    with pytest.raises(RuntimeError, match="invalid device string"):
        zt.device("cuda:x")


def test_to_device_moves_data_and_gradients(fake_cuda):
    x = zt.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x.to(fake_cuda)
    assert y.device is fake_cuda and str(y.device) == "cuda:0" and y.grad_fn is not None
    assert not np.shares_memory(y.numpy(), x.numpy()) and y.tolist() == x.tolist()
    z = (y * y).sum()
    assert z.device is fake_cuda
    back = z.to("cpu")
    assert back.device == zt.device("cpu")
    back.backward()
    assert x.grad.device == zt.device("cpu")
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy())
    # creation on the device and moving with a dtype at once
    w = zt.ones(2, device="cuda:0")
    assert w.device is fake_cuda and w.to("cpu", zt.float64).dtype is zt.float64
    assert x.cuda(0).device is fake_cuda and x.cuda(0).cpu().device == zt.device("cpu")


@pytest.mark.cpu_only
def test_strides_sizes_and_flags_match_pytorch():
    x = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    views = [lambda t: t, lambda t: t.transpose(0, 2), lambda t: t[:, ::2], lambda t: t.permute(1, 0, 2)]
    for view in views:
        z, t = view(zt.tensor(x)), view(torch.tensor(x))
        assert z.stride() == t.stride() and z.stride(-1) == t.stride(-1)
        assert (z.nbytes, z.itemsize, z.is_cuda) == (t.nbytes, t.itemsize, t.is_cuda)
    m = zt.nn.Sequential(zt.nn.Linear(2, 3))
    assert m.get_parameter("0.bias") is m[0].bias
    with pytest.raises(AttributeError, match=r"Linear has no parameter 'nope' \(looking up '0.nope'\)"):
        m.get_parameter("0.nope")
