#!/usr/bin/env bash
# scripts/demo.sh end to end on a shortened run (4 steps, 8 held-out records, 8 MMLU questions 1-shot, 12 new
# tokens; setup and build skipped: CI has done both), under a minute on 2 cores:
#   - exit code 0, the summary's numbers equal the runs' own files (read with Python's json, independently of
#     the script's sed), the base loss comes from a step-0 evaluation of the same held-out records;
#   - the adapter, loss curve, MMLU reports and generations exist; the summary names them;
#   - a rerun into the same directory replaces the previous results; a foreign non-empty directory is refused
#     (exit code 2) and left untouched; bad arguments give exit code 2.
# Usage: test_demo.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
for p in qlora-train qlora-eval qlora-generate; do
  [ -x "$bin/$p" ] || { echo "SKIP: $bin/$p not built"; exit 77; }
done
[ -d "$src/models/stories260k" ] || { echo "SKIP: bundled model missing"; exit 77; }
work=$(mktemp -d /tmp/qlora_demo_XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

short=(--skip-setup --bin-dir "$bin" --set max_steps=4 --set eval_steps=2 --set save_steps=2 --set logging_steps=1
       --set max_eval_samples=8 --shots 1 --mmlu-max-questions 8 --max-new-tokens 12)

echo "== bad arguments and a foreign directory: exit code 2"
rc=0; bash "$src/scripts/demo.sh" --bogus > "$work/err.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "unknown argument '--bogus'" "$work/err.log" || { cat "$work/err.log"; fail "--bogus: exit $rc"; }
rc=0; bash "$src/scripts/demo.sh" "${short[@]}" --set output_dir=x --out "$work/o" > "$work/err.log" 2>&1 || rc=$?
[ "$rc" = 2 ] || { cat "$work/err.log"; fail "--set output_dir: exit $rc, expected 2"; }
mkdir -p "$work/foreign" && echo keep > "$work/foreign/precious.txt"
rc=0; bash "$src/scripts/demo.sh" "${short[@]}" --out "$work/foreign" > "$work/err.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "not a previous demo's output" "$work/err.log" || { cat "$work/err.log"; fail "foreign dir: exit $rc"; }
[ "$(cat "$work/foreign/precious.txt")" = keep ] && [ "$(ls -A "$work/foreign")" = precious.txt ] ||
  fail "the refused directory was changed"

echo "== shortened demo"
out="$work/demo"
# From another directory: --out and --bin-dir resolve against the caller's directory, the rest against the checkout.
(cd "$work" && bash "$src/scripts/demo.sh" "${short[@]}" --out demo) > "$work/run1.log" 2>&1 ||
  { cat "$work/run1.log"; fail "demo.sh exit code"; }
cat "$work/run1.log"
for f in finetune/adapter_model.safetensors finetune/adapter_config.json finetune/loss_curve.svg \
         finetune/metrics.jsonl mmlu_base.json mmlu_finetuned.json generations.txt summary.md; do
  [ -s "$out/$f" ] || fail "missing or empty: $out/$f"
done
cmp -s "$out/summary.md" <(sed -n '/^# qlora-cpp demo$/,$p' "$work/run1.log") || fail "the printed summary differs from summary.md"

python3 - "$out" <<'PY'
import json, math, os, re, sys
out = sys.argv[1]
summary = open(os.path.join(out, "summary.md")).read()
def records(path):
    return [json.loads(l) for l in open(os.path.join(out, path))]
ft = records("finetune/metrics.jsonl")
# The base model's loss: the trainer's step-0 evaluation, or the evaluation-only run's when there is none.
base = ft if [r for r in ft if r["event"] == "eval"][0]["step"] == 0 else records("base/metrics.jsonl")
base_eval = [r for r in base if r["event"] == "eval"][:1]
assert base_eval and base_eval[0]["step"] == 0, base_eval  # the untrained model, before any update
ft_eval = [r for r in ft if r["event"] == "eval"][-1]
assert ft_eval["step"] == 4 and ft_eval["eval_examples"] == base_eval[0]["eval_examples"] == 8, ft_eval
train = [r for r in ft if r["event"] == "train"]
def expect(pattern, *values):
    m = re.search(pattern, summary)
    assert m, f"summary lacks {pattern!r}:\n{summary}"
    for got, want in zip(m.groups(), values):
        assert got == want, (pattern, got, want)
f4 = lambda x: f"{x:.4f}"
f1 = lambda x: f"{x:.1f}"
expect(r"Held-out loss \((\d+) records\):\s+base (\S+) -> finetuned (\S+)",
       "8", f4(base_eval[0]["eval_loss"]), f4(ft_eval["eval_loss"]))
expect(r"per-token perplexity:\s+base (\S+) -> finetuned (\S+)",
       f1(math.exp(base_eval[0]["eval_token_loss"])), f1(math.exp(ft_eval["eval_token_loss"])))
expect(r"Logged training loss: (\S+) \(step (\d+)\) -> (\S+) \(step (\d+)\)",
       f4(train[0]["loss"]), "1", f4(train[-1]["loss"]), "4")
for name in ("base", "finetuned"):
    m = json.load(open(os.path.join(out, f"mmlu_{name}.json")))
    assert m["total"] == 8 and m["shots"] == 1, m
    expect(rf"  {name}: +micro (\S+) \((\d+)/(\d+)\), macro (\S+)",
           f4(m["micro_accuracy"]), str(m["correct"]), str(m["total"]), f4(m["macro_accuracy"]))
gens = open(os.path.join(out, "generations.txt")).read()
assert gens.count("### ") == 2 and gens.count("base:") == 2 and gens.count("finetuned:") == 2, gens
for line in re.findall(r"^(?:base|finetuned): +(.*)$", gens, re.M):
    assert line.strip(), f"empty generation line in:\n{gens}"
assert re.search(r"^Time: [0-9.]+ s in all \(CPU time", summary, re.M), summary
print("summary.md: numbers match the runs' files")
PY

echo "== rerun into the same directory"
stale="$out/finetune/checkpoint-999"
mkdir -p "$stale"
bash "$src/scripts/demo.sh" "${short[@]}" --out "$out" > "$work/run2.log" 2>&1 || { cat "$work/run2.log"; fail "rerun"; }
[ ! -e "$stale" ] || fail "the rerun kept the previous run's files"
[ -s "$out/summary.md" ] || fail "no summary after the rerun"
echo "PASS"
