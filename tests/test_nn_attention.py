"""MultiheadAttention, TransformerEncoderLayer and TransformerEncoder against their PyTorch twins (weights
copied through the state dict): outputs, attention weights, and the gradients of the inputs and of every
parameter by name, under each mask kind; argument errors."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import compare, gradcheck, helper_test_op, torch

import zigtensor as zt
from zigtensor import nn

TOL = dict(atol=1e-10, rtol=1e-8)  # float64 on both sides
E, HEADS, L, S, N = 8, 2, 4, 5, 3


def load_from(z, t):
    z.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    return z.double()


def leaf_pair(arr):
    return torch.tensor(arr, requires_grad=True), zt.tensor(arr, requires_grad=True)


def as_pair(v):
    if isinstance(v, np.ndarray):
        return torch.tensor(v), zt.tensor(v)
    return v, v


def check_grads(t, z, t_inputs, z_inputs, tol=TOL):
    for i, (a, b) in enumerate(zip(t_inputs, z_inputs)):
        if a.grad is None:
            assert b.grad is None, f"input {i}: zigtensor has a gradient, torch none"
            continue
        compare(f"gradient of input {i}", b.grad, a.grad, **tol)
    z_params = dict(z.named_parameters())
    assert sorted(z_params) == sorted(n for n, _ in t.named_parameters())
    for name, p in t.named_parameters():
        assert z_params[name].grad is not None, f"no gradient for {name}"
        compare(f"gradient of {name}", z_params[name].grad, p.grad, **tol)


# --------------------------------------------------------------------------------------------- attention
def run_mha(module_kw=None, *, batched=True, self_attention=False, seed=0, **forward_kw):
    module_kw = dict(module_kw or {})
    torch.manual_seed(seed)
    t = torch.nn.MultiheadAttention(E, HEADS, **module_kw).double()
    z = load_from(nn.MultiheadAttention(E, HEADS, **module_kw), t)
    kdim, vdim = module_kw.get("kdim") or E, module_kw.get("vdim") or E
    bf = module_kw.get("batch_first", False)

    def shape(length, dim):
        if not batched:
            return (length, dim)
        return (N, length, dim) if bf else (length, N, dim)

    rng = np.random.default_rng(seed)
    pairs = [leaf_pair(rng.standard_normal(shape(L, E)))]
    if self_attention:
        pairs = pairs * 3
    else:
        pairs += [leaf_pair(rng.standard_normal(shape(S, d))) for d in (kdim, vdim)]
    t_in, z_in = [p[0] for p in pairs], [p[1] for p in pairs]
    t_kw = {k: as_pair(v)[0] for k, v in forward_kw.items()}
    z_kw = {k: as_pair(v)[1] for k, v in forward_kw.items()}
    t_out, t_w = t(*t_in, **t_kw)
    z_out, z_w = z(*z_in, **z_kw)
    compare("output", z_out, t_out, **TOL)
    if t_w is None:
        assert z_w is None
    else:
        compare("attention weights", z_w, t_w, **TOL)
    w = np.random.default_rng(seed + 1).uniform(0.5, 1.5, size=tuple(t_out.shape))
    t_loss, z_loss = (t_out * torch.tensor(w)).sum(), (z_out * zt.tensor(w)).sum()
    if t_w is not None:  # the weights' gradient path too
        t_loss, z_loss = t_loss + (t_w * t_w).sum(), z_loss + (z_w * z_w).sum()
    t_loss.backward()
    z_loss.backward()
    check_grads(t, z, t_in[:1] if self_attention else t_in, z_in[:1] if self_attention else z_in)
    return z_out, z_w


def _bool_mask(rows, cols, seed=3):
    m = np.random.default_rng(seed).random((rows, cols)) > 0.6
    m[:, 0] = False  # every query keeps at least one key
    return m


def _kpm(batch=N):
    m = np.zeros((batch, S), dtype=bool)
    m[0, 3:] = True
    m[-1, 1] = True
    return m


CASES = {
    "plain": ({}, {}),
    "batch_first": ({"batch_first": True}, {}),
    "no_bias": ({"bias": False}, {}),
    "kdim_vdim": ({"kdim": 6, "vdim": 7}, {}),
    "kdim_vdim_batch_first": ({"kdim": 6, "vdim": 3, "batch_first": True}, {}),
    "bool_mask_2d": ({}, {"attn_mask": _bool_mask(L, S)}),
    "float_mask_2d": ({}, {"attn_mask": np.random.default_rng(4).standard_normal((L, S))}),
    "bool_mask_3d": ({}, {"attn_mask": np.stack([_bool_mask(L, S, s) for s in range(N * HEADS)])}),
    "float_mask_3d": ({}, {"attn_mask": np.random.default_rng(5).standard_normal((N * HEADS, L, S))}),
    "key_padding_bool": ({}, {"key_padding_mask": _kpm()}),
    "key_padding_float": ({}, {"key_padding_mask": np.where(_kpm(), -1e9, 0.0)}),
    "key_padding_and_mask": ({"batch_first": True},
                             {"key_padding_mask": _kpm(), "attn_mask": _bool_mask(L, S)}),
    "no_weights": ({}, {"need_weights": False, "attn_mask": _bool_mask(L, S)}),
    "per_head_weights": ({}, {"average_attn_weights": False, "key_padding_mask": _kpm()}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_mha_matches_torch(case):
    module_kw, forward_kw = CASES[case]
    run_mha(module_kw, **forward_kw)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("batch_first", [False, True])
def test_mha_self_attention(need_weights, batch_first):
    out, w = run_mha({"batch_first": batch_first}, self_attention=True, need_weights=need_weights)
    assert out.shape == ((N, L, E) if batch_first else (L, N, E))
    assert (w is None) == (not need_weights)


@pytest.mark.parametrize("forward_kw", [
    {},
    {"attn_mask": _bool_mask(L, S), "key_padding_mask": _kpm(1)[0]},
    {"average_attn_weights": False, "attn_mask": np.zeros((HEADS, L, S))},
])
def test_mha_unbatched(forward_kw):
    out, w = run_mha({"kdim": 6, "vdim": 6}, batched=False, **forward_kw)
    assert out.shape == (L, E)
    assert w.shape == ((L, S) if forward_kw.get("average_attn_weights", True) else (HEADS, L, S))


def test_mha_is_causal():
    causal = np.triu(np.ones((L, L), dtype=bool), 1)
    for kw in ({"need_weights": False}, {"need_weights": True}, {"key_padding_mask": np.zeros((N, L), bool)}):
        run_mha({}, self_attention=True, attn_mask=causal, is_causal=True, **kw)
    # without a mask (PyTorch insists on one): the causal mask is built
    torch.manual_seed(0)
    m = nn.MultiheadAttention(E, HEADS)
    x = zt.randn(L, N, E)
    a, wa = m(x, x, x, is_causal=True)
    b, wb = m(x, x, x, attn_mask=zt.tensor(causal))
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    assert np.all(wa.numpy()[:, causal] == 0)


def test_mha_dropout():
    # eval: no dropout, as torch; training: weights rows are rescaled/zeroed at random
    torch.manual_seed(0)
    t = torch.nn.MultiheadAttention(E, HEADS, dropout=0.5).double().eval()
    z = load_from(nn.MultiheadAttention(E, HEADS, dropout=0.5), t).eval()
    x = np.random.default_rng(0).standard_normal((L, N, E))
    compare("eval output", z(*[zt.tensor(x)] * 3)[0], t(*[torch.tensor(x)] * 3)[0], **TOL)
    z.train()
    _, w1 = z(*[zt.tensor(x)] * 3, average_attn_weights=False)
    _, w2 = z(*[zt.tensor(x)] * 3, average_attn_weights=False)
    assert not np.allclose(w1.numpy(), w2.numpy())
    assert (w1.numpy() == 0).any() and w1.numpy().max() > 1 / S  # zeroed and rescaled by 1 / (1 - p)


def test_mha_parameters_like_torch():
    for kw in ({}, {"kdim": 6, "vdim": 7}, {"bias": False}):
        t = torch.nn.MultiheadAttention(E, HEADS, **kw)
        z = nn.MultiheadAttention(E, HEADS, **kw)
        assert list(z.state_dict()) == list(t.state_dict()), kw
        for (name, p), (_, q) in zip(z.named_parameters(), t.named_parameters()):
            assert p.shape == tuple(q.shape), name
    z = nn.MultiheadAttention(E, HEADS)
    assert not z.in_proj_bias.numpy().any() and not z.out_proj.bias.numpy().any()
    assert z.in_proj_weight.numpy().std() > 0
    assert isinstance(z.out_proj, nn.Linear)


def test_mha_gradcheck():
    zt.manual_seed(0)
    m = nn.MultiheadAttention(4, 2, kdim=3, vdim=5).double()
    mask = zt.tensor(np.array([[False, True, False], [False, False, True]]))

    def f(q, k, v):
        out, w = m(q, k, v, attn_mask=mask)
        return zt.cat([out.reshape(-1), w.reshape(-1)])

    gradcheck(f, [(2, 2, 4), (3, 2, 3), (3, 2, 5)])


def test_mha_errors():
    with pytest.raises(ValueError, match=r"embed_dim \(10\) must be divisible by num_heads \(3\)"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="dropout.*1.2"):
        nn.MultiheadAttention(8, 2, dropout=1.2)
    with pytest.raises(ValueError, match="num_heads.*0"):
        nn.MultiheadAttention(8, 0)
    m = nn.MultiheadAttention(8, 2, kdim=6)
    x = zt.randn(4, 3, 8)
    with pytest.raises(RuntimeError, match=r"last dim embed_dim=8, got query of shape \(4, 3, 7\)"):
        m(zt.randn(4, 3, 7), zt.randn(5, 3, 6), zt.randn(5, 3, 8))
    with pytest.raises(RuntimeError, match=r"key with last dim kdim=6, got key of shape \(5, 3, 8\)"):
        m(x, zt.randn(5, 3, 8), zt.randn(5, 3, 8))
    m = nn.MultiheadAttention(8, 2)
    with pytest.raises(RuntimeError, match=r"2D attn_mask is \(4, 5\), but should be \(4, 4\)"):
        m(x, x, x, attn_mask=zt.zeros(4, 5))
    with pytest.raises(RuntimeError, match=r"3D attn_mask is \(2, 4, 4\), but should be \(6, 4, 4\)"):
        m(x, x, x, attn_mask=zt.zeros(2, 4, 4))
    with pytest.raises(RuntimeError, match=r"key_padding_mask of shape \(3, 4\).*got \(4, 3\)"):
        m(x, x, x, key_padding_mask=zt.zeros(4, 3, dtype=zt.bool))
    with pytest.raises(TypeError, match="only bool and floating attn_mask.*int64"):
        m(x, x, x, attn_mask=zt.zeros(4, 4, dtype=zt.int64))
    with pytest.raises(RuntimeError, match="3-D .* or 2-D"):
        m(x, x[0], x)
    with pytest.raises(RuntimeError, match="same batch size"):
        m(x, zt.randn(4, 2, 8), zt.randn(4, 2, 8))


# --------------------------------------------------------------------------------------------- encoder layer
def run_encoder_layer(layer_kw, *, train=False, seed=0, **forward_kw):
    torch.manual_seed(seed)
    t = torch.nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=16, **layer_kw).double()
    z = load_from(nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=16, **layer_kw), t)
    assert list(z.state_dict()) == list(t.state_dict())
    t.train(train)
    z.train(train)
    bf = layer_kw.get("batch_first", False)
    tx, zx = leaf_pair(np.random.default_rng(seed).standard_normal((N, L, E) if bf else (L, N, E)))
    t_kw = {k: as_pair(v)[0] for k, v in forward_kw.items()}
    z_kw = {k: as_pair(v)[1] for k, v in forward_kw.items()}
    t_out, z_out = t(tx, **t_kw), z(zx, **z_kw)
    compare("output", z_out, t_out, **TOL)
    w = np.random.default_rng(seed + 1).uniform(0.5, 1.5, size=tuple(t_out.shape))
    (t_out * torch.tensor(w)).sum().backward()
    (z_out * zt.tensor(w)).sum().backward()
    check_grads(t, z, [tx], [zx])


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_encoder_layer_eval(norm_first, activation, batch_first):
    kpm = np.zeros((N, L), dtype=bool)
    kpm[1, 2:] = True
    run_encoder_layer(dict(norm_first=norm_first, activation=activation, batch_first=batch_first),
                      src_mask=np.triu(np.ones((L, L), dtype=bool), 1), src_key_padding_mask=kpm)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_train_without_dropout(norm_first):
    run_encoder_layer(dict(norm_first=norm_first, dropout=0.0), train=True)
    run_encoder_layer(dict(norm_first=norm_first, dropout=0.0), train=True,
                      src_mask=np.random.default_rng(2).standard_normal((L, L)))


def test_encoder_layer_callable_activation_and_causal():
    run_encoder_layer(dict(activation=lambda x: x.tanh() if isinstance(x, zt.Tensor) else torch.tanh(x)))
    run_encoder_layer({}, src_mask=np.triu(np.ones((L, L), dtype=bool), 1), is_causal=True)


def test_encoder_layer_no_bias_and_dropout_in_training():
    torch.manual_seed(0)
    t = torch.nn.TransformerEncoderLayer(E, HEADS, 16, bias=False)
    z = nn.TransformerEncoderLayer(E, HEADS, 16, bias=False)
    assert list(z.state_dict()) == list(t.state_dict())
    x = zt.randn(L, N, E)
    assert not np.allclose(z(x).numpy(), z(x).numpy())  # dropout=0.1 in training
    z.eval()
    np.testing.assert_array_equal(z(x).numpy(), z(x).numpy())


def test_encoder_layer_errors():
    with pytest.raises(ValueError, match="'tanh'"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(ValueError, match=r"embed_dim \(8\) must be divisible by num_heads \(3\)"):
        nn.TransformerEncoderLayer(8, 3)


def test_transformer_encoder():
    torch.manual_seed(0)
    t_layer = torch.nn.TransformerEncoderLayer(E, HEADS, 16, dropout=0.0, norm_first=True)
    t = torch.nn.TransformerEncoder(t_layer, 2, norm=torch.nn.LayerNorm(E), enable_nested_tensor=False)
    t = t.double()
    z_layer = nn.TransformerEncoderLayer(E, HEADS, 16, dropout=0.0, norm_first=True)
    z = load_from(nn.TransformerEncoder(z_layer, 2, norm=nn.LayerNorm(E)), t)
    assert list(z.state_dict()) == list(t.state_dict())
    assert z.layers[0].linear1.weight is not z.layers[1].linear1.weight
    kpm = np.zeros((N, L), dtype=bool)
    kpm[0, 3] = True
    x = np.random.default_rng(0).standard_normal((L, N, E))
    tx, zx = leaf_pair(x)
    causal = np.triu(np.ones((L, L), bool), 1)
    t_out = t(tx, mask=torch.tensor(causal), src_key_padding_mask=torch.tensor(kpm))
    z_out = z(zx, mask=zt.tensor(causal), src_key_padding_mask=zt.tensor(kpm))
    compare("output", z_out, t_out, **TOL)
    t_out.sum().backward()
    z_out.sum().backward()
    check_grads(t, z, [tx], [zx])


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_decoder_matches_pytorch(norm_first):
    import warnings

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note about nested tensors with norm_first
        tm = torch.nn.Transformer(16, 2, 2, 2, 32, dropout=0.0, batch_first=True, norm_first=norm_first)
    zm = zt.nn.Transformer(16, 2, 2, 2, 32, dropout=0.0, batch_first=True, norm_first=norm_first)
    assert list(zm.state_dict()) == list(tm.state_dict())
    zm.load_state_dict(tm.state_dict())
    rng = np.random.default_rng(0)
    src, tgt = rng.standard_normal((2, 5, 16)), rng.standard_normal((2, 4, 16))
    pad = np.array([[False] * 5, [False, False, False, True, True]])
    helper_test_op([], lambda s, t, p: tm(s, t, tgt_mask=torch.nn.Transformer.generate_square_subsequent_mask(4),
                                          src_key_padding_mask=p, memory_key_padding_mask=p),
                   lambda s, t, p: zm(s, t, tgt_mask=zt.nn.Transformer.generate_square_subsequent_mask(4),
                                      src_key_padding_mask=p, memory_key_padding_mask=p),
                   values=[src, tgt, pad], atol=1e-5, grad_atol=1e-4)
