"""kernels/copy.cu and its launcher: the strided layout against NumPy's view semantics (pure), the kernels run
on the CPU emulator (tests/kernel_emulator.py) against PyTorch's casts, and on a GPU where there is one."""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest

import zigtensor as zt
from zigtensor.backends.cuda_kernels import copy as launch
from zigtensor.backends.kernels import ctype_of

DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float64": np.float64,
          "int32": np.int32, "int64": np.int64, "uint8": np.uint8, "int8": np.int8, "bool": np.bool_}


def _offset(view: np.ndarray, base: np.ndarray) -> int:
    return (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // base.itemsize


def _emulate_indices(fields: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The element offsets copy_strided computes for i = 0..n-1, in NumPy."""
    rem = np.arange(n, dtype=np.int64)
    src_off, dst_off = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for d in reversed(range(fields["ndim"])):
        coord = rem % fields["shape"][d]
        rem //= fields["shape"][d]
        src_off += coord * fields["src_strides"][d]
        dst_off += coord * fields["dst_strides"][d]
    return src_off, dst_off


VIEWS = [  # (dst view, src view) of two base arrays: transposes, slices, broadcasts, negative strides
    (lambda d: d.reshape(6, 20), lambda s: s.reshape(6, 20)),
    (lambda d: d.reshape(6, 20), lambda s: s.reshape(20, 6).T),
    (lambda d: d.reshape(4, 5, 6).transpose(2, 0, 1), lambda s: s.reshape(6, 4, 5)),
    (lambda d: d[:60].reshape(3, 4, 5), lambda s: s[:5]),
    (lambda d: d[:60].reshape(3, 4, 5), lambda s: s[:12].reshape(3, 4, 1)),
    (lambda d: d.reshape(12, 10)[::2, 1:9:3], lambda s: s[::-1][:18].reshape(6, 3)),
    (lambda d: d.reshape(2, 3, 4, 5)[:, ::-1], lambda s: s[:5][::-1]),
    (lambda d: d[:1].reshape(1, 1, 1), lambda s: s[7:8]),
]


@pytest.mark.parametrize("make_dst, make_src", VIEWS)
def test_layout_reproduces_numpy_broadcast_and_views(make_dst, make_src):
    dst_base, src_base = np.zeros(120, np.float32), np.arange(120, dtype=np.float32)
    dst, src = make_dst(dst_base), make_src(src_base)
    item = src.itemsize
    fields, idx = launch.layout(dst.shape, tuple(s // item for s in dst.strides), src.shape,
                                tuple(s // item for s in src.strides))
    assert idx == "int" and fields["ndim"] <= len(dst.shape)
    src_off, dst_off = _emulate_indices(fields, dst.size)
    dst_base[_offset(dst, dst_base) + dst_off] = src_base[_offset(src, src_base) + src_off]
    np.testing.assert_array_equal(dst, np.broadcast_to(src, dst.shape))
    assert np.count_nonzero(dst_base) == np.count_nonzero(dst)  # nothing outside the destination view


def test_layout_merges_contiguous_dims_and_widens_the_index():
    fields, idx = launch.layout((64, 1024), (1024, 1), (64, 1024), (1024, 1))
    assert (fields["shape"], fields["ndim"], idx) == ([65536], 1, "int")
    fields, _ = launch.layout((64, 1024), (1024, 1), (64, 1024), (1, 64))  # a transposed source
    assert fields["ndim"] == 2
    _, idx = launch.layout((2**16, 2**16), (2**16, 1), (2**16, 2**16), (2**16, 1))
    assert idx == "long long"
    with pytest.raises(ValueError, match="cannot be broadcast"):
        launch.layout((3, 4), (4, 1), (3, 5), (5, 1))
    with pytest.raises(ValueError, match="9 dims remain after merging .* at most 8"):
        launch.layout((2,) * 9, tuple(2 ** (9 - d) for d in range(9)), (2,) * 9, tuple(2 ** d for d in range(9)))


# ------------------------------------------------------------------------------------------ CPU emulator
def _emulator():
    import kernel_emulator

    why = kernel_emulator.available()
    if why:
        pytest.skip(f"kernel emulator unavailable: {why}")
    return kernel_emulator


def _values(dtype, n, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.random(n) < 0.5
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -1000), min(info.max, 1000), n).astype(dtype)
    return (rng.standard_normal(n) * 50).astype(np.float32).astype(dtype)


def _torch_cast(x: np.ndarray, dtype_name: str) -> np.ndarray:
    from oracle import torch, torch_dtype

    src = torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16) if x.dtype == ml_dtypes.bfloat16 \
        else torch.from_numpy(np.array(x))
    out = src.to(torch_dtype(getattr(zt, dtype_name)))
    return (out.float().numpy().astype(ml_dtypes.bfloat16) if dtype_name == "bfloat16" else out.numpy())


@pytest.mark.parametrize("src_name, dst_name", [
    ("float32", "float32"), ("float32", "bfloat16"), ("float16", "float32"), ("float64", "float16"),
    ("float32", "int32"), ("float32", "bool"), ("bool", "float32"), ("int64", "float32"), ("bfloat16", "float16"),
    ("uint8", "float64"), ("int8", "int64"),
])
def test_contiguous_kernels_cast_like_pytorch(src_name, dst_name):
    emu = _emulator()
    n = 1000 + 3  # a tail that is not a whole vector
    src = _values(DTYPES[src_name], n)
    want = _torch_cast(src, dst_name)
    defines = {"SRC_T": ctype_of(src.dtype), "DST_T": ctype_of(want.dtype)}
    for name in ("copy_contiguous_vec", "copy_contiguous"):
        dst = np.zeros(n, dtype=want.dtype)
        emu.load_kernel("copy", name, defines)(2, 64, (src, dst, n))
        np.testing.assert_array_equal(dst.view(np.uint8), want.view(np.uint8), err_msg=f"{name} {defines}")


@pytest.mark.parametrize("src_name, dst_name", [("float32", "float32"), ("float16", "bfloat16"),
                                                ("int64", "float64")])
def test_strided_kernel_on_the_emulator(src_name, dst_name):
    emu = _emulator()
    base = _values(DTYPES[src_name], 4 * 6 * 5, seed=1).reshape(4, 6, 5)
    dst_dtype = _torch_cast(base[:1, :1, :1], dst_name).dtype
    for view, shape in ((base.transpose(2, 0, 1), (5, 4, 6)), (base[:, :1, :], (4, 3, 5)), (base[0], (6, 5))):
        dst = np.zeros(shape, dtype=dst_dtype)  # (4, 3, 5): broadcast over dim 1
        fields, idx = launch.layout(dst.shape, tuple(s // dst.itemsize for s in dst.strides), view.shape,
                                    tuple(s // base.itemsize for s in view.strides))
        defines = {"SRC_T": ctype_of(base.dtype), "DST_T": ctype_of(dst_dtype),
                   "IDX": idx}
        emu.load_kernel("copy", "copy_strided", defines)(3, 32, (base, dst, dst.size, fields))
        want = _torch_cast(np.ascontiguousarray(np.broadcast_to(view, dst.shape)), dst_name)
        np.testing.assert_array_equal(dst.view(np.uint8), want.view(np.uint8))


# ------------------------------------------------------------------------------------------ on a GPU
cuda = pytest.mark.skipif(not zt.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("src_name, dst_name", list(itertools.product(["float32", "float16", "bfloat16", "int64",
                                                                        "bool"], repeat=2)))
def test_copy_on_the_gpu_matches_pytorch(src_name, dst_name):
    cp = zt.cuda.require_cupy()
    host = _values(DTYPES[src_name], 4 * 6 * 70, seed=2).reshape(4, 6, 70)
    src = cp.asarray(host)
    for view, host_view in ((src, host), (src.transpose(2, 0, 1), host.transpose(2, 0, 1)),
                            (src[:, ::-2, 1:], host[:, ::-2, 1:]), (src[:, :1], host[:, :1])):
        want = _torch_cast(np.ascontiguousarray(np.broadcast_to(host_view, host_view.shape)), dst_name)
        got = launch.astype(view, want.dtype)
        np.testing.assert_array_equal(cp.asnumpy(got).view(np.uint8), want.view(np.uint8))
    dst = cp.zeros((4, 5, 6, 70), dtype=DTYPES[dst_name])
    launch.copy(dst[:, 1], src)  # into a strided view
    want = _torch_cast(host, dst_name)
    np.testing.assert_array_equal(cp.asnumpy(dst[:, 1]).view(np.uint8), want.view(np.uint8))
    assert not cp.asnumpy(dst[:, 0]).any() and not cp.asnumpy(dst[:, 2:]).any()


@pytest.mark.cuda
@cuda
def test_gpu_copy_checks_and_unaligned_views():
    cp = zt.cuda.require_cupy()
    x = cp.arange(1001, dtype=cp.float32)
    out = cp.empty(1000, dtype=cp.float32)
    launch.copy(out, x[1:])  # not 16-byte aligned: the scalar kernel
    np.testing.assert_array_equal(cp.asnumpy(out), np.arange(1, 1001, dtype=np.float32))
    assert launch.contiguous(x) is x
    from zigtensor.backends.kernels import KernelLaunchError, load_kernel

    k = load_kernel("copy", "copy_contiguous", {"SRC_T": "float", "DST_T": "float"})
    with pytest.raises(KernelLaunchError, match=r"args\[1\] 'dst'.*expected a float32 array, got a float16"):
        k(1, 256, (x, cp.empty(1001, cp.float16), 1001))
    with pytest.raises(KernelLaunchError, match=r"block x = 2048 is out of range"):
        k(1, 2048, (x, x, 1001))
