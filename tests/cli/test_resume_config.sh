#!/usr/bin/env bash
# qlora-train --resume with a changed configuration (issue 10 item 2): keys that break an exact continuation
# (dataset, model, lora_alpha, seed, batch size, ...) are refused with exit code 2 and one message listing each
# key as OLD -> NEW; the keys of resume_mutable_keys() (run length, logging/save/eval intervals, output-only
# keys) may change. Before: every change resumed silently.
# Usage: test_resume_config.sh BIN_DIR SOURCE_DIR
set -uo pipefail
source "$(dirname "$0")/train_test_lib.sh"
cli_test_init resume_cfg "${1:?BIN_DIR}" "${2:?SOURCE_DIR}" qlora-train

out=$work/out
common=("${quick_run[@]}" --set log_level=info --set output_dir="$out" --set save_steps=2)
"$train" "${common[@]}" --set max_steps=2 > "$work/first.log" 2>&1 || fail "first run: $(tail -3 "$work/first.log")"
[ -d "$out/checkpoint-2" ] || { fail "no checkpoint-2"; finish; }

# The same data and model under other paths: the content is equal, but a resume cannot know that.
cp data/demo/alpaca_demo.jsonl "$work/copy.jsonl"
cp -r models/stories260k "$work/model_copy"

# refused "SETS" PATTERN...: --resume with these --set flags exits 2 with one error line holding every PATTERN.
refused() {
  local sets=$1 args=() s
  shift
  for s in $sets; do args+=(--set "$s"); done
  rc=0
  "$train" "${common[@]}" --set max_steps=4 "${args[@]}" --resume > "$work/out.txt" 2> "$work/err.txt" || rc=$?
  expect_error "--resume $sets" "$rc" "$work/err.txt" "$@"
  ! grep -q "resumed at step" "$work/err.txt" || fail "--resume $sets: resumed anyway"
}

refused "lora_alpha=32 seed=1" "2 keys differ from $out/checkpoint-2/training_config.json" \
  "lora_alpha: 16.0 -> 32.0 (--set lora_alpha=32)" "seed: 0 -> 1 (--set seed=1)" "keys that may change on resume: max_steps"
refused "dataset=$work/copy.jsonl" "dataset: \"data/demo/alpaca_demo.jsonl\" -> \"$work/copy.jsonl\""
refused "model_name_or_path=$work/model_copy" "model_name_or_path: \"models/stories260k\" -> \"$work/model_copy\""
refused "per_device_train_batch_size=4" "per_device_train_batch_size: 2 -> 4"
refused "gradient_accumulation_steps=4" "gradient_accumulation_steps: 2 -> 4"
refused "learning_rate=0.0005" "learning_rate: 0.001 -> 0.0005"
[ ! -d "$out/checkpoint-4" ] || fail "a refused resume trained"

echo "== allowed changes resume"
"$train" "${common[@]}" --set max_steps=4 --set logging_steps=2 --set save_steps=1 --set save_total_limit=5 \
  --set description=changed --set nan_policy=skip_step --set max_new_tokens=8 --resume > "$work/ok.log" 2>&1 \
  || fail "resume with allowed changes: $(tail -3 "$work/ok.log")"
grep -qF "resumed at step 2" "$work/ok.log" || fail "resume with allowed changes did not resume at step 2"
[ -d "$out/checkpoint-4" ] || fail "the resumed run did not reach step 4"
finish
