"""Gradient clipping by total norm or by value, in place on .grad: torch.nn.utils' functions and results.

The work is done on backend arrays, outside the graph: clipping is not differentiable, as in PyTorch.
"""

from __future__ import annotations

import contextlib
import math

from ...dtypes import promote_types
from ...tensor import Tensor

_EPS = 1e-6  # PyTorch's: max_norm / (total_norm + 1e-6)


def _tensor_list(tensors) -> list:
    """A Tensor or an iterable (a generator too) of Tensors, as a list."""
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"expected Tensors, got {type(t).__name__}")
    return tensors


def _vector_norm(arr, p: float, xp):
    """||arr||_p over all elements, a 0-d array; 16-bit floats accumulate in float32, as in PyTorch."""
    out_dtype = arr.dtype
    if arr.dtype.itemsize < 4:
        arr = arr.astype(xp.float32)
    a = xp.abs(arr.reshape(-1))
    if a.size == 0:
        r = xp.zeros((), a.dtype)
    elif p == math.inf:
        r = a.max()
    elif p == -math.inf:
        r = a.min()
    elif p == 0:
        r = (a != 0).sum().astype(a.dtype)
    elif p == 1:
        r = a.sum()
    elif p == 2:
        r = xp.sqrt(xp.dot(a, a))
    else:
        r = (a**p).sum() ** (1.0 / p)
    return xp.asarray(r).astype(out_dtype)


def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    """The norm of the norms of tensors (as if concatenated into one vector), a 0-d Tensor.

    Args:
        tensors: a Tensor or an iterable of Tensors (usually gradients).
        norm_type (float): the p of the p-norm, inf for the largest magnitude. Default 2.
        error_if_nonfinite (bool): raise RuntimeError when the total is nan or inf. Default False.
        foreach: accepted for PyTorch compatibility; ignored.
    """
    tensors = _tensor_list(tensors)
    norm_type = float(norm_type)
    if not tensors:
        from ...creation import tensor

        return tensor(0.0)
    dev = tensors[0].device
    dtype = tensors[0].dtype
    norms = []
    for t in tensors:
        dtype = promote_types(dtype, t.dtype)
        n = Tensor._wrap(_vector_norm(t.data, norm_type, t.device.backend.xp), t.device)
        norms.append(n.to(device=dev).data)
    xp = dev.backend.xp
    total = _vector_norm(xp.stack([n.astype(dtype.np) for n in norms]), norm_type, xp)
    if error_if_nonfinite and not math.isfinite(float(total)):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is "
                           f"non-finite ({float(total)}), so it cannot be clipped. To disable this error and "
                           "scale the gradients by the non-finite norm anyway, set "
                           "`error_if_nonfinite=False`")
    return Tensor._wrap(total, dev)


def clip_grads_with_norm_(parameters, max_norm: float, total_norm: Tensor, foreach=None) -> None:
    """Scale every .grad by min(1, max_norm / (total_norm + 1e-6)), in place.

    Args:
        parameters: a Tensor or an iterable of Tensors whose .grad is scaled (those without one are skipped).
        max_norm (float): the largest total norm allowed.
        total_norm (Tensor): the total norm of the gradients, as get_total_norm gives it.
        foreach: accepted for PyTorch compatibility; ignored.
    """
    grads = [p.grad for p in _tensor_list(parameters) if p.grad is not None]
    if not grads:
        return
    total = total_norm.data
    xp = total_norm.device.backend.xp
    coef = xp.minimum(float(max_norm) / (total + xp.asarray(_EPS, total.dtype)), 1.0).astype(total.dtype)
    coef = Tensor._wrap(xp.asarray(coef), total_norm.device)
    for g in grads:
        gxp = g.device.backend.xp
        # NOTE: a non-finite norm scales inf by 0 (nan, as in PyTorch); NumPy would warn on every step.
        with gxp.errstate(invalid="ignore") if hasattr(gxp, "errstate") else contextlib.nullcontext():
            g.data *= coef.to(device=g.device, dtype=g.dtype).data
        g._version += 1


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None) -> Tensor:
    """Scale the gradients in place so that their total norm is at most max_norm; return the norm before.

    g *= min(1, max_norm / (total_norm + 1e-6)), with total_norm the norm_type-norm of all gradients seen as
    one vector.

    Args:
        parameters: a Tensor or an iterable of Tensors whose .grad is clipped (those without one are skipped).
        max_norm (float): the largest total norm allowed.
        norm_type (float): the p of the p-norm, inf for the largest magnitude. Default 2.
        error_if_nonfinite (bool): raise RuntimeError when the total norm is nan or inf (the gradients are
            then left as they are). Default False.
        foreach: accepted for PyTorch compatibility; ignored.

    Returns:
        Tensor: the total norm of the gradients before clipping (0-d).

    >>> loss.backward()
    >>> grad_norm = zt.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    """
    parameters = _tensor_list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(parameters, max_norm, total, foreach)
    return total


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every .grad to [-clip_value, clip_value], in place.

    Args:
        parameters: a Tensor or an iterable of Tensors whose .grad is clamped (those without one are skipped).
        clip_value (float): the largest magnitude allowed.
        foreach: accepted for PyTorch compatibility; ignored.

    >>> zt.nn.utils.clip_grad_value_(model.parameters(), clip_value=0.5)
    """
    clip_value = float(clip_value)
    for p in _tensor_list(parameters):
        g = p.grad
        if g is None:
            continue
        xp = g.device.backend.xp
        # NOTE: minimum(maximum(g, -c), c), so a negative clip_value sets every element to it, as in PyTorch.
        xp.minimum(xp.maximum(g.data, -clip_value, out=g.data), clip_value, out=g.data)
        g._version += 1
