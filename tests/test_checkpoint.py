"""zigtensor.utils.checkpoint: the same loss and gradients as without it (dropout's masks replayed), for modules,
plain functions over closed-over parameters, inputs that need no gradient, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

import zigtensor as zt
import zigtensor.nn as nn
from zigtensor.utils.checkpoint import checkpoint


def _run(model, x, use_checkpoint: bool):
    zt.manual_seed(5)  # the same dropout draws on both runs
    for p in model.parameters():
        p.grad = None
    h = x
    for block in model:
        h = checkpoint(block, h) if use_checkpoint else block(h)
    loss = (h * h).mean()
    loss.backward()
    return float(loss), [p.grad.numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("input_grad", [True, False])
def test_checkpointed_blocks_give_the_same_loss_and_gradients(input_grad):
    zt.manual_seed(0)
    model = nn.Sequential(*[nn.TransformerEncoderLayer(16, 2, 32, dropout=0.2, batch_first=True) for _ in range(2)])
    model.train()
    x = zt.randn(3, 5, 16, requires_grad=input_grad)
    plain_loss, plain_grads = _run(model, x, False)
    plain_x = x.grad.numpy().copy() if input_grad else None
    x.grad = None
    ck_loss, ck_grads = _run(model, x, True)
    assert ck_loss == plain_loss
    for a, b in zip(plain_grads, ck_grads):
        np.testing.assert_array_equal(a, b)
    if input_grad:
        np.testing.assert_array_equal(x.grad.numpy(), plain_x)


def test_a_plain_function_over_closed_over_parameters():
    w = zt.randn(4, 4, requires_grad=True)
    x = zt.randn(2, 4, requires_grad=True)
    (x @ w).tanh().sum().backward()
    want_w, want_x = w.grad.numpy().copy(), x.grad.numpy().copy()
    w.grad = x.grad = None
    checkpoint(lambda a, scale: (a @ w).tanh() * scale, x, 1.0).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), want_w, rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), want_x, rtol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="give fn at least one Tensor argument"):
        checkpoint(lambda a: a, 3)
    with pytest.raises(TypeError, match="fn must return one Tensor, got tuple"):
        checkpoint(lambda a: (a, a), zt.ones(2, requires_grad=True))
    w = zt.ones(2, requires_grad=True)
    y = checkpoint(lambda a: a * a, w).sum()
    with pytest.raises(RuntimeError, match="second derivatives .* through a checkpoint are not supported"):
        zt.autograd.grad(y, w, create_graph=True)
