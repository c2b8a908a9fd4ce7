"""Compiling kernel sources with NVRTC into device binaries, cached on disk.

NOTE: we call NVRTC ourselves (through CuPy's binding) and hand the binary to `cupy.RawModule(path=...)`
instead of `RawModule(code=...)`, because CuPy's own compile appends `-arch=sm_90` (never `sm_90a`, so
wgmma and setmaxnreg cannot compile) and `-ftz=true` (flushes denormals, unlike the CPU backend), and its
messages do not name our file. Nothing here needs a GPU: only NVRTC (libnvrtc) and the CUDA headers.

The disk cache: one file per binary under ~/.cache/zigtensor/kernels (ZT_KERNEL_CACHE moves it; "off"
disables it: a temporary directory per process), named by the SHA-256 of everything that shapes the binary:
the full source with its prelude, the text of the kernel directory's headers it includes (zt_device.cuh: an
edited header recompiles every kernel), the options (include dirs among them), the target arch and NVRTC's
version. A second process computes the same name and loads the file without compiling; writes go to a
temporary file first and are renamed into place (atomic on POSIX), so processes compiling the same kernel
at once never read half a file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

CACHE_FORMAT = "zt-kernel-cache-1"  # bump when the layout of the cache or of the options changes
# NOTE: --device-as-default-execution-space makes unannotated functions (a constexpr helper) device functions,
# as nvcc lets device code call them and as cupy.RawModule compiles; without it NVRTC refuses them.
DEFAULT_OPTIONS = ("--std=c++17", "-lineinfo", "--device-as-default-execution-space")


class KernelCompileError(RuntimeError):
    """NVRTC refused a kernel source. `file`, `line` and `message` are those of the first error."""

    def __init__(self, file: str, line: int | None, message: str, log: str, options: tuple):
        self.file, self.line, self.message, self.log, self.options = file, line, message, log, options
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}\n--- NVRTC log (options {' '.join(options)}) ---\n{log.strip()}")


def _nvrtc():
    try:
        from cupy.cuda import nvrtc
    except ImportError as e:
        raise RuntimeError(f"compiling CUDA kernels needs CuPy ({e}); install it with: pip install zigtensor[cuda]") \
            from None
    return nvrtc


def nvrtc_version() -> tuple[int, int]:
    """NVRTC's version; RuntimeError (one line) when CuPy or libnvrtc is missing."""
    try:
        return tuple(_nvrtc().getVersion())
    except RuntimeError:
        raise
    except Exception as e:  # noqa: BLE001  (a missing libnvrtc surfaces as one of several loader errors)
        raise RuntimeError(f"NVRTC (libnvrtc) cannot be loaded: {str(e).splitlines()[0]}; install it with: "
                           "pip install zigtensor[cuda]") from None


def arch_option(major: int, minor: int, supported: tuple[int, ...] | None = None) -> tuple[str, str]:
    """(-arch option, binary kind) for a compute capability: cubin for sm_XY, with the arch-specific 'a'
    features on Hopper (sm_90a: wgmma, setmaxnreg). When NVRTC does not know the device (a GPU newer than the
    compiler), PTX for the newest arch it knows, which the driver compiles at load."""
    cc = major * 10 + minor
    if supported is None or cc in supported:
        return f"-arch=sm_{cc}{'a' if major == 9 else ''}", "cubin"
    older = [a for a in supported if a <= cc]
    if not older:
        raise RuntimeError(f"NVRTC cannot compile for compute capability {major}.{minor}; it supports "
                           f"{sorted(supported)}")
    return f"-arch=compute_{max(older)}", "ptx"


def include_options() -> tuple[str, ...]:
    """-I for the CUDA headers (cuda_fp16.h, cuda_bf16.h, mma.h) and CCCL's cuda/std, which NVRTC lacks."""
    dirs: list[Path] = []
    try:
        from cuda.pathfinder import find_nvidia_header_directory

        found = find_nvidia_header_directory("cudart")
        if found:
            dirs.append(Path(found))
    except Exception:  # noqa: BLE001, S110  (an old cuda-pathfinder: the fallbacks below)
        pass
    for root in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and (Path(root) / "include" / "cuda_fp16.h").is_file():
            dirs.append(Path(root) / "include")
    dirs = list(dict.fromkeys(d.resolve() for d in dirs))
    cccl = [d / "cccl" for d in dirs if (d / "cccl" / "cuda" / "std").is_dir()]
    if not cccl:
        try:
            import cupy

            bundled = Path(cupy.__file__).parent / "_core" / "include" / "cupy" / "_cccl" / "libcudacxx"
            cccl = [bundled] if bundled.is_dir() else []
        except ImportError:
            pass
    return tuple(f"-I{d}" for d in dirs + cccl)


def cache_dir() -> Path | None:
    setting = os.environ.get("ZT_KERNEL_CACHE")
    if setting is not None and setting.lower() in ("off", "0", "none", ""):
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zigtensor" / "kernels"


_ERROR_LINE = re.compile(r"^(?P<file>[^\n]+?)\((?P<line>\d+)\): (?:catastrophic )?error(?: #[\w-]+)?: (?P<msg>.*)$",
                         re.MULTILINE)


def _first_error(log: str, filename: str) -> tuple[str, int | None, str]:
    m = _ERROR_LINE.search(log)
    if m is None:
        lines = [s for s in log.strip().splitlines() if s.strip()]
        return filename, None, lines[0] if lines else "compilation failed with an empty log"
    return m.group("file"), int(m.group("line")), m.group("msg").strip()


def compile_source(source: str, filename: str, options: tuple[str, ...], arch: str, kind: str,
                   includes: tuple[tuple[str, str], ...] = ()) -> bytes:
    """NVRTC: source -> cubin or PTX bytes; KernelCompileError with the file, line and message on failure.

    `includes`: (name, text) of the kernel directory's headers, handed to NVRTC in memory (they take precedence
    over its include path). NOTE: so the text compiled is the text the cache key hashed: NVRTC would otherwise
    look for a quoted include first beside the file that the `#line` names, kernels/<family>.cu relative to the
    working directory, which can be another checkout's kernels/ than KERNEL_DIR."""
    nvrtc = _nvrtc()
    nvrtc_version()  # a missing libnvrtc as a one-line RuntimeError before any program is made
    all_options = (*options, arch)
    prog = nvrtc.createProgram(source, filename, tuple(text.encode() for _, text in includes),
                               tuple(name.encode() for name, _ in includes))
    try:
        try:
            nvrtc.compileProgram(prog, all_options)
        except nvrtc.NVRTCError:
            log = nvrtc.getProgramLog(prog)
            raise KernelCompileError(*_first_error(log, filename), log, all_options) from None
        return nvrtc.getCUBIN(prog) if kind == "cubin" else nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)


def cache_key(source: str, options: tuple[str, ...], arch: str, includes: tuple[tuple[str, str], ...] = ()) -> str:
    """SHA-256 of what shapes the binary; `includes`: (name, text) of the headers the source includes."""
    h = hashlib.sha256()
    headers = [part for name_text in includes for part in name_text]
    for part in (CACHE_FORMAT, repr(nvrtc_version()), arch, "\0".join(options), source, *headers):
        h.update(part.encode())
        h.update(b"\0\0")
    return h.hexdigest()


_session_dir: Path | None = None


def binary_path(source: str, filename: str, options: tuple[str, ...], arch: str, kind: str,
                includes: tuple[tuple[str, str], ...] = ()) -> Path:
    """The file holding the binary for this source and options (what `cupy.RawModule(path=...)` loads): from
    the disk cache when an earlier process made it, else compiled now and stored there. With the cache off,
    a temporary directory of this process holds it. `includes`: (name, text) of the kernel directory's headers
    the source includes (kernel_source.local_includes): hashed into the key and compiled from memory."""
    global _session_dir
    directory = cache_dir()
    if directory is None:
        if _session_dir is None:
            _session_dir = Path(tempfile.mkdtemp(prefix="zigtensor-kernels-"))
        directory = _session_dir
    path = directory / f"{cache_key(source, options, arch, includes)}.{kind}"
    if path.is_file():
        return path
    binary = compile_source(source, filename, options, arch, kind, includes)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".tmp-", delete=False) as f:
            f.write(binary)
        os.replace(f.name, path)
    except OSError as e:
        raise RuntimeError(f"cannot write the compiled kernel to {path}: {e}; set ZT_KERNEL_CACHE to a writable "
                           "directory (or 'off')") from None
    return path
