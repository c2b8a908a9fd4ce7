#!/usr/bin/env bash
# One run on a lent GPU machine (the `device` tool): the CUDA tests, then the GPU figures the issues ask for,
# every command bounded by its own timeout and by what is left of the run's budget, so that one stuck stage
# cannot eat the run and the results are always packed before the device tool's limit:
#   run(command="bash scripts/gpu_session.sh", carry=[".whl"], timeout_s=590)
# Stages: STAGES="tests ops train quant generate serve" (default all, in that order); BUDGET seconds for all of
# them (default 560: the packing and the tool's start fit in a 590 s call). A session has 15 minutes of device
# time: the first call runs everything the budget allows (correctness first), a second call the stages the
# first one skipped (their names are in skipped.txt).
#
# What comes back: the device tool returns at most 8 files from $OUT, so everything is written under a work
# folder and packed into $OUT/results.tgz (checkpoints left out), beside copies of the few summary files.
#
# The machine (Python 3.12) has CuPy, torch and transformers but no numba (zigtensor's CPU kernels import it),
# fastapi, uvicorn or gguf: run scripts/fetch_gpu_wheels.sh here first, which fills .whl/ (ignored by git,
# carried by the run; within the tool's 64 MiB).
# The CUDA cases run in pytest-xdist workers where it is carried (PYTEST_WORKERS, default 12): each new kernel
# define set is compiled by NVRTC on first use (0.3-1.5 s each, hundreds in the suite), so one process
# would spend minutes of the device time compiling; the workers share the disk cache (atomic renames).
set -u
OUT=${OUT:-/tmp/zt_gpu}
WORK=${WORK:-/tmp/zt_gpu_work}
mkdir -p "$OUT" "$WORK"
STAGES=${STAGES:-"tests ops train quant generate serve"}
END=$((SECONDS + ${BUDGET:-560}))
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site
    [ -f .whl/llvmlite.tar.xz ] && tar xJf .whl/llvmlite.tar.xz -C /tmp/site
fi
export PYTHONPATH=$PWD/library:$PWD${PYTHONPATH:+:$PYTHONPATH}
# `zt` as a program on PATH, not a shell function: timeout runs programs (nothing installs zigtensor there)
mkdir -p /tmp/zt_bin
printf '#!/bin/sh\nexec python3 -m zigtensor_cli "$@"\n' > /tmp/zt_bin/zt
chmod +x /tmp/zt_bin/zt
export PATH=/tmp/zt_bin:$PATH
stage() { case " $STAGES " in *" $1 "*) return 0;; *) return 1;; esac; }
# bounded LIMIT LOG CMD...: CMD with its output in $WORK/LOG, for at most LIMIT seconds and never past the
# budget; a command there is no time left for is listed in skipped.txt instead
bounded() {
    local limit=$1 log=$2 left=$((END - SECONDS))
    shift 2
    if [ "$left" -lt 30 ]; then
        echo "$log: $*" >> "$WORK/skipped.txt"
        return 0
    fi
    echo "[$(date +%T)] $log (limit $((left < limit ? left : limit)) s): $*" >> "$WORK/timeline.txt"
    timeout $((left < limit ? left : limit)) "$@" > "$WORK/$log" 2>&1
    local rc=$?  # (before any $(...), which sets $? itself)
    echo "[$(date +%T)] $log exit $rc" >> "$WORK/timeline.txt"
}

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv > "$WORK/gpu.txt" 2>&1
python3 -c "import cupy, torch; print('cupy', cupy.__version__, 'torch', torch.__version__)" >> "$WORK/gpu.txt" 2>&1

if stage tests; then  # end-to-end scenarios first, then every [cuda] case (the emulator and CPU cases ran in CI)
    bounded 150 pytest_end_to_end.log python3 -m pytest -q -p no:cacheprovider -rs -k gpu \
        tests/test_cuda_end_to_end_emulated.py
    # (-v under xdist: a line per finished case, so a timeout still leaves which failed)
    workers=(-q)
    python3 -c "import xdist" 2>/dev/null && workers=(-n "${PYTEST_WORKERS:-12}" -v)
    bounded 400 pytest_cuda.log python3 -m pytest -p no:cacheprovider -rfs "${workers[@]}" -m cuda \
        tests/test_cuda_*.py tests/
fi
if stage ops; then  # each family group alone: the JSON is written at the end of a run
    bounded 100 bench_ops.txt zt bench ops --quick \
        --family copy,elementwise,reduce,softmax,norm,cross_entropy,embedding,optim,pool,random \
        --json "$WORK/bench_ops.jsonl"
    for fam in gemm attention conv quant; do
        bounded 90 "bench_$fam.txt" zt bench ops --quick --family $fam --json "$WORK/bench_$fam.jsonl"
    done
fi
if stage train; then  # the recipes issues 4 and 5 name, on the GPU; accuracy/loss lines are in the metrics
    bounded 120 train_cnn.txt zt train recipes/fashion_cnn.toml --device cuda --out "$WORK/run_cnn"
    bounded 240 train_gpt.txt zt train recipes/shakespeare_gpt.toml --device cuda --out "$WORK/run_gpt"
    bounded 90 bench_train_gpt.txt zt bench train shakespeare_gpt --device cuda --steps 10
    # issue 5: the GPT recipe scaled to GPT-2 small (12 layers, width 768, context 1024) in bf16 autocast
    bounded 150 bench_train_gpt2_small_bf16.txt zt bench train shakespeare_gpt --device cuda --steps 5 \
        --batch-size 8 --set model.n_layer=12 --set model.n_head=12 --set model.n_embd=768 \
        --set data.block_size=1024 --set 'train.dtype="bfloat16"'
fi
if stage quant; then  # issue 8: batch-1 int4 decode against bf16, a 1B-class random Llama
    bounded 150 bench_quant_decode.txt zt bench quant-decode --device cuda
fi
if stage generate; then  # issue 6: batch 1 and 8 against transformers on the GPU, and the decode roofline
    bounded 120 bench_generate.txt zt bench generate --model "${MODEL:-smollm2}" --device cuda --dtype bfloat16
fi
if stage serve; then  # issue 7: the engine's sweep over batch sizes 1, 8, 32
    bounded 150 bench_serve.txt zt bench serve --model "${MODEL:-smollm2}" --device cuda --batch-size 1,8,32 \
        --num-prompts 64 --input-len 128 --output-len 64 --json "$WORK/bench_serve.jsonl"
fi

# pack: everything but checkpoints in one file, and the summaries beside it (8 files at most come back)
tar czf "$OUT/results.tgz" -C "$WORK" --exclude=checkpoints --exclude='*.safetensors' . 2>/dev/null
for f in gpu.txt timeline.txt skipped.txt pytest_cuda.log bench_generate.txt bench_quant_decode.txt; do
    [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUT/"
done
tail -n 3 "$WORK"/timeline.txt "$WORK"/*.log "$WORK"/*.txt 2>/dev/null | tail -n 120
