"""How fast zigtensor reads safetensors files, against the raw disk-to-memory copy rate of the same file.

    python bench/safetensors_load.py                 # ~500 MB float32 file, warm and cold page cache
    python bench/safetensors_load.py --size-mb 2000 --reps 5 --dir /mnt/nvme

Writes a float32 file with the shapes of a small Llama-style model (embedding, attention with grouped KV
heads, gated MLP, norms, untied LM head; layers added until the file reaches --size-mb) into a temporary
folder, then measures, all in one run:

- raw readinto: open the file and readinto a preallocated (already touched) bytearray, the copy rate that
  any loader that copies is bounded by;
- safe_open, time to first tensor: open, validate the header, map the file, get the first tensor and read
  its first element;
- load_file: the call alone (lazy: it maps the file and builds views), then load_file plus touching every
  page of every tensor (all data resident and mapped, the fair comparison with readinto), and load_file plus
  copying every tensor into fresh memory;
- write: save_file (atomic: temporary file, fsync, rename, fsync of the folder).

"cold" runs drop the file's pages from the page cache first (posix_fadvise DONTNEED on this file only), so
they include the disk; "warm" runs read from the page cache. Times are the best of --reps runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time

import numpy as np

import zigtensor as zt

PAGE = 4096


def model_shapes(target_bytes: int, hidden=1024, intermediate=2816, vocab=32000, heads=16, kv_heads=4):
    """Llama-style float32 parameter shapes, with as many layers as it takes to reach target_bytes."""
    kv = hidden // heads * kv_heads
    layer = {"self_attn.q_proj.weight": (hidden, hidden), "self_attn.k_proj.weight": (kv, hidden),
             "self_attn.v_proj.weight": (kv, hidden), "self_attn.o_proj.weight": (hidden, hidden),
             "mlp.gate_proj.weight": (intermediate, hidden), "mlp.up_proj.weight": (intermediate, hidden),
             "mlp.down_proj.weight": (hidden, intermediate), "input_layernorm.weight": (hidden,),
             "post_attention_layernorm.weight": (hidden,)}
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,),
              "lm_head.weight": (vocab, hidden)}
    nbytes = lambda s: 4 * int(np.prod(s))  # noqa: E731
    total, i = sum(nbytes(s) for s in shapes.values()), 0
    while total < target_bytes:
        for k, s in layer.items():
            shapes[f"model.layers.{i}.{k}"] = s
            total += nbytes(s)
        i += 1
    return shapes, i


def drop_cache(path: str) -> None:
    gc.collect()  # no mapping of the file may remain, or its pages stay
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def best(fn, reps: int, cold_path: str | None) -> float:
    times = []
    for _ in range(reps):
        if cold_path:
            drop_cache(cold_path)
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def raw_readinto(path: str, buf: bytearray) -> None:
    view, pos = memoryview(buf), 0
    with open(path, "rb", buffering=0) as f:
        while pos < len(buf):
            got = f.readinto(view[pos:])
            if not got:
                break
            pos += got
    assert pos == len(buf)


def first_tensor(path: str) -> None:
    with zt.io.safe_open(path) as f:
        t = f.get_tensor(f.offset_keys()[0])
        t.numpy().reshape(-1)[0].item()


def touch_pages(tensors: dict) -> int:
    s = 0
    for t in tensors.values():
        a = t.numpy().reshape(-1).view(np.uint8)
        s += int(a[::PAGE].sum())
    return s


def load_and_touch(path: str) -> None:
    touch_pages(zt.load_file(path))


def load_and_copy(path: str) -> None:
    for t in zt.load_file(path).values():
        np.array(t.numpy(), copy=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=float, default=500.0, help="size of the file to write (MB, 1e6 bytes)")
    p.add_argument("--reps", type=int, default=3, help="runs per measurement; the best is reported")
    p.add_argument("--dir", default=None, help="folder for the temporary file (default: the system's)")
    p.add_argument("--no-cold", action="store_true", help="skip the cold page cache runs")
    args = p.parse_args(argv)

    folder = tempfile.mkdtemp(prefix="zt-bench-", dir=args.dir)
    path = os.path.join(folder, "model.safetensors")
    try:
        shapes, layers = model_shapes(int(args.size_mb * 1e6))
        gen = np.random.default_rng(0)
        tensors = {k: zt.from_numpy(gen.random(s, dtype=np.float32)) for k, s in shapes.items()}
        t0 = time.perf_counter()
        zt.save_file(tensors, path, metadata={"format": "pt"})
        write_s = time.perf_counter() - t0
        del tensors
        size = os.path.getsize(path)
        gb = size / 1e9
        buf = bytearray(size)  # preallocated and touched (zero-filled), outside the timing

        rows = {}
        modes = [("warm", None)] + ([] if args.no_cold else [("cold", path)])
        for mode, cold in modes:
            raw_readinto(path, buf)  # warm the cache (cold runs drop it again)
            rows.setdefault("raw readinto (preallocated bytearray)", {})[mode] = \
                best(lambda: raw_readinto(path, buf), args.reps, cold)
            rows.setdefault("safe_open: time to first tensor", {})[mode] = best(lambda: first_tensor(path),
                                                                                  args.reps, cold)
            rows.setdefault("load_file (returns; lazy views)", {})[mode] = best(lambda: zt.load_file(path),
                                                                                  args.reps, cold)
            rows.setdefault("load_file + touch every page", {})[mode] = best(lambda: load_and_touch(path),
                                                                               args.reps, cold)
            rows.setdefault("load_file + copy every tensor", {})[mode] = best(lambda: load_and_copy(path),
                                                                                args.reps, cold)

        print(f"file: {size / 1e6:.1f} MB, {len(shapes)} float32 tensors (Llama-style, {layers} layers, "
              f"hidden 1024, vocab 32000) in {folder}")
        print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, NumPy {np.__version__}; "
              f"best of {args.reps}")
        print(f"write: save_file {write_s * 1e3:.0f} ms, {gb / write_s:.2f} GB/s (atomic, fsynced)")
        head = f"{'':40s}" + "".join(f"{m + ' ms':>12s}{m + ' GB/s':>12s}{'% of raw':>10s}" for m, _ in modes)
        print(head)
        raw = rows["raw readinto (preallocated bytearray)"]
        for label, by_mode in rows.items():
            line = f"{label:40s}"
            for mode, _ in modes:
                s = by_mode[mode]
                bulk = "time to first" not in label and "returns" not in label
                rate = f"{gb / s:12.2f}" if bulk else f"{'':>12s}"
                pct = f"{100 * raw[mode] / s:9.0f}%" if bulk else f"{'':>10s}"
                line += f"{s * 1e3:12.1f}{rate}{pct}"
            print(line)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
