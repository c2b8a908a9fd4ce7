"""dtypes: the objects users name (zt.float32, ...), PyTorch's promotion rules, and the numpy mapping.

NumPy's own promotion differs from PyTorch's (int64 + 2.5 is float64 there, float32 here; float16 + bfloat16
has no answer there), so every op asks `result_type` here and casts its operands before calling the backend.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

# Categories order the kinds: a higher category always wins over a lower one, whatever the size.
BOOL, INT, FLOAT = 0, 1, 2


class DType:
    __slots__ = ("name", "np", "category", "itemsize", "is_signed")

    def __init__(self, name: str, np_dtype, category: int):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.category = category
        self.itemsize = self.np.itemsize
        self.is_signed = category == FLOAT or (category == INT and self.np.kind == "i")

    @property
    def is_floating_point(self) -> bool:
        return self.category == FLOAT

    def __repr__(self) -> str:
        return f"zigtensor.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


bool_ = DType("bool", np.bool_, BOOL)
uint8 = DType("uint8", np.uint8, INT)
int8 = DType("int8", np.int8, INT)
int16 = DType("int16", np.int16, INT)
int32 = DType("int32", np.int32, INT)
int64 = DType("int64", np.int64, INT)
float16 = DType("float16", np.float16, FLOAT)
bfloat16 = DType("bfloat16", ml_dtypes.bfloat16, FLOAT)
float32 = DType("float32", np.float32, FLOAT)
float64 = DType("float64", np.float64, FLOAT)

ALL = (bool_, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64)
_NAMES = {d.name: d for d in ALL}
_NAMES.update({"half": float16, "float": float32, "double": float64, "long": int64, "int": int32})
_FROM_NP = {d.np: d for d in ALL}

_default_float = float32


def _by_name(name: str) -> DType:
    return _NAMES[name]


def get_default_dtype() -> DType:
    return _default_float


def set_default_dtype(dtype: DType) -> None:
    global _default_float
    dtype = as_dtype(dtype)
    if dtype not in (float16, bfloat16, float32, float64):
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {dtype}")
    _default_float = dtype


def from_numpy(np_dtype) -> DType:
    try:
        return _FROM_NP[np_dtype]
    except KeyError:
        pass
    np_dtype = np.dtype(np_dtype)
    if np_dtype in _FROM_NP:
        return _FROM_NP[np_dtype]
    # Other widths map to the nearest dtype of the same kind that we support.
    if np_dtype.kind == "u" or np_dtype.kind == "i":
        return int64
    if np_dtype.kind == "f":
        return float64
    raise TypeError(f"unsupported numpy dtype {np_dtype}; expected one of {[d.name for d in ALL]}")


def as_dtype(d) -> DType:
    """Accept a DType, a name ('float32'), a numpy dtype or a Python type (float, int, bool)."""
    if isinstance(d, DType):
        return d
    if isinstance(d, str):
        if d in _NAMES:
            return _NAMES[d]
        raise TypeError(f"unknown dtype name {d!r}; expected one of {sorted(_NAMES)}")
    if d is float:
        return _default_float
    if d is int:
        return int64
    if d is bool:
        return bool_
    try:
        return from_numpy(d)
    except TypeError:
        raise TypeError(f"cannot interpret {d!r} as a zigtensor dtype") from None


# ---------------------------------------------------------------------------------------------------------
# Promotion (PyTorch's lattice): bool < {uint8, int8} < int16 < int32 < int64 < {float16, bfloat16} < float32 < float64
_ORDER = {bool_: 0, uint8: 1, int8: 1, int16: 2, int32: 3, int64: 4, float16: 5, bfloat16: 5, float32: 6, float64: 7}
_pair_cache: dict[tuple[DType, DType], DType] = {}


def promote_types(a: DType, b: DType) -> DType:
    """The smallest dtype both a and b convert to without losing their kind (torch.promote_types)."""
    if a is b:
        return a
    key = (a, b)
    r = _pair_cache.get(key)
    if r is not None:
        return r
    if {a, b} == {uint8, int8}:
        r = int16
    elif {a, b} == {float16, bfloat16}:
        r = float32
    else:
        r = a if _ORDER[a] >= _ORDER[b] else b
    _pair_cache[key] = r
    return r


def scalar_dtype(x) -> DType:
    """The dtype a Python scalar would take as a tensor of its own."""
    if isinstance(x, bool):
        return bool_
    if isinstance(x, int):
        return int64
    return _default_float


def result_type(*operands) -> DType:
    """PyTorch's rule over tensors (with ndim), 0-d tensors and Python scalars.

    Each operand is a Tensor or a Python scalar. Dimensioned tensors decide the dtype; 0-d tensors and then
    scalars only count when their category is higher than everything above them.
    """
    dim_t = zero_t = scal = None
    for x in operands:
        dt = getattr(x, "dtype", None)
        if dt is None:
            d = scalar_dtype(x)
            scal = d if scal is None else _promote_category(scal, d)
        elif x.ndim == 0:
            zero_t = dt if zero_t is None else promote_types(zero_t, dt)
        else:
            dim_t = dt if dim_t is None else promote_types(dim_t, dt)
    result = None
    for d in (dim_t, zero_t, scal):
        if d is None:
            continue
        if result is None:
            result = d
        elif d.category > result.category:
            # A scalar of a higher category takes the default dtype of that category; a 0-d tensor its own.
            result = d if d is not scal else (_default_float if d.category == FLOAT else int64)
    return result


def _promote_category(a: DType, b: DType) -> DType:
    # Python scalars: only the kind matters (True + 2.0 is a float, its size the default).
    return a if a.category >= b.category else b
