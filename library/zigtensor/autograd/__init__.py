"""Reverse-mode automatic differentiation: Function, the backward walk, grad(), and grad-mode switches."""

from __future__ import annotations

from .engine import run_backward
from .function import Function
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled

__all__ = ["Function", "backward", "grad", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
           "functional"]


def _as_tuple(x):
    if x is None:
        return None
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def _default_grad_outputs(outputs, grad_outputs, caller):
    from ..creation import ones_like

    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"{caller}: got {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    result = []
    for out, g in zip(outputs, grad_outputs):
        if not out.requires_grad:
            raise RuntimeError(
                f"{caller}: element of shape {out.shape} does not require grad and has no grad_fn "
                "(was it computed under no_grad, or from tensors without requires_grad=True?)"
            )
        if g is None:
            if out.numel() != 1:
                raise RuntimeError(
                    f"{caller}: grad can be implicitly created only for scalar outputs, got shape {out.shape}; "
                    "pass a gradient of that shape"
                )
            g = ones_like(out)
        elif g.shape != out.shape:
            raise RuntimeError(f"{caller}: gradient has shape {g.shape} but the output has shape {out.shape}")
        result.append(g)
    return result


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False) -> None:
    """Accumulate d(tensors)/d(leaf) into every leaf's .grad (torch.autograd.backward)."""
    outputs = _as_tuple(tensors)
    grads = _default_grad_outputs(outputs, _as_tuple(grad_tensors), "backward")
    if retain_graph is None:
        retain_graph = create_graph
    run_backward(outputs, grads, retain_graph, create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Return d(outputs)/d(inputs) as a tuple, without touching any .grad (torch.autograd.grad)."""
    outputs = _as_tuple(outputs)
    inputs = _as_tuple(inputs)
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(f"grad: input {i} (shape {t.shape}) does not require grad")
    grads = _default_grad_outputs(outputs, _as_tuple(grad_outputs), "grad")
    if retain_graph is None:
        retain_graph = create_graph
    captured = run_backward(
        outputs, grads, retain_graph, create_graph, capture={id(t): None for t in inputs}, accumulate=False
    )
    result = []
    for i, t in enumerate(inputs):
        g = captured.get(id(t))
        if g is None and not allow_unused:
            raise RuntimeError(
                f"grad: input {i} (shape {t.shape}) was not used to compute the outputs; "
                "pass allow_unused=True to get None for it"
            )
        result.append(g)
    return tuple(result)


from . import functional  # noqa: E402  (uses grad above)
