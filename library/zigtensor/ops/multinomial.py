"""zt.multinomial: indices drawn from rows of non-negative weights, as torch.multinomial (the draws themselves
come from zigtensor's generator on the input's device, so they follow zt.manual_seed, not PyTorch's stream).

With replacement, each draw is the first category whose running weight total passes a uniform number times the
row's total. Without replacement, each category gets an exponential "arrival time" divided by its weight and the
num_samples earliest arrive: that picks k categories in exactly the order of drawing one at a time with
probabilities proportional to the weights left. Both are ops of every device (cumsum, comparisons, topk).
"""

from __future__ import annotations

import numbers

from ..dtypes import FLOAT
from .common import Tensor


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *, generator=None) -> Tensor:
    """(num_samples,) or (rows, num_samples) int64 category indices drawn from input's weights."""
    from ..creation import rand
    from .elementwise import log, where
    from .sort import topk

    if generator is not None:
        raise NotImplementedError("multinomial: generator= is not supported; seed with zt.manual_seed")
    if not isinstance(input, Tensor) or input.ndim not in (1, 2) or input.dtype.category != FLOAT:
        raise RuntimeError(f"multinomial: expected a 1-d or 2-d floating point Tensor of weights, got "
                           f"{getattr(input, 'shape', type(input).__name__)} {getattr(input, 'dtype', '')}")
    rows = input.reshape(1, -1) if input.ndim == 1 else input
    n = rows.shape[-1]
    if not isinstance(num_samples, numbers.Integral) or isinstance(num_samples, bool) or num_samples < 1:
        raise RuntimeError(f"multinomial: num_samples must be a positive int, got {num_samples!r}")
    if n == 0:
        raise RuntimeError("multinomial: the weights have no categories")
    w = rows.detach().data
    lo, total_min = float(w.min()), float(w.sum(axis=-1).min())
    if not (lo >= 0 and float(abs(w).max()) < float("inf")):
        raise RuntimeError("multinomial: weights must be finite and non-negative")
    if total_min <= 0:
        raise RuntimeError("multinomial: every row of weights must have a positive sum")
    weights = rows.detach()
    if replacement:
        cdf = weights.cumsum(-1)
        u = rand(rows.shape[0], num_samples, dtype=input.dtype, device=input.device) * cdf[:, -1:]
        out = (cdf.unsqueeze(1) <= u.unsqueeze(-1)).sum(-1).clamp(max=n - 1)
    else:
        nonzero = int((w > 0).sum(axis=-1).min())
        if num_samples > nonzero:
            raise RuntimeError(f"multinomial: cannot draw {num_samples} samples without replacement from a row "
                               f"with {nonzero} non-zero weights")
        # Exp(1) / w; a zero weight arrives at inf (never drawn: num_samples is within the non-zero ones), set
        # directly rather than divided by 0
        positive = weights > 0
        arrival = where(positive, -log(1 - rand(*rows.shape, dtype=input.dtype, device=input.device))
                        / where(positive, weights, 1.0), float("inf"))
        out = topk(arrival, num_samples, -1, largest=False).indices
    return out.reshape(-1) if input.ndim == 1 else out
