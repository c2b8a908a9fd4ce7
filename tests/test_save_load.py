"""zt.save / zt.load: checkpoints of nested objects in one safetensors file (no pickle), round trips, sharing,
devices, resuming training bit for bit, and the errors; the file itself is read by the `safetensors` library."""

from __future__ import annotations

import math

import numpy as np
import pytest
from oracle import oracle

import zigtensor as zt
import zigtensor.nn as nn

safetensors_numpy = oracle("safetensors.numpy")


def _trained():
    zt.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = zt.optim.AdamW(model.parameters(), lr=1e-2)
    return model, opt


def _step(model, opt, seed):
    rng = np.random.default_rng(seed)
    x, y = zt.tensor(rng.standard_normal((16, 4)), dtype=zt.float32), zt.tensor(rng.integers(0, 2, 16))
    opt.zero_grad()
    loss = zt.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return float(loss)


def test_round_trip_of_a_nested_object(tmp_path):
    w = zt.randn(3, requires_grad=True)
    obj = {"step": 7, "lr": 3e-4, "nan": float("nan"), "inf": -math.inf, "name": "run", "flag": False, "none": None,
           "tied": [w, w], "array": np.arange(6, dtype=np.int16).reshape(2, 3), "tuple": (1, "a", (2.5,)),
           3: "int key", None: "none key", "bf16": zt.ones(2, dtype=zt.bfloat16), "scalar": zt.tensor(2.5)}
    zt.save(obj, tmp_path / "obj.zt")
    back = zt.load(tmp_path / "obj.zt")
    assert set(back) == set(obj)
    assert (back["step"], back["lr"], back["name"], back["flag"], back["none"]) == (7, 3e-4, "run", False, None)
    assert math.isnan(back["nan"]) and back["inf"] == -math.inf
    assert back["tied"][0] is back["tied"][1] and back["tied"][0].requires_grad and back["tied"][0].is_leaf
    np.testing.assert_array_equal(back["tied"][0].numpy(), w.detach().numpy())
    assert back["array"].dtype == np.int16 and back["array"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert back["tuple"] == (1, "a", (2.5,)) and back[3] == "int key" and back[None] == "none key"
    assert back["bf16"].dtype is zt.bfloat16 and back["scalar"].shape == () and float(back["scalar"]) == 2.5


def test_a_checkpoint_resumes_training_bit_for_bit(tmp_path):
    model, opt = _trained()
    for s in range(3):
        _step(model, opt, s)
    zt.save({"model": model.state_dict(), "optim": opt.state_dict()}, tmp_path / "ckpt.zt")
    want = [_step(model, opt, s) for s in range(3, 6)]
    model2, opt2 = _trained()
    ckpt = zt.load(tmp_path / "ckpt.zt", map_location="cpu")
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["optim"])
    assert [_step(model2, opt2, s) for s in range(3, 6)] == want
    for a, b in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_file_is_plain_safetensors(tmp_path):
    zt.save({"w": zt.arange(6, dtype=zt.float32).reshape(2, 3), "n": 1}, tmp_path / "a.zt")
    raw = safetensors_numpy.load_file(str(tmp_path / "a.zt"))
    assert list(raw) == ["t0"] and raw["t0"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_errors(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store an object of type function at obj\['cb'\]\[0\]"):
        zt.save({"cb": [lambda: 0]}, tmp_path / "x.zt")
    with pytest.raises(TypeError, match=r"cannot store a dict key of type tuple at obj\['d'\]"):
        zt.save({"d": {(1, 2): 3}}, tmp_path / "x.zt")
    assert not (tmp_path / "x.zt").exists()  # nothing written on a refusal
    zt.save_file({"w": zt.ones(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(zt.io.SafetensorsError, match="was not written by zt.save .* read plain safetensors files with "
                                                     "zt.load_file"):
        zt.load(tmp_path / "plain.safetensors")
