"""The Module API: registration, traversal, state dicts, modes, moving, hooks into init, repr, containers.

Where PyTorch defines the answer (names, order, repr), the same model is built in torch and compared.
"""

from __future__ import annotations

import copy
import pickle
from collections import OrderedDict

import numpy as np
import pytest
from oracle import torch

import zigtensor as zt
import zigtensor.nn as nn

TNN = torch.nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.scale = nn.Parameter(zt.ones(4))
        self.register_buffer("steps", zt.zeros(1), persistent=False)
        self.note = "not registered"

    def forward(self, x):
        return self.bn(self.conv(x)).relu() * self.scale.reshape(1, 4, 1, 1)


class TBlock(TNN.Module):
    def __init__(self):
        super().__init__()
        self.conv = TNN.Conv2d(2, 4, 3, padding=1)
        self.bn = TNN.BatchNorm2d(4)
        self.scale = TNN.Parameter(torch.ones(4))
        self.register_buffer("steps", torch.zeros(1), persistent=False)

    def forward(self, x):
        return self.bn(self.conv(x)).relu() * self.scale.reshape(1, 4, 1, 1)


def model():
    return nn.Sequential(Block(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))


def tmodel():
    return TNN.Sequential(TBlock(), TNN.Flatten(), TNN.Linear(4 * 5 * 5, 3))


# ------------------------------------------------------------------------------------------ traversal
def test_names_and_order_match_torch():
    m, t = model(), tmodel()
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in m.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in m.named_modules()] == [n for n, _ in t.named_modules()]
    assert [n for n, _ in m.named_children()] == [n for n, _ in t.named_children()]
    assert list(m.state_dict()) == list(t.state_dict())  # the non-persistent buffer is left out
    assert "0.steps" in dict(m.named_buffers()) and "0.steps" not in m.state_dict()
    assert len(list(m.parameters())) == 7 and len(list(m.parameters(recurse=False))) == 0
    assert [type(c).__name__ for c in m.children()] == ["Block", "Flatten", "Linear"]
    assert len(list(m.modules())) == 6
    assert m.get_submodule("0.bn") is m[0].bn
    with pytest.raises(AttributeError, match=r"no submodule 'nope'.*'0.nope'"):
        m.get_submodule("0.nope")


def test_shared_parameters_counted_once():
    lin = nn.Linear(3, 3)
    tied = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(tied.parameters())) == 2
    assert len(list(tied.modules())) == 3
    assert list(tied.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # as torch's state dict
    assert [n for n, _ in tied.named_parameters(remove_duplicate=False)] == list(tied.state_dict())


# ------------------------------------------------------------------------------------------ registration
def test_registration_by_assignment():
    m = nn.Module()
    m.w = nn.Parameter(zt.zeros(2))
    m.sub = nn.Linear(2, 2)
    m.plain = zt.zeros(3)  # a plain Tensor is an attribute, not a parameter or buffer
    m.register_buffer("buf", zt.ones(1))
    assert list(m._parameters) == ["w"] and list(m._modules) == ["sub"] and list(m._buffers) == ["buf"]
    assert "plain" not in dict(m.named_parameters()) and "plain" not in m.state_dict()
    m.w = None  # None keeps the slot (as for a layer without bias)
    assert m._parameters["w"] is None and m.w is None and "w" not in m.state_dict()
    m.buf = zt.full((1,), 5.0)
    assert m.state_dict()["buf"].item() == 5.0
    m.buf = nn.Parameter(zt.ones(1))  # a Parameter replaces a buffer of the same name
    assert "buf" in m._parameters and "buf" not in m._buffers
    del m.sub
    assert "sub" not in m._modules and not hasattr(m, "sub")


def test_assignment_errors():
    lin = nn.Linear(2, 3)
    with pytest.raises(TypeError, match=r"cannot assign Tensor as parameter 'weight'.*nn.Parameter"):
        lin.weight = zt.zeros(3, 2)
    assert isinstance(lin.weight, nn.Parameter)  # still registered
    seq = nn.Sequential(nn.ReLU())
    with pytest.raises(TypeError, match=r"cannot assign int as child module '0'"):
        setattr(seq, "0", 3)
    bn = nn.BatchNorm1d(2)
    with pytest.raises(TypeError, match=r"cannot assign list as buffer 'running_mean'"):
        bn.running_mean = [0.0, 0.0]

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(zt.zeros(1))

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Early()
    m = nn.Module()
    m.x = 1
    with pytest.raises(KeyError, match=r"'x' already exists"):
        m.register_buffer("x", zt.zeros(1))
    m.register_buffer("b", zt.zeros(1))
    with pytest.raises(KeyError, match=r"'b' already exists"):
        m.register_parameter("b", nn.Parameter(zt.zeros(1)))
    with pytest.raises(KeyError, match=r"'forward' already exists"):
        m.register_module("forward", nn.ReLU())
    with pytest.raises(KeyError, match=r"without '\.'"):
        m.register_buffer("a.b", zt.zeros(1))
    with pytest.raises(TypeError, match=r"must be a Parameter"):
        m.register_parameter("p", zt.zeros(1))


def test_parameter():
    p = nn.Parameter(zt.zeros(2, 3))
    assert isinstance(p, zt.Tensor) and p.requires_grad and p.is_leaf
    assert not nn.Parameter(zt.zeros(2), requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor(")
    q = pickle.loads(pickle.dumps(p))
    assert isinstance(q, nn.Parameter) and q.requires_grad and q.shape == (2, 3)
    with pytest.raises(TypeError, match="expected a Tensor"):
        nn.Parameter([1.0, 2.0])


# ------------------------------------------------------------------------------------------ state dicts
@pytest.mark.cpu_only  # numpy() shares memory on the CPU only
def test_state_dict_round_trip_and_sharing():
    a, b = model(), model()
    sd = a.state_dict()
    assert all(not v.requires_grad for v in sd.values())
    assert np.shares_memory(sd["2.weight"].numpy(), a[2].weight.numpy())  # views, as in PyTorch
    weight = b[2].weight
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert b[2].weight is weight  # loaded in place: optimizers keep their references
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), sd[k].numpy())
    assert b.state_dict()["0.bn.num_batches_tracked"].dtype is zt.int64


def test_load_state_dict_from_torch_and_numpy():
    t, m = tmodel(), model()
    m.load_state_dict(t.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    t.eval()
    m.eval()
    np.testing.assert_allclose(m(zt.tensor(x)).numpy(), t(torch.tensor(x)).detach().numpy(), atol=1e-5)
    lin = nn.Linear(2, 2)
    lin.load_state_dict({"weight": np.eye(2), "bias": np.array([1.0, 2.0])})  # cast to the parameter's dtype
    assert lin.weight.dtype is zt.float32 and lin.bias.tolist() == [1.0, 2.0]


def test_load_state_dict_errors_list_every_key():
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    sd = m.state_dict()
    bad = OrderedDict(sd)
    del bad["0.bias"]
    del bad["1.running_var"]
    bad["extra.weight"] = zt.zeros(1)
    bad["0.weight"] = zt.zeros(4, 2)
    with pytest.raises(RuntimeError) as e:
        m.load_state_dict(bad)
    msg = str(e.value)
    for part in ("Sequential", "size mismatch", "0.weight", "(4, 2)", "(3, 2)", "missing keys", "'0.bias'",
                 "'1.running_var'", "unexpected keys", "'extra.weight'"):
        assert part in msg, part
    # strict=False reports missing/unexpected keys instead of failing, but a wrong shape is always an error
    del bad["0.weight"]
    before = m[0].bias.numpy().copy()
    result = m.load_state_dict(bad, strict=False)
    assert result.missing_keys == ["0.weight", "0.bias", "1.running_var"]
    assert result.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(m[0].bias.numpy(), before)
    with pytest.raises(RuntimeError, match="size mismatch for 0.weight"):
        m.load_state_dict({"0.weight": zt.zeros(3)}, strict=False)


# ------------------------------------------------------------------------------------------ modes, grads
def test_train_eval_recursive():
    m = model()
    assert m.training and all(c.training for c in m.modules())
    assert m.eval() is m
    assert not any(c.training for c in m.modules())
    m.train()
    assert all(c.training for c in m.modules())
    with pytest.raises(ValueError, match="bool"):
        m.train("yes")

    calls = []

    class Frozen(nn.Module):
        def train(self, mode=True):
            calls.append(mode)
            return super().train(False)

    outer = nn.Sequential(nn.Sequential(Frozen()))
    outer.train()
    assert calls == [True] and not outer[0][0].training  # a nested override of train() is called


def test_zero_grad_and_requires_grad():
    m = nn.Linear(3, 2)
    m(zt.randn(4, 3)).sum().backward()
    assert m.weight.grad is not None
    m.zero_grad(set_to_none=False)
    assert m.weight.grad is not None and not m.weight.grad.numpy().any()
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None
    assert m.requires_grad_(False) is m
    assert not any(p.requires_grad for p in m.parameters())
    m(zt.randn(4, 3))  # a frozen layer still runs
    m.requires_grad_()
    assert all(p.requires_grad for p in m.parameters())


def test_apply_visits_children_first():
    m = model()
    seen = []
    assert m.apply(lambda mod: seen.append(type(mod).__name__)) is m
    assert seen == ["Conv2d", "BatchNorm2d", "Block", "Flatten", "Linear", "Sequential"]

    def init(mod):
        if isinstance(mod, nn.Linear):
            nn.init.zeros_(mod.weight)

    m.apply(init)
    assert not m[2].weight.numpy().any()


def test_to_dtype_keeps_parameter_identity():
    m = model()
    m(zt.randn(1, 2, 5, 5)).sum().backward()
    params = list(m.parameters())
    assert m.to(zt.float64) is m
    assert [id(p) for p in m.parameters()] == [id(p) for p in params]
    assert all(p.dtype is zt.float64 and isinstance(p, nn.Parameter) and p.requires_grad for p in params)
    assert all(p.grad.dtype is zt.float64 for p in params)
    assert m[0].bn.running_mean.dtype is zt.float64
    assert m[0].bn.num_batches_tracked.dtype is zt.int64  # integer buffers keep their dtype
    assert m(zt.randn(1, 2, 5, 5, dtype=zt.float64)).dtype is zt.float64
    m.float()
    assert m[2].weight.dtype is zt.float32
    m.to("float16")
    assert m[2].weight.dtype is zt.float16
    with pytest.raises(TypeError, match="floating point"):
        m.to(zt.int32)


def test_deepcopy_copies_values():
    m = nn.Linear(2, 2)
    c = copy.deepcopy(m)
    assert c.weight is not m.weight and isinstance(c.weight, nn.Parameter)
    np.testing.assert_array_equal(c.weight.numpy(), m.weight.numpy())
    with zt.no_grad():
        c.weight.fill_(0.0)
    assert m.weight.numpy().any()


# ------------------------------------------------------------------------------------------ repr
def test_nested_repr_matches_torch():
    def build(lib):
        return lib.Sequential(lib.Conv2d(1, 8, 3, padding=1), lib.BatchNorm2d(8), lib.ReLU(),
                              lib.MaxPool2d(2), lib.Sequential(lib.Flatten(), lib.Dropout(0.2)),
                              lib.Linear(8 * 14 * 14, 10, bias=False), lib.Identity())

    z, t = build(nn), build(TNN)
    assert repr(z) == repr(t)
    assert repr(model()[0]) == repr(tmodel()[0]).replace("TBlock", "Block")
    assert repr(nn.Sequential()) == repr(TNN.Sequential())


def test_module_list_repr_collapses_repeats_like_torch():
    def build(lib):
        return lib.ModuleList([lib.Linear(2, 2) for _ in range(3)]
                              + [lib.ReLU(), lib.Sequential(lib.Tanh(), lib.Tanh())])

    z, t = build(nn), build(TNN)
    assert repr(z) == repr(t)
    assert repr(nn.ModuleList()) == repr(TNN.ModuleList())


# ------------------------------------------------------------------------------------------ containers
def test_sequential():
    a, b, c = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    s = nn.Sequential(a, b, c)
    assert len(s) == 3 and s[0] is a and s[-1] is c and list(s) == [a, b, c]
    x = zt.randn(5, 3)
    np.testing.assert_allclose(s(x).numpy(), c(b(a(x))).numpy())
    head = s[1:]
    assert isinstance(head, nn.Sequential) and list(head._modules) == ["1", "2"]
    named = nn.Sequential(OrderedDict([("fc", a), ("act", b)]))
    assert named.fc is a and list(named.state_dict()) == ["fc.weight", "fc.bias"]
    s.append(nn.Tanh())
    assert list(s._modules) == ["0", "1", "2", "3"]
    del s[1]
    assert list(s._modules) == ["0", "1", "2"] and s[1] is c  # renumbered, as in PyTorch
    s.insert(1, b)
    assert s[1] is b and len(s) == 4
    s[3] = nn.Sigmoid()
    assert isinstance(s.pop(), nn.Sigmoid) and len(s) == 3
    s.extend([nn.Identity()])
    assert isinstance(s[3], nn.Identity)
    with pytest.raises(IndexError, match=r"index 9 is out of range for 4"):
        s[9]
    with pytest.raises(TypeError, match=r"entry 0 is a int, expected a Module"):
        nn.Sequential(1)


def test_module_list():
    layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    layers.append(nn.ReLU())
    layers.extend([nn.Tanh()])
    layers.insert(0, nn.Identity())
    assert [type(m).__name__ for m in layers] == ["Identity", "Linear", "Linear", "ReLU", "Tanh"]
    assert isinstance(layers[-1], nn.Tanh)
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2
    layers[0] = nn.Sigmoid()
    assert isinstance(layers[0], nn.Sigmoid)
    del layers[0]
    assert list(layers._modules) == ["0", "1", "2", "3"] and isinstance(layers[0], nn.Linear)
    assert isinstance(layers.pop(1), nn.Linear) and len(layers) == 3
    holder = nn.Module()
    holder.layers = layers
    assert [n for n, _ in holder.named_parameters()] == ["layers.0.weight", "layers.0.bias"]
    with pytest.raises(IndexError):
        layers[3]
    with pytest.raises(TypeError, match="expected a Module"):
        layers.append("relu")


def test_module_dict():
    d = nn.ModuleDict({"enc": nn.Linear(2, 3), "act": nn.ReLU()})
    assert list(d.keys()) == ["enc", "act"] and "enc" in d and len(d) == 2
    assert isinstance(d["act"], nn.ReLU) and list(d) == ["enc", "act"]
    d["dec"] = nn.Linear(3, 2)
    d.update([("norm", nn.LayerNorm(2))])
    assert [k for k, _ in d.items()] == ["enc", "act", "dec", "norm"]
    assert list(d.state_dict()) == [f"{m}.{p}" for m in ("enc", "dec", "norm") for p in ("weight", "bias")]
    assert isinstance(d.pop("act"), nn.ReLU) and "act" not in d
    del d["norm"]
    assert list(d.values())[-1] is d["dec"]
    with pytest.raises(KeyError, match=r"no key 'nope'.*\['enc', 'dec'\]"):
        d["nope"]
    with pytest.raises(TypeError, match="expected a Module"):
        d["x"] = 3


def test_forward_hooks_see_and_replace_inputs_and_outputs_as_in_pytorch():
    results = []
    for lib, layers in ((zt, nn), (torch, torch.nn)):
        lib.manual_seed(0)
        layer = layers.Linear(3, 2)
        with lib.no_grad():
            layer.weight.copy_(lib.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]))
            layer.bias.copy_(lib.tensor([0.1, -0.2]))
        log = []
        pre = layer.register_forward_pre_hook(lambda m, args: (args[0] * 2,))
        post = layer.register_forward_hook(lambda m, args, out, log=log: log.append(args[0].tolist()) or out + 1)
        y1 = layer(lib.tensor([[1.0, 0.0, -1.0]]))
        pre.remove()
        post.remove()
        y2 = layer(lib.tensor([[1.0, 0.0, -1.0]]))
        layer.register_forward_hook(lambda m, args, out: None)  # None keeps the output
        y3 = layer(lib.tensor([[1.0, 0.0, -1.0]]))
        results.append((log, y1.tolist(), y2.tolist(), y3.tolist()))
    np.testing.assert_allclose(np.array(results[0][1]), np.array(results[1][1]), rtol=1e-6)
    assert results[0][0] == results[1][0]
    np.testing.assert_allclose(np.array(results[0][2:]), np.array(results[1][2:]), rtol=1e-6)


def test_parameter_containers_register_like_pytorchs():
    def build(lib, layers):
        class Holder(layers.Module):
            def __init__(self):
                super().__init__()
                self.ws = layers.ParameterList([lib.ones(2, 3), layers.Parameter(lib.zeros(3))])
                self.d = layers.ParameterDict({"a": lib.ones(1), "b": lib.zeros(2)})

        return Holder()

    z, t = build(zt, nn), build(torch, torch.nn)
    assert list(z.state_dict()) == list(t.state_dict()) == ["ws.0", "ws.1", "d.a", "d.b"]
    assert [n for n, _ in z.named_parameters()] == [n for n, _ in t.named_parameters()]
    z.ws.append(zt.ones(4))
    z.d["c"] = zt.ones(5)
    assert len(z.ws) == 3 and z.ws[-1].shape == (4,) and isinstance(z.ws[2], nn.Parameter) and "c" in z.d
    assert len(list(z.parameters())) == 6 and z.d.pop("a").shape == (1,) and list(z.d) == ["b", "c"]
    opt = zt.optim.SGD(z.parameters(), lr=0.5)
    (z.ws[0].sum() + z.d["b"].sum()).backward()
    opt.step()
    assert z.ws[0].tolist() == [[0.5] * 3] * 2
    with pytest.raises(TypeError, match="ParameterList: entry 3 is a list, expected a Tensor or Parameter"):
        z.ws.append([1.0])
