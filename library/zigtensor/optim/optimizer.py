"""Optimizer base: parameter groups, zero_grad, state_dict / load_state_dict (exact resume).

A subclass gives `defaults`, checks its hyper-parameters in __init__, and implements `update(param, grad,
state, group, xp)` on backend arrays (xp is their array module), in place; the base walks the groups and
parameters.
"""

from __future__ import annotations

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor


class Optimizer:
    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict = {}  # Tensor -> {name: Tensor or number}
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict) -> None:
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__}: can't optimize a non-leaf Tensor (shape {p.shape})")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = p.grad.detach()
                    p.grad.data[...] = 0

    @no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            from ..autograd.grad_mode import enable_grad

            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            if self._step_fused(group):
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {}
                    self.init_state(p, state, group)
                self.update(p.data, p.grad.data, state, group, p.device.backend.xp)
                p._version += 1
        return loss

    def init_state(self, param: Tensor, state: dict, group: dict) -> None:
        pass

    def _step_fused(self, group: dict) -> bool:
        """Update the whole group with the backend's multi-tensor kernel when it has one (CUDA): True when done.
        Subclasses with a fused kernel override it; the per-parameter `update` is the reference."""
        return False

    def _fused_params(self, group: dict, kernel: str):
        """(params with gradients, the backend's fused kernel) when every such parameter lives on one device
        whose backend has `kernel`; else (None, None). Initializes the state of new parameters."""
        params = [p for p in group["params"] if p.grad is not None]
        if not params or any(p.device is not params[0].device for p in params):
            return None, None
        fused = getattr(params[0].device.backend, kernel, None)
        if fused is None:
            return None, None
        for p in params:
            if p not in self.state:
                self.state[p] = {}
                self.init_state(p, self.state[p], group)
        return params, fused

    def update(self, param, grad, state: dict, group: dict, xp) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}, as PyTorch lays it out."""
        index, groups = {}, []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state:
                    state[index[id(p)]] = {
                        k: (v.clone() if isinstance(v, Tensor) else v) for k, v in self.state[p].items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: the state has {len(groups)} parameter groups, the optimizer "
                             f"{len(self.param_groups)}")
        params = []
        for i, (mine, saved) in enumerate(zip(self.param_groups, groups)):
            if len(mine["params"]) != len(saved["params"]):
                raise ValueError(f"load_state_dict: group {i} has {len(saved['params'])} parameters in the state "
                                 f"but {len(mine['params'])} in the optimizer")
            params += list(zip(saved["params"], mine["params"]))
        self.state = {}
        for idx, p in params:
            s = state_dict["state"].get(idx)
            if s is None:
                continue
            self.state[p] = {
                k: (v.to(device=p.device).clone() if isinstance(v, Tensor) else v) for k, v in s.items()
            }
        for mine, saved in zip(self.param_groups, groups):
            mine.update({k: v for k, v in saved.items() if k != "params"})

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def check_range(opt: str, name: str, value, low=0.0, high=None, low_inclusive=True) -> None:
    """Reject a hyper-parameter outside its range, quoting it."""
    ok = value >= low if low_inclusive else value > low
    if high is not None:
        ok = ok and value < high
    if not ok:
        bound = f"[{low}, {high})" if high is not None else (f">= {low}" if low_inclusive else f"> {low}")
        raise ValueError(f"{opt}: invalid {name} {value!r}; expected {bound}")


def check_adam_args(opt: str, lr, betas, eps, weight_decay) -> None:
    """The hyper-parameters Adam and its relatives share."""
    check_range(opt, "learning rate", lr)
    check_range(opt, "epsilon value", eps)
    check_range(opt, "beta parameter at index 0", betas[0], 0.0, 1.0)
    check_range(opt, "beta parameter at index 1", betas[1], 0.0, 1.0)
    check_range(opt, "weight_decay value", weight_decay)
