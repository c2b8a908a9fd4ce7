"""The basic layers of zigtensor.nn against their PyTorch twins: the same state dict (keys, shapes, loaded
from torch), forward values, input and parameter gradients, running statistics, repr, default init, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from oracle import compare, gradgradcheck, helper_test_op, make_inputs, torch

import zigtensor as zt
import zigtensor.nn as nn
import zigtensor.nn.functional as F

TNN, TF = torch.nn, torch.nn.functional


def _perturb(tm, seed: int = 0) -> None:
    """Move torch's parameters and float buffers off their (often constant) defaults, so that gradients and
    running statistics of every entry are exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for b in tm.buffers():
            if b.is_floating_point():
                b.copy_(0.5 + torch.rand(b.shape, generator=g, dtype=b.dtype))


def _loaded_pair(tmake, zmake):
    torch.manual_seed(0)
    tm, zm = tmake(), zmake()
    _perturb(tm)
    t_sd, z_sd = tm.state_dict(), zm.state_dict()
    assert list(z_sd) == list(t_sd), "state_dict keys differ from PyTorch's"
    for k in t_sd:
        want = tuple(t_sd[k].shape)
        assert z_sd[k].shape == want, f"{k}: shape {z_sd[k].shape} != torch's {want}"
        assert str(z_sd[k].dtype).split(".")[-1] == str(t_sd[k].dtype).split(".")[-1], k
    zm.load_state_dict(t_sd)  # torch tensors go in through the array protocol
    return tm, zm


def check_layer(tmake, zmake, shape, *, train=True, atol=1e-5, rtol=1e-3, grad_atol=1e-4, grad_rtol=1e-3,
                steps=1, seed=0):
    """Forward, input gradient, every parameter's gradient (by name) and every buffer, for `steps` calls."""
    tm, zm = _loaded_pair(tmake, zmake)
    tm.train(train)
    zm.train(train)
    for step in range(steps):
        (tx,), (zx,) = make_inputs([shape], seed=seed + step)
        ty, zy = tm(tx), zm(zx)
        assert zy.dtype is zt.float32
        compare("forward", zy, ty, atol, rtol)
        w = np.random.default_rng(seed + 100 + step).uniform(0.5, 1.5, size=tuple(ty.shape))
        tm.zero_grad()
        zm.zero_grad()
        (ty * torch.tensor(w, dtype=ty.dtype)).sum().backward()
        (zy * zt.tensor(w, dtype=zy.dtype)).sum().backward()
        compare("input gradient", zx.grad, tx.grad, grad_atol, grad_rtol)
        z_params = dict(zm.named_parameters())
        assert list(z_params) == [n for n, _ in tm.named_parameters()]
        for name, tp in tm.named_parameters():
            assert z_params[name].grad is not None, f"{name}: no gradient"
            compare(f"gradient of {name}", z_params[name].grad, tp.grad, grad_atol, grad_rtol)
        z_bufs = dict(zm.named_buffers())
        for name, tb in tm.named_buffers():
            compare(f"buffer {name} after step {step}", z_bufs[name], tb, 1e-5, 1e-4)
    return tm, zm


# ------------------------------------------------------------------------------------------ one line per case
def twins(name: str, *args, **kwargs):
    """(torch maker, zigtensor maker) of the layer `name` built with the same arguments."""
    return (lambda: getattr(TNN, name)(*args, **kwargs)), (lambda: getattr(nn, name)(*args, **kwargs))


def case(case_id: str, name: str, *args, shape, **kwargs):
    return pytest.param(*twins(name, *args, **kwargs), shape, id=case_id)


CASES = [
    case("linear", "Linear", 5, 7, shape=(3, 5)),
    case("linear_3d", "Linear", 5, 7, shape=(2, 3, 5)),
    case("linear_no_bias", "Linear", 5, 7, bias=False, shape=(3, 5)),
    case("conv1d", "Conv1d", 4, 6, 3, shape=(2, 4, 9)),
    case("conv1d_args", "Conv1d", 4, 6, 3, stride=2, padding=1, dilation=2, groups=2, shape=(2, 4, 11)),
    case("conv1d_same", "Conv1d", 3, 5, 3, padding="same", bias=False, shape=(2, 3, 8)),
    case("conv2d", "Conv2d", 3, 8, 3, padding=1, shape=(2, 3, 7, 7)),
    case("conv2d_args", "Conv2d", 4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2,
         bias=False, shape=(2, 4, 9, 8)),
    case("conv2d_same_even", "Conv2d", 3, 4, 4, padding="same", shape=(2, 3, 6, 7)),
    case("conv2d_valid", "Conv2d", 3, 4, 3, padding="valid", shape=(2, 3, 6, 6)),
    case("conv2d_depthwise", "Conv2d", 4, 8, 3, groups=4, shape=(2, 4, 6, 6)),
    case("conv2d_unbatched", "Conv2d", 3, 4, 3, shape=(3, 6, 6)),
    case("conv_transpose2d", "ConvTranspose2d", 4, 6, 3, shape=(2, 4, 5, 5)),
    case("conv_transpose2d_args", "ConvTranspose2d", 4, 6, 3, stride=2, padding=1, output_padding=1, groups=2,
         shape=(2, 4, 4, 5)),
    case("conv_transpose2d_dilated", "ConvTranspose2d", 2, 3, (3, 2), stride=(2, 3), padding=(0, 1),
         output_padding=(1, 2), dilation=(1, 2), bias=False, shape=(2, 2, 3, 4)),
    case("maxpool2d", "MaxPool2d", 2, shape=(2, 3, 8, 8)),
    case("maxpool2d_args", "MaxPool2d", 3, stride=2, padding=1, shape=(2, 3, 9, 8)),
    case("maxpool2d_ceil_dilated", "MaxPool2d", 2, dilation=2, ceil_mode=True, shape=(2, 3, 9, 9)),
    case("avgpool2d", "AvgPool2d", 2, shape=(2, 3, 8, 8)),
    case("avgpool2d_args", "AvgPool2d", 3, 2, 1, ceil_mode=True, count_include_pad=False, shape=(2, 3, 8, 9)),
    case("adaptive_avgpool2d", "AdaptiveAvgPool2d", (3, 2), shape=(2, 3, 7, 5)),
    case("adaptive_avgpool2d_1", "AdaptiveAvgPool2d", 1, shape=(2, 3, 5, 5)),
    case("layernorm", "LayerNorm", 6, shape=(3, 4, 6)),
    case("layernorm_2d", "LayerNorm", (4, 6), eps=1e-3, shape=(3, 4, 6)),
    case("layernorm_no_affine", "LayerNorm", 6, elementwise_affine=False, shape=(3, 6)),
    case("layernorm_no_bias", "LayerNorm", 6, bias=False, shape=(3, 6)),
    case("rmsnorm", "RMSNorm", 6, shape=(3, 4, 6)),
    case("rmsnorm_2d", "RMSNorm", (4, 6), eps=1e-6, shape=(3, 4, 6)),
    case("rmsnorm_no_affine", "RMSNorm", 6, elementwise_affine=False, shape=(3, 6)),
    case("groupnorm", "GroupNorm", 2, 6, shape=(3, 6, 4, 5)),
    case("groupnorm_no_affine", "GroupNorm", 3, 6, eps=1e-3, affine=False, shape=(3, 6, 5)),
    case("groupnorm_no_bias", "GroupNorm", 3, 6, bias=False, shape=(3, 6, 5)),
    case("groupnorm_2d_input", "GroupNorm", 1, 4, shape=(5, 4)),
    case("flatten", "Flatten", shape=(2, 3, 4, 5)),
    case("flatten_args", "Flatten", 0, 2, shape=(2, 3, 4, 5)),
    case("unflatten", "Unflatten", 1, (3, 4), shape=(2, 12)),
    case("identity", "Identity", shape=(2, 3)),
    case("relu", "ReLU", shape=(3, 5)),
    case("gelu", "GELU", shape=(3, 5)),
    case("gelu_tanh", "GELU", "tanh", shape=(3, 5)),
    case("silu", "SiLU", shape=(3, 5)),
    case("tanh", "Tanh", shape=(3, 5)),
    case("sigmoid", "Sigmoid", shape=(3, 5)),
    case("leaky_relu", "LeakyReLU", 0.2, shape=(3, 5)),
    case("softmax", "Softmax", dim=1, shape=(3, 5, 2)),
    case("log_softmax", "LogSoftmax", dim=-1, shape=(3, 5)),
    case("dropout_p0", "Dropout", 0.0, shape=(3, 5)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("tmake, zmake, shape", CASES)
def test_layer_matches_torch(tmake, zmake, shape):
    check_layer(tmake, zmake, shape)


BN_CASES = [
    case("bn1d", "BatchNorm1d", 5, shape=(8, 5)),
    case("bn1d_3d", "BatchNorm1d", 5, momentum=0.3, shape=(4, 5, 6)),
    case("bn2d", "BatchNorm2d", 3, shape=(4, 3, 5, 5)),
    case("bn2d_cumulative", "BatchNorm2d", 3, momentum=None, eps=1e-3, shape=(4, 3, 3, 4)),
    case("bn2d_no_affine", "BatchNorm2d", 3, affine=False, shape=(4, 3, 3, 3)),
    case("bn2d_no_bias", "BatchNorm2d", 3, bias=False, shape=(4, 3, 3, 3)),
    case("bn2d_no_stats", "BatchNorm2d", 3, track_running_stats=False, shape=(4, 3, 3, 3)),
]


@pytest.mark.parametrize("tmake, zmake, shape", BN_CASES)
def test_batchnorm_train_then_eval(tmake, zmake, shape):
    # three training steps (each compares the running statistics and num_batches_tracked), then eval mode
    tm, zm = check_layer(tmake, zmake, shape, train=True, steps=3)
    tm.eval()
    zm.eval()
    (tx,), (zx,) = make_inputs([shape], seed=7)
    compare("eval forward", zm(zx), tm(tx), 1e-5, 1e-3)
    if zm.track_running_stats:
        assert zm.num_batches_tracked.dtype is zt.int64 and zm.num_batches_tracked.item() == 3


@pytest.mark.parametrize("tmake, zmake, shape", BN_CASES)
def test_batchnorm_eval_gradients(tmake, zmake, shape):
    check_layer(tmake, zmake, shape, train=False)


def test_batchnorm_eval_leaves_running_stats():
    bn = nn.BatchNorm1d(4).eval()
    bn(zt.randn(6, 4))
    assert bn.running_mean.tolist() == [0.0] * 4 and bn.running_var.tolist() == [1.0] * 4
    assert bn.num_batches_tracked.item() == 0


def test_dropout():
    check_layer(*twins("Dropout", 0.5), (3, 5), train=False)  # eval: identity
    d = nn.Dropout(0.25)
    x = zt.ones(200, 100, requires_grad=True)
    zt.manual_seed(1)
    y = d(x)
    kept = y.numpy() != 0
    assert 0.72 < kept.mean() < 0.78
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.75, rtol=1e-6)  # the same mask scales the gradient
    zt.manual_seed(1)
    np.testing.assert_array_equal(d(x).numpy(), y.numpy())  # the framework RNG makes it reproducible
    assert (nn.Dropout(1.0)(x).numpy() == 0).all()


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=2, stride=1, dilation=2, ceil_mode=True)])
def test_max_pool_ties_and_nans_like_torch(kwargs):
    # small integers make ties everywhere (the gradient goes to the first maximum); NaNs win (the last one)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (2, 2, 7, 7)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    tx, zx = torch.tensor(x, requires_grad=True), zt.tensor(x, requires_grad=True)
    ty, ti = TNN.MaxPool2d(return_indices=True, **kwargs)(tx)
    zy, zi = nn.MaxPool2d(return_indices=True, **kwargs)(zx)
    np.testing.assert_array_equal(zy.numpy(), ty.detach().numpy())
    np.testing.assert_array_equal(zi.numpy(), ti.numpy())
    ty.sum().backward()
    zy.sum().backward()
    np.testing.assert_array_equal(zx.grad.numpy(), tx.grad.numpy())


def test_embedding_matches_torch():
    tm, zm = _loaded_pair(*twins("Embedding", 10, 4, padding_idx=2))
    idx = np.array([[0, 2, 5, 2], [9, 5, 1, 2], [3, 3, 3, 7]])
    ty, zy = tm(torch.tensor(idx)), zm(zt.tensor(idx))
    compare("forward", zy, ty, 0, 0)
    w = np.random.default_rng(0).uniform(0.5, 1.5, size=tuple(ty.shape))
    (ty * torch.tensor(w, dtype=ty.dtype)).sum().backward()
    (zy * zt.tensor(w, dtype=zy.dtype)).sum().backward()
    compare("weight gradient", zm.weight.grad, tm.weight.grad, 1e-5, 1e-5)  # repeats summed, padding row zero
    assert not zm.weight.grad.numpy()[2].any()


@pytest.mark.cpu_only  # numpy() shares memory on the CPU only
def test_embedding_from_pretrained():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    zw = zt.tensor(table)
    e = nn.Embedding.from_pretrained(zw)
    t = TNN.Embedding.from_pretrained(torch.tensor(table))
    compare("from_pretrained", e(zt.tensor([3, 0])), t(torch.tensor([3, 0])), 0, 0)
    assert not e.weight.requires_grad and (e.num_embeddings, e.embedding_dim) == (4, 3)
    assert np.shares_memory(e.weight.numpy(), zw.numpy())  # shared, not copied, as in PyTorch
    trainable = nn.Embedding.from_pretrained(zw, freeze=False, padding_idx=1)
    assert trainable.weight.requires_grad and trainable.padding_idx == 1
    assert trainable.weight.numpy()[1].tolist() == [3.0, 4.0, 5.0]  # a given table keeps its padding row
    with pytest.raises(ValueError, match=r"2-d Tensor.*\(12,\)"):
        nn.Embedding.from_pretrained(zt.zeros(12))


def test_conv_transpose2d_output_size():
    tm, zm = _loaded_pair(*twins("ConvTranspose2d", 3, 2, 3, stride=2, padding=1))
    (tx,), (zx,) = make_inputs([(1, 3, 4, 4)])
    for size in [(7, 7), (8, 7), [1, 2, 8, 8]]:
        compare(f"output_size={size}", zm(zx, output_size=size), tm(tx, output_size=size), 1e-5, 1e-3)
    with pytest.raises(ValueError, match=r"output size of \(9, 7\).*\(7, 7\) to \(8, 8\)"):
        zm(zx, output_size=(9, 7))


# ------------------------------------------------------------------------------------------ functional forms
@pytest.mark.parametrize("shapes, kwargs", [
    ([(2, 4, 5, 5), (4, 3, 3, 3), (3,)], dict()),
    ([(2, 4, 5, 6), (4, 3, 3, 3), (6,)], dict(stride=2, padding=1, output_padding=1, groups=2)),
    ([(2, 2, 3, 4), (2, 3, 2, 3), (3,)], dict(stride=(3, 2), padding=(1, 0), output_padding=(2, 1),
                                              dilation=(1, 2))),
    ([(2, 6, 4, 4), (6, 1, 3, 3), (3,)], dict(groups=3, stride=2)),
    ([(3, 3, 3), (3, 2, 2, 2)], dict(stride=2)),  # unbatched
    ([(1, 2, 3, 3), (2, 2, 1, 1)], dict(padding=1)),  # padding crops the 1x1 kernel's output
])
def test_conv_transpose2d_functional(shapes, kwargs):
    helper_test_op(shapes, lambda *a: TF.conv_transpose2d(*a, **kwargs),
                   lambda *a: F.conv_transpose2d(*a, **kwargs))


def test_conv_transpose2d_second_order():
    gradgradcheck(lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
                  [(1, 2, 3, 3), (2, 2, 3, 3)])


@pytest.mark.parametrize("shape, groups, affine", [((2, 6, 4, 3), 3, True), ((3, 4, 5), 2, False),
                                                   ((4, 6), 6, True), ((2, 4, 2, 2, 2), 1, True)])
def test_group_norm_functional(shape, groups, affine):
    c = shape[1]
    if affine:
        helper_test_op([shape, (c,), (c,)], lambda x, w, b: TF.group_norm(x, groups, w, b, eps=1e-4),
                       lambda x, w, b: F.group_norm(x, groups, w, b, eps=1e-4))
    else:
        helper_test_op([shape], lambda x: TF.group_norm(x, groups), lambda x: F.group_norm(x, groups))


# ------------------------------------------------------------------------------------------ repr
REPRS = [
    twins("Linear", 3, 4, bias=False),
    twins("Conv1d", 2, 4, 3, padding="same"),
    twins("Conv2d", 4, 8, 3, stride=2, padding=1, dilation=2, groups=2, bias=False),
    twins("ConvTranspose2d", 4, 2, 3, stride=2, output_padding=1),
    twins("MaxPool2d", 3, 2, 1, ceil_mode=True),
    twins("AvgPool2d", (2, 3)),
    twins("AdaptiveAvgPool2d", (2, None)),
    twins("BatchNorm1d", 4, momentum=None),
    twins("BatchNorm2d", 4, affine=False),
    twins("LayerNorm", (3, 4), elementwise_affine=False),
    twins("RMSNorm", 8),
    twins("GroupNorm", 2, 8, eps=1e-3),
    twins("Dropout", 0.1),
    twins("Embedding", 10, 3, padding_idx=-1),
    twins("Flatten"),
    twins("Unflatten", 1, (2, 3)),
    twins("Identity"),
    twins("ReLU", inplace=True),
    twins("GELU", "tanh"),
    twins("SiLU"),
    twins("Tanh"),
    twins("Sigmoid"),
    twins("LeakyReLU", 0.2),
    twins("Softmax", dim=-1),
    twins("LogSoftmax", dim=1),
]


@pytest.mark.parametrize("tmake, zmake", REPRS, ids=[repr(z()).split("(")[0] for _, z in REPRS])
def test_repr_matches_torch(tmake, zmake):
    assert repr(zmake()) == repr(tmake())


# ------------------------------------------------------------------------------------------ default init
def _bound_check(w: np.ndarray, bound: float) -> None:
    """w looks like n draws of U(-bound, bound): within it, reaching its ends, with its mean and std (each
    within 5 standard errors)."""
    n = w.size
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > (1 - 15 / n) * bound  # P(every draw inside this) = (1 - 15/n)^n ~ e^-15
    assert abs(w.mean()) < 5 * bound / math.sqrt(3 * n)
    assert abs(w.std() - bound / math.sqrt(3)) < 5 * bound / math.sqrt(15 * n)


@pytest.mark.parametrize("tmake, zmake, fan_in", [
    (*twins("Linear", 300, 200), 300),
    (*twins("Conv2d", 16, 64, 3), 16 * 9),
    (*twins("Conv1d", 12, 32, 5, groups=4), 3 * 5),
    (*twins("ConvTranspose2d", 32, 64, 3, groups=2), 32 * 9),
])
def test_default_init_kaiming_uniform(tmake, zmake, fan_in):
    # PyTorch: weight ~ U(-b, b) with b = gain(leaky_relu, sqrt(5)) * sqrt(3 / fan_in) = 1 / sqrt(fan_in);
    # the same b for the bias. Check ours, and that torch's own parameters fall within the same bound.
    bound = 1 / math.sqrt(fan_in)
    assert math.isclose(nn.init.calculate_gain("leaky_relu", math.sqrt(5)) * math.sqrt(3 / fan_in), bound)
    torch.manual_seed(0)
    zt.manual_seed(0)
    tm, zm = tmake(), zmake()
    _bound_check(zm.weight.numpy(), bound)
    _bound_check(tm.weight.detach().numpy(), bound)
    assert np.abs(zm.bias.numpy()).max() <= bound
    assert np.abs(tm.bias.detach().numpy()).max() <= bound
    assert zm.weight.requires_grad and isinstance(zm.weight, nn.Parameter)


def test_default_init_constant_and_normal():
    bn = nn.BatchNorm2d(5)
    assert bn.weight.tolist() == [1.0] * 5 and bn.bias.tolist() == [0.0] * 5
    assert bn.running_mean.tolist() == [0.0] * 5 and bn.running_var.tolist() == [1.0] * 5
    assert bn.num_batches_tracked.dtype is zt.int64 and bn.num_batches_tracked.shape == ()
    assert not bn.running_mean.requires_grad
    ln, rms, gn = nn.LayerNorm((2, 3)), nn.RMSNorm(4), nn.GroupNorm(2, 4)
    assert (ln.weight.numpy() == 1).all() and (ln.bias.numpy() == 0).all() and ln.weight.shape == (2, 3)
    assert (rms.weight.numpy() == 1).all() and rms.eps is None
    assert (gn.weight.numpy() == 1).all() and (gn.bias.numpy() == 0).all()
    zt.manual_seed(0)
    e = nn.Embedding(400, 50, padding_idx=-3)
    w = e.weight.numpy()
    assert e.padding_idx == 397 and not w[397].any()
    assert abs(w.mean()) < 0.03 and abs(w.std() - 1) < 0.03  # N(0, 1): 4 standard errors over 20000 draws


def test_init_draws_from_the_framework_rng():
    zt.manual_seed(3)
    a = nn.Linear(4, 5).weight.numpy().copy()
    zt.manual_seed(3)
    b = nn.Linear(4, 5).weight.numpy()
    np.testing.assert_array_equal(a, b)


def test_layers_take_dtype():
    lin = nn.Linear(3, 2, dtype=zt.float64)
    assert lin.weight.dtype is zt.float64 and lin.bias.dtype is zt.float64
    assert nn.Conv2d(1, 2, 3, dtype="float64").weight.dtype is zt.float64
    assert nn.BatchNorm1d(2, dtype=zt.float64).running_var.dtype is zt.float64


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("make, exc, match", [
    (lambda: nn.Linear(-1, 3), ValueError, r"in_features.*-1"),
    (lambda: nn.Linear(2.5, 3), TypeError, r"in_features.*2\.5"),
    (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, r"in_channels \(3\).*groups \(2\)"),
    (lambda: nn.Conv2d(4, 6, 3, groups=4), ValueError, r"out_channels \(6\).*groups \(4\)"),
    (lambda: nn.Conv2d(4, 6, 3, groups=0), ValueError, r"groups.*0"),
    (lambda: nn.Conv2d(4, 6, 0), ValueError, r"kernel_size.*0"),
    (lambda: nn.Conv2d(4, 6, (3, 3, 3)), ValueError, r"kernel_size.*tuple of 2"),
    (lambda: nn.Conv2d(4, 6, 3, padding=-1), ValueError, r"padding.*-1"),
    (lambda: nn.Conv2d(4, 6, 3, padding="full"), ValueError, r"'full'"),
    (lambda: nn.Conv2d(4, 6, 3, padding="same", stride=2), ValueError, r"padding='same'.*strided.*\(2, 2\)"),
    (lambda: nn.Conv2d(4, 6, 3, padding_mode="reflect"), NotImplementedError, r"'reflect'"),
    (lambda: nn.Conv2d(4, 6, 3, padding_mode="mirror"), ValueError, r"padding_mode.*'mirror'"),
    (lambda: nn.ConvTranspose2d(4, 6, 3, output_padding=1), ValueError, r"output_padding.*\(1, 1\).*stride"),
    (lambda: nn.ConvTranspose2d(4, 6, 3, padding="same"), ValueError, r"'same'"),
    (lambda: nn.GroupNorm(4, 6), ValueError, r"num_channels \(6\).*num_groups \(4\)"),
    (lambda: nn.BatchNorm2d(0), ValueError, r"num_features.*0"),
    (lambda: nn.BatchNorm2d(3, momentum=1.5), ValueError, r"momentum.*1\.5"),
    (lambda: nn.LayerNorm(0), ValueError, r"normalized_shape.*0"),
    (lambda: nn.LayerNorm(4, eps=-1.0), ValueError, r"eps.*-1\.0"),
    (lambda: nn.Dropout(1.5), ValueError, r"between 0 and 1.*1\.5"),
    (lambda: nn.Dropout(-0.1), ValueError, r"between 0 and 1.*-0\.1"),
    (lambda: nn.Embedding(5, 3, padding_idx=5), ValueError, r"padding_idx.*5"),
    (lambda: nn.GELU("fast"), ValueError, r"'none' or 'tanh'.*'fast'"),
])
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("layer, x, exc, match", [
    (lambda: nn.BatchNorm1d(3), (2, 3, 4, 5), ValueError, r"2D or 3D.*\(2, 3, 4, 5\)"),
    (lambda: nn.BatchNorm2d(3), (2, 3), ValueError, r"4D.*\(2, 3\)"),
    (lambda: nn.BatchNorm2d(3), (2, 4, 5, 5), ValueError, r"3 channels.*\(2, 4, 5, 5\)"),
    (lambda: nn.BatchNorm1d(3), (1, 3), ValueError, r"more than 1 value per channel"),
    (lambda: nn.GroupNorm(2, 4), (2, 6, 3), ValueError, r"\(N, 4, \*\).*\(2, 6, 3\)"),
    (lambda: nn.Linear(4, 2), (3, 5), RuntimeError, r"\(3, 5\)"),
    (lambda: nn.Conv2d(3, 4, 3), (2, 5, 8, 8), RuntimeError, r"3 channels.*got 5"),
    (lambda: nn.Conv2d(3, 4, 3), (2, 8, 8), RuntimeError, r"got 2"),
    (lambda: nn.ConvTranspose2d(3, 4, 3), (2, 5, 8, 8), RuntimeError, r"3 channels.*got 5"),
    (lambda: nn.LayerNorm(4), (2, 5), RuntimeError, r"\[4\].*\(2, 5\)"),
    (lambda: nn.Softmax(), (2, 5), TypeError, r"dim"),
])
def test_forward_errors(layer, x, exc, match):
    with pytest.raises(exc, match=match):
        layer()(zt.randn(*x))


def test_functional_errors():
    with pytest.raises(RuntimeError, match=r"channels \(6, input of shape \(2, 6, 3\)\).*num_groups=4"):
        F.group_norm(zt.randn(2, 6, 3), 4)
    with pytest.raises(RuntimeError, match=r"weight of shape \(4, 2, 3, 3\).*\(1, 3, 5, 5\).*4 channels"):
        F.conv_transpose2d(zt.randn(1, 3, 5, 5), zt.randn(4, 2, 3, 3))
    with pytest.raises(RuntimeError, match=r"groups=3 must divide in_channels"):
        F.conv_transpose2d(zt.randn(1, 4, 5, 5), zt.randn(4, 2, 3, 3), groups=3)
    with pytest.raises(RuntimeError, match=r"output padding.*\(2, 2\)"):
        F.conv_transpose2d(zt.randn(1, 4, 5, 5), zt.randn(4, 2, 3, 3), stride=2, output_padding=2)
    with pytest.raises(RuntimeError, match=r"string padding"):
        F.conv_transpose2d(zt.randn(1, 4, 5, 5), zt.randn(4, 2, 3, 3), padding="same")


# ------------------------------------------------------------------------------- padding, PReLU, distances
@pytest.mark.parametrize("tmake, zmake, shape", [
    case("zero2d", "ZeroPad2d", 2, shape=(2, 3, 4, 5)),
    case("constant1d", "ConstantPad1d", (1, 2), 3.5, shape=(2, 3, 4)),
    case("reflection2d", "ReflectionPad2d", (1, 0, 2, 1), shape=(2, 3, 4, 5)),
    case("replication1d", "ReplicationPad1d", 3, shape=(2, 3, 4)),
    case("circular3d", "CircularPad3d", 1, shape=(1, 2, 3, 4, 5)),
    case("prelu", "PReLU", shape=(4, 3, 5)),
    case("prelu_channels", "PReLU", 3, init=0.1, shape=(4, 3, 5)),
])
def test_padding_and_prelu_layers(tmake, zmake, shape):
    check_layer(tmake, zmake, shape)
    assert repr(zmake()) == repr(tmake())


def test_distance_modules():
    helper_test_op([(4, 5), (4, 5)], TNN.CosineSimilarity(dim=1), nn.CosineSimilarity(dim=1))
    helper_test_op([(4, 5), (4, 5)], TNN.PairwiseDistance(p=1.5, keepdim=True),
                   nn.PairwiseDistance(p=1.5, keepdim=True))
    with pytest.raises(RuntimeError, match=r"PReLU: 3 slopes for input of shape \(2, 4\)"):
        nn.PReLU(3)(zt.ones(2, 4))
    with pytest.raises(ValueError, match="ZeroPad2d: padding must be one int or 4 ints"):
        nn.ZeroPad2d((1, 2))


@pytest.mark.parametrize("tmake, zmake, shape", [
    case("maxpool1d", "MaxPool1d", 3, 2, 1, shape=(2, 3, 11)),
    case("avgpool1d", "AvgPool1d", 3, 2, 1, shape=(2, 3, 11)),
    case("adaptive1d", "AdaptiveAvgPool1d", 4, shape=(2, 3, 11)),
    case("unfold", "Unfold", (2, 3), padding=1, stride=2, shape=(2, 3, 5, 6)),
    case("fold", "Fold", (4, 5), 2, shape=(2, 12, 12)),
    case("hardtanh", "Hardtanh", -0.5, 0.8, shape=(4, 6)),
    case("threshold", "Threshold", 0.1, -2.0, shape=(4, 6)),
    case("glu", "GLU", 1, shape=(4, 6)),
    case("softmin", "Softmin", 1, shape=(4, 6)),
])
def test_more_layers(tmake, zmake, shape):
    check_layer(tmake, zmake, shape)
    assert repr(zmake()) == repr(tmake())


@pytest.mark.parametrize("tmake, zmake, shape", [
    case("instancenorm1d", "InstanceNorm1d", 3, shape=(2, 3, 7)),
    case("instancenorm2d_affine", "InstanceNorm2d", 3, affine=True, shape=(2, 3, 4, 5)),
    case("instancenorm2d_unbatched", "InstanceNorm2d", 3, affine=True, shape=(3, 4, 5)),
])
def test_instance_norm(tmake, zmake, shape):
    check_layer(tmake, zmake, shape)
    assert repr(zmake()) == repr(tmake())


@pytest.mark.parametrize("name, shape", [("Dropout1d", (8, 16, 5)), ("Dropout2d", (8, 16, 3, 3)),
                                         ("Dropout3d", (4, 16, 2, 2, 2)), ("Dropout2d", (16, 3, 3))])
def test_channel_dropout_zeroes_whole_channels(name, shape):
    zt.manual_seed(0)
    layer = getattr(nn, name)(0.5)
    y = layer(zt.ones(*shape)).numpy()
    per_channel = y.reshape(*shape[:len(shape) - int(name[-2])], -1)
    assert np.all(per_channel == per_channel[..., :1])  # one draw per channel
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.3 < (y == 0).mean() < 0.7
    assert repr(layer) == repr(getattr(torch.nn, name)(0.5))
    np.testing.assert_array_equal(layer.eval()(zt.ones(*shape)).numpy(), np.ones(shape))
