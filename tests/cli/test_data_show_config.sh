#!/usr/bin/env bash
# qlora-data show --config prints the data exactly as a qlora-train run of that config reads it: the same
# train/eval split counts the trainer logs, and the same ids as the equivalent explicit flags.
#   bash tests/cli/test_data_show_config.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$1 src=$2
cd "$src"  # the demo config's paths are relative to the repository root
work=$(mktemp -d /tmp/qlora_show_cfg_XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
# The held-out split of the config (eval_dataset_size 40, split seed 42) against the same split asked by flags.
"$bin/qlora-data" show --config configs/demo.json --split eval -n 2 --json >"$work/cfg.jsonl" 2>"$work/cfg.err"
"$bin/qlora-data" show --dataset data/demo/alpaca_demo.jsonl --dataset-format alpaca --model models/stories260k \
  --source-max-len 256 --target-max-len 128 --split eval --eval-dataset-size 40 --seed 42 -n 2 --json \
  >"$work/flags.jsonl" 2>/dev/null
cmp -s <(grep -o '"input_ids":\[[^]]*\]' "$work/cfg.jsonl") <(grep -o '"input_ids":\[[^]]*\]' "$work/flags.jsonl") \
  || { echo "ids under --config differ from the explicit flags"; head -c 600 "$work/cfg.jsonl"; exit 1; }
[ "$(grep -c '"input_ids"' "$work/cfg.jsonl")" = 2 ] || { echo "expected 2 examples"; cat "$work/cfg.jsonl"; exit 1; }
# The trainer's own count of the same config (no training: max_steps 0 is invalid, so use do_train=false).
"$bin/qlora-train" --config configs/demo.json --set do_train=false --set output_dir="$work/run" >"$work/train.log" 2>&1 \
  || { cat "$work/train.log"; exit 1; }
want=$(grep -o 'data: [0-9]* training and [0-9]* eval' "$work/train.log" | sed 's/data: \([0-9]*\) training and \([0-9]*\) eval/\1 train \/ \2 eval/')
"$bin/qlora-data" show --config configs/demo.json -n 1 >"$work/show.txt" 2>&1
got=$(grep -o '[0-9]* train / [0-9]* eval' "$work/show.txt" | head -1)
[ -n "$want" ] && [ "$want" = "$got" ] || { echo "split counts: qlora-train '$want' vs qlora-data '$got'"; exit 1; }
rc=0; "$bin/qlora-data" show --config configs/demo.json --set nonexistent_key=1 >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || { echo "bad --set: exit $rc, expected 2"; exit 1; }
echo "ok: --config shows the run's data ($got)"
