"""The thread count of the OpenBLAS that NumPy loaded: found in the process's mapped libraries, read and set
through its C API (openblas_get/set_num_threads, under the symbol names of NumPy's bundled build too), and how
long its idle threads spin.

Why CPUBackend sets it to one thread: after each matmul, OpenBLAS's worker threads spin, waiting for the next
one, for a while (2^28 TSC cycles by default, about 0.1 s), and take the cores that zigtensor's own threads
(CPUBackend.parallel: GELU, LayerNorm, attention) then need: measured on 2 cores, a GELU right after a matmul
took 2x the time it takes alone (median). With OpenBLAS on one thread, CPUBackend.matmul splits large products
between its own threads instead, which block rather than spin when idle. None of this applies without an
OpenBLAS (another BLAS, another OS): BLAS is then left as it is.

Why medium products still run on OpenBLAS's threads (CPUBackend.matmul, between _SPLIT_MATMUL_MACS and
_BLAS_THREADS_MACS): a blocked thread is slow to wake, most of all in a virtual machine, where an idle vCPU
halts: a hand-off to zigtensor's pool costs 70-120 us on the 2-core VM, as much as half of a 128-row MLP
layer's product, which OpenBLAS's spinning threads run in about half the time of one core. That is worth it
only while their spin is short: `shorten_spin` (called by zigtensor's __init__ before NumPy loads OpenBLAS)
sets OPENBLAS_THREAD_TIMEOUT, which OpenBLAS reads once, when it loads, to 2^SHORT_SPIN cycles (under 1 ms),
unless the user set it; `spin_is_short` says whether it is in force.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

SPIN_ENV = "OPENBLAS_THREAD_TIMEOUT"  # log2 of the TSC cycles an idle OpenBLAS thread spins (4-30)
SHORT_SPIN = 21  # 2^21 cycles: about 0.7 ms at 3 GHz, longer than the gaps between one training step's products
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


def shorten_spin() -> None:
    """Limit OpenBLAS's idle spin to 2^SHORT_SPIN cycles, when NumPy (and so OpenBLAS) is not loaded yet and the
    user has not chosen: OpenBLAS reads the variable once, when it loads."""
    if "numpy" not in sys.modules:
        os.environ.setdefault(SPIN_ENV, str(SHORT_SPIN))


@functools.lru_cache(maxsize=1)
def spin_is_short() -> bool:
    """Whether OpenBLAS's idle threads spin for at most 2^SHORT_SPIN cycles (OPENBLAS_THREAD_TIMEOUT set so).
    Read once: OpenBLAS itself reads the variable only when it loads, and every matmul asks."""
    value = os.environ.get(SPIN_ENV, "")
    return value.strip().isdigit() and int(value) <= SHORT_SPIN


def machine_busy() -> bool:
    """Whether other processes keep the cores busy: the 1-minute load average, less this process (one core),
    is within one core of the core count. OpenBLAS's threads wait for each other at the end of every product,
    spinning, which goes very wrong on cores that others take."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return False
    return load - 1.0 > (os.cpu_count() or 1) - 1.0
