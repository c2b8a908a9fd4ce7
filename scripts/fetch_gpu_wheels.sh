#!/usr/bin/env bash
# Fill .whl/ (ignored by git) with what scripts/gpu_session.sh installs on the lent GPU machine, which has
# Python 3.12 with CuPy, torch, transformers, numpy and pytest but no registry: numba and llvmlite (the CPU
# kernels; zigtensor imports them), gguf, the serving stack, pytest-xdist, with their dependencies.
#
# The device tool carries 64 MiB in all (the working tree included), and llvmlite's wheel alone is 60 MB: its
# LLVM library (179 MB unpacked) is stripped of unneeded symbols and the package packed as llvmlite.tar.xz
# (about 37 MB), which gpu_session.sh unpacks beside the wheels. Takes about two minutes (xz -9).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.whl
rm -rf "$DEST" && mkdir -p "$DEST"
pip download -q --python-version 3.12 --only-binary=:all: -d "$DEST" numba gguf fastapi uvicorn pytest-xdist
# already on the machine (and the pins its torch and transformers were installed against)
rm -f "$DEST"/numpy-* "$DEST"/pytest-* "$DEST"/pluggy-* "$DEST"/iniconfig-* "$DEST"/packaging-* \
    "$DEST"/pygments-* "$DEST"/typing_extensions-* "$DEST"/tqdm-* "$DEST"/pyyaml-*
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unzip -q "$DEST"/llvmlite-*.whl -d "$work"
strip --strip-unneeded "$work"/llvmlite/binding/libllvmlite.so
tar cf - -C "$work" . | xz -9 -T0 > "$DEST/llvmlite.tar.xz"
rm "$DEST"/llvmlite-*.whl
du -ch "$DEST"/* | tail -n 1
