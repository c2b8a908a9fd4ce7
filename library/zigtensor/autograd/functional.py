"""Derivatives of functions, as torch.autograd.functional: vjp, jvp, jacobian, hessian, hvp, vhp.

    J = zt.autograd.functional.jacobian(f, x)        # (*f(x).shape, *x.shape)
    H = zt.autograd.functional.hessian(loss, w)      # (*w.shape, *w.shape)

Each is built on zt.autograd.grad: a vector-Jacobian product is one backward walk; a Jacobian is one walk per
output element; a Jacobian-vector product is the "double backward" trick (the vjp is linear in its vector, so
differentiating it with respect to that vector gives J v); a Hessian is the Jacobian of the gradient.
"""

from __future__ import annotations

from ..tensor import Tensor
from . import grad as _grad
from .grad_mode import enable_grad


def _tuple(x) -> tuple[tuple, bool]:
    if isinstance(x, Tensor):
        return (x,), True
    if isinstance(x, (tuple, list)) and all(isinstance(t, Tensor) for t in x):
        return tuple(x), False
    raise TypeError(f"expected a Tensor or a tuple of Tensors, got {type(x).__name__}")


def _prepare(inputs, create_graph: bool):
    """Inputs that require grad, cut from any outer graph unless create_graph keeps them attached."""
    return tuple(t if create_graph and t.requires_grad else t.detach().requires_grad_(True) for t in inputs)


def _grads(outputs, inputs, grad_outputs, create_graph: bool):
    grads = _grad(outputs, inputs, grad_outputs, retain_graph=True, create_graph=create_graph, allow_unused=True)
    return tuple(g if g is not None else t.new_zeros(t.shape) for g, t in zip(grads, inputs))


def vjp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), v^T J): v has func's output shape (omitted for a one-element output)."""
    ins, single = _tuple(inputs)
    with enable_grad():
        ins = _prepare(ins, create_graph)
        out = func(*ins)
        outs, single_out = _tuple(out)
        vs = (None,) * len(outs) if v is None else _tuple(v)[0]
        result = _grads(outs, ins, vs, create_graph)
    detach = (lambda t: t) if create_graph else (lambda t: t.detach())
    out = detach(outs[0]) if single_out else tuple(detach(o) for o in outs)
    return out, (detach(result[0]) if single else tuple(detach(r) for r in result))


def jvp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), J v): v has the inputs' shapes (omitted for one-element inputs)."""
    ins, single = _tuple(inputs)
    vs = tuple(t.new_ones(t.shape) for t in ins) if v is None else _tuple(v)[0]
    with enable_grad():
        ins = _prepare(ins, create_graph)
        out = func(*ins)
        outs, single_out = _tuple(out)
        # u -> J^T u is linear in u: its derivative along v with respect to u is J v
        us = tuple(o.new_zeros(o.shape).requires_grad_(True) for o in outs)
        jtu = _grads(outs, ins, us, create_graph=True)
        result = _grads(jtu, us, vs, create_graph)
    detach = (lambda t: t) if create_graph else (lambda t: t.detach())
    out = detach(outs[0]) if single_out else tuple(detach(o) for o in outs)
    return out, (detach(result[0]) if single_out else tuple(detach(r) for r in result))


def jacobian(func, inputs, create_graph: bool = False, strict: bool = False):
    """d func(inputs) / d inputs: (*out.shape, *in.shape) for one output and one input; tuples of those
    (outputs outer, inputs inner) otherwise."""
    from ..ops.shape import stack

    ins, single = _tuple(inputs)
    with enable_grad():
        ins = _prepare(ins, create_graph)
        out = func(*ins)
        outs, single_out = _tuple(out)
        table = []
        for o in outs:
            flat = o.reshape(-1)
            rows = [_grads((flat[i],), ins, None, create_graph) for i in range(flat.shape[0])]
            per_input = []
            for k, t in enumerate(ins):
                if rows:
                    j = stack([r[k] for r in rows]).reshape(*o.shape, *t.shape)
                else:
                    j = t.new_zeros((*o.shape, *t.shape))
                per_input.append(j if create_graph else j.detach())
            table.append(per_input[0] if single else tuple(per_input))
    return table[0] if single_out else tuple(table)


def hessian(func, inputs, create_graph: bool = False, strict: bool = False):
    """The second derivatives of a one-element func: (*in.shape, *in.shape) for one input."""
    ins, single = _tuple(inputs)

    def gradient(*xs):
        out = func(*xs)
        if not isinstance(out, Tensor) or out.numel() != 1:
            raise RuntimeError(f"hessian: func must return a one-element Tensor, got "
                               f"{getattr(out, 'shape', type(out).__name__)}")
        gs = _grads((out.reshape(()),), xs, None, create_graph=True)
        return gs[0] if single else gs

    return jacobian(gradient, ins[0] if single else ins, create_graph=create_graph)


def vhp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), v^T H) of a one-element func."""
    ins, single = _tuple(inputs)
    with enable_grad():
        ins = _prepare(ins, True)
        out = func(*ins)
        gs = _grads((out.reshape(()),), ins, None, create_graph=True)
        vs = _tuple(v)[0] if v is not None else tuple(t.new_ones(t.shape) for t in ins)
        result = _grads(gs, ins, vs, create_graph)
    detach = (lambda t: t) if create_graph else (lambda t: t.detach())
    return detach(out), (detach(result[0]) if single else tuple(detach(r) for r in result))


def hvp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """(func(inputs), H v) of a one-element func (H is symmetric: the same as vhp)."""
    return vhp(func, inputs, v, create_graph, strict)
