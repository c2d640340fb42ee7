#!/usr/bin/env bash
# GPU-machine training bench (issue 16), one call of at most ~9.5 minutes on an H200:
#   1  bench/train_peers.py: stock XTuner, kit.train.fast (free and inside an 8 GiB cap) and
#      LLaMA-Factory 0.9.5, same model, data and problem ($PEERS_VARIANTS overrides the variants)
#   2  `kit train recipes/bajie.py --gpus 1 --deepspeed zero2` for real, on the same model and a slice
#      of the bench data, then `kit merge` of its checkpoint
# Before, here: ../shared/gpu/fetch-wheels.sh train .whl-train; bash bench/fetch_peer_wheels.sh lf .whl-lf;
# bash bench/fetch_peer_wheels.sh xtuner-extras .whl-xtx. Carry .whl-train, .whl-lf and .whl-xtx.
# $OUT gets summary.txt, train_peers.json, the per-variant logs (logs.tar.gz) and the DeepSpeed run's log.
set -uo pipefail
O=${OUT:-/tmp/out}; mkdir -p "$O"
REPO=$PWD
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 KIT_HOME=$PWD COLUMNS=200 TOKENIZERS_PARALLELISM=false
# The tiny model (its tokenizer is the bench model's) takes ~3 min to pretrain: carry .kit-cache if built here.
[ -d .kit-cache ] && export KIT_CACHE=$PWD/.kit-cache
say() { echo "== $(date +%T) +${SECONDS}s $*" | tee -a "$O/summary.txt"; }
pipi() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$@"; }

say "install"
pipi /tmp/site-train .whl-train/*.whl $(ls .whl-xtx/*.whl | grep -v liger) || { say "FAILED: install train"; exit 1; }
pipi /tmp/site-liger .whl-xtx/liger*.whl || { say "FAILED: install liger"; exit 1; }
# LLaMA-Factory only when carried (a run of kit's own variants and the DeepSpeed step needs none of it).
[ ! -d .whl-lf ] || pipi /tmp/site-lf .whl-lf/*.whl .whl-train/bitsandbytes-*.whl || { say "FAILED: install lf"; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site-kit . >/dev/null \
  || { say "FAILED: install kit"; exit 1; }
export PYTHONPATH=/tmp/site-kit:/tmp/site-train:/tmp/site-liger
cd /tmp
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$O/summary.txt"

say "1 train_peers"
# shellcheck disable=SC2086
timeout ${PEERS_TIMEOUT_S:-390} python3 "$REPO/bench/train_peers.py" --out /tmp/peers --lf-site /tmp/site-lf \
  ${PEERS_VARIANTS:+--variants $PEERS_VARIANTS} ${PEERS_ARGS:-} 2>&1 | grep -v "^\s*$" | tail -60 | tee -a "$O/summary.txt"
cp /tmp/peers/train_peers.json "$O/" 2>/dev/null
tar -czf "$O/logs.tar.gz" -C /tmp/peers --exclude='*.jsonl' --exclude='out' --exclude='*.pth' . 2>/dev/null

[ -n "${SKIP_DS:-}" ] && { say "done (DeepSpeed skipped)"; exit 0; }
say "2 kit train --gpus 1 --deepspeed zero2"
# The bench dialogues under 八戒's system prompt: kit's data check refuses rows whose persona is not the recipe's.
mkdir -p /tmp/ds-data && head -n "${DS_ROWS:-400}" /tmp/peers/data.jsonl | python3 -c '
import json, sys
from kit.persona import persona_for
system = persona_for("bajie").system_prompt
for line in sys.stdin:
    row = json.loads(line); row["messages"][0]["content"] = system; print(json.dumps(row, ensure_ascii=False))
' > /tmp/ds-data/train.jsonl
KIT=(python3 -c 'from kit.cli import main; main()')
# The sample chats (before, during and after training) take most of a short run on random weights;
# DS_CHAT_TOKENS=N runs a copy of the recipe whose chats stop after N tokens.
RECIPE=$REPO/recipes/bajie.py
[ -n "${DS_CHAT_TOKENS:-}" ] && { RECIPE=$REPO/recipes/bajie_ds_bench.py  # beside it: its paths hold
  sed "s/^max_new_tokens = .*/max_new_tokens = $DS_CHAT_TOKENS/" "$REPO/recipes/bajie.py" >"$RECIPE"; }
timeout ${DS_TIMEOUT_S:-130} "${KIT[@]}" train "$RECIPE" --gpus 1 --deepspeed zero2 \
  --base /tmp/kit-bench/internlm2-1p8b-shape --data-dir /tmp/ds-data --work-dir /tmp/ds-work --gpu-memory 8GiB \
  >"$O/deepspeed_train.log" 2>&1
say "kit train exit $?; $(grep -E 'peak|done|error|Error' "$O/deepspeed_train.log" | tail -5)"
ls /tmp/ds-work /tmp/ds-work/iter_* 2>&1 | tee -a "$O/summary.txt"
tail -c 20000 /tmp/ds-work/train_output.log >"$O/deepspeed_train_output.log" 2>/dev/null
for dtype in ${DS_MERGE_DTYPES:-bf16}; do  # kit merge's default is the base's (bf16)
  timeout ${MERGE_TIMEOUT_S:-90} "${KIT[@]}" merge /tmp/ds-work --dtype "$dtype" -o /tmp/ds-merged-$dtype \
    --adapter-out /tmp/ds-adapter-$dtype >"$O/deepspeed_merge_$dtype.log" 2>&1
  say "kit merge --dtype $dtype exit $?; $(grep -E "logits|allowed|error|sample|peak" "$O/deepspeed_merge_$dtype.log")"
done
say "done"
