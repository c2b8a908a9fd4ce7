"""Reductions against PyTorch: dim as None, int, tuple or negative; keepdim; empty and 0-d inputs."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import helper_test_op, torch

import zigtensor as zt

DIMS = [None, 0, 1, -1, (0, 2), (-1, -3), (1,), ()]


@pytest.mark.parametrize("dim", DIMS, ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
def test_sum_mean(dim, keepdim):
    for name in ("sum", "mean"):
        if dim is None:
            helper_test_op([(2, 3, 4)], lambda x, name=name: getattr(x, name)())
            continue
        helper_test_op([(2, 3, 4)], lambda x, name=name: getattr(x, name)(dim, keepdim=keepdim))
        helper_test_op([(2, 3, 4)], lambda x, name=name: getattr(x, name)(dim=dim, keepdim=keepdim),
                       layout="T")
        helper_test_op([(2, 3, 4)], lambda x, name=name: getattr(x, name)(dim, keepdim), layout="sliced")
        helper_test_op([(2, 3, 4)], lambda x, name=name: getattr(torch, name)(x, dim, keepdim),
                       lambda x, name=name: getattr(zt, name)(x, dim, keepdim))


def test_sum_special():
    helper_test_op([(0, 4)], lambda x: x.sum())
    helper_test_op([(0, 4)], lambda x: x.sum(0))
    helper_test_op([(0, 4)], lambda x: x.sum(1, keepdim=True))
    helper_test_op([(0, 4)], lambda x: x.mean(1))
    helper_test_op([()], lambda x: x.sum())
    helper_test_op([()], lambda x: x.sum(0))
    helper_test_op([()], lambda x: x.mean(-1, keepdim=True))
    helper_test_op([(3, 4)], lambda x: x.sum(dtype=torch.float64), lambda x: x.sum(dtype=zt.float64))
    helper_test_op(None, lambda x: x.sum(0), dtype=zt.int32, values=[np.array([[1, 2], [3, 4]])])
    helper_test_op(None, lambda x: x.sum(), dtype=zt.bool, values=[np.array([[True, False], [True, True]])])
    helper_test_op(None, lambda x: x.sum(1), dtype=zt.uint8, values=[np.array([[200, 100], [3, 4]])])
    helper_test_op([(4, 5)], lambda x: x.mean(dtype=torch.float64), lambda x: x.mean(dtype=zt.float64))
    helper_test_op(None, lambda x: x.mean(dtype=torch.float32), lambda x: x.mean(dtype=zt.float32),
                   dtype=zt.int64, values=[np.array([1, 2, 4])])


@pytest.mark.parametrize("dim", [None, 0, -1, (0, 2), (1, -1)], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["var", "std"])
def test_var_std(name, dim, keepdim):
    if dim is None:
        helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)())
        helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(unbiased=False))
        return
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(dim, keepdim=keepdim))
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(dim, keepdim=keepdim, correction=0), layout="T")
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(dim, unbiased=False, keepdim=keepdim),
                   layout="sliced")
    helper_test_op([(3, 4, 5)], lambda x: getattr(x, name)(dim, keepdim=keepdim, correction=2))
    # n <= correction: inf (forward only; the gradient there is a sign pattern of infinities)
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(dim, keepdim=keepdim, correction=2),
                   forward_only=True)
    helper_test_op([(2, 3, 4)], lambda x: getattr(torch, name)(x, dim, keepdim=keepdim),
                   lambda x: getattr(zt, name)(x, dim, keepdim=keepdim))


def test_var_std_special():
    helper_test_op([()], lambda x: x.var(correction=0))
    helper_test_op([(0, 3)], lambda x: x.var(1))
    helper_test_op([(1, 3)], lambda x: x.var(0), forward_only=True)  # n - 1 == 0: nan, as in torch
    helper_test_op([(3, 4)], lambda x: x.std(0), dtype=zt.float64, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min(name):
    helper_test_op([(3, 4)], lambda x: getattr(x, name)())
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(1))
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(-1, keepdim=True))
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(dim=0), layout="T")
    helper_test_op([(3, 4)], lambda x: getattr(x, name)(1), layout="sliced")
    helper_test_op([(3, 4)], lambda x: getattr(torch, name)(x, 0), lambda x: getattr(zt, name)(x, 0))
    helper_test_op([(3, 4)], lambda x: getattr(torch, name)(x), lambda x: getattr(zt, name)(x))
    helper_test_op([()], lambda x: getattr(x, name)())
    helper_test_op([()], lambda x: getattr(x, name)(0))
    helper_test_op([(0, 4)], lambda x: getattr(x, name)(1))
    helper_test_op([(4, 0)], lambda x: getattr(x, name)(0, keepdim=True))
    helper_test_op(None, lambda x: getattr(x, name)(0), dtype=zt.int64, values=[np.array([[1, 5], [3, -4]])])
    # the whole-tensor form shares the gradient among tied extremes, the dim form picks one index
    helper_test_op(None, lambda x: getattr(x, name)(), values=[np.array([[1.0, 3.0], [3.0, 1.0]])])


def test_max_returns_values_indices():
    x = zt.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    out = x.max(1)
    assert out.values.tolist() == [5.0, 7.0] and out.indices.tolist() == [1, 0]
    values, indices = x.min(dim=0, keepdim=True)
    assert values.tolist() == [[1.0, 0.0, 2.0]] and indices.tolist() == [[0, 1, 0]]
    assert indices.dtype is zt.int64


@pytest.mark.parametrize("name", ["amax", "amin"])
def test_amax_amin(name):
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)())
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)((0, -1)))
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(1, keepdim=True), layout="T")
    helper_test_op(None, lambda x: getattr(x, name)(1), values=[np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 1.0]])])


@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_argmax_argmin(name):
    helper_test_op([(3, 4)], lambda x: getattr(x, name)())
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(1))
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(-1, keepdim=True))
    helper_test_op([(2, 3, 4)], lambda x: getattr(x, name)(0), layout="T")
    helper_test_op([(3, 4)], lambda x: getattr(x, name)(dim=1), layout="sliced")
    helper_test_op([(3, 4)], lambda x: getattr(torch, name)(x, 1), lambda x: getattr(zt, name)(x, 1))
    helper_test_op([(3, 4)], lambda x: getattr(x, name)(keepdim=True))
    helper_test_op([()], lambda x: getattr(x, name)())
    helper_test_op([()], lambda x: getattr(x, name)(0))
    helper_test_op([(0, 4)], lambda x: getattr(x, name)(1))
    helper_test_op(None, lambda x: getattr(x, name)(1), dtype=zt.int32,
                   values=[np.array([[1, 5, 5], [3, -4, 3]])])
    # ties: the first index, as in torch
    helper_test_op(None, lambda x: getattr(x, name)(), values=[np.array([1.0, 3.0, 3.0, 1.0])])


def test_prod():
    helper_test_op([(2, 3, 4)], lambda x: x.prod())
    helper_test_op([(2, 3, 4)], lambda x: x.prod(1))
    helper_test_op([(2, 3, 4)], lambda x: x.prod(-1, keepdim=True))
    helper_test_op([(2, 3, 4)], lambda x: x.prod(0), layout="T")
    helper_test_op([(3, 4)], lambda x: x.prod(1), layout="sliced")
    helper_test_op([(3, 4)], lambda x: torch.prod(x, 0), lambda x: zt.prod(x, 0))
    helper_test_op([(0, 4)], lambda x: x.prod(0))
    helper_test_op([(0, 4)], lambda x: x.prod())
    helper_test_op([()], lambda x: x.prod())
    helper_test_op([()], lambda x: x.prod(0))
    helper_test_op([(3, 1)], lambda x: x.prod(1))
    # zeros in the input: the gradient is the product of the others
    helper_test_op(None, lambda x: x.prod(1),
                   values=[np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 2.0], [1.0, 2.0, 3.0]])])
    helper_test_op(None, lambda x: x.prod(), values=[np.array([[0.0, 2.0], [3.0, 4.0]])])
    helper_test_op(None, lambda x: x.prod(1), dtype=zt.int32, values=[np.array([[1, 5, 2], [3, -4, 3]])])


@pytest.mark.parametrize("dim", [0, -1, (0, 2), (1,), (-1, -2)], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
def test_logsumexp(dim, keepdim):
    helper_test_op([(2, 3, 4)], lambda x: x.logsumexp(dim, keepdim=keepdim))
    helper_test_op([(2, 3, 4)], lambda x: x.logsumexp(dim, keepdim), layout="T")
    helper_test_op([(2, 3, 4)], lambda x: torch.logsumexp(x, dim, keepdim),
                   lambda x: zt.logsumexp(x, dim, keepdim),
                   layout="sliced")


def test_logsumexp_special():
    helper_test_op([(2, 3)], lambda x: x.logsumexp(1), low=-100, high=100)  # no overflow
    helper_test_op([()], lambda x: x.logsumexp(0))
    helper_test_op([(0, 3)], lambda x: x.logsumexp(0))
    helper_test_op([(0, 3)], lambda x: x.logsumexp(1))
    helper_test_op(None, lambda x: x.logsumexp(1), values=[np.array([[-np.inf, -np.inf], [0.0, 1.0]])],
                   forward_only=True)


def test_cumsum_cumprod():
    helper_test_op([(3, 4)], lambda x: x.cumsum(1))
    helper_test_op([(3, 4)], lambda x: x.cumsum(-2), layout="T")
    helper_test_op([(3, 4)], lambda x: x.cumprod(0))
    helper_test_op([(3, 4)], lambda x: torch.cumsum(x, 0), lambda x: zt.cumsum(x, 0))


def test_any_all():
    v = [np.array([[True, False], [False, False]])]
    helper_test_op(None, lambda x: x.any(), dtype=zt.bool, values=v)
    helper_test_op(None, lambda x: x.all(1), dtype=zt.bool, values=v)
    helper_test_op(None, lambda x: x.any(0, keepdim=True), dtype=zt.bool, values=v)


# ------------------------------------------------------------------------------------------ vector norms
@pytest.mark.parametrize("ord", [2, 1, 3, 1.5, float("inf"), float("-inf"), 0])
@pytest.mark.parametrize("dim, keepdim", [(None, False), (1, False), ((0, 2), True), (-1, True)])
def test_vector_norm(ord, dim, keepdim):
    helper_test_op([(3, 4, 5)], lambda x: torch.linalg.vector_norm(x, ord, dim, keepdim),
                   lambda x: zt.linalg.vector_norm(x, ord, dim, keepdim), forward_only=ord == 0)


def test_tensor_norm_and_zero_vectors():
    helper_test_op([(3, 4)], lambda x: x.norm())
    helper_test_op([(3, 4)], lambda x: x.norm(dim=1, keepdim=True))
    helper_test_op([(3, 4)], lambda x: x.norm(p=1, dim=0))
    # an all-zero vector: gradient 0, as PyTorch (not the 0 * inf = nan of the composed formula)
    helper_test_op([(2, 3)], lambda x: torch.linalg.vector_norm(x * 0, dim=1) + x.sum(1),
                   lambda x: zt.linalg.vector_norm(x * 0, dim=1) + x.sum(1))
    with pytest.raises(ValueError, match="vector_norm: ord must be a non-negative number, inf or -inf, got -1"):
        zt.linalg.vector_norm(zt.ones(3), -1)
    with pytest.raises(RuntimeError, match="vector_norm: expected a floating point input, got zigtensor.int64"):
        zt.linalg.vector_norm(zt.tensor([1, 2]))
    with pytest.raises(ValueError, match="nuclear norms are not supported"):
        zt.ones(2, 2).norm("nuc")


def test_normalize_and_cosine_similarity():
    import zigtensor.nn.functional as F

    TF = torch.nn.functional
    helper_test_op([(4, 5)], lambda x: TF.normalize(x), lambda x: F.normalize(x))
    helper_test_op([(2, 3, 4)], lambda x: TF.normalize(x, p=1.0, dim=-1), lambda x: F.normalize(x, p=1.0, dim=-1))
    helper_test_op([(4, 5), (3, 1, 5)], lambda a, b: TF.cosine_similarity(a, b, dim=-1),
                   lambda a, b: F.cosine_similarity(a, b, dim=-1))
    helper_test_op([(4, 5), (4, 5)], lambda a, b: TF.cosine_similarity(a, b), lambda a, b: F.cosine_similarity(a, b))


# ------------------------------------------------------------------------------------------------ sorting
TIES = np.array([[3.0, 1.0, np.nan, 1.0, 2.0, 1.0], [0.0, -1.0, 5.0, 5.0, 2.0, np.nan]])


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("shape, dim", [((4, 7), -1), ((4, 7), 0), ((2, 3, 8), 1), ((5,), 0), ((), 0), ((0, 3), 1)])
def test_sort(shape, dim, descending):
    helper_test_op([shape], lambda x: torch.sort(x, stable=True, dim=dim, descending=descending),
                   lambda x: zt.sort(x, dim, descending))
    helper_test_op([shape], lambda x: x.argsort(stable=True, dim=dim, descending=descending),
                   lambda x: x.argsort(dim, descending))


@pytest.mark.parametrize("descending", [False, True])
def test_sort_is_stable_and_orders_nan_as_pytorch(descending):
    helper_test_op([], lambda x: x.sort(stable=True, dim=-1, descending=descending),
                   lambda x: x.sort(-1, descending), values=[TIES], forward_only=True)


@pytest.mark.parametrize("k, dim, largest", [(3, -1, True), (1, 0, True), (2, 1, False), (0, -1, True),
                                             (7, -1, False)])
def test_topk(k, dim, largest):
    # distinct values: PyTorch leaves the order of tied entries unspecified
    values = [np.random.default_rng(3).permutation(28).reshape(4, 7).astype(np.float64) / 4]
    helper_test_op([], lambda x: torch.topk(x, k, dim, largest), lambda x: zt.topk(x, k, dim, largest),
                   values=values)


def test_topk_errors():
    with pytest.raises(RuntimeError, match=r"topk: k must be an int in \[0, 7\] \(the size of dim -1\), got 8"):
        zt.ones(2, 7).topk(8)
    with pytest.raises(TypeError, match="sort: expected a Tensor, got list"):
        zt.sort([3, 1, 2])


def test_unique():
    x = [np.array([[3, 1, 2, 3], [1, 1, 5, 0]], dtype=np.int64)]
    for kw in ({}, {"return_inverse": True}, {"return_counts": True}, {"return_inverse": True, "return_counts": True}):
        helper_test_op([], lambda t, kw=kw: torch.unique(t, **kw), lambda t, kw=kw: zt.unique(t, **kw), values=x)
    helper_test_op([], lambda t: t.unique(return_counts=True), values=[np.array([2.5, -1.0, 2.5, 0.0])],
                   forward_only=True)
    helper_test_op([], lambda t: torch.unique(t, return_inverse=True, return_counts=True),
                   lambda t: zt.unique(t, return_inverse=True, return_counts=True),
                   values=[np.zeros(0, np.int64)])


@pytest.mark.parametrize("right", [False, True])
def test_searchsorted_and_bucketize(right):
    seq = np.array([1.0, 3.0, 5.0, 5.0, 9.0])
    v = np.array([[3.0, 6.0, 9.0], [0.0, 10.0, 5.0]])
    helper_test_op([], lambda s, x: torch.searchsorted(s, x, right=right),
                   lambda s, x: zt.searchsorted(s, x, right=right), values=[seq, v], forward_only=True)
    helper_test_op([], lambda s, x: torch.bucketize(x, s, right=right),
                   lambda s, x: zt.bucketize(x, s, right=right), values=[seq, v], forward_only=True)
    rows = np.sort(np.random.default_rng(0).standard_normal((2, 6)), -1)
    helper_test_op([], lambda s, x: torch.searchsorted(s, x, side="right" if right else "left"),
                   lambda s, x: zt.searchsorted(s, x, side="right" if right else "left"), values=[rows, v],
                   forward_only=True)


def test_multinomial_draws_follow_the_weights():
    zt.manual_seed(0)
    draws = zt.multinomial(zt.tensor([0.1, 0.0, 0.6, 0.3]), 20000, replacement=True).numpy()
    assert draws.dtype == np.int64 and draws.shape == (20000,)
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / 20000, [0.1, 0.0, 0.6, 0.3], atol=0.015)
    rows = zt.tensor([[1.0, 0.0, 2.0, 1.0, 4.0]] * 4000).multinomial(3)
    picks = rows.numpy()
    assert picks.shape == (4000, 3) and all(len(set(r)) == 3 for r in picks) and not (picks == 1).any()
    np.testing.assert_allclose(np.bincount(picks[:, 0], minlength=5) / 4000, [0.125, 0, 0.25, 0.125, 0.5],
                               atol=0.03)  # the first draw: the weights' proportions
    zt.manual_seed(5)
    a = zt.multinomial(zt.tensor([1.0, 2.0, 3.0]), 10, replacement=True).tolist()
    zt.manual_seed(5)
    assert zt.multinomial(zt.tensor([1.0, 2.0, 3.0]), 10, replacement=True).tolist() == a  # seeded


def test_multinomial_errors():
    with pytest.raises(RuntimeError, match="cannot draw 3 samples without replacement from a row with 2 non-zero"):
        zt.multinomial(zt.tensor([1.0, 0.0, 1.0]), 3)
    with pytest.raises(RuntimeError, match="weights must be finite and non-negative"):
        zt.multinomial(zt.tensor([1.0, -1.0]), 1)
    with pytest.raises(RuntimeError, match="every row of weights must have a positive sum"):
        zt.multinomial(zt.tensor([[1.0, 1.0], [0.0, 0.0]]), 1)


# ------------------------------------------------------------------------------- everyday compositions
COMPOSITES = [
    ("broadcast_to", [(3, 1)], lambda m: lambda x: m.broadcast_to(x, (2, 3, 4))),
    ("broadcast_tensors", [(3, 1), (4,)], lambda m: lambda a, b: m.broadcast_tensors(a, b)),
    ("hstack", [(2, 3), (2, 1)], lambda m: lambda a, b: m.hstack([a, b])),
    ("vstack", [(3,), (2, 3)], lambda m: lambda a, b: m.vstack([a, b])),
    ("swapaxes", [(2, 3, 4)], lambda m: lambda x: m.swapaxes(x, 0, 2)),
    ("moveaxis", [(2, 3, 4)], lambda m: lambda x: m.moveaxis(x, 0, -1)),
    ("diff", [(3, 6)], lambda m: lambda x: m.diff(x, n=2, dim=1)),
    ("diff_prepend", [(3, 6), (3, 1)], lambda m: lambda x, p: m.diff(x, dim=-1, prepend=p)),
    ("dot", [(5,), (5,)], lambda m: lambda a, b: m.dot(a, b)),
    ("mv", [(3, 5), (5,)], lambda m: lambda a, b: m.mv(a, b)),
    ("inner", [(2, 5), (3, 5)], lambda m: lambda a, b: m.inner(a, b)),
    ("cross", [(4, 3), (4, 3)], lambda m: lambda a, b: m.cross(a, b, dim=-1)),
    ("nansum", [(3, 4)], lambda m: lambda x: m.nansum(x, 1)),
    ("var_mean", [(3, 4)], lambda m: lambda x: m.var_mean(x, 1)),
    ("std_mean", [(3, 4)], lambda m: lambda x: m.std_mean(x, 0, keepdim=True)),
    ("kthvalue", [(3, 7)], lambda m: lambda x: m.kthvalue(x, 3, 1)),
    ("median", [(3, 7)], lambda m: lambda x: m.median(x, 1)),
    ("median_all", [(4, 6)], lambda m: lambda x: m.median(x)),
    ("quantile", [(3, 8)], lambda m: lambda x: m.quantile(x, 0.3, dim=1)),
    ("tan", [(3, 4)], lambda m: lambda x: m.tan(x)),
    ("logit", [(3, 4)], lambda m: lambda x: m.logit(x.sigmoid())),
    ("logit_eps", [(3, 4)], lambda m: lambda x: m.logit(x.sigmoid(), eps=0.2)),
    ("deg2rad", [(3, 4)], lambda m: lambda x: m.rad2deg(m.deg2rad(x) * 2)),
    ("clamp_min", [(3, 4)], lambda m: lambda x: m.clamp_max(m.clamp_min(x, -0.5), 0.7)),
]


@pytest.mark.parametrize("name, shapes, make", COMPOSITES, ids=[c[0] for c in COMPOSITES])
def test_everyday_compositions(name, shapes, make):
    helper_test_op(shapes, make(torch), make(zt))


def test_take_along_dim_count_nonzero_isclose_xlogy_quantiles():
    x = [np.random.default_rng(0).standard_normal((3, 5)), np.argsort(np.random.default_rng(1).random((3, 5)), 1)]
    helper_test_op([], lambda a, i: torch.take_along_dim(a, i, 1), lambda a, i: zt.take_along_dim(a, i, 1), values=x)
    helper_test_op([], lambda a: torch.count_nonzero(a, 1), lambda a: zt.count_nonzero(a, 1),
                   values=[np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]])])
    a, b = np.array([1.0, np.nan, np.inf, 2.0]), np.array([1.0 + 1e-9, np.nan, np.inf, 2.1])
    for equal_nan in (False, True):
        helper_test_op([], lambda p, q, e=equal_nan: torch.isclose(p, q, equal_nan=e),
                       lambda p, q, e=equal_nan: zt.isclose(p, q, equal_nan=e), values=[a, b], forward_only=True)
    helper_test_op([], lambda p, q: torch.xlogy(p, q), lambda p, q: zt.xlogy(p, q), forward_only=True,
                   values=[np.array([0.0, 2.0, 0.0, 1.5]), np.array([0.0, 3.0, np.nan, 0.5])])
    for how in ("linear", "lower", "higher", "nearest", "midpoint"):
        helper_test_op([(4, 7)], lambda t, how=how: torch.quantile(t, torch.tensor([0.1, 0.5, 0.75], dtype=t.dtype),
                                                                   dim=1, interpolation=how),
                       lambda t, how=how: zt.quantile(t, zt.tensor([0.1, 0.5, 0.75], dtype=t.dtype), dim=1,
                                                      interpolation=how))
    zt.manual_seed(0)
    draws = zt.bernoulli(zt.full((20000,), 0.3)).numpy()
    assert abs(draws.mean() - 0.3) < 0.015 and set(np.unique(draws)) <= {0.0, 1.0}
    n = zt.normal(zt.full((20000,), 2.0), 0.5).numpy()
    assert abs(n.mean() - 2.0) < 0.02 and abs(n.std() - 0.5) < 0.02
