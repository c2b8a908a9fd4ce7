"""Function: one differentiable op, its forward beside its backward, and the graph node it leaves.

`forward` works on backend arrays (fast, no graph). `backward` works on Tensors with Tensor ops, so the
engine can run it recording a graph (create_graph=True gives higher-order gradients) or not (the usual case,
under no_grad). Each Function has exactly one output; ops with several results are built from several.
"""

from __future__ import annotations

from .grad_mode import GradMode


class Function:
    # Set by subclasses whose backward reads the output (exp, tanh, softmax): it is rebuilt as a Tensor whose
    # grad_fn is this node, so no reference cycle output -> node -> output is needed.
    save_output = False
    # Ops with no useful gradient (comparisons, argmax, floor division) never record a node.
    differentiable = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run forward on the arrays of the Tensor arguments; record a node when a gradient is needed."""
        ctx = cls.__new__(cls)
        device = None
        requires = False
        arrays = []
        for a in args:
            if isinstance(a, Tensor):
                if device is None:
                    device = a.device
                elif a.device is not device:
                    raise RuntimeError(
                        f"{cls.__name__.lower()}: expected all tensors on the same device, found {device} and "
                        f"{a.device} (move one with .to(device); zigtensor never copies between devices silently)"
                    )
                arrays.append(a.data)
                requires = requires or a.requires_grad
            else:
                arrays.append(a)
        backend = device.backend
        ctx.device = device
        ctx.xp = backend.xp
        out = ctx.forward(*arrays, **kwargs)
        if type(out) is not backend.array_type:
            out = backend.xp.asarray(out)  # NumPy turns 0-d results into scalars
        t = Tensor.__new__(Tensor)
        t.data = out
        t.dtype = _dtype_of(out.dtype)
        t.device = device
        t.grad = None
        t._version = 0
        if requires and GradMode.enabled and cls.differentiable:
            ctx.inputs = args
            ctx.freed = False
            if cls.save_output:
                ctx.saved_out = out
            t.requires_grad = True
            t.grad_fn = ctx
        else:
            t.requires_grad = False
            t.grad_fn = None
        return t

    def output(self):
        """The output as a Tensor attached to this node (for backward formulas that use the result)."""
        t = Tensor.__new__(Tensor)
        t.data = self.saved_out
        t.dtype = _dtype_of(self.saved_out.dtype)
        t.device = self.device
        t.grad = None
        t._version = 0
        t.requires_grad = True
        t.grad_fn = self
        return t

    def release(self) -> None:
        """Free what only backward needed; a second backward through this node then fails clearly."""
        self.freed = True
        self.saved_out = None

    @property
    def name(self) -> str:
        return type(self).__name__ + "Backward"

    @property
    def next_functions(self):
        return tuple((a.grad_fn, 0) if isinstance(a, Tensor) else (None, 0) for a in self.inputs)

    def __repr__(self) -> str:
        return f"<{self.name}>"


from ..dtypes import from_numpy as _dtype_of  # noqa: E402
from ..tensor import Tensor  # noqa: E402
