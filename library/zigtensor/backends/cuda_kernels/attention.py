"""Launchers of kernels/attention.cu (SIMT, every float dtype) and kernels/flash_attention.cu (tensor cores,
float16/bfloat16): scaled dot-product attention without a materialized score matrix.

    flash_attention_forward(q, k, v, scale=None, causal=False, mask=None) -> (out, lse)
    flash_attention_backward(q, k, v, out, lse, dout, scale=None, causal=False, mask=None) -> (dq, dk, dv)

q (B, Hq, Sq, D), k and v (B, Hkv, Sk, D) with Hq a multiple of Hkv (grouped-query attention: query head h reads
kv head h // (Hq // Hkv)); 3-d (H, S, D) inputs are one batch. Any strides with a unit-stride head dim are read
in place (a (B, S, H, D) projection viewed as (B, H, S, D) costs no copy). scale defaults to 1/sqrt(D). causal:
key j is visible to query i when j <= i + causal_offset (0 = PyTorch's is_causal). mask: bool (True = visible)
or float (added to the scaled scores), broadcast to (B, Hq, Sq, Sk). A query that sees no key gets zeros and
lse = -inf. out has q's dtype, lse is float32 (float64 for float64) (B, Hq, Sq) in natural-log units; dk, dv
sum over the query heads of each kv head.

Kernels: fp16/bf16 with D % 16 == 0, D <= 128 and 16-byte aligned rows take the tensor-core kernels; everything
else the SIMT ones. `kernel=` or ZT_ATTENTION=simt|tc forces one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from . import _launch
from . import strided as S

FAMILY_SIMT = "attention"
FAMILY_TC = "flash_attention"
KERNELS = ("simt", "tc")
THREADS = 128
_F16, _BF16, _F64 = np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float64)
_MASK_DTYPES = (np.dtype(np.bool_), np.dtype(np.float32), _F16, _BF16, _F64)


@dataclass(frozen=True)
class TcConfig:
    """flash_attention.cu's tile sizes: `warps` x 16 rows per block, `bn` rows per streamed tile."""

    warps: int = 4
    bn: int = 64

    def defines(self) -> dict:
        return {"ATTN_WARPS": self.warps, "ATTN_BN": self.bn}

    def rows(self) -> int:
        return 16 * self.warps

    def smem_bytes(self, head_dim: int, itemsize: int) -> int:
        """(BM + 4 BN) rows of D + 8 elements: the resident tile and two double-buffered streamed tiles."""
        return (self.rows() + 4 * self.bn) * (head_dim + 8) * itemsize


TC_DEFAULT = TcConfig(4, 64)


def _simt_math_size(dtype) -> int:
    return 8 if np.dtype(dtype) == _F64 else 4


def simt_fwd_smem(head_dim: int, dtype) -> int:
    """attention.cu's attn_fwd_simt dynamic shared memory: (4R D + KT (2D + 1) + 4 R KT) math elements."""
    ct = _simt_math_size(dtype)
    rows, kt = (2, 16) if ct == 8 else (4, 32)
    return (4 * rows * head_dim + kt * (2 * head_dim + 1) + 4 * rows * kt) * ct


def simt_fwd_rows(dtype) -> int:
    return 8 if _simt_math_size(dtype) == 8 else 16


def simt_dkdv_smem(head_dim: int, dtype) -> int:
    return (64 * (head_dim + 1) + 16 * head_dim + 16 + 2048) * _simt_math_size(dtype)


def simt_dq_smem(head_dim: int, dtype) -> int:
    return (64 * (head_dim + 1) + 16 * head_dim + 2048) * _simt_math_size(dtype)


@dataclass
class _Inputs:
    """Validated 4-d views and the kernel parameters shared by forward and backward."""

    q: object
    k: object
    v: object
    mask: object
    params: dict
    batch: int
    hq: int
    hkv: int
    sq: int
    sk: int
    head_dim: int
    squeeze: bool  # the inputs were 3-d


def _as4d(name: str, x, xp):
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"attention: {name} must be (B, H, S, D) or (H, S, D), got shape {tuple(x.shape)}")
    if S.element_strides(x)[-1] != 1:
        x = xp.ascontiguousarray(x)
    return x


def _mask_view(mask, shape: tuple):
    """The mask's element strides broadcast to shape (B, Hq, Sq, Sk)."""
    if np.dtype(mask.dtype) not in _MASK_DTYPES:
        raise TypeError(f"attention: mask must be bool or a float dtype, got {mask.dtype}")
    try:
        return S.broadcast_strides(tuple(mask.shape), S.element_strides(mask), shape)
    except ValueError:
        raise ValueError(f"attention: mask of shape {tuple(mask.shape)} does not broadcast to (B, Hq, Sq, Sk) = "
                         f"{shape}") from None


def _prepare(q, k, v, scale, causal, mask, causal_offset) -> _Inputs:
    xp = _launch.array_module(q)
    for name, x in (("k", k), ("v", v)):
        if _launch.array_module(x) is not xp:
            raise TypeError(f"attention: q and {name} must be arrays of one kind")
    _launch.check_float("attention", "q", q)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"attention: q, k, v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    squeeze = q.ndim == 3
    q4, k4, v4 = _as4d("q", q, xp), _as4d("k", k, xp), _as4d("v", v, xp)
    b, hq, sq, d = (int(s) for s in q4.shape)
    bk, hkv, sk, dk = (int(s) for s in k4.shape)
    if bk != b or dk != d or tuple(v4.shape) != tuple(k4.shape):
        raise ValueError(f"attention: shapes do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} "
                         "(need k and v of one shape (B, Hkv, Sk, D) with q's B and D)")
    if hkv < 1 or hq % hkv:
        raise ValueError(f"attention: {hq} query heads are not a multiple of {hkv} key/value heads")
    if not 1 <= d <= 128:
        raise ValueError(f"attention: head dim {d} is not supported (1 .. 128)")
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    m_strides = (0, 0, 0, 0)
    if mask is not None:
        if _launch.array_module(mask) is not xp:
            raise TypeError("attention: the mask must be an array of the inputs' kind")
        m_strides = _mask_view(mask, (b, hq, sq, sk))
    qs, ks, vs = S.element_strides(q4), S.element_strides(k4), S.element_strides(v4)
    params = {"q_sb": qs[0], "q_sh": qs[1], "q_ss": qs[2], "k_sb": ks[0], "k_sh": ks[1], "k_ss": ks[2],
              "v_sb": vs[0], "v_sh": vs[1], "v_ss": vs[2], "o_sb": 0, "o_sh": 0, "o_ss": 0, "do_sb": 0, "do_sh": 0,
              "do_ss": 0, "m_sb": m_strides[0], "m_sh": m_strides[1], "m_sq": m_strides[2], "m_sk": m_strides[3],
              "batch": b, "hq": hq, "hkv": hkv, "sq": sq, "sk": sk, "causal": int(bool(causal)),
              "causal_offset": int(causal_offset), "scale": float(scale)}
    return _Inputs(q4, k4, v4, mask, params, b, hq, hkv, sq, sk, d, squeeze)


def _tc_ok(inp: _Inputs, *arrays) -> bool:
    """The tensor-core kernels' needs: 16-bit dtype, D a multiple of 16 up to 128, 16-byte aligned rows."""
    if np.dtype(inp.q.dtype) not in (_F16, _BF16) or inp.head_dim % 16 or inp.head_dim > 128:
        return False
    for x in (inp.q, inp.k, inp.v, *arrays):
        if _launch.data_ptr(x) % 16 or any(s % 8 for s in S.element_strides(x)[:-1]):
            return False
    return True


def choose_kernel(tc_ok: bool, forced: str | None) -> str:
    forced = forced if forced is not None else (os.environ.get("ZT_ATTENTION") or None)
    if forced is None:
        return "tc" if tc_ok else "simt"
    if forced not in KERNELS:
        raise ValueError(f"attention: kernel (or ZT_ATTENTION) must be one of {KERNELS}, got {forced!r}")
    if forced == "tc" and not tc_ok:
        raise ValueError("attention: the tensor-core kernels need float16/bfloat16 inputs with a head dim that is a "
                         "multiple of 16 (at most 128) and 16-byte aligned rows; these are not")
    return forced


def _defines(inp: _Inputs, kernel: str, config: TcConfig) -> dict:
    mask_t = _launch.ctype(inp.mask.dtype) if inp.mask is not None else "float"
    if kernel == "tc":
        return {"ZT_ATTN_T": _launch.ctype(inp.q.dtype), "ZT_ATTN_MASK_T": mask_t, "HEAD_DIM": inp.head_dim,
                **config.defines()}
    return {"ATTN_T": _launch.ctype(inp.q.dtype), "ATTN_CT": "double" if inp.q.dtype == _F64 else "float",
            "ATTN_MASK_T": mask_t, "HEAD_DIM": inp.head_dim}


def lse_dtype(dtype) -> np.dtype:
    """lse and delta: float32, float64 for float64 inputs (the SIMT kernels' math type)."""
    return _F64 if np.dtype(dtype) == _F64 else np.dtype(np.float32)


def flash_attention_forward(q, k, v, scale: float | None = None, causal: bool = False, mask=None, *,
                            causal_offset: int = 0, kernel: str | None = None, config: TcConfig | None = None):
    """(out, lse) of softmax(scale q k^T + mask) v; see the module docstring."""
    inp = _prepare(q, k, v, scale, causal, mask, causal_offset)
    xp = _launch.array_module(q)
    out = xp.empty((inp.batch, inp.hq, inp.sq, inp.head_dim), dtype=q.dtype)
    lse = xp.empty((inp.batch, inp.hq, inp.sq), dtype=lse_dtype(q.dtype))
    if out.size:
        os_ = S.element_strides(out)
        params = dict(inp.params, o_sb=os_[0], o_sh=os_[1], o_ss=os_[2])
        config = config or TC_DEFAULT
        name = choose_kernel(_tc_ok(inp), kernel)
        if name == "tc":
            grid = (-(-inp.sq // config.rows()), inp.hq, inp.batch)
            fn = _launch.kernel(FAMILY_TC, "attn_fwd_tc", _defines(inp, "tc", config))
            fn(grid, 32 * config.warps, (inp.q, inp.k, inp.v, inp.mask, out, lse, params),
               shared_mem=config.smem_bytes(inp.head_dim, q.dtype.itemsize))
        else:
            grid = (-(-inp.sq // simt_fwd_rows(q.dtype)), inp.hq, inp.batch)
            fn = _launch.kernel(FAMILY_SIMT, "attn_fwd_simt", _defines(inp, "simt", config))
            fn(grid, THREADS, (inp.q, inp.k, inp.v, inp.mask, out, lse, params),
               shared_mem=simt_fwd_smem(inp.head_dim, q.dtype))
    elif lse.size:
        lse[...] = -np.inf  # no keys: every query sees nothing
    if inp.squeeze:
        return out[0], lse[0]
    return out, lse


def flash_attention_backward(q, k, v, out, lse, dout, scale: float | None = None, causal: bool = False, mask=None,
                             *, causal_offset: int = 0, kernel: str | None = None, config: TcConfig | None = None):
    """(dq, dk, dv) of the forward's out given dout = dL/dout and the forward's (out, lse)."""
    inp = _prepare(q, k, v, scale, causal, mask, causal_offset)
    xp = _launch.array_module(q)
    o4, do4 = _as4d("out", out, xp), _as4d("dout", dout, xp)
    lse4 = lse[None] if lse.ndim == 2 else lse
    want = (inp.batch, inp.hq, inp.sq, inp.head_dim)
    if tuple(o4.shape) != want or tuple(do4.shape) != want or o4.dtype != q.dtype or do4.dtype != q.dtype:
        raise ValueError(f"attention backward: out and dout must be {q.dtype} of q's shape {tuple(q.shape)}, got "
                         f"{out.dtype} {tuple(out.shape)} and {dout.dtype} {tuple(dout.shape)}")
    if tuple(lse4.shape) != want[:3] or lse4.dtype != lse_dtype(q.dtype):
        raise ValueError(f"attention backward: lse must be {lse_dtype(q.dtype)} of shape {want[:3]}, got "
                         f"{lse.dtype} {tuple(lse.shape)}")
    lse4 = xp.ascontiguousarray(lse4)
    os_, ds_ = S.element_strides(o4), S.element_strides(do4)
    params = dict(inp.params, o_sb=os_[0], o_sh=os_[1], o_ss=os_[2], do_sb=ds_[0], do_sh=ds_[1], do_ss=ds_[2])
    dq = xp.empty(want, dtype=q.dtype)
    dk = xp.empty((inp.batch, inp.hkv, inp.sk, inp.head_dim), dtype=q.dtype)
    dv = xp.empty_like(dk)
    if dq.size or dk.size:
        config = config or TC_DEFAULT
        name = choose_kernel(_tc_ok(inp, do4), kernel)
        delta = xp.empty((inp.batch, inp.hq, inp.sq), dtype=lse_dtype(q.dtype))
        if delta.size:
            pre = _launch.kernel(FAMILY_SIMT, "attn_bwd_preprocess", _defines(inp, "simt", config))
            pre((-(-inp.sq // 4), inp.hq, inp.batch), THREADS, (o4, do4, delta, params))
        args_dkdv = (inp.q, inp.k, inp.v, inp.mask, do4, lse4, delta, dk, dv, params)
        args_dq = (inp.q, inp.k, inp.v, inp.mask, do4, lse4, delta, dq, params)
        if name == "tc":
            defines, smem = _defines(inp, "tc", config), config.smem_bytes(inp.head_dim, q.dtype.itemsize)
            if dk.size:
                _launch.kernel(FAMILY_TC, "attn_bwd_dkdv_tc", defines)(
                    (-(-inp.sk // config.rows()), inp.hkv, inp.batch), 32 * config.warps, args_dkdv,
                    shared_mem=smem)
            if dq.size:
                _launch.kernel(FAMILY_TC, "attn_bwd_dq_tc", defines)(
                    (-(-inp.sq // config.rows()), inp.hq, inp.batch), 32 * config.warps, args_dq, shared_mem=smem)
        else:
            defines = _defines(inp, "simt", config)
            if dk.size:
                _launch.kernel(FAMILY_SIMT, "attn_bwd_dkdv_simt", defines)(
                    (-(-inp.sk // 32), inp.hkv, inp.batch), THREADS, args_dkdv,
                    shared_mem=simt_dkdv_smem(inp.head_dim, q.dtype))
            if dq.size:
                _launch.kernel(FAMILY_SIMT, "attn_bwd_dq_simt", defines)(
                    (-(-inp.sq // 32), inp.hq, inp.batch), THREADS, args_dq,
                    shared_mem=simt_dq_smem(inp.head_dim, q.dtype))
    if inp.squeeze:
        return dq[0], dk[0], dv[0]
    return dq, dk, dv


def flops_forward(batch: int, heads: int, sq: int, sk: int, head_dim: int, causal: bool) -> float:
    """Matmul flops of the forward (2 matmuls of 2 sq sk D each; half of them under a causal mask)."""
    f = 4.0 * batch * heads * sq * sk * head_dim
    return f / 2 if causal else f


def flops_backward(batch: int, heads: int, sq: int, sk: int, head_dim: int, causal: bool) -> float:
    """Matmul flops of the backward as FlashAttention counts them: 2.5 times the forward's."""
    return 2.5 * flops_forward(batch, heads, sq, sk, head_dim, causal)
