"""autocast: a region where matrix products run in a 16-bit float and precision-sensitive ops in float32.

>>> with zt.amp.autocast("cpu", dtype=zt.bfloat16):
...     logits = model(x)                 # linear/conv/attention in bfloat16, norms and softmax in float32
...     loss = F.cross_entropy(logits, y)  # float32
>>> loss.backward()                       # outside the region; the float32 parameters get float32 gradients

The ops that autocast concerns call `autocast_inputs(op, *args)` first thing; amp/policy.py says what each
one gets. The casts are ordinary Cast ops, recorded by autograd, so gradients flow back through them to the
float32 master weights in float32. Nothing here depends on the device: a CUDA tensor is cast by the CUDA
backend's own cast kernel, and the 16-bit op then runs on its 16-bit kernel.
"""

from __future__ import annotations

import contextlib

from ..autograd.grad_mode import GradMode
from ..dtypes import DType, as_dtype, bfloat16, float16, float32
from ..tensor import Tensor
from .policy import FLOAT32, LOWER, OP_POLICY

_DEVICE_TYPES = ("cpu", "cuda")
_DEFAULT_DTYPE = {"cpu": bfloat16, "cuda": float16}  # PyTorch's defaults per device type
_CASTABLE = (float32, float16, bfloat16)  # float64 and integer inputs are never cast


class AutocastState:
    """The autocast settings every op reads.

    NOTE: process-wide like GradMode (one attribute read per op while autocast is off), where PyTorch's are
    thread-local: a region entered in one thread applies to ops run by other threads meanwhile.
    """

    active = False  # some device type has autocast on
    dtypes: dict[str, DType] = {}  # device type -> its autocast dtype, for those on
    cache_enabled = True
    depth = 0  # open autocast regions; the cast cache empties when the outermost one exits
    # (id(source), dtype, grad mode) -> (source, its version, cast): float32 leaves that require grad (the
    # parameters) are cast once per region, not once per use (a tied embedding, a weight used twice)
    cache: dict = {}


class autocast(contextlib.ContextDecorator):
    """Context manager (or decorator) that turns autocasting on or off for one device type.

    Args:
        device_type (str): "cpu" or "cuda" (the type, without an index).
        dtype: zt.bfloat16 or zt.float16 (default: bfloat16 on "cpu", float16 on "cuda").
        enabled (bool): False turns autocast off for device_type inside the region (in an enclosing one too).
        cache_enabled (bool): cast each float32 parameter once per region rather than at each use.
    """

    def __init__(self, device_type: str, dtype=None, enabled: bool = True, cache_enabled: bool = True):
        if device_type not in _DEVICE_TYPES:
            raise ValueError(f"autocast: device_type must be one of {', '.join(map(repr, _DEVICE_TYPES))} (a "
                             f"type, without an index), got {device_type!r}")
        dtype = _DEFAULT_DTYPE[device_type] if dtype is None else as_dtype(dtype)
        if dtype not in (bfloat16, float16):
            raise ValueError(f"autocast: dtype must be zigtensor.bfloat16 or zigtensor.float16, got {dtype}")
        if not isinstance(enabled, bool) or not isinstance(cache_enabled, bool):
            raise TypeError(f"autocast: enabled and cache_enabled must be bools, got {enabled!r} and "
                            f"{cache_enabled!r}")
        self.device_type, self.dtype, self.enabled, self.cache_enabled = device_type, dtype, enabled, cache_enabled
        self._saved = []  # a stack: the same instance may be entered again (a recursive decorated function)

    def __enter__(self):
        s = AutocastState
        self._saved.append((dict(s.dtypes), s.cache_enabled))
        if self.enabled:
            s.dtypes[self.device_type] = self.dtype
        else:
            s.dtypes.pop(self.device_type, None)
        s.active = bool(s.dtypes)
        s.cache_enabled = self.cache_enabled
        s.depth += 1
        return self

    def __exit__(self, *exc):
        s = AutocastState
        s.dtypes, s.cache_enabled = self._saved.pop()
        s.active = bool(s.dtypes)
        s.depth -= 1
        if s.depth == 0:
            s.cache.clear()
        return False


def is_autocast_enabled(device_type: str = "cpu") -> bool:
    """Whether ops on device_type are autocast here."""
    return device_type in AutocastState.dtypes


def get_autocast_dtype(device_type: str = "cpu") -> DType:
    """The dtype autocast uses on device_type here (its default when autocast is off, as in PyTorch)."""
    if device_type not in _DEVICE_TYPES:
        raise ValueError(f"get_autocast_dtype: device_type must be one of {', '.join(map(repr, _DEVICE_TYPES))}, "
                         f"got {device_type!r}")
    return AutocastState.dtypes.get(device_type, _DEFAULT_DTYPE[device_type])


@contextlib.contextmanager
def autocast_suspended():
    """No autocasting inside (the backward walk: a backward op runs in the dtypes its forward op had)."""
    s = AutocastState
    if not s.active:
        yield
        return
    saved = s.dtypes
    s.dtypes, s.active = {}, False
    try:
        yield
    finally:
        s.dtypes, s.active = saved, bool(saved)


def autocast_inputs(op: str, *args) -> tuple:
    """args, with their floating Tensors cast as op's policy says when autocast is on for their device type;
    args unchanged otherwise (non-Tensors, float64 and integer tensors always)."""
    if not AutocastState.active:
        return args
    policy = OP_POLICY[op]
    return tuple(_cast(a, policy) for a in args)


def _cast(a, policy: str):
    if not isinstance(a, Tensor) or a.dtype not in _CASTABLE:
        return a
    target = AutocastState.dtypes.get(a.device.type)
    if target is None:
        return a
    if policy is FLOAT32:
        target = float32
    if a.dtype is target:
        return a
    if policy is LOWER and a.dtype is float32 and a.requires_grad and a.grad_fn is None and \
            AutocastState.cache_enabled:
        return _cached_cast(a, target)
    return a.to(target)


def _cached_cast(a: Tensor, target: DType) -> Tensor:
    key = (id(a), target, GradMode.enabled)
    hit = AutocastState.cache.get(key)
    # a cast whose node a backward walk has released cannot be used again; nor one of an older version
    if hit is not None and hit[0] is a and hit[1] == a._version and not getattr(hit[2].grad_fn, "freed", False):
        return hit[2]
    out = a.to(target)
    AutocastState.cache[key] = (a, a._version, out)
    return out
