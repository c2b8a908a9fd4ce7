"""zt.cuda: the CUDA runtime as PyTorch spells it (devices, streams, events, the memory pool), over CuPy.

CuPy is imported on first use, never by `import zigtensor`. Without CuPy or without a device,
`is_available()` is False and `device_count()` is 0; everything that needs a GPU raises a one-line
RuntimeError saying which is missing and how to install it.

>>> import zigtensor as zt
>>> if zt.cuda.is_available():
...     start, end = zt.cuda.Event(), zt.cuda.Event()
...     start.record(); ...; end.record(); end.synchronize()
...     ms = start.elapsed_time(end)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..backends.kernel_check import LaunchLimits

INSTALL_HINT = "pip install zigtensor[cuda]"
_state: dict = {}  # "cupy": the module, or "error": why it cannot be imported


def _import_cupy():
    if "cupy" not in _state and "error" not in _state:
        try:
            import cupy

            _state["cupy"] = cupy
        except Exception as e:  # noqa: BLE001  (a broken CuPy install raises more than ImportError)
            _state["error"] = f"CuPy is not installed or cannot be imported ({type(e).__name__}: " \
                              f"{str(e).splitlines()[0] if str(e) else ''}); install it with: {INSTALL_HINT}"
    return _state.get("cupy")


def _count(cp) -> tuple[int, str | None]:
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001  (no driver: CUDARuntimeError, or a missing libcuda)
        return 0, f"no CUDA device found ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return n, None if n else "no CUDA device found (the driver reports 0 devices)"


def require_cupy():
    """The CuPy module when a CUDA device can be used; otherwise a one-line RuntimeError saying why."""
    cp = _import_cupy()
    if cp is None:
        raise RuntimeError(f"CUDA is not available: {_state['error']}")
    n, why = _count(cp)
    if not n:
        raise RuntimeError(f"CUDA is not available: {why}; CuPy is installed, a GPU and its driver are needed")
    return cp


def is_available() -> bool:
    """True when CuPy imports and sees at least one device. Never raises."""
    cp = _import_cupy()
    return cp is not None and _count(cp)[0] > 0


def device_count() -> int:
    """The number of CUDA devices (0 without CuPy or a driver). Never raises."""
    cp = _import_cupy()
    return 0 if cp is None else _count(cp)[0]


def _index(device) -> int:
    """A device index from an int, 'cuda:N', a zt device, or None (the current device)."""
    if device is None:
        return current_device()
    if isinstance(device, str) or hasattr(device, "type"):
        from ..device import device as parse

        d = parse(device)
        if d.type != "cuda":
            raise ValueError(f"expected a CUDA device, got {device!r}")
        device = d.index
    if not isinstance(device, int) or isinstance(device, bool):
        raise TypeError(f"expected a device index, 'cuda:N' or a zt.device, got {device!r}")
    n = device_count()
    if not 0 <= device < n:
        require_cupy()
        raise ValueError(f"CUDA device {device} does not exist; this machine has {n} (0 to {n - 1})")
    return device


def current_device() -> int:
    return require_cupy().cuda.runtime.getDevice()


def set_device(device) -> None:
    cp = require_cupy()
    cp.cuda.runtime.setDevice(_index(device))


@dataclass(frozen=True)
class DeviceProperties:
    """What one device is and allows; `launch_limits()` is what the kernel launch checker needs."""

    index: int
    name: str
    major: int
    minor: int
    total_memory: int  # bytes
    multi_processor_count: int
    max_threads_per_block: int
    max_block_dims: tuple[int, int, int]
    max_grid_dims: tuple[int, int, int]
    max_shared_memory_per_block: int  # bytes, without opting in
    max_shared_memory_per_block_optin: int
    shared_memory_per_multiprocessor: int
    regs_per_block: int
    warp_size: int
    l2_cache_size: int

    @property
    def compute_capability(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def launch_limits(self) -> LaunchLimits:
        return LaunchLimits(self.index, self.max_threads_per_block, self.max_block_dims, self.max_grid_dims,
                            self.max_shared_memory_per_block, self.max_shared_memory_per_block_optin)

    def __repr__(self) -> str:
        return (f"DeviceProperties(index={self.index}, name={self.name!r}, compute_capability={self.major}."
                f"{self.minor}, total_memory={self.total_memory / 2**30:.1f} GiB, "
                f"multi_processor_count={self.multi_processor_count})")


def properties_from_runtime(index: int, p: dict) -> DeviceProperties:
    """DeviceProperties from the dict of cupy.cuda.runtime.getDeviceProperties (cudaDeviceProp's fields)."""
    name = p["name"]
    return DeviceProperties(
        index=index, name=name.decode() if isinstance(name, bytes) else str(name), major=int(p["major"]),
        minor=int(p["minor"]), total_memory=int(p["totalGlobalMem"]),
        multi_processor_count=int(p["multiProcessorCount"]), max_threads_per_block=int(p["maxThreadsPerBlock"]),
        max_block_dims=tuple(int(d) for d in p["maxThreadsDim"]),
        max_grid_dims=tuple(int(d) for d in p["maxGridSize"]),
        max_shared_memory_per_block=int(p["sharedMemPerBlock"]),
        max_shared_memory_per_block_optin=int(p.get("sharedMemPerBlockOptin", p["sharedMemPerBlock"])),
        shared_memory_per_multiprocessor=int(p.get("sharedMemPerMultiprocessor", 0)),
        regs_per_block=int(p.get("regsPerBlock", 0)), warp_size=int(p.get("warpSize", 32)),
        l2_cache_size=int(p.get("l2CacheSize", 0)),
    )


_properties: dict[int, DeviceProperties] = {}


def get_device_properties(device=None) -> DeviceProperties:
    cp = require_cupy()
    i = _index(device)
    if i not in _properties:
        _properties[i] = properties_from_runtime(i, cp.cuda.runtime.getDeviceProperties(i))
    return _properties[i]


def get_device_name(device=None) -> str:
    return get_device_properties(device).name


def get_device_capability(device=None) -> tuple[int, int]:
    return get_device_properties(device).compute_capability


def synchronize(device=None) -> None:
    """Wait for all work on the device (the current one by default)."""
    cp = require_cupy()
    with cp.cuda.Device(_index(device)):
        cp.cuda.runtime.deviceSynchronize()


class Stream:
    """A CUDA stream. `with stream:` makes it current, so kernels and CuPy calls inside run on it."""

    def __init__(self, device=None, non_blocking: bool = False):
        cp = require_cupy()
        with cp.cuda.Device(_index(device)):
            self.cupy_stream = cp.cuda.Stream(non_blocking=non_blocking)

    def synchronize(self) -> None:
        self.cupy_stream.synchronize()

    def query(self) -> bool:
        """True when all work queued on it has finished."""
        return self.cupy_stream.done

    def wait_event(self, event: Event) -> None:
        self.cupy_stream.wait_event(event.cupy_event)

    def record_event(self, event: Event | None = None) -> Event:
        event = event or Event()
        event.record(self)
        return event

    def __enter__(self) -> Stream:
        self.cupy_stream.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.cupy_stream.__exit__(*exc)

    def __repr__(self) -> str:
        return f"zt.cuda.Stream(ptr={self.cupy_stream.ptr:#x})"


def current_stream() -> Stream:
    cp = require_cupy()
    s = Stream.__new__(Stream)
    s.cupy_stream = cp.cuda.get_current_stream()
    return s


class Event:
    """A CUDA event: `record()` on a stream, `synchronize()`, and `elapsed_time(end)` in milliseconds."""

    def __init__(self, enable_timing: bool = True, blocking: bool = False):
        cp = require_cupy()
        self._cp = cp
        self.cupy_event = cp.cuda.Event(block=blocking, disable_timing=not enable_timing)

    def record(self, stream: Stream | None = None) -> None:
        self.cupy_event.record(None if stream is None else stream.cupy_stream)

    def synchronize(self) -> None:
        self.cupy_event.synchronize()

    def query(self) -> bool:
        return self.cupy_event.done

    def elapsed_time(self, end: Event) -> float:
        """Milliseconds from this event to `end` (both recorded, `end` finished)."""
        return float(self._cp.cuda.get_elapsed_time(self.cupy_event, end.cupy_event))


def memory_stats(device=None) -> dict[str, int]:
    """The CuPy memory pool's bytes (allocated: held by arrays; reserved: taken from the driver) and the
    device's free and total memory."""
    cp = require_cupy()
    with cp.cuda.Device(_index(device)):
        pool = cp.get_default_memory_pool()
        free, total = cp.cuda.runtime.memGetInfo()
        return {"allocated_bytes": int(pool.used_bytes()), "reserved_bytes": int(pool.total_bytes()),
                "pool_free_blocks": int(pool.n_free_blocks()), "device_free_bytes": int(free),
                "device_total_bytes": int(total)}


def memory_allocated(device=None) -> int:
    return memory_stats(device)["allocated_bytes"]


def empty_cache() -> None:
    """Give the pool's unused blocks back to the driver (arrays still alive keep theirs)."""
    cp = require_cupy()
    cp.get_default_memory_pool().free_all_blocks()
    cp.get_default_pinned_memory_pool().free_all_blocks()
