#!/usr/bin/env bash
# On the CPU machine, before bench/deploy_gpu.sh runs on the GPU machine: what it needs, in ignored
# folders to carry (.serve-gpu, .whl-serve, .whl-train; ~45 MB together).
#   bash bench/deploy_inputs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
kit=${KIT:-.venv/bin/kit}
py=${PYTHON:-.venv/bin/python}
# the tiny InternLM2 whose tokenizer, chat template and remote code the 1.8B-shaped model takes
[ -f .serve-gpu/tiny/config.json ] ||
  "$py" -c 'from pathlib import Path; from kit.tiny import build_tiny_model; build_tiny_model(Path(".serve-gpu/tiny"), character="bajie")'
# the held-out split the drift gate scores (datasets/*/built is not tracked)
[ -f .serve-gpu/data/eval.jsonl ] || "$kit" data build bajie -o .serve-gpu/data
[ -d .whl-serve ] || ../shared/gpu/fetch-wheels.sh serve .whl-serve
[ -d .whl-train ] || ../shared/gpu/fetch-wheels.sh train .whl-train
du -sh .serve-gpu .whl-serve .whl-train
