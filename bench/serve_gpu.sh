#!/usr/bin/env bash
# GPU-machine check of `kit serve` (LMDeploy) and `kit quantize` on an InternLM2-1.8B-shaped model.
#   bench/serve_gpu.sh serve      build the model; kit serve base+tuned in a 30% GPU slice; openai client
#   bench/serve_gpu.sh quantize   build the model; kit quantize --w4a16 --kv int8; serve it in a 10% slice
#   bench/serve_gpu.sh overhead   build the model; kit serve vs bare LMDeploy, same load (bench/serve_overhead.py)
# Needs (carried): .whl-serve (shared/gpu/fetch-wheels.sh serve) and .serve-gpu/tiny (a kit.tiny model:
# tokenizer, chat template, InternLM2 remote code). Logs and results go to $OUT.
set -uo pipefail
stage=${1:?serve|quantize|overhead}
O=${OUT:-/tmp/out}; mkdir -p "$O"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 KIT_HOME=$PWD KIT_LMDEPLOY_PYTHON=python3
say() { echo "== $(date +%T) $*" | tee -a "$O/summary.txt"; }
gpu_mem() { say "gpu: $(nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader) | apps: $(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | tr '\n' ' ')"; }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-serve .whl-serve/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site-kit . >/dev/null || exit 1
export PYTHONPATH=/tmp/site-kit:/tmp/site-serve
KIT=(python3 -c 'from kit.cli import main; main()')  # an array, not a function: `&` then gives kit's own pid
SYSTEM=$(python3 -c 'from kit.persona import persona_for; print(persona_for("bajie").system_prompt)')
M=/tmp/models/internlm2-1_8b-shape
[ -f "$M/model.safetensors" ] || { say "build model"; python3 bench/serve_build_model.py .serve-gpu/tiny "$M" 2>&1 | tail -1 | tee -a "$O/summary.txt"; }
cd /tmp  # kit serve writes compare votes and LMDeploy its logs relative to here

# serve_and_check LOG PORT CLIENT_TARGETS... -- KIT_SERVE_ARGS...
serve_and_check() {
  local log=$1; shift; local targets=(); while [ "$1" != "--" ]; do targets+=("$1"); shift; done; shift
  say "kit serve $*"; local t0=$SECONDS
  "${KIT[@]}" serve "$@" >"$O/$log" 2>&1 & local pid=$!
  until grep -q "Ctrl-C stops everything" "$O/$log"; do
    if ! kill -0 $pid 2>/dev/null || [ $((SECONDS - t0)) -gt 420 ]; then say "serve failed to start"; tail -30 "$O/$log"; kill -TERM $pid; return 1; fi
    sleep 2
  done
  say "ready after $((SECONDS - t0))s"; grep -E "→|starting" "$O/$log" | tee -a "$O/summary.txt"; gpu_mem
  python3 "$OLDPWD/bench/serve_client.py" "${targets[@]}" --system "$SYSTEM" --concurrency 32 --max-tokens 128 2>&1 | tee -a "$O/summary.txt"
  kill -TERM $pid; wait $pid; say "kit serve exit code $? after SIGTERM"; sleep 2; gpu_mem
}

case $stage in
  serve)
    serve_and_check serve.log http://127.0.0.1:23333/v1=base http://127.0.0.1:23334/v1=tuned -- \
      --engine lmdeploy --base "$M" --tuned "$M" --no-ui --gpu-fraction 0.3 ;;
  quantize)
    say "kit quantize"; t0=$SECONDS
    "${KIT[@]}" quantize "$M" --w4a16 --kv int8 -o /tmp/models/w4a16 --calib-samples 32 --calib-seqlen 512 2>&1 | tee "$O/quantize.log" | tail -8 | tee -a "$O/summary.txt"
    say "quantize took $((SECONDS - t0))s"; cat /tmp/models/w4a16/kit_quant.json >>"$O/summary.txt"
    du -sh "$M" /tmp/models/w4a16 | tee -a "$O/summary.txt"
    serve_and_check serve_w4a16.log http://127.0.0.1:23340/v1=tuned -- \
      --engine lmdeploy --tuned /tmp/models/w4a16 --no-ui --gpu-fraction 0.1 --port 23340 ;;
  overhead)
    python3 "$OLDPWD/bench/serve_overhead.py" "$M" --logs "$O" --out "$O/serve_overhead.json" 2>&1 | tee -a "$O/summary.txt" ;;
esac
