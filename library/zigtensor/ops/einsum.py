"""einsum: Einstein summation over subscripts, as torch.einsum, built from the ops autograd already knows.

    einsum("bhqd,bhkd->bhqk", q, k)         # attention scores
    einsum("...ij,...jk", a, b)             # implicit output: the ellipsis, then letters seen once, sorted

How: letters of one operand that nothing else needs are summed first; then operands are contracted left to
right, each pair as one batched matmul (letters in both and still needed are the batch, letters in both and
not needed are summed by the product, the rest stay free); finally the letters the output lacks are summed and
the rest permuted into place. Dims of size 1 broadcast against the same letter's size elsewhere, as PyTorch
allows. A letter twice in one operand (a diagonal, "ii->i") is refused with a clear error.
"""

from __future__ import annotations

import math

from .common import Tensor

_ELLIPSIS_BASE = 0x2460  # placeholder letters for the ellipsis dims (circled digits: never user subscripts)


def _parse(equation: str, shapes: list[tuple]) -> tuple[list[list[str]], list[str]]:
    """Subscripts of each operand and of the output, the ellipsis expanded into placeholder letters."""
    if not isinstance(equation, str):
        raise TypeError(f"einsum(): the equation must be a str, got {type(equation).__name__}")
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum(): {equation!r} has subscripts for {len(terms)} operand(s), got {len(shapes)}")
    bad = sorted({c for c in eq.replace("->", "").replace(",", "").replace("...", "") if not c.isalpha()})
    if bad or "-" in rhs or ">" in rhs:
        raise ValueError(f"einsum(): invalid character(s) {bad or ['-', '>']} in {equation!r}: subscripts are "
                         "letters, operands are separated by ',', the output follows '->', '...' stands for "
                         "the remaining dims")
    n_ellipsis = 0
    subs = []
    for i, (term, shape) in enumerate(zip(terms, shapes)):
        named = term.replace("...", "")
        if term.count("...") > 1:
            raise ValueError(f"einsum(): operand {i} ({term!r}) has more than one '...'")
        extra = len(shape) - len(named)
        if extra < 0 or (extra > 0 and "..." not in term):
            raise ValueError(f"einsum(): operand {i} has {len(shape)} dims (shape {shape}) but subscripts "
                             f"{term!r} name {len(named)}")
        n_ellipsis = max(n_ellipsis, extra)
        head, _, tail = term.partition("...")
        # the ellipsis dims are numbered from the right (0 the last), so operands broadcast right-aligned
        letters = list(head) + [chr(_ELLIPSIS_BASE + j) for j in reversed(range(extra))] + list(tail)
        for c in set(named):
            if named.count(c) > 1:
                raise ValueError(f"einsum(): subscript {c!r} appears twice in operand {i} ({term!r}); diagonals "
                                 "are not supported")
        subs.append(letters)
    dots_all = [chr(_ELLIPSIS_BASE + k) for k in reversed(range(n_ellipsis))]
    if arrow:
        if rhs.count("...") > 1:
            raise ValueError(f"einsum(): the output ({rhs!r}) has more than one '...'")
        head, dots, tail = rhs.partition("...")
        out = list(head) + (dots_all if dots else []) + list(tail)  # no '...' there: its dims are summed
        seen = {c for s in subs for c in s}
        for c in set(rhs.replace("...", "")):
            if rhs.count(c) > 1:
                raise ValueError(f"einsum(): output subscript {c!r} appears more than once in {rhs!r}")
            if c not in seen:
                raise ValueError(f"einsum(): output subscript {c!r} does not appear in any operand of {equation!r}")
    else:  # implicit: the ellipsis dims, then the letters that appear exactly once, in alphabetical order
        counts: dict[str, int] = {}
        for s in subs:
            for c in s:
                counts[c] = counts.get(c, 0) + 1
        out = dots_all + sorted(c for c, n in counts.items() if n == 1 and c not in dots_all)
    return subs, out


def _sizes(subs, operands) -> dict[str, int]:
    """Each letter's size; a size of 1 broadcasts against the letter's size elsewhere."""
    sizes: dict[str, int] = {}
    for i, (s, t) in enumerate(zip(subs, operands)):
        for c, n in zip(s, t.shape):
            m = sizes.get(c)
            if m is None or m == 1:
                sizes[c] = n
            elif n not in (m, 1):
                name = "a '...' dim" if ord(c) >= _ELLIPSIS_BASE else f"subscript {c!r}"
                raise ValueError(f"einsum(): {name} has size {n} in operand {i} but {m} in an earlier one")
    return sizes


def _sum_out(t: Tensor, letters: list[str], drop) -> tuple[Tensor, list[str]]:
    dims = [k for k, c in enumerate(letters) if c in drop]
    if dims:
        t = t.sum(dims)
    return t, [c for c in letters if c not in drop]


def _contract(a: Tensor, la: list[str], b: Tensor, lb: list[str], keep: set, sizes) -> tuple[Tensor, list[str]]:
    batch = [c for c in la if c in lb and c in keep]
    summed = [c for c in la if c in lb and c not in keep]
    a_free = [c for c in la if c not in lb]
    b_free = [c for c in lb if c not in la]

    def arrange(t, letters, order, rows, cols):
        t = t.permute(*[letters.index(c) for c in order]) if order != letters else t
        full = tuple(sizes[c] for c in order)
        t = t.expand(*full) if tuple(t.shape) != full else t  # size-1 dims broadcast
        return t.reshape(math.prod(sizes[c] for c in batch), rows, cols)

    a3 = arrange(a, la, batch + a_free + summed, math.prod(sizes[c] for c in a_free),
                 math.prod(sizes[c] for c in summed))
    b3 = arrange(b, lb, batch + summed + b_free, math.prod(sizes[c] for c in summed),
                 math.prod(sizes[c] for c in b_free))
    out = (a3 @ b3).reshape(*[sizes[c] for c in batch + a_free + b_free])
    return out, batch + a_free + b_free


def einsum(equation: str, *operands) -> Tensor:
    """Sum of products over the subscripts of `equation` (see the module docstring); torch.einsum's contract."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise ValueError("einsum(): expected at least one operand")
    for i, t in enumerate(operands):
        if not isinstance(t, Tensor):
            raise TypeError(f"einsum(): operand {i} must be a Tensor, got {type(t).__name__}")
    subs, out = _parse(equation, [t.shape for t in operands])
    sizes = _sizes(subs, operands)
    terms = []
    for k, (t, s) in enumerate(zip(operands, subs)):
        elsewhere = set(out).union(*(subs[j] for j in range(len(subs)) if j != k))
        terms.append(_sum_out(t, s, set(s) - elsewhere))
    while len(terms) > 1:
        (a, la), (b, lb) = terms[0], terms[1]
        keep = set(out).union(*(letters for _, letters in terms[2:]))
        terms[:2] = [_contract(a, la, b, lb, keep, sizes)]
    t, letters = terms[0]
    t, letters = _sum_out(t, letters, set(letters) - set(out))
    return t.permute(*[letters.index(c) for c in out]) if letters != out else t


def tensordot(a: Tensor, b: Tensor, dims=2) -> Tensor:
    """Sum over dims of a and b, as torch.tensordot: dims an int (a's last `dims` with b's first) or a pair of
    lists (a's dims, b's dims); the result has a's other dims, then b's."""
    if isinstance(dims, (int,)) and not isinstance(dims, bool):
        if not 0 <= dims <= min(a.ndim, b.ndim):
            raise RuntimeError(f"tensordot: dims must be in [0, {min(a.ndim, b.ndim)}], got {dims}")
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        try:
            da, db = ([dims[0]] if isinstance(dims[0], int) else list(dims[0]),
                      [dims[1]] if isinstance(dims[1], int) else list(dims[1]))
        except (TypeError, IndexError):
            raise TypeError(f"tensordot: dims must be an int or a pair of lists of dims, got {dims!r}") from None
        if len(da) != len(db):
            raise RuntimeError(f"tensordot: dims lists must have the same length, got {da} and {db}")
        da = [d % a.ndim for d in da]
        db = [d % b.ndim for d in db]
    letters = iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    sa = [next(letters) for _ in range(a.ndim)]
    sb = [next(letters) for _ in range(b.ndim)]
    for i, j in zip(da, db):
        sb[j] = sa[i]
    out = [c for k, c in enumerate(sa) if k not in da] + [c for k, c in enumerate(sb) if k not in db]
    return einsum(f"{''.join(sa)},{''.join(sb)}->{''.join(out)}", a, b)
