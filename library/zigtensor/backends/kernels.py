"""The kernel loader: kernels/<family>.cu read as text, #defines prepended, compiled per device with NVRTC
(cached in memory and on disk), every launch checked against the kernel's signature and the device's limits.

    kernel = load_kernel("copy", "copy_contiguous", {"SRC_T": "float", "DST_T": "__half"})
    kernel(grid, block, (src, dst, n))          # refused with a KernelLaunchError naming the argument if wrong

Where the .cu files are (KERNEL_DIR): $ZT_KERNEL_DIR, else the repository's kernels/ (a source checkout or an
editable install), else the copy a wheel installs under <prefix>/share/zigtensor/kernels. The headers they
share (zt_device.cuh) sit beside them: NVRTC gets -I KERNEL_DIR, and the disk cache key hashes their text.
Pieces: kernel_source.py (text, defines, signatures), kernel_check.py (launch checking, pure),
kernel_compile.py (NVRTC, arch, disk cache). docs/cuda.md explains the whole path.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from .kernel_check import KernelLaunchError, LaunchLimits, LaunchPlan, check_launch
from .kernel_compile import DEFAULT_OPTIONS, KernelCompileError, arch_option, binary_path, include_options
from .kernel_source import (
    KernelSignature,
    KernelSourceError,
    Param,
    ctype_of,
    local_includes,
    normalize_defines,
    parse_signatures,
    parse_variants,
    read_source,
)

__all__ = [
    "KERNEL_DIR", "CheckedKernel", "KernelCompileError", "KernelLaunchError", "KernelSignature", "KernelSourceError",
    "LaunchLimits", "LaunchPlan", "Param", "check_launch", "compile_kernel", "ctype_of", "load_kernel",
    "parse_signatures", "parse_variants", "read_source",
]


def _find_kernel_dir() -> Path:
    env = os.environ.get("ZT_KERNEL_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3] / "kernels"  # library/zigtensor/backends/kernels.py -> repo root
    if repo.is_dir():
        return repo
    try:  # a wheel: pyproject's data-files put them under <prefix>/share/zigtensor/kernels
        from importlib.metadata import distribution

        for f in distribution("zigtensor").files or ():
            if f.name.endswith(".cu") and "share/zigtensor/kernels" in f.as_posix():
                return Path(f.locate()).resolve().parent
    except Exception:  # noqa: BLE001, S110  (not installed as a distribution: the prefix guess below)
        pass
    return Path(sys.prefix) / "share" / "zigtensor" / "kernels"


KERNEL_DIR: Path = _find_kernel_dir()


def _options(options: tuple) -> tuple[str, ...]:
    if not isinstance(options, (tuple, list)) or not all(isinstance(o, str) for o in options):
        raise KernelSourceError(f"options must be a tuple of NVRTC option strings, got {options!r}")
    debug = ("--device-debug",) if os.environ.get("ZT_KERNEL_DEBUG") == "1" else ()
    # NOTE: the kernel directory first, so `#include "zt_device.cuh"` finds this directory's copy
    return (*DEFAULT_OPTIONS, *debug, f"-I{KERNEL_DIR}", *include_options(), *options)


def compile_kernel(family: str, defines: dict | None = None, options: tuple = (), arch: tuple[int, int] = (9, 0),
                   supported_archs: tuple[int, ...] | None = None) -> Path:
    """Compile kernels/<family>.cu for a compute capability (no GPU needed, only NVRTC); the binary's path in
    the disk cache. load_kernel does this for the current device."""
    source, filename = read_source(KERNEL_DIR, family, defines)
    arch_opt, kind = arch_option(*arch, supported_archs)
    return binary_path(source, filename, _options(tuple(options)), arch_opt, kind, local_includes(KERNEL_DIR, source))


_modules: dict[tuple[Path, int], object] = {}  # (binary path, device) -> cupy.RawModule


class CheckedKernel:
    """One kernel of one define set: `kernel(grid, block, args, shared_mem=0, stream=None)` checks the launch
    (kernel_check.check_launch) and runs it on the current device, compiling for that device on first use."""

    def __init__(self, family: str, name: str, defines: tuple, options: tuple, signature: KernelSignature,
                 source: str, filename: str, cupy_module, includes: tuple[tuple[str, str], ...] = ()):
        self.family, self.name, self.signature = family, name, signature
        self._defines, self._options, self._source, self._filename = defines, options, source, filename
        self._includes = includes  # (name, text) of the headers the source includes: part of the cache key
        self._per_device: dict[int, tuple[object, LaunchLimits]] = {}
        self._cp = cupy_module
        self._optin: dict[int, int] = {}

    def _function(self, device: int):
        """(CuPy RawKernel, limits) for a device: compiled (or read from the disk cache) on first use."""
        entry = self._per_device.get(device)
        if entry is None:
            from .. import cuda

            cp = cuda.require_cupy()
            props = cuda.get_device_properties(device)
            from cupy.cuda import nvrtc

            arch_opt, kind = arch_option(props.major, props.minor, tuple(nvrtc.getSupportedArchs()))
            path = binary_path(self._source, self._filename, self._options, arch_opt, kind, self._includes)
            with cp.cuda.Device(device):
                module = _modules.get((path, device))
                if module is None:  # one module per (family, defines, options, device): its kernels share it
                    module = _modules[(path, device)] = cp.RawModule(path=str(path))
                fn = module.get_function(self.name)
                limits = dataclasses.replace(props.launch_limits(),
                                             kernel_max_threads_per_block=fn.max_threads_per_block,
                                             kernel_static_shared_mem=fn.shared_size_bytes)
            entry = self._per_device[device] = (fn, limits)
        return entry

    def __call__(self, grid, block, args, shared_mem: int = 0, stream=None) -> None:
        device = self._cp.cuda.runtime.getDevice()
        fn, limits = self._function(device)
        plan = check_launch(self.signature, grid, block, args, shared_mem, limits, device)
        if plan.optin_shared_mem > self._optin.get(device, 0):
            fn.max_dynamic_shared_size_bytes = plan.optin_shared_mem  # NOTE: beyond 48 KiB needs the opt-in
            self._optin[device] = plan.optin_shared_mem
        if stream is None:
            fn(plan.grid, plan.block, plan.args, shared_mem=plan.shared_mem)
        else:
            with getattr(stream, "cupy_stream", stream):
                fn(plan.grid, plan.block, plan.args, shared_mem=plan.shared_mem)

    def __repr__(self) -> str:
        defines = ", ".join(f"{k}={v}" for k, v in self._defines)
        return f"CheckedKernel({self.family}.cu: {self.signature!r}{' with ' + defines if defines else ''})"


_loaded: dict[tuple, CheckedKernel] = {}


def load_kernel(family: str, name: str, defines: dict | None = None, options: tuple = ()) -> CheckedKernel:
    """The kernel `name` of kernels/<family>.cu compiled with `defines` (prepended as #define) and NVRTC
    `options`, for the current device. Cached per (family, name, defines, options) in this process and per
    device inside; binaries are cached on disk (kernel_compile.py)."""
    key = (family, name, normalize_defines(defines), tuple(options))
    kernel = _loaded.get(key)
    if kernel is None:
        from .. import cuda

        cp = cuda.require_cupy()
        source, filename = read_source(KERNEL_DIR, family, defines)
        signatures = parse_signatures(source)
        if name not in signatures:
            raise KernelSourceError(f'{filename} has no extern "C" __global__ kernel {name!r}; it has '
                                    f"{sorted(signatures)}")
        kernel = CheckedKernel(family, name, key[2], _options(tuple(options)), signatures[name], source, filename, cp,
                               local_includes(KERNEL_DIR, source))
        kernel._function(cuda.current_device())  # compile errors surface here, where the launcher asks
        _loaded[key] = kernel
    return kernel
