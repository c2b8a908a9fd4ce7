"""Matrix products against PyTorch: matmul with 1-d operands, batching and broadcasting; mm, bmm, outer."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import helper_test_op, torch

import zigtensor as zt

SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4,)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),  # broadcast batch dims
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
    ((1, 4), (4, 1)),
    ((0, 4), (4, 5)),  # empty rows
    ((3, 0), (0, 5)),  # empty inner dim: zeros
    ((2, 0, 4), (4, 3)),
]


@pytest.mark.parametrize("sa,sb", SHAPES, ids=str)
def test_matmul(sa, sb):
    helper_test_op([sa, sb], lambda x, y: x @ y)
    helper_test_op([sa, sb], lambda x, y: torch.matmul(x, y), lambda x, y: zt.matmul(x, y), layout="T")
    helper_test_op([sa, sb], lambda x, y: x.matmul(y), layout="sliced")


def test_matmul_float64():
    helper_test_op([(2, 3, 4), (4, 5)], lambda x, y: x @ y, dtype=zt.float64, atol=1e-12, rtol=1e-10,
                   grad_atol=1e-12, grad_rtol=1e-10)


def test_matmul_integers():
    v = [np.arange(6).reshape(2, 3) - 2, np.arange(12).reshape(3, 4) % 5]
    helper_test_op(None, lambda x, y: x @ y, dtype=zt.int64, values=v)
    helper_test_op(None, lambda x, y: x @ y, dtype=zt.int32, values=v)


def test_matmul_one_operand_grad():
    helper_test_op([(3, 4)], lambda x: x @ torch.ones(4, 2), lambda x: x @ zt.ones(4, 2))
    helper_test_op([(4, 2)], lambda x: torch.ones(3, 4) @ x, lambda x: zt.ones(3, 4) @ x)


def test_mm_bmm_outer():
    helper_test_op([(3, 4), (4, 5)], lambda x, y: x.mm(y))
    helper_test_op([(3, 4), (4, 5)], lambda x, y: torch.mm(x, y), lambda x, y: zt.mm(x, y), layout="T")
    helper_test_op([(2, 3, 4), (2, 4, 5)], lambda x, y: x.bmm(y))
    helper_test_op([(2, 3, 4), (2, 4, 5)], lambda x, y: torch.bmm(x, y), lambda x, y: zt.bmm(x, y),
                   layout="sliced")
    helper_test_op([(3,), (4,)], lambda x, y: torch.outer(x, y), lambda x, y: zt.outer(x, y))


def test_matmul_chain():
    helper_test_op([(3, 4), (4, 5), (5, 2)], lambda x, y, z: (x @ y).relu() @ z)
    helper_test_op([(2, 3), (3, 3)], lambda x, w: x @ w @ w.T)


def test_matmul_errors():
    with pytest.raises(RuntimeError, match=r"matmul: shapes \(3, 4\) and \(5, 2\) cannot be multiplied"):
        zt.ones(3, 4) @ zt.ones(5, 2)
    with pytest.raises(RuntimeError, match="matmul: both arguments need at least 1 dimension"):
        zt.ones(3) @ zt.tensor(2.0)
    with pytest.raises(RuntimeError, match=r"matmul: .*float32.*\(2, 2\).*float64.*\(2, 2\)"):
        zt.ones(2, 2) @ zt.ones(2, 2, dtype=zt.float64)
    with pytest.raises(ValueError, match=r"matmul: shapes .*\(2,\).*\(3,\).*cannot be broadcast"):
        zt.ones(2, 3, 4) @ zt.ones(3, 4, 5)
    with pytest.raises(RuntimeError, match=r"mm: expected 2-d tensors, got shapes \(3,\)"):
        zt.mm(zt.ones(3), zt.ones(3, 2))
    with pytest.raises(RuntimeError, match="bmm"):
        zt.bmm(zt.ones(2, 3, 4), zt.ones(3, 4, 5))


# ------------------------------------------------------------------------------------------------ einsum
EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),  # attention scores
    ("i,i->", [(4,), (4,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]),
    ("ij->j", [(3, 4)]),
    ("ij,jk", [(3, 4), (4, 5)]),  # implicit output
    ("ba,cb", [(3, 4), (5, 3)]),  # implicit output, letters sorted: "ac"
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 6)]),  # broadcast '...'
    ("...ij->...ji", [(2, 3, 4)]),
    ("...i->i", [(2, 3)]),  # '...' summed when the output has none
    ("abc,cd,de->abe", [(2, 3, 4), (4, 5), (5, 6)]),  # three operands
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),  # bilinear
    ("ij,j->i", [(2, 1), (3,)]),  # a size-1 dim broadcasts
    ("i j , j k -> i k", [(3, 4), (4, 5)]),  # spaces
    ("ij,jk->ik", [(0, 4), (4, 5)]),  # empty
]


@pytest.mark.parametrize("equation, shapes", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
def test_einsum(equation, shapes):
    helper_test_op(shapes, lambda *a: torch.einsum(equation, *a), lambda *a: zt.einsum(equation, *a))


def test_einsum_takes_a_list_of_operands():
    helper_test_op([(3, 4), (4, 5)], lambda a, b: torch.einsum("ij,jk", [a, b]),
                   lambda a, b: zt.einsum("ij,jk", [a, b]))


@pytest.mark.parametrize("equation, shapes, message", [
    ("ij,jk->ik", [(3, 4)], r"'ij,jk->ik' has subscripts for 2 operand\(s\), got 1"),
    ("ij,jk->ik", [(3, 4), (5, 6)], "subscript 'j' has size 5 in operand 1 but 4 in an earlier one"),
    ("ijk->i", [(3, 4)], r"operand 0 has 2 dims \(shape \(3, 4\)\) but subscripts 'ijk' name 3"),
    ("ii->i", [(3, 3)], "subscript 'i' appears twice in operand 0 .* diagonals are not supported"),
    ("ij->iz", [(3, 4)], "output subscript 'z' does not appear in any operand"),
    ("ij->ii", [(3, 4)], "output subscript 'i' appears more than once"),
    ("i1,j->ij", [(3, 4), (4,)], r"invalid character\(s\) \['1'\]"),
    ("...i,...i->......", [(2, 3), (2, 3)], "has more than one '...'"),
])
def test_einsum_errors(equation, shapes, message):
    with pytest.raises(ValueError, match=message):
        zt.einsum(equation, *[zt.ones(*s) for s in shapes])


@pytest.mark.parametrize("shapes, dims", [
    ([(3, 4, 5), (4, 5, 2)], 2), ([(3, 4), (4, 6)], 1), ([(3, 4), (5, 6)], 0),
    ([(3, 4, 5), (5, 4, 2)], ([1, 2], [1, 0])), ([(3, 4), (2, 3)], ([0], [1])),
])
def test_tensordot(shapes, dims):
    helper_test_op(shapes, lambda a, b: torch.tensordot(a, b, dims), lambda a, b: zt.tensordot(a, b, dims))


def test_lerp():
    helper_test_op([(3, 4), (3, 4)], lambda a, b: torch.lerp(a, b, 0.3), lambda a, b: zt.lerp(a, b, 0.3))
    helper_test_op([(3, 4), (3, 4), (4,)], lambda a, b, w: torch.lerp(a, b, w), lambda a, b, w: zt.lerp(a, b, w))


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, float("inf")])
def test_cdist(p):
    helper_test_op([(4, 3), (5, 3)], lambda a, b: torch.cdist(a, b, p), lambda a, b: zt.cdist(a, b, p))
    helper_test_op([(2, 4, 3), (2, 5, 3)], lambda a, b: torch.cdist(a, b, p), lambda a, b: zt.cdist(a, b, p))


def test_addmm_baddbmm_addcmul_addcdiv():
    helper_test_op([(3, 4), (3, 5), (5, 4)], lambda i, a, b: torch.addmm(i, a, b, beta=0.5, alpha=2),
                   lambda i, a, b: zt.addmm(i, a, b, beta=0.5, alpha=2))
    helper_test_op([(4,), (3, 5), (5, 4)], lambda i, a, b: i.addmm(a, b))
    helper_test_op([(2, 3, 4), (2, 3, 5), (2, 5, 4)], lambda i, a, b: torch.baddbmm(i, a, b, alpha=-1),
                   lambda i, a, b: zt.baddbmm(i, a, b, alpha=-1))
    helper_test_op([(3, 4), (3, 4), (4,)], lambda i, a, b: torch.addcmul(i, a, b, value=0.5),
                   lambda i, a, b: zt.addcmul(i, a, b, value=0.5))
    helper_test_op([(3, 4), (3, 4), (3, 4)], lambda i, a, b: i.addcdiv(a, b, value=2), low=0.5, high=2.0)
