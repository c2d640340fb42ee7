#!/usr/bin/env bash
# On the CPU machine, before bench/deploy_gpu.sh runs on the GPU machine: what it needs, in ignored
# folders to carry (.serve-gpu, .whl-serve, .whl-train; ~50 MB together).
#   DEMO=DIR bash bench/deploy_inputs.sh   (DIR: a finished `kit demo`, default demo/)
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
# the trained demo (base, adapter, merged), widened for AWQ: the drift stage's one trained model
[ -f .serve-gpu/trained/merged/config.json ] || {
  demo=${DEMO:-demo}
  if [ -f "$demo/merged/config.json" ]; then "$py" bench/pad_for_awq.py "$demo" .serve-gpu/trained
  else echo "no trained demo in $demo/ (make demo, or DEMO=DIR): the drift stage will have no model"; fi
}
[ -d .whl-serve ] || ../shared/gpu/fetch-wheels.sh serve .whl-serve
[ -d .whl-train ] || ../shared/gpu/fetch-wheels.sh train .whl-train
du -sh .serve-gpu .whl-serve .whl-train
