"""Whether ops record the graph. `no_grad` and `enable_grad` work as context managers and as decorators."""

from __future__ import annotations

import contextlib
import functools
import inspect


class GradMode:
    # NOTE: one process-wide flag, read on every op; a thread-local would cost a lookup per op.
    enabled = True


def is_grad_enabled() -> bool:
    return GradMode.enabled


class _SetGrad(contextlib.ContextDecorator):
    def __init__(self, mode: bool):
        self.mode = mode
        self.prev = []

    def __enter__(self):
        self.prev.append(GradMode.enabled)
        GradMode.enabled = self.mode
        return self

    def __exit__(self, *exc):
        GradMode.enabled = self.prev.pop()
        return False

    def __call__(self, func):
        """Decorate func. NOTE: a generator function's body runs when it is iterated, after the call returned,
        so it gets the mode around each resumption (and the caller's mode back at each yield), as PyTorch's
        decorators do; ContextDecorator alone would cover only the generator's creation."""
        if not inspect.isgeneratorfunction(func):
            return super().__call__(func)
        mode = self.mode

        @functools.wraps(func)
        def generator(*args, **kwargs):
            gen = func(*args, **kwargs)
            try:
                with _SetGrad(mode):
                    response = gen.send(None)
                while True:
                    try:
                        request = yield response
                    except GeneratorExit:
                        with _SetGrad(mode):
                            gen.close()
                        raise
                    except BaseException as e:   # thrown into this generator: on into func's, in the mode
                        with _SetGrad(mode):
                            response = gen.throw(e)
                    else:
                        with _SetGrad(mode):
                            response = gen.send(request)
            except StopIteration as stop:
                return stop.value

        return generator


class _NoParamDecorator(_SetGrad):
    # `@zt.no_grad` without parentheses decorates too, as in PyTorch
    def __new__(cls, func=None):
        if func is not None:
            return cls()(func)
        return super().__new__(cls)


class no_grad(_NoParamDecorator):
    """Ops inside do not record the graph: `with zt.no_grad(): ...`, `@zt.no_grad()` or `@zt.no_grad`."""

    def __init__(self, func=None):
        super().__init__(False)


class inference_mode(_SetGrad):
    """no_grad under PyTorch's other name (`with zt.inference_mode(): ...`); mode=False leaves grad mode on. There
    is no separate inference tensor kind here: the tensors made inside are ordinary ones without a graph."""

    def __new__(cls, mode=True):
        if callable(mode):  # `@zt.inference_mode` without parentheses
            return cls(True)(mode)
        return super().__new__(cls)

    def __init__(self, mode: bool = True):
        super().__init__(not mode)


class enable_grad(_NoParamDecorator):
    def __init__(self, func=None):
        super().__init__(True)


class set_grad_enabled(_SetGrad):
    def __init__(self, mode: bool):
        super().__init__(bool(mode))
