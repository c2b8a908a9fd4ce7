"""How many BLAS threads a model step uses on CPU.

Whether a second BLAS thread helps a decode step depends on the machine's load, not on the step. On an idle
2-core CPU two threads nearly halve a step (measured with the float32 matmuls of SmolLM2: 97 -> 47 ms at batch 8,
41 -> 26 ms at batch 1); on a CPU whose cores are busy with other processes, OpenBLAS's threads spin waiting for
each other at the end of every matmul (batch-1 decode fell from 23 to 1.5 tokens/s with two threads). So:
  - steps of at most SMALL_STEP_TOKENS tokens (rows x new tokens: decode) are timed, and DecodeThreads picks the
    thread count that measures fastest, probing the other one now and then (the load changes);
  - larger steps (prompts) keep BLAS's threads unless the machine is busy (the 1-minute load average, less
    this process, leaves less than one core free), when they run single-threaded.

    with decode_threads.step(tokens_in_step):          # or blas_threads(step_threads(tokens)) for one fixed choice
        logits = model(...)

With OpenBLAS on one thread, CPUBackend.matmul splits large products (a batch-8 decode's, the LM head's) between
the cores on its own threads, which block instead of spinning (backends/blas_threads.py): the candidate "1" is
that, "2" is OpenBLAS's own threads. On the loaded 2-core machine a batch-8 SmolLM2 step took a median 95 ms the
first way and 2.5 s the second.

ZT_DECODE_THREADS sets the thread count of every step instead (0: leave BLAS alone). The limit goes through
threadpoolctl when it is installed; without it BLAS is left as it is.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time

from ..backends.blas_threads import machine_busy

SMALL_STEP_TOKENS = 32  # steps with at most this many tokens (rows x new tokens) count as decode-like


@functools.lru_cache(maxsize=1)
def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def _forced() -> tuple[bool, int | None]:
    """(whether ZT_DECODE_THREADS is set, its thread count: None to leave BLAS alone)."""
    value = os.environ.get("ZT_DECODE_THREADS")
    if value is None:
        return False, None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"ZT_DECODE_THREADS must be an int (0: leave BLAS alone), got {value!r}") from None
    return True, (n if n > 0 else None)


def step_threads(tokens: int) -> int | None:
    """The BLAS threads for a step of `tokens` tokens on CPU (None: BLAS's own setting), without timing: one
    thread for decode-like steps (the safe choice on a busy machine; DecodeThreads times the others)."""
    forced, n = _forced()
    if forced:
        return n
    return 1 if tokens <= SMALL_STEP_TOKENS or machine_busy() else None


def _blas_libraries() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process."""
    controller = _controller()
    return [] if controller is None else controller.select(user_api="blas").lib_controllers


@contextlib.contextmanager
def blas_threads(n: int | None):
    """Run the block with BLAS limited to n threads (None: unchanged), then restore BLAS's setting.

    NOTE: each library's thread count is read and set directly (a few microseconds), not through
    threadpoolctl's limit(), which takes about 100 us: it runs around every decode step."""
    libs = _blas_libraries() if n is not None else []
    before = [lib.get_num_threads() for lib in libs]
    for lib, had in zip(libs, before):
        if had != n:
            lib.set_num_threads(n)
    try:
        yield
    finally:
        for lib, had in zip(libs, before):
            if had != n:
                lib.set_num_threads(had)


def _size_class(tokens: int) -> int:
    """Steps are timed in classes of sizes 1, 2, 3-4, 5-8, ..., 17-32 tokens, named by their largest size: an
    engine's decode batch shrinks and grows by a row or two, which changes a step's time little."""
    return 1 << max(tokens - 1, 0).bit_length()


class _Choice:
    """The timings of one step size: recent seconds per thread count, the current pick, when to probe next."""

    def __init__(self, candidates: tuple[int, ...]):
        self.times: dict[int, list[float]] = {n: [] for n in candidates}
        self.best = candidates[0]
        self.interval = DecodeThreads.FIRST_PROBE_INTERVAL
        self.until_probe = self.interval


class DecodeThreads:
    """Times decode-like steps and runs each with the BLAS thread count that has been fastest for its size.

    Per class of step sizes (tokens), each candidate (1 and the core count) is first timed SAMPLES times (one
    time is enough for one twice as slow as the first); then the fastest by the median of its last SAMPLES steps
    runs, and every `interval` steps one step probes another candidate. A probe faster than the pick's median is
    followed by another until the medians decide; a slower one doubles the interval (up to MAX_PROBE_INTERVAL: on
    a busy machine a probe of two threads can cost 25 steps' time); a switch resets it. When the load rises, the
    pick's own median rises past the others' and the pick changes without waiting for a probe.
    """

    SAMPLES = 3
    FIRST_PROBE_INTERVAL = 8
    MAX_PROBE_INTERVAL = 1024

    def __init__(self, candidates: tuple[int, ...] | None = None):
        cores = os.cpu_count() or 1
        candidates = candidates if candidates is not None else tuple(sorted({1, cores}))
        if not candidates or any(not isinstance(n, int) or n < 1 for n in candidates):
            raise ValueError(f"DecodeThreads: candidates must be positive thread counts, got {candidates!r}")
        self.candidates = tuple(candidates)
        self._choices: dict[int, _Choice] = {}
        self._lock = threading.Lock()

    def choose(self, tokens: int) -> int | None:
        """The thread count for the next step of `tokens` tokens (None: leave BLAS alone)."""
        forced, n = _forced()
        if forced:
            return n
        if tokens > SMALL_STEP_TOKENS:
            return None if not machine_busy() else 1
        if len(self.candidates) == 1:
            return self.candidates[0]
        key = _size_class(tokens)
        with self._lock:
            c = self._choices.get(key)
            if c is None:
                c = self._choices[key] = _Choice(self.candidates)
            for n, times in c.times.items():  # first, time every candidate
                if len(times) < self.SAMPLES:
                    return n
            if c.until_probe <= 0:
                others = [n for n in self.candidates if n != c.best]
                return min(others, key=lambda n: len(c.times[n]))  # the least timed (one other with 2 cores)
            return c.best

    def record(self, tokens: int, threads: int | None, seconds: float) -> None:
        """Note that a step of `tokens` tokens with `threads` threads took `seconds`, and update the pick."""
        with self._lock:
            c = self._choices.get(_size_class(tokens))
            if c is None or threads not in c.times:
                return
            times = c.times[threads]
            times.append(seconds)
            del times[:-self.SAMPLES]
            pick = sorted(c.times[c.best])
            if threads != c.best and len(pick) == self.SAMPLES and seconds > 2 * pick[len(pick) // 2]:
                # NOTE: a first timing or a probe twice as slow as the pick loses at once: on a busy machine two
                # threads can take 25 times as long, and each further sample would cost as much
                times[:] = [seconds] * self.SAMPLES
                c.interval = min(2 * c.interval, self.MAX_PROBE_INTERVAL)
                c.until_probe = c.interval
                return
            if any(len(t) < self.SAMPLES for t in c.times.values()):
                return
            median = {n: sorted(t)[len(t) // 2] for n, t in c.times.items()}
            best = min(median, key=median.get)
            if best != c.best:  # a probe won, or the pick got slower than the others were
                c.best, c.interval, c.until_probe = best, self.FIRST_PROBE_INTERVAL, self.FIRST_PROBE_INTERVAL
            elif threads == c.best:
                c.until_probe -= 1
            elif seconds < median[c.best]:
                c.until_probe = 0  # a probe that beat the pick: probe again, its median decides
            else:  # a losing probe: wait longer before the next (it may have cost many steps' time)
                c.interval = min(2 * c.interval, self.MAX_PROBE_INTERVAL)
                c.until_probe = c.interval

    @contextlib.contextmanager
    def step(self, tokens: int):
        """Run a model step of `tokens` tokens with the chosen BLAS threads, timing it."""
        n = self.choose(tokens)
        with blas_threads(n):
            start = time.perf_counter()
            yield n
            self.record(tokens, n, time.perf_counter() - start)

    def summary(self) -> dict[int, int]:
        """The current pick per size class timed so far ({most tokens of the class: threads})."""
        with self._lock:
            return {tokens: c.best for tokens, c in sorted(self._choices.items())
                    if all(len(t) >= self.SAMPLES for t in c.times.values())}


decode_threads = DecodeThreads()  # one per process: the load it measures is the machine's
