"""The backward walk: topological order over graph nodes, gradient accumulation, .grad on leaves."""

from __future__ import annotations

from .grad_mode import set_grad_enabled
from .hooks import leaf_hooks, run_hooks


def _topo_order(roots):
    """Nodes reachable from roots, each after every node that consumes its output (iterative DFS)."""
    order, seen = [], set()
    for root in roots:
        if root is None or id(root) in seen:
            continue
        seen.add(id(root))
        stack = [(root, iter(root.inputs))]
        while stack:
            node, it = stack[-1]
            for a in it:
                fn = getattr(a, "grad_fn", None)
                if fn is not None and id(fn) not in seen:
                    seen.add(id(fn))
                    stack.append((fn, iter(fn.inputs)))
                    break
            else:
                stack.pop()
                order.append(node)
    order.reverse()
    return order


def _root_id(arr) -> int:
    while arr.base is not None:
        arr = arr.base
    return id(arr)


def _owned_sum(prev, g, owned: bool):
    """prev + g, written into prev's buffer when owned (nobody but its one holder sees it) and the buffer can take
    it, as PyTorch accumulates: a GPT step sums each residual stream's gradients this way without allocating."""
    a, b = prev.data, g.data
    if (owned and a.flags.writeable and a.flags.c_contiguous and a.dtype == b.dtype and a.shape == b.shape
            and (b is a or _root_id(b) != _root_id(a))):  # NOTE: no partial overlap (a race in a kernel)
        a += b
        return prev
    return prev + g


def _freed_error(node):
    return RuntimeError(
        f"trying to backward through the graph a second time (node {node.name}): its saved values were freed "
        "by the first backward. Pass retain_graph=True to the first backward if you need to go through it again."
    )


def run_backward(outputs, grad_outputs, retain_graph, create_graph, capture=None, accumulate=True):
    """Propagate grad_outputs from outputs back to the leaves.

    accumulate: add into .grad of leaf tensors (Tensor.backward).
    capture: {id(tensor): None} to collect the total gradient reaching those tensors (autograd.grad).
    """
    grads = {}  # node -> gradient w.r.t. its output
    captured = {}
    # How many places hold each gradient buffer (by its root array): a leaf may take a buffer as its .grad
    # without a copy only when nobody else holds it (PyTorch "steals" a gradient whose refcount is one).
    holders = {}
    for g in grad_outputs:
        holders[_root_id(g.data)] = 1  # the caller's tensor

    hooked = {}  # id(leaf) -> (leaf, its summed gradient), for leaves with hooks

    def through_hooks(hooks, g, shape):
        out = run_hooks(hooks, g, shape)
        if out is not g:  # a tensor the hook made or kept: never summed into or adopted without a copy
            r = _root_id(out.data)
            holders[r] = holders.get(r, 0) + 1
        return out

    def deliver(t, g):
        if capture is not None and id(t) in capture:
            prev = captured.get(id(t))
            captured[id(t)] = g if prev is None else prev + g
        fn = t.grad_fn
        if fn is not None:
            prev = grads.get(fn)
            if prev is not None:  # the stored buffer is replaced by the sum: count the sum, not the addend
                r = _root_id(prev.data)
                holders[r] -= 1
                g = _owned_sum(prev, g, owned=not create_graph and holders[r] == 0)
            grads[fn] = g
            r = _root_id(g.data)
            holders[r] = holders.get(r, 0) + 1
        elif accumulate and t.requires_grad:
            if leaf_hooks(t) is None:
                add_to_grad(t, g)
                return
            # its hooks see the leaf's total: summed here (and counted as a holder), added after the walk
            prev = hooked.get(id(t))
            if prev is not None:
                holders[_root_id(prev[1].data)] -= 1
                g = prev[1] + g
            hooked[id(t)] = (t, g)
            r = _root_id(g.data)
            holders[r] = holders.get(r, 0) + 1

    def add_to_grad(t, g):
        if t.grad is not None and create_graph:
            t.grad = t.grad + g
        elif t.grad is not None:
            # NOTE: summed into .grad's buffer, as PyTorch does, unless this backward still holds that buffer
            # elsewhere (a pass-through gradient both adopted here and stored for another node)
            old = t.grad
            owned = old.grad_fn is None and holders.get(_root_id(old.data), 0) <= 1
            total = _owned_sum(old, g, owned)
            t.grad = old if total is old else total.detach()
        elif create_graph:
            t.grad = g
        else:
            # NOTE: .grad is the user's to modify in place, so it must own its buffer: copy a gradient that
            # is read-only (broadcast) or also held elsewhere (pass-through backwards such as add's).
            r = _root_id(g.data)
            shared = holders.get(r, 0) > 0 or not g.data.flags.writeable
            t.grad = g.clone().detach() if shared else g.detach()
            holders[r] = holders.get(r, 0) + 1

    from ..amp.autocast_mode import autocast_suspended  # NOTE: here, not at the top: amp imports Tensor

    # a backward op runs in the dtypes of its forward op, never autocast (backward inside an autocast region)
    with set_grad_enabled(create_graph), autocast_suspended():
        for t, g in zip(outputs, grad_outputs):
            deliver(t, g)
        for node in _topo_order([t.grad_fn for t in outputs]):
            g = grads.pop(node, None)
            if g is None:
                continue
            if node.freed:
                raise _freed_error(node)
            r = _root_id(g.data)
            holders[r] -= 1  # popped: this node was its holder
            hooks = node.__dict__.get("tensor_hooks")
            if hooks:
                g = through_hooks(hooks, g, g.shape)
            retained = node.__dict__.get("retained")
            t = retained() if retained is not None else None
            if t is not None:  # a copy: g's buffer may be summed into in place further down
                kept = g if create_graph else g.detach().clone()
                t.grad = kept if t.grad is None else t.grad + kept
            in_grads = node.backward(g)
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            for inp, ig in zip(node.inputs, in_grads):
                if ig is None or not getattr(inp, "requires_grad", False):
                    continue
                if ig.shape != inp.shape:
                    raise RuntimeError(
                        f"internal error: {node.name} returned a gradient of shape {ig.shape} for an input "
                        f"of shape {inp.shape}"
                    )
                if ig.dtype is not inp.dtype:
                    ig = ig.to(inp.dtype)
                deliver(inp, ig)
            if not retain_graph:
                node.release()
        for t, g in hooked.values():
            holders[_root_id(g.data)] -= 1
            add_to_grad(t, through_hooks(leaf_hooks(t), g, t.shape))
    return captured
