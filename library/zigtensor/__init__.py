"""zigtensor: tensors on CPU (NumPy) and GPU (CuPy), reverse-mode autograd, layers and optimizers.

>>> import zigtensor as zt
>>> x = zt.tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
tensor([2., 4., 6.], dtype=float32, device='cpu')
"""

# ruff: noqa: E402  (OpenBLAS's spin is set before the imports below load NumPy)
from __future__ import annotations

__version__ = "0.1.0"

from .backends import blas_threads as _blas_threads

_blas_threads.shorten_spin()  # before NumPy loads OpenBLAS, which reads it then (blas_threads.py says why)

from . import dtypes
from .autograd.grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .creation import (
    arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, linspace, ones, ones_like, rand,
    rand_like, randint, randn, randn_like, randperm, tensor, zeros, zeros_like,
)
from .device import Device, device, get_default_device, set_default_device
from .dtypes import (
    DType, bfloat16, float16, float32, float64, get_default_dtype, int8, int16, int32, int64, promote_types,
    result_type, set_default_dtype, uint8,
)
from .dtypes import bool_ as bool  # noqa: A001  (PyTorch's spelling: zt.bool)
from .ops import methods as _methods  # noqa: F401  (attaches the Tensor methods)
from .ops.elementwise import (
    abs, add, ceil, clamp, cos, div, eq, erf, exp, floor, floor_divide, ge, gt, le, log, log1p, logical_and,
    logical_not, logical_or, lt, maximum, minimum, mul, ne, neg, pow, relu, remainder, round, rsqrt, sigmoid,
    acos, addcdiv, addcmul, asin, atan, atan2, lerp, sign, sin, sqrt, sub, tanh, trunc, where,
)
from .ops.elementwise import acos as arccos  # noqa: E402  (PyTorch has both spellings)
from .ops.elementwise import asin as arcsin  # noqa: E402
from .ops.elementwise import atan as arctan  # noqa: E402
from .ops.elementwise import atan2 as arctan2  # noqa: E402
from .ops.composites import (
    broadcast_to, broadcast_tensors, hstack, vstack, swapaxes, moveaxis, take_along_dim, diff,
    dot, mv, inner, cross, nansum, nanmean, var_mean,
    std_mean, kthvalue, median, quantile, bernoulli, normal, randint_like,
    tan, logit, xlogy, deg2rad, rad2deg, clamp_min, clamp_max,
)
from .ops.diagonal import diag, diagonal, trace
from .ops.einsum import einsum, tensordot
from .ops.index import (
    gather, index_add, index_copy, index_put, index_select, masked_fill, nonzero, scatter, scatter_add,
)
from .ops.linalg import addmm, baddbmm, bmm, matmul, mm, outer
from .ops.math_extra import (
    allclose, cosh, equal, exp2, fmod, frac, hypot, isclose, isfinite, isinf, isnan, log2, log10, logaddexp,
    masked_select, nan_to_num, repeat_interleave, sinh, tile,
)
from .ops.multinomial import multinomial
from .ops.norms import cdist, norm
from .ops.sort import argsort, bucketize, searchsorted, sort, topk, unique
from .ops.nn import log_softmax, softmax
from .ops.reduce import (
    all, amax, amin, any, argmax, argmin, count_nonzero, cumprod, cumsum, logsumexp, max, mean, min, prod, std,
    sum, var,
)
from .ops.shape import (
    cat, chunk, flatten, flip, meshgrid, movedim, narrow, permute, repeat, reshape, roll, split, squeeze, stack, t,
    transpose, tril, triu, unbind, unsqueeze,
)
from .random import get_rng_state, initial_seed, manual_seed, set_rng_state
from .tensor import Tensor

from . import autograd, linalg, nn, optim  # noqa: E402  (after Tensor exists)
from . import io  # noqa: E402
from . import data  # noqa: E402
from . import cuda  # noqa: E402  (imports CuPy only when asked for a device)
from . import amp  # noqa: E402  (mixed precision: autocast, GradScaler)
from . import utils  # noqa: E402  (checkpoint)
from .io import load, load_file, save, save_file  # noqa: E402

# PyTorch's aliases
float = float32  # noqa: A001
double = float64
half = float16
long = int64
int = int32  # noqa: A001
clip = clamp
concat = concatenate = cat


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def numel(x: Tensor) -> int:
    return x.numel()
