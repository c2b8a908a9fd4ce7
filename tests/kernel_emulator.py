"""Run kernels/*.cu on the CPU, so their index math and launchers are tested on machines without a GPU.

A .cu file is compiled with g++ after kernel_emulator.h (CUDA threads as cooperative fibers, blocks one
after another, warp shuffles through per-warp slots) into a shared library, cached on disk by content hash
(of the file, the headers of kernels/ it includes, such as zt_device.cuh, and kernel_emulator.h).
`load_kernel` has the loader's signature (zigtensor.backends.kernels.load_kernel) and returns a callable
taking (grid, block, args, shared_mem=0, stream=None) with NumPy arrays in place of CuPy ones; tests
install it into the launchers (zigtensor.backends.cuda_kernels._launch.loader) to run them end to end.

Each launch checks what the real loader checks (argument count, pointer dtypes, contiguity) and more:
every array is copied between guard bytes, and a launch that writes outside an array, writes to an array
passed as `const`, deadlocks at a barrier, faults (a wild address, integer division by zero), or does what
UBSan catches (a misaligned vector access, an index past a register or shared array, signed overflow in
index math) raises EmulatorError naming the kernel. The guards read as NaN, so out-of-bounds reads of floats
show up as NaN results. Blocks run one after another: keep test grids small.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from zigtensor.backends.kernel_check import LaunchLimits, check_launch
from zigtensor.backends.kernel_source import local_includes, normalize_defines, parse_signatures, read_source

KERNEL_DIR = Path(__file__).resolve().parents[1] / "kernels"
HEADER = Path(__file__).resolve().with_name("kernel_emulator.h")
CACHE_DIR = Path(os.environ.get("ZT_EMULATOR_CACHE", Path(tempfile.gettempdir()) / "zt-kernel-emulator"))
GUARD = 16384  # bytes before and after every array (a multiple of 256: arrays stay aligned like cudaMalloc)


class EmulatorError(RuntimeError):
    pass


def cuda_include_dir() -> Path | None:
    """The CUDA toolkit's include folder (for cuda_fp16.h and friends), or None."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parents[1]))
    for c in candidates:
        if c and (Path(c) / "include" / "cuda_fp16.h").is_file():
            return Path(c) / "include"
    return None


def available() -> str | None:
    """None when the emulator can run here, else why not."""
    if shutil.which("g++") is None:
        return "g++ is not installed"
    if cuda_include_dir() is None:
        return "the CUDA headers (cuda_fp16.h) are not installed"
    return None


# ------------------------------------------------------------------------------------------ build
_DYNAMIC_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([\w ]+?)\s+(\w+)\s*\[\s*\]\s*;")


def _emulated_source(source: str, kernels: dict) -> str:
    """The loader's source (prelude of defines + the file) for g++: dynamic shared memory rewritten, and one
    `emu_<kernel>` entry point per kernel."""
    body = _DYNAMIC_SHARED.sub(lambda m: f"{m.group(1)}* {m.group(2)} = reinterpret_cast<{m.group(1)}*>"
                                         f"(emu::dynamic_shared());", source)
    wrappers = "".join(
        f'extern "C" int emu_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,'
        f" unsigned long long shm, void** args, char* err, unsigned long long err_len) {{\n"
        f"    return emu::launch({name}, make_uint3(gx, gy, gz), make_uint3(bx, by, bz), shm, args, err, err_len);\n"
        f"}}\n" for name in kernels)
    return f'#include "kernel_emulator.h"\n{body}\n{wrappers}'


_libraries: dict = {}
# NOTE: UBSan flags what a GPU would fault on or silently get wrong and a CPU tolerates: misaligned vector
# accesses, out-of-bounds indexing of fixed-size (register, shared) arrays, signed overflow in index math.
_SANITIZE = "-fsanitize=alignment,bounds,signed-integer-overflow,shift-exponent,vla-bound"
_FLAGS = ["-std=c++20", "-O1", "-fPIC", "-w", _SANITIZE]


def _precompiled_header_dir() -> Path | None:
    """A folder holding kernel_emulator.h precompiled (g++ finds the .gch first on the include path): halves
    each build. None when it cannot be made (builds then parse the header themselves)."""
    text = HEADER.read_text()
    folder = CACHE_DIR / f"pch-{hashlib.sha256((text + ' '.join(_FLAGS)).encode()).hexdigest()[:16]}"
    if (folder / "kernel_emulator.h.gch").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel_emulator.h").write_text(text)
    tmp = folder / f"kernel_emulator.h.gch.{os.getpid()}"
    proc = subprocess.run(["g++", *_FLAGS, f"-I{cuda_include_dir()}", "-x", "c++-header",
                           str(folder / "kernel_emulator.h"), "-o", str(tmp)], capture_output=True, text=True)
    if proc.returncode:
        return None
    os.replace(tmp, folder / "kernel_emulator.h.gch")
    return folder


def build(family: str, defines: dict | None = None):
    """(ctypes library, signatures) of kernels/<family>.cu compiled for the emulator with these defines."""
    key = (str(KERNEL_DIR), family, normalize_defines(defines))
    if key in _libraries:
        return _libraries[key]
    why = available()
    if why:
        raise EmulatorError(f"the kernel emulator cannot run: {why}")
    source, _ = read_source(KERNEL_DIR, family, defines)
    kernels = parse_signatures(source)
    text = _emulated_source(source, kernels)
    headers = "".join(name + "\0" + body for name, body in local_includes(KERNEL_DIR, source))
    digest = hashlib.sha256((text + headers + HEADER.read_text() + " ".join(_FLAGS)).encode()).hexdigest()[:20]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    lib_path = CACHE_DIR / f"{family}-{digest}.so"
    if not lib_path.exists():
        src_path = CACHE_DIR / f"{family}-{digest}.cpp"
        src_path.write_text(text)
        tmp = lib_path.with_suffix(f".{os.getpid()}.tmp")
        pch = _precompiled_header_dir()
        # NOTE: the source is written to the cache folder, so kernels/ reaches `#include "zt_device.cuh"`
        # through -I only
        cmd = ["g++", *_FLAGS, "-shared", *([f"-I{pch}"] if pch else []), f"-I{HEADER.parent}", f"-I{KERNEL_DIR}",
               f"-I{cuda_include_dir()}", str(src_path), "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise EmulatorError(f"g++ could not compile kernels/{family}.cu for the emulator with {key[2]}:\n"
                                f"{proc.stderr[-4000:]}")
        os.replace(tmp, lib_path)
    lib = ctypes.CDLL(str(lib_path))
    _libraries[key] = (lib, kernels)
    return lib, kernels


def _call_capturing_stderr(fn, *args) -> tuple[int, str]:
    """fn(*args) with file descriptor 2 sent to a temporary file: (its result, what it wrote there). UBSan
    reports there, and its runtime reads no setting we could still change once the process runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            rc = fn(*args)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return rc, tmp.read().decode(errors="replace")


# ------------------------------------------------------------------------------------------ launch
class _Guarded:
    """A copy of an array between guard bytes, at a 256-byte aligned address.

    The guard pattern reads as NaN in every aligned float32, float64 and every other float16/bfloat16, so
    out-of-bounds reads poison results; its first byte differs per argument, so a kernel that copies one
    array's guard into another's (an overrun on both sides of a copy) still changes the guard it writes.
    """

    def __init__(self, arr: np.ndarray, index: int):
        self.arr = arr
        self.nbytes = arr.nbytes
        k = (0x11 * (index + 1)) & 0xFF
        pattern = np.array([k, 0x5A, 0xC3, 0xFF, k, 0x5A, 0xF3, 0xFF], dtype=np.uint8)
        size = self.nbytes + 2 * GUARD + 256
        self.raw = np.tile(pattern, size // 8 + 1)[:size + 8]
        self.start = (-self.raw.ctypes.data) % 256 + GUARD
        self.expected_guards = self._guards().copy()
        if self.nbytes:
            self.interior()[:] = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        self.before = self.interior().copy()
        self.ptr = self.raw.ctypes.data + self.start

    def _guards(self) -> np.ndarray:
        end = self.start + self.nbytes
        return np.concatenate([self.raw[self.start - GUARD:self.start], self.raw[end:end + GUARD]])

    def guards_intact(self) -> bool:
        return bool(np.array_equal(self._guards(), self.expected_guards))

    def interior(self) -> np.ndarray:
        return self.raw[self.start:self.start + self.nbytes]


class _DeviceView:
    """A NumPy array dressed as a CUDA array on device 0, for the loader's launch checker."""

    def __init__(self, arr: np.ndarray):
        self.array, self.dtype, self.flags = arr, arr.dtype, arr.flags
        self.shape, self.strides, self.device = arr.shape, arr.strides, 0
        self.data = SimpleNamespace(ptr=arr.ctypes.data)


class EmulatedKernel:
    def __init__(self, family: str, name: str, defines: dict, fn, signature):
        self.family, self.name, self.defines, self.fn, self.signature = family, name, defines, fn, signature

    def __repr__(self):
        return f"EmulatedKernel({self.family}.cu: {self.signature!r} with {self.defines})"

    def __call__(self, grid, block, args, shared_mem: int = 0, stream=None):
        views = tuple(_DeviceView(a) if isinstance(a, np.ndarray) else a for a in args) \
            if isinstance(args, (tuple, list)) else args
        plan = check_launch(self.signature, grid, block, views, shared_mem, LaunchLimits(), 0)
        holders, guarded = [], []
        for i, (p, v) in enumerate(zip(self.signature.params, plan.args)):
            if isinstance(v, _DeviceView):
                if not v.array.flags.c_contiguous:
                    raise EmulatorError(f"{self.name}: the emulator passes arrays as their C-contiguous buffer; "
                                        f"argument {p.name!r} is a strided view")
                g = _Guarded(v.array, i)
                guarded.append((p, g))
                holders.append(ctypes.c_void_p(g.ptr))
            else:  # a scalar, NULL (uint64 0) or a packed struct, already of the kernel's exact type
                holders.append(ctypes.create_string_buffer(np.asarray(v).tobytes()))
        argv = (ctypes.c_void_p * max(1, len(holders)))()
        for i, h in enumerate(holders):
            argv[i] = ctypes.cast(ctypes.pointer(h), ctypes.c_void_p) if isinstance(h, ctypes.c_void_p) \
                else ctypes.cast(h, ctypes.c_void_p)
        err = ctypes.create_string_buffer(1024)
        rc, reports = _call_capturing_stderr(
            self.fn, *[ctypes.c_uint(d) for d in plan.grid + plan.block], ctypes.c_ulonglong(plan.shared_mem), argv,
            err, ctypes.c_ulonglong(len(err)))
        if rc:
            raise EmulatorError(f"{self.name} grid {plan.grid} block {plan.block}: {err.value.decode()}\n{reports}")
        if reports:
            raise EmulatorError(f"{self.name} grid {plan.grid} block {plan.block}: undefined behaviour:\n"
                                f"{reports[-3000:]}")
        for p, g in guarded:
            if not g.guards_intact():
                raise EmulatorError(f"{self.name}: wrote outside argument {p.name!r} "
                                    f"({g.arr.shape} {g.arr.dtype})")
            if p.const:
                if not np.array_equal(g.interior(), g.before):
                    raise EmulatorError(f"{self.name}: wrote to argument {p.name!r}, which is const")
            elif g.nbytes:
                g.arr.reshape(-1).view(np.uint8)[:] = g.interior()


def load_kernel(family: str, name: str, defines: dict | None = None, options: tuple = ()) -> EmulatedKernel:
    """The emulator's stand-in for zigtensor.backends.kernels.load_kernel."""
    lib, kernels = build(family, defines)
    if name not in kernels:
        raise EmulatorError(f"kernels/{family}.cu has no kernel {name!r}; it has {sorted(kernels)}")
    fn = getattr(lib, f"emu_{name}")
    fn.restype = ctypes.c_int
    return EmulatedKernel(family, name, dict(defines or {}), fn, kernels[name])
