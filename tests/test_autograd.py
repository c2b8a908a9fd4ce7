"""Autograd: .grad on leaves, backward(gradient, retain_graph), accumulation, no_grad, autograd.grad with
grad_outputs and create_graph, and the error for a freed graph."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import torch

import zigtensor as zt


def pair(values, dtype=np.float32):
    v = np.asarray(values, dtype=dtype)
    return zt.tensor(v, requires_grad=True), torch.tensor(v, requires_grad=True)


def close(z, t):
    np.testing.assert_allclose(z.numpy(), t.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_requires_grad_propagates():
    x = zt.ones(3, requires_grad=True)
    c = zt.ones(3)
    assert (x * c).requires_grad and not (c * c).requires_grad
    y = x * 2
    assert not y.is_leaf and y.grad_fn is not None and x.is_leaf and x.grad_fn is None
    assert y.grad_fn.name == "MulBackward"
    assert not (x > 0).requires_grad  # comparisons never carry a gradient
    assert not x.argmax().requires_grad
    assert not x.detach().requires_grad


def test_backward_scalar():
    (zx, tx), (zw, tw) = pair([[1.0, -2.0], [3.0, 0.5]]), pair([0.5, -1.5])
    (zx * zw).exp().sum().backward()
    (tx * tw).exp().sum().backward()
    close(zx.grad, tx.grad)
    close(zw.grad, tw.grad)


def test_backward_with_gradient():
    zx, tx = pair([[1.0, -2.0], [3.0, 0.5]])
    g = np.array([[1.0, 2.0], [-1.0, 0.5]], dtype=np.float32)
    (zx * zx).backward(zt.tensor(g))
    (tx * tx).backward(torch.tensor(g))
    close(zx.grad, tx.grad)
    with pytest.raises(RuntimeError, match=r"implicitly created only for scalar outputs.*\(2, 2\)"):
        (zx * 2).backward()
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\) but the output has shape \(2, 2\)"):
        (zx * 2).backward(zt.ones(3))


def test_gradients_accumulate():
    zx, tx = pair([1.0, 2.0, 3.0])
    for _ in range(3):
        (zx * zx).sum().backward()
        (tx * tx).sum().backward()
    close(zx.grad, tx.grad)
    zx.grad = None
    (zx * 3).sum().backward()
    assert zx.grad.tolist() == [3.0, 3.0, 3.0]


def test_grad_is_owned_by_the_leaf():
    # .grad must not alias another leaf's gradient or the caller's gradient tensor
    a, b = zt.ones(2, requires_grad=True), zt.ones(2, requires_grad=True)
    g = zt.tensor([1.0, 2.0])
    (a + b).backward(g)
    a.grad.add_(10)
    assert b.grad.tolist() == [1.0, 2.0] and g.tolist() == [1.0, 2.0]
    x = zt.ones(2, 3, requires_grad=True)
    x.sum().backward()  # the gradient is a broadcast of one number: still writable
    x.grad.mul_(2)
    assert x.grad.tolist() == [[2.0] * 3] * 2


def test_grad_is_owned_after_a_summed_gradient():
    # a node that receives one buffer twice stores their sum; the leaf that gets the same buffer as well
    # must still own its .grad (regression: the holder count kept the replaced addend)
    a, b = zt.ones(2, requires_grad=True), zt.ones(2, requires_grad=True)
    y = a.exp()
    g = zt.tensor([1.0, 2.0])
    ((y + b) + y).backward(g)
    b.grad.add_(10)
    assert g.tolist() == [1.0, 2.0] and b.grad.tolist() == [11.0, 12.0]
    np.testing.assert_allclose(a.grad.numpy(), 2 * np.e * np.array([1.0, 2.0]), rtol=1e-6)



def test_grad_accumulates_in_place_as_in_pytorch():
    # a second backward sums into the .grad tensor the user already holds, as PyTorch's AccumulateGrad does
    zx, tx = pair([1.0, 2.0, 3.0])
    (zx * zx).sum().backward()
    (tx * tx).sum().backward()
    zg, tg = zx.grad, tx.grad
    (zx * 3).sum().backward()
    (tx * 3).sum().backward()
    assert zx.grad is zg and tx.grad is tg
    close(zg, tg)


def test_a_buffer_adopted_by_a_leaf_and_held_for_a_node_is_not_summed_into():
    # add's backward hands one buffer to both inputs: w adopts it as .grad while the node of x * 2 + w * 3 still
    # holds it; w's second gradient (through w * 3) must then not be summed into that shared buffer
    (zw, tw), (zx, tx) = pair([1.0, -2.0, 0.5]), pair([0.3, 0.2, -0.1])
    for w, x in ((zw, zx), (tw, tx)):
        s = w + (x * 2 + w * 3)
        (s * s).sum().backward()
    close(zw.grad, tw.grad)
    close(zx.grad, tx.grad)


def test_node_gradients_summed_in_place_match_pytorch():
    # a residual stream: each block's output gradient is the sum of two paths, summed into one buffer
    (zx, tx), (zw, tw) = pair(np.linspace(-1, 1, 12).reshape(3, 4)), pair(np.linspace(0.5, -0.5, 16).reshape(4, 4))
    for x, w in ((zx, zw), (tx, tw)):
        h = x
        for _ in range(3):
            h = h + (h @ w).tanh()
        (h * h).sum().backward()
    close(zx.grad, tx.grad)
    close(zw.grad, tw.grad)

def test_shared_subexpressions():
    zx, tx = pair([0.5, -1.0, 2.0])
    zy, ty = zx.sin(), tx.sin()
    (zy * zy + zy.exp() * zx).sum().backward()
    (ty * ty + ty.exp() * tx).sum().backward()
    close(zx.grad, tx.grad)


def test_same_input_twice():
    zx, tx = pair([[1.0, 2.0], [3.0, 4.0]])
    (zx @ zx).sum().backward()
    (tx @ tx).sum().backward()
    close(zx.grad, tx.grad)


def test_retain_graph():
    zx, tx = pair([1.0, 2.0])
    zy, ty = (zx * zx).exp().sum(), (tx * tx).exp().sum()
    zy.backward(retain_graph=True)
    zy.backward()
    ty.backward(retain_graph=True)
    ty.backward()
    close(zx.grad, tx.grad)


def test_backward_through_freed_graph_raises():
    x = zt.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).exp().sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time.*retain_graph=True"):
        y.backward()
    z = x.exp()
    zt.autograd.grad(z.sum(), x)
    with pytest.raises(RuntimeError, match="second time"):
        z.sum().backward()


def test_backward_on_non_grad_tensor_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        zt.ones(2).sum().backward()


def test_no_grad_context():
    x = zt.ones(2, requires_grad=True)
    with zt.no_grad():
        y = x * 2
        assert not zt.is_grad_enabled()
        with zt.enable_grad():
            w = x * 2
    assert zt.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and w.requires_grad
    with zt.set_grad_enabled(False):
        assert not (x * 2).requires_grad


def test_no_grad_decorator():
    @zt.no_grad()
    def f(t):
        return t * 2

    @zt.no_grad
    def g(t):
        return t * 2

    @zt.enable_grad
    def h(t):
        return t * 2

    x = zt.ones(2, requires_grad=True)
    assert not f(x).requires_grad and not g(x).requires_grad
    assert zt.is_grad_enabled()
    assert (x * 2).requires_grad
    with zt.no_grad():
        assert h(x).requires_grad
        assert not zt.is_grad_enabled()
    assert f.__name__ == "f" and g.__name__ == "g"


def test_no_grad_restores_on_error():
    with pytest.raises(ValueError), zt.no_grad():
        raise ValueError
    assert zt.is_grad_enabled()


def test_a_decorated_generator_runs_each_step_in_the_mode():
    """The body of a generator function runs while it is iterated: no_grad must hold there at every step, and the
    caller's mode must be back at every yield (PyTorch's decorators do the same)."""
    x = zt.ones(2, requires_grad=True)

    @zt.no_grad()
    def steps(n):
        for _ in range(n):
            sent = yield (x * 2).requires_grad, zt.is_grad_enabled()
            assert sent in (None, "ping")
        return "done"

    gen = steps(3)
    assert next(gen) == (False, False)
    assert zt.is_grad_enabled() and (x * 2).requires_grad   # the caller's mode between steps
    assert gen.send("ping") == (False, False)
    with zt.no_grad():
        assert next(gen) == (False, False)
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done" and zt.is_grad_enabled()

    @zt.enable_grad
    def inner():
        yield (x * 2).requires_grad

    with zt.no_grad():
        assert list(inner()) == [True] and not zt.is_grad_enabled()

    @zt.no_grad
    def failing():
        yield 1
        raise KeyError("inside")

    gen = failing()
    next(gen)
    with pytest.raises(KeyError):
        next(gen)
    assert zt.is_grad_enabled()
    gen = steps(5)
    next(gen)
    gen.close()   # closing mid-way leaves the caller's mode alone
    assert zt.is_grad_enabled()


def test_autograd_grad():
    (zx, tx), (zw, tw) = pair([1.0, -2.0, 0.5]), pair([0.3, 0.2, -0.1])
    zg = zt.autograd.grad((zx * zw).tanh().sum(), [zx, zw])
    tg = torch.autograd.grad((tx * tw).tanh().sum(), [tx, tw])
    for a, b in zip(zg, tg):
        close(a, b)
    assert zx.grad is None and zw.grad is None  # grad() leaves .grad alone


def test_autograd_grad_outputs_and_non_leaf():
    zx, tx = pair([[1.0, 2.0], [0.5, -1.0]])
    zy, ty = zx * 3, tx * 3
    go = np.array([[1.0, -1.0], [2.0, 0.5]], dtype=np.float32)
    (zg,) = zt.autograd.grad((zy * zy).exp(), zy, grad_outputs=zt.tensor(go))
    (tg,) = torch.autograd.grad((ty * ty).exp(), ty, grad_outputs=torch.tensor(go))
    close(zg, tg)


def test_autograd_grad_create_graph():
    zx, tx = pair([0.5, -1.0, 2.0])
    (zg,) = zt.autograd.grad((zx ** 3).sum(), zx, create_graph=True)
    (tg,) = torch.autograd.grad((tx ** 3).sum(), tx, create_graph=True)
    assert zg.requires_grad
    close(zg, tg)
    (zgg,) = zt.autograd.grad(zg.sum(), zx)
    (tgg,) = torch.autograd.grad(tg.sum(), tx)
    close(zgg, tgg)
    # and through backward(): the gradient of a gradient norm
    zx2, tx2 = pair([0.5, -1.0, 2.0])
    (g,) = zt.autograd.grad(zx2.sin().sum(), zx2, create_graph=True)
    (g * g).sum().backward()
    (h,) = torch.autograd.grad(tx2.sin().sum(), tx2, create_graph=True)
    (h * h).sum().backward()
    close(zx2.grad, tx2.grad)


def test_autograd_grad_errors():
    x, y = zt.ones(2, requires_grad=True), zt.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="input 1 .* was not used"):
        zt.autograd.grad((x * 2).sum(), [x, y])
    gx, gy = zt.autograd.grad((x * 2).sum(), [x, y], allow_unused=True)
    assert gx.tolist() == [2.0, 2.0] and gy is None
    with pytest.raises(RuntimeError, match="input 0 .* does not require grad"):
        zt.autograd.grad((x * 2).sum(), [zt.ones(2)])
    with pytest.raises(ValueError, match="got 1 outputs but 2 grad_outputs"):
        zt.autograd.grad((x * 2).sum(), x, grad_outputs=[zt.ones(()), zt.ones(())])


def test_detach_stops_gradient():
    zx, tx = pair([1.0, 2.0])
    (zx * zx.detach()).sum().backward()
    (tx * tx.detach()).sum().backward()
    close(zx.grad, tx.grad)


def test_integer_and_bool_paths_have_no_gradient():
    x = zt.tensor([0.5, -1.5, 2.5], requires_grad=True)
    y = (x * (x > 0)).sum() + x.long().sum() * 0 + x[x.argmax()]
    y.backward()
    assert x.grad.tolist() == [1.0, 0.0, 2.0]


def test_gradient_dtypes_follow_inputs():
    x = zt.ones(2, dtype=zt.float64, requires_grad=True)
    h = zt.ones(2, dtype=zt.float16, requires_grad=True)
    (x * h).sum().backward()
    assert x.grad.dtype is zt.float64 and h.grad.dtype is zt.float16


def test_next_functions_and_repr():
    x = zt.ones(2, requires_grad=True)
    y = (x * 2).exp()
    assert y.grad_fn.name == "ExpBackward" and repr(y.grad_fn) == "<ExpBackward>"
    (prev, _), = y.grad_fn.next_functions
    assert prev.name == "MulBackward"


def test_long_chain_is_iterative():
    x = zt.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(3000):  # deeper than Python's recursion limit
        y = y * 1.0
    y.backward()
    assert x.grad.item() == 1.0


def test_inplace_outside_graph():
    x = zt.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="add_: in-place modification of a leaf tensor that requires grad"):
        x.add_(1)
    with zt.no_grad():
        x.add_(1)
    assert x.tolist() == [2.0, 2.0, 2.0] and x.requires_grad and x.is_leaf


# ------------------------------------------------------------------------------------------------ hooks
def test_tensor_hooks_and_retain_grad_match_pytorch():
    (zx, tx), (zw, tw) = pair([1.0, -2.0, 3.0]), pair([0.5, 0.25, -1.0])
    seen = {"zt": [], "torch": []}
    for lib, x, w in (("zt", zx, zw), ("torch", tx, tw)):
        x.register_hook(lambda g, lib=lib: seen[lib].append(("x", g.tolist())) or g * 10)  # a leaf: its total
        y = x * w
        y.retain_grad()
        y.register_hook(lambda g, lib=lib: seen[lib].append(("y", g.tolist())) or g + 1)
        z = y * y + x  # x receives two gradients: the hook sees their sum once
        z.retain_grad()
        z.sum().backward()
        assert y.retains_grad and z.retains_grad and not x.retains_grad
        seen[lib].append(("y.grad", y.grad.tolist()))
        seen[lib].append(("z.grad", z.grad.tolist()))
    assert seen["zt"] == seen["torch"]
    close(zx.grad, tx.grad)
    close(zw.grad, tw.grad)


def test_retained_gradients_accumulate_and_hooks_can_be_removed():
    results = []
    for lib in (zt, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 3
        y.retain_grad()
        handle = y.register_hook(lambda g: g * 2)
        (y * y).sum().backward(retain_graph=True)
        first = y.grad.clone()
        handle.remove()
        handle.remove()  # twice: no effect
        (y * y).sum().backward()
        results.append((first.tolist(), y.grad.tolist(), x.grad.tolist()))
    assert results[0] == results[1]


def test_hook_errors():
    x = zt.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that does not require grad"):
        zt.ones(3).register_hook(lambda g: g)
    x.register_hook(lambda g: g[:2])
    with pytest.raises(RuntimeError, match=r"returned a gradient of shape \(2,\) for a tensor of shape \(3,\)"):
        (x * 2).sum().backward()
    y = zt.ones(3, requires_grad=True)
    y.register_hook(lambda g: 5)
    with pytest.raises(TypeError, match="must return a Tensor or None, got int"):
        (y * 2).sum().backward()
    with pytest.raises(TypeError, match="a hook must be callable"):
        y.register_hook(3)


# ------------------------------------------------------------------------------ autograd.functional
def test_functional_derivatives_match_pytorch():
    ZF, TF = zt.autograd.functional, torch.autograd.functional
    x = np.random.default_rng(0).standard_normal(3)
    w = np.random.default_rng(1).standard_normal((2, 3))
    y = np.random.default_rng(2).standard_normal((2, 2))

    def model(lib, weight):
        return lambda a: (weight @ a).tanh()

    def loss(a):
        return (a ** 3).sum() + a[0] * a[1]

    def two(a, b):
        return (a.sum() * b).exp()

    zf, tf = model(zt, zt.tensor(w)), model(torch, torch.tensor(w))
    close(ZF.jacobian(zf, zt.tensor(x)), TF.jacobian(tf, torch.tensor(x)))
    for zj, tj in zip(ZF.jacobian(two, (zt.tensor(x), zt.tensor(y))), TF.jacobian(two, (torch.tensor(x),
                                                                                     torch.tensor(y)))):
        close(zj, tj)
    close(ZF.hessian(loss, zt.tensor(x)), TF.hessian(loss, torch.tensor(x)))
    v, u = np.array([1.0, -2.0]), np.array([0.5, 1.0, -1.0])
    close(ZF.vjp(zf, zt.tensor(x), zt.tensor(v))[1], TF.vjp(tf, torch.tensor(x), torch.tensor(v))[1])
    close(ZF.jvp(zf, zt.tensor(x), zt.tensor(u))[1], TF.jvp(tf, torch.tensor(x), torch.tensor(u))[1])
    close(ZF.hvp(loss, zt.tensor(x), zt.tensor(u))[1], TF.hvp(loss, torch.tensor(x), torch.tensor(u))[1])
    assert not ZF.jacobian(zf, zt.tensor(x)).requires_grad  # results are cut from the graph by default


def test_a_tensor_a_hook_returns_is_never_written_into():
    kept = zt.ones(3) * 5
    x = zt.ones(3, requires_grad=True)
    x.register_hook(lambda g: kept)
    (x * 2).sum().backward()
    x.grad.add_(1)  # .grad owns its buffer
    (x * 2).sum().backward()  # a second pass sums into .grad, not into kept
    assert kept.tolist() == [5.0] * 3 and x.grad.tolist() == [11.0] * 3
    y = zt.ones(3, requires_grad=True)
    h = y * 1
    h.register_hook(lambda g: kept)
    (h + h * 3).sum().backward()
    assert kept.tolist() == [5.0] * 3 and y.grad.tolist() == [5.0] * 3
