"""The thread count of the OpenBLAS that NumPy loaded: found in the process's mapped libraries, read and set
through its C API (openblas_get/set_num_threads, under the symbol names of NumPy's bundled build too).

Why CPUBackend sets it to one thread: after each matmul, OpenBLAS's worker threads spin, waiting for the next
one, for a while, and take the cores that zigtensor's own threads (CPUBackend.parallel: GELU,
LayerNorm, attention) then need: measured on 2 cores, a GELU right after a matmul took 2x the time it takes
alone (median). With OpenBLAS on one thread, CPUBackend.matmul splits large products between its own threads instead,
which block rather than spin when idle. None of this applies without an OpenBLAS (another BLAS, another OS):
BLAS is then left as it is.
"""

from __future__ import annotations

import ctypes
import functools

_SUFFIXES = ("", "64_")
_PREFIXES = ("scipy_openblas", "openblas")


@functools.lru_cache(maxsize=1)
def _api():
    """(get_num_threads, set_num_threads) C functions of the loaded OpenBLAS, or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.rsplit("/", 1)[-1].lower()}
    except OSError:  # no /proc (not Linux)
        return None
    for path in sorted(p for p in paths if ".so" in p):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                    return get, put
    return None


def blas_threads() -> int | None:
    """OpenBLAS's current thread count, or None when no OpenBLAS is found."""
    api = _api()
    return None if api is None else int(api[0]())


def set_blas_threads(n: int) -> bool:
    """Set OpenBLAS's thread count; False when no OpenBLAS is found."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_blas_threads: expected a positive thread count, got {n!r}")
    api = _api()
    if api is None:
        return False
    api[1](n)
    return True
