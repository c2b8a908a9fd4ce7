"""zt.nn.utils.clip_grad_norm_ / clip_grad_value_ against torch.nn.utils, in place on .grad."""

import math

import numpy as np
import pytest
from oracle import helper_test_op, torch

import zigtensor as zt
from zigtensor.nn.utils import clip_grad_norm_, clip_grad_value_, get_total_norm

SHAPES = [(4, 3), (3,), (2, 2, 5)]


def _params(grads=None, dtype=np.float32, seed=0, no_grad_last=True):
    """Matching (zt, torch) parameter lists with gradients; the last parameter has none."""
    rng = np.random.default_rng(seed)
    if grads is None:
        grads = [rng.uniform(-2, 2, s).astype(dtype) for s in SHAPES]
    zs, ts = [], []
    for g in grads:
        z = zt.zeros(*g.shape, dtype=str(g.dtype), requires_grad=True)
        t = torch.zeros(*g.shape, dtype=getattr(torch, str(g.dtype)), requires_grad=True)
        z.grad, t.grad = zt.tensor(g), torch.tensor(g)
        zs.append(z)
        ts.append(t)
    if no_grad_last:
        zs.append(zt.zeros(2, requires_grad=True))
        ts.append(torch.zeros(2, requires_grad=True))
    return zs, ts


def _grads_equal(zs, ts, rtol=1e-6, atol=1e-7):
    for z, t in zip(zs, ts):
        if t.grad is None:
            assert z.grad is None
            continue
        np.testing.assert_allclose(z.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.0, 0.5, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipped, untouched
def test_clip_grad_norm_matches_pytorch(norm_type, max_norm):
    zs, ts = _params()
    got = clip_grad_norm_(zs, max_norm, norm_type=norm_type)
    want = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type=norm_type)
    assert isinstance(got, zt.Tensor) and got.shape == () and got.dtype == zt.float32
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-6)
    _grads_equal(zs, ts)


def test_clipped_total_norm_is_max_norm():
    zs, _ = _params()
    before = clip_grad_norm_(zs, 1.0)
    assert before.item() > 1.0
    after = clip_grad_norm_(zs, 1e9)
    assert after.item() == pytest.approx(1.0, rel=1e-5)


def test_single_tensor_generator_and_float64():
    zs, ts = _params(dtype=np.float64)
    got = clip_grad_norm_(zs[0], 0.1)
    want = torch.nn.utils.clip_grad_norm_(ts[0], 0.1)
    assert got.dtype == zt.float64
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12)
    got = clip_grad_norm_((p for p in zs), 0.2, norm_type=1)
    want = torch.nn.utils.clip_grad_norm_((p for p in ts), 0.2, norm_type=1)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12)
    _grads_equal(zs, ts, rtol=1e-12, atol=0)


def test_float16_gradients():
    zs, ts = _params(dtype=np.float16)
    got, want = clip_grad_norm_(zs, 1.0), torch.nn.utils.clip_grad_norm_(ts, 1.0)
    assert got.dtype == zt.float16
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-3)
    _grads_equal(zs, ts, rtol=1e-3, atol=1e-3)


def test_no_gradients_gives_zero():
    p = zt.ones(3, requires_grad=True)
    total = clip_grad_norm_([p], 1.0)
    assert total.shape == () and total.item() == 0.0 and p.grad is None
    assert get_total_norm([]).item() == 0.0


@pytest.mark.parametrize("bad,norm_type",
                         [(math.nan, 2.0), (math.inf, 2.0), (math.inf, math.inf), (-math.inf, 1.0)])
def test_non_finite_total(bad, norm_type):
    grads = [np.array([1.0, bad, -3.0], np.float32), np.array([0.5, 2.0], np.float32)]
    zs, ts = _params(grads)
    with pytest.raises(RuntimeError, match=f"total norm of order {float(norm_type)} .* is non-finite"):
        clip_grad_norm_(zs, 1.0, norm_type=norm_type, error_if_nonfinite=True)
    np.testing.assert_array_equal(zs[0].grad.numpy(), grads[0])  # untouched
    got = clip_grad_norm_(zs, 1.0, norm_type=norm_type)
    want = torch.nn.utils.clip_grad_norm_(ts, 1.0, norm_type=norm_type)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    for z, t in zip(zs, ts):  # scaled by the non-finite norm anyway: nan and zeros, as PyTorch gives
        if t.grad is not None:
            np.testing.assert_array_equal(z.grad.numpy(), t.grad.numpy())


def test_foreach_is_accepted():
    zs, ts = _params()
    got = clip_grad_norm_(zs, 1.0, foreach=True)
    np.testing.assert_allclose(got.item(), torch.nn.utils.clip_grad_norm_(ts, 1.0).item(), rtol=1e-6)


@pytest.mark.parametrize("clip_value", [0.5, 1, 10.0, -0.3])  # negative: all set to it, as in PyTorch
def test_clip_grad_value_matches_pytorch(clip_value):
    zs, ts = _params()
    version = zs[0].grad._version
    assert clip_grad_value_(zs, clip_value) is None
    torch.nn.utils.clip_grad_value_(ts, clip_value)
    _grads_equal(zs, ts, rtol=0, atol=0)
    assert zs[0].grad._version > version


def test_clip_grad_value_keeps_nan_and_dtype():
    zs, ts = _params([np.array([np.nan, 5.0, -5.0, 0.1], np.float64)])
    clip_grad_value_(zs[0], 1.0)
    torch.nn.utils.clip_grad_value_(ts[0], 1.0)
    assert zs[0].grad.dtype == zt.float64
    np.testing.assert_array_equal(zs[0].grad.numpy(), ts[0].grad.numpy())


def test_reached_from_zt_nn():
    assert zt.nn.utils.clip_grad_norm_ is clip_grad_norm_
    with pytest.raises(TypeError, match="expected Tensors, got list"):
        clip_grad_norm_([[1.0]], 1.0)


def test_parameters_to_vector_and_back_and_pad_sequence():
    from zigtensor.nn.utils.rnn import pad_sequence

    torch_nn = torch.nn
    zm, tm = zt.nn.Linear(3, 2), torch_nn.Linear(3, 2)
    zm.load_state_dict(tm.state_dict())
    zv = zt.nn.utils.parameters_to_vector(zm.parameters())
    tv = torch_nn.utils.parameters_to_vector(tm.parameters())
    np.testing.assert_allclose(zv.numpy(), tv.detach().numpy())
    (zv * zv).sum().backward()
    np.testing.assert_allclose(zm.weight.grad.numpy(), 2 * zm.weight.numpy())
    zt.nn.utils.vector_to_parameters(zt.arange(8, dtype=zt.float32), zm.parameters())
    assert zm.weight.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and zm.bias.tolist() == [6.0, 7.0]
    with pytest.raises(ValueError, match="the vector has 7 entries, the parameters 8"):
        zt.nn.utils.vector_to_parameters(zt.zeros(7), zm.parameters())
    seqs = [np.random.default_rng(i).random((n, 3)) for i, n in enumerate((2, 5, 3))]
    for batch_first in (False, True):
        for side in ("right", "left"):
            helper_test_op([], lambda *s, b=batch_first, p=side: torch_nn.utils.rnn.pad_sequence(
                list(s), batch_first=b, padding_value=-1.0, padding_side=p),
                lambda *s, b=batch_first, p=side: pad_sequence(list(s), batch_first=b, padding_value=-1.0,
                                                                padding_side=p), values=seqs)


@pytest.mark.cpu_only
def test_inference_mode_records_no_graph():
    with zt.inference_mode():
        assert not (zt.ones(2, requires_grad=True) * 2).requires_grad
    with zt.inference_mode(False):
        assert (zt.ones(2, requires_grad=True) * 2).requires_grad

    @zt.inference_mode
    def double(x):
        return x * 2

    assert not double(zt.ones(2, requires_grad=True)).requires_grad
