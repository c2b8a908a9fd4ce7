"""Module: parameters and submodules registered by attribute assignment, state dicts, train/eval, moving.

Parameter is a Tensor that a Module registers as trainable. Buffers (running statistics) are Tensors
registered with `register_buffer`; persistent ones are part of the state dict.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple

from ..autograd.grad_mode import no_grad
from ..device import device as as_device
from ..dtypes import DType, as_dtype
from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor that Modules register as trainable: `self.weight = Parameter(zt.empty(3, 4))`."""

    __slots__ = ()

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            from ..creation import empty

            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter: expected a Tensor, got {type(data).__name__}")
        p = Tensor.__new__(cls)
        p.data, p.dtype, p.device = data.data, data.dtype, data.device
        p.grad, p.grad_fn, p._version = None, None, 0
        p.requires_grad = False
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data=None, requires_grad=True):
        pass  # everything happens in __new__; Tensor.__init__ would rebuild from data

    def __repr__(self) -> str:
        return "Parameter containing:\n" + Tensor.__repr__(self)

    def __reduce__(self):
        return (_rebuild_parameter, (Tensor.__reduce__(self), self.requires_grad))


def _rebuild_parameter(tensor_reduce, requires_grad):
    fn, args = tensor_reduce
    return Parameter(fn(*args).detach(), requires_grad)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and model. Subclasses set attributes in __init__ and define forward()."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value) -> None:
        # PyTorch's rules: a Parameter or a Module registers under the name, replacing an entry of any other
        # kind; over a registered parameter or submodule only the same kind or None may be assigned (a plain
        # Tensor assigned over a parameter would otherwise silently stop being trained).
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() is called "
                                 f"(call super().__init__() first in {type(self).__name__}.__init__)")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            self.__dict__.pop(name, None)
            buffers.pop(name, None)
            modules.pop(name, None)
            self._non_persistent.discard(name)
            params[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                "(wrap it in nn.Parameter, or assign None)")
            params[name] = None
        elif isinstance(value, Module):
            self.__dict__.pop(name, None)
            buffers.pop(name, None)
            self._non_persistent.discard(name)
            modules[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r} "
                                "(expected a Module or None)")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} "
                                "(expected a Tensor or None)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        _check_name(self, name, "_parameters")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, "
                            f"got {type(param).__name__}")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        _check_name(self, name, "_buffers")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, "
                            f"got {type(tensor).__name__}")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def register_module(self, name: str, module: Module | None) -> None:
        _check_name(self, name, "_modules")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"register_module: {name!r} must be a Module or None, "
                            f"got {type(module).__name__}")
        self._modules[name] = module

    add_module = register_module

    # ------------------------------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward() method")

    def __call__(self, *args, **kwargs):
        pre, post = self.__dict__.get("_forward_pre_hooks"), self.__dict__.get("_forward_hooks")
        for hook in list(pre.values()) if pre else ():
            new = hook(self, args)
            if new is not None:
                args = new if isinstance(new, tuple) else (new,)
        out = self.forward(*args, **kwargs)
        for hook in list(post.values()) if post else ():
            new = hook(self, args, out)
            if new is not None:
                out = new
        return out

    def register_forward_pre_hook(self, hook):
        """hook(module, args) -> None or new args (a tuple, or one value), run before forward. Returns a handle
        whose remove() unregisters it."""
        from ..autograd.hooks import HookDict, add_hook

        return add_hook(self.__dict__.setdefault("_forward_pre_hooks", HookDict()), hook)

    def register_forward_hook(self, hook):
        """hook(module, args, output) -> None or a new output, run after forward. Returns a handle whose remove()
        unregisters it."""
        from ..autograd.hooks import HookDict, add_hook

        return add_hook(self.__dict__.setdefault("_forward_hooks", HookDict()), hook)

    # ------------------------------------------------------------------------------------------ traversal
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, store: str, prefix: str, recurse: bool, remove_duplicate: bool = True):
        seen = set()
        mods = [(prefix, self)]
        if recurse:
            mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
        for mod_prefix, m in mods:
            for name, t in getattr(m, store).items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), t

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> Module:
        m = self
        for part in target.split(".") if target else []:
            if part not in m._modules:
                raise AttributeError(f"{type(m).__name__} has no submodule {part!r} (looking up {target!r})")
            m = m._modules[part]
        return m

    def get_parameter(self, target: str):
        """The parameter at a dotted path ('encoder.0.weight')."""
        path, _, name = target.rpartition(".")
        module = self.get_submodule(path)
        if name not in module._parameters:
            raise AttributeError(f"{type(module).__name__} has no parameter {name!r} (looking up {target!r})")
        return module._parameters[name]

    # ------------------------------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode is expected to be a bool, got {mode!r}")
        object.__setattr__(self, "training", mode)
        for m in self.children():  # through each child's train(), so subclasses that override it are heard
            m.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = p.grad.detach()
                    p.grad.data[...] = 0

    def apply(self, fn) -> Module:
        """Call fn on every submodule (children first) and then on self, as PyTorch does."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------------------------------ moving
    def to(self, *args, dtype=None, device=None) -> Module:
        """to(device), to(dtype) or both: moves/casts parameters and buffers in place (floating ones only
        for a dtype), keeping the Parameter objects so optimizers keep their references."""
        for a in args:
            if isinstance(a, DType) or (isinstance(a, str) and a != "cpu" and not a.startswith("cuda")):
                dtype = a
            else:
                device = a
        dtype = as_dtype(dtype) if dtype is not None else None
        dev = as_device(device) if device is not None else None
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"Module.to only accepts floating point dtypes, got {dtype}")

        def convert(t: Tensor) -> Tensor:
            out = t
            if dev is not None:
                out = out.detach().to(dev)
            if dtype is not None and out.is_floating_point:
                out = out.detach().to(dtype)
            return out

        with no_grad():
            for m in self.modules():
                for p in m._parameters.values():
                    if p is not None:
                        new = convert(p)
                        if new is not p:
                            p.data, p.dtype, p.device = new.data, new.dtype, new.device
                            if p.grad is not None:
                                p.grad = convert(p.grad)
                for name, b in m._buffers.items():
                    if b is not None:
                        m._buffers[name] = convert(b)
        return self

    def float(self) -> Module:
        return self.to(dtype="float32")

    def double(self) -> Module:
        return self.to(dtype="float64")

    def half(self) -> Module:
        return self.to(dtype="float16")

    def bfloat16(self) -> Module:
        return self.to(dtype="bfloat16")

    def cpu(self) -> Module:
        return self.to(device="cpu")

    def cuda(self, index: int | None = None) -> Module:
        return self.to(device="cuda" if index is None else f"cuda:{index}")

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False) -> OrderedDict:
        """Parameters and persistent buffers by dotted name, sharing memory with the module."""
        out = OrderedDict() if destination is None else destination
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                out[prefix + name] = b if keep_vars else b.detach()
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(out, prefix + name + ".", keep_vars)
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values in (cast to each tensor's dtype); with strict, any missing, unexpected or wrongly
        shaped key is an error that lists them all."""
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        wrong = []
        for k, t in own.items():
            if k in state_dict:
                v = state_dict[k]
                shape = tuple(v.shape) if hasattr(v, "shape") else None
                if shape != t.shape:
                    wrong.append(f"{k}: checkpoint has shape {shape}, the module {t.shape}")
        problems = []
        if wrong:
            problems.append("size mismatch for " + "; ".join(wrong))
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        if problems:
            raise RuntimeError(f"error(s) in loading state_dict for {type(self).__name__}: "
                               + ". ".join(problems))
        with no_grad():
            for k, t in own.items():
                if k in state_dict:
                    v = state_dict[k]
                    t.copy_(v if isinstance(v, Tensor) else _from_array(v, t))
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------------------------------ repr
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines += extra.split("\n")
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        if not lines:
            return f"{type(self).__name__}()"
        if len(lines) == 1 and not self._modules:
            return f"{type(self).__name__}({lines[0]})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        names = set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules)
        return sorted(names)


def _check_name(module: Module, name: str, store: str) -> None:
    """A name to register in `store`: non-empty, no dot, not taken by an attribute or another entry."""
    if not isinstance(name, str) or not name or "." in name:
        raise KeyError(f"invalid name {name!r}: expected a non-empty string without '.'")
    taken = name in module.__dict__ and name != "training"
    taken = taken or hasattr(type(module), name)
    others = [s for s in ("_parameters", "_buffers", "_modules") if s != store]
    taken = taken or any(name in getattr(module, s) for s in others)
    if taken:
        raise KeyError(f"attribute {name!r} already exists on {type(module).__name__}")


def _from_array(value, like: Tensor) -> Tensor:
    from ..creation import tensor

    return tensor(value, dtype=like.dtype, device=like.device)
