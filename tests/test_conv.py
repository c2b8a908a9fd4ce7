"""Convolution, pooling, unfold/fold: values and gradients against PyTorch, finite differences, errors."""

from __future__ import annotations

import numpy as np
import pytest
from fake_device import fake_cuda  # noqa: F401  (fixture)
from oracle import gradcheck, gradgradcheck, helper_test_op, torch

import zigtensor as zt
import zigtensor.nn.functional as F

TF = torch.nn.functional


def both(name, *args, **kwargs):
    """The same call spelled for torch and for zigtensor: one line per case."""
    return (lambda *xs: getattr(TF, name)(*xs, *args, **kwargs),
            lambda *xs: getattr(F, name)(*xs, *args, **kwargs))


# ------------------------------------------------------------------------------------------ conv2d
@pytest.mark.parametrize("shapes, kwargs", [
    ([(2, 3, 9, 9), (4, 3, 3, 3), (4,)], dict(padding=1)),
    ([(2, 3, 9, 9), (4, 3, 3, 3), (4,)], dict()),
    ([(2, 3, 9, 8), (4, 3, 3, 3), (4,)], dict(stride=2, padding=(1, 2))),
    ([(2, 3, 11, 10), (4, 3, 3, 2), (4,)], dict(stride=(2, 3), padding=(0, 1), dilation=(2, 1))),
    ([(2, 3, 10, 10), (4, 3, 3, 3), (4,)], dict(dilation=2, padding=2)),
    ([(2, 3, 9, 9), (4, 3, 3, 3), (4,)], dict(stride=4)),  # stride larger than the kernel
    ([(2, 4, 7, 7), (6, 2, 3, 3), (6,)], dict(groups=2, padding=1)),
    ([(2, 6, 7, 7), (6, 2, 3, 3), (6,)], dict(groups=3, stride=2)),
    ([(2, 4, 7, 7), (8, 1, 3, 3), (8,)], dict(groups=4, padding=1)),  # depthwise, channel multiplier 2
    ([(2, 3, 8, 8), (4, 3, 4, 4), (4,)], dict(padding="same")),  # even kernel: the extra pad goes right
    ([(2, 3, 8, 9), (4, 3, 3, 2), (4,)], dict(padding="same", dilation=(2, 3))),
    ([(2, 3, 8, 8), (4, 3, 3, 3), (4,)], dict(padding="valid")),
    ([(2, 3, 6, 6), (5, 3, 1, 1), (5,)], dict()),  # 1x1
    ([(2, 3, 6, 6), (5, 3, 1, 1), (5,)], dict(stride=2, padding=1)),
    ([(3, 9, 9), (4, 3, 3, 3), (4,)], dict(padding=1)),  # unbatched
    ([(1, 1, 5, 5), (1, 1, 5, 5), (1,)], dict()),  # kernel covers the whole input
])
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_conv2d(shapes, kwargs):
    helper_test_op(shapes, *both("conv2d", **kwargs))


def test_conv2d_no_bias():
    helper_test_op([(2, 3, 9, 9), (4, 3, 3, 3)], *both("conv2d", padding=1, stride=2))
    helper_test_op([(2, 4, 7, 7), (4, 2, 3, 3)], *both("conv2d", groups=2))


def test_conv2d_non_contiguous_inputs():
    # strided slice of the input and a permuted weight: both are views with unusual strides
    helper_test_op([(2, 3, 12, 9), (4, 3, 3, 3), (4,)],
                   lambda x, w, b: TF.conv2d(x[:, :, ::2], w.permute(0, 1, 3, 2), b, padding=1),
                   lambda x, w, b: F.conv2d(x[:, :, ::2], w.permute(0, 1, 3, 2), b, padding=1))
    helper_test_op([(2, 9, 8, 3), (4, 3, 3, 3)],
                   lambda x, w: TF.conv2d(x.permute(0, 3, 1, 2), w, stride=2),
                   lambda x, w: F.conv2d(x.permute(0, 3, 1, 2), w, stride=2))


def test_conv2d_float64_and_int():
    helper_test_op([(2, 3, 6, 6), (4, 3, 3, 3), (4,)], *both("conv2d", padding=1), dtype=zt.float64)
    x = np.arange(2 * 3 * 5 * 5).reshape(2, 3, 5, 5) % 7
    w = np.arange(4 * 3 * 3 * 3).reshape(4, 3, 3, 3) % 5 - 2
    got = F.conv2d(zt.tensor(x), zt.tensor(w), padding=1)
    want = TF.conv2d(torch.tensor(x), torch.tensor(w), padding=1)
    assert got.dtype is zt.int64
    np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("rows", [0, 10_000])  # every conv as one product, or one product per image
@pytest.mark.parametrize("chunk", [1, 2**30])  # one image per block of windows, or the whole batch
@pytest.mark.parametrize("shapes, kwargs", [
    ([(3, 1, 9, 9), (4, 1, 3, 3), (4,)], dict(padding=1)),  # 10 window rows with the bias' row of ones
    ([(3, 5, 7, 6), (4, 5, 3, 3), (4,)], dict(stride=2, padding=(2, 1))),
    ([(3, 5, 7, 6), (4, 5, 3, 3)], dict(padding=1)),  # no bias: no row of ones
])
def test_conv2d_output_layouts(monkeypatch, rows, chunk, shapes, kwargs):
    import zigtensor.ops.conv as conv_ops

    monkeypatch.setattr(conv_ops, "BATCHED_CONV_MAX_ROWS", rows)
    monkeypatch.setattr(conv_ops, "CONV_CHUNK_BYTES", chunk)
    helper_test_op(shapes, *both("conv2d", **kwargs))
    helper_test_op(shapes, *both("conv2d", **kwargs), dtype=zt.float64)


@pytest.mark.parametrize("trainable", ["input", "weight", "bias", "weight and bias"])
def test_conv2d_gradient_of_each_argument_alone(trainable):
    rng = np.random.default_rng(0)
    x, w, b = (rng.uniform(-2, 2, s).astype(np.float32) for s in [(2, 3, 6, 6), (4, 3, 3, 3), (4,)])
    g = rng.uniform(-2, 2, (2, 4, 6, 6)).astype(np.float32)
    zs = [zt.tensor(a, requires_grad=name in trainable) for a, name in zip((x, w, b), ("input", "weight", "bias"))]
    ts = [torch.tensor(a, requires_grad=name in trainable) for a, name in zip((x, w, b), ("input", "weight", "bias"))]
    F.conv2d(*zs, padding=1).backward(zt.tensor(g))
    TF.conv2d(*ts, padding=1).backward(torch.tensor(g))
    for z, t in zip(zs, ts):
        assert (z.grad is None) == (t.grad is None)
        if t.grad is not None:
            np.testing.assert_allclose(z.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ conv1d
@pytest.mark.parametrize("shapes, kwargs", [
    ([(2, 3, 11), (4, 3, 3), (4,)], dict(padding=1)),
    ([(2, 3, 11), (4, 3, 3), (4,)], dict(stride=2, padding=2, dilation=2)),
    ([(2, 4, 11), (6, 2, 3), (6,)], dict(groups=2)),
    ([(2, 4, 11), (4, 1, 5), (4,)], dict(groups=4, padding="same")),
    ([(2, 3, 11), (4, 3, 4), (4,)], dict(padding="same", dilation=3)),
    ([(3, 11), (4, 3, 3), (4,)], dict(padding=(1,))),  # unbatched, one-element tuple
])
def test_conv1d(shapes, kwargs):
    helper_test_op(shapes, *both("conv1d", **kwargs))


def test_conv1d_no_bias_non_contiguous():
    helper_test_op([(2, 11, 3), (4, 3, 3)], lambda x, w: TF.conv1d(x.transpose(1, 2), w, stride=2),
                   lambda x, w: F.conv1d(x.transpose(1, 2), w, stride=2))


# ------------------------------------------------------------------------------------------ max pooling
@pytest.mark.parametrize("shape, kwargs", [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((2, 3, 9, 9), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 3, 9, 10), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))),
    ((2, 3, 9, 9), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ((2, 3, 10, 10), dict(kernel_size=3, stride=3, padding=1, ceil_mode=True)),
    ((2, 3, 10, 10), dict(kernel_size=2, stride=3, ceil_mode=True)),
    ((2, 3, 10, 10), dict(kernel_size=3, dilation=2, padding=1)),
    ((2, 3, 11, 11), dict(kernel_size=2, dilation=(2, 3), ceil_mode=True)),
    ((3, 7, 7), dict(kernel_size=3, stride=2, padding=1)),  # unbatched
    ((2, 3, 5, 5), dict(kernel_size=5)),  # global
    ((2, 3, 9, 7), dict(kernel_size=2)),  # the last row and column are in no window
])
def test_max_pool2d(shape, kwargs):
    helper_test_op([shape], *both("max_pool2d", **kwargs))


@pytest.mark.parametrize("shape, kwargs", [
    ((2, 3, 9, 9), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 3, 10, 11), dict(kernel_size=(2, 3), stride=2, dilation=(2, 1), ceil_mode=True)),
    ((3, 7, 7), dict(kernel_size=2)),
])
def test_max_pool2d_return_indices(shape, kwargs):
    helper_test_op([shape], *both("max_pool2d", return_indices=True, **kwargs))


def test_max_pool2d_gradient_goes_to_first_maximum():
    x = np.ones((1, 1, 4, 4))
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = 5.0  # a tie inside the first window
    helper_test_op(None, *both("max_pool2d", kernel_size=2), values=[x])


def test_max_pool2d_gradient_of_relu_zeros_goes_to_each_window_first_element():
    # after a ReLU most windows are all zeros: every one of them is a tie
    x = np.maximum(np.random.default_rng(0).uniform(-2, 1, (2, 3, 8, 6)), 0)
    helper_test_op(None, lambda x: TF.max_pool2d(TF.relu(x), 2), lambda x: F.max_pool2d(F.relu(x), 2), values=[x])


def test_max_pool_non_contiguous_and_1d():
    helper_test_op([(2, 3, 8, 12)], lambda x: TF.max_pool2d(x[..., ::2].transpose(2, 3), 2, padding=1),
                   lambda x: F.max_pool2d(x[..., ::2].transpose(2, 3), 2, padding=1))
    helper_test_op([(2, 3, 11)], *both("max_pool1d", kernel_size=3, stride=2, padding=1, ceil_mode=True))
    helper_test_op([(3, 11)], *both("max_pool1d", kernel_size=2, dilation=2, return_indices=True))


# ------------------------------------------------------------------------------------------ average pooling
@pytest.mark.parametrize("shape, kwargs", [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((2, 3, 9, 9), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 3, 9, 9), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ((2, 3, 9, 10), dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), count_include_pad=False)),
    ((2, 3, 10, 10), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ((2, 3, 10, 10), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((2, 3, 10, 10), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ((2, 3, 10, 10), dict(kernel_size=2, stride=3, ceil_mode=True)),
    ((2, 3, 9, 9), dict(kernel_size=3, padding=1, divisor_override=4)),
    ((3, 7, 7), dict(kernel_size=2, stride=1)),  # unbatched
])
def test_avg_pool2d(shape, kwargs):
    helper_test_op([shape], *both("avg_pool2d", **kwargs))


def test_avg_pool_non_contiguous_and_1d():
    helper_test_op([(2, 3, 8, 12)], lambda x: TF.avg_pool2d(x[..., ::2], 3, 2, 1, count_include_pad=False),
                   lambda x: F.avg_pool2d(x[..., ::2], 3, 2, 1, count_include_pad=False))
    helper_test_op([(2, 3, 11)], *both("avg_pool1d", kernel_size=3, stride=2, padding=1, ceil_mode=True))
    helper_test_op([(3, 11)], *both("avg_pool1d", kernel_size=4, stride=3, padding=2,
                                    count_include_pad=False))


# ------------------------------------------------------------------------------------------ adaptive
@pytest.mark.parametrize("shape, size", [
    ((2, 3, 8, 8), (4, 4)),  # divisible
    ((2, 3, 8, 12), 4),
    ((2, 3, 7, 9), (3, 4)),  # non-divisible: overlapping windows
    ((2, 3, 5, 5), (7, 3)),  # more outputs than inputs
    ((2, 3, 7, 9), (None, 2)),
    ((2, 3, 7, 9), 1),  # global average pooling
    ((3, 10, 6), (3, 5)),  # unbatched
])
def test_adaptive_avg_pool2d(shape, size):
    helper_test_op([shape], *both("adaptive_avg_pool2d", size))


def test_adaptive_avg_pool_non_contiguous_and_1d():
    helper_test_op([(2, 3, 9, 8)], lambda x: TF.adaptive_avg_pool2d(x.transpose(2, 3), (3, 4)),
                   lambda x: F.adaptive_avg_pool2d(x.transpose(2, 3), (3, 4)))
    helper_test_op([(2, 3, 10)], *both("adaptive_avg_pool1d", 3))


# ------------------------------------------------------------------------------------------ unfold / fold
@pytest.mark.parametrize("shape, kwargs", [
    ((2, 3, 6, 7), dict(kernel_size=2)),
    ((2, 3, 9, 8), dict(kernel_size=(3, 2), dilation=(2, 1), padding=(1, 2), stride=(2, 3))),
    ((3, 5, 5), dict(kernel_size=3, padding=1)),  # unbatched
])
def test_unfold(shape, kwargs):
    helper_test_op([shape], *both("unfold", **kwargs))


@pytest.mark.parametrize("shape, kwargs", [
    ((2, 12, 30), dict(output_size=(6, 7), kernel_size=2)),
    ((2, 18, 16), dict(output_size=(9, 8), kernel_size=(3, 2), dilation=(2, 1), padding=(1, 2),
                       stride=(2, 3))),
    ((27, 25), dict(output_size=5, kernel_size=3, padding=1)),  # unbatched
])
def test_fold(shape, kwargs):
    helper_test_op([shape], *both("fold", **kwargs))


def test_fold_of_unfold_counts_window_overlaps():
    x = zt.ones(1, 2, 5, 5)
    got = F.fold(F.unfold(x, 3, padding=1), (5, 5), 3, padding=1)
    want = TF.fold(TF.unfold(torch.ones(1, 2, 5, 5), 3, padding=1), (5, 5), 3, padding=1)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


# ------------------------------------------------------------------------------------- finite differences
def test_gradcheck_conv():
    gradcheck(lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1, dilation=2),
              [(2, 2, 7), (3, 2, 3), (3,)])
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
              [(1, 4, 5, 5), (4, 2, 3, 2), (4,)])
    gradcheck(lambda x, w: F.conv2d(x, w, padding="same"), [(1, 2, 4, 4), (2, 2, 2, 2)])


def test_gradcheck_pooling():
    values = [np.random.default_rng(0).permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) / 10.0]  # no ties
    gradcheck(lambda x: F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True), None, values=values)
    gradcheck(lambda x: F.max_pool2d(x, 2, dilation=2), None, values=values)
    gradcheck(lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
              [(1, 2, 6, 6)])
    gradcheck(lambda x: F.adaptive_avg_pool2d(x, (4, 3)), [(1, 2, 7, 5)])


def test_gradcheck_unfold_fold():
    gradcheck(lambda x: F.unfold(x, (2, 3), dilation=(1, 2), padding=1, stride=2), [(1, 2, 5, 6)])
    gradcheck(lambda x: F.fold(x, (5, 6), (2, 3), dilation=(1, 2), padding=1, stride=2), [(1, 12, 6)])


def test_gradgradcheck_conv2d():
    gradgradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2),
                  [(1, 2, 4, 4), (2, 1, 3, 3), (2,)])
    gradgradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1), [(2, 2, 4, 4), (3, 2, 3, 3), (3,)])


def test_gradgradcheck_pooling():
    values = [np.random.default_rng(1).permutation(2 * 5 * 5).reshape(1, 2, 5, 5) / 10.0]
    gradgradcheck(lambda x: F.max_pool2d(x, 2, stride=1) ** 2, None, values=values)
    gradgradcheck(lambda x: F.avg_pool2d(x, 2, padding=1) ** 2, [(1, 1, 4, 4)])


# ------------------------------------------------------------------------------------------ errors
def _t(*shape, dtype=zt.float32):
    return zt.zeros(*shape, dtype=dtype)


@pytest.mark.parametrize("call, match", [
    (lambda: F.conv2d(_t(3, 4), _t(4, 3, 3, 3)),
     r"conv2d: expected 3D \(unbatched\) or 4D \(batched\) input"),
    (lambda: F.conv2d(_t(1, 2, 3, 4, 5), _t(4, 3, 3, 3)), r"conv2d: expected 3D .* shape \(1, 2, 3, 4, 5\)"),
    (lambda: F.conv1d(_t(2, 3, 4, 4), _t(4, 3, 3)), r"conv1d: expected 2D \(unbatched\) or 3D"),
    (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3)), r"conv2d: expected weight of 4 dims .* \(4, 3, 3\)"),
    (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 2, 3, 3)),
     r"expected input of shape \(2, 3, 5, 5\) to have 2 channels"),
    (lambda: F.conv2d(_t(2, 4, 5, 5), _t(3, 2, 3, 3), groups=2), r"groups=2 must divide out_channels"),
    (lambda: F.conv2d(_t(2, 4, 5, 5), _t(4, 4, 3, 3), groups=0),
     r"conv2d: groups must be a positive integer"),
    (lambda: F.conv2d(_t(2, 3, 2, 2), _t(4, 3, 3, 3)), r"padded input size per channel \(2 x 2\) is smaller"),
    (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), stride=0), r"conv2d: non-positive stride"),
    (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), dilation=(1, 0)), r"conv2d: dilation must be positive"),
    (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), padding=-1), r"conv2d: negative padding"),
    (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), padding="same", stride=2),
     r"'same' is not supported for str"),
    (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), padding="full"),
     r"conv2d: invalid padding string 'full'"),
    (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), stride=(1, 1, 1)),
     r"stride to be a single integer .* 2 val"),
    (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), _t(3)),
     r"expected bias of shape \(4,\) .* got bias of shape"),
    (lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3, dtype=zt.float64)),
     r"input dtype .*float32 and weight dtype .*float64"),
    (lambda: F.conv2d(np.zeros((2, 3, 5, 5)), _t(4, 3, 3, 3)), r"conv2d: expected input to be a Tensor"),
    (lambda: F.max_pool2d(_t(2, 3, 5, 5), 3, padding=2),
     r"max_pool2d: pad should be at most half .* pad=2 and kernel_size=3"),
    (lambda: F.max_pool2d(_t(2, 3, 5, 5), 0), r"max_pool2d: kernel_size must be greater than zero"),
    (lambda: F.max_pool2d(_t(2, 3, 5, 5), 2, stride=0), r"max_pool2d: stride must be greater than zero"),
    (lambda: F.max_pool2d(_t(2, 3, 1, 1), 2), r"max_pool2d: .* output size \(0 x 0\) is too small"),
    (lambda: F.max_pool2d(_t(3, 5), 2), r"max_pool2d: expected 3D \(unbatched\) or 4D"),
    (lambda: F.max_pool2d(_t(1, 3, 5, 5), (2, 2, 2)),
     r"kernel_size to be a single integer value or a list of 2"),
    (lambda: F.max_pool1d(_t(1, 3, 5), 3, padding=2), r"max_pool1d: pad should be at most half"),
    (lambda: F.avg_pool2d(_t(2, 3, 5, 5), 3, padding=2), r"avg_pool2d: pad should be at most half"),
    (lambda: F.avg_pool2d(_t(1, 3, 5, 5), 2, divisor_override=0),
     r"avg_pool2d: divisor_override must be a non-zero"),
    (lambda: F.adaptive_avg_pool2d(_t(3, 5), 2), r"adaptive_avg_pool2d: expected 3D \(unbatched\) or 4D"),
    (lambda: F.adaptive_avg_pool2d(_t(1, 3, 5, 5), (2, -1)),
     r"adaptive_avg_pool2d: output_size must hold non-neg"),
    (lambda: F.adaptive_avg_pool2d(_t(1, 3, 5, 5), (1, 2, 3)),
     r"output_size must be an int or a tuple of 2 ints"),
    (lambda: F.adaptive_avg_pool2d(_t(1, 3, 5, 5, dtype=zt.int64), 2), r"expected a floating-point input"),
    (lambda: F.adaptive_avg_pool2d(_t(1, 3, 0, 5), 2), r"non-zero channel and spatial sizes"),
    (lambda: F.unfold(_t(1, 3, 2, 2), 3), r"unfold: .* number of sliding blocks would be 0 x 0"),
    (lambda: F.unfold(_t(1, 3, 4, 4), 2, stride=0), r"unfold: stride must be positive"),
    (lambda: F.fold(_t(1, 12, 15), (5, 5), 2), r"fold: .* number of sliding blocks 4 \* 4 = 16, got 15"),
    (lambda: F.fold(_t(1, 13, 16), (5, 5), 2), r"fold: expected input's dimension 1 \(13\) to be divisible"),
    (lambda: F.fold(_t(13, 16, 1, 1), (5, 5), 2), r"fold: expected 2D \(unbatched\) or 3D"),
])
def test_errors(call, match):
    with pytest.raises((RuntimeError, TypeError), match=match):
        call()


def test_error_types_match_torch():
    with pytest.raises(RuntimeError):
        TF.conv2d(torch.zeros(2, 3, 5, 5), torch.zeros(4, 2, 3, 3))
    with pytest.raises(RuntimeError, match="groups=1"):
        F.conv2d(_t(2, 3, 5, 5), _t(4, 2, 3, 3))
    with pytest.raises(TypeError, match="conv1d: expected weight to be a Tensor"):
        F.conv1d(_t(2, 3, 5), [[1.0]])


def test_mixed_devices_raise(fake_cuda):  # noqa: F811  (the fixture)
    x, w = zt.randn(1, 2, 5, 5), zt.randn(3, 2, 3, 3)
    with pytest.raises(RuntimeError, match="conv2d: expected input and weight on the same device"):
        F.conv2d(x, w.to(fake_cuda))
    with pytest.raises(RuntimeError, match="conv2d: expected input and bias on the same device"):
        F.conv2d(x, w, zt.zeros(3).to(fake_cuda))
    # all on the other device: works, and the gradient stays there
    xc = x.to(fake_cuda).requires_grad_()
    y = F.max_pool2d(F.conv2d(xc, w.to(fake_cuda), padding=1), 2)
    y.sum().backward()
    assert y.device == fake_cuda and xc.grad.device == fake_cuda
    np.testing.assert_allclose(y.numpy(), F.max_pool2d(F.conv2d(x, w, padding=1), 2).numpy())


# ------------------------------------------------------------------------------------------ interpolate
INTERPOLATE_CASES = [
    ((2, 3, 5, 7), {"scale_factor": 2}),
    ((2, 3, 5, 7), {"size": (3, 11)}),
    ((2, 3, 5, 7), {"scale_factor": (1.5, 0.6)}),
    ((2, 3, 5, 7), {"size": (3, 11), "mode": "nearest-exact"}),
    ((2, 3, 9), {"scale_factor": 0.5, "mode": "linear"}),
    ((2, 3, 5, 7), {"size": (8, 4), "mode": "bilinear"}),
    ((2, 3, 5, 7), {"size": (8, 4), "mode": "bilinear", "align_corners": True}),
    ((2, 3, 5, 7), {"scale_factor": 1.7, "mode": "bilinear"}),
    ((2, 3, 5, 7), {"scale_factor": 2.5, "mode": "bilinear", "recompute_scale_factor": True}),
    ((2, 3, 5, 1), {"size": (5, 3), "mode": "bilinear", "align_corners": True}),
    ((1, 2, 3, 4, 5), {"size": (5, 3, 7), "mode": "trilinear"}),
    ((2, 3, 6, 8), {"size": (3, 4), "mode": "area"}),
]


@pytest.mark.parametrize("shape, kw", INTERPOLATE_CASES, ids=[str(c[1]) for c in INTERPOLATE_CASES])
def test_interpolate(shape, kw):
    helper_test_op([shape], lambda x: torch.nn.functional.interpolate(x, **kw), lambda x: F.interpolate(x, **kw))


def test_upsample_and_pixel_shuffle_modules():
    helper_test_op([(2, 3, 4, 5)], torch.nn.Upsample(scale_factor=2, mode="bilinear"),
                   zt.nn.Upsample(scale_factor=2, mode="bilinear"))
    helper_test_op([(2, 8, 3, 5)], torch.nn.PixelShuffle(2), zt.nn.PixelShuffle(2))
    helper_test_op([(2, 2, 6, 4)], torch.nn.PixelUnshuffle(2), zt.nn.PixelUnshuffle(2))
    helper_test_op([(3, 18, 2, 2)], lambda x: torch.nn.functional.pixel_shuffle(x, 3),
                   lambda x: F.pixel_shuffle(x, 3))
    assert repr(zt.nn.Upsample(size=(3, 4), mode="bilinear")) == repr(torch.nn.Upsample(size=(3, 4), mode="bilinear"))


@pytest.mark.parametrize("kw, message", [
    ({"scale_factor": 2, "mode": "cubic"}, "mode must be one of"),
    ({"size": 4, "scale_factor": 2}, "give exactly one of size and scale_factor"),
    ({"size": (4, 4, 4)}, "size must be one int or 2 of them"),
    ({"scale_factor": 2, "mode": "trilinear"}, "mode 'trilinear' expects 5-d input, got 4-d"),
    ({"scale_factor": 2, "align_corners": True}, "align_corners is only for the linear modes"),
    ({"scale_factor": 0.1}, "the output size must be positive"),
])
def test_interpolate_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        F.interpolate(zt.ones(1, 2, 3, 3), **kw)
    with pytest.raises(ValueError, match=r"pixel_shuffle: expected \(\*, C \* 2\^2, H, W\) input"):
        F.pixel_shuffle(zt.ones(1, 3, 2, 2), 2)
