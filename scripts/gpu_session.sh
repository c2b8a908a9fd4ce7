#!/usr/bin/env bash
# One run on a lent GPU machine (the `device` tool): the CUDA tests, then the GPU figures the issues ask for,
# each stage logged under $OUT and bounded by its own timeout so that one stuck stage cannot eat the run.
#   run(command="bash scripts/gpu_session.sh", carry=[".whl"], timeout_s=590)
# Stages: STAGES="tests ops train quant generate" (default all). The timeouts add up to more than a session's
# device time (15 minutes): run the correctness stage first (STAGES=tests, at most 9 minutes), then what is
# left of the time on the figures that decide open issues (STAGES="ops quant" or "train generate"). The machine
# (Python 3.12) has CuPy, torch and transformers but no numba (zigtensor.quant imports it), fastapi, uvicorn or
# gguf; fetch their wheels into .whl/ here first (ignored by git; carried by the run):
#   pip download --python-version 3.12 --only-binary=:all: --no-deps -d .whl numba llvmlite gguf fastapi \
#       starlette uvicorn pydantic pydantic-core annotated-types typing-inspection h11 anyio sniffio click \
#       pytest-xdist execnet
# The CUDA cases run in pytest-xdist workers where it is carried (PYTEST_WORKERS, default 12): each new kernel
# define set is compiled by NVRTC on first use (0.3-1.5 s each, hundreds of sets in the suite), so one process
# would spend minutes of the device time compiling; the workers share the disk cache (atomic renames).
set -u
OUT=${OUT:-/tmp/zt_gpu}
mkdir -p "$OUT"
STAGES=${STAGES:-"tests ops train quant generate"}
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/library:$PWD${PYTHONPATH:+:$PYTHONPATH}
zt() { python3 -m zigtensor_cli "$@"; }
stage() { case " $STAGES " in *" $1 "*) return 0;; *) return 1;; esac; }

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import cupy, torch; print('cupy', cupy.__version__, 'torch', torch.__version__)" >> "$OUT/gpu.txt" 2>&1

if stage tests; then  # end-to-end scenarios first, the kernels' own tests, then every [cuda] case of the suite
    timeout 150 python3 -m pytest -q -p no:cacheprovider -rs -k gpu tests/test_cuda_end_to_end_emulated.py \
        > "$OUT/pytest_end_to_end.log" 2>&1
    # every GPU case (kernels first: test_cuda_*; the emulator and CPU cases already ran in CI); the log fills as
    # it goes, so a timeout still leaves what passed and failed (the first run compiles every kernel variant)
    # (-v under xdist: a line per finished case, so a timeout still leaves which failed)
    workers=(-q)
    python3 -c "import xdist" 2>/dev/null && workers=(-n "${PYTEST_WORKERS:-12}" -v)
    timeout 400 python3 -m pytest -p no:cacheprovider -rfs "${workers[@]}" -m cuda tests/test_cuda_*.py tests/ \
        > "$OUT/pytest_cuda.log" 2>&1
fi
if stage ops; then  # each family group under its own timeout: the JSON is written at the end of a run
    timeout 100 zt bench ops --quick --family copy,elementwise,reduce,softmax,norm,cross_entropy,embedding,optim,pool,random \
        --json "$OUT/bench_ops.jsonl" > "$OUT/bench_ops.txt" 2>&1
    for fam in gemm attention conv quant; do
        timeout 90 zt bench ops --quick --family $fam --json "$OUT/bench_$fam.jsonl" > "$OUT/bench_$fam.txt" 2>&1
    done
fi
if stage train; then  # the recipes issue 5 names, on the GPU, shortened; accuracy/loss lines are in metrics
    timeout 120 zt train recipes/fashion_cnn.toml --device cuda --out "$OUT/run_cnn" > "$OUT/train_cnn.txt" 2>&1
    timeout 90 zt bench train shakespeare_gpt --device cuda --steps 10 > "$OUT/bench_train_gpt.txt" 2>&1
    # issue 5: the GPT recipe scaled to GPT-2 small (12 layers, width 768, context 1024) in bf16 autocast
    timeout 150 zt bench train shakespeare_gpt --device cuda --steps 5 --batch-size 8 --set model.n_layer=12 \
        --set model.n_head=12 --set model.n_embd=768 --set data.block_size=1024 --set 'train.dtype="bfloat16"' \
        > "$OUT/bench_train_gpt2_small_bf16.txt" 2>&1
fi
if stage quant; then  # issue 8: batch-1 int4 decode against bf16, a 1B-class random Llama
    timeout 150 zt bench quant-decode --device cuda > "$OUT/bench_quant_decode.txt" 2>&1
fi
if stage generate; then
    timeout 120 zt bench generate --model "${MODEL:-smollm2}" --device cuda --dtype bfloat16 \
        > "$OUT/bench_generate.txt" 2>&1
fi
tail -n 3 "$OUT"/*.log "$OUT"/*.txt
