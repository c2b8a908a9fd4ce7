"""The CUDA backend's array module: `xp` for ops written once against NumPy's API, running on our kernels.

Decision (issue 5): ops call `xp.<fn>(...)` and ndarray methods and operators. On the CPU `xp` is NumPy; on
CUDA it is this module, whose DeviceArray keeps a cupy.ndarray only as storage (CuPy's memory pool and its
zero-copy views: reshape of contiguous data, transpose, basic slicing, broadcast_to, as_strided) and lowers
every computation to our launchers (backends/cuda_kernels/*.py over kernels/*.cu):

    operators, ufuncs, casts, copies, where, clip   -> elementwise.cu (one strided kernel, op by #define)
    sum mean prod max min argmax argmin var any all -> reduce.cu (any set of axes, split-K)
    advanced indexing get/set/add, nonzero, cumsum, cumprod, fill, arange, tri/triu/tril/eye -> index.cu
    matmul / dot                                   -> the GEMM launcher (cuda_kernels/gemm.py; cuBLAS only
                                                      with ZT_GEMM=cublas)

so no CuPy kernel runs (a CuPy reshape of a non-contiguous array, which would copy with CuPy's kernel, is
done with ours). Semantics, result dtypes and errors follow NumPy; what is not implemented raises an
AttributeError naming the NumPy function, or a NotImplementedError naming the unsupported argument.
"""

from __future__ import annotations

import builtins
import math
import numbers
import types

import ml_dtypes
import numpy as np

from .cuda_kernels import elementwise as _ew
from .cuda_kernels import index as _ix
from .cuda_kernels import reduce as _rd
from .cuda_kernels import strided as _s

# dtypes and constants, as NumPy spells them
bool_ = np.bool_
int8, int16, int32, int64, uint8 = np.int8, np.int16, np.int32, np.int64, np.uint8
float16, float32, float64 = np.float16, np.float32, np.float64
bfloat16 = ml_dtypes.bfloat16
intp = np.intp
inf, nan, pi, e = math.inf, math.nan, math.pi, math.e
newaxis = None
dtype = np.dtype
result_type, can_cast, iinfo, finfo, promote_types = np.result_type, np.can_cast, np.iinfo, np.finfo, np.promote_types


def _cp():
    return _s.cupy()


# ------------------------------------------------------------------------------------------ the array
class _Flags:
    __slots__ = ("c_contiguous", "f_contiguous", "writeable")

    def __init__(self, a, writeable: bool):
        self.c_contiguous = bool(a.flags.c_contiguous)
        self.f_contiguous = bool(a.flags.f_contiguous)
        self.writeable = writeable

    def __repr__(self) -> str:
        return f"C_CONTIGUOUS : {self.c_contiguous}\nF_CONTIGUOUS : {self.f_contiguous}\nWRITEABLE : {self.writeable}"


class DeviceArray:
    """An N-d array in CUDA memory with NumPy's interface; `.get()` copies it to a NumPy array."""

    __slots__ = ("_a", "base", "_writeable", "__weakref__")
    __array_ufunc__ = None  # NumPy scalars and arrays defer to our reflected operators
    __hash__ = None

    def __init__(self, storage, base=None, writeable: bool = True):
        self._a = storage
        self.base = base
        self._writeable = writeable

    def _view(self, storage, writeable: bool | None = None) -> DeviceArray:
        return DeviceArray(storage, self.base if self.base is not None else self,
                           self._writeable if writeable is None else writeable)

    # --- attributes
    @property
    def shape(self) -> tuple:
        return tuple(self._a.shape)

    @shape.setter
    def shape(self, new) -> None:
        """In-place reshape without a copy (NumPy's `a.shape = ...`): AttributeError when strides forbid it."""
        new = _shape_arg(new, self.size)
        strides = _nocopy_strides(self.shape, _s.element_strides(self._a), new)
        if strides is None:
            raise AttributeError("incompatible shape for in-place modification. Use `.reshape()` to make a copy "
                                 f"with the desired shape (shape {self.shape}, strides {self.strides} -> {new})")
        self._a = _as_strided(self._a, new, strides)

    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: int(self._a.size))
    dtype = property(lambda self: self._a.dtype)
    itemsize = property(lambda self: self._a.dtype.itemsize)
    nbytes = property(lambda self: int(self._a.nbytes))
    strides = property(lambda self: tuple(self._a.strides))
    data = property(lambda self: self._a.data)
    device = property(lambda self: self._a.device)
    flags = property(lambda self: _Flags(self._a, self._writeable))
    T = property(lambda self: self.transpose())
    mT = property(lambda self: swapaxes(self, -1, -2))

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self) -> str:
        return f"DeviceArray({np.array2string(self.get(), separator=', ')}, dtype={self.dtype.name})"

    def __array__(self, dtype=None, copy=None):
        raise TypeError("a CUDA array is not converted to NumPy implicitly; call .get() (Tensor.numpy()) to copy it "
                        "to the host")

    # --- host values
    def get(self) -> np.ndarray:
        """A NumPy copy of the values (one device-to-host transfer)."""
        a = self._a if self._a.flags.c_contiguous else _contiguous(self._a)
        return a.get()

    def item(self):
        if self.size != 1:
            raise ValueError(f"can only convert an array of size 1 to a Python scalar, got size {self.size}")
        return self.get().reshape(()).item()

    def tolist(self):
        return self.get().tolist()

    def __bool__(self) -> bool:
        if self.size != 1:
            raise ValueError("The truth value of an array with more than one element is ambiguous. Use a.any() or "
                             "a.all()")
        return bool(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __index__(self) -> int:
        if self.dtype.kind not in "iu" or self.size != 1 or self.ndim:
            raise TypeError("only integer scalar arrays can be converted to a scalar index")
        return int(self.item())

    # --- copies and views
    def copy(self) -> DeviceArray:
        return DeviceArray(_contiguous(self._a, copy=True))

    def astype(self, dtype, copy: bool = True) -> DeviceArray:
        dt = np.dtype(dtype)
        if dt == self.dtype and not copy:
            return self
        return DeviceArray(_ew.cast(self._a, dt))

    def view(self, dtype=None) -> DeviceArray:
        if dtype is not None and np.dtype(dtype) != self.dtype:
            raise NotImplementedError(f"view(dtype={dtype!r}): reinterpreting memory as another dtype is not "
                                      "supported on the CUDA device")
        return self._view(self._a.view())

    def reshape(self, *shape, order: str = "C") -> DeviceArray:
        if order != "C":
            raise NotImplementedError(f"reshape(order={order!r}): only C order is supported on the CUDA device")
        new = _shape_arg(shape[0] if len(shape) == 1 else shape, self.size)
        if new == self.shape:
            return self._view(self._a)
        strides = _nocopy_strides(self.shape, _s.element_strides(self._a), new)
        if strides is not None:
            return self._view(_as_strided(self._a, new, strides))
        return DeviceArray(_as_strided(_contiguous(self._a), new, _c_strides(new)))

    def transpose(self, *axes) -> DeviceArray:
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]
        return self._view(self._a.transpose(*(axes or ())) if axes else self._a.transpose())

    def swapaxes(self, a: int, b: int) -> DeviceArray:
        return swapaxes(self, a, b)

    def squeeze(self, axis=None) -> DeviceArray:
        return squeeze(self, axis)

    def ravel(self) -> DeviceArray:
        return self.reshape(-1)

    def flatten(self) -> DeviceArray:
        return self.copy().reshape(-1)

    def fill(self, value) -> None:
        self._check_writeable()
        _ix.fill(self._a, value)

    def _check_writeable(self) -> None:
        if not self._writeable:
            raise ValueError("assignment destination is read-only")

    # --- indexing
    def __getitem__(self, key):
        key = _normalize_key(key)
        if _is_basic(key):
            return self._view(self._a[key])
        view, adv_axes, arrays, bpos = _prepare_advanced(self._a, key)
        return DeviceArray(_ix.take(view, adv_axes, arrays, bpos))

    def __setitem__(self, key, value) -> None:
        self._check_writeable()
        key = _normalize_key(key)
        value = _operand(value)
        if _is_basic(key):
            target = self._a[key]
            if isinstance(value, type(self._a)) and _same_memory(target, value):
                return  # `a[k] op= b` wrote in place through the view already
            _ew.copy(target, value)
            return
        view, adv_axes, arrays, bpos = _prepare_advanced(self._a, key)
        _ix.put(view, adv_axes, arrays, bpos, value)

    # --- reductions
    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return sum(self, axis, dtype, out, keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return mean(self, axis, dtype, out, keepdims)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False):
        return prod(self, axis, dtype, out, keepdims)

    def max(self, axis=None, out=None, keepdims=False):
        return amax(self, axis, out, keepdims)

    def min(self, axis=None, out=None, keepdims=False):
        return amin(self, axis, out, keepdims)

    def argmax(self, axis=None, out=None, keepdims=False):
        return argmax(self, axis, out, keepdims=keepdims)

    def argmin(self, axis=None, out=None, keepdims=False):
        return argmin(self, axis, out, keepdims=keepdims)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return var(self, axis, dtype, out, ddof, keepdims)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return std(self, axis, dtype, out, ddof, keepdims)

    def any(self, axis=None, out=None, keepdims=False):
        return any(self, axis, out, keepdims)

    def all(self, axis=None, out=None, keepdims=False):
        return all(self, axis, out, keepdims)

    def cumsum(self, axis=None, dtype=None):
        return cumsum(self, axis, dtype)

    def cumprod(self, axis=None, dtype=None):
        return cumprod(self, axis, dtype)

    def nonzero(self):
        return nonzero(self)

    def clip(self, min=None, max=None, out=None):
        return clip(self, min, max, out)

    def round(self, decimals: int = 0, out=None):
        return round(self, decimals, out)

    def dot(self, other):
        return dot(self, other)

    # --- operators (NumPy's: in-place ones write into self with same_kind casting)
    def __neg__(self):
        return _apply("negative", (self,))

    def __pos__(self):
        return _apply("positive", (self,))

    def __abs__(self):
        return _apply("absolute", (self,))

    def __invert__(self):
        return _apply("invert", (self,))

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)


for _name, _fn_name in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "divide"),
                        ("floordiv", "floor_divide"), ("mod", "remainder"), ("pow", "power"),
                        ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor")):
    setattr(DeviceArray, f"__{_name}__", lambda self, other, _op=_fn_name: _apply(_op, (self, other)))
    setattr(DeviceArray, f"__r{_name}__", lambda self, other, _op=_fn_name: _apply(_op, (other, self)))
    setattr(DeviceArray, f"__i{_name}__", lambda self, other, _op=_fn_name: _apply(_op, (self, other), self))
for _name, _fn_name in (("eq", "equal"), ("ne", "not_equal"), ("lt", "less"), ("le", "less_equal"),
                        ("gt", "greater"), ("ge", "greater_equal")):
    setattr(DeviceArray, f"__{_name}__", lambda self, other, _op=_fn_name: _apply(_op, (self, other)))


# ------------------------------------------------------------------------------------------ plumbing
def _wrap(x) -> DeviceArray:
    return DeviceArray(x)


def _raw(x):
    """A DeviceArray's storage; scalars pass through; host arrays are refused (no silent transfers)."""
    if isinstance(x, DeviceArray):
        return x._a
    if isinstance(x, np.ndarray):
        if x.ndim == 0:
            return x[()]
        raise TypeError(f"cannot mix a host NumPy array (shape {x.shape}) with CUDA arrays; move it with "
                        "xp.asarray first")
    if isinstance(x, (numbers.Number, np.generic)):
        return x
    cp = _cp()
    if isinstance(x, cp.ndarray):
        return x
    raise TypeError(f"expected a CUDA array or a scalar, got {type(x).__name__}")


def _operand(x):
    """_raw, and host data (NumPy arrays, lists) uploaded: for values assigned into device arrays."""
    if isinstance(x, (np.ndarray, list, tuple)) and not (isinstance(x, np.ndarray) and x.ndim == 0):
        return asarray(x)._a
    return _raw(x)


def _out(out):
    if out is None:
        return None
    if isinstance(out, tuple):
        if len(out) != 1:
            raise NotImplementedError("out: only a single output array is supported")
        out = out[0]
    if not isinstance(out, DeviceArray):
        raise TypeError(f"out must be a CUDA array, got {type(out).__name__}")
    out._check_writeable()
    return out


def _apply(op: str, args, out=None, dtype=None):
    o = _out(out)
    result = _ew.apply(op, [_raw(a) for a in args], None if o is None else o._a, dtype)
    return o if o is not None else DeviceArray(result)


def _contiguous(a, copy: bool = False):
    """a (a CuPy array) when C-contiguous (and not copy), else a C-contiguous copy made by our kernel."""
    if a.flags.c_contiguous and not copy:
        return a
    out = _cp().empty(a.shape, dtype=a.dtype)
    _ew.copy(out, a)
    return out


def _c_strides(shape) -> tuple:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= builtins.max(n, 1)  # NOTE: builtins: this module's max is amax
    return tuple(reversed(strides))


def _as_strided(a, shape, strides_elems):
    from cupy.lib.stride_tricks import as_strided

    return as_strided(a, shape=tuple(shape), strides=tuple(s * a.dtype.itemsize for s in strides_elems))


def _same_memory(a, b) -> bool:
    return a.data.ptr == b.data.ptr and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype


def _shape_arg(shape, size: int) -> tuple:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or size % known:
            raise ValueError(f"cannot reshape array of size {size} into shape {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    if math.prod(shape) != size:
        raise ValueError(f"cannot reshape array of size {size} into shape {shape}")
    return shape


def _nocopy_strides(old_shape, old_strides, new_shape):
    """Element strides that view old_shape/old_strides as new_shape without a copy, or None when the strides
    do not allow it (NumPy's _attempt_nocopy_reshape, C order)."""
    if math.prod(new_shape) == 0:
        return _c_strides(new_shape)
    old = [(n, st) for n, st in zip(old_shape, old_strides) if n != 1]
    odims, ostr = [n for n, _ in old], [st for _, st in old]
    ndims = list(new_shape)
    nstr = [0] * len(ndims)
    oi, oj, ni, nj = 0, 1, 0, 1
    while ni < len(ndims) and oi < len(odims):
        np_, op = ndims[ni], odims[oi]
        while np_ != op:
            if np_ < op:
                np_ *= ndims[nj]
                nj += 1
            else:
                op *= odims[oj]
                oj += 1
        for ok in range(oi, oj - 1):  # the old dims merged here must be contiguous with each other
            if odims[ok + 1] * ostr[ok + 1] != ostr[ok]:
                return None
        nstr[nj - 1] = ostr[oj - 1]
        for nk in range(nj - 1, ni, -1):
            nstr[nk - 1] = nstr[nk] * ndims[nk]
        ni, oi = nj, oj
        nj, oj = nj + 1, oj + 1
    last = nstr[ni - 1] if ni >= 1 else 1
    for nk in range(ni, len(ndims)):
        nstr[nk] = last
    return tuple(nstr)


# ------------------------------------------------------------------------------------------ indexing
def _normalize_key(key) -> tuple:
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for k in key:
        if isinstance(k, DeviceArray):
            k = k._a
        elif isinstance(k, (list, np.ndarray)) and not (isinstance(k, np.ndarray) and k.ndim == 0):
            arr = np.asarray(k)
            if arr.dtype.kind not in "biu" and arr.size:
                raise IndexError(f"arrays used as indices must be of integer or boolean type, got {arr.dtype}")
            k = asarray(arr.astype(np.int64) if arr.dtype.kind != "b" else arr)._a
        elif isinstance(k, np.ndarray):
            k = k[()]
        if isinstance(k, np.integer):
            k = int(k)
        elif isinstance(k, np.bool_):
            k = bool(k)
        out.append(k)
    return tuple(out)


def _is_basic(key: tuple) -> bool:
    return builtins.all(k is None or k is Ellipsis or isinstance(k, slice) or
                        (isinstance(k, int) and not isinstance(k, bool)) for k in key)


def _prepare_advanced(a, key: tuple):
    """Split a key with index arrays into (basic view of a, the view's dims the arrays index, the int64 index
    arrays, where the index block goes in the result), following NumPy's advanced-indexing rules: integers
    count as (0-d) index arrays, a k-d bool array as the k index arrays of its nonzero coordinates, and the
    block stays in place only when all the advanced indices are adjacent."""
    cp = _cp()
    consumed = builtins.sum(0 if k is None or k is Ellipsis or isinstance(k, bool) else
                            (k.ndim if isinstance(k, cp.ndarray) and k.dtype == np.bool_ else 1) for k in key)
    if consumed > a.ndim:
        raise IndexError(f"too many indices for array: array is {a.ndim}-dimensional, but {consumed} were indexed")
    expanded = []
    for k in key:
        if k is Ellipsis:
            expanded += [slice(None)] * (a.ndim - consumed)
        else:
            expanded.append(k)
    if not builtins.any(k is Ellipsis for k in key):  # NOTE: not `Ellipsis in key`, which compares arrays with ==
        expanded += [slice(None)] * (a.ndim - consumed)
    basic, adv_positions, arrays = [], [], []  # adv_positions: index into `basic` of each advanced entry
    for k in expanded:
        if isinstance(k, bool):  # a Python bool: a new axis indexed by [0] (True) or [] (False)
            basic.append(None)
            adv_positions.append(len(basic) - 1)
            arrays.append(_ix.arange(1 if k else 0, 0, 1, np.int64))
        elif isinstance(k, (int, np.integer)):
            basic.append(slice(None))
            adv_positions.append(len(basic) - 1)
            arrays.append(_scalar_index(int(k)))
        elif isinstance(k, cp.ndarray) and k.dtype == np.bool_:
            if k.ndim == 0:
                basic.append(None)
                adv_positions.append(len(basic) - 1)
                arrays.append(_ix.nonzero(k)[:, 0])
                continue
            coords = _ix.nonzero(k)
            for d in range(k.ndim):
                basic.append(slice(None))
                adv_positions.append(len(basic) - 1)
                arrays.append(coords[:, d])
        elif isinstance(k, cp.ndarray):
            if k.dtype.kind not in "iu":
                raise IndexError(f"arrays used as indices must be of integer or boolean type, got {k.dtype}")
            basic.append(slice(None))
            adv_positions.append(len(basic) - 1)
            arrays.append(k)
        elif k is None or isinstance(k, slice):
            basic.append(k)
        else:
            raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and integer or "
                             f"boolean arrays are valid indices, got {type(k).__name__}")
    # the view keeps every entry of `basic` as one dim (slices, None, and advanced placeholders)
    view = a[tuple(basic)]
    adv_axes = tuple(adv_positions)  # no ints in `basic`, so positions are view dims
    adjacent = adv_axes == tuple(range(adv_axes[0], adv_axes[0] + len(adv_axes)))
    bpos = adv_axes[0] if adjacent else 0
    try:
        np.broadcast_shapes(*(tuple(x.shape) for x in arrays))
    except ValueError:
        raise IndexError("shape mismatch: indexing arrays could not be broadcast together with shapes "
                         + " ".join(str(tuple(x.shape)) for x in arrays)) from None
    return view, adv_axes, arrays, bpos


def _scalar_index(i: int):
    out = _cp().empty((), dtype=np.int64)
    _ix.fill(out, i)
    return out


# ------------------------------------------------------------------------------------------ creation
def asarray(a, dtype=None) -> DeviceArray:
    """A CUDA array of a's values: DeviceArrays pass through (cast when dtype differs), host data is uploaded."""
    if isinstance(a, DeviceArray):
        return a if dtype is None else a.astype(dtype, copy=False)
    cp = _cp()
    if isinstance(a, cp.ndarray):
        return DeviceArray(a) if dtype is None else DeviceArray(a).astype(dtype, copy=False)
    if isinstance(a, (numbers.Number, np.generic)) and not isinstance(a, complex):
        dt = np.dtype(dtype) if dtype is not None else np.asarray(a).dtype
        return full((), a, dt)
    host = np.asarray(a, dtype=dtype, order="C")  # NOTE: not np.ascontiguousarray, which makes 0-d arrays 1-d
    return DeviceArray(cp.asarray(host))


array = asarray


def ascontiguousarray(a, dtype=None) -> DeviceArray:
    a = asarray(a, dtype)
    return a if a.flags.c_contiguous else a.copy()


def empty(shape, dtype=float64) -> DeviceArray:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    return DeviceArray(_cp().empty(shape, dtype=np.dtype(dtype)))


def full(shape, fill_value, dtype=None) -> DeviceArray:
    dt = np.dtype(dtype) if dtype is not None else np.asarray(fill_value).dtype
    out = empty(shape, dt)
    _ix.fill(out._a, fill_value.item() if isinstance(fill_value, (np.generic, DeviceArray)) else fill_value)
    return out


def zeros(shape, dtype=float64) -> DeviceArray:
    return full(shape, 0, dtype)


def ones(shape, dtype=float64) -> DeviceArray:
    return full(shape, 1, dtype)


def empty_like(a, dtype=None) -> DeviceArray:
    return empty(a.shape, dtype or a.dtype)


def zeros_like(a, dtype=None) -> DeviceArray:
    return zeros(a.shape, dtype or a.dtype)


def ones_like(a, dtype=None) -> DeviceArray:
    return ones(a.shape, dtype or a.dtype)


def full_like(a, fill_value, dtype=None) -> DeviceArray:
    return full(a.shape, fill_value, dtype or a.dtype)


def arange(start, stop=None, step=1, dtype=None) -> DeviceArray:
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ZeroDivisionError("arange: step must not be 0")
    n = builtins.max(0, math.ceil((stop - start) / step))
    if dtype is None:
        dtype = np.int64 if builtins.all(isinstance(v, (int, np.integer)) for v in (start, stop, step)) \
            else np.float64
    return DeviceArray(_ix.arange(n, start, step, np.dtype(dtype)))


def eye(N: int, M: int | None = None, k: int = 0, dtype=float64) -> DeviceArray:
    return DeviceArray(_ix.tri(None, (N, N if M is None else M), k, "eye", np.dtype(dtype)))


def tri(N: int, M: int | None = None, k: int = 0, dtype=float64) -> DeviceArray:
    return DeviceArray(_ix.tri(None, (N, N if M is None else M), k, "tri", np.dtype(dtype)))


def tril(m, k: int = 0) -> DeviceArray:
    m = asarray(m)
    return DeviceArray(_ix.tri(m._a, m.shape, k, "tril", m.dtype))


def triu(m, k: int = 0) -> DeviceArray:
    m = asarray(m)
    return DeviceArray(_ix.tri(m._a, m.shape, k, "triu", m.dtype))


def indices(dimensions, dtype=int, sparse: bool = False):
    dims = tuple(int(d) for d in dimensions)
    grids = []
    for i, n in enumerate(dims):
        shape = tuple(n if j == i else 1 for j in range(len(dims)))
        grids.append(arange(n, dtype=dtype).reshape(shape))
    if sparse:
        return tuple(grids)
    return stack([broadcast_to(g, dims) for g in grids])


# ------------------------------------------------------------------------------------------ elementwise
def _ufunc(op: str, arity: int):
    def fn(*args, out=None, dtype=None):
        if len(args) != arity:
            raise TypeError(f"{op}() takes {arity} positional argument{'s' if arity > 1 else ''}, got {len(args)}")
        return _apply(op, args, out, dtype)

    fn.__name__ = op
    fn.__doc__ = f"NumPy's {op} on CUDA arrays (kernels/elementwise.cu)."
    return fn


for _op in _ew.UNARY:
    if _op != "identity":  # numpy.identity is the identity matrix, not a copy
        globals()[_op] = _ufunc(_op, 1)
for _op in _ew.BINARY:
    globals()[_op] = _ufunc(_op, 2)
abs = absolute  # noqa: A001, F821
true_divide, mod, bitwise_not = divide, remainder, invert  # noqa: F821


def round(a, decimals: int = 0, out=None):  # noqa: A001
    if decimals:
        raise NotImplementedError(f"round(decimals={decimals}): only decimals=0 is supported on the CUDA device")
    return _apply("rint", (a,), out)


around = round


def where(condition, x=None, y=None):
    if x is None and y is None:
        return nonzero(condition)
    if x is None or y is None:
        raise ValueError("either both or neither of x and y should be given")
    condition = asarray(condition)
    if condition.dtype != np.bool_:
        condition = not_equal(condition, 0)  # noqa: F821  (NumPy takes any truthy condition)
    return DeviceArray(_ew.where(condition._a, _raw(x), _raw(y)))


def clip(a, a_min=None, a_max=None, out=None):
    if a_min is None and a_max is None:
        raise ValueError("clip: one of a_min and a_max must be given")
    if a_min is None:
        return _apply("minimum", (a, a_max), out)
    if a_max is None:
        return _apply("maximum", (a, a_min), out)
    o = _out(out)
    r = _ew.apply("clip", [_raw(a), _raw(a_min), _raw(a_max)], None if o is None else o._a)
    return o if o is not None else DeviceArray(r)


# ------------------------------------------------------------------------------------------ reductions
def _no_out(fn: str, out) -> None:
    if out is not None:
        raise NotImplementedError(f"{fn}(out=...) is not supported on the CUDA device; use the returned array")


def _reduce(op: str, a, axis, dtype, out, keepdims, ddof=0) -> DeviceArray:
    _no_out(op, out)
    return DeviceArray(_rd.reduce(op, _raw(asarray(a)), axis, keepdims, dtype, ddof))


def sum(a, axis=None, dtype=None, out=None, keepdims=False):  # noqa: A001
    return _reduce("sum", a, axis, dtype, out, keepdims)


def mean(a, axis=None, dtype=None, out=None, keepdims=False):
    return _reduce("mean", a, axis, dtype, out, keepdims)


def prod(a, axis=None, dtype=None, out=None, keepdims=False):
    return _reduce("prod", a, axis, dtype, out, keepdims)


def amax(a, axis=None, out=None, keepdims=False):
    return _reduce("max", a, axis, None, out, keepdims)


def amin(a, axis=None, out=None, keepdims=False):
    return _reduce("min", a, axis, None, out, keepdims)


max, min = amax, amin  # noqa: A001


def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    return _reduce("var", a, axis, dtype, out, keepdims, ddof)


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    return sqrt(var(a, axis, dtype, out, ddof, keepdims))  # noqa: F821


def any(a, axis=None, out=None, keepdims=False):  # noqa: A001
    return _reduce("any", a, axis, None, out, keepdims)


def all(a, axis=None, out=None, keepdims=False):  # noqa: A001
    return _reduce("all", a, axis, None, out, keepdims)


def argmax(a, axis=None, out=None, keepdims=False):
    _no_out("argmax", out)
    return DeviceArray(_rd.arg_reduce("argmax", _raw(asarray(a)), axis, keepdims))


def argmin(a, axis=None, out=None, keepdims=False):
    _no_out("argmin", out)
    return DeviceArray(_rd.arg_reduce("argmin", _raw(asarray(a)), axis, keepdims))


def count_nonzero(a, axis=None, keepdims=False):
    return sum(not_equal(a, 0), axis, keepdims=keepdims)  # noqa: F821


def _scan(op: str, a, axis, dtype):
    a = asarray(a)
    if axis is None:
        a, axis = a.reshape(-1), 0
    return DeviceArray(_ix.scan(op, a._a, int(axis), dtype))


def cumsum(a, axis=None, dtype=None):
    return _scan("add", a, axis, dtype)


def cumprod(a, axis=None, dtype=None):
    return _scan("mul", a, axis, dtype)


def nonzero(a) -> tuple:
    a = asarray(a)
    coords = DeviceArray(_ix.nonzero(a._a))
    return tuple(coords[:, d] for d in range(builtins.max(a.ndim, 1)))


def flatnonzero(a):
    return nonzero(asarray(a).reshape(-1))[0]


# ------------------------------------------------------------------------------------------ shapes
def reshape(a, newshape, order: str = "C"):
    return asarray(a).reshape(newshape, order=order)


def transpose(a, axes=None):
    return asarray(a).transpose(axes)


def swapaxes(a, axis1: int, axis2: int):
    a = asarray(a)
    axes = list(range(a.ndim))
    i, j = axis1 % a.ndim, axis2 % a.ndim
    axes[i], axes[j] = axes[j], axes[i]
    return a.transpose(axes)


def moveaxis(a, source: int, destination: int):
    a = asarray(a)
    s, d = source % a.ndim, destination % a.ndim
    order = [i for i in range(a.ndim) if i != s]
    order.insert(d, s)
    return a.transpose(order)


def expand_dims(a, axis):
    a = asarray(a)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    n = a.ndim + len(axes)
    axes = sorted(x % n for x in axes)
    shape = list(a.shape)
    for x in axes:
        shape.insert(x, 1)
    return a.reshape(shape)


def squeeze(a, axis=None):
    a = asarray(a)
    if axis is None:
        return a.reshape(tuple(n for n in a.shape if n != 1))
    axes = {x % a.ndim for x in ((axis,) if isinstance(axis, int) else axis)}
    for x in axes:
        if a.shape[x] != 1:
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return a.reshape(tuple(n for i, n in enumerate(a.shape) if i not in axes))


def ravel(a):
    return asarray(a).reshape(-1)


def broadcast_to(a, shape) -> DeviceArray:
    a = asarray(a)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return a._view(_cp().broadcast_to(a._a, shape), writeable=False)


def broadcast_arrays(*args):
    shape = np.broadcast_shapes(*(asarray(x).shape for x in args))
    return [broadcast_to(x, shape) for x in args]


def flip(a, axis=None):
    a = asarray(a)
    axes = range(a.ndim) if axis is None else ((axis,) if isinstance(axis, int) else axis)
    key = [slice(None)] * a.ndim
    for x in axes:
        key[x % a.ndim] = slice(None, None, -1)
    return a[tuple(key)]


def concatenate(arrays, axis=0, out=None, dtype=None) -> DeviceArray:
    _no_out("concatenate", out)
    arrays = [asarray(x) for x in arrays]
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    if axis is None:
        arrays, axis = [x.reshape(-1) for x in arrays], 0
    ref = arrays[0]
    if ref.ndim == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = axis % ref.ndim
    for x in arrays:
        if x.ndim != ref.ndim or builtins.any(x.shape[d] != ref.shape[d] for d in range(ref.ndim) if d != axis):
            raise ValueError(f"all the input array dimensions except for the concatenation axis must match exactly, "
                             f"got shapes {ref.shape} and {x.shape} (axis {axis})")
    dt = np.dtype(dtype) if dtype is not None else np.result_type(*(np.empty(0, x.dtype) for x in arrays))
    shape = list(ref.shape)
    shape[axis] = builtins.sum(x.shape[axis] for x in arrays)
    result = empty(tuple(shape), dt)
    start = 0
    for x in arrays:
        n = x.shape[axis]
        if n:
            key = (slice(None),) * axis + (slice(start, start + n),)
            _ew.copy(result._a[key], x._a)
        start += n
    return result


def stack(arrays, axis=0, out=None) -> DeviceArray:
    arrays = [asarray(x) for x in arrays]
    if not arrays:
        raise ValueError("need at least one array to stack")
    shape = arrays[0].shape
    if builtins.any(x.shape != shape for x in arrays):
        raise ValueError("all input arrays must have the same shape")
    axis = axis % (len(shape) + 1)
    return concatenate([expand_dims(x, axis) for x in arrays], axis, out)


def tile(a, reps) -> DeviceArray:
    a = asarray(a)
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    nd = builtins.max(a.ndim, len(reps))
    shape = (1,) * (nd - a.ndim) + a.shape
    reps = (1,) * (nd - len(reps)) + reps
    # (r0, s0, r1, s1, ...) as a broadcast view of (1, s0, 1, s1, ...), then one copy
    inter = []
    for s in shape:
        inter += [1, s]
    expanded = broadcast_to(a.reshape(inter), tuple(v for r, s in zip(reps, shape) for v in (r, s)))
    return ascontiguousarray(expanded).reshape(tuple(r * s for r, s in zip(reps, shape)))


def pad(a, pad_width, mode: str = "constant", constant_values=0) -> DeviceArray:
    if mode != "constant":
        raise NotImplementedError(f"pad(mode={mode!r}): only mode='constant' is supported on the CUDA device")
    a = asarray(a)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (a.ndim, 2))
    shape = tuple(int(n + lo + hi) for n, (lo, hi) in zip(a.shape, widths))
    out = full(shape, constant_values, a.dtype)
    out[tuple(slice(int(lo), int(lo) + n) for n, (lo, _) in zip(a.shape, widths))] = a
    return out


def copy(a) -> DeviceArray:
    return asarray(a).copy()


# ------------------------------------------------------------------------------------------ products
def matmul(a, b, out=None) -> DeviceArray:
    from . import cuda

    o = _out(out)
    result = cuda.gemm(_raw(asarray(a)), _raw(asarray(b)), None if o is None else o._a)
    return o if o is not None else DeviceArray(result)


def dot(a, b) -> DeviceArray:
    a, b = asarray(a), asarray(b)
    if a.ndim == 1 and b.ndim == 1:
        return sum(multiply(a, b))  # noqa: F821
    if a.ndim <= 2 and b.ndim <= 2:
        return matmul(a, b)
    raise NotImplementedError(f"dot of a {a.ndim}-d and a {b.ndim}-d array is not supported on the CUDA device; "
                              "use matmul")


# ------------------------------------------------------------------------------------------ namespaces
lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
    as_strided=lambda x, shape=None, strides=None: asarray(x)._view(
        _cp().lib.stride_tricks.as_strided(asarray(x)._a, shape=shape, strides=strides))))
ndarray = DeviceArray


def __getattr__(name: str):
    raise AttributeError(f"zigtensor's CUDA array module has no NumPy function {name!r} (not implemented on the CUDA "
                         "device; see backends/cuda_array.py for what is)")
