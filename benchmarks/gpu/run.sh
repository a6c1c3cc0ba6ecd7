#!/bin/bash
# The prepared GPU check (issue: measured on a GPU the first time one is lent), one command:
#   bash benchmarks/gpu/run.sh [--tiny]        # OUT=folder for the results (the device tool sets it)
# 1. installs the wheels carried in .whl/ (what the GPU image lacks; benchmarks/gpu/fetch_wheels.sh);
# 2. benchmarks/train_gpu.py: the 0.8B and 2B fine-tunes at real shapes (their own tiling of the page mix,
#    the recipe's micro-batch and accumulation): single-device with activation checkpointing on and off,
#    padded and packed (packed again under flex attention); FSDP2; then the largest micro-batch under an H100's 80 GB and under the device's
#    memory (JSON after every row, each part under its own time limit);
# 3. benchmarks/gpu/fit_smoke.py: 20 steps of the 0.8B fine-tune through `h2ovl fit` (bf16, FSDP2, MLflow).
# --tiny runs the same on CPU at the tiny shapes (the suite does, so this cannot rot). Budget: <= 8 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-outputs/gpu}
mkdir -p "$OUT"
TINY=""
[ "${1:-}" = "--tiny" ] && TINY="--tiny"
PYTHON=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
if [ -n "$TINY" ]; then
  $PYTHON benchmarks/train_gpu.py --tiny --stages 0.8b/finetune --modes single --checkpointing off \
    --samples 8 --accumulate 2 --steps 1 --warmup 1 --out "$OUT/train_gpu.json"
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
  STAGES="--stages 0.8b/finetune 2b/finetune --warmup 1 --steps 1"
  timeout 170 $PYTHON benchmarks/train_gpu.py $STAGES --modes single --out "$OUT/train_gpu.json" || echo "rows ended with $?"
  timeout 60 $PYTHON benchmarks/train_gpu.py $STAGES --modes single --checkpointing on --layouts packed \
    --attention flex_attention --out "$OUT/train_gpu_flex.json" || echo "flex attention rows ended with $?"
  timeout 70 $PYTHON benchmarks/train_gpu.py $STAGES --modes fsdp --checkpointing on --layouts padded \
    --out "$OUT/train_gpu_fsdp.json" || echo "FSDP rows ended with $?"
  timeout 90 $PYTHON benchmarks/train_gpu.py $STAGES --modes --max-batch --max-batch-limit 32 \
    --out "$OUT/train_gpu_max_batch.json" || echo "micro-batch search ended with $?"
fi
$PYTHON benchmarks/gpu/fit_smoke.py $TINY --out "$OUT/fit"
