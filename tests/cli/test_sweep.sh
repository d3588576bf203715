#!/usr/bin/env bash
# scripts/sweep.sh on the demo preset (bundled stories260K + demo data + bundled MMLU excerpt), about a minute:
#   1. bad arguments stop with exit code 2 before anything runs;
#   2. a 2 x 2 grid (lr 1e-3,2e-3 x batch 4,8 = micro-batch 4 x accumulation 1,2) with 2 steps per cell:
#      results.csv has 4 rows whose numbers equal the runs' own files (read here with Python's json, an
#      independent reader of what the script parses with sed), results.md has the 4-row table;
#   3. a second run skips every finished cell (no new training or MMLU attempt, same results);
#   4. an interrupted cell (its final checkpoint, results and MMLU gone, as after a kill between checkpoints)
#      resumes from its newest checkpoint with qlora-train --resume and ends with the same row;
#   5. a changed configuration for an existing cell stops with exit code 2.
# Usage: test_sweep.sh BIN_DIR SOURCE_DIR
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # tiny model: one thread is ~10x faster here (see scripts/demo.sh)
bin=$1
src=$2
[ -x "$bin/qlora-train" ] && [ -x "$bin/qlora-eval" ] || { echo "SKIP: qlora-train/qlora-eval not built"; exit 77; }
[ -d "$src/models/stories260k" ] || { echo "SKIP: bundled model missing"; exit 77; }
work=$(mktemp -d /tmp/qlora_sweep_XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$src"

fail() { echo "FAIL: $*"; exit 1; }
sweep() { bash scripts/sweep.sh --bin-dir "$bin" "$@"; }
# 2 optimizer steps, a checkpoint after each, one eval of 8 held-out rows; MMLU: 8 test questions, 1-shot.
grid=(--config configs/demo.json --lr 1e-3,2e-3 --batch-size 4,8
      --set max_steps=2 --set logging_steps=1 --set save_steps=1 --set eval_steps=2 --set max_eval_samples=8
      --set log_level=warn --mmlu-data tests/data/mmlu/hendrycks --mmlu-split test --shots 1
      --mmlu-max-questions 8 --quiet --out "$work/grid")

echo "== bad arguments: exit code 2"
expect_usage_error() {  # expect_usage_error PATTERN ARGS...: exit 2 and PATTERN in the message
  local pattern=$1 rc=0
  shift
  sweep "$@" > "$work/err.log" 2>&1 || rc=$?
  [ "$rc" = 2 ] || { cat "$work/err.log"; fail "sweep.sh $*: exit code $rc, expected 2"; }
  grep -q -- "$pattern" "$work/err.log" || { cat "$work/err.log"; fail "sweep.sh $*: message lacks '$pattern'"; }
}
expect_usage_error "not a multiple of the micro-batch" --config configs/demo.json --batch-size 4,6 --out "$work/bad"
expect_usage_error "--out DIR is required" --config configs/demo.json
expect_usage_error "unknown argument '--lrs'" --config configs/demo.json --lrs 1 --out "$work/bad"
expect_usage_error "'x1' is not a number" --config configs/demo.json --lr x1 --out "$work/bad"
expect_usage_error "has no val/ directory" --config configs/demo.json --mmlu-data tests/data/mmlu/hendrycks --out "$work/bad"
expect_usage_error 'unknown key "max_stepz"' --config configs/demo.json --set max_stepz=2 \
  --mmlu-data tests/data/mmlu/hendrycks --mmlu-split test --out "$work/bad"
[ ! -e "$work/bad" ] || fail "a rejected command created its output directory"

echo "== 2 x 2 grid"
start=$(date +%s)
sweep "${grid[@]}" > "$work/run1.log" 2>&1 || { cat "$work/run1.log"; fail "first sweep run"; }
echo "   first run: $(($(date +%s) - start)) s"
cat "$work/run1.log"

check_results() {  # the CSV rows against the cells' metrics.jsonl, train_results.json and mmlu.json
  python3 - "$work/grid" <<'PY'
import csv, json, math, os, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
assert len(rows) == 4, f"{len(rows)} rows in results.csv, expected 4"
cells = {(r["lr"], r["batch_size"]) for r in rows}
assert cells == {(lr, bs) for lr in ("1e-3", "2e-3") for bs in ("4", "8")}, cells
for r in rows:
    d = os.path.join(out, f"lr={r['lr']}_bs={r['batch_size']}")
    records = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
    train = [x for x in records if x["event"] == "train"]
    evals = [x for x in records if x["event"] == "eval"]
    mmlu = json.load(open(os.path.join(d, "mmlu.json")))
    cfg = json.load(open(os.path.join(d, "training_config.json")))
    assert r["status"] == "done", r
    assert int(r["micro_batch_size"]) * int(r["gradient_accumulation_steps"]) == int(r["batch_size"]), r
    assert cfg["gradient_accumulation_steps"] == int(r["gradient_accumulation_steps"]), (cfg, r)
    assert cfg["learning_rate"] == float(r["lr"]), (cfg["learning_rate"], r)
    assert int(r["steps"]) == 2 == train[-1]["step"], r
    # The CSV keeps 4 decimals (printf %.4f of the full value): compare at that rounding.
    for col, value in (("train_loss", train[-1]["loss"]), ("eval_loss", evals[-1]["eval_loss"]),
                       ("mmlu_macro_accuracy", mmlu["macro_accuracy"]),
                       ("mmlu_micro_accuracy", mmlu["micro_accuracy"])):
        assert r[col] == f"{value:.4f}", (d, col, r[col], value)
    assert mmlu["total"] == 8 and mmlu["shots"] == 1, mmlu
    assert float(r["seconds"]) > 0, r
    assert os.path.isfile(os.path.join(d, "adapter_model.safetensors")), d
print("results.csv: 4 rows match the runs' files")
PY
  local table_rows
  table_rows=$(grep -c -E '^\| [0-9.e-]+ \| [48] \| 4 x [12] \| 2 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| done \|$' \
    "$work/grid/results.md")
  [ "$table_rows" = 4 ] || { cat "$work/grid/results.md"; fail "results.md has $table_rows complete rows, expected 4"; }
}
check_results
grep -q '^| lr | batch size |' "$work/run1.log" || fail "the table was not printed"
cp "$work/grid/results.csv" "$work/results1.csv"

echo "== second run skips finished cells"
attempts() { cat "$work"/grid/*/train.log "$work"/grid/*/mmlu.log | grep -c '^=== '; }
before=$(attempts)
sweep "${grid[@]}" > "$work/run2.log" 2>&1 || { cat "$work/run2.log"; fail "second sweep run"; }
[ "$(grep -c 'done already, skipped' "$work/run2.log")" = 4 ] || { cat "$work/run2.log"; fail "expected 4 skipped cells"; }
[ "$(attempts)" = "$before" ] || fail "the second run started qlora-train or qlora-eval again"
cmp "$work/results1.csv" "$work/grid/results.csv" || fail "results.csv changed on a run that skipped every cell"

echo "== an interrupted cell resumes"
cell="$work/grid/lr=2e-3_bs=8"
[ -f "$cell/checkpoint-1/trainer_state.json" ] && [ -d "$cell/checkpoint-2" ] || fail "expected checkpoint-1 and -2 in $cell"
rm -rf "$cell/checkpoint-2" "$cell/train_results.json" "$cell/mmlu.json"
sweep "${grid[@]}" > "$work/run3.log" 2>&1 || { cat "$work/run3.log"; fail "third sweep run"; }
grep -q 'lr=2e-3_bs=8: resuming training' "$work/run3.log" || { cat "$work/run3.log"; fail "the cell did not resume"; }
grep -q "^=== .* --resume$" "$cell/train.log" || fail "qlora-train was not called with --resume"
[ "$(grep -c 'done already, skipped' "$work/run3.log")" = 3 ] || { cat "$work/run3.log"; fail "expected 3 skipped cells"; }
check_results
# Exact resume (CPU, same thread count): the resumed cell ends with the same losses and MMLU; only seconds grow.
diff <(cut -d, -f1-9,11 "$work/results1.csv") <(cut -d, -f1-9,11 "$work/grid/results.csv") ||
  fail "the resumed cell's results differ from the uninterrupted run's"

echo "== a changed configuration stops the sweep"
rc=0
sweep "${grid[@]}" --set lora_r=4 > "$work/run4.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q 'trained with another configuration' "$work/run4.log" ||
  { cat "$work/run4.log"; fail "a changed lora_r gave exit code $rc, expected 2 with a message"; }

echo "PASS"
