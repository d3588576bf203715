#!/usr/bin/env bash
# Input checks of issue 10 item 8, from the command line:
#   1. a .csv / .tsv `dataset` (the key's documented formats; before: read as JSON and rejected) is read by
#      qlora-data show and qlora-train;
#   2. MMLU data with no questions: exit code 2 naming the directory (before: "0/0", exit code 0);
#   3. a --json path that cannot be written (qlora-eval, qlora-generate, qlora-bench): exit code 2 naming the flag
#      and the path before any work, so nothing is printed on stdout (before: the error came after the whole
#      evaluation or benchmark).
# Usage: test_input_checks.sh BIN_DIR SOURCE_DIR
set -uo pipefail
source "$(dirname "$0")/train_test_lib.sh"
cli_test_init input_checks "${1:?BIN_DIR}" "${2:?SOURCE_DIR}" qlora-data qlora-train qlora-eval qlora-generate qlora-bench

# refused PATTERN PROGRAM ARGS...: exit code 2, one error line holding PATTERN, and nothing on stdout (no work done).
refused() {
  local pattern=$1 prog=$2
  shift 2
  rc=0
  "$bin/$prog" "$@" > "$work/out" 2> "$work/err" < /dev/null || rc=$?
  expect_error "$prog $*" "$rc" "$work/err" "$pattern"
  [ ! -s "$work/out" ] || fail "$prog $*: worked before refusing (stdout: $(head -3 "$work/out"))"
}

echo "== .csv and .tsv datasets"
python3 - "$work" <<'PY'
import csv, json, sys
rows = [json.loads(l) for l in open("data/demo/alpaca_demo.jsonl")]
for name, delim in (("demo.csv", ","), ("demo.tsv", "\t")):
    with open(f"{sys.argv[1]}/{name}", "w", newline="") as f:
        w = csv.writer(f, delimiter=delim, lineterminator="\n")
        w.writerow(["instruction", "input", "output"])
        for r in rows:
            w.writerow([r["instruction"], r.get("input", ""), r["output"]])
PY
show() { "$bin/qlora-data" show --dataset "$1" --dataset-format alpaca --tokenizer models/stories260k -n 3 2>&1; }
show data/demo/alpaca_demo.jsonl > "$work/jsonl.show" || fail "qlora-data show of the JSONL failed"
for t in csv tsv; do
  show "$work/demo.$t" > "$work/$t.show" || { fail "qlora-data show --dataset demo.$t: $(tail -3 "$work/$t.show")"; continue; }
  # The same examples as from the JSONL, up to the file name and line numbers in the headers.
  diff <(grep -v '^=== example' "$work/jsonl.show" | grep -v 'alpaca_demo\|demo\.') \
       <(grep -v '^=== example' "$work/$t.show" | grep -v 'alpaca_demo\|demo\.') > /dev/null \
    || fail "demo.$t shows other examples than the JSONL"
done
"$bin/qlora-train" --config configs/demo.json --set dataset="$work/demo.csv" --set max_steps=1 --set do_eval=false \
  --set evaluation_strategy=no --set save_strategy=no --set output_dir="$work/csvrun" --set log_level=warn \
  > /dev/null 2> "$work/train.err" || fail "qlora-train with a .csv dataset: $(tail -3 "$work/train.err")"

echo "== MMLU data without questions"
mkdir -p "$work/mmlu/val" "$work/mmlu/dev"
: > "$work/mmlu/val/anatomy_val.csv"
: > "$work/mmlu/dev/anatomy_dev.csv"
refused "$work/mmlu/val: the .csv files hold no questions" qlora-eval --mmlu --data "$work/mmlu" --shots 0

echo "== unwritable --json paths are refused first"
printf '{"text": "Once upon a time."}\n' > "$work/doc.jsonl"
bad=$work/no/such/dir/out.json
refused "--json $bad: no such directory $work/no/such/dir" qlora-eval --perplexity "$work/doc.jsonl" --json "$bad"
refused "--json $work: is a directory" qlora-eval --perplexity "$work/doc.jsonl" --json "$work"
refused "--predictions $bad: no such directory" qlora-eval --mmlu --data tests/data/mmlu/hendrycks --predictions "$bad"
refused "--json $bad: no such directory" qlora-generate --prompt "Once" --max-new-tokens 2 --json "$bad"
refused "--json $bad: no such directory" qlora-bench nf4 --shape 64x64 --reps 1 --json "$bad"
refused "--json $bad: no such directory" qlora-bench train --shape tiny --steps 1 --warmup 0 --json "$bad"
# A writable path still works (and the check leaves no probe file behind).
"$bin/qlora-eval" --perplexity "$work/doc.jsonl" --json "$work/ok.json" > /dev/null 2>&1 || fail "qlora-eval --json ok.json"
[ -s "$work/ok.json" ] || fail "qlora-eval wrote no $work/ok.json"
! ls -a "$work" | grep -q qlora-write-check || fail "the writability probe was left behind"

finish
