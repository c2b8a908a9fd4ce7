"""RNN, LSTM and GRU against their PyTorch twins (weights copied through the state dict): outputs, final
states, and the gradients of the input, the initial states and every parameter by name; finite-difference
and second-order checks of the recurrences; argument errors; the LSTM benchmark's two models agree."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import compare, gradcheck, gradgradcheck, torch

import zigtensor as zt
from zigtensor import nn
from zigtensor.ops.recurrent import gru_recurrence, lstm_recurrence, rnn_recurrence

TOL = dict(atol=1e-10, rtol=1e-8)  # float64 on both sides
IN, HID, SEQ, BATCH = 5, 6, 4, 3

KINDS = {
    "rnn_tanh": (nn.RNN, torch.nn.RNN, {}),
    "rnn_relu": (nn.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, torch.nn.LSTM, {}),
    "gru": (nn.GRU, torch.nn.GRU, {}),
}


def make_pair(kind: str, seed: int = 0, dtype=torch.float64, **kw):
    zcls, tcls, extra = KINDS[kind]
    torch.manual_seed(seed)
    t = tcls(IN, HID, **extra, **kw).to(dtype)
    z = zcls(IN, HID, **extra, **kw)
    z.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    return t, z


def leaf_pair(arr: np.ndarray):
    return torch.tensor(arr, requires_grad=True), zt.tensor(arr, requires_grad=True)


def flat_states(h):
    return list(h) if isinstance(h, tuple) else [h]


def check_against_torch(t, z, x: np.ndarray, states: list | None, tol=TOL, seed: int = 1):
    """Forward outputs and final states, then the gradients of a random weighting of all of them."""
    tx, zx = leaf_pair(x)
    t_states = z_states = None
    if states is not None:
        pairs = [leaf_pair(s) for s in states]
        t_states = [p[0] for p in pairs]
        z_states = [p[1] for p in pairs]
    lstm = isinstance(z, nn.LSTM)
    t_hx = None if t_states is None else (tuple(t_states) if lstm else t_states[0])
    z_hx = None if z_states is None else (tuple(z_states) if lstm else z_states[0])
    t_out, t_h = t(tx, t_hx)
    z_out, z_h = z(zx, z_hx)
    assert isinstance(z_h, tuple) == lstm
    t_res, z_res = [t_out] + flat_states(t_h), [z_out] + flat_states(z_h)
    rng = np.random.default_rng(seed)
    t_loss = z_loss = 0
    for i, (a, b) in enumerate(zip(t_res, z_res)):
        compare(f"result {i}", b, a, **tol)
        w = rng.uniform(0.5, 1.5, size=tuple(a.shape))
        t_loss = t_loss + (a * torch.tensor(w, dtype=a.dtype)).sum()
        z_loss = z_loss + (b * zt.tensor(w, dtype=b.dtype)).sum()
    t_loss.backward()
    z_loss.backward()
    compare("input gradient", zx.grad, tx.grad, **tol)
    for i, (a, b) in enumerate(zip(t_states or [], z_states or [])):
        compare(f"initial state {i} gradient", b.grad, a.grad, **tol)
    z_params = dict(z.named_parameters())
    assert list(z_params) == [n for n, _ in t.named_parameters()]
    for name, p in t.named_parameters():
        assert z_params[name].grad is not None, f"no gradient for {name}"
        compare(f"gradient of {name}", z_params[name].grad, p.grad, **tol)


def _input(batched: bool, batch_first: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    if not batched:
        return rng.standard_normal((SEQ, IN))
    return rng.standard_normal((BATCH, SEQ, IN) if batch_first else (SEQ, BATCH, IN))


def _states(kind: str, layers: int, directions: int, batched: bool, seed: int = 2):
    rng = np.random.default_rng(seed)
    shape = (layers * directions, BATCH, HID) if batched else (layers * directions, HID)
    return [rng.standard_normal(shape) for _ in range(2 if kind == "lstm" else 1)]


# --------------------------------------------------------------------------------------------- against torch
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_states", [False, True])
def test_matches_torch(kind, num_layers, batch_first, bidirectional, with_states):
    t, z = make_pair(kind, num_layers=num_layers, batch_first=batch_first, bidirectional=bidirectional)
    z.double()
    states = _states(kind, num_layers, 2 if bidirectional else 1, True) if with_states else None
    check_against_torch(t, z, _input(True, batch_first), states)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("with_states", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_unbatched_input(kind, with_states, bidirectional):
    t, z = make_pair(kind, num_layers=2, bidirectional=bidirectional, batch_first=True)
    z.double()
    states = _states(kind, 2, 2 if bidirectional else 1, False) if with_states else None
    check_against_torch(t, z, _input(False, True), states)


@pytest.mark.parametrize("kind", list(KINDS))
def test_no_bias(kind):
    t, z = make_pair(kind, num_layers=2, bias=False)
    z.double()
    assert all("bias" not in n for n, _ in z.named_parameters())
    check_against_torch(t, z, _input(True, False), _states(kind, 2, 1, True))


@pytest.mark.parametrize("with_states", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_float32(kind, with_states):
    """float32 (the LSTM's compiled cell, backends/cpu_fused.py), with and without initial states; inputs scaled
    up so that gates saturate and the activations' tails are reached."""
    t, z = make_pair(kind, dtype=torch.float32, num_layers=2, bidirectional=True)
    x = (_input(True, False) * 4).astype(np.float32)
    states = [(s * 3).astype(np.float32) for s in _states(kind, 2, 2, True)] if with_states else None
    check_against_torch(t, z, x, states, tol=dict(atol=1e-5, rtol=1e-4))
    out, _ = z(zt.tensor(x))
    assert out.dtype is zt.float32


@pytest.mark.parametrize("dtype", [zt.float16, zt.bfloat16], ids=lambda d: d.name)
def test_16bit(dtype):
    t, z = make_pair("lstm", dtype=torch.float32, num_layers=2, bidirectional=True)
    z.to(dtype)
    x = _input(True, False).astype(np.float32)
    out, (h, c) = z(zt.tensor(x, dtype=dtype))
    t_out, (t_h, t_c) = t(torch.tensor(x))
    assert out.dtype is dtype and h.dtype is dtype and c.dtype is dtype
    for name, a, b in (("output", out, t_out), ("h_n", h, t_h), ("c_n", c, t_c)):
        compare(name, a, b, atol=3e-2, rtol=3e-2)


def test_long_sequence_single_step_and_batch_of_one():
    for L, B in ((1, 1), (30, 1), (2, 7)):
        t, z = make_pair("lstm", num_layers=2)
        z.double()
        x = np.random.default_rng(L).standard_normal((L, B, IN))
        check_against_torch(t, z, x, None)


# --------------------------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("kind", list(KINDS))
def test_dropout_between_layers_only_in_training(kind):
    # p = 1 zeroes the whole input of layer 2 in training, so torch and zigtensor agree exactly there; if the
    # dropout were applied after the last layer too, the output would be all zeros.
    t, z = make_pair(kind, num_layers=2, dropout=1.0)
    z.double()
    x = _input(True, False)
    t.train()
    z.train()
    check_against_torch(t, z, x, None)
    assert np.abs(z(zt.tensor(x))[0].numpy()).max() > 0
    t.eval()
    z.eval()
    check_against_torch(t, z, x, None)


def test_dropout_is_random_in_training_and_off_in_eval():
    _, z = make_pair("lstm", num_layers=3, dropout=0.5)
    z.double()
    x = zt.tensor(_input(True, False))
    a, b = z(x)[0].numpy(), z(x)[0].numpy()
    assert not np.allclose(a, b)
    z.eval()
    np.testing.assert_array_equal(z(x)[0].numpy(), z(x)[0].numpy())


def test_dropout_warns_for_one_layer():
    with pytest.warns(UserWarning, match="num_layers=1"):
        nn.LSTM(4, 4, dropout=0.3)


# --------------------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("kind", list(KINDS))
def test_parameters_like_torch(kind):
    t, z = make_pair(kind, num_layers=2, bidirectional=True)
    assert list(z.state_dict()) == list(t.state_dict())
    for (name, p), (_, q) in zip(z.named_parameters(), t.named_parameters()):
        assert p.shape == tuple(q.shape), name
    zcls, _, extra = KINDS[kind]
    fresh = zcls(IN, 16, num_layers=2, bidirectional=True, **extra)
    bound = 1 / np.sqrt(16)
    for name, p in fresh.named_parameters():
        v = p.numpy()
        assert np.abs(v).max() <= bound and v.std() > bound / 4, name
    assert len(fresh.all_weights) == 4 and len(fresh.all_weights[0]) == 4


def test_repr():
    assert repr(nn.LSTM(10, 20, num_layers=2)) == "LSTM(10, 20, num_layers=2)"
    assert repr(nn.RNN(3, 4, nonlinearity="relu", batch_first=True)) == \
        "RNN(3, 4, batch_first=True, nonlinearity='relu')"
    assert repr(nn.GRU(3, 4, bidirectional=True, bias=False)) == "GRU(3, 4, bias=False, bidirectional=True)"


# --------------------------------------------------------------------------------------- finite differences
def _packed(*parts):
    return zt.cat([p.reshape(-1) * (i + 1) for i, p in enumerate(parts)])


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_recurrence_gradcheck(reverse):
    def f(xproj, h0, c0, w_hh):
        return _packed(*lstm_recurrence(xproj, h0, c0, w_hh, reverse))

    shapes = [(3, 2, 8), (2, 2), (2, 2), (8, 2)]
    gradcheck(f, shapes)
    gradgradcheck(f, shapes)
    # zero initial states (None)
    gradcheck(lambda xproj, w_hh: _packed(*lstm_recurrence(xproj, None, None, w_hh, reverse)),
              [(3, 2, 8), (8, 2)])


@pytest.mark.parametrize("reverse", [False, True])
def test_gru_recurrence_gradcheck(reverse):
    def f(xproj, h0, w_hh, b_hh):
        return _packed(*gru_recurrence(xproj, h0, w_hh, b_hh, reverse))

    shapes = [(3, 2, 6), (2, 2), (6, 2), (6,)]
    gradcheck(f, shapes)
    gradgradcheck(f, shapes)
    gradcheck(lambda xproj, w_hh: _packed(*gru_recurrence(xproj, None, w_hh, None, reverse)),
              [(3, 2, 6), (6, 2)])


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_recurrence_gradcheck(nonlinearity):
    def f(xproj, h0, w_hh):
        return _packed(*rnn_recurrence(xproj, h0, w_hh, nonlinearity, reverse=True))

    shapes = [(3, 2, 2), (2, 2), (2, 2)]
    gradcheck(f, shapes)
    gradgradcheck(f, shapes)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_module_gradcheck(kind):
    # the whole layer path (projection, recurrence, bidirectional concat, stacking) in float64
    zcls, _, _ = KINDS[kind]
    zt.manual_seed(0)
    m = zcls(2, 2, num_layers=2, bidirectional=True).double()

    def f(x, h0):
        out, h = m(x, (h0, h0 * 0.5) if kind == "lstm" else h0)
        return _packed(out, *flat_states(h))

    gradcheck(f, [(3, 2, 2), (4, 2, 2)])


def test_double_backward_through_module():
    zt.manual_seed(0)
    m = nn.LSTM(3, 4).double()
    x = zt.randn(5, 2, 3, dtype=zt.float64, requires_grad=True)
    out, _ = m(x)
    (g,) = zt.autograd.grad(out.sum(), x, create_graph=True)
    (g * g).sum().backward()
    assert m.weight_hh_l0.grad is not None and np.isfinite(m.weight_hh_l0.grad.numpy()).all()


# --------------------------------------------------------------------------------------------- errors
def test_bad_arguments():
    with pytest.raises(ValueError, match="'sigmoid'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dropout.*1.5"):
        nn.LSTM(3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match=r"dropout.*-0.1"):
        nn.GRU(3, 4, num_layers=2, dropout=-0.1)
    with pytest.raises(ValueError, match="hidden_size.*0"):
        nn.LSTM(3, 0)
    with pytest.raises(ValueError, match="num_layers.*0"):
        nn.GRU(3, 4, num_layers=0)
    with pytest.raises(TypeError, match="hidden_size.*float"):
        nn.RNN(3, 4.0)
    with pytest.raises(NotImplementedError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)


def test_bad_inputs():
    lstm = nn.LSTM(5, 4, num_layers=2)
    with pytest.raises(RuntimeError, match=r"Expected 5, got 7 \(input of shape \(6, 3, 7\)\)"):
        lstm(zt.randn(6, 3, 7))
    with pytest.raises(ValueError, match=r"\(2, 6, 3, 5\)"):
        lstm(zt.randn(2, 6, 3, 5))
    with pytest.raises(RuntimeError, match=r"h_0 of size \(2, 3, 4\), got \(1, 3, 4\)"):
        lstm(zt.randn(6, 3, 5), (zt.zeros(1, 3, 4), zt.zeros(2, 3, 4)))
    with pytest.raises(RuntimeError, match=r"c_0 of size \(2, 3, 4\), got \(2, 3, 5\)"):
        lstm(zt.randn(6, 3, 5), (zt.zeros(2, 3, 4), zt.zeros(2, 3, 5)))
    with pytest.raises(RuntimeError, match="unbatched 2-D input, h_0 should also be 2-D"):
        lstm(zt.randn(6, 5), (zt.zeros(2, 1, 4), zt.zeros(2, 1, 4)))
    with pytest.raises(TypeError, match="tuple"):
        lstm(zt.randn(6, 3, 5), zt.zeros(2, 3, 4))
    with pytest.raises(RuntimeError, match="at least one step"):
        lstm(zt.randn(0, 3, 5))
    gru = nn.GRU(5, 4, batch_first=True)
    with pytest.raises(RuntimeError, match=r"hx of size \(1, 2, 4\), got \(1, 6, 4\)"):
        gru(zt.randn(2, 6, 5), zt.zeros(1, 6, 4))


# ------------------------------------------------------------------------------------------ benchmark models
def test_lstm_benchmark_models_agree():
    from zigtensor.bench import lstm as bench

    zt.manual_seed(0)
    model = bench.CharLSTM()
    twin = bench._torch_twin(torch, model)
    x = np.random.default_rng(0).integers(0, bench.VOCAB, (8, 2))
    compare("logits", model(zt.tensor(x)), twin(torch.tensor(x)), atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ cells
@pytest.mark.parametrize("name, kwargs", [("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu", "bias": False}),
                                          ("LSTMCell", {}), ("GRUCell", {}), ("GRUCell", {"bias": False})])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_pytorch_over_three_steps(name, kwargs, batched):
    torch.manual_seed(0)
    tc = getattr(torch.nn, name)(5, 4, **kwargs)
    zc = getattr(zt.nn, name)(5, 4, **kwargs)
    zc.load_state_dict(tc.state_dict())
    assert repr(zc) == repr(tc)
    xs = np.random.default_rng(1).standard_normal((3, 2, 5) if batched else (3, 5))
    tx, zx = torch.tensor(xs, dtype=torch.float32, requires_grad=True), zt.tensor(xs, dtype=zt.float32,
                                                                                  requires_grad=True)
    outs = []
    for cell, x in ((tc, tx), (zc, zx)):
        state, total = None, 0
        for t in range(3):
            state = cell(x[t], state) if name != "LSTMCell" or state is not None else cell(x[t])
            h = state[0] if name == "LSTMCell" else state
            total = total + (h * h).sum()
        total.backward()
        outs.append((float(total.detach()), x.grad.numpy(),
                     {n: p.grad.numpy() for n, p in cell.named_parameters()}))
    (t_loss, t_dx, t_grads), (z_loss, z_dx, z_grads) = outs
    assert z_loss == pytest.approx(t_loss, rel=1e-5)
    np.testing.assert_allclose(z_dx, t_dx, rtol=1e-4, atol=1e-6)
    for n in t_grads:
        np.testing.assert_allclose(z_grads[n], t_grads[n], rtol=1e-4, atol=1e-6, err_msg=n)
