#!/usr/bin/env bash
# GPU-machine merge check (docs/merge.md "Measured"): bench/merge_gpu.py trains a short QLoRA run of
# recipes/bajie.py on the InternLM2-1.8B-shaped model, then merges it bf16 on the GPU, fp16 on the GPU
# and bf16 on the CPU, each with kit merge's checks. Carry .whl-train (and .kit-cache if built here).
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p "$O"
REPO=$PWD
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 KIT_HOME=$PWD COLUMNS=200 TOKENIZERS_PARALLELISM=false
[ -d .kit-cache ] && export KIT_CACHE=$PWD/.kit-cache
pipi() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$@"; }
pipi /tmp/site-train .whl-train/*.whl || { echo "FAILED: install train"; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site-kit . >/dev/null \
  || { echo "FAILED: install kit"; exit 1; }
export PYTHONPATH=/tmp/site-kit:/tmp/site-train
cd /tmp
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$O/summary.txt"
timeout "${MERGE_GPU_TIMEOUT_S:-540}" python3 "$REPO/bench/merge_gpu.py" --out "$O" 2>&1 | tail -40 | tee -a "$O/summary.txt"
