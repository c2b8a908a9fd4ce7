"""The worker threads of CPUBackend.parallel: one chunk of a region each, the caller's thread running the first.

    pool = WorkerPool(3)                       # 3 workers + the calling thread: 4 chunks at once
    pool.run(fn, [(0, 25), (25, 50), (50, 75), (75, 100)])   # fn(0, 25) here, the rest on the workers

Why not concurrent.futures: a region hands each worker one chunk and waits for all, so a worker is two locks
(go, done), not a queue, a future and a condition per chunk.

Why workers are placed on CPUs: a woken worker is often put on the CPU of the thread that woke it (the
scheduler's wake-affine choice), which is busy running the caller's own chunk, and waits there for a time slice:
measured on the 2-core VM, a worker started its chunk 0.9-1.7 ms (median) after the region began, a third of a
4.5 ms GEMM chunk, against 0.08-0.1 ms when the two threads were on different cores. So before each region,
when the calling thread's CPU has changed, every worker gets its own CPU of the process's set other than the
caller's (Linux; os.sched_setaffinity per thread id). The caller itself is never pinned. ZT_PIN_THREADS=0
turns the placement off.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading

POOL_PREFIX = "zigtensor-cpu"  # the workers' thread names (CPUBackend.parallel runs nested regions inline there)


class WorkerPool:
    def __init__(self, workers: int):
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"WorkerPool: expected a positive number of workers, got {workers!r}")
        self._busy = threading.Lock()  # one region at a time; a second caller runs its region inline
        self._workers = []
        self._cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.grow(workers)

    @property
    def size(self) -> int:
        return len(self._workers)

    def grow(self, workers: int) -> None:
        """Start workers until there are `workers` (ZT_NUM_THREADS raised after the first region)."""
        with self._busy:
            while len(self._workers) < workers:
                self._workers.append(_Worker(len(self._workers)))
            self._placed_for = None  # the caller CPU the workers were last placed around
            # NOTE: one CPU each, beside the caller's: only while there are enough of them
            self._place = (os.environ.get("ZT_PIN_THREADS", "1") != "0" and _sched_getcpu is not None
                           and len(self._cpus) > len(self._workers))

    def run(self, fn, chunks: list[tuple[int, int]]) -> None:
        """fn(*chunks[0]) on this thread and fn(*chunks[k]) on worker k - 1, returning when all are done and
        raising the first chunk's exception (this thread's first). At most size + 1 chunks."""
        if len(chunks) > len(self._workers) + 1:
            raise ValueError(f"WorkerPool.run: {len(chunks)} chunks for {len(self._workers)} workers and the "
                             "calling thread; expected at most one chunk each")
        if not self._busy.acquire(blocking=False):  # another thread's region is running: do this one here
            for c in chunks:
                fn(*c)
            return
        try:
            if self._place:
                self._place_workers()
            started = [w.start(fn, c) for w, c in zip(self._workers, chunks[1:])]
            try:
                fn(*chunks[0])
            finally:
                errors = [w.wait() for w in started]
            for e in errors:
                if e is not None:
                    raise e
        finally:
            self._busy.release()

    def _place_workers(self) -> None:
        cpu = _sched_getcpu()
        if cpu == self._placed_for:
            return
        others = [c for c in self._cpus if c != cpu]
        for w, c in zip(self._workers, others):
            w.place(c)
        self._placed_for = cpu


class _Worker:
    def __init__(self, index: int):
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._task = None
        self._error = None
        self._ready = threading.Event()
        self.tid = None
        self._thread = threading.Thread(target=self._loop, name=f"{POOL_PREFIX}-{index}", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _loop(self) -> None:
        self.tid = threading.get_native_id()
        self._ready.set()
        while True:
            self._go.acquire()
            fn, chunk = self._task
            try:
                fn(*chunk)
            except BaseException as e:  # noqa: BLE001  (handed to the caller, which raises it)
                self._error = e
            self._task = None
            self._done.release()

    def start(self, fn, chunk) -> _Worker:
        self._task, self._error = (fn, chunk), None
        self._go.release()
        return self

    def wait(self):
        """Block until the chunk is done; its exception or None."""
        self._done.acquire()
        return self._error

    def place(self, cpu: int) -> None:
        with contextlib.suppress(OSError):  # not permitted here (a container's policy): only a speed-up
            os.sched_setaffinity(self.tid, {cpu})


def _load_sched_getcpu():
    """glibc's sched_getcpu (the CPU this thread runs on), or None where there is none."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_int, []
    return fn if fn() >= 0 else None


_sched_getcpu = _load_sched_getcpu() if hasattr(os, "sched_setaffinity") else None
