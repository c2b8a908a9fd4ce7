"""GradScaler: dynamic loss scaling, so that float16 gradients neither underflow to zero nor stay overflowed.

>>> scaler = zt.amp.GradScaler()
>>> with zt.amp.autocast("cuda", dtype=zt.float16):
...     loss = loss_fn(model(x), y)
>>> scaler.scale(loss).backward()   # gradients of loss * scale
>>> scaler.unscale_(opt)            # optional: true gradients now (for clipping); inf/nan noted
>>> scaler.step(opt)                # opt.step(), skipped when a gradient was inf or nan
>>> scaler.update()                 # scale * backoff_factor after a skip; * growth_factor after
...                                 # growth_interval steps in a row without one

The same behaviour as torch.amp.GradScaler, step for step: the scale and the inverse scale are float32
values, gradients are multiplied by the inverse even when a step is skipped, and the growth tracker counts
the successful steps since the last change. The scale lives on the host (a Python float): the one read back
from the device is the inf/nan flag, taken once per optimizer over all its gradients.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd.grad_mode import no_grad
from ..dtypes import float16, float32
from ..tensor import Tensor

_READY, _UNSCALED, _STEPPED = 0, 1, 2


def _f32(x: float) -> float:
    """x rounded to float32, as PyTorch keeps the scale in a float32 tensor (inf beyond its range)."""
    with np.errstate(over="ignore"):
        return float(np.float32(x))


class GradScaler:
    """Scales the loss up before backward and the gradients down before the optimizer step.

    Args:
        init_scale (float): the first scale, > 0. Default 2**16.
        growth_factor (float): multiplies the scale after growth_interval steps without inf/nan, > 1.
        backoff_factor (float): multiplies the scale after a step with inf/nan gradients, in (0, 1).
        growth_interval (int): successful steps in a row before the scale grows, > 0.
        enabled (bool): False makes every method a pass-through (scale() returns its input, step() calls
            optimizer.step()), so one training loop serves float32 and float16 runs.
    """

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True):
        if isinstance(init_scale, str):  # torch.amp.GradScaler("cuda", ...)
            raise TypeError(f"GradScaler: got {init_scale!r} for init_scale; unlike torch.amp.GradScaler it takes "
                            "no device (the scale is kept on the host, for every device)")
        _check_positive("init_scale", init_scale)
        _check_positive("growth_factor", growth_factor)
        if not growth_factor > 1.0:
            raise ValueError(f"GradScaler: growth_factor must be > 1.0, got {growth_factor}")
        _check_positive("backoff_factor", backoff_factor)
        if not backoff_factor < 1.0:
            raise ValueError(f"GradScaler: backoff_factor must be < 1.0, got {backoff_factor}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, numbers.Integral) or \
                growth_interval <= 0:
            raise ValueError(f"GradScaler: growth_interval must be a positive int, got {growth_interval!r}")
        if not isinstance(enabled, bool):
            raise TypeError(f"GradScaler: enabled must be a bool, got {enabled!r}")
        self._enabled = enabled
        self._scale = _f32(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._growth_tracker = 0
        self._scaled = False  # scale() was called since construction (PyTorch's lazily made scale tensor)
        self._per_optimizer: dict[int, dict] = {}  # id(optimizer) -> {"stage", "found_inf"}

    # ------------------------------------------------------------------------------------------ the steps
    def scale(self, outputs):
        """outputs (a Tensor, or lists/tuples of them) multiplied by the scale. A 0-d 16-bit loss comes back
        as float32 (it is multiplied by a 0-d float32 tensor), so the scaled loss cannot overflow."""
        if not self._enabled:
            return outputs
        self._scaled = True
        if isinstance(outputs, Tensor):
            return outputs * Tensor._wrap(outputs.device.backend.xp.asarray(self._scale, dtype=float32.np),
                                          outputs.device)
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        raise TypeError(f"GradScaler.scale: expected a Tensor or a list/tuple of Tensors, got "
                        f"{type(outputs).__name__}")

    def _state(self, optimizer) -> dict:
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": None})

    @no_grad()
    def unscale_(self, optimizer) -> None:
        """Divide optimizer's gradients by the scale, in place, noting whether any is inf or nan. Call it
        before anything that reads the gradients (clipping); step() calls it when it has not been."""
        if not self._enabled:
            return
        self._check_scaled("unscale_")
        state = self._state(optimizer)
        if state["stage"] == _UNSCALED:
            raise RuntimeError("GradScaler.unscale_: already called on this optimizer since the last update()")
        if state["stage"] == _STEPPED:
            raise RuntimeError("GradScaler.unscale_: called after step() (call it before step(), once per "
                               "update())")
        inv_scale = _f32(1.0 / self._scale)  # float32, as PyTorch's scale.double().reciprocal().float()
        finite = []
        xp = None
        for group in optimizer.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if g.dtype is float16:
                    raise ValueError(f"GradScaler.unscale_: a parameter of shape {p.shape} has a float16 "
                                     "gradient; keep the parameters (master weights) in float32 and let "
                                     "autocast make the float16 copies")
                xp = g.device.backend.xp
                a = g.data
                finite.append(xp.isfinite(a).all())
                if a.dtype in (float32.np, np.dtype(np.float64)):
                    a *= a.dtype.type(inv_scale)
                else:  # bfloat16: the product in float32, rounded once
                    a[...] = (a.astype(float32.np) * np.float32(inv_scale)).astype(a.dtype)
                p.grad._version += 1
        # one read back from the device for all the gradients
        state["found_inf"] = None if xp is None else not bool(xp.stack(finite).all())
        state["stage"] = _UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """optimizer.step(*args, **kwargs) unless the (unscaled) gradients hold inf or nan; its return
        value, or None when skipped."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("GradScaler.step: closures are not supported while the scaler is enabled")
        self._check_scaled("step")
        state = self._state(optimizer)
        if state["stage"] == _STEPPED:
            raise RuntimeError("GradScaler.step: step() has already been called since the last update()")
        if state["stage"] == _READY:
            self.unscale_(optimizer)
        if state["found_inf"] is None:
            raise RuntimeError("GradScaler.step: no inf checks were recorded for this optimizer (none of its "
                               "parameters has a gradient)")
        result = None if state["found_inf"] else optimizer.step(*args, **kwargs)
        state["stage"] = _STEPPED
        return result

    def update(self, new_scale=None) -> None:
        """The scale for the next iteration: new_scale when given (a float or a one-element Tensor), else
        backed off when any optimizer stepped with inf/nan gradients, or grown after growth_interval steps
        without; and every optimizer ready for a new iteration."""
        if not self._enabled:
            return
        self._check_scaled("update")
        if new_scale is not None:
            if isinstance(new_scale, Tensor):
                if new_scale.numel() != 1 or not new_scale.dtype.is_floating_point:
                    raise ValueError(f"GradScaler.update: new_scale must be a float or a one-element floating "
                                     f"Tensor, got a {new_scale.dtype} Tensor of shape {new_scale.shape}")
                new_scale = float(new_scale.item())
            elif isinstance(new_scale, bool) or not isinstance(new_scale, numbers.Real):
                raise TypeError(f"GradScaler.update: new_scale must be a float or a one-element Tensor, got "
                                f"{new_scale!r}")
            self._scale = _f32(new_scale)
        else:
            found = [s["found_inf"] for s in self._per_optimizer.values() if s["found_inf"] is not None]
            if not found:
                raise RuntimeError("GradScaler.update: no inf checks were recorded prior to update() (call "
                                   "step() or unscale_() on an optimizer first)")
            if any(found):
                self._scale = _f32(self._scale * self._backoff_factor)
                self._growth_tracker = 0
            else:
                successful = self._growth_tracker + 1
                if successful == self._growth_interval:
                    grown = _f32(self._scale * self._growth_factor)
                    if np.isfinite(grown):  # a scale that would overflow float32 stays where it is
                        self._scale = grown
                    successful = 0
                self._growth_tracker = successful
        self._per_optimizer.clear()

    def _check_scaled(self, method: str) -> None:
        if not self._scaled:
            raise RuntimeError(f"GradScaler.{method}: scale() has not been called yet; the loss must be "
                               "scaled (scaler.scale(loss).backward()) before the gradients are used")

    # ------------------------------------------------------------------------------------------ settings
    def get_scale(self) -> float:
        """The current scale (1.0 when disabled)."""
        return self._scale if self._enabled else 1.0

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        if not new_factor > 1.0:
            raise ValueError(f"GradScaler.set_growth_factor: must be > 1.0, got {new_factor}")
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        if not 0.0 < new_factor < 1.0:
            raise ValueError(f"GradScaler.set_backoff_factor: must be in (0, 1), got {new_factor}")
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        if isinstance(new_interval, bool) or not isinstance(new_interval, numbers.Integral) or new_interval <= 0:
            raise ValueError(f"GradScaler.set_growth_interval: must be a positive int, got {new_interval!r}")
        self._growth_interval = int(new_interval)

    def is_enabled(self) -> bool:
        return self._enabled

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """{"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"} (PyTorch's keys),
        or {} when disabled. Plain numbers: it goes into JSON checkpoint metadata as it is."""
        if not self._enabled:
            return {}
        return {"scale": self._scale, "growth_factor": self._growth_factor, "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval, "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore state_dict(); a disabled scaler ignores it."""
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError("GradScaler.load_state_dict: the state dict is empty (saved from a disabled "
                               "GradScaler?)")
        missing = [k for k in ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")
                   if k not in state_dict]
        if missing:
            raise KeyError(f"GradScaler.load_state_dict: missing keys {', '.join(missing)}")
        self._scale = _f32(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])

    def __repr__(self) -> str:
        if not self._enabled:
            return "GradScaler(enabled=False)"
        return (f"GradScaler(scale={self._scale:g}, growth_factor={self._growth_factor:g}, backoff_factor="
                f"{self._backoff_factor:g}, growth_interval={self._growth_interval}, growth_tracker="
                f"{self._growth_tracker})")


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"GradScaler: {name} must be a positive number, got {value!r}")
