"""How many BLAS threads a model step uses on CPU.

A decode step multiplies a few rows by every weight matrix: it streams the weights from memory, and one thread
does that nearly as fast as several. Several OpenBLAS threads on a machine whose cores are busy with other
processes, though, spin waiting for each other at the end of every matmul: measured on the shared 2-core CPU,
batch-1 decode of SmolLM2 fell from 23 to 1.5 tokens/s with two threads, and a 200-token prefill took 6-11 s
instead of 1.3-1.9 s. So:
  - steps of at most SMALL_STEP_TOKENS tokens (rows x new tokens: decode) run single-threaded;
  - larger steps (prompts) keep BLAS's threads unless the machine is busy (the 1-minute load average, less
    this process, leaves less than one core free), when they run single-threaded too.

    with blas_threads(step_threads(tokens_in_step)):
        logits = model(...)

ZT_DECODE_THREADS sets the thread count of every step instead (0: leave BLAS alone). The limit goes through
threadpoolctl when it is installed; without it BLAS is left as it is.
"""

from __future__ import annotations

import contextlib
import functools
import os

SMALL_STEP_TOKENS = 32  # steps with at most this many tokens (rows x new tokens) count as decode-like


@functools.lru_cache(maxsize=1)
def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def _busy() -> bool:
    """Whether other processes keep the cores busy: the load average, less this process, is within one core of
    the core count."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return False
    return load - 1.0 > (os.cpu_count() or 1) - 1.0


def step_threads(tokens: int) -> int | None:
    """The BLAS threads for a step of `tokens` tokens on CPU (None: BLAS's own setting)."""
    value = os.environ.get("ZT_DECODE_THREADS")
    if value is not None:
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"ZT_DECODE_THREADS must be an int (0: leave BLAS alone), got {value!r}") from None
        return n if n > 0 else None
    return 1 if tokens <= SMALL_STEP_TOKENS or _busy() else None


@contextlib.contextmanager
def blas_threads(n: int | None):
    """Run the block with BLAS limited to n threads (None: unchanged)."""
    controller = _controller() if n is not None else None
    if controller is None:
        yield
        return
    with controller.limit(limits=n, user_api="blas"):
        yield
