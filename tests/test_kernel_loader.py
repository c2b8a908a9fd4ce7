"""The kernel loader without a GPU: signatures of every kernels/*.cu, launch checking with stand-in arrays,
NVRTC compiles and the disk cache (where libnvrtc is installed), and zt.cuda's answers on a machine with no
device."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import pytest

import zigtensor as zt
from zigtensor.backends import kernel_compile, kernels
from zigtensor.backends.kernel_check import KernelLaunchError, LaunchLimits, check_launch
from zigtensor.backends.kernel_source import (
    CTYPE_DTYPES,
    KernelSourceError,
    parse_signatures,
    parse_variants,
    read_source,
)

KERNEL_FILES = sorted(kernels.KERNEL_DIR.glob("*.cu"))


# ------------------------------------------------------------------------------------------ signatures
def test_kernel_dir_is_the_repository_kernels():
    assert Path(__file__).resolve().parents[1] / "kernels" == kernels.KERNEL_DIR
    assert KERNEL_FILES, "kernels/ has no .cu file"


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_every_kernel_file_parses_under_every_variant(path):
    text = path.read_text()
    for variant in parse_variants(text):
        source, filename = read_source(kernels.KERNEL_DIR, path.stem, variant)
        assert filename == f"kernels/{path.name}"
        sigs = parse_signatures(source)
        assert sigs, f"{path.name} with {variant}: no extern \"C\" __global__ kernel"
        for sig in sigs.values():
            assert 1 <= sig.line <= text.count("\n") + 1
            assert "__global__" in text.splitlines()[sig.line - 1]  # the line of the declaration
            for p in sig.params:
                assert p.kind in ("pointer", "pointer_table", "scalar", "struct"), (sig, p)
                if p.kind == "struct":
                    assert p.struct_dtype is not None and p.struct_dtype.itemsize > 0
                elif p.kind == "scalar":
                    assert p.dtype in CTYPE_DTYPES.values() and p.dtype is not None


def test_signature_types_follow_defines_over_file_defaults():
    src = ('#ifndef T\n#define T float\n#endif\n#define OUT_T T\n'
           'extern "C" __global__ void k(OUT_T* y, const T* x, long long n) {}\n')
    (sig,) = parse_signatures(src).values()
    assert [(p.name, p.dtype, p.const) for p in sig.params] == [("y", "float32", False), ("x", "float32", True),
                                                                ("n", "int64", False)]
    (sig,) = parse_signatures(src, {"T": "__nv_bfloat16"}).values()
    assert [p.dtype for p in sig.params] == ["bfloat16", "bfloat16", "int64"]
    assert repr(sig) == "k(__nv_bfloat16* y, const __nv_bfloat16* x, long long n)"


def test_signature_forms_and_markers():
    src = """
    // extern "C" __global__ void commented_out(float* x) {}
    /* extern "C" __global__ void also_commented(int* x) {} */
    extern "C" {
    __global__ void __launch_bounds__(256, 2) a(ZT_STRIDED const float* __restrict__ x, ZT_NULLABLE int* m,
                                                float const* const* table, double** outs, bool flag) {}
    }
    extern "C" __global__ __launch_bounds__(128) void b(void) {}
    __global__ void not_extern_c(float* x) {}
    extern "C" __global__ void c(unsigned long long seed, unsigned int u, signed char s, float* y) {}
    """
    sigs = parse_signatures(src)
    assert sorted(sigs) == ["a", "b", "c"]
    x, m, table, outs, flag = sigs["a"].params
    assert (x.kind, x.strided, x.const, x.nullable) == ("pointer", True, True, False)
    assert (m.kind, m.nullable, m.const) == ("pointer", True, False)
    assert (table.kind, table.dtype, table.const) == ("pointer_table", "float32", True)
    assert (outs.kind, outs.const) == ("pointer_table", False)
    assert (flag.kind, flag.dtype) == ("scalar", "bool")
    assert sigs["b"].params == ()
    assert [p.dtype for p in sigs["c"].params] == ["uint64", "uint32", "int8", "float32"]


def test_struct_layout_matches_the_c_compilers():
    src = """
    #define N 3
    struct __align__(16) Lay { int ndim; long long shape[N]; __half h; double d; unsigned char tail[2 * N]; };
    typedef struct { float a, b; bool c; } Small;
    extern "C" __global__ void k(Lay lay, Small s) {}
    """
    lay, small = parse_signatures(src)["k"].params

    class CLay(ctypes.Structure):
        _fields_ = [("ndim", ctypes.c_int), ("shape", ctypes.c_longlong * 3), ("h", ctypes.c_uint16),
                    ("d", ctypes.c_double), ("tail", ctypes.c_ubyte * 6)]

    class CSmall(ctypes.Structure):
        _fields_ = [("a", ctypes.c_float), ("b", ctypes.c_float), ("c", ctypes.c_bool)]

    for param, ref, align in ((lay, CLay, 16), (small, CSmall, 1)):
        dt = param.struct_dtype
        assert list(dt.names) == [f[0] for f in ref._fields_]
        assert [dt.fields[f][1] for f in dt.names] == [getattr(ref, f).offset for f in dt.names]
        assert dt.itemsize == -(-ctypes.sizeof(ref) // align) * align


def test_unknown_types_and_bad_defines_are_refused():
    with pytest.raises(KernelSourceError, match=r"kernel k .*parameter 'my_t x'.*type 'my_t'"):
        parse_signatures('extern "C" __global__ void k(my_t x) {}')
    with pytest.raises(KernelSourceError, match="references"):
        parse_signatures('extern "C" __global__ void k(float& x) {}')
    with pytest.raises(KernelSourceError, match="define name"):
        read_source(kernels.KERNEL_DIR, "copy", {"bad name": 1})
    with pytest.raises(KernelSourceError, match="one-line string"):
        read_source(kernels.KERNEL_DIR, "copy", {"T": "float\n#include <x>"})
    with pytest.raises(KernelSourceError, match=r"no kernel file .*nope\.cu.*known families: \[.*'copy'"):
        read_source(kernels.KERNEL_DIR, "nope")


def test_prelude_defines_and_line_directive():
    source, filename = read_source(kernels.KERNEL_DIR, "copy", {"SRC_T": "__half", "FLAG": True, "N": 4})
    head = source.split('#line 1 "kernels/copy.cu"\n')[0].splitlines()
    assert head == ["#define ZT_STRIDED", "#define ZT_NULLABLE", "#define FLAG 1", "#define N 4",
                    "#define SRC_T __half"]
    assert source.endswith((kernels.KERNEL_DIR / "copy.cu").read_text())


def test_variant_lines():
    assert parse_variants("// zt-variants: | T=float,BLOCK=128 | T=long long\n") == [
        {}, {"T": "float", "BLOCK": "128"}, {"T": "long long"}]
    assert parse_variants("no header\n") == [{}]


# ------------------------------------------------------------------------------------------ launch checks
class StandIn:
    """A NumPy array dressed as a CuPy one: dtype, flags, shape, strides, data.ptr, device."""

    def __init__(self, arr: np.ndarray, device: int = 0):
        self.arr, self.dtype, self.flags = arr, arr.dtype, arr.flags
        self.shape, self.strides = arr.shape, arr.strides
        self.data = SimpleNamespace(ptr=arr.ctypes.data)
        self.device = SimpleNamespace(id=device) if isinstance(device, int) else device


SRC = """
struct Lay { long long shape[4]; int ndim; };
extern "C" __global__ void saxpy(float* y, const float* x, float a, int n) {}
extern "C" __global__ void gather(ZT_STRIDED float* out, ZT_NULLABLE const long long* idx, Lay lay, bool flag,
                                  __nv_bfloat16 s, unsigned char u) {}
"""
SIGS = parse_signatures(SRC)
H100 = LaunchLimits(device=0, max_threads_per_block=1024, max_block_dims=(1024, 1024, 64),
                    max_grid_dims=(2**31 - 1, 65535, 65535), max_shared_mem_per_block=48 * 1024,
                    max_shared_mem_per_block_optin=227 * 1024, kernel_max_threads_per_block=1024)


def f32(*shape):
    return StandIn(np.zeros(shape, dtype=np.float32))


def launch(name, args, grid=4, block=256, shared_mem=0, limits=H100, device=0):
    return check_launch(SIGS[name], grid, block, args, shared_mem, limits, device)


def test_a_good_launch_converts_scalars_to_the_kernels_types():
    y, x = f32(8), f32(8)
    plan = launch("saxpy", (y, x, 2, 8), grid=(2, 1), block=(4,))
    assert plan.grid == (2, 1, 1) and plan.block == (4, 1, 1) and plan.optin_shared_mem == 0
    assert plan.args[0] is y and plan.args[1] is x
    assert type(plan.args[2]) is np.float32 and type(plan.args[3]) is np.int32


@pytest.mark.parametrize("args, pattern", [
    ((f32(8), f32(8), 1.0), r"kernel saxpy: expected 4 arguments, got 3; signature: saxpy\(float\* y, "),
    ((StandIn(np.zeros(8, np.float16)), f32(8), 1.0, 8),
     r"kernel saxpy, args\[0\] 'y' \(float\* y\): expected a float32 array, got a float16 array"),
    ((f32(8), StandIn(np.zeros((4, 4), np.float32).T), 1.0, 8),
     r"args\[1\] 'x' \(const float\* x\): expected a C-contiguous array .*strides \(4, 16\)"),
    ((f32(8), f32(8), 1.0, 2**31), r"args\[3\] 'n' \(int n\): 2147483648 does not fit int \(int32: "),
    ((f32(8), f32(8), 1.0, 8.0), r"args\[3\] 'n' \(int n\): expected a Python or NumPy integer \(int\), got float"),
    ((f32(8), f32(8), 1e39, 8), r"args\[2\] 'a' \(float a\): 1e\+39 overflows float"),
    ((f32(8), f32(8), "2", 8), r"args\[2\] 'a' \(float a\): expected a real number"),
    ((None, f32(8), 1.0, 8), r"args\[0\] 'y' .*got None \(only ZT_NULLABLE parameters take None\)"),
    ((np.zeros(8, np.float32), f32(8), 1.0, 8), r"args\[0\] 'y' .*got a NumPy array \(host memory\)"),
    ((StandIn(np.zeros(8, np.float32), device="cpu"), f32(8), 1.0, 8),
     r"args\[0\] 'y' .*expected an array on CUDA device 0, got one on 'cpu'"),
    ((f32(8), StandIn(np.zeros(8, np.float32), device=1), 1.0, 8),
     r"args\[1\] 'x' .*on cuda:1 but the current device is cuda:0"),
    ((f32(8), [0.0] * 8, 1.0, 8), r"args\[1\] 'x' .*expected a CUDA array \(cupy.ndarray\), got list"),
])
def test_bad_arguments_name_the_kernel_and_the_argument(args, pattern):
    with pytest.raises(KernelLaunchError, match=pattern):
        launch("saxpy", args)


def test_read_only_output_is_refused_and_read_only_input_is_fine():
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(KernelLaunchError, match=r"args\[0\] 'y'.*read-only"):
        launch("saxpy", (StandIn(ro), f32(8), 1.0, 8))
    launch("saxpy", (f32(8), StandIn(ro), 1.0, 8))


@pytest.mark.parametrize("grid, block, shared_mem, limits, pattern", [
    (1, 2048, 0, H100, r"kernel saxpy: block x = 2048 is out of range; this device allows 1 to 1024"),
    (1, (32, 32, 2), 0, H100, r"kernel saxpy: block \(32, 32, 2\) has 2048 threads; the device allows at most 1024"),
    (1, (16, 16, 4), 0, LaunchLimits(kernel_max_threads_per_block=512),
     r"block \(16, 16, 4\) has 1024 threads; this kernel's register use allows at most 512"),
    (2**31, 256, 0, H100, r"kernel saxpy: grid x = 2147483648 is out of range; this device allows 1 to 2147483647"),
    ((1, 65536), 256, 0, H100, r"grid y = 65536 is out of range"),
    (0, 256, 0, H100, r"grid x = 0 is out of range"),
    (1, 1.5, 0, H100, r"block must be an int or a tuple of 1 to 3 ints, got 1.5"),
    (1, (1, 1, 1, 1), 0, H100, r"block must be an int or a tuple of 1 to 3 ints"),
    (1, 256, 228 * 1024, H100, r"233472 bytes of dynamic shared memory plus 0 static exceed the device's 232448"),
    (1, 256, -1, H100, r"shared_mem must be a non-negative int"),
])
def test_launch_dimensions_and_shared_memory_against_the_limits(grid, block, shared_mem, limits, pattern):
    with pytest.raises(KernelLaunchError, match=pattern):
        launch("saxpy", (f32(8), f32(8), 1.0, 8), grid=grid, block=block, shared_mem=shared_mem, limits=limits)


def test_dynamic_shared_memory_above_48k_asks_for_the_opt_in():
    args = (f32(8), f32(8), 1.0, 8)
    assert launch("saxpy", args, shared_mem=48 * 1024).optin_shared_mem == 0
    assert launch("saxpy", args, shared_mem=100 * 1024).optin_shared_mem == 100 * 1024
    static = LaunchLimits(max_shared_mem_per_block_optin=227 * 1024, kernel_static_shared_mem=40 * 1024)
    assert launch("saxpy", args, shared_mem=16 * 1024, limits=static).optin_shared_mem == 16 * 1024


def test_strided_nullable_struct_and_small_scalars():
    out = StandIn(np.zeros((4, 4), np.float32).T)  # ZT_STRIDED: a transposed view is fine
    plan = launch("gather", (out, None, {"shape": [4, 4], "ndim": 2}, True, 1.5, 255))
    _, idx, lay, flag, s, u = plan.args
    assert idx == 0 and idx.dtype == np.uint64  # NULL
    assert lay.dtype == SIGS["gather"].params[2].struct_dtype and lay.shape == (1,)
    assert list(lay["shape"][0]) == [4, 4, 0, 0] and lay["ndim"][0] == 2
    assert type(flag) is np.bool_ and type(u) is np.uint8
    assert s == np.array(1.5, dtype=ml_dtypes.bfloat16).view(np.uint16)  # bfloat16 as its 16 bits
    packed = np.zeros((), dtype=SIGS["gather"].params[2].struct_dtype)
    assert launch("gather", (out, None, packed, False, 0.0, 0)).args[2].dtype == packed.dtype


@pytest.mark.parametrize("lay, flag, u, pattern", [
    ({"shape": [1] * 5, "ndim": 5}, True, 0, r"args\[2\] 'lay' \(Lay lay\): field 'shape': expected a sequence of at "
                                              r"most 4 values"),
    ({"shape": [4]}, True, 0, r"missing field 'ndim' of struct Lay"),
    ({"shape": [4], "ndim": 1, "rank": 1}, True, 0, r"unknown fields \['rank'\]; struct Lay has \['shape', 'ndim'\]"),
    ({"shape": [2**63], "ndim": 1}, True, 0, r"field 'shape'\[0\].*does not fit long long"),
    ([4, 1], True, 0, r"expected a dict of the fields \['shape', 'ndim'\]"),
    ({"shape": [4], "ndim": 1}, 1, 0, r"args\[3\] 'flag' \(bool flag\): expected a bool, got int 1"),
    ({"shape": [4], "ndim": 1}, True, 256, r"args\[5\] 'u' \(unsigned char u\): 256 does not fit unsigned char"),
])
def test_struct_and_scalar_refusals(lay, flag, u, pattern):
    with pytest.raises(KernelLaunchError, match=pattern):
        launch("gather", (f32(4), None, lay, flag, 0.0, u))


# ------------------------------------------------------------------------------------------ NVRTC and the cache
def _nvrtc_or_skip():
    try:
        return kernel_compile.nvrtc_version()
    except RuntimeError as e:
        pytest.skip(f"NVRTC is not available: {e}")


def test_compile_and_disk_cache_skip_nvrtc_in_a_second_process(tmp_path, monkeypatch):
    _nvrtc_or_skip()
    monkeypatch.setenv("ZT_KERNEL_CACHE", str(tmp_path))
    path = kernels.compile_kernel("copy", {"SRC_T": "float", "DST_T": "__half"}, arch=(9, 0))
    assert path.parent == tmp_path and path.suffix == ".cubin" and path.read_bytes()[:4] == b"\x7fELF"
    assert kernels.compile_kernel("copy", {"SRC_T": "float", "DST_T": "__half"}, arch=(8, 0)) != path
    # a second process computes the same file name and never calls NVRTC
    code = ("import sys; from zigtensor.backends import kernel_compile as c, kernels as k\n"
            "c.compile_source = lambda *a: sys.exit('recompiled')\n"
            "print(k.compile_kernel('copy', {'DST_T': '__half', 'SRC_T': 'float'}, arch=(9, 0)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**__import__("os").environ, "ZT_KERNEL_CACHE": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(path)


def test_compile_error_names_file_line_and_message(tmp_path, monkeypatch):
    _nvrtc_or_skip()
    (tmp_path / "broken.cu").write_text('#include <cuda_fp16.h>\n\nextern "C" __global__ void k(float* y) {\n'
                                        "    y[threadIdx.x] = undefined_name;\n}\n")
    monkeypatch.setattr(kernels, "KERNEL_DIR", tmp_path)
    monkeypatch.setenv("ZT_KERNEL_CACHE", "off")
    with pytest.raises(kernels.KernelCompileError) as info:
        kernels.compile_kernel("broken", arch=(8, 0))
    e = info.value
    assert (e.file, e.line) == ("kernels/broken.cu", 4)
    assert e.message == 'identifier "undefined_name" is undefined'
    assert str(e).startswith('kernels/broken.cu:4: identifier "undefined_name" is undefined\n')
    assert "-arch=sm_80" in str(e)


def test_arch_options():
    assert kernel_compile.arch_option(9, 0) == ("-arch=sm_90a", "cubin")
    assert kernel_compile.arch_option(8, 0) == ("-arch=sm_80", "cubin")
    assert kernel_compile.arch_option(12, 0, (80, 90, 100)) == ("-arch=compute_100", "ptx")
    with pytest.raises(RuntimeError, match="compute capability 5.0"):
        kernel_compile.arch_option(5, 0, (75, 80))


# ------------------------------------------------------------------------------------------ zt.cuda without a GPU
def test_cuda_is_not_available_here_and_says_why(monkeypatch):
    assert zt.cuda.is_available() is (zt.cuda.device_count() > 0)
    if zt.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match=r"^CUDA is not available: ") as info:
        zt.cuda.get_device_properties(0)
    assert "\n" not in str(info.value)


def test_without_cupy_every_question_has_a_one_line_answer(monkeypatch):
    monkeypatch.setattr(zt.cuda, "_state", {})
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    assert zt.cuda.is_available() is False and zt.cuda.device_count() == 0
    for ask in (zt.cuda.synchronize, zt.cuda.current_device, zt.cuda.Event, zt.cuda.Stream, zt.cuda.memory_stats):
        with pytest.raises(RuntimeError) as info:
            ask()
        msg = str(info.value)
        assert "\n" not in msg and "CuPy is not installed" in msg and "pip install zigtensor[cuda]" in msg


def test_a_cuda_tensor_without_a_device_is_a_one_line_error():
    if zt.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError) as info:
        zt.zeros(2, device="cuda")
    assert "\n" not in str(info.value) and "cuda" in str(info.value)


def test_device_properties_give_the_checkers_limits():
    props = zt.cuda.properties_from_runtime(0, {
        "name": b"NVIDIA H100 80GB HBM3", "major": 9, "minor": 0, "totalGlobalMem": 85 * 2**30,
        "multiProcessorCount": 132, "maxThreadsPerBlock": 1024, "maxThreadsDim": (1024, 1024, 64),
        "maxGridSize": (2**31 - 1, 65535, 65535), "sharedMemPerBlock": 49152, "sharedMemPerBlockOptin": 232448,
        "sharedMemPerMultiprocessor": 233472, "regsPerBlock": 65536, "warpSize": 32, "l2CacheSize": 50 * 2**20})
    assert props.name == "NVIDIA H100 80GB HBM3" and props.compute_capability == (9, 0)
    assert "compute_capability=9.0" in repr(props)
    limits = props.launch_limits()
    assert limits.max_shared_mem_per_block_optin == 232448 and limits.max_grid_dims[0] == 2**31 - 1
    plan = check_launch(SIGS["saxpy"], 132, 1024, (f32(8), f32(8), 1.0, 8), 100_000, limits, 0)
    assert plan.optin_shared_mem == 100_000


def test_checked_kernel_launches_the_converted_arguments_and_opts_in_to_shared_memory():
    """CheckedKernel's own logic with a stand-in CuPy: what reaches the RawKernel, the opt-in, the stream."""
    calls, entered = [], []

    class FakeFn:
        max_dynamic_shared_size_bytes = 0

        def __call__(self, grid, block, args, shared_mem=0):
            calls.append((grid, block, args, shared_mem))

    class FakeStream:
        def __enter__(self):
            entered.append(self)

        def __exit__(self, *exc):
            pass

    fake_cp = SimpleNamespace(cuda=SimpleNamespace(runtime=SimpleNamespace(getDevice=lambda: 0)))
    kernel = kernels.CheckedKernel("t", "saxpy", (), (), SIGS["saxpy"], SRC, "kernels/t.cu", fake_cp)
    fn = FakeFn()
    kernel._per_device[0] = (fn, H100)
    y, x = f32(8), f32(8)
    kernel(2, 128, (y, x, 3, 8), shared_mem=64 * 1024, stream=SimpleNamespace(cupy_stream=FakeStream()))
    ((grid, block, args, shared),) = calls
    assert grid == (2, 1, 1) and block == (128, 1, 1) and shared == 64 * 1024 and len(entered) == 1
    assert args[:2] == (y, x) and type(args[2]) is np.float32 and type(args[3]) is np.int32
    assert fn.max_dynamic_shared_size_bytes == 64 * 1024
    with pytest.raises(KernelLaunchError, match=r"kernel saxpy, args\[3\] 'n'"):
        kernel(2, 128, (y, x, 3, -2**40))
    assert len(calls) == 1  # a refused launch never reaches the GPU
    assert "CheckedKernel(t.cu: saxpy(float* y" in repr(kernel)
