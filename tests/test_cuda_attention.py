"""kernels/attention.cu (SIMT) and kernels/flash_attention.cu (tensor cores) through their launchers
(backends/cuda_kernels/attention.py) against a float64 NumPy reference of softmax(scale q k^T + mask) v and its
gradients, on the same already rounded inputs: causal (with offsets), bool and float masks, grouped-query heads,
Sq != Sk, lengths that are not multiples of the tiles, queries that see no key, strided (B, S, H, D) views.
GPU cases are marked `cuda`; a subset runs on the CPU kernel emulator (the tensor-core fragments through
zt_mma.cuh's stand-ins), small enough for g++-emulated threads. The kernel choice and the argument errors are
tested without any device. The reference itself is checked against PyTorch's scaled_dot_product_attention."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from cuda_util import BF16, kernel_device, on_devices

from zigtensor.backends.cuda_kernels import _launch
from zigtensor.backends.cuda_kernels import attention as A

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
# normwise tolerance: max |got - want| <= TOL * max(1, max |want|). The 16-bit kernels round P (and dS) to the
# input dtype before their second matmul, as FlashAttention does: a few roundings, not one.
TOL = {F64: 1e-12, F32: 5e-6, F16: 1.5e-3, BF16: 1.2e-2}


@dataclass(frozen=True)
class Case:
    """One attention problem: shapes, masking, layout and the kernel that must take it."""

    kernel: str  # "simt" | "tc": forced through kernel=
    dtype: object
    b: int
    hq: int
    hkv: int
    sq: int
    sk: int
    d: int
    causal: bool = False
    offset: int = 0
    mask: str = ""  # "" | "bool" | "bool_row" (a row that sees nothing) | "float", "half" (with -inf entries)
    strided: bool = False  # q, k, v as (B, S, H, D) buffers viewed as (B, H, S, D)
    config: tuple = (4, 64)  # TcConfig (warps, bn) for the tensor-core kernels

    def __str__(self):
        parts = [self.kernel, np.dtype(self.dtype).name, f"{self.b}x{self.hq}/{self.hkv}x{self.sq}x{self.sk}x{self.d}"]
        parts += ["causal" + (f"{self.offset:+d}" if self.offset else "")] if self.causal else []
        parts += [self.mask] if self.mask else []
        parts += ["strided"] if self.strided else []
        parts += [f"cfg{self.config[0]}x{self.config[1]}"] if self.config != (4, 64) and self.kernel == "tc" else []
        return "-".join(parts)


SIMT_EMULATED = [
    Case("simt", F32, 1, 2, 1, 19, 23, 32),                                 # GQA, odd lengths
    Case("simt", F32, 1, 1, 1, 37, 37, 16, causal=True),                    # two row blocks, the diagonal
    Case("simt", F64, 1, 1, 1, 10, 12, 16, causal=True, offset=-3),         # first 3 queries see no key
    Case("simt", F32, 2, 1, 1, 9, 33, 64, mask="bool_row"),                 # bool mask, one row all False
    Case("simt", F32, 1, 2, 2, 12, 20, 32, causal=True, offset=5, mask="float"),
    Case("simt", F64, 1, 4, 2, 5, 40, 24),                                  # D not a multiple of 16
    Case("simt", F16, 1, 2, 1, 11, 13, 40, mask="bool"),                    # 16-bit storage on SIMT
    Case("simt", BF16, 1, 2, 1, 20, 6, 48, causal=True),                    # Sq > Sk under a causal mask
    Case("simt", F32, 1, 1, 1, 5, 7, 1),                                    # D = 1
    Case("simt", F32, 2, 2, 1, 9, 14, 16, causal=True, mask="bool", strided=True),
]
TC_EMULATED = [
    Case("tc", F16, 1, 2, 1, 19, 23, 32, config=(2, 16)),                   # GQA, odd lengths, several tiles
    Case("tc", BF16, 1, 1, 1, 40, 40, 16, causal=True, config=(2, 16)),     # the diagonal across tiles
    Case("tc", F16, 1, 1, 1, 20, 33, 64, causal=True, offset=-3, mask="bool"),
    Case("tc", BF16, 1, 2, 2, 17, 50, 32, mask="float", config=(2, 16)),
    Case("tc", F16, 1, 1, 1, 70, 9, 16),                                    # two row blocks, one short tile
    Case("tc", BF16, 1, 2, 1, 9, 21, 16, causal=True, offset=4, mask="bool_row", config=(1, 16)),
    Case("tc", F16, 2, 2, 1, 18, 23, 32, causal=True, offset=2, strided=True, config=(1, 16)),
    Case("tc", F16, 1, 1, 1, 33, 140, 16, causal=True, offset=100, mask="half", config=(2, 128)),
]
GPU_ONLY = [
    Case("simt", F32, 2, 8, 2, 300, 257, 128, causal=True),
    Case("simt", F64, 1, 4, 4, 129, 65, 64, mask="float"),
    Case("simt", F32, 2, 4, 2, 77, 130, 80, mask="bool", strided=True),
    Case("simt", F32, 1, 2, 1, 64, 64, 1),
    Case("simt", F64, 1, 2, 1, 33, 70, 128, causal=True, offset=-10),
    Case("tc", F16, 2, 8, 2, 300, 257, 128, causal=True),
    Case("tc", BF16, 2, 8, 2, 300, 257, 128, causal=True),
    Case("tc", F16, 1, 4, 4, 513, 1000, 64, mask="float"),
    Case("tc", BF16, 2, 4, 2, 77, 130, 128, mask="bool", strided=True),
    Case("tc", F16, 2, 4, 1, 129, 129, 64, causal=True, offset=-10, strided=True),
    Case("tc", BF16, 1, 2, 2, 1000, 31, 96, causal=True, offset=7, mask="bool_row"),
    Case("tc", F16, 1, 2, 1, 200, 300, 128, config=(8, 32)),
    Case("tc", BF16, 1, 2, 1, 100, 100, 48, mask="float", config=(2, 128)),
    Case("tc", F16, 1, 1, 1, 1, 4096, 128, causal=True, offset=4095),      # one query (decode)
]
CASES = SIMT_EMULATED + TC_EMULATED + GPU_ONLY
EMULATED = SIMT_EMULATED + TC_EMULATED


# ------------------------------------------------------------------------------------------ reference
def _visible(c: Case, mask) -> np.ndarray:
    """(B, Hq, Sq, Sk) bool: key j visible to query i (causal and bool mask)."""
    vis = np.ones((c.b, c.hq, c.sq, c.sk), bool)
    if c.causal:
        vis &= np.arange(c.sk)[None, :] <= np.arange(c.sq)[:, None] + c.offset
    if mask is not None and mask.dtype == np.bool_:
        vis &= np.broadcast_to(mask, vis.shape)
    return vis


def reference(c: Case, q, k, v, mask, dout=None):
    """float64 (out, lse) and, given dout, (dq, dk, dv) of softmax(scale q k^T + mask) v; a query that sees no
    key gets out = 0, lse = -inf and zero gradients. dk, dv sum over each kv head's query heads."""
    group = c.hq // c.hkv
    q64 = q.astype(np.float64)
    k64 = np.repeat(k.astype(np.float64), group, axis=1)
    v64 = np.repeat(v.astype(np.float64), group, axis=1)
    scale = 1.0 / np.sqrt(c.d)
    s = q64 @ k64.transpose(0, 1, 3, 2) * scale
    if mask is not None and mask.dtype != np.bool_:
        s = s + np.broadcast_to(mask.astype(np.float64), s.shape)
    vis = _visible(c, mask) & (s > -np.inf)
    s = np.where(vis, s, -np.inf)
    seen = vis.any(-1, keepdims=True)
    m = np.where(seen, s.max(-1, keepdims=True), 0.0)
    e = np.where(vis, np.exp(s - m), 0.0)
    total = e.sum(-1, keepdims=True)
    p = e / np.where(seen, total, 1.0)
    out = p @ v64
    lse = np.where(seen, m + np.log(np.where(seen, total, 1.0)), -np.inf)[..., 0]
    if dout is None:
        return out, lse
    do64 = dout.astype(np.float64)
    dp = do64 @ v64.transpose(0, 1, 3, 2)
    ds = p * (dp - (do64 * out).sum(-1, keepdims=True))
    dq = ds @ k64 * scale
    dk = (ds.transpose(0, 1, 3, 2) @ q64 * scale).reshape(c.b, c.hkv, group, c.sk, c.d).sum(2)
    dv = (p.transpose(0, 1, 3, 2) @ do64).reshape(c.b, c.hkv, group, c.sk, c.d).sum(2)
    return dq, dk, dv


# ------------------------------------------------------------------------------------------ inputs
def _inputs(c: Case, seed: int):
    """Host (q, k, v, mask, dout), already rounded to the case's dtypes."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(-2, 2, (c.b, c.hq, c.sq, c.d)).astype(c.dtype)
    k = rng.uniform(-2, 2, (c.b, c.hkv, c.sk, c.d)).astype(c.dtype)
    v = rng.uniform(-2, 2, (c.b, c.hkv, c.sk, c.d)).astype(c.dtype)
    dout = rng.uniform(-1, 1, (c.b, c.hq, c.sq, c.d)).astype(c.dtype)
    mask = None
    if c.mask in ("bool", "bool_row"):
        mask = rng.uniform(size=(c.b, 1, c.sq, c.sk)) < 0.7  # broadcast over heads
        if c.mask == "bool_row":
            mask[:, :, c.sq // 2, :] = False
    elif c.mask in ("float", "half"):
        mask = rng.normal(0.0, 2.0, (c.sq, c.sk)).astype(np.float32 if c.mask == "float" else F16)  # broadcast
        mask[rng.uniform(size=mask.shape) < 0.2] = -np.inf
    return q, k, v, mask, dout


def _device_view(dev, x: np.ndarray, strided: bool):
    """x (B, H, S, D) on the device: C-contiguous, or a (B, S, H, D) buffer viewed as (B, H, S, D)."""
    if not strided:
        return dev.asarray(x)
    return dev.asarray(np.ascontiguousarray(x.transpose(0, 2, 1, 3))).transpose(0, 2, 1, 3)


def _buffer_of(a):
    """A strided view whose first element is its C-contiguous buffer's first element, as that buffer; else a."""
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        base = a.base
        if isinstance(base, np.ndarray) and base.flags.c_contiguous and base.ctypes.data == a.ctypes.data:
            return base
    return a


def _emulate_strided_views(monkeypatch) -> None:
    """Under the emulator, launch with each strided view's buffer in its place.

    NOTE: the emulator takes C-contiguous arrays only; the kernel reads the buffer through the view's strides
    (in the params) from the same first element, which is what the GPU does with the view itself."""
    inner = _launch.loader

    def load(family, name, defines=None, options=()):
        kernel = inner(family, name, defines, options)

        def launch(grid, block, args, shared_mem=0, stream=None):
            return kernel(grid, block, tuple(_buffer_of(a) for a in args), shared_mem=shared_mem, stream=stream)

        return launch

    monkeypatch.setattr(_launch, "loader", load)


def _check(name: str, got, want, dtype, scale: float = 1.0) -> None:
    got64, want64 = np.asarray(got).astype(np.float64), np.asarray(want, np.float64)
    assert got64.shape == want64.shape, f"{name}: shape {got64.shape} != {want64.shape}"
    assert np.isfinite(got64).all(), f"{name}: non-finite values at {np.argwhere(~np.isfinite(got64))[:5]}"
    err = np.abs(got64 - want64).max() if want64.size else 0.0
    bound = TOL[np.dtype(dtype)] * scale * max(1.0, float(np.abs(want64).max(initial=0.0)))
    where = np.unravel_index(np.argmax(np.abs(got64 - want64)), got64.shape) if want64.size else ()
    assert err <= bound, f"{name}: max |error| {err:.3g} > {bound:.3g} at {where}"


def _config(c: Case) -> A.TcConfig:
    return A.TcConfig(*c.config)


# ------------------------------------------------------------------------------------------ forward / backward
@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_forward(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    if dev.emulated and case.strided:
        _emulate_strided_views(monkeypatch)
    q, k, v, mask, _ = _inputs(case, 1)
    qd, kd, vd = (_device_view(dev, x, case.strided) for x in (q, k, v))
    dmask = None if mask is None else dev.asarray(mask)
    out, lse = A.flash_attention_forward(qd, kd, vd, causal=case.causal, mask=dmask, causal_offset=case.offset,
                                         kernel=case.kernel, config=_config(case))
    want_out, want_lse = reference(case, q, k, v, mask)
    assert out.dtype == case.dtype and lse.dtype == A.lse_dtype(case.dtype)
    _check("out", dev.numpy(out), want_out, case.dtype)
    got_lse = dev.numpy(lse).astype(np.float64)
    none = want_lse == -np.inf
    assert np.array_equal(got_lse == -np.inf, none), "lse: -inf exactly where a query sees no key"
    lse_tol = 1e-12 if case.dtype == F64 else 2e-5
    _check("lse", np.where(none, 0, got_lse), np.where(none, 0, want_lse), F64, scale=lse_tol / TOL[F64])
    if none.any():
        assert not np.asarray(dev.numpy(out))[none].any(), "a query that sees no key gets zeros"


@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_backward(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    if dev.emulated and case.strided:
        _emulate_strided_views(monkeypatch)
    q, k, v, mask, dout = _inputs(case, 2)
    out64, lse64 = reference(case, q, k, v, mask)
    out = out64.astype(case.dtype)  # the forward's rounded output, as the backward gets it
    lse = lse64.astype(A.lse_dtype(case.dtype))
    args = [_device_view(dev, x, case.strided) for x in (q, k, v, out, dout)]
    dmask = None if mask is None else dev.asarray(mask)
    dq, dk, dv = A.flash_attention_backward(*args[:4], dev.asarray(lse), args[4], causal=case.causal, mask=dmask,
                                            causal_offset=case.offset, kernel=case.kernel, config=_config(case))
    want = reference(case, q, k, v, mask, dout)
    # NOTE: delta = rowsum(dout * out) is taken from the rounded out; the 16-bit error budget is a few roundings
    for name, got, w in zip(("dq", "dk", "dv"), (dq, dk, dv), want):
        assert got.dtype == case.dtype
        _check(name, dev.numpy(got), w, case.dtype, scale=2.0)
    assert not dev.numpy(dq)[lse64 == -np.inf].any(), "a query that sees no key gets a zero gradient"


@pytest.mark.parametrize("device,case", on_devices(["3d"], ["3d"]))
def test_three_dim_inputs_are_one_batch(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    c = Case("tc", F16, 1, 2, 1, 18, 18, 16, causal=True, config=(1, 16))
    q, k, v, _, dout = _inputs(c, 3)
    out, lse = A.flash_attention_forward(dev.asarray(q[0]), dev.asarray(k[0]), dev.asarray(v[0]), causal=True,
                                         config=_config(c))
    assert out.shape == (2, 18, 16) and lse.shape == (2, 18)
    want_out, _ = reference(c, q, k, v, None)
    _check("out", dev.numpy(out), want_out[0], F16, scale=2.0)
    grads = A.flash_attention_backward(dev.asarray(q[0]), dev.asarray(k[0]), dev.asarray(v[0]), out, lse,
                                       dev.asarray(dout[0]), causal=True, config=_config(c))
    assert [g.shape for g in grads] == [(2, 18, 16), (1, 18, 16), (1, 18, 16)]
    # NOTE: the kernel's own (rounded) out feeds delta here, as in training
    for name, got, w in zip(("dq", "dk", "dv"), grads, reference(c, q, k, v, None, dout)):
        _check(name, dev.numpy(got), w[0], F16, scale=2.0)


@pytest.mark.parametrize("device,case", on_devices(["simt", "tc"], ["simt", "tc"]))
def test_no_keys_or_no_queries(device, case, monkeypatch):
    """Sk = 0: every query sees nothing (zeros, lse = -inf, zero dq); Sq = 0: dk and dv are zeros."""
    dev = kernel_device(device, monkeypatch)
    q = dev.asarray(np.ones((1, 2, 3, 16), F16))
    none = dev.asarray(np.ones((1, 1, 0, 16), F16))
    cfg = A.TcConfig(1, 16)
    out, lse = A.flash_attention_forward(q, none, none, kernel=case, config=cfg)
    assert out.shape == (1, 2, 3, 16) and not dev.numpy(out).any() and np.all(dev.numpy(lse) == -np.inf)
    dq, dk, dv = A.flash_attention_backward(q, none, none, out, lse, q, kernel=case, config=cfg)
    assert not dev.numpy(dq).any() and dk.shape == dv.shape == (1, 1, 0, 16)
    empty = dev.asarray(np.ones((1, 2, 0, 16), F16))
    kv = dev.asarray(np.ones((1, 1, 5, 16), F16))
    out, lse = A.flash_attention_forward(empty, kv, kv, kernel=case, config=cfg)
    assert out.shape == (1, 2, 0, 16) and lse.shape == (1, 2, 0)
    dq, dk, dv = A.flash_attention_backward(empty, kv, kv, out, lse, empty, kernel=case, config=cfg)
    assert dq.shape == (1, 2, 0, 16) and not dev.numpy(dk).any() and not dev.numpy(dv).any()


# ------------------------------------------------------------------------------------------ kernel choice
def _record_kernels(monkeypatch, seen: list):
    """Wrap _launch.kernel so the test sees which kernels the launcher runs (loads are cached, launches not)."""
    inner = _launch.kernel

    def kernel(family, name, defines):
        seen.append((family, name))
        return inner(family, name, defines)

    monkeypatch.setattr(_launch, "kernel", kernel)


@pytest.mark.parametrize("device,case", on_devices(["dispatch"], ["dispatch"]))
def test_kernel_choice_and_forcing(device, case, monkeypatch):
    """fp16 with D % 16 == 0 takes the tensor-core kernels; kernel= and ZT_ATTENTION force either, and both
    agree."""
    dev = kernel_device(device, monkeypatch)
    c = Case("tc", F16, 1, 1, 1, 12, 12, 16)
    q, k, v, _, _ = _inputs(c, 4)
    args = [dev.asarray(x) for x in (q, k, v)]
    seen: list = []
    _record_kernels(monkeypatch, seen)
    monkeypatch.delenv("ZT_ATTENTION", raising=False)
    tc_out, _ = A.flash_attention_forward(*args, config=A.TcConfig(1, 16))
    assert seen == [("flash_attention", "attn_fwd_tc")]
    seen.clear()
    monkeypatch.setenv("ZT_ATTENTION", "simt")
    simt_out, _ = A.flash_attention_forward(*args)
    assert seen == [("attention", "attn_fwd_simt")]
    seen.clear()
    A.flash_attention_forward(*args, kernel="tc", config=A.TcConfig(1, 16))  # kernel= wins over the variable
    assert seen == [("flash_attention", "attn_fwd_tc")]
    np.testing.assert_allclose(dev.numpy(tc_out).astype(np.float64), dev.numpy(simt_out).astype(np.float64),
                               atol=4e-3)
    seen.clear()
    monkeypatch.delenv("ZT_ATTENTION")
    A.flash_attention_forward(*[dev.asarray(x[..., :8]) for x in (q, k, v)])  # D = 8: not a tensor-core head dim
    assert seen == [("attention", "attn_fwd_simt")]


def test_choose_kernel(monkeypatch):
    monkeypatch.delenv("ZT_ATTENTION", raising=False)
    assert A.choose_kernel(True, None) == "tc"
    assert A.choose_kernel(False, None) == "simt"
    assert A.choose_kernel(True, "simt") == "simt"
    monkeypatch.setenv("ZT_ATTENTION", "simt")
    assert A.choose_kernel(True, None) == "simt"
    monkeypatch.setenv("ZT_ATTENTION", "fast")
    with pytest.raises(ValueError, match="ZT_ATTENTION\\) must be one of .*'fast'"):
        A.choose_kernel(True, None)
    with pytest.raises(ValueError, match="tensor-core kernels need float16/bfloat16"):
        A.choose_kernel(False, "tc")


def test_tc_config_shared_memory():
    cfg = A.TcConfig(4, 64)
    assert cfg.rows() == 64 and cfg.defines() == {"ATTN_WARPS": 4, "ATTN_BN": 64}
    assert cfg.smem_bytes(128, 2) == (64 + 256) * 136 * 2  # 87 KB: needs the > 48 KB opt-in on a GPU


def test_bad_inputs_name_the_problem():
    f16 = np.zeros((1, 2, 4, 16), F16)
    with pytest.raises(TypeError, match="q must be float16, bfloat16, float32 or float64, got int32"):
        A.flash_attention_forward(f16.astype(np.int32), f16, f16)
    with pytest.raises(TypeError, match="q, k, v must have one dtype"):
        A.flash_attention_forward(f16, f16.astype(np.float32), f16)
    with pytest.raises(ValueError, match="shapes do not fit"):
        A.flash_attention_forward(f16, f16[..., :8], f16[..., :8])
    with pytest.raises(ValueError, match="2 query heads are not a multiple of 3"):
        A.flash_attention_forward(f16, np.zeros((1, 3, 4, 16), F16), np.zeros((1, 3, 4, 16), F16))
    with pytest.raises(ValueError, match="head dim 160 is not supported"):
        big = np.zeros((1, 1, 2, 160), F16)
        A.flash_attention_forward(big, big, big)
    with pytest.raises(ValueError, match=r"must be \(B, H, S, D\) or \(H, S, D\), got shape \(4, 16\)"):
        A.flash_attention_forward(f16[0, 0], f16[0, 0], f16[0, 0])
    with pytest.raises(TypeError, match="mask must be bool or a float dtype, got int64"):
        A.flash_attention_forward(f16, f16, f16, mask=np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match=r"mask of shape \(3, 4\) does not broadcast"):
        A.flash_attention_forward(f16, f16, f16, mask=np.zeros((3, 4), bool))
    with pytest.raises(ValueError, match="kernel \\(or ZT_ATTENTION\\) must be one of"):
        A.flash_attention_forward(f16, f16, f16, kernel="cudnn")
    with pytest.raises(ValueError, match="tensor-core kernels need"):
        A.flash_attention_forward(f16.astype(np.float32), f16.astype(np.float32), f16.astype(np.float32),
                                  kernel="tc")
    lse = np.zeros((1, 2, 4), np.float32)
    with pytest.raises(ValueError, match="out and dout must be float16 of q's shape"):
        A.flash_attention_backward(f16, f16, f16, f16[..., :2, :], lse, f16)
    with pytest.raises(ValueError, match="lse must be float32 of shape"):
        A.flash_attention_backward(f16, f16, f16, f16, lse.astype(np.float64), f16)


def test_reference_matches_pytorch():
    """The NumPy reference above against PyTorch's scaled_dot_product_attention and autograd (float64)."""
    from oracle import oracle

    torch = oracle("torch")
    c = Case("simt", F64, 2, 4, 2, 7, 9, 8, mask="float")
    q, k, v, mask, dout = _inputs(c, 5)
    mask[np.isinf(mask)] = -30.0  # PyTorch gives NaN for rows with only -inf; the reference gives zeros
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    tmask = torch.tensor(mask, dtype=torch.float64)
    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tmask, enable_gqa=True)
    out.backward(torch.tensor(dout))
    want_out, _ = reference(c, q, k, v, mask)
    np.testing.assert_allclose(want_out, out.detach().numpy(), rtol=1e-12, atol=1e-12)
    for got, t in zip(reference(c, q, k, v, mask, dout), (tq, tk, tv)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-12)
    causal = Case("simt", F64, 1, 1, 1, 5, 5, 8, causal=True)
    q, k, v, _, _ = _inputs(causal, 6)
    t = torch.nn.functional.scaled_dot_product_attention(*(torch.tensor(x) for x in (q, k, v)), is_causal=True)
    np.testing.assert_allclose(reference(causal, q, k, v, None)[0], t.numpy(), rtol=1e-12, atol=1e-12)
