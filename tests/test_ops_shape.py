"""Shape ops against PyTorch: views, permutations, repeats, splits, joins and triangles."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import gradgradcheck, helper_test_op, torch

import zigtensor as zt
import zigtensor.nn.functional as F


def test_reshape():
    helper_test_op([(2, 3, 4)], lambda x: x.reshape(6, 4))
    helper_test_op([(2, 3, 4)], lambda x: x.reshape((4, -1)))
    helper_test_op([(2, 3, 4)], lambda x: x.reshape(-1))
    helper_test_op([(2, 3, 4)], lambda x: x.reshape(4, 6), layout="T")
    helper_test_op([(3, 4)], lambda x: x.reshape(2, 6), layout="sliced")
    helper_test_op([(0, 4)], lambda x: x.reshape(2, 0, 2))
    helper_test_op([(0, 4)], lambda x: x.reshape(-1, 2))
    helper_test_op([()], lambda x: x.reshape(1, 1))
    helper_test_op([(1,)], lambda x: x.reshape(()))
    helper_test_op([(2, 3)], lambda x: torch.reshape(x, (3, 2)), lambda x: zt.reshape(x, (3, 2)))
    helper_test_op([(2, 3), (3, 2)], lambda x, y: x.reshape_as(y))


def test_view():
    helper_test_op([(2, 3, 4)], lambda x: x.view(6, 4))
    helper_test_op([(2, 3, 4)], lambda x: x.view(-1, 12))
    helper_test_op([(2, 3, 4)], lambda x: x.view((2, 12)))
    helper_test_op([(0, 4)], lambda x: x.view(4, 0))
    helper_test_op([()], lambda x: x.view(1))
    helper_test_op([(3, 4)], lambda x: x.view(3, 2, 2), layout="sliced")  # splitting a strided dim is a view
    helper_test_op([(2, 3), (3, 2)], lambda x, y: x.view_as(y))


def test_view_shares_memory():
    x = zt.arange(6.0)
    v = x.view(2, 3)
    v[0, 0] = 10.0
    assert x[0].item() == 10.0
    with pytest.raises(RuntimeError, match="view: shape"):
        zt.zeros(3, 4).T.view(12)


def test_transpose_permute():
    helper_test_op([(2, 3, 4)], lambda x: x.transpose(0, 2))
    helper_test_op([(2, 3, 4)], lambda x: x.transpose(-1, -2))
    helper_test_op([(2, 3, 4)], lambda x: x.transpose(1, 1))
    helper_test_op([(2, 3, 4)], lambda x: x.transpose(0, 1), layout="T")
    helper_test_op([(3, 4)], lambda x: x.t())
    helper_test_op([(3, 4)], lambda x: x.T)
    helper_test_op([(2, 3, 4)], lambda x: x.mT)
    helper_test_op([(4,)], lambda x: x.t())
    helper_test_op([(2, 3, 4)], lambda x: x.permute(2, 0, 1))
    helper_test_op([(2, 3, 4)], lambda x: x.permute((1, -1, 0)))
    helper_test_op([(2, 3, 4)], lambda x: x.permute(0, 2, 1), layout="sliced")
    helper_test_op([(2, 0, 4)], lambda x: x.permute(2, 1, 0))
    helper_test_op([(2, 3, 4)], lambda x: torch.permute(x, (2, 1, 0)), lambda x: zt.permute(x, (2, 1, 0)))
    helper_test_op([(2, 3, 4)], lambda x: torch.transpose(x, 0, 1), lambda x: zt.transpose(x, 0, 1))
    helper_test_op([(2, 3, 4)], lambda x: torch.movedim(x, 0, -1), lambda x: zt.movedim(x, 0, -1))


def test_flatten():
    helper_test_op([(2, 3, 4)], lambda x: x.flatten())
    helper_test_op([(2, 3, 4)], lambda x: x.flatten(1))
    helper_test_op([(2, 3, 4, 5)], lambda x: x.flatten(1, 2))
    helper_test_op([(2, 3, 4)], lambda x: x.flatten(-2, -1))
    helper_test_op([(2, 3, 4)], lambda x: x.flatten(), layout="T")
    helper_test_op([(2, 0, 4)], lambda x: x.flatten(1))
    helper_test_op([()], lambda x: x.flatten())
    helper_test_op([(2, 3, 4)], lambda x: torch.flatten(x, 1), lambda x: zt.flatten(x, 1))
    helper_test_op([(2, 12)], lambda x: x.unflatten(1, (3, 4)))
    helper_test_op([(2, 12)], lambda x: x.unflatten(-1, (-1, 2)))


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_unsqueeze(dim):
    helper_test_op([(2, 3)], lambda x: x.unsqueeze(dim))
    helper_test_op([(2, 3)], lambda x: x.unsqueeze(dim), layout="T")
    helper_test_op([(0, 3)], lambda x: torch.unsqueeze(x, dim), lambda x: zt.unsqueeze(x, dim))


def test_unsqueeze_0d():
    helper_test_op([()], lambda x: x.unsqueeze(0))
    helper_test_op([()], lambda x: x.unsqueeze(-1))


def test_squeeze():
    helper_test_op([(2, 1, 3, 1)], lambda x: x.squeeze())
    helper_test_op([(2, 1, 3, 1)], lambda x: x.squeeze(1))
    helper_test_op([(2, 1, 3, 1)], lambda x: x.squeeze(-1))
    helper_test_op([(2, 1, 3, 1)], lambda x: x.squeeze(0))  # not of size 1: unchanged
    helper_test_op([(2, 1, 3, 1)], lambda x: x.squeeze((1, 3)))
    helper_test_op([(1, 3)], lambda x: x.squeeze(0), layout="T")
    helper_test_op([(1, 0, 1)], lambda x: x.squeeze())
    helper_test_op([()], lambda x: x.squeeze())
    helper_test_op([()], lambda x: x.squeeze(0))
    helper_test_op([(1, 1)], lambda x: x.squeeze())
    helper_test_op([(2, 1, 3)], lambda x: torch.squeeze(x, 1), lambda x: zt.squeeze(x, 1))


def test_expand():
    helper_test_op([(3, 1)], lambda x: x.expand(3, 4))
    helper_test_op([(3, 1)], lambda x: x.expand(2, 3, 4))
    helper_test_op([(3, 1)], lambda x: x.expand((2, -1, 5)))
    helper_test_op([(3, 1)], lambda x: x.expand(3, 4), layout="T")
    helper_test_op([(1, 3)], lambda x: x.expand(0, 3))
    helper_test_op([()], lambda x: x.expand(2, 3))
    helper_test_op([(3,)], lambda x: x.expand(3))
    helper_test_op([(3, 1), (3, 4)], lambda x, y: x.expand_as(y))
    helper_test_op([(3, 1)], lambda x: x.expand(3, 4) * 2)


def test_repeat():
    helper_test_op([(2, 3)], lambda x: x.repeat(2, 1))
    helper_test_op([(2, 3)], lambda x: x.repeat(1, 3))
    helper_test_op([(2, 3)], lambda x: x.repeat(2, 2, 2))
    helper_test_op([(2, 3)], lambda x: x.repeat((3, 1)), layout="T")
    helper_test_op([(2, 3)], lambda x: x.repeat(0, 2))
    helper_test_op([(0, 3)], lambda x: x.repeat(2, 2))
    helper_test_op([()], lambda x: x.repeat(3))
    helper_test_op([()], lambda x: x.repeat(()))
    helper_test_op([(3,)], lambda x: x.repeat(2, 2), layout="sliced")


def test_flip():
    helper_test_op([(2, 3, 4)], lambda x: x.flip(0))
    helper_test_op([(2, 3, 4)], lambda x: x.flip((0, -1)))
    helper_test_op([(2, 3, 4)], lambda x: x.flip(1), layout="T")
    helper_test_op([(2, 3)], lambda x: torch.flip(x, (1,)), lambda x: zt.flip(x, (1,)))


def test_narrow():
    helper_test_op([(4, 5)], lambda x: x.narrow(1, 1, 3))
    helper_test_op([(4, 5)], lambda x: x.narrow(0, -2, 2))
    helper_test_op([(4, 5)], lambda x: x.narrow(-1, 0, 0))
    helper_test_op([(4, 5)], lambda x: torch.narrow(x, 0, 1, 2), lambda x: zt.narrow(x, 0, 1, 2), layout="T")


SPLITS = [(2,), (2, 1), (3, -1), (1, 0), ([1, 2, 2],), ([3, 0, 2], 1), (5, 1)]


@pytest.mark.parametrize("args", SPLITS, ids=str)
def test_split(args):
    helper_test_op([(5, 5)], lambda x: x.split(*args))
    helper_test_op([(5, 5)], lambda x: torch.split(x, *args), lambda x: zt.split(x, *args), layout="T")


@pytest.mark.parametrize("args", [(2,), (3, 1), (5, -1), (6, 0), (1, 1), (4, 1)], ids=str)
def test_chunk(args):
    helper_test_op([(5, 4)], lambda x: x.chunk(*args))
    helper_test_op([(5, 4)], lambda x: torch.chunk(x, *args), lambda x: zt.chunk(x, *args), layout="sliced")


def test_split_chunk_empty():
    helper_test_op([(0, 3)], lambda x: x.split(2))
    helper_test_op([(0, 3)], lambda x: x.chunk(2))
    helper_test_op([(0, 3)], lambda x: x.chunk(2, 1))


def test_unbind():
    helper_test_op([(3, 4)], lambda x: x.unbind())
    helper_test_op([(3, 4)], lambda x: torch.unbind(x, -1), lambda x: zt.unbind(x, -1))


@pytest.mark.parametrize("dim", [0, 1, -1, -2])
def test_cat(dim):
    def f(mod):
        return lambda x, y, z: mod.cat([x, y, z], dim)

    helper_test_op([(2, 3), (2, 3), (2, 3)], f(torch), f(zt))
    helper_test_op([(2, 3), (2, 3), (2, 3)], f(torch), f(zt), layout="T")
    helper_test_op([(2, 3), (2, 3), (2, 3)], f(torch), f(zt), layout="sliced")


def test_cat_special():
    helper_test_op([(2, 3), (1, 3), (4, 3)], lambda x, y, z: torch.cat((x, y, z)),
                   lambda x, y, z: zt.cat((x, y, z)))
    helper_test_op([(2, 3), (2, 1), (2, 4)], lambda x, y, z: torch.cat([x, y, z], 1),
                   lambda x, y, z: zt.cat([x, y, z], 1))
    helper_test_op([(2, 3), (0, 3)], lambda x, y: torch.cat([x, y]), lambda x, y: zt.cat([x, y]))
    helper_test_op([(2, 3), (0,)], lambda x, y: torch.cat([x, y]),
                   lambda x, y: zt.cat([x, y]))  # legacy 1-d empty
    helper_test_op([(0, 3), (0, 3)], lambda x, y: torch.cat([x, y]), lambda x, y: zt.cat([x, y]))
    helper_test_op([(2, 3)], lambda x: torch.cat([x]), lambda x: zt.cat([x]))
    helper_test_op([(2, 3), (2, 3)], lambda x, y: torch.concat([x, y]), lambda x, y: zt.concat([x, y]))
    helper_test_op([(2, 3)], lambda x: torch.cat([x, x], 1),
                   lambda x: zt.cat([x, x], 1))  # the same input twice


def test_cat_promotes():
    z = zt.cat([zt.ones(2, dtype=zt.int32), zt.ones(2, dtype=zt.float16), zt.ones(1, dtype=zt.int64)])
    t = torch.cat([torch.ones(2, dtype=torch.int32), torch.ones(2, dtype=torch.float16),
                   torch.ones(1, dtype=torch.int64)])
    assert str(t.dtype) == "torch." + z.dtype.name


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_stack(dim):
    def f(mod):
        return lambda x, y: mod.stack([x, y], dim)

    helper_test_op([(2, 3), (2, 3)], f(torch), f(zt))
    helper_test_op([(2, 3), (2, 3)], f(torch), f(zt), layout="T")
    helper_test_op([(0, 3), (0, 3)], f(torch), f(zt))


def test_stack_special():
    helper_test_op([(), (), ()], lambda x, y, z: torch.stack([x, y, z]), lambda x, y, z: zt.stack([x, y, z]))
    helper_test_op([(3,)], lambda x: torch.stack((x,), -1), lambda x: zt.stack((x,), -1))


@pytest.mark.parametrize("name", ["tril", "triu"])
@pytest.mark.parametrize("k", [0, 1, -1, 5, -5])
def test_tril_triu(name, k):
    helper_test_op([(4, 5)], lambda x: getattr(x, name)(k))
    helper_test_op([(2, 4, 3)], lambda x: getattr(x, name)(diagonal=k))
    helper_test_op([(4, 5)], lambda x: getattr(torch, name)(x, k), lambda x: getattr(zt, name)(x, k),
                   layout="T")
    helper_test_op([(0, 3)], lambda x: getattr(x, name)(k))


def test_clone_contiguous_grad():
    helper_test_op([(3, 4)], lambda x: x.clone())
    helper_test_op([(3, 4)], lambda x: x.contiguous(), layout="T")
    helper_test_op([(3, 4)], lambda x: x.contiguous() * 2, layout="sliced")


def test_detach_blocks_gradient():
    helper_test_op([(3, 4)], lambda x: x * x.detach())


def test_split_returns_views_of_values():
    x = zt.arange(10).reshape(5, 2)
    parts = x.split([2, 3])
    assert [p.shape for p in parts] == [(2, 2), (3, 2)]
    np.testing.assert_array_equal(parts[1].numpy(), np.arange(4, 10).reshape(3, 2))


# ------------------------------------------------------------------------------------------------ F.pad
PAD_CASES = [
    ("constant", (2, 3, 5, 6), (1, 2), None),
    ("constant", (2, 3, 5, 6), (1, 2, 0, 3), -1.5),
    ("constant", (2, 3, 5, 6), (1, -2, -1, 3), None),  # negative pads crop
    ("constant", (4,), (0, 0), None),
    ("constant", (2, 3, 4), (1, 1, 1, 1, 1, 1), 2.0),
    ("reflect", (2, 6), (2, 5), None),
    ("reflect", (2, 3, 5, 6), (2, 1, 4, 4), None),
    ("replicate", (2, 3, 7), (3, 0), None),
    ("replicate", (2, 3, 5, 6), (3, 0, 1, 2), None),
    ("circular", (2, 3, 5, 6), (2, 6, 5, 1), None),
    ("circular", (1, 2, 3, 4, 5), (1, 1, 2, 2, 0, 3), None),
]


@pytest.mark.parametrize("mode, shape, pads, value", PAD_CASES, ids=[f"{c[0]}{c[2]}" for c in PAD_CASES])
def test_pad(mode, shape, pads, value):
    kw = {} if value is None else {"value": value}
    helper_test_op([shape], lambda x: torch.nn.functional.pad(x, pads, mode=mode, **kw),
                   lambda x: F.pad(x, pads, mode=mode, **kw))


def test_pad_second_derivatives():
    gradgradcheck(lambda x: F.pad(x, (1, -1, 2, 0)) ** 2, [(3, 4)])
    gradgradcheck(lambda x: F.pad(x, (2, 1), mode="reflect") ** 2, [(2, 4)])


@pytest.mark.parametrize("args, error, message", [
    (((2, 3), (1,)), ValueError, r"pad must have an even length of at most 2 \* ndim \(4\), got 1 values"),
    (((2, 3), (1, 1, 1, 1, 1, 1)), ValueError, "at most 2 \\* ndim \\(4\\)"),
    (((2, 3), (1.5, 1)), TypeError, "pad must be a sequence of ints"),
    (((2, 3), (1, 1), "wrap"), ValueError, "mode must be one of 'constant', 'reflect', 'replicate', 'circular', "
                                           "got 'wrap'"),
    (((2, 3), (3, 0), "reflect"), ValueError, r"reflect padding of dim 1 must be less than the size of dim 1 "
                                              r"\(3\), got \(3, 0\)"),
    (((2, 3), (0, 4), "circular"), ValueError, r"circular padding of dim 1 must be at most the size"),
    (((2, 3), (-5, 0)), ValueError, "leave a negative size"),
])
def test_pad_errors(args, error, message):
    shape, pads, *mode = args
    with pytest.raises(error, match=message):
        F.pad(zt.ones(*shape), pads, *mode)
    with pytest.raises(ValueError, match="value is only for mode 'constant'"):
        F.pad(zt.ones(2, 3), (1, 1), mode="reflect", value=1.0)


# ------------------------------------------------------------------------------- roll, meshgrid, diagonals
@pytest.mark.parametrize("shifts, dims", [(2, 1), (-1, 0), ((1, -3), (0, 2)), (7, None), (0, 1), (9, -1)])
def test_roll(shifts, dims):
    helper_test_op([(3, 4, 5)], lambda x: torch.roll(x, shifts, dims), lambda x: zt.roll(x, shifts, dims))
    helper_test_op([(3, 4, 5)], lambda x: x.roll(shifts, dims))


@pytest.mark.parametrize("indexing", ["ij", "xy"])
def test_meshgrid(indexing):
    helper_test_op([(2,), (3,), ()], lambda *t: torch.meshgrid(*t, indexing=indexing),
                   lambda *t: zt.meshgrid(*t, indexing=indexing))


@pytest.mark.parametrize("offset, dim1, dim2", [(0, 0, 1), (1, 0, 2), (-2, 2, 1), (3, -1, -2), (9, 0, 1)])
def test_diagonal(offset, dim1, dim2):
    helper_test_op([(3, 4, 5)], lambda x: x.diagonal(offset, dim1, dim2))


@pytest.mark.parametrize("offset", [0, 2, -1])
def test_diag_and_trace(offset):
    helper_test_op([(4,)], lambda x: torch.diag(x, offset), lambda x: zt.diag(x, offset))
    helper_test_op([(3, 5)], lambda x: torch.diag(x, offset), lambda x: zt.diag(x, offset))
    helper_test_op([(4, 3)], lambda x: torch.trace(x), lambda x: zt.trace(x))


def test_roll_and_diagonal_errors():
    with pytest.raises(RuntimeError, match="roll: shifts and dims must have the same length"):
        zt.ones(2, 3).roll((1, 2), 0)
    with pytest.raises(RuntimeError, match="diagonal: dim1 and dim2 must differ, both are 1"):
        zt.ones(2, 3).diagonal(0, 1, -1)
    with pytest.raises(RuntimeError, match=r"diag: expected a 1-d or 2-d tensor, got shape \(2, 2, 2\)"):
        zt.diag(zt.ones(2, 2, 2))
    with pytest.raises(RuntimeError, match=r"meshgrid: expected 0-d or 1-d tensors, got shape \(2, 2\)"):
        zt.meshgrid(zt.ones(2, 2))
