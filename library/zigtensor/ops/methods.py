"""Attach the ops to Tensor as methods and operators, so `a + b`, `a.add(b)` and `zt.add(a, b)` are one op."""

from __future__ import annotations

from ..tensor import Tensor
from . import composites, diagonal, index, linalg, math_extra, nn, norms, reduce, shape
from . import elementwise as ew
from . import sort as sorting
from .multinomial import multinomial


def _swap(fn):
    return lambda self, other: fn(other, self)


def _new(fill):
    def method(self, *size, dtype=None, device=None, requires_grad=False):
        from .. import creation

        return getattr(creation, fill)(*size, dtype=dtype or self.dtype, device=device or self.device,
                                       requires_grad=requires_grad)

    return method


def _new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
    from ..creation import full

    return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


def _new_tensor(self, data, dtype=None, device=None, requires_grad=False):
    from ..creation import tensor

    return tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


def _matmul(a, b):
    return linalg.matmul(a, b)


def _rmatmul(self, other):
    return linalg.matmul(other, self)


METHODS = {
    # arithmetic
    "__add__": ew.add, "__radd__": _swap(ew.add),
    "add": lambda s, o, alpha=1: ew.add(s, o if alpha == 1 else o * alpha),
    "__sub__": ew.sub, "__rsub__": _swap(ew.sub),
    "sub": lambda s, o, alpha=1: ew.sub(s, o if alpha == 1 else o * alpha),
    "__mul__": ew.mul, "__rmul__": _swap(ew.mul), "mul": ew.mul,
    "__truediv__": ew.div, "__rtruediv__": _swap(ew.div), "div": ew.div,
    "__floordiv__": ew.floor_divide, "__rfloordiv__": _swap(ew.floor_divide), "floor_divide": ew.floor_divide,
    "__mod__": ew.remainder, "__rmod__": _swap(ew.remainder), "remainder": ew.remainder,
    "__pow__": ew.pow, "__rpow__": _swap(ew.pow), "pow": ew.pow,
    "__matmul__": _matmul, "__rmatmul__": _rmatmul, "matmul": linalg.matmul, "mm": linalg.mm, "bmm": linalg.bmm,
    "__neg__": ew.neg, "neg": ew.neg, "__pos__": lambda s: s, "__abs__": ew.abs, "abs": ew.abs,
    # comparisons and logic
    "__eq__": ew.eq, "__ne__": ew.ne, "__lt__": ew.lt, "__le__": ew.le, "__gt__": ew.gt, "__ge__": ew.ge,
    "eq": ew.eq, "ne": ew.ne, "lt": ew.lt, "le": ew.le, "gt": ew.gt, "ge": ew.ge,
    "__and__": ew.bitwise_and, "__or__": ew.bitwise_or, "__xor__": ew.bitwise_xor, "__invert__": ew.invert,
    "__rand__": _swap(ew.bitwise_and), "__ror__": _swap(ew.bitwise_or), "__rxor__": _swap(ew.bitwise_xor),
    "logical_not": ew.logical_not, "logical_and": ew.logical_and, "logical_or": ew.logical_or,
    # unary math
    "exp": ew.exp, "log": ew.log, "log1p": ew.log1p, "sqrt": ew.sqrt, "rsqrt": ew.rsqrt, "sin": ew.sin,
    "cos": ew.cos, "tanh": ew.tanh, "sigmoid": ew.sigmoid, "relu": ew.relu, "sign": ew.sign, "erf": ew.erf,
    "floor": ew.floor, "ceil": ew.ceil, "round": ew.round, "trunc": ew.trunc,
    "clamp": ew.clamp, "clip": ew.clamp, "maximum": ew.maximum, "minimum": ew.minimum,
    "square": lambda s: s * s, "reciprocal": lambda s: 1 / s,
    # reductions
    "sum": reduce.sum, "mean": reduce.mean, "prod": reduce.prod, "max": reduce.max, "min": reduce.min,
    "exp2": math_extra.exp2, "log2": math_extra.log2, "log10": math_extra.log10, "sinh": math_extra.sinh,
    "cosh": math_extra.cosh, "logaddexp": math_extra.logaddexp, "hypot": math_extra.hypot, "fmod": math_extra.fmod,
    "frac": math_extra.frac, "isnan": math_extra.isnan, "isinf": math_extra.isinf,
    "isfinite": math_extra.isfinite, "nan_to_num": math_extra.nan_to_num, "allclose": math_extra.allclose,
    "equal": math_extra.equal, "repeat_interleave": math_extra.repeat_interleave, "tile": math_extra.tile,
    "masked_select": math_extra.masked_select,
    "type_as": lambda s, other: s.to(other.dtype),
    "atan": ew.atan, "asin": ew.asin, "acos": ew.acos, "atan2": ew.atan2, "arctan": ew.atan, "arcsin": ew.asin,
    "arccos": ew.acos, "arctan2": ew.atan2,
    "broadcast_to": composites.broadcast_to, "swapaxes": composites.swapaxes, "moveaxis": composites.moveaxis,
    "take_along_dim": composites.take_along_dim, "diff": composites.diff, "dot": composites.dot, "mv": composites.mv,
    "inner": composites.inner, "cross": composites.cross, "nansum": composites.nansum, "nanmean": composites.nanmean,
    "kthvalue": composites.kthvalue, "median": composites.median, "quantile": composites.quantile,
    "bernoulli": composites.bernoulli, "isclose": math_extra.isclose, "tan": composites.tan,
    "logit": composites.logit, "xlogy": composites.xlogy, "deg2rad": composites.deg2rad,
    "rad2deg": composites.rad2deg, "clamp_min": composites.clamp_min, "clamp_max": composites.clamp_max,
    "roll": shape.roll, "lerp": ew.lerp, "diagonal": diagonal.diagonal, "diag": diagonal.diag,
    "trace": diagonal.trace,
    "sort": sorting.sort, "argsort": sorting.argsort, "topk": sorting.topk, "unique": sorting.unique,
    "multinomial": multinomial,
    "addmm": linalg.addmm, "baddbmm": linalg.baddbmm, "addcmul": ew.addcmul, "addcdiv": ew.addcdiv,
    "norm": norms.norm, "amax": reduce.amax, "amin": reduce.amin, "argmax": reduce.argmax, "argmin": reduce.argmin,
    "var": reduce.var, "std": reduce.std, "logsumexp": reduce.logsumexp, "cumsum": reduce.cumsum,
    "cumprod": reduce.cumprod, "any": reduce.any, "all": reduce.all, "count_nonzero": reduce.count_nonzero,
    # shape
    "reshape": shape.reshape, "view": shape.view, "expand": shape.expand, "permute": shape.permute,
    "transpose": shape.transpose, "t": shape.t, "squeeze": shape.squeeze, "unsqueeze": shape.unsqueeze,
    "flatten": shape.flatten, "unflatten": shape.unflatten, "repeat": shape.repeat, "flip": shape.flip,
    "narrow": shape.narrow, "split": shape.split, "chunk": shape.chunk, "unbind": shape.unbind,
    "tril": shape.tril, "triu": shape.triu, "movedim": shape.movedim,
    "view_as": lambda s, o: shape.view(s, o.shape), "reshape_as": lambda s, o: shape.reshape(s, o.shape),
    "expand_as": lambda s, o: shape.expand(s, o.shape),
    # indexing
    "__getitem__": index.getitem, "gather": index.gather, "scatter_add": index.scatter_add,
    "scatter": index.scatter, "index_select": index.index_select, "masked_fill": index.masked_fill,
    "nonzero": index.nonzero, "select": index.select,
    "where": lambda s, cond, other: ew.where(cond, s, other),
    # nn ops that PyTorch also offers as methods
    "softmax": nn.softmax, "log_softmax": nn.log_softmax,
    # new tensors like this one
    "new_zeros": _new("zeros"), "new_ones": _new("ones"), "new_empty": _new("empty"),
    "new_full": _new_full, "new_tensor": _new_tensor,
}

METHODS.update({"index_add": index.index_add, "index_copy": index.index_copy, "index_put": index.index_put})


def _in_place(name: str):
    """Tensor.<name>_: the out-of-place method's result written into this tensor's memory (outside the graph, as
    every in-place op here; its shape must be this tensor's, its dtype castable to it)."""
    op = METHODS[name]

    def method(self, *args, **kwargs):
        self._check_inplace(f"{name}_")
        result = op(self.detach(), *args, **kwargs)
        if tuple(result.shape) != tuple(self.shape):
            raise RuntimeError(f"{name}_: the result's shape {result.shape} is not this tensor's {self.shape}")
        if result.dtype.category > self.dtype.category:
            raise RuntimeError(f"{name}_: result type {result.dtype} can't be cast to the desired output type "
                               f"{self.dtype}")
        return self._assign(result.data)

    method.__name__ = f"{name}_"
    method.__doc__ = f"In-place {name}: see Tensor.{name}."
    return method


# NOTE: the in-place forms PyTorch code uses most (initialization, masking, manual updates); add_, mul_,
# clamp_, fill_ and friends are Tensor's own
IN_PLACE = ("masked_fill", "scatter", "scatter_add", "index_add", "index_copy", "index_put", "exp", "log", "sqrt",
            "abs", "neg", "relu", "sigmoid", "tanh", "sin", "cos", "floor", "ceil", "round", "trunc", "sign", "pow",
            "remainder", "fmod", "lerp", "addcmul", "addcdiv", "clamp_min", "clamp_max", "nan_to_num", "tril",
            "triu", "square", "reciprocal", "rsqrt", "log1p", "erf", "frac", "logit", "xlogy", "atan2", "hypot")

for _name, _fn in METHODS.items():
    setattr(Tensor, _name, _fn)
for _name in IN_PLACE:
    if not hasattr(Tensor, f"{_name}_"):
        setattr(Tensor, f"{_name}_", _in_place(_name))
