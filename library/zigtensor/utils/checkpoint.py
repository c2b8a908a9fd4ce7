"""Activation checkpointing, as torch.utils.checkpoint.checkpoint: run a piece of a model without keeping its
intermediate activations, and run it again during backward to get its gradients.

    from zigtensor.utils.checkpoint import checkpoint
    x = checkpoint(block, x)                # block(x), its activations recomputed in backward

How: the piece is one graph node (Checkpoint). Its forward calls fn under no_grad, so nothing inside is
recorded or kept. Its backward restores the random state the forward saw (so dropout draws the same masks),
calls fn again with grad mode on, on detached copies of the tensor arguments, and walks that small graph with
the incoming gradient: the arguments' gradients are returned to the outer walk; parameters used inside fn get
theirs added to .grad directly (as PyTorch's reentrant checkpoint does). When fn is a Module (or its method),
its parameters are extra inputs of the node, so the node is recorded even if no argument requires grad.

Limits: fn returns one Tensor; second derivatives through a checkpoint are not supported (create_graph);
fn must compute the same thing twice (no state changed by the first call that the second would see).
"""

from __future__ import annotations

from ..autograd.engine import run_backward
from ..autograd.function import Function
from ..autograd.grad_mode import enable_grad, no_grad
from ..random import get_rng_state, set_rng_state
from ..tensor import Tensor


class Checkpoint(Function):
    def forward(self, fn, layout, rng, *arrays):
        self.fn, self.layout, self.rng = fn, layout, rng
        with no_grad():
            out = fn(*_arguments(layout, arrays, lambda a: Tensor._wrap(a, self.device)))
        if not isinstance(out, Tensor):
            raise TypeError(f"checkpoint: fn must return one Tensor, got {type(out).__name__}")
        return out.data

    def backward(self, g):
        from ..autograd.grad_mode import GradMode

        if GradMode.enabled:
            raise RuntimeError("checkpoint: second derivatives (create_graph=True) through a checkpoint are not "
                               "supported")
        inputs = self.inputs[3:]
        n_args = sum(1 for kind in self.layout if kind == "tensor")
        detached = [t.detach().requires_grad_(t.requires_grad) for t in inputs[:n_args]]
        device = self.device
        now = get_rng_state(device)
        set_rng_state(self.rng, device)  # the draws of the forward again (dropout's masks)
        try:
            with enable_grad():
                out = self.fn(*_arguments(self.layout, detached, lambda t: t))
        finally:
            set_rng_state(now, device)
        wanted = [t for t in detached if t.requires_grad]
        captured = run_backward([out], [g], retain_graph=False, create_graph=False,
                                capture={id(t): None for t in wanted}, accumulate=True) if out.requires_grad else {}
        grads = [captured.get(id(t)) if t.requires_grad else None for t in detached]
        return (None, None, None, *grads, *[None] * (len(inputs) - n_args))


def _arguments(layout, tensors, wrap) -> list:
    """fn's arguments in order: the tensors (wrapped) where layout says "tensor", the other values as given."""
    it = iter(tensors)
    return [wrap(next(it)) if kind == "tensor" else kind[1] for kind in layout]


def checkpoint(fn, *args, use_reentrant: bool | None = None):
    """fn(*args), with fn's activations recomputed in backward instead of kept (see the module docstring)."""
    from ..nn import Module

    if not callable(fn):
        raise TypeError(f"checkpoint: fn must be callable, got {type(fn).__name__}")
    tensors = [a for a in args if isinstance(a, Tensor)]
    if not tensors:
        raise ValueError("checkpoint: give fn at least one Tensor argument")
    layout = tuple("tensor" if isinstance(a, Tensor) else ("value", a) for a in args)
    owner = fn if isinstance(fn, Module) else getattr(fn, "__self__", None)
    params = list(owner.parameters()) if isinstance(owner, Module) else []
    rng = get_rng_state(tensors[0].device)
    return Checkpoint.apply(fn, layout, rng, *tensors, *params)
