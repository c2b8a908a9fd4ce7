"""Losses (zigtensor.ops.loss, exposed as zigtensor.nn.functional) against torch.nn.functional.

Class-index targets are fixed int64 arrays passed through `values=` (they get no gradient); class weights and
pos_weight are constants built per library inside the lambdas (torch refuses a gradient for nll's weight).
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle import gradcheck, gradgradcheck, helper_test_op, torch

import zigtensor as zt
import zigtensor.nn.functional as F

TF = torch.nn.functional
REDUCTIONS = ["none", "mean", "sum"]

C = 5
T = np.array([0, 3, 1, 4, 2, 4, 0, 1], dtype=np.int64)  # (8,) class indices
T_IGN = np.array([0, -100, 1, 4, -100, 4, 0, 1], dtype=np.int64)  # with ignored (default ignore_index)
T_ALL_IGN = np.full(8, -100, dtype=np.int64)
T_ND = np.random.default_rng(3).integers(0, C, size=(2, 3, 4)).astype(np.int64)  # for input (2, C, 3, 4)
T_ND_IGN = np.where(np.random.default_rng(4).random((2, 3, 4)) < 0.3, -100, T_ND)
W = np.array([0.5, 2.0, 1.0, 0.25, 1.5])  # class weights
W_ZERO_FOR_PRESENT = np.array([0.0, 0.0, 1.0, 1.0, 1.0])  # zero weight on classes 0 and 1


def _x(shape, seed=0, low=-2.0, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def _probs(shape, seed=1, axis=1):
    p = np.random.default_rng(seed).uniform(0.05, 1.0, size=shape)
    return p / p.sum(axis=axis, keepdims=True)


def check(name, values, consts=None, forward_only=False, **kwargs):
    """One case: torch.nn.functional.<name>(*values, **kwargs) vs zigtensor's, float32 inputs.

    consts: keyword arguments given as float arrays (weight, pos_weight), made into constants per library.
    """
    consts = consts or {}

    def t_fn(*a):
        extra = {k: torch.tensor(v, dtype=torch.float32) for k, v in consts.items()}
        return getattr(TF, name)(*a, **kwargs, **extra)

    def z_fn(*a):
        extra = {k: zt.tensor(v, dtype=zt.float32) for k, v in consts.items()}
        return getattr(F, name)(*a, **kwargs, **extra)

    helper_test_op([], t_fn, z_fn, values=values, forward_only=forward_only)


# ------------------------------------------------------------------------------------------ cross_entropy
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, W], ids=["noweight", "weight"])
@pytest.mark.parametrize("target", [T, T_IGN], ids=["all", "ignored"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_indices(reduction, weight, target, smoothing):
    consts = {} if weight is None else {"weight": weight}
    check("cross_entropy", [_x((8, C)), target], consts, reduction=reduction, label_smoothing=smoothing)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, W], ids=["noweight", "weight"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_indices_nd(reduction, weight, smoothing):
    consts = {} if weight is None else {"weight": weight}
    check("cross_entropy", [_x((2, C, 3, 4)), T_ND_IGN], consts, reduction=reduction,
          label_smoothing=smoothing)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_indices_3d(reduction):
    check("cross_entropy", [_x((2, C, 3)), T_ND[:, :, 0]], {"weight": W}, reduction=reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_unbatched(reduction, smoothing):
    check("cross_entropy", [_x((C,)), np.array(3, dtype=np.int64)], {"weight": W}, reduction=reduction,
          label_smoothing=smoothing)


@pytest.mark.parametrize("ignore_index", [1, 4])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_ignore_index_in_range(ignore_index, reduction):
    check("cross_entropy", [_x((8, C)), T], {"weight": W}, ignore_index=ignore_index, reduction=reduction,
          label_smoothing=0.1)


@pytest.mark.parametrize("weight", [None, W], ids=["noweight", "weight"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_all_ignored(weight, smoothing, reduction):  # mean: 0 / 0 = nan, as in torch
    consts = {} if weight is None else {"weight": weight}
    check("cross_entropy", [_x((8, C)), T_ALL_IGN], consts, reduction=reduction, label_smoothing=smoothing)


def test_cross_entropy_zero_weight_sum_is_nan():
    check("cross_entropy", [_x((8, C)), np.array([0, 1, 0, 1, -100, 1, 0, 0])],
          {"weight": W_ZERO_FOR_PRESENT}, forward_only=True)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_empty_batch(reduction):
    check("cross_entropy", [_x((0, C)), np.zeros(0, dtype=np.int64)], reduction=reduction)
    check("cross_entropy", [_x((0, C)), np.zeros((0, C))], reduction=reduction)


def test_cross_entropy_uint8_target():
    check("cross_entropy", [_x((8, C)), T.astype(np.uint8)])


def test_cross_entropy_large_logits_stay_finite():
    check("cross_entropy", [_x((8, C), low=-300, high=300), T])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, W], ids=["noweight", "weight"])
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
def test_cross_entropy_probabilities(reduction, weight, smoothing):
    consts = {} if weight is None else {"weight": weight}
    check("cross_entropy", [_x((8, C)), _probs((8, C))], consts, reduction=reduction,
          label_smoothing=smoothing)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities_nd_and_unbatched(reduction):
    check("cross_entropy", [_x((2, C, 3, 4)), _probs((2, C, 3, 4))], {"weight": W}, reduction=reduction,
          label_smoothing=0.1)
    check("cross_entropy", [_x((C,)), _probs((C,), axis=0)], {"weight": W}, reduction=reduction,
          label_smoothing=0.1)


def test_cross_entropy_keeps_float32_and_is_lean():
    x = zt.tensor(_x((128, 10)).astype(np.float32), requires_grad=True)
    loss = F.cross_entropy(x, zt.tensor(np.arange(128) % 10))
    assert loss.dtype is zt.float32 and loss.shape == ()
    loss.backward()
    assert x.grad.dtype is zt.float32
    # mean(-logp[n, t[n]]) = sum -> scale -> getitem -> log_softmax: no masking ops when nothing is ignored
    depth, node = 0, loss.grad_fn
    while node is not None:
        depth += 1
        node = next((f for f, _ in node.next_functions if f is not None), None)
    assert depth <= 4, f"cross_entropy built a graph {depth} nodes deep"


# ------------------------------------------------------------------------------------------ nll_loss
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, W], ids=["noweight", "weight"])
@pytest.mark.parametrize("target", [T, T_IGN], ids=["all", "ignored"])
def test_nll_loss(reduction, weight, target):
    consts = {} if weight is None else {"weight": weight}
    check("nll_loss", [_x((8, C)), target], consts, reduction=reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_nd_unbatched_ignore(reduction):
    check("nll_loss", [_x((2, C, 3, 4)), T_ND_IGN], {"weight": W}, reduction=reduction)
    check("nll_loss", [_x((C,)), np.array(2, dtype=np.int64)], reduction=reduction)
    check("nll_loss", [_x((8, C)), T], {"weight": W}, ignore_index=0, reduction=reduction)
    check("nll_loss", [_x((8, C)), T_ALL_IGN], reduction=reduction)
    check("nll_loss", [_x((0, C, 2)), np.zeros((0, 2), dtype=np.int64)], reduction=reduction)


def test_nll_loss_with_minus_inf_on_ignored_rows():
    x = _x((3, C))
    x[1, 0] = -np.inf  # the ignored row's placeholder class: must not turn into nan
    check("nll_loss", [x, np.array([2, -100, 4])], {"weight": W}, forward_only=True)


# ------------------------------------------------------------------------------------------ regression
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name, kw", [
    ("mse_loss", {}), ("l1_loss", {}),
    ("smooth_l1_loss", {}), ("smooth_l1_loss", {"beta": 0.5}), ("smooth_l1_loss", {"beta": 0.0}),
    ("huber_loss", {}), ("huber_loss", {"delta": 0.3}), ("huber_loss", {"delta": 2.5}),
])
def test_regression(name, kw, reduction):
    check(name, [_x((4, 6), 0), _x((4, 6), 1)], reduction=reduction, **kw)


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"])
def test_regression_broadcast_warns_like_torch(name):
    with pytest.warns(UserWarning, match="target size"):
        check(name, [_x((4, 6), 0), _x((6,), 1)], reduction="none")


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"])
def test_regression_empty(name):
    check(name, [_x((0, 3), 0), _x((0, 3), 1)], forward_only=True)
    check(name, [_x((0, 3), 0), _x((0, 3), 1)], reduction="sum")


# -------------------------------------------------------------------------------------- binary cross entropy
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, _x((6,), 5, 0.2, 2.0), _x((4, 6), 6, 0.2, 2.0)],
                         ids=["noweight", "weight_row", "weight_full"])
def test_binary_cross_entropy(reduction, weight):
    consts = {} if weight is None else {"weight": weight}
    check("binary_cross_entropy", [_x((4, 6), 0, 0.02, 0.98), _x((4, 6), 1, 0.0, 1.0)], consts,
          reduction=reduction)


def test_binary_cross_entropy_clamps_log_at_minus_100():
    p = np.array([[0.0, 1.0, 0.5, 1e-60], [1.0, 0.0, 1 - 1e-12, 0.3]])
    t = np.array([[1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.5]])
    check("binary_cross_entropy", [p, t], reduction="none", forward_only=True)
    x, y = zt.tensor(p, requires_grad=True), zt.tensor(t)
    F.binary_cross_entropy(x, y).backward()
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, _x((6,), 5, 0.2, 2.0)], ids=["noweight", "weight"])
@pytest.mark.parametrize("pos_weight", [None, _x((6,), 7, 0.5, 3.0), _x((4, 1), 8, 0.5, 3.0)],
                         ids=["nopos", "pos_row", "pos_col"])
def test_binary_cross_entropy_with_logits(reduction, weight, pos_weight):
    consts = {k: v for k, v in (("weight", weight), ("pos_weight", pos_weight)) if v is not None}
    check("binary_cross_entropy_with_logits", [_x((4, 6), 0, -4, 4), _x((4, 6), 1, 0.0, 1.0)], consts,
          reduction=reduction)


def test_binary_cross_entropy_with_logits_extremes():
    x = np.array([[-200.0, -30.0, 0.0, 30.0, 200.0], [0.0, 1e-3, -1e-3, 88.0, -88.0]])
    t = np.array([[1.0, 0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.5, 1.0, 0.0]])
    check("binary_cross_entropy_with_logits", [x, t], {"pos_weight": np.full(5, 2.0)}, reduction="none")


# ------------------------------------------------------------------------------------------ kl_div
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")  # torch's, for 'mean'
@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    tgt = np.log(_probs((4, 6))) if log_target else _probs((4, 6))
    check("kl_div", [np.log(_probs((4, 6), seed=2)), tgt], reduction=reduction, log_target=log_target)


def test_kl_div_zero_target_and_edge_shapes():
    tgt = _probs((4, 6))
    tgt[0, :3] = 0.0  # 0 * log 0 = 0 (torch's gradient w.r.t. such a target is nan; ours is finite, so the
    # target is a constant here)
    helper_test_op([], lambda x: TF.kl_div(x, torch.tensor(tgt, dtype=torch.float32), reduction="batchmean"),
                   lambda x: F.kl_div(x, zt.tensor(tgt, dtype=zt.float32), reduction="batchmean"),
                   values=[np.log(_probs((4, 6), seed=2))])
    check("kl_div", [np.array(-0.3), np.array(0.4)], reduction="batchmean")  # 0-d: no division
    check("kl_div", [_x((0, 3)), _x((0, 3), 1, 0.1, 1.0)], reduction="batchmean", forward_only=True)


# -------------------------------------------------------------------------------------- float64 gradchecks
def _t(a):
    return zt.tensor(a)


@pytest.mark.parametrize("case", [
    lambda x: F.cross_entropy(x, _t(T_IGN), weight=_t(W), label_smoothing=0.2),
    lambda x: F.cross_entropy(x, _t(T), reduction="none"),
    lambda x, p: F.cross_entropy(x, p, weight=_t(W), label_smoothing=0.1),
    lambda x: F.nll_loss(x, _t(T_IGN), weight=_t(W)),
])
def test_gradcheck_classification(case):
    n = case.__code__.co_argcount
    gradcheck(case, [], values=[_x((8, C)), _probs((8, C))][:n])


def test_gradcheck_classification_nd():
    gradcheck(lambda x: F.cross_entropy(x, _t(T_ND_IGN[:, :2, :2]), weight=_t(W), label_smoothing=0.1),
              [(2, C, 2, 2)])


@pytest.mark.parametrize("case", [
    lambda x, y: F.mse_loss(x, y),
    lambda x, y: F.l1_loss(x, y, reduction="sum"),
    lambda x, y: F.smooth_l1_loss(x, y, beta=0.7),
    lambda x, y: F.huber_loss(x, y, reduction="none", delta=0.6),
    lambda x, y: F.binary_cross_entropy_with_logits(x, y, weight=_t(_x((4,), 3, 0.5, 1.5)),
                                                    pos_weight=_t(_x((4,), 4, 0.5, 3.0))),
    lambda x, y: F.kl_div(x, y.abs() + 0.1, reduction="batchmean"),
    lambda x, y: F.kl_div(x, y, reduction="sum", log_target=True),
])
def test_gradcheck_elementwise(case):
    gradcheck(case, [(3, 4), (3, 4)])


def test_gradcheck_binary_cross_entropy():
    gradcheck(lambda p, t: F.binary_cross_entropy(p, t, weight=_t(_x((4,), 3, 0.5, 1.5))), [],
              values=[_x((3, 4), 0, 0.1, 0.9), _x((3, 4), 1, 0.0, 1.0)])


def test_gradgradcheck():
    gradgradcheck(lambda x: F.cross_entropy(x, _t(T_IGN[:4]), weight=_t(W), label_smoothing=0.2), [(4, C)])
    gradgradcheck(lambda x, p: F.cross_entropy(x, p), [], values=[_x((3, C)), _probs((3, C))])
    gradgradcheck(lambda x, y: F.mse_loss(x, y), [(3, 4), (3, 4)])


# ------------------------------------------------------------------------------------------ errors
def _f32(a):
    return zt.tensor(np.asarray(a, dtype=np.float32))


# NOTE: made inside each test, on the device the case runs on (tensors made at import would be on the CPU)
def _inputs(kind: str):
    x = _f32(_x((8, C)))
    return {"xt": (x, zt.tensor(T)), "xx": (x, x), "pp": (x.sigmoid(), x.sigmoid())}[kind]


@pytest.mark.parametrize("fn, kind", [
    (F.cross_entropy, "xt"), (F.nll_loss, "xt"), (F.mse_loss, "xx"), (F.l1_loss, "xx"),
    (F.smooth_l1_loss, "xx"), (F.huber_loss, "xx"), (F.kl_div, "xx"),
    (F.binary_cross_entropy, "pp"), (F.binary_cross_entropy_with_logits, "xx"),
])
def test_bad_reduction(fn, kind):
    with pytest.raises(ValueError, match=rf"{fn.__name__}: reduction must be one of .*got 'avg'"):
        fn(*_inputs(kind), reduction="avg")


def test_classification_errors():
    X, TT = _inputs("xt")
    with pytest.raises(RuntimeError, match="cross_entropy: expected target of class indices with dtype "
                                           "int64"):
        F.cross_entropy(X, TT.to(zt.int32))
    with pytest.raises(ValueError, match=r"nll_loss: expected input batch size \(8\) to match"):
        F.nll_loss(X, TT[:5])
    with pytest.raises(ValueError, match=r"expected target of shape \(2, 3, 4\) for input of shape"):
        F.cross_entropy(_f32(_x((2, C, 3, 4))), zt.tensor(T_ND[:, :, :2]))
    with pytest.raises(ValueError, match="unbatched input of shape .* expects a 0-d target"):
        F.cross_entropy(_f32(_x((C,))), zt.tensor(np.array([1])))
    with pytest.raises(IndexError, match=r"cross_entropy: target 5 is out of bounds: expected class "
                                         r"indices in \[0, 4\] \(or ignore_index=-100\)"):
        F.cross_entropy(X, zt.tensor(np.where(T == 4, 5, T)))
    with pytest.raises(IndexError, match="nll_loss: target -1 is out of bounds"):
        F.nll_loss(X, zt.tensor(np.where(T == 4, -1, T)))
    with pytest.raises(RuntimeError, match=r"cross_entropy: weight tensor should be defined .* got weight of "
                                           r"shape \(4,\) \(expected \(5,\)\)"):
        F.cross_entropy(X, TT, weight=_f32(np.ones(4)))
    with pytest.raises(RuntimeError, match="nll_loss: weight tensor"):
        F.nll_loss(X, TT, weight=_f32(np.ones((C, 1))))
    with pytest.raises(ValueError, match="cross_entropy: a floating-point target holds class probabilities"):
        F.cross_entropy(X, _f32(np.ones((8, 4))))
    with pytest.raises(ValueError, match="cross_entropy: label_smoothing must be between 0.0 and 1.0, "
                                         "got 1.5"):
        F.cross_entropy(X, TT, label_smoothing=1.5)
    with pytest.raises(ValueError, match="cross_entropy: expected input of shape"):
        F.cross_entropy(_f32(1.0), zt.tensor(np.array(0)))
    with pytest.raises(RuntimeError, match="nll_loss: expected a floating-point input, got .*int64"):
        F.nll_loss(TT.reshape(4, 2), TT[:4])


def test_binary_and_regression_errors():
    X, _ = _inputs("xt")
    p = X.sigmoid()
    with pytest.raises(RuntimeError, match=r"binary_cross_entropy: all elements of input should be between "
                                           r"0 and 1 .*got 1\.5"):
        F.binary_cross_entropy(_f32([0.2, 1.5]), _f32([0.0, 1.0]))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(_f32([0.2, -0.1]), _f32([0.0, 1.0]))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(_f32([0.2, np.nan]), _f32([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: expected target of the input's shape "
                                         r"\(8, 5\)"):
        F.binary_cross_entropy(p, p[:, :2])
    with pytest.raises(RuntimeError, match=r"binary_cross_entropy: weight of shape \(3,\) does not "
                                           r"broadcast"):
        F.binary_cross_entropy(p, p, weight=_f32(np.ones(3)))
    with pytest.raises(ValueError, match="binary_cross_entropy_with_logits: target size"):
        F.binary_cross_entropy_with_logits(X, X[:4])
    with pytest.raises(RuntimeError, match=r"binary_cross_entropy_with_logits: pos_weight of shape \(2,\)"):
        F.binary_cross_entropy_with_logits(X, X, pos_weight=_f32(np.ones(2)))
    with pytest.raises(RuntimeError, match="smooth_l1_loss: beta must be non-negative, got -1"):
        F.smooth_l1_loss(X, X, beta=-1)
    with pytest.raises(RuntimeError, match="huber_loss: delta must be positive, got 0"):
        F.huber_loss(X, X, delta=0)
    with pytest.raises(ValueError, match=r"mse_loss: shapes \(8, 5\) and \(3,\) cannot be broadcast"):
        F.mse_loss(X, X[0, :3])
    with pytest.raises(TypeError, match="l1_loss: expected target to be a Tensor, got list"):
        F.l1_loss(X, [1.0])
    with pytest.raises(ValueError, match="kl_div: reduction must be one of .*'batchmean'"):
        F.kl_div(X, X, reduction="batch_mean")


# ------------------------------------------------------------------------------------------ nn.*Loss modules
P = _probs((8, C))  # targets in (0, 1) for the binary losses and KL


@pytest.mark.parametrize("name, options, consts, values, prepare", [
    ("L1Loss", {}, {}, [_x((8, C), 0), _x((8, C), 1)], None),
    ("MSELoss", {"reduction": "sum"}, {}, [_x((8, C), 0), _x((8, C), 1)], None),
    ("SmoothL1Loss", {"beta": 0.5, "reduction": "none"}, {}, [_x((8, C), 0), _x((8, C), 1)], None),
    ("HuberLoss", {"delta": 0.7}, {}, [_x((8, C), 0), _x((8, C), 1)], None),
    ("NLLLoss", {"ignore_index": 1}, {"weight": W}, [_x((8, C)), T], "log_softmax"),
    ("CrossEntropyLoss", {"label_smoothing": 0.1}, {"weight": W}, [_x((8, C)), T_IGN], None),
    ("CrossEntropyLoss", {"reduction": "sum"}, {}, [_x((8, C)), P], None),
    ("BCELoss", {}, {"weight": _x((8, C), 5, 0.5, 2.0)}, [_x((8, C)), P], "sigmoid"),
    ("BCEWithLogitsLoss", {"reduction": "none"}, {"pos_weight": W}, [_x((8, C)), P], None),
    ("KLDivLoss", {"reduction": "batchmean", "log_target": True}, {}, [_x((8, C)), np.log(P)], "log_softmax"),
])
def test_loss_modules_match_torch(name, options, consts, values, prepare):
    # the module made once with its options (tensors as buffers), called like PyTorch's
    def make(lib, nn_module):
        extra = {k: lib.tensor(v, dtype=lib.float32) for k, v in consts.items()}
        loss = getattr(nn_module, name)(**options, **extra)
        first = {None: lambda a: a, "sigmoid": lambda a: a.sigmoid(), "log_softmax": lambda a: a.log_softmax(1)}
        return lambda a, b: loss(first[prepare](a), b)

    helper_test_op([], lambda *a: make(torch, torch.nn)(*a), lambda *a: make(zt, zt.nn)(*a), values=values)


def test_loss_modules_keep_weights_as_buffers_and_check_options():
    w = zt.tensor(W, dtype=zt.float32)
    loss = zt.nn.CrossEntropyLoss(weight=w, ignore_index=3, label_smoothing=0.2)
    assert list(loss.state_dict()) == ["weight"] and loss.weight is w  # as torch.nn.CrossEntropyLoss
    assert repr(loss) == "CrossEntropyLoss(ignore_index=3, label_smoothing=0.2)"
    assert repr(zt.nn.KLDivLoss(reduction="batchmean")) == "KLDivLoss(reduction='batchmean', log_target=False)"
    with pytest.raises(ValueError, match="MSELoss: reduction must be one of 'none', 'mean', 'sum', got 'avg'"):
        zt.nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: label_smoothing must be a number in \[0.0, 1.0\], "
                                         "got 1.5"):
        zt.nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="HuberLoss: delta must be > 0, got 0.0"):
        zt.nn.HuberLoss(delta=0.0)
    with pytest.raises(TypeError, match="'weight' must be a Tensor or None, got ndarray"):
        zt.nn.NLLLoss(weight=W)
