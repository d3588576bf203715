#!/usr/bin/env bash
# The trainer runs MMLU after every evaluation when do_mmlu_eval is set (as the reference's callback), and
# logs qlora.py's metric names to metrics.jsonl: the same numbers qlora-eval gives for the adapter it saved.
#   bash tests/cli/test_train_mmlu.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$1 src=$2
work=$(mktemp -d /tmp/qlora_train_mmlu_XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
mmlu=$src/tests/data/mmlu/hendrycks
"$bin/qlora-train" --config "$src/configs/demo.json" --set model_name_or_path="$src/models/stories260k" \
  --set dataset="$src/data/demo/alpaca_demo.jsonl" --set output_dir="$work/run" --set max_steps=4 \
  --set eval_steps=2 --set save_steps=100 --set do_mmlu_eval=true --set mmlu_dataset="$mmlu" \
  --set mmlu_split=test --set max_mmlu_samples=20 --set mmlu_shots=2 >"$work/train.log" 2>&1 \
  || { cat "$work/train.log"; exit 1; }
n=$(grep -c '"event": *"mmlu"' "$work/run/metrics.jsonl" || true)
# evaluations at steps 0, 2 and 4
[ "$n" = 3 ] || { echo "expected 3 MMLU records, got $n"; cat "$work/run/metrics.jsonl"; exit 1; }
last=$(grep '"event": *"mmlu"' "$work/run/metrics.jsonl" | tail -1)
acc=$(echo "$last" | grep -o '"mmlu_test_accuracy": *[0-9.eE+-]*' | sed 's/.*: *//')
[ -n "$acc" ] || { echo "no mmlu_test_accuracy in: $last"; exit 1; }
# The same evaluation through qlora-eval on the saved adapter gives the same macro accuracy.
"$bin/qlora-eval" --mmlu --shots 2 --data "$mmlu" --split test --max-questions 20 --model "$src/models/stories260k" \
  --adapter "$work/run" --quant-type nf4 --double-quant --json "$work/eval.json" >"$work/eval.log" 2>&1 \
  || { cat "$work/eval.log"; exit 1; }
macro=$(grep -o '"macro[a-z_]*": *[0-9.eE+-]*' "$work/eval.json" | head -1 | sed 's/.*: *//')
awk -v a="$acc" -v b="$macro" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-9) }' \
  || { echo "trainer MMLU $acc != qlora-eval $macro"; cat "$work/eval.json"; exit 1; }
echo "ok: 3 MMLU evaluations during training; final macro accuracy $acc equals qlora-eval's"
