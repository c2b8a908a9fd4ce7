"""Gradient hooks on tensors (Tensor.register_hook, Tensor.retain_grad) and the handles that remove hooks.

    h = x.register_hook(lambda g: g.clamp(-1, 1))   # called with x's total gradient; may return a new one
    y.retain_grad()                                 # a non-leaf keeps its gradient in y.grad
    h.remove()

Where they live: a non-leaf tensor is its graph node's one output, so its hooks (and its retain_grad) are kept on
the node and run when the engine has summed the node's gradient, before the node's backward. A leaf has no node:
its hooks are kept here, by the tensor's id with a weak reference (a tensor's `==` is elementwise, so tensors
cannot be dict keys), and run on the leaf's summed gradient of the backward pass, before it is added to .grad.
"""

from __future__ import annotations

import itertools
import weakref

_leaf_hooks: dict[int, tuple[weakref.ref, dict]] = {}
_ids = itertools.count()


class RemovableHandle:
    """What register_hook / register_forward_hook return: remove() unregisters the hook (again: no effect)."""

    def __init__(self, hooks: HookDict, key: int):
        self._hooks, self._key = weakref.ref(hooks), key  # NOTE: weak: a handle does not keep a graph alive
        self.id = key

    def remove(self) -> None:
        hooks = self._hooks()
        if hooks is not None:
            hooks.pop(self._key, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class HookDict(dict):
    """Hooks by registration key, in order; a dict that a handle can refer to weakly (a plain dict cannot)."""


def add_hook(hooks: HookDict, hook) -> RemovableHandle:
    """hooks[new key] = hook, in registration order; the handle removes it."""
    if not callable(hook):
        raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
    key = next(_ids)
    hooks[key] = hook
    return RemovableHandle(hooks, key)


def register_hook(tensor, hook) -> RemovableHandle:
    """Tensor.register_hook: hook(grad) -> Tensor or None, called with the tensor's gradient when backward computes
    it; a returned tensor replaces the gradient from there on."""
    if not tensor.requires_grad:
        raise RuntimeError("register_hook: cannot register a hook on a tensor that does not require grad")
    node = tensor.grad_fn
    if node is not None:
        hooks = node.__dict__.setdefault("tensor_hooks", HookDict())
    else:
        entry = _leaf_hooks.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            entry = (weakref.ref(tensor), HookDict())
            _leaf_hooks[id(tensor)] = entry
            weakref.finalize(tensor, _leaf_hooks.pop, id(tensor), None)
        hooks = entry[1]
    return add_hook(hooks, hook)


def leaf_hooks(tensor) -> dict | None:
    """The hooks registered on a leaf tensor (None when it has none)."""
    entry = _leaf_hooks.get(id(tensor))
    return entry[1] if entry is not None and entry[0]() is tensor and entry[1] else None


def retain_grad(tensor) -> None:
    """Tensor.retain_grad: a non-leaf tensor's gradient is kept in its .grad (summed over backward calls, as a
    leaf's); on a leaf, which keeps its gradient anyway, nothing to do."""
    if not tensor.requires_grad:
        raise RuntimeError("retain_grad: cannot retain the gradient of a tensor that does not require grad")
    if tensor.grad_fn is not None:
        tensor.grad_fn.retained = weakref.ref(tensor)


def run_hooks(hooks: dict, grad, shape: tuple):
    """grad through each hook in order; a hook's returned tensor replaces it (same shape required)."""
    from ..tensor import Tensor

    for hook in list(hooks.values()):
        out = hook(grad)
        if out is None:
            continue
        if not isinstance(out, Tensor):
            raise TypeError(f"a gradient hook must return a Tensor or None, got {type(out).__name__}")
        if out.shape != shape:
            raise RuntimeError(f"a gradient hook returned a gradient of shape {out.shape} for a tensor of shape "
                               f"{shape}")
        grad = out
    return grad
