#!/usr/bin/env bash
# GPU-machine deploy bench (issue 18) on an H200, LMDeploy 0.18 PyTorch engine, in stages (DEPLOY_STAGES, in
# the order below, drift before speed; one call of at most ~9.5 minutes fits "ready two w4a16" or "drift speed"):
#   ready   kit serve, one server for base + adapter (30% slice) on the 1.8B-shaped model: first a cold
#           start (empty Triton kernel cache, LMDeploy at INFO: where the time goes), then the start a
#           user sees from then on (kernels cached): ready_s, one_server_mib, plain == stream, persona
#           default, single-stream tokens/s (the second request; the first is timed apart)
#   two     kit serve --two-servers (30% slice): two_server_mib and its ready time
#   w4a16   kit quantize --w4a16 (in the background from the start), then that model served twice in
#           10% slices, as quantized and with --kv int8: speed, plain == stream
#   eager   the ready stage's warm start with --eager-mode (no CUDA graphs), if time is left
#   speed   the 1.8B-shaped merged model and its W4A16 side by side (10% slices each): single stream and
#           32 streams, medians of 3 after the first request
#   drift   one trained model through every stage: the `kit demo` models widened for AWQ
#           (bench/pad_for_awq.py) as adapter (PEFT on base) -> merged -> merged served by LMDeploy ->
#           W4A16 -> W4A16 + KV int8, compared by `kit eval --drift`; every server's plain vs streamed reply
# The 1.8B-shaped model has random weights (bench/serve_build_model.py); its adapter is a random LoRA on
# recipes/bajie.py's GPU targets and the merged model its merge (bench/deploy_models.py).
# Before: bash bench/deploy_inputs.sh (here); carry .whl-serve, .whl-train and .serve-gpu:
#   run(command="DEPLOY_STAGES='ready two w4a16' bash bench/deploy_gpu.sh", carry=[...])
#   run(command="DEPLOY_STAGES='drift speed' bash bench/deploy_gpu.sh", carry=[...])
# $OUT gets summary.txt (every step, as it happens), deploy.json (the results, rewritten after each
# stage), streams.jsonl (raw plain and streamed answers), drift.png and logs.tar.gz (server logs
# with a time stamp on every line, client output, the drift report).
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p "$O"
L=/tmp/deploy-logs; rm -rf "$L"; mkdir -p "$L"
BUDGET=${DEPLOY_BUDGET_S:-560}  # seconds; stages that no longer fit are skipped, and say so
STAGES=" ${DEPLOY_STAGES:-ready two w4a16} "
has() { [[ "$STAGES" == *" $1 "* ]]; }
REPO=$PWD
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 KIT_HOME=$PWD KIT_LMDEPLOY_PYTHON=python3 COLUMNS=400
say() { echo "== $(date +%T) +${SECONDS}s $*" | tee -a "$O/summary.txt"; }
fact() { printf '{"%s": %s}\n' "$1" "$2" >>"$L/facts.jsonl"; say "$1 = $2"; }  # VALUE is JSON
left() { echo $((BUDGET - SECONDS)); }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$1" "$(now)"; }
# Line-buffered: a plain `tr` in a pipe holds its output until it exits, so every stamp was the last.
stamp() { stdbuf -oL tr '\r' '\n' | while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done; }
gpu_line() { echo "$(nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader) | apps: $(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | tr '\n' ' ')"; }
gpu_used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }
tree_pids() {  # PID and all its descendants
  local all=$1 frontier=$1 next p
  while [ -n "$frontier" ]; do
    next=""; for p in $frontier; do next+=" $(ps -o pid= --ppid "$p" | tr '\n' ' ')"; done
    frontier=$(echo $next); all+=" $frontier"
  done; echo "$all"
}
tree_mib() {  # GPU memory of a process tree, from nvidia-smi's per-process list
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits |
    awk -F', *' -v pids=" $(tree_pids "$1") " 'index(pids, " " $1 " ") {s += $2} END {print s + 0}'
}
bundle() {  # what comes back: deploy.json from the facts so far, the logs as one file
  python3 "$REPO/bench/deploy_report.py" "$L" "$O/deploy.json" >>"$O/summary.txt" 2>&1
  cp "$L/streams.jsonl" "$O/" 2>/dev/null; cp "$L/drift/drift.png" "$O/" 2>/dev/null
  tar -czf "$O/logs.tar.gz" -C "$L" . 2>/dev/null
}

# ---- install, build ----
say "install (budget ${BUDGET}s)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-serve .whl-serve/*.whl || { say "FAILED: install .whl-serve"; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site-kit . >/dev/null || { say "FAILED: install kit"; exit 1; }
# kit eval's tested stack (transformers 4.48 + peft 0.14, as on the CPU machine) for the drift gate only
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-eval \
  .whl-train/transformers-*.whl .whl-train/tokenizers-*.whl .whl-train/huggingface_hub-*.whl .whl-train/peft-*.whl \
  || say "install of the eval stack failed: the drift gate runs on the image's transformers"
export PYTHONPATH=/tmp/site-kit:/tmp/site-serve
# as `pip install` leaves a user's packages: compiled (--no-compile above only to do it in parallel here)
python3 -m compileall -q -j 0 /tmp/site-serve /tmp/site-kit /tmp/site-eval >/dev/null 2>&1; say "bytecode compiled"
# LMDeploy's Triton kernels compile on first use into this cache; empty, the first start is a cold one
export TRITON_CACHE_DIR=/tmp/triton-cache; rm -rf "$TRITON_CACHE_DIR"
KIT=(python3 -c 'from kit.cli import main; main()')  # an array, not a function: `&` then gives kit's own pid
say "serve stack: $(python3 -c 'import torch, transformers, lmdeploy, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "lmdeploy", lmdeploy.__version__, "peft", peft.__version__)' 2>&1 | tail -1)"
say "eval stack: $(PYTHONPATH=/tmp/site-kit:/tmp/site-eval:/tmp/site-serve python3 -c 'import transformers, peft; print("transformers", transformers.__version__, "peft", peft.__version__)' 2>&1 | tail -1)"
say "gpu: $(gpu_line)"
SYSTEM=$(python3 -c 'from kit.persona import persona_for; print(persona_for("bajie").system_prompt)')
M=/tmp/models/internlm2-1_8b-shape D=/tmp/models/deploy W=/tmp/models/w4a16
T=$REPO/.serve-gpu/trained TW=/tmp/models/trained-w4a16
if has ready || has two || has w4a16 || has eager || has speed; then
  say "build the 1.8B-shaped model, its adapter and merge"
  timeout 240 python3 bench/serve_build_model.py .serve-gpu/tiny "$M" 2>&1 | tail -1 | tee -a "$O/summary.txt"
  timeout 240 python3 bench/deploy_models.py "$M" "$D" 2>&1 | tail -2 | tee -a "$O/summary.txt"
  [ -f "$D/merged/kit_merge.json" ] || { say "FAILED: no merged model"; bundle; exit 1; }
fi
cd /tmp  # kit serve writes compare votes and LMDeploy its logs relative to here
BASE_MIB=$(gpu_used); fact baseline_gpu_mib "$BASE_MIB"

# start_serve VAR LOG ARGS…: kit serve in the background; VAR = its pid, VAR_T0 = when it started
start_serve() {
  local var=$1 log=$2; shift 2
  say "kit serve $* (log $log)"
  "${KIT[@]}" serve "$@" > >(stamp >"$L/$log") 2>&1 &
  local t0; t0=$(now)
  printf -v "$var" %s $!; printf -v "${var}_T0" %s "$t0"
  printf '{"t0_%s": %s}\n' "$log" "$t0" >>"$L/facts.jsonl"  # deploy_report.py times the log's landmarks from it
}
# wait_ready VAR LOG LIMIT: 0 once kit serve says every server answers; 1 if it died or LIMIT passed
wait_ready() {
  local pid=${!1} log=$2 t=$SECONDS limit=$(( $3 > 10 ? $3 : 10 ))
  until grep -q "Ctrl-C stops everything" "$L/$log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null || [ $((SECONDS - t)) -gt "$limit" ]; then
      say "FAILED: $log not ready ($(kill -0 "$pid" 2>/dev/null && echo "after $limit s" || echo "kit serve exited"))"
      tail -25 "$L/$log" | cut -c1-300 | tee -a "$O/summary.txt"; return 1
    fi
    sleep 1
  done
}
stop_serve() {  # SIGTERM, as Ctrl-C; SIGKILL after 20 s
  local pid=$1 t=$SECONDS
  kill -TERM "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - t)) -lt 20 ]; do sleep 1; done
  kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; say "stopped kit serve $pid; gpu: $(gpu_line)"
}
client() {  # NAME TARGETS… [-- CLIENT OPTIONS]: bench/serve_client.py, JSON lines to $L/client_NAME.jsonl
  local name=$1; shift
  timeout 150 python3 "$REPO/bench/serve_client.py" "$@" --system "$SYSTEM" --max-tokens 128 \
    --raw "$L/streams.jsonl" >"$L/client_$name.jsonl" 2>"$L/client_$name.err"
  say "client $name exit $?: $(cut -c1-600 "$L/client_$name.jsonl" | tr '\n' ' ') $(tail -2 "$L/client_$name.err")"
}

ARGS=(--engine lmdeploy --base "$M" --tuned "$D/merged" --no-ui --gpu-fraction 0.3)
cache_mib() { du -sm "$TRITON_CACHE_DIR" 2>/dev/null | cut -f1 || echo 0; }
# quantize VAR LOG SOURCE OUT [OPTIONS]: kit quantize --w4a16 in the background (VAR = its pid); exit and
# seconds to LOG.rc
quantize() {
  local var=$1 log=$2 src=$3 out=$4; shift 4
  say "kit quantize $src --w4a16 $* (background, log $log)"
  ( t=$(now); timeout 240 "${KIT[@]}" quantize "$src" --w4a16 -o "$out" --calib-samples 32 --calib-seqlen 512 "$@" \
      > >(stamp >"$L/$log") 2>&1; echo "$? $(since "$t")" >"$L/$log.rc" ) &
  printf -v "$var" %s $!
}
# quantized VAR LOG FACT: wait for that background quantize; 0 if it made the model
quantized() {
  wait "${!1}"; local rc s; read -r rc s <"$L/$2.rc"; fact "$3" "$s"; say "kit quantize exit $rc"; [ "$rc" = 0 ]
}
# w4a16_ready: the 1.8B-shaped W4A16 model, once (the w4a16 and speed stages share it)
w4a16_ready() {
  if [ -z "${Q_DONE:-}" ]; then
    Q_DONE=1; quantized Q quantize.log quantize_s && cp "$W/kit_quant.json" "$L/" 2>/dev/null
  fi
  [ -f "$W/kit_quant.json" ]
}

# ---- ready: one server, base + adapter; cold, then as every later start ----
if has w4a16 || has speed; then quantize Q quantize.log "$D/merged" "$W"; fi
if has ready; then
  KIT_LMDEPLOY_LOG_LEVEL=INFO start_serve A one_cold.log "${ARGS[@]}" --port 23333
  if wait_ready A one_cold.log 300; then
    fact ready_cold_s "$(since "$A_T0")"; fact triton_cache_mib "$(cache_mib)"
    client cold http://127.0.0.1:23333/v1=base http://127.0.0.1:23333/v1=tuned --concurrency 0
  fi
  stop_serve "$A"; bundle
  if has w4a16 || has speed; then w4a16_ready; fi  # the warm start below runs alone
  start_serve A one.log "${ARGS[@]}" --port 23333
  if wait_ready A one.log 300; then
    fact ready_s "$(since "$A_T0")"; fact one_server_mib "$(tree_mib "$A")"
    fact one_server_gpu_used_mib "$(( $(gpu_used) - BASE_MIB ))"; say "gpu: $(gpu_line)"
    grep -E "note:|starting|answers after" "$L/one.log" | cut -c1-600 | tee -a "$O/summary.txt"
    client one http://127.0.0.1:23333/v1=base http://127.0.0.1:23333/v1=tuned --concurrency 16
  fi
  stop_serve "$A"; bundle
fi

# ---- two: two servers, alone ----
if has two && [ "$(left)" -gt 150 ]; then
  start_serve C two.log "${ARGS[@]}" --port 23343 --two-servers
  if wait_ready C two.log $(( $(left) - 120 )); then
    fact two_server_ready_s "$(since "$C_T0")"; fact two_server_mib "$(tree_mib "$C")"
    grep -E "note:|starting|answers after" "$L/two.log" | cut -c1-600 | tee -a "$O/summary.txt"
    client two http://127.0.0.1:23343/v1=base http://127.0.0.1:23344/v1=tuned --concurrency 0
  fi
  stop_serve "$C"; bundle
elif has two; then fact two_skipped '"no time left"'; fi

# ---- w4a16: the quantized model, as is and with KV int8, side by side ----
if has w4a16; then
  if w4a16_ready && [ "$(left)" -gt 120 ]; then
    start_serve W4 w4a16.log --engine lmdeploy --tuned "$W" --no-ui --gpu-fraction 0.1 --port 23350
    start_serve KV kv_int8.log --engine lmdeploy --tuned "$W" --no-ui --gpu-fraction 0.1 --port 23360 --kv int8
    if wait_ready W4 w4a16.log $(( $(left) - 60 )); then
      fact w4a16_ready_s "$(since "$W4_T0")"; fact w4a16_server_mib "$(tree_mib "$W4")"
      client w4a16 http://127.0.0.1:23350/v1=tuned --concurrency 32
    fi
    if wait_ready KV kv_int8.log 20; then
      fact kv_int8_server_mib "$(tree_mib "$KV")"
      client kv_int8 http://127.0.0.1:23360/v1=tuned --concurrency 32
    fi
    stop_serve "$W4"; stop_serve "$KV"; bundle
  else fact w4a16_skipped '"no quantized model or no time left"'; fi
fi

# ---- eager: the warm one-server start without CUDA graphs ----
if has eager && [ "$(left)" -gt 100 ]; then
  start_serve B one_eager.log "${ARGS[@]}" --port 23333 --eager-mode
  if wait_ready B one_eager.log $(( $(left) - 25 )); then
    fact eager_ready_s "$(since "$B_T0")"; fact eager_one_server_mib "$(tree_mib "$B")"
    client eager http://127.0.0.1:23333/v1=base http://127.0.0.1:23333/v1=tuned --concurrency 0
  fi
  stop_serve "$B"; bundle
elif has eager; then fact eager_skipped '"no time left"'; fi

# ---- drift: one trained model through every deployment stage ----
if has drift; then
  # LMDeploy's AWQ loader splits wqkv's packed columns into q, k and v, each a multiple of the group size;
  # the tiny model's k and v are 2 heads x 32 = 64 wide, so 64-wide groups (seen: group 128 asserts at load)
  quantize QT quantize_trained.log "$T/merged" "$TW" --group-size 64
  TARGS=(--engine lmdeploy --no-ui --gpu-fraction 0.1 --character bajie)
  start_serve TM trained_merged.log "${TARGS[@]}" --tuned "$T/merged" --port 23370
  STAGES_DRIFT=("adapter=$T/adapter" "merged=$T/merged")
  if quantized QT quantize_trained.log trained_quantize_s; then
    cp "$TW/kit_quant.json" "$L/kit_quant_trained.json" 2>/dev/null
    start_serve TW4 trained_w4a16.log "${TARGS[@]}" --tuned "$TW" --port 23380
    start_serve TKV trained_kv_int8.log "${TARGS[@]}" --tuned "$TW" --port 23390 --kv int8
  fi
  if wait_ready TM trained_merged.log 240; then
    client trained_merged http://127.0.0.1:23370/v1=tuned --concurrency 0
    STAGES_DRIFT+=("lmdeploy-bf16=http://127.0.0.1:23370/v1#tuned")
  fi
  if [ -n "${TW4:-}" ] && wait_ready TW4 trained_w4a16.log 240; then
    client trained_w4a16 http://127.0.0.1:23380/v1=tuned --concurrency 0
    STAGES_DRIFT+=("w4a16=http://127.0.0.1:23380/v1#tuned")
  fi
  if [ -n "${TKV:-}" ] && wait_ready TKV trained_kv_int8.log 60; then
    client trained_kv_int8 http://127.0.0.1:23390/v1=tuned --concurrency 0
    STAGES_DRIFT+=("w4a16-kv-int8=http://127.0.0.1:23390/v1#tuned")
  fi
  bundle
  if [ "$(left)" -gt 45 ]; then
    say "kit eval --drift ${STAGES_DRIFT[*]}"
    t=$(now)
    PYTHONPATH=/tmp/site-kit:/tmp/site-eval:/tmp/site-serve timeout $(( $(left) - 15 )) "${KIT[@]}" eval --drift \
      "${STAGES_DRIFT[@]}" --base "$T/base" --character bajie --eval-file "$T/data/eval.jsonl" --out "$L/drift" \
      > >(stamp >>"$L/drift.log") 2>&1
    fact drift_exit "$?"; fact drift_s "$(since "$t")"
    tail -30 "$L/drift.log" | cut -c1-300 | tee -a "$O/summary.txt"
  else fact drift_skipped '"no time left"'; fi
  for p in TM TW4 TKV; do [ -n "${!p:-}" ] && stop_serve "${!p}"; done
fi
# ---- speed: fp16 merged vs W4A16 side by side, medians of 3 after the first request ----
if has speed; then
  if w4a16_ready && [ "$(left)" -gt 150 ]; then
    start_serve SF speed_fp16.log --engine lmdeploy --tuned "$D/merged" --no-ui --gpu-fraction 0.1 --port 23400
    start_serve SW speed_w4a16.log --engine lmdeploy --tuned "$W" --no-ui --gpu-fraction 0.1 --port 23410
    if wait_ready SF speed_fp16.log $(( $(left) - 60 )) && wait_ready SW speed_w4a16.log 60; then
      fact speed_fp16_server_mib "$(tree_mib "$SF")"; fact speed_w4a16_server_mib "$(tree_mib "$SW")"
      client speed_fp16 http://127.0.0.1:23400/v1=tuned --concurrency 32 --repeat 3
      client speed_w4a16 http://127.0.0.1:23410/v1=tuned --concurrency 32 --repeat 3
    fi
    stop_serve "$SF"; stop_serve "$SW"; bundle
  else fact speed_skipped '"no quantized model or no time left"'; fi
fi
bundle; say "done; deploy.json:"; cat "$O/deploy.json" | tee -a "$O/summary.txt"
