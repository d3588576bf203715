#!/usr/bin/env bash
# The run's history lives in metrics.jsonl only (issue 10 item 10):
#   1. trainer_state.json of a checkpoint has no log_history (before: every checkpoint copied the whole history,
#      so the state grew with the run and all checkpoints together quadratically) and the same keys in every
#      checkpoint;
#   2. the end-of-run results still cover the whole run across a resume: train_results.json's eval_curve holds the
#      evaluations of both processes, read from metrics.jsonl;
#   3. metrics.jsonl removed during a run (the process stopped with SIGSTOP while it is removed): a warning, the
#      run completes (exit 0), and the file is written anew (before: the records went into the unlinked file).
# Usage: test_metrics_history.sh BIN_DIR SOURCE_DIR
set -uo pipefail
source "$(dirname "$0")/train_test_lib.sh"
cli_test_init metrics "${1:?BIN_DIR}" "${2:?SOURCE_DIR}" qlora-train
pid=""
trap '[ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null; rm -rf "$work"' EXIT

# With evaluation: every 2 steps on 8 held-out records.
common=("${quick_run[@]}" --set do_eval=true --set evaluation_strategy=steps --set log_level=warn
        --set eval_dataset_size=8 --set max_eval_samples=8 --set eval_steps=2 --set save_steps=1 --set save_total_limit=0)
out=$work/run
"$train" "${common[@]}" --set max_steps=4 --set output_dir="$out" > /dev/null 2> "$work/first.err" \
  || { tail -5 "$work/first.err"; fail "first run"; }
python3 - "$out" <<'PY' || fail "trainer_state.json is not of constant shape"
import json, sys
keys = None
for step in (1, 2, 3, 4):
    state = json.load(open(f"{sys.argv[1]}/checkpoint-{step}/trainer_state.json"))
    assert "log_history" not in state, f"checkpoint-{step} copies the history"
    assert keys is None or set(state) == keys, (step, set(state) ^ keys)
    keys = set(state)
PY

"$train" "${common[@]}" --set max_steps=6 --set output_dir="$out" --resume > /dev/null 2> "$work/resume.err" \
  || { tail -5 "$work/resume.err"; fail "resume"; }
python3 - "$out" <<'PY' || fail "train_results.json does not cover the whole run"
import json, sys
r = json.load(open(f"{sys.argv[1]}/train_results.json"))
steps = [s for s, _ in r["eval_curve"]]
assert steps == [0, 2, 4, 6], steps
assert r["global_step"] == 6, r
PY
[ -s "$out/loss_curve.svg" ] || fail "no loss curve"

echo "== metrics.jsonl removed during the run"
out=$work/rm
"$train" "${common[@]}" --set max_steps=40 --set save_steps=40 --set output_dir="$out" > /dev/null 2> "$work/rm.err" &
pid=$!
until grep -q '"event":"train".*"step":3[,}]' "$out/metrics.jsonl" 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
kill -STOP "$pid"
if grep -q '"event":"end"' "$out/metrics.jsonl" 2>/dev/null; then
  fail "the run ended before metrics.jsonl could be removed"
fi
rm -f "$out/metrics.jsonl"
kill -CONT "$pid"
rc=0; wait "$pid" || rc=$?
pid=""
[ "$rc" = 0 ] || fail "the run with its metrics.jsonl removed: exit $rc: $(tail -3 "$work/rm.err")"
grep -qF "$out/metrics.jsonl was removed during the run" "$work/rm.err" || fail "no warning: $(cat "$work/rm.err")"
tail -1 "$out/metrics.jsonl" 2>/dev/null | grep -q '"reason":"completed"' || fail "the new metrics.jsonl lacks the end record"

finish
