"""zigtensor.nn.functional against torch.nn.functional: activations, softmax, dropout, linear, norms,
embedding and scaled dot-product attention."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import helper_test_op, torch

import zigtensor as zt
import zigtensor.nn.functional as F

TF = torch.nn.functional


# --------------------------------------------------------------------------------------------- activations
@pytest.mark.parametrize("name", ["softplus", "elu", "selu", "mish", "relu6", "hardsigmoid", "hardswish",
                                  "softsign", "logsigmoid"])
def test_more_activations(name):
    t, z = getattr(TF, name), getattr(F, name)
    helper_test_op([(3, 4)], t, z)
    helper_test_op([(3, 40)], t, z, low=-8, high=8)  # both sides of hardswish's and hardsigmoid's knees
    helper_test_op([(3, 40)], t, z, low=-100, high=100)  # exp overflows in a discarded branch: no nan
    helper_test_op([(0, 4)], t, z)
    # NOTE: PyTorch's hardsigmoid/hardswish gradients use 1/6 rounded to float32 (1.0f / 6.0f) even in float64:
    # 3e-8 relative off the exact slope these compose
    loose = name in ("hardsigmoid", "hardswish")
    helper_test_op([(2, 3, 4)], t, z, dtype=zt.float64, atol=1e-12, rtol=1e-10, grad_atol=1e-12,
                   grad_rtol=1e-7 if loose else 1e-10)


@pytest.mark.parametrize("make", [
    lambda nn: nn.Softplus(beta=2.0, threshold=5.0), lambda nn: nn.ELU(alpha=0.5), lambda nn: nn.SELU(),
    lambda nn: nn.Mish(), lambda nn: nn.ReLU6(), lambda nn: nn.Hardsigmoid(), lambda nn: nn.Hardswish(),
    lambda nn: nn.Softsign(), lambda nn: nn.LogSigmoid(),
])
def test_more_activation_modules(make):
    helper_test_op([(4, 10)], make(torch.nn), make(zt.nn), low=-6, high=6)
    assert repr(make(zt.nn)) == repr(make(torch.nn))


@pytest.mark.parametrize("name", ["relu", "silu", "sigmoid", "tanh", "gelu"])
def test_activation(name):
    t, z = getattr(TF, name), getattr(F, name)
    helper_test_op([(3, 4)], t, z)
    helper_test_op([(2, 3, 4)], t, z, layout="T")
    helper_test_op([(3, 4)], t, z, layout="sliced")
    helper_test_op([(0, 4)], t, z)
    helper_test_op([()], t, z)
    helper_test_op([(3, 4)], t, z, low=-20, high=20)
    helper_test_op([(3, 4)], t, z, dtype=zt.float64, atol=1e-12, rtol=1e-10, grad_atol=1e-12, grad_rtol=1e-10)


def test_gelu_tanh():
    helper_test_op([(3, 4)], lambda x: TF.gelu(x, approximate="tanh"),
                   lambda x: F.gelu(x, approximate="tanh"))
    helper_test_op([(2, 3, 4)], lambda x: TF.gelu(x, approximate="tanh"),
                   lambda x: F.gelu(x, approximate="tanh"),
                   layout="T")
    helper_test_op([()], lambda x: TF.gelu(x, approximate="tanh"), lambda x: F.gelu(x, approximate="tanh"))
    helper_test_op([(3, 4)], lambda x: TF.gelu(x, approximate="tanh"),
                   lambda x: F.gelu(x, approximate="tanh"),
                   low=-20, high=20)
    with pytest.raises(ValueError, match="gelu: approximate must be"):
        F.gelu(zt.ones(2), approximate="fast")


def test_leaky_relu():
    helper_test_op([(3, 4)], TF.leaky_relu, F.leaky_relu)
    helper_test_op([(3, 4)], lambda x: TF.leaky_relu(x, 0.2), lambda x: F.leaky_relu(x, 0.2))


@pytest.mark.parametrize("dtype", [zt.float16, zt.bfloat16], ids=lambda d: d.name)
def test_activations_16bit(dtype):
    tol = dict(dtype=dtype, forward_only=True, atol=2e-2, rtol=2e-2)
    helper_test_op([(4, 8)], TF.gelu, F.gelu, **tol)
    helper_test_op([(4, 8)], TF.silu, F.silu, **tol)
    helper_test_op([(4, 8)], TF.sigmoid, F.sigmoid, **tol)
    helper_test_op([(4, 8)], lambda x: TF.log_softmax(x, -1), lambda x: F.log_softmax(x, -1), **tol)
    helper_test_op([(4, 8)], lambda x: TF.layer_norm(x, (8,)), lambda x: F.layer_norm(x, (8,)), atol=5e-2,
                   rtol=5e-2, dtype=dtype, forward_only=True)


# --------------------------------------------------------------------------------------------- softmax
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1, -2])
def test_softmax(name, dim):
    t, z = getattr(TF, name), getattr(F, name)
    helper_test_op([(2, 3, 4)], lambda x: t(x, dim), lambda x: z(x, dim))
    helper_test_op([(2, 3, 4)], lambda x: t(x, dim=dim), lambda x: z(x, dim=dim), layout="T")
    helper_test_op([(2, 3, 4)], lambda x: t(x, dim), lambda x: z(x, dim), layout="sliced")
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(dim), low=-100,
                   high=100)  # stable for large inputs


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_special(name):
    t, z = getattr(TF, name), getattr(F, name)
    helper_test_op([(0, 4)], lambda x: t(x, -1), lambda x: z(x, -1))
    helper_test_op([(0, 4)], lambda x: t(x, 0), lambda x: z(x, 0))
    helper_test_op([()], lambda x: t(x, 0), lambda x: z(x, 0))
    helper_test_op([(3, 4)], lambda x: t(x, 1, dtype=torch.float64), lambda x: z(x, 1, dtype=zt.float64))
    helper_test_op([(3, 1)], lambda x: t(x, 1), lambda x: z(x, 1))
    helper_test_op([(3, 4)], lambda x: getattr(torch, name)(x, 1), lambda x: getattr(zt, name)(x, 1))
    helper_test_op(None, lambda x: t(x, 1), lambda x: z(x, 1), values=[np.array([[0.0, -np.inf, 1.0]])])


# --------------------------------------------------------------------------------------------- dropout
def test_dropout_statistics_and_gradient():
    zt.manual_seed(0)
    x = zt.ones(200, 100, requires_grad=True)
    y = F.dropout(x, p=0.3)
    kept = y.numpy() != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.7, rtol=1e-6)


def test_dropout_identity_and_extremes():
    x = zt.randn(4, 5, requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).numpy(), np.zeros((4, 5)))
    assert F.dropout(zt.ones(0, 3), 0.5).shape == (0, 3)
    with pytest.raises(ValueError, match="dropout: probability has to be between 0 and 1, but got 1.5"):
        F.dropout(x, 1.5)


def test_dropout_seeded():
    x = zt.ones(50)
    zt.manual_seed(5)
    a = F.dropout(x, 0.5)
    zt.manual_seed(5)
    b = F.dropout(x, 0.5)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert (F.dropout(x, 0.5, training=True).dtype is zt.float32)


def test_dropout_keeps_dtype():
    assert F.dropout(zt.ones(8, dtype=zt.float16), 0.5).dtype is zt.float16
    assert F.dropout(zt.ones(8, dtype=zt.float64), 0.5).dtype is zt.float64
    assert F.dropout(zt.ones(8, dtype=zt.bfloat16), 0.5).dtype is zt.bfloat16


def test_dropout_rejects_integer_input_as_torch_does():
    with pytest.raises(RuntimeError, match="dropout: expected a floating point input, got int64"):
        F.dropout(zt.arange(4), 0.5)
    assert F.dropout(zt.arange(4), 0.5, training=False).dtype is zt.int64  # identity when not training


@pytest.mark.parametrize("p", [0.1, 0.9])
def test_dropout_mask_rate_odd_size_and_strided_input(p):
    """An odd element count (the CPU mask takes two 32-bit draws per 64-bit word) and a transposed view."""
    zt.manual_seed(1)
    x = zt.randn(301, 333).mT
    y = F.dropout(x, p)
    kept = y.numpy() != 0
    assert abs(kept.mean() - (1 - p)) < 0.01
    np.testing.assert_allclose(y.numpy()[kept], x.numpy()[kept] / (1 - p), rtol=1e-6)


def test_dropout_double_backward_applies_the_same_mask():
    zt.manual_seed(2)
    x = zt.randn(40, 30, requires_grad=True)
    y = F.dropout(x, 0.4)
    (gx,) = zt.autograd.grad((y * y).sum(), x, create_graph=True)
    kept = (y.numpy() != 0)
    np.testing.assert_allclose(gx.numpy(), 2 * x.numpy() * kept / 0.6**2, rtol=1e-5)
    gx.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * kept / 0.6**2, rtol=1e-5)


# --------------------------------------------------------------------------------------------- linear
def _torch_layer_norm_linear(x, lw, lb, w, b=None):
    return TF.linear(TF.layer_norm(x, x.shape[-1:], lw, lb), w, b)


@pytest.mark.parametrize("dtype", [zt.float32, zt.float64])
def test_layer_norm_linear_folds_the_affine_and_matches_torch(dtype):
    """LayerNorm feeding a Linear as one op (the affine folded into the product), against the two torch ops,
    values and every gradient: with and without either bias, 2-d and 3-d inputs, large enough to be split."""
    fn = F.layer_norm_linear
    helper_test_op([(2, 5, 8), (8,), (8,), (6, 8), (6,)], _torch_layer_norm_linear, fn, dtype=dtype)
    helper_test_op([(7, 8), (8,), (8,), (6, 8)], _torch_layer_norm_linear, lambda *a: fn(*a, None), dtype=dtype)
    helper_test_op([(7, 8), (8,), (6, 8), (6,)], lambda x, lw, w, b: _torch_layer_norm_linear(x, lw, None, w, b),
                   lambda x, lw, w, b: fn(x, lw, None, w, b), dtype=dtype)
    helper_test_op([(4, 600, 64), (64,), (64,), (96, 64), (96,)], _torch_layer_norm_linear, fn, dtype=dtype)


def test_layer_norm_linear_is_one_op_on_cpu_and_two_where_it_cannot_fold(zt_device):
    x, lw, lb, w, b = (zt.randn(*s, device=zt_device, requires_grad=True) for s in ((3, 8), (8,), (8,), (6, 8), (6,)))
    expect = "LayerNormLinear" if zt_device.type == "cpu" else "Linear"
    assert type(F.layer_norm_linear(x, lw, lb, w, b).grad_fn).__name__ == expect
    with zt.amp.autocast(zt_device.type, dtype=zt.bfloat16):
        assert type(F.layer_norm_linear(x, lw, lb, w, b).grad_fn).__name__ != "LayerNormLinear"


def test_layer_norm_linear_gradients_of_gradients_match_torch():
    """create_graph through the folded op takes the composed ops, so second derivatives agree with torch's."""
    rng = np.random.default_rng(9)
    arrays = [rng.standard_normal(s) for s in ((5, 8), (8,), (8,), (6, 8), (6,))]
    z = [zt.tensor(a, requires_grad=True) for a in arrays]
    t = [torch.tensor(a, requires_grad=True) for a in arrays]
    (gz,) = zt.autograd.grad((F.layer_norm_linear(*z) ** 2).sum(), z[0], create_graph=True)
    (gt,) = torch.autograd.grad((_torch_layer_norm_linear(*t) ** 2).sum(), t[0], create_graph=True)
    (gz * gz).sum().backward()
    (gt * gt).sum().backward()
    for a, b in zip(z, t):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [zt.float32, zt.float64])
def test_linear_add_matches_torch(dtype):
    """residual + linear(x, w, b) as one op (the residual added in the product), values and gradients, with
    and without a bias; a residual that broadcasts takes the two ops."""
    fn = F.linear_add
    helper_test_op([(2, 5, 8), (6, 8), (6,), (2, 5, 6)], lambda x, w, b, r: r + TF.linear(x, w, b), fn, dtype=dtype)
    helper_test_op([(7, 8), (6, 8), (7, 6)], lambda x, w, r: r + TF.linear(x, w), lambda x, w, r: fn(x, w, None, r),
                   dtype=dtype)
    helper_test_op([(4, 600, 64), (96, 64), (96,), (4, 600, 96)], lambda x, w, b, r: r + TF.linear(x, w, b), fn,
                   dtype=dtype)
    helper_test_op([(7, 8), (6, 8), (6,), (6,)], lambda x, w, b, r: r + TF.linear(x, w, b), fn, dtype=dtype)


def test_linear():
    helper_test_op([(3, 4), (5, 4), (5,)], TF.linear, F.linear)
    helper_test_op([(3, 4), (5, 4)], TF.linear, F.linear)
    helper_test_op([(2, 3, 4), (5, 4), (5,)], TF.linear, F.linear)
    helper_test_op([(4,), (5, 4), (5,)], TF.linear, F.linear)
    helper_test_op([(3, 4), (5, 4), (5,)], TF.linear, F.linear, layout="T")
    helper_test_op([(3, 4), (5, 4), (5,)], TF.linear, F.linear, layout="sliced")
    helper_test_op([(0, 4), (5, 4), (5,)], TF.linear, F.linear)
    helper_test_op([(3, 4), (5, 4), ()], TF.linear, F.linear)
    with pytest.raises(RuntimeError, match=r"linear: .*\(3, 4\).*\(5, 3\)"):
        F.linear(zt.ones(3, 4), zt.ones(5, 3))


# --------------------------------------------------------------------------------------------- norms
def test_layer_norm():
    helper_test_op([(3, 8), (8,), (8,)], lambda x, w, b: TF.layer_norm(x, (8,), w, b),
                   lambda x, w, b: F.layer_norm(x, (8,), w, b))
    helper_test_op([(3, 8)], lambda x: TF.layer_norm(x, (8,)), lambda x: F.layer_norm(x, 8))
    helper_test_op([(2, 3, 4), (3, 4), (3, 4)], lambda x, w, b: TF.layer_norm(x, (3, 4), w, b, 1e-3),
                   lambda x, w, b: F.layer_norm(x, (3, 4), w, b, 1e-3))
    helper_test_op([(2, 3, 4), (4,)], lambda x, w: TF.layer_norm(x, (4,), w),
                   lambda x, w: F.layer_norm(x, (4,), w),
                   layout="T")
    helper_test_op([(3, 8), (8,), (8,)], lambda x, w, b: TF.layer_norm(x, (8,), w, b),
                   lambda x, w, b: F.layer_norm(x, (8,), w, b), layout="sliced")
    helper_test_op([(0, 8), (8,), (8,)], lambda x, w, b: TF.layer_norm(x, (8,), w, b),
                   lambda x, w, b: F.layer_norm(x, (8,), w, b))
    helper_test_op([(3, 8)], lambda x: TF.layer_norm(x, (8,)), lambda x: F.layer_norm(x, (8,)), low=-100,
                   high=100)
    with pytest.raises(RuntimeError, match=r"layer_norm: normalized_shape \[5\] .*\(3, 8\)"):
        F.layer_norm(zt.ones(3, 8), (5,))
    with pytest.raises(RuntimeError, match=r"layer_norm: expected weight of shape \(8,\), got \(4,\)"):
        F.layer_norm(zt.ones(3, 8), (8,), zt.ones(4))


def test_rms_norm():
    helper_test_op([(3, 8), (8,)], lambda x, w: TF.rms_norm(x, (8,), w), lambda x, w: F.rms_norm(x, (8,), w))
    helper_test_op([(3, 8)], lambda x: TF.rms_norm(x, (8,)), lambda x: F.rms_norm(x, 8))
    helper_test_op([(2, 3, 4), (3, 4)], lambda x, w: TF.rms_norm(x, (3, 4), w, 1e-6),
                   lambda x, w: F.rms_norm(x, (3, 4), w, 1e-6))
    helper_test_op([(2, 3, 4), (4,)], lambda x, w: TF.rms_norm(x, (4,), w),
                   lambda x, w: F.rms_norm(x, (4,), w),
                   layout="T")
    helper_test_op([(3, 8), (8,)], lambda x, w: TF.rms_norm(x, (8,), w), lambda x, w: F.rms_norm(x, (8,), w),
                   layout="sliced")
    helper_test_op([(0, 8), (8,)], lambda x, w: TF.rms_norm(x, (8,), w), lambda x, w: F.rms_norm(x, (8,), w))
    helper_test_op([(3, 8)], lambda x: TF.rms_norm(x, (8,)), lambda x: F.rms_norm(x, (8,)), dtype=zt.float64,
                   atol=1e-12, rtol=1e-10, grad_atol=1e-12, grad_rtol=1e-10)


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 5), (2, 3, 2, 2)], ids=str)
def test_batch_norm_training(shape):
    def run(mod, fn):
        def f(x, w, b):
            rm, rv = mod.zeros(3, dtype=x.dtype), mod.ones(3, dtype=x.dtype)
            return fn(x, rm, rv, w, b, training=True, momentum=0.2), rm, rv

        return f

    helper_test_op([shape, (3,), (3,)], run(torch, TF.batch_norm), run(zt, F.batch_norm))
    helper_test_op([shape, (3,), (3,)], run(torch, TF.batch_norm), run(zt, F.batch_norm), layout="T")
    helper_test_op([shape], lambda x: TF.batch_norm(x, None, None, training=True),
                   lambda x: F.batch_norm(x, None, None, training=True))


def test_batch_norm_eval():
    helper_test_op([(4, 3, 5), (3,), (3,), (3,), (3,)],
                   lambda x, m, v, w, b: TF.batch_norm(x, m.detach(), v.detach().abs() + 0.5, w, b),
                   lambda x, m, v, w, b: F.batch_norm(x, m.detach(), v.detach().abs() + 0.5, w, b))
    helper_test_op([(4, 3), (3,), (3,)],
                   lambda x, m, v: TF.batch_norm(x, m.detach(), v.detach() + 3, eps=1e-3),
                   lambda x, m, v: F.batch_norm(x, m.detach(), v.detach() + 3, eps=1e-3), layout="T")
    with pytest.raises(RuntimeError, match=r"batch_norm: expected weight of shape \(3,\), got \(4,\)"):
        F.batch_norm(zt.ones(2, 3), zt.zeros(3), zt.ones(3), weight=zt.ones(4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(zt.ones(1, 3), None, None, training=True)


# --------------------------------------------------------------------------------------------- embedding
IDX = np.array([[0, 2, 4], [4, 1, 0]])


@pytest.mark.parametrize("padding_idx", [None, 0, 4, -1])
def test_embedding(padding_idx):
    helper_test_op([(5, 3)], lambda w: TF.embedding(torch.tensor(IDX), w, padding_idx),
                   lambda w: F.embedding(zt.tensor(IDX), w, padding_idx))
    helper_test_op([(5, 3)], lambda w: TF.embedding(torch.tensor(IDX), w, padding_idx=padding_idx),
                   lambda w: F.embedding(zt.tensor(IDX), w, padding_idx=padding_idx), layout="T")
    helper_test_op([(5, 3)], lambda w: TF.embedding(torch.tensor(IDX[0]), w, padding_idx),
                   lambda w: F.embedding(zt.tensor(IDX[0]), w, padding_idx), layout="sliced")
    helper_test_op([(5, 3)], lambda w: TF.embedding(torch.tensor(2), w, padding_idx),
                   lambda w: F.embedding(zt.tensor(2), w, padding_idx))
    helper_test_op([(5, 3)], lambda w: TF.embedding(torch.zeros(0, 2, dtype=torch.int64), w, padding_idx),
                   lambda w: F.embedding(zt.zeros(0, 2, dtype=zt.int64), w, padding_idx))


def test_embedding_errors():
    with pytest.raises(IndexError, match="embedding: index 5 is out of range for 5 embeddings"):
        F.embedding(zt.tensor([5]), zt.ones(5, 3))
    with pytest.raises(RuntimeError, match="embedding: expected integer indices"):
        F.embedding(zt.tensor([1.0]), zt.ones(5, 3))
    with pytest.raises(ValueError, match="padding_idx 7"):
        F.embedding(zt.tensor([1]), zt.ones(5, 3), padding_idx=7)


# --------------------------------------------------------------------------------------------- attention
def _sdpa(mod, fn, **kw):
    return lambda q, k, v: fn(q, k, v, **kw)


SDPA_SHAPES = [
    ((2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6)),
    ((4, 8), (5, 8), (5, 8)),
    ((2, 4, 8), (2, 4, 8), (2, 4, 8)),
    ((2, 3, 0, 8), (2, 3, 5, 8), (2, 3, 5, 8)),
]


@pytest.mark.parametrize("shapes", SDPA_SHAPES, ids=str)
def test_sdpa(shapes):
    t, z = TF.scaled_dot_product_attention, F.scaled_dot_product_attention
    helper_test_op(list(shapes), t, z)
    helper_test_op(list(shapes), lambda q, k, v: t(q, k, v, scale=0.3), lambda q, k, v: z(q, k, v, scale=0.3),
                   layout="T")
    helper_test_op(list(shapes), lambda q, k, v: t(q, k, v, is_causal=True),
                   lambda q, k, v: z(q, k, v, is_causal=True),
                   layout="sliced")


def test_sdpa_masks():
    t, z = TF.scaled_dot_product_attention, F.scaled_dot_product_attention
    rng = np.random.default_rng(3)
    bool_mask = rng.random((4, 5)) > 0.4
    bool_mask[:, 0] = True  # every query may attend somewhere
    float_mask = rng.uniform(-1, 1, size=(3, 4, 5))
    s = [(2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8)]
    helper_test_op(s, lambda q, k, v: t(q, k, v, attn_mask=torch.tensor(bool_mask)),
                   lambda q, k, v: z(q, k, v, attn_mask=zt.tensor(bool_mask)))
    helper_test_op(s, lambda q, k, v: t(q, k, v, attn_mask=torch.tensor(float_mask, dtype=torch.float32)),
                   lambda q, k, v: z(q, k, v, attn_mask=zt.tensor(float_mask, dtype=zt.float32)))
    # a float mask that is itself learned gets a gradient
    helper_test_op(s + [(4, 5)], lambda q, k, v, m: t(q, k, v, attn_mask=m),
                   lambda q, k, v, m: z(q, k, v, attn_mask=m))
    helper_test_op(s, lambda q, k, v: t(q, k, v, attn_mask=torch.tensor(bool_mask[:1])),
                   lambda q, k, v: z(q, k, v, attn_mask=zt.tensor(bool_mask[:1])))  # broadcast (1, S)
    blocked = bool_mask.copy()
    blocked[1] = False  # a query that may attend nowhere: zeros, as torch's safe softmax
    helper_test_op(s, lambda q, k, v: t(q, k, v, attn_mask=torch.tensor(blocked)),
                   lambda q, k, v: z(q, k, v, attn_mask=zt.tensor(blocked)))
    neg = np.where(blocked, 0.0, -np.inf)
    helper_test_op(s, lambda q, k, v: t(q, k, v, attn_mask=torch.tensor(neg, dtype=torch.float32)),
                   lambda q, k, v: z(q, k, v, attn_mask=zt.tensor(neg, dtype=zt.float32)))
    helper_test_op([(2, 3, 5, 8)] * 3, lambda q, k, v: t(q, k, v, is_causal=True),
                   lambda q, k, v: z(q, k, v, is_causal=True))


def test_sdpa_gqa():
    t, z = TF.scaled_dot_product_attention, F.scaled_dot_product_attention
    helper_test_op([(2, 6, 4, 8), (2, 2, 5, 8), (2, 2, 5, 8)], lambda q, k, v: t(q, k, v, enable_gqa=True),
                   lambda q, k, v: z(q, k, v, enable_gqa=True))
    helper_test_op([(6, 4, 8), (3, 4, 8), (3, 4, 8)],
                   lambda q, k, v: t(q, k, v, is_causal=True, enable_gqa=True),
                   lambda q, k, v: z(q, k, v, is_causal=True, enable_gqa=True))
    with pytest.raises(RuntimeError, match="6 query heads are not a multiple of 4"):
        z(zt.ones(6, 2, 8), zt.ones(4, 2, 8), zt.ones(4, 2, 8), enable_gqa=True)


def test_sdpa_dropout():
    q, k, v = (zt.randn(2, 4, 8, requires_grad=True) for _ in range(3))
    zt.manual_seed(11)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.4)
    zt.manual_seed(11)
    weights = F.dropout(F.softmax(q @ k.mT / np.sqrt(8), dim=-1), 0.4)
    np.testing.assert_allclose(out.numpy(), (weights @ v).numpy(), rtol=1e-5, atol=1e-6)
    plain = F.scaled_dot_product_attention(q, k, v)
    assert not np.allclose(out.numpy(), plain.numpy())
    out.sum().backward()
    assert q.grad.shape == q.shape and k.grad.shape == k.shape and v.grad.shape == v.shape


def test_sdpa_errors():
    z = F.scaled_dot_product_attention
    with pytest.raises(RuntimeError,
                       match=r"scaled_dot_product_attention: .*query \(2, 4, 8\), key \(2, 5, 7\)"):
        z(zt.ones(2, 4, 8), zt.ones(2, 5, 7), zt.ones(2, 5, 7))
    with pytest.raises(RuntimeError, match="either attn_mask or is_causal"):
        z(zt.ones(4, 8), zt.ones(4, 8), zt.ones(4, 8), attn_mask=zt.ones(4, 4), is_causal=True)
    with pytest.raises(TypeError, match="attn_mask must be bool or float"):
        z(zt.ones(4, 8), zt.ones(4, 8), zt.ones(4, 8), attn_mask=zt.ones(4, 4, dtype=zt.int64))
    with pytest.raises(TypeError, match="attn_mask must have the query's dtype .*float32, got .*float64"):
        z(zt.ones(4, 8), zt.ones(4, 8), zt.ones(4, 8), attn_mask=zt.ones(4, 4, dtype=zt.float64))
