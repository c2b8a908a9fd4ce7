"""float64 finite differences against autograd for every differentiable op (gradcheck), and second-order
gradients for a representative set (gradgradcheck)."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import gradcheck, gradgradcheck

import zigtensor as zt
import zigtensor.nn.functional as F

POS = dict(low=0.5, high=2.0)
# NOTE: functions, so each case makes its indices on the device it runs on (not the CPU, at import)
def IDX():
    return zt.tensor([[0, 2, 1], [1, 0, 0]])


def SEL():
    return zt.tensor([2, 0, 2])


CASES = [
    # arithmetic, with broadcasting and Python scalars
    ("add", lambda x, y: x + y, [(2, 3), (3,)], {}),
    ("sub", lambda x, y: x - y, [(2, 1), (1, 3)], {}),
    ("mul", lambda x, y: x * y, [(2, 3), (2, 3)], {}),
    ("div", lambda x, y: x / y, [(2, 3), (3,)], POS),
    ("rdiv", lambda x: 2 / x, [(2, 3)], POS),
    ("pow_scalar", lambda x: x ** 3, [(2, 3)], {}),
    ("pow_frac", lambda x: x ** 1.5, [(2, 3)], POS),
    ("pow_tensor", lambda x, y: x ** y, [(2, 3), (2, 3)], POS),
    ("rpow", lambda x: 1.7 ** x, [(2, 3)], {}),
    ("remainder", lambda x, y: x % y, [(2, 3), (2, 3)], POS),
    ("neg", lambda x: -x, [(2, 3)], {}),
    # unary math
    ("abs", lambda x: x.abs(), [(2, 3)], {}),
    ("exp", lambda x: x.exp(), [(2, 3)], {}),
    ("log", lambda x: x.log(), [(2, 3)], POS),
    ("log1p", lambda x: x.log1p(), [(2, 3)], dict(low=-0.5, high=2.0)),
    ("sqrt", lambda x: x.sqrt(), [(2, 3)], POS),
    ("rsqrt", lambda x: x.rsqrt(), [(2, 3)], POS),
    ("sin", lambda x: x.sin(), [(2, 3)], {}),
    ("cos", lambda x: x.cos(), [(2, 3)], {}),
    ("tanh", lambda x: x.tanh(), [(2, 3)], {}),
    ("sigmoid", lambda x: x.sigmoid(), [(2, 3)], {}),
    ("relu", lambda x: x.relu(), [(2, 3)], {}),
    ("sign", lambda x: x.sign() * x, [(2, 3)], {}),
    ("erf", lambda x: x.erf(), [(2, 3)], {}),
    ("clamp", lambda x: x.clamp(-0.5, 0.7), [(2, 3)], {}),
    ("clamp_tensor", lambda x, lo: x.clamp(min=lo), [(2, 3), (3,)], {}),
    ("maximum", lambda x, y: zt.maximum(x, y), [(2, 3), (3,)], {}),
    ("minimum", lambda x, y: zt.minimum(x, y), [(2, 3), (2, 3)], {}),
    ("where", lambda c, x, y: zt.where(c > 0, x, y), [(2, 3), (2, 3), (3,)], {}),
    # reductions
    ("sum", lambda x: x.sum((0, -1)), [(2, 3, 2)], {}),
    ("mean", lambda x: x.mean(1, keepdim=True), [(2, 3)], {}),
    ("var", lambda x: x.var(0), [(3, 2)], {}),
    ("std", lambda x: x.std(-1, correction=0), [(2, 3)], {}),
    ("max_dim", lambda x: x.max(1).values, [(2, 3)], {}),
    ("min_dim", lambda x: x.min(0, keepdim=True)[0], [(2, 3)], {}),
    ("max_all", lambda x: x.max(), [(2, 3)], {}),
    ("amax", lambda x: x.amax((0, 1)), [(2, 3, 2)], {}),
    ("amin", lambda x: x.amin(-1), [(2, 3)], {}),
    ("prod", lambda x: x.prod(1), [(2, 3)], {}),
    ("prod_all", lambda x: x.prod(), [(2, 3)], {}),
    ("logsumexp", lambda x: x.logsumexp(-1), [(2, 3)], {}),
    ("cumsum", lambda x: x.cumsum(1), [(2, 3)], {}),
    ("cumprod", lambda x: x.cumprod(1), [(2, 3)], {}),
    # shape
    ("reshape", lambda x: x.reshape(3, 2) * zt.arange(6.0, dtype=zt.float64).reshape(3, 2), [(2, 3)], {}),
    ("view", lambda x: x.view(-1), [(2, 3)], {}),
    ("transpose", lambda x: x.transpose(0, 1), [(2, 3)], {}),
    ("permute", lambda x: x.permute(2, 0, 1), [(2, 3, 2)], {}),
    ("flatten", lambda x: x.flatten(1), [(2, 3, 2)], {}),
    ("unsqueeze", lambda x: x.unsqueeze(1), [(2, 3)], {}),
    ("squeeze", lambda x: x.squeeze(1), [(2, 1, 3)], {}),
    ("expand", lambda x: x.expand(2, 3, 4), [(3, 1)], {}),
    ("repeat", lambda x: x.repeat(2, 1, 2), [(2, 3)], {}),
    ("split", lambda x: x.split(2, 1)[1], [(2, 3)], {}),
    ("chunk", lambda x: x.chunk(2)[0], [(3, 2)], {}),
    ("cat", lambda x, y: zt.cat([x, y, x], 1), [(2, 3), (2, 1)], {}),
    ("stack", lambda x, y: zt.stack([x, y], -1), [(2, 3), (2, 3)], {}),
    ("flip", lambda x: x.flip(0), [(2, 3)], {}),
    ("narrow", lambda x: x.narrow(1, 1, 2), [(2, 3)], {}),
    ("tril", lambda x: x.tril(), [(3, 3)], {}),
    ("triu", lambda x: x.triu(1), [(3, 4)], {}),
    # indexing
    ("getitem_basic", lambda x: x[1:, None, ::2], [(3, 4)], {}),
    ("getitem_int_array", lambda x: x[zt.tensor([0, 2, 2])], [(3, 2)], {}),
    ("getitem_mask", lambda x: x[x > 0], [(3, 4)], {}),
    ("gather", lambda x: x.gather(1, IDX()), [(2, 3)], {}),
    ("scatter_add", lambda x, s: x.scatter_add(0, IDX(), s), [(3, 3), (2, 3)], {}),
    ("scatter_add_smaller_index", lambda x, s: x.scatter_add(1, IDX()[:1, :2], s), [(2, 3), (2, 3)], {}),
    ("index_select", lambda x: x.index_select(0, SEL()), [(3, 2)], {}),
    ("masked_fill", lambda x: x.masked_fill(x > 0.5, 0.0), [(2, 3)], {}),
    # linear algebra
    ("matmul", lambda x, y: x @ y, [(2, 3), (3, 2)], {}),
    ("matmul_batched", lambda x, y: x @ y, [(2, 1, 2, 3), (2, 3, 2)], {}),
    ("matmul_vec", lambda x, y: x @ y, [(3,), (2, 3, 2)], {}),
    # functional
    ("gelu", lambda x: F.gelu(x), [(2, 3)], {}),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), [(2, 3)], {}),
    ("silu", lambda x: F.silu(x), [(2, 3)], {}),
    ("softmax", lambda x: F.softmax(x, -1), [(2, 3)], {}),
    ("log_softmax", lambda x: F.log_softmax(x, 0), [(2, 3)], {}),
    ("linear", lambda x, w, b: F.linear(x, w, b), [(2, 3), (4, 3), (4,)], {}),
    ("layer_norm", lambda x, w, b: F.layer_norm(x, (3,), w, b), [(2, 3), (3,), (3,)], {}),
    ("rms_norm", lambda x, w: F.rms_norm(x, (3,), w), [(2, 3), (3,)], {}),
    ("batch_norm", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [(3, 2, 2), (2,), (2,)],
     {}),
    ("embedding", lambda w: F.embedding(IDX(), w), [(3, 2)], {}),  # padding_idx rows are zeroed on purpose
    ("sdpa", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
     [(2, 3, 2), (2, 3, 2), (2, 3, 2)], {}),
    ("sdpa_mask", lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
     [(3, 2), (2, 2), (2, 2), (3, 2)], {}),
]


@pytest.mark.parametrize("name,f,shapes,kw", CASES, ids=[c[0] for c in CASES])
def test_gradcheck(name, f, shapes, kw):
    gradcheck(f, shapes, **kw)


def test_gradcheck_0d_and_empty():
    gradcheck(lambda x, y: (x * y).exp(), [(), ()])
    gradcheck(lambda x, y: x + y.sum(), [(2, 0), ()])


SECOND_ORDER = [
    ("add_mul", lambda x, y: x * y + x, [(2, 3), (3,)], {}),
    ("div", lambda x, y: x / y, [(2, 3), (2, 3)], POS),
    ("pow", lambda x: x ** 3, [(2, 3)], {}),
    ("exp", lambda x: x.exp(), [(2, 3)], {}),
    ("log", lambda x: x.log(), [(2, 3)], POS),
    ("sqrt", lambda x: x.sqrt(), [(2, 3)], POS),
    ("rsqrt", lambda x: x.rsqrt(), [(2, 3)], POS),
    ("sin_cos", lambda x: x.sin() * x.cos(), [(2, 3)], {}),
    ("tanh", lambda x: x.tanh(), [(2, 3)], {}),
    ("sigmoid", lambda x: x.sigmoid(), [(2, 3)], {}),
    ("gelu", lambda x: F.gelu(x), [(2, 3)], {}),
    ("matmul", lambda x, y: x @ y, [(2, 3), (3, 2)], {}),
    ("matmul_square", lambda x: (x @ x).sum(1), [(3, 3)], {}),
    ("softmax", lambda x: F.softmax(x, -1), [(2, 3)], {}),
    ("log_softmax", lambda x: F.log_softmax(x, -1), [(2, 3)], {}),
    ("layer_norm", lambda x, w, b: F.layer_norm(x, (3,), w, b), [(2, 3), (3,), (3,)], {}),
    ("logsumexp", lambda x: x.logsumexp(1), [(2, 3)], {}),
    ("gather", lambda x: (x.gather(1, IDX()) ** 2), [(2, 3)], {}),
    ("getitem", lambda x: x[zt.tensor([0, 0, 1])] ** 2, [(2, 3)], {}),
    ("prod", lambda x: x.prod(1), [(2, 3)], {}),
]


@pytest.mark.parametrize("name,f,shapes,kw", SECOND_ORDER, ids=[c[0] for c in SECOND_ORDER])
def test_gradgradcheck(name, f, shapes, kw):
    gradgradcheck(f, shapes, **kw)


def test_gradcheck_catches_a_wrong_gradient():
    # the checker itself: a function whose backward is deliberately wrong must fail
    class Bad(zt.autograd.Function):
        def forward(self, a):
            return a * 2

        def backward(self, g):
            return g * 3

    with pytest.raises(AssertionError):
        gradcheck(lambda x: Bad.apply(x), [(3,)])
    np.testing.assert_allclose(Bad.apply(zt.ones(2)).numpy(), [2.0, 2.0])
