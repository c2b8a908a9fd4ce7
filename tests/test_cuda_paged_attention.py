"""kernels/paged_attention.cu through its launcher (backends/cuda_kernels/paged_attention.py) against a float64
reference that reads the cache through the block tables itself, and against the engine's NumPy path
(engine/paged_attention.py on the CPU), on the same already rounded inputs: mixed decode and prefill batches,
grouped-query heads, sliding windows, fp32/fp16/bf16 (and fp64) caches, block tables with scattered block ids,
head dims 1 .. 256, context lengths that are not multiples of the block size, strided q. GPU cases are marked
`cuda`; a subset runs on the CPU kernel emulator, small enough for g++-emulated threads.

Cache slots past a sequence's context hold large keys (a kernel that attends to them gives a wrong answer),
blocks no table names hold NaN, and table entries past a sequence's blocks are -1 (a kernel that follows them
reads outside the cache, which the emulator reports). The argument errors are tested without any device; the
engine's CUDA metadata on the emulated device (tests/emulated_cuda.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import emulated_cuda as emu
import numpy as np
import pytest
from cuda_util import BF16, kernel_device, on_devices
from emulated_cuda import emulated_cuda  # noqa: F401  (the fixture)

from zigtensor.backends.cuda_kernels import _launch
from zigtensor.backends.cuda_kernels import paged_attention as PA
from zigtensor.engine.paged_attention import AttentionMetadata, paged_attention

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
# normwise: max |got - want| <= TOL * max(1, max |want|); the kernel's math is float32 whatever the storage
TOL = 2e-5


@dataclass(frozen=True)
class Case:
    """One step of the engine: sequences as (context_len, query_len), 1 = a decode, more = a prefill chunk."""

    cache: object
    head_dim: int
    heads: tuple[int, int]  # (num_heads, kv_heads)
    block_size: int
    seqs: tuple[tuple[int, int], ...]
    window: int | None = None
    q_dtype: object = F32
    strided_q: bool = False  # q as the query part of a (T, H + 2 Hkv, D) projection, as the engine slices it

    def __str__(self):
        parts = [np.dtype(self.cache).name, f"q{np.dtype(self.q_dtype).name}", f"d{self.head_dim}",
                 f"h{self.heads[0]}-{self.heads[1]}", f"bs{self.block_size}",
                 "_".join(f"{c}x{n}" for c, n in self.seqs)]
        parts += [f"w{self.window}"] if self.window else []
        parts += ["strided"] if self.strided_q else []
        return "-".join(parts)


EMULATED = [
    Case(F32, 64, (4, 2), 4, ((7, 1), (13, 5), (1, 1), (40, 1), (9, 9))),   # decodes, a chunk, whole prompts
    Case(F16, 128, (6, 2), 8, ((30, 1), (21, 6)), window=5),                # GQA 3, window inside the chunk
    Case(BF16, 64, (2, 2), 16, ((300, 1), (150, 3))),                       # every warp takes several tiles
    Case(BF16, 128, (8, 1), 4, ((18, 2), (5, 1)), window=7, q_dtype=BF16),  # one kv head for all
    Case(F32, 80, (3, 1), 5, ((12, 4), (7, 1)), strided_q=True),            # a lane's slice not a vector
    Case(F16, 256, (2, 1), 4, ((11, 1), (6, 3)), q_dtype=F16),
    Case(F16, 32, (2, 1), 2, ((9, 3), (4, 1)), window=1),                   # each query sees only itself
    Case(F64, 96, (2, 2), 4, ((10, 2),), q_dtype=F64),
    Case(F32, 1, (1, 1), 3, ((5, 5), (2, 1))),
]
GPU_ONLY = [
    Case(F16, 128, (32, 8), 16, ((2000, 1), (700, 1), (1500, 512), (37, 37), (1, 1)), q_dtype=F16),
    Case(BF16, 64, (9, 3), 16, ((4096, 1),) * 3 + ((300, 100),), window=1000, strided_q=True),
    Case(F32, 256, (8, 2), 32, ((513, 1), (1024, 64))),
    Case(F16, 96, (12, 4), 8, ((65, 1), (130, 17)), window=64),
]
CASES = EMULATED + GPU_ONLY


# ------------------------------------------------------------------------------------------ inputs
@dataclass
class Step:
    """Host arrays of one case: cache, q, block tables and the per-token sequence rows and positions."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    tables: np.ndarray
    token_seqs: np.ndarray
    token_positions: np.ndarray
    context_lens: np.ndarray
    query_start_loc: np.ndarray
    scale: float


def make_step(c: Case, seed: int) -> Step:
    rng = np.random.default_rng(seed)
    nh, nkv = c.heads
    blocks_of = [-(-ctx // c.block_size) for ctx, _ in c.seqs]
    num_blocks = sum(blocks_of) + 3  # three blocks no table names
    ids = rng.permutation(num_blocks)  # NOTE: scattered, out of order: nothing may assume contiguous blocks
    shape = (num_blocks, c.block_size, nkv, c.head_dim)
    k = np.full(shape, np.nan, np.float64)
    v = np.full(shape, np.nan, np.float64)
    tables = np.full((len(c.seqs), max(blocks_of) + 2), -1, np.int32)
    start = 0
    for i, ((ctx, _), nb) in enumerate(zip(c.seqs, blocks_of)):
        tables[i, :nb] = ids[start:start + nb]
        start += nb
        slots = k[tables[i, :nb]].reshape(-1, nkv, c.head_dim)
        slots[:ctx] = rng.uniform(-1, 1, slots[:ctx].shape)
        slots[ctx:] = 1e3  # past the context: attending to these would swamp the softmax
        k[tables[i, :nb]] = slots.reshape(nb, c.block_size, nkv, c.head_dim)
        vals = rng.uniform(-1, 1, (nb * c.block_size, nkv, c.head_dim))
        vals[ctx:] = 1e3
        v[tables[i, :nb]] = vals.reshape(nb, c.block_size, nkv, c.head_dim)
    query_lens = [n for _, n in c.seqs]
    num_tokens = sum(query_lens)
    q = rng.uniform(-2, 2, (num_tokens, nh, c.head_dim))
    token_seqs = np.repeat(np.arange(len(c.seqs)), query_lens).astype(np.int32)
    positions = np.concatenate([np.arange(ctx - n, ctx) for ctx, n in c.seqs]).astype(np.int32)
    return Step(q.astype(c.q_dtype), k.astype(c.cache), v.astype(c.cache), tables, token_seqs, positions,
                np.array([ctx for ctx, _ in c.seqs]), np.concatenate([[0], np.cumsum(query_lens)]),
                1.0 / np.sqrt(c.head_dim))


def reference(c: Case, s: Step) -> np.ndarray:
    """float64 softmax(scale q k^T) v of each query over its sequence's visible keys, read through the tables."""
    nh, nkv = c.heads
    out = np.zeros(s.q.shape, np.float64)
    q64 = s.q.astype(np.float64)
    for t, (seq, pos) in enumerate(zip(s.token_seqs, s.token_positions)):
        lo = 0 if c.window is None else max(0, pos - c.window + 1)
        keys = np.arange(lo, pos + 1)
        rows = s.tables[seq, keys // c.block_size], keys % c.block_size
        kk = np.repeat(s.k[rows].astype(np.float64), nh // nkv, axis=1)  # (n, nh, D)
        vv = np.repeat(s.v[rows].astype(np.float64), nh // nkv, axis=1)
        scores = np.einsum("nhd,hd->hn", kk, q64[t]) * s.scale
        e = np.exp(scores - scores.max(-1, keepdims=True))
        out[t] = np.einsum("hn,nhd->hd", e / e.sum(-1, keepdims=True), vv)
    return out


def _check(name: str, got, want) -> None:
    got64, want64 = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got64.shape == want64.shape, f"{name}: shape {got64.shape} != {want64.shape}"
    assert np.isfinite(got64).all(), f"{name}: non-finite values at {np.argwhere(~np.isfinite(got64))[:5]}"
    err = np.abs(got64 - want64).max()
    bound = TOL * max(1.0, float(np.abs(want64).max()))
    where = np.unravel_index(np.argmax(np.abs(got64 - want64)), got64.shape)
    assert err <= bound, f"{name}: max |error| {err:.3g} > {bound:.3g} at (token, head, dim) {where}"


def _strided_q(dev, q: np.ndarray, kv_heads: int):
    """q on the device as the first heads of a (T, H + 2 Hkv, D) buffer (a view with token stride (H + 2 Hkv) D)."""
    buf = np.zeros((q.shape[0], q.shape[1] + 2 * kv_heads, q.shape[2]), q.dtype)
    buf[:, :q.shape[1]] = q
    return dev.asarray(buf)[:, :q.shape[1]]


def _emulate_strided_views(monkeypatch) -> None:
    """Under the emulator, launch with a strided view's buffer in its place (the emulator takes C-contiguous
    arrays; the kernel reads the buffer through the view's strides from the same first element)."""
    inner = _launch.loader

    def load(family, name, defines=None, options=()):
        kernel = inner(family, name, defines, options)

        def launch(grid, block, args, shared_mem=0, stream=None):
            args = tuple(a.base if isinstance(a, np.ndarray) and not a.flags.c_contiguous and a.base is not None
                         and a.base.flags.c_contiguous and a.base.ctypes.data == a.ctypes.data else a for a in args)
            return kernel(grid, block, args, shared_mem=shared_mem, stream=stream)

        return launch

    monkeypatch.setattr(_launch, "loader", load)


# ------------------------------------------------------------------------------------------ the kernel
@pytest.mark.parametrize("device,case", on_devices(CASES, EMULATED))
def test_matches_the_reference_and_the_numpy_path(device, case, monkeypatch):
    dev = kernel_device(device, monkeypatch)
    if dev.emulated and case.strided_q:
        _emulate_strided_views(monkeypatch)
    s = make_step(case, 1)
    q = _strided_q(dev, s.q, case.heads[1]) if case.strided_q else dev.asarray(s.q)
    assert q.flags.c_contiguous != case.strided_q
    out = PA.paged_attention_forward(q, dev.asarray(s.k), dev.asarray(s.v), dev.asarray(s.tables),
                                     dev.asarray(s.token_seqs), dev.asarray(s.token_positions), s.scale,
                                     sliding_window=case.window)
    assert out.dtype == F32 and out.shape == s.q.shape
    got = dev.numpy(out)
    _check("kernel vs float64 reference", got, reference(case, s))
    meta = AttentionMetadata.build(s.tables, s.context_lens, s.query_start_loc, case.block_size)
    _check("kernel vs the NumPy path", got, paged_attention(s.q, s.k, s.v, meta, s.scale, sliding_window=case.window))


@pytest.mark.parametrize("device,case", on_devices(["order"], ["order"]))
def test_each_token_is_independent_of_the_batch(device, case, monkeypatch):
    """A sequence's outputs are the same bits alone or batched with others (one block per (token, head), the
    same key order): the engine's results do not depend on what else is scheduled."""
    dev = kernel_device(device, monkeypatch)
    c = Case(F16, 64, (4, 2), 4, ((23, 1), (17, 4), (40, 1)), window=9)
    s = make_step(c, 2)

    def run(tokens):
        return dev.numpy(PA.paged_attention_forward(
            dev.asarray(s.q[tokens]), dev.asarray(s.k), dev.asarray(s.v), dev.asarray(s.tables),
            dev.asarray(s.token_seqs[tokens]), dev.asarray(s.token_positions[tokens]), s.scale, c.window))

    batched = run(np.arange(len(s.q)))
    alone = run(np.arange(1, 5))  # the chunk of sequence 1 by itself
    assert np.array_equal(batched[1:5], alone)


def test_no_tokens_gives_an_empty_result():
    s = make_step(Case(F32, 64, (2, 1), 4, ((5, 1),)), 3)
    none = np.zeros(0, np.int32)
    out = PA.paged_attention_forward(s.q[:0], s.k, s.v, s.tables, none, none, s.scale)
    assert out.shape == (0, 2, 64) and out.dtype == F32


def test_slice_alignment():
    assert PA.slice_alignment(64, 2) == 4  # 2 halves per lane
    assert PA.slice_alignment(128, 4) == 16
    assert PA.slice_alignment(256, 4) == 16  # 32 bytes per lane, read as two 16-byte vectors
    assert PA.slice_alignment(80, 2) == 2  # 3 per lane: element by element
    assert PA.slice_alignment(96, 4) == 4


# ------------------------------------------------------------------------------------------ argument errors
def test_bad_arguments_name_the_problem():
    s = make_step(Case(F16, 64, (4, 2), 4, ((6, 2), (3, 1))), 4)
    args = dict(q=s.q, k_cache=s.k, v_cache=s.v, block_tables=s.tables, token_seqs=s.token_seqs,
                token_positions=s.token_positions, scale=s.scale)

    def call(**changes):
        return PA.paged_attention_forward(**{**args, **changes})

    with pytest.raises(TypeError, match="q must be float16, bfloat16, float32 or float64, got int32"):
        call(q=s.q.astype(np.int32))
    with pytest.raises(TypeError, match="k_cache and v_cache must have one dtype, got float16 and float32"):
        call(v_cache=s.v.astype(F32))
    with pytest.raises(TypeError, match="a CuPy \\(or, under the kernel emulator, NumPy\\) array, got list"):
        call(q=s.q.tolist())
    with pytest.raises(ValueError, match=r"q must be \(num_tokens, num_heads, head_dim\), got shape \(3, 256\)"):
        call(q=s.q.reshape(3, -1))
    with pytest.raises(ValueError, match=r"k_cache and v_cache must both be .* got \(.*\) and \(.*\)"):
        call(v_cache=s.v[:, :2])
    with pytest.raises(ValueError, match="q head_dim 32 != cache head_dim 64"):
        call(q=s.q[..., :32])
    with pytest.raises(ValueError, match="head_dim 300 is not supported \\(1 .. 256\\)"):
        big = np.zeros(s.k.shape[:3] + (300,), F16)
        call(q=np.zeros((3, 4, 300), F32), k_cache=big, v_cache=big)
    with pytest.raises(ValueError, match="3 query heads are not a multiple of 2 kv heads"):
        call(q=s.q[:, :3])
    with pytest.raises(ValueError, match="k_cache must be C-contiguous"):
        kt = np.ascontiguousarray(s.k.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
        call(k_cache=kt)
    with pytest.raises(ValueError, match="v_cache must start 4-byte aligned \\(head_dim 64, float16\\)"):
        raw = np.zeros(s.v.nbytes + 2, np.uint8)
        call(v_cache=raw[2:].view(F16).reshape(s.v.shape))
    with pytest.raises(TypeError, match="block_tables must be int32, got int64"):
        call(block_tables=s.tables.astype(np.int64))
    with pytest.raises(ValueError, match=r"block_tables must be 2-d, got shape \(\d+,\)"):
        call(block_tables=s.tables.reshape(-1))
    with pytest.raises(ValueError, match=r"token_seqs must have shape \(3,\), got shape \(2,\)"):
        call(token_seqs=s.token_seqs[:2])
    with pytest.raises(TypeError, match="token_positions must be int32, got float32"):
        call(token_positions=s.token_positions.astype(F32))
    with pytest.raises(ValueError, match="scale must be a finite number, got nan"):
        call(scale=float("nan"))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=f"sliding_window must be None or an int >= 1, got {bad!r}"):
            call(sliding_window=bad)


# ------------------------------------------------------------------------------------------ engine metadata
@pytest.fixture
def cuda_xp(request):
    """The CUDA backend's array module on the emulated device (FakeCupy and the kernel emulator)."""
    return request.getfixturevalue("emulated_cuda").backend.xp


def test_engine_metadata_on_cuda_runs_the_kernel_once_per_layer(cuda_xp):
    c = Case(BF16, 64, (4, 2), 4, ((9, 1), (14, 6), (3, 3)), window=8)
    s = make_step(c, 5)
    meta = AttentionMetadata.build(s.tables, s.context_lens, s.query_start_loc, c.block_size, cuda_xp)
    assert meta.decodes is None and meta.prefills == []  # the kernel needs no gathers
    assert np.array_equal(meta.kernel.token_seqs.get(), s.token_seqs)
    assert np.array_equal(meta.kernel.token_positions.get(), s.token_positions)
    assert meta.kernel.max_block_id == int(max(s.tables[i, :n].max() for i, n in enumerate((3, 4, 1))))
    want = paged_attention(s.q, s.k, s.v, AttentionMetadata.build(s.tables, s.context_lens, s.query_start_loc,
                                                                  c.block_size), s.scale, sliding_window=c.window)
    for layer in range(2):  # the metadata serves every layer
        out = paged_attention(cuda_xp.asarray(s.q), cuda_xp.asarray(s.k), cuda_xp.asarray(s.v), meta, s.scale,
                              sliding_window=c.window)
        assert type(out) is type(cuda_xp.asarray(s.q)) and out.dtype == F32
        _check(f"layer {layer}", out.get(), want)
    assert emu.LAUNCHES.get("paged_attention.paged_attention_fwd") == 2, emu.LAUNCHES


def test_engine_metadata_on_cuda_checks_the_block_ids(cuda_xp):
    s = make_step(Case(F32, 64, (2, 1), 4, ((6, 2), (3, 1))), 6)
    bad = s.tables.copy()
    bad[1, 0] = -2
    with pytest.raises(ValueError, match=r"block ids must be in \[0, 2\*\*31\), got -2 \.\. "):
        AttentionMetadata.build(bad, s.context_lens, s.query_start_loc, 4, cuda_xp)
    meta = AttentionMetadata.build(s.tables, s.context_lens, s.query_start_loc, 4, cuda_xp)
    small = cuda_xp.asarray(s.k[:meta.kernel.max_block_id])
    with pytest.raises(ValueError, match=f"the block tables name block {meta.kernel.max_block_id}, but the cache "
                                         f"has {meta.kernel.max_block_id} blocks"):
        paged_attention(cuda_xp.asarray(s.q), small, small, meta, s.scale)
