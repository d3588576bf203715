#!/usr/bin/env bash
# Non-finite loss in qlora-train (issue 10 item 6). Before: a warning per step, NaN weights saved into every
# later checkpoint, and rotation deleted the finite ones (learning_rate 1e30: exit 0, only a NaN checkpoint-4).
#   1. a real overflow (learning_rate 1e30: the loss of step 2 is NaN): exit code 2, one error line naming the step
#      and the newest checkpoint, which is the finite checkpoint-1; no checkpoint of a NaN step exists;
#   2. nan_policy "error" (default) with an injected NaN loss at step 3 (QLORA_FAULT_INJECT=nan-loss@3): the same;
#   3. nan_policy "skip_step" with the same injection: the update of step 3 is dropped and redone on the next
#      batches, the run completes its 4 steps (exit 0), metrics.jsonl holds the skip_step record and only finite
#      losses, and an evaluation of the final adapter is finite.
# Usage: test_nan_policy.sh BIN_DIR SOURCE_DIR
set -uo pipefail
source "$(dirname "$0")/train_test_lib.sh"
cli_test_init nan "${1:?BIN_DIR}" "${2:?SOURCE_DIR}" qlora-train qlora-eval

common=("${quick_run[@]}" --set log_level=warn --set max_steps=4 --set save_steps=1 --set save_total_limit=1)

# stopped DIR STEP KEPT RC: the run into DIR stopped at STEP with exit code 2 and kept only checkpoint-KEPT.
stopped() {
  local dir=$1 step=$2 keep=$3 rc=$4
  expect_error "$dir" "$rc" "$dir.err" "step $step: the loss is" "stopped before the update" \
    "newest checkpoint: $dir/checkpoint-$keep" "nan_policy \"skip_step\""
  got=$(cd "$dir" && ls -d checkpoint-* | tr '\n' ' ')
  [ "$got" = "checkpoint-$keep " ] || fail "$dir: checkpoints '$got', expected checkpoint-$keep"
  grep -q '"reason":"non_finite_loss"' "$dir/metrics.jsonl" || fail "$dir: metrics.jsonl has no end record"
  ! grep -q '"loss":null' "$dir/metrics.jsonl" || fail "$dir: a non-finite loss was logged as a train record"
}

echo "== learning_rate 1e30: a real overflow"
rc=0
"$train" "${common[@]}" --set learning_rate=1e30 --set output_dir="$work/lr" > /dev/null 2> "$work/lr.err" || rc=$?
stopped "$work/lr" 2 1 "$rc"

echo "== injected NaN loss at step 3, nan_policy error (default)"
rc=0
QLORA_FAULT_INJECT=nan-loss@3 "$train" "${common[@]}" --set output_dir="$work/err" > /dev/null 2> "$work/err.err" || rc=$?
stopped "$work/err" 3 2 "$rc"

echo "== injected NaN loss at step 3, nan_policy skip_step"
out=$work/skip
QLORA_FAULT_INJECT=nan-loss@3 "$train" "${common[@]}" --set nan_policy=skip_step --set output_dir="$out" \
  > /dev/null 2> "$out.err" || fail "skip_step run failed: $(tail -3 "$out.err")"
grep -qF "step 3: the loss is nan" "$out.err" || fail "skip_step: no warning for step 3: $(cat "$out.err")"
python3 - "$out/metrics.jsonl" <<'PY' || fail "skip_step: metrics.jsonl is not as expected"
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
skips = [r for r in recs if r["event"] == "skip_step"]
train = [r for r in recs if r["event"] == "train"]
assert [r["step"] for r in skips] == [3], skips
assert [r["step"] for r in train] == [1, 2, 3, 4], [r["step"] for r in train]
assert all(isinstance(r["loss"], float) and math.isfinite(r["loss"]) for r in train), train
assert recs[-1]["event"] == "end" and recs[-1]["reason"] == "completed", recs[-1]
PY
[ -d "$out/checkpoint-4" ] || fail "skip_step: no checkpoint-4"
printf '{"text": "Once upon a time, there was a little girl named Lily."}\n' > "$work/doc.jsonl"
"$bin/qlora-eval" --perplexity "$work/doc.jsonl" --adapter "$out" --json "$work/ppl.json" > /dev/null 2>&1 \
  || fail "qlora-eval of the skip_step adapter failed"
python3 -c "import json,math,sys; p=json.load(open(sys.argv[1]))['perplexity']; sys.exit(0 if math.isfinite(p) else 1)" \
  "$work/ppl.json" || fail "the skip_step adapter is not finite: $(cat "$work/ppl.json")"
finish
