"""The real CUDA backend (backends/cuda.py, cuda_array.py, zigtensor.cuda) run end to end on the CPU.

Two stand-ins make that possible without a GPU: tests/kernel_emulator.py runs every kernels/*.cu launch under
g++, and this module's `FakeCupy` plays the few parts of CuPy the backend keeps (array storage and creation,
views, `.get()`, `.data.ptr`, the device and runtime queries, streams, events and the memory pool as
bookkeeping). Device memory is host memory: `EmuArray`, an ndarray subclass that answers CuPy's methods.

Only what the backend itself calls is provided; anything else raises AttributeError naming the CuPy function,
so a new dependency on CuPy shows up here first. The launchers' `array_module` is patched to return FakeCupy
for EmuArrays and to refuse plain NumPy arrays: one of those reaching a launcher inside the backend is data
that left the device (on a GPU, a host pointer passed to a kernel); likewise a DeviceArray made over anything
but an EmuArray raises where it is made.

Beyond the emulator itself: ZT_STRIDED arguments (strided views, negative strides included) are passed as the
span of memory they reach, and launches are checked against an H100's limits (227 KiB of opt-in shared memory),
as the real loader does. LAUNCHES counts the kernels each test ran.

Not covered (GPU only): NVRTC compilation and the real loader (backends/kernels.py), asynchronous streams,
the memory pool's numbers (0 here), CuPy's own kernels, and FMA contraction (nvcc fuses a*b+c, g++ does not).

Use the `emulated_cuda` fixture (it yields the device 'cuda:0' and undoes everything afterwards), `install` in a
fixture of your own, or tests/emulated_cuda_plugin.py to run the [cuda] cases of the device suites.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import pkgutil
import sys
import types
from types import SimpleNamespace

import kernel_emulator
import numpy as np
import pytest

import zigtensor.backends as backends
from zigtensor import cuda as zt_cuda
from zigtensor.backends.kernel_check import LaunchLimits

device_mod = sys.modules["zigtensor.device"]  # the package attribute `device` is the function, not the module

SM_COUNT = 4  # what the emulator's grids are sized for (as _launch.sm_count gives NumPy)
TOTAL_MEMORY = 80 * 2**30


class EmuArray(np.ndarray):
    """A cupy.ndarray stand-in: NumPy memory, CuPy's host-transfer and pointer interface."""

    def get(self, stream=None, order="C", out=None) -> np.ndarray:
        """A plain NumPy copy, as cupy.ndarray.get gives."""
        host = np.array(self, copy=True, order=order).view(np.ndarray)
        if out is not None:
            out[...] = host
            return out
        return host

    def __getitem__(self, key):
        """NOTE: CuPy's integer indexing gives a 0-d array (a view), NumPy's a scalar: given here as CuPy does."""
        out = super().__getitem__(key)
        if isinstance(out, np.ndarray):
            return out
        key = key if isinstance(key, tuple) else (key,)
        return super().__getitem__(key + (Ellipsis,))

    @property
    def data(self):  # NOTE: shadows ndarray.data (a memoryview); CuPy's is a MemoryPointer with .ptr
        return SimpleNamespace(ptr=self.ctypes.data)

    @property
    def device(self):
        return _Device(0)

    def __repr__(self) -> str:
        return f"EmuArray({np.asarray(self).view(np.ndarray)!r})"


def _emu(x):
    """x as EmuArray when it is an ndarray (a view, no copy); anything else unchanged."""
    if isinstance(x, np.ndarray) and not isinstance(x, EmuArray):
        return x.view(EmuArray)
    if isinstance(x, (tuple, list)) and any(isinstance(v, np.ndarray) for v in x):
        return type(x)(_emu(v) for v in x)
    return x


# ------------------------------------------------------------------------------------------ cupy.cuda
class _Device:
    def __init__(self, device_id: int = 0):
        if device_id is None:
            device_id = 0
        if int(device_id) != 0:
            raise ValueError(f"the emulated CUDA runtime has one device (0), got device {device_id}")
        self.id = 0
        self.attributes = {"MultiProcessorCount": SM_COUNT}
        self.compute_capability = "90"

    def synchronize(self) -> None:
        pass

    def use(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __eq__(self, other) -> bool:
        return isinstance(other, _Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


class _Stream:
    """Work runs at once on the emulator, so a stream is always done and waits are no-ops."""

    _current: list = []

    def __init__(self, null: bool = False, non_blocking: bool = False, ptr: int = 0):
        self.ptr = ptr if null else id(self)
        self.done = True

    def synchronize(self) -> None:
        pass

    def wait_event(self, event) -> None:
        pass

    def record(self, event=None):
        event = event or _Event()
        event.record(self)
        return event

    def use(self):
        return self

    def __enter__(self):
        _Stream._current.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _Stream._current.pop()


_NULL_STREAM = _Stream(null=True)


class _Event:
    def __init__(self, block: bool = False, disable_timing: bool = False, interprocess: bool = False):
        self.disable_timing = disable_timing
        self.recorded = False
        self.done = True

    def record(self, stream=None) -> None:
        self.recorded = True

    def synchronize(self) -> None:
        pass


def _elapsed_time(start: _Event, end: _Event) -> float:
    """0 ms: nothing is timed on the emulator (CuPy raises for unrecorded or untimed events, as here)."""
    for e in (start, end):
        if e.disable_timing or not e.recorded:
            raise RuntimeError("cudaErrorInvalidResourceHandle: an event was not recorded or has timing disabled")
    return 0.0


class _Runtime:
    def __init__(self):
        self.current = 0
        self.synchronized = 0

    def getDeviceCount(self) -> int:  # noqa: N802  (CuPy's names)
        return 1

    def getDevice(self) -> int:  # noqa: N802
        return self.current

    def setDevice(self, index: int) -> None:  # noqa: N802
        _Device(index)
        self.current = int(index)

    def deviceSynchronize(self) -> None:  # noqa: N802
        self.synchronized += 1

    def memGetInfo(self) -> tuple[int, int]:  # noqa: N802
        return TOTAL_MEMORY - _POOL.used_bytes(), TOTAL_MEMORY

    def getDeviceProperties(self, index: int) -> dict:  # noqa: N802
        _Device(index)
        return {"name": b"Emulated H100 (kernel_emulator.py)", "major": 9, "minor": 0,
                "totalGlobalMem": TOTAL_MEMORY, "multiProcessorCount": SM_COUNT, "maxThreadsPerBlock": 1024,
                "maxThreadsDim": (1024, 1024, 64), "maxGridSize": (2**31 - 1, 65535, 65535),
                "sharedMemPerBlock": 48 * 1024, "sharedMemPerBlockOptin": 227 * 1024,
                "sharedMemPerMultiprocessor": 228 * 1024, "regsPerBlock": 65536, "warpSize": 32,
                "l2CacheSize": 50 * 2**20}


class _MemoryPool:
    """Counts nothing real (NumPy owns the memory): the numbers are zero, the calls are the point."""

    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def n_free_blocks(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass


_POOL = _MemoryPool()


def _make_cuda_namespace():
    return SimpleNamespace(
        Device=_Device, Stream=_Stream, Event=_Event, runtime=_Runtime(), get_elapsed_time=_elapsed_time,
        get_current_stream=lambda: _Stream._current[-1] if _Stream._current else _NULL_STREAM,
        Stream_null=_NULL_STREAM)


# ------------------------------------------------------------------------------------------ the module
# NumPy functions the backend calls through CuPy whose array results must stay "on the device"
_WRAPPED = ("empty", "empty_like", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "moveaxis",
            "matmul", "concatenate", "broadcast_to", "transpose", "take", "arange", "nonzero", "reshape", "stack",
            "where", "expand_dims", "squeeze", "swapaxes", "tril", "triu", "eye")
# Non-array names that pass through to NumPy (dtypes and type queries)
_PASSTHROUGH = ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint32", "uint64", "float16", "float32",
                "float64", "dtype", "result_type", "can_cast", "iinfo", "finfo", "promote_types", "intp", "newaxis",
                "inf", "nan", "pi", "e")


class FakeCupy(types.ModuleType):
    """`import cupy` under the emulator: NumPy-backed, with only the names the CUDA backend uses."""

    def __init__(self):
        super().__init__("cupy", "CuPy stand-in for running the CUDA backend on the kernel emulator")
        self.ndarray = EmuArray
        self.cuda = _make_cuda_namespace()
        self.lib = SimpleNamespace(stride_tricks=SimpleNamespace(as_strided=self._as_strided))
        for name in _WRAPPED:
            setattr(self, name, self._wrapping(getattr(np, name)))
        for name in _PASSTHROUGH:
            setattr(self, name, getattr(np, name))
        self._pinned_pool = _MemoryPool()

    @staticmethod
    def _wrapping(fn):
        def wrapped(*args, **kwargs):
            return _emu(fn(*args, **kwargs))

        wrapped.__name__ = fn.__name__
        return wrapped

    @staticmethod
    def _as_strided(x, shape=None, strides=None):
        if not isinstance(x, EmuArray):
            raise TypeError(f"cupy.lib.stride_tricks.as_strided: expected a cupy.ndarray, got {type(x).__name__}")
        return _emu(np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides))

    @staticmethod
    def asarray(a, dtype=None, order=None):
        """Device arrays pass through; host data is copied, as an upload is (no aliasing of host memory)."""
        if isinstance(a, EmuArray) and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        return np.array(a, dtype=dtype, order=order or "K", copy=True).view(EmuArray)

    array = asarray

    @staticmethod
    def ascontiguousarray(a, dtype=None):
        """NOTE: keeps a 0-d array 0-d, as CuPy's does (NumPy's makes it 1-d)."""
        return _emu(np.asarray(a, dtype=dtype, order="C"))

    @staticmethod
    def asnumpy(x):
        return x.get() if isinstance(x, EmuArray) else np.asarray(x)

    @staticmethod
    def get_default_memory_pool():
        return _POOL

    def get_default_pinned_memory_pool(self):
        return self._pinned_pool

    def __getattr__(self, name: str):
        raise AttributeError(f"the emulated CuPy (tests/emulated_cuda.py) has no {name!r}; the CUDA backend "
                             "started using it: add it here if it is meant to")


# ------------------------------------------------------------------------------------------ strided launches
class _Span(np.ndarray):
    """A strided view's memory as one contiguous 1-d array; `first` is the byte offset of the view's first
    element in it (> 0 when a stride is negative)."""

    first = 0


def _span(x: np.ndarray) -> _Span:
    """x's memory from the lowest to the highest address its strides reach, as one contiguous array (a view).

    NOTE: the emulator copies each array argument between guard bytes, so it takes only C-contiguous buffers;
    a ZT_STRIDED parameter gets the span instead, and _FirstElementGuarded points the kernel at the view's
    first element inside the copy (what the pointer means on a GPU)."""
    item = x.dtype.itemsize
    if x.size == 0:
        return np.empty(0, x.dtype).view(_Span)
    lo = sum((d - 1) * s for d, s in zip(x.shape, x.strides) if s < 0)
    hi = sum((d - 1) * s for d, s in zip(x.shape, x.strides) if s > 0)
    base = np.lib.stride_tricks.as_strided(x.view(np.ndarray), shape=(1,), strides=(item,))  # the first element
    start = base.ctypes.data + lo
    buf = (ctypes.c_char * (hi - lo + item)).from_address(start)
    span = np.frombuffer(buf, dtype=x.dtype).view(_Span)
    if not x.flags.writeable:
        span.flags.writeable = False
    span.first = -lo
    return span


class _FirstElementGuarded(kernel_emulator._Guarded):
    """The emulator's guarded copy, pointing the kernel at a span's first element."""

    def __init__(self, arr: np.ndarray, index: int):
        super().__init__(arr, index)
        self.ptr += getattr(arr, "first", 0)


LAUNCHES: dict = {}  # "family.kernel" -> launches since the fixture started (tests check what ran)


class _SpanningKernel:
    """An emulated kernel whose ZT_STRIDED array arguments are passed as their spans (see _span)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.strided = [p.strided for p in kernel.signature.params]

    def __call__(self, grid, block, args, shared_mem: int = 0, stream=None):
        args = tuple(_span(a) if isinstance(a, np.ndarray) and i < len(self.strided) and self.strided[i]
                     and not a.flags.c_contiguous else a for i, a in enumerate(args))
        key = f"{self.kernel.family}.{self.kernel.name}"
        LAUNCHES[key] = LAUNCHES.get(key, 0) + 1
        return self.kernel(grid, block, args, shared_mem, stream)


def load_kernel(family: str, name: str, defines: dict | None = None, options: tuple = ()):
    """kernel_emulator.load_kernel, taking strided views where the kernel declares ZT_STRIDED parameters."""
    return _SpanningKernel(kernel_emulator.load_kernel(family, name, defines, options))


# ------------------------------------------------------------------------------------------ the fixture
def _strict_array_module(original):
    def array_module(x):
        """FakeCupy for device arrays; a plain NumPy array inside the backend is data that left the device."""
        if isinstance(x, EmuArray):
            return sys.modules["cupy"]
        if isinstance(x, np.ndarray):
            raise TypeError(f"a host NumPy array (shape {x.shape}, {x.dtype}) reached a CUDA launcher: on a GPU "
                            "this is a host pointer passed to a kernel")
        return original(x)

    return array_module


def forget_cuda_devices() -> None:
    for dev in [d for d in backends._cache if d.type == "cuda"]:
        del backends._cache[dev]
    for key in [k for k, d in device_mod._interned.items() if d.type == "cuda"]:
        del device_mod._interned[key]


def install(monkeypatch) -> FakeCupy:
    """Make `import cupy`, zigtensor.cuda and the kernel launchers use FakeCupy and the kernel emulator."""
    from zigtensor.backends.cuda_kernels import _launch

    why = kernel_emulator.available()
    if why:
        pytest.skip(f"the kernel emulator cannot run here: {why}")
    fake = FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupy.lib", fake.lib)
    monkeypatch.setitem(sys.modules, "cupy.lib.stride_tricks", fake.lib.stride_tricks)
    monkeypatch.setattr(zt_cuda, "_state", {"cupy": fake})
    monkeypatch.setattr(zt_cuda, "_properties", {})
    monkeypatch.setattr(_launch, "loader", load_kernel)
    # NOTE: the emulator checks launches against LaunchLimits() (48 KiB of shared memory, any GPU); the emulated
    # device is an H100, whose kernels may opt in to more (the real loader does, kernels.py)
    optin = FakeCupy().cuda.runtime.getDeviceProperties(0)["sharedMemPerBlockOptin"]
    monkeypatch.setattr(kernel_emulator, "LaunchLimits", lambda: LaunchLimits(max_shared_mem_per_block_optin=optin))
    monkeypatch.setattr(kernel_emulator, "_Guarded", _FirstElementGuarded)
    monkeypatch.setattr(_launch, "_sm_counts", {})
    original = _launch.array_module
    strict = _strict_array_module(original)
    for mod in _launch_modules():
        if getattr(mod, "array_module", None) is original:
            monkeypatch.setattr(mod, "array_module", strict)
    _refuse_host_storage(monkeypatch)
    # NOTE: the launchers' caches of device arrays (layouts, pointer tables) are keyed by device id: clear them
    # so no EmuArray outlives the test and no array of another test's run is reused
    _clear_device_caches(monkeypatch)
    return fake


def _refuse_host_storage(monkeypatch) -> None:
    """A DeviceArray over anything but an EmuArray raises where it is made: on a GPU that array would be host
    memory (or a scalar) posing as device memory, and fail later, far from the cause."""
    from zigtensor.backends.cuda_array import DeviceArray

    init = DeviceArray.__init__

    def checked_init(self, storage, base=None, writeable: bool = True):
        if not isinstance(storage, EmuArray):
            raise TypeError(f"a DeviceArray over a {type(storage).__name__}, not a device array: on a GPU this is "
                            "host data posing as device memory")
        init(self, storage, base, writeable)

    monkeypatch.setattr(DeviceArray, "__init__", checked_init)


def _clear_device_caches(monkeypatch) -> None:
    from zigtensor.backends.cuda_kernels import _launch

    for mod in _launch_modules():
        for name, value in vars(mod).items():
            if isinstance(value, _launch.DeviceArrayCache):
                monkeypatch.setattr(mod, name, _launch.DeviceArrayCache(value.limit))


def _launch_modules() -> list:
    """Every module of backends/cuda_kernels/ (the launchers)."""
    from zigtensor.backends import cuda_kernels

    return [importlib.import_module(f"{cuda_kernels.__name__}.{info.name}")
            for info in pkgutil.iter_modules(cuda_kernels.__path__)]


@contextlib.contextmanager
def _cuda_device(monkeypatch, emulate: bool):
    """'cuda:0', on the emulator (installed for this test, LAUNCHES cleared) or on the real GPU."""
    if emulate:
        install(monkeypatch)
        LAUNCHES.clear()
    forget_cuda_devices()
    try:
        yield device_mod.device("cuda:0")
    finally:
        forget_cuda_devices()


@pytest.fixture
def emulated_cuda(monkeypatch):
    """The real CUDA backend on FakeCupy and the kernel emulator for one test; yields the device 'cuda:0'."""
    with _cuda_device(monkeypatch, emulate=True) as dev:
        yield dev


def _why_no_gpu() -> str:
    from cuda_util import why_no_gpu

    return why_no_gpu()


@pytest.fixture(params=["emulator", pytest.param("gpu", marks=[pytest.mark.cuda, pytest.mark.skipif(
    bool(_why_no_gpu()), reason=_why_no_gpu() or "a GPU is here")])])
def cuda_dev(request, monkeypatch):
    """'cuda:0' on the emulated backend ([emulator]; LAUNCHES counts its kernels), or on the real GPU where
    there is one ([gpu]): the same scenarios, so a GPU session can run them first. Import it into a test
    module to use it."""
    with _cuda_device(monkeypatch, emulate=request.param == "emulator") as dev:
        yield dev
