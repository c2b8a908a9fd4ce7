"""Every kernels/*.cu compiles, under each define set of its `// zt-variants:` line, for sm_80 and sm_90a with
nvcc, with no register spills (ptxas -v); and with NVRTC, the loader's compiler, where libnvrtc is installed
(the default variant: see test_compiles_with_nvrtc).
The struct layouts the launch checker packs are checked against the compiler's with static_assert.

The default variant is the file itself (it must compile standalone, with kernels/ on the include path for the
shared zt_device.cuh); the others are the text the loader compiles: its prelude of #defines, a #line, then the
file. NOTE: not `nvcc -DT=...`: nvcc's implicit cuda_runtime.h would see the macros, and its templates name
parameters T.

No GPU is needed: nvcc and NVRTC only compile. The nvcc tests skip where nvcc is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from zigtensor.backends import kernel_compile, kernels
from zigtensor.backends.kernel_source import local_includes, parse_signatures, parse_variants, read_source

KERNEL_FILES = sorted(kernels.KERNEL_DIR.glob("*.cu"))
ARCHS = ("sm_80", "sm_90a")
NVCC = shutil.which("nvcc")
WORKERS = min(4, os.cpu_count() or 1)
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")


def nvcc(source: Path, archs: tuple[str, ...], out_dir: str) -> subprocess.CompletedProcess:
    """One nvcc run building a fatbin for every arch (the host-side front end runs once), ptxas -v on."""
    gencode = [f"-gencode=arch=compute_{a[3:]},code={a}" for a in archs]
    cmd = [NVCC, "-fatbin", *gencode, "-std=c++17", f"-I{kernels.KERNEL_DIR}", "-Xptxas", "-v", str(source), "-o",
           os.path.join(out_dir, "k.fatbin")]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=out_dir)


def spills(ptxas_log: str) -> list[str]:
    """'kernel (arch): N bytes spill stores, M bytes spill loads' for every function of the log that spills."""
    found, function = [], "?"
    for line in ptxas_log.splitlines():
        m = re.search(r"Compiling entry function '(\w+)' for '(\w+)'", line)
        if m:
            function = f"{m.group(1)} ({m.group(2)})"
        m = re.search(r"Function properties for (\w+)", line)
        if m and not function.startswith(m.group(1) + " ("):  # a non-inlined device function, not the entry
            function = m.group(1)
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and (int(m.group(1)) or int(m.group(2))):
            found.append(f"{function}: {m.group(0)}")
    return found


def _compile_one(path: Path, variant: dict) -> str | None:
    """None when it compiles without spills, else what went wrong, with nvcc's own words."""
    with tempfile.TemporaryDirectory() as tmp:
        source = path
        if variant:
            source = Path(tmp) / path.name
            source.write_text(read_source(kernels.KERNEL_DIR, path.stem, variant)[0])
        r = nvcc(source, ARCHS, tmp)
    label = f"{path.name} {'+'.join(ARCHS)} {variant or '(defaults)'}"
    if r.returncode:
        return f"{label}: nvcc failed (exit {r.returncode}):\n{(r.stderr + r.stdout).strip()[-3000:]}"
    spilled = spills(r.stderr + r.stdout)
    if spilled:
        return f"{label}: register spills:\n  " + "\n  ".join(spilled)
    if "spill stores" not in r.stderr + r.stdout:
        return f"{label}: ptxas -v printed no resource report:\n{(r.stderr + r.stdout)[-2000:]}"
    return None


@needs_nvcc
@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_every_variant_compiles_without_spills(path):
    with ThreadPoolExecutor(WORKERS) as pool:
        failures = [f for f in pool.map(lambda v: _compile_one(path, v), parse_variants(path.read_text())) if f]
    assert not failures, "\n\n".join(failures)


def test_spill_report_parsing():
    log = ("ptxas info    : Compiling entry function 'good' for 'sm_80'\n"
           "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
           "ptxas info    : Compiling entry function 'bad' for 'sm_80'\n"
           "ptxas info    : Function properties for bad\n"
           "    48 bytes stack frame, 40 bytes spill stores, 36 bytes spill loads\n")
    assert spills(log) == ["bad (sm_80): 40 bytes spill stores, 36 bytes spill loads"]


@needs_nvcc
def test_struct_layouts_match_the_compilers():
    """The launch checker packs structs passed by value from the layout it computes; nvcc must agree."""
    checks = []
    for path in KERNEL_FILES:
        asserts = {}
        for sig in parse_signatures(read_source(kernels.KERNEL_DIR, path.stem)[0]).values():
            for p in sig.params:
                if p.kind == "struct":
                    dt = p.struct_dtype
                    asserts[p.ctype] = [f"static_assert(sizeof({p.ctype}) == {dt.itemsize}, \"sizeof {p.ctype}\");"]
                    asserts[p.ctype] += [f"static_assert(__builtin_offsetof({p.ctype}, {f}) == {dt.fields[f][1]}, "
                                         f"\"offset of {p.ctype}.{f}\");" for f in dt.names]
        if asserts:
            checks.append((path, [line for lines in asserts.values() for line in lines]))
    if not checks:
        pytest.skip("no kernel takes a struct by value")
    for path, lines in checks:
        with tempfile.TemporaryDirectory() as tmp:
            check = Path(tmp) / "layout.cu"
            check.write_text(f'#include "{path}"\n' + "\n".join(lines))
            r = nvcc(check, ("sm_80",), tmp)
        assert r.returncode == 0, f"{path.name}:\n{r.stderr[-3000:]}"


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_compiles_with_nvrtc(path, tmp_path, monkeypatch):
    """The loader compiles with NVRTC, which differs from nvcc in what does not depend on the defines: fewer
    headers, no host functions, no implicit cuda_runtime.h. So the default variant, for sm_90a, suffices
    here; the nvcc test above covers every variant and both archs."""
    try:
        kernel_compile.nvrtc_version()
    except RuntimeError as e:
        pytest.skip(f"NVRTC is not available: {e}")
    monkeypatch.setenv("ZT_KERNEL_CACHE", str(tmp_path))
    binary = kernels.compile_kernel(path.stem, arch=(9, 0))
    assert binary.read_bytes()[:4] == b"\x7fELF"


# ------------------------------------------------------------------------------------------ the shared header
SHARED_HEADER = "zt_device.cuh"


def test_local_includes_follow_the_kernel_directorys_quoted_includes(tmp_path):
    """What the cache key hashes: the quoted includes found in the kernel directory, through one another, once
    each; not <system> headers, quoted ones found elsewhere, or includes inside comments."""
    (tmp_path / "a.cuh").write_text('#pragma once\n#include "b.cuh"\nint a;\n')
    (tmp_path / "b.cuh").write_text('#include "a.cuh"\nint b;\n')
    source = ('#include <cuda_fp16.h>\n#include "a.cuh"\n  #  include "b.cuh"\n#include "cuda_bf16.h"\n'
              '// #include "c.cuh"\n')
    (tmp_path / "c.cuh").write_text("int c;\n")
    assert local_includes(tmp_path, source) == (("a.cuh", '#pragma once\n#include "b.cuh"\nint a;\n'),
                                                ("b.cuh", '#include "a.cuh"\nint b;\n'))
    assert local_includes(tmp_path, "int x;\n") == ()


@pytest.mark.parametrize("header", sorted(p.name for p in kernels.KERNEL_DIR.glob("*.cuh")))
def test_the_shared_headers_define_no_kernel(header):
    """The signature parser reads the .cu file only, so a kernel in a header would be invisible to it."""
    text = (kernels.KERNEL_DIR / header).read_text()
    assert parse_signatures(text) == {}


def test_editing_a_header_changes_the_cache_key(monkeypatch):
    monkeypatch.setattr(kernel_compile, "nvrtc_version", lambda: (13, 0))
    source = read_source(kernels.KERNEL_DIR, "copy")[0]
    includes = local_includes(kernels.KERNEL_DIR, source)
    edited = tuple((name, text + "\n// edited\n") for name, text in includes)
    key = kernel_compile.cache_key(source, ("-I/k",), "-arch=sm_80", includes)
    assert key == kernel_compile.cache_key(source, ("-I/k",), "-arch=sm_80", includes)
    assert key != kernel_compile.cache_key(source, ("-I/k",), "-arch=sm_80", edited)
    assert key != kernel_compile.cache_key(source, ("-I/k",), "-arch=sm_80")


def test_nvrtc_compiles_the_kernel_directorys_header_whatever_the_working_directory(tmp_path, monkeypatch):
    """The header comes from KERNEL_DIR (in memory, as hashed), not from a kernels/ under the working directory,
    which is where NVRTC looks first for a quoted include of a file whose #line says kernels/<family>.cu. An
    edited header gives another binary: the disk cache does not serve the old one."""
    try:
        kernel_compile.nvrtc_version()
    except RuntimeError as e:
        pytest.skip(f"NVRTC is not available: {e}")
    kdir = tmp_path / "kernels"
    kdir.mkdir()
    for f in ("copy.cu", SHARED_HEADER):
        (kdir / f).write_text((kernels.KERNEL_DIR / f).read_text())
    decoy = tmp_path / "cwd" / "kernels"
    decoy.mkdir(parents=True)
    (decoy / SHARED_HEADER).write_text('#error "the header of the working directory"\n')
    monkeypatch.chdir(decoy.parent)
    monkeypatch.setattr(kernels, "KERNEL_DIR", kdir)
    monkeypatch.setenv("ZT_KERNEL_CACHE", str(tmp_path / "cache"))
    first = kernels.compile_kernel("copy", arch=(8, 0))
    assert first.read_bytes()[:4] == b"\x7fELF"
    (kdir / SHARED_HEADER).write_text((kdir / SHARED_HEADER).read_text() + "\n#define ZT_EDITED 1\n")
    second = kernels.compile_kernel("copy", arch=(8, 0))
    assert second != first and second.read_bytes()[:4] == b"\x7fELF"
