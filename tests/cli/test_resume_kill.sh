#!/usr/bin/env bash
# Exact resume and crash safety of qlora-train on the bundled stories260K demo (CPU, a few minutes):
#   1. a reference run of 12 steps (logging every step, eval every 4, a checkpoint every 2, keep 3);
#   2. SIGKILL at a random step, then --resume: the train/eval loss sequence equals the reference exactly;
#   3. SIGKILL inside a save (after the adapter is written; after every file but before the rename), then
#      --resume: checkpoint-STEP of the killed save does not exist, the newest remaining one is readable and the
#      resumed run again equals the reference;
#   4. SIGINT: exit code 130, a checkpoint at the step it stopped, and --resume finishes equal to the reference;
#   5. save_total_limit: 3 checkpoints remain at the end.
# Usage: test_resume_kill.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
train="$bin/qlora-train"
[ -x "$train" ] || { echo "SKIP: $train not built"; exit 77; }
[ -d "$src/models/stories260k" ] || { echo "SKIP: bundled model missing"; exit 77; }
work=$(mktemp -d /tmp/qlora_resume_XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$src"

# Dropout 0.05 stays on (the demo's), so the RNG state must be restored for the sequences to agree.
# Shorter sequences and a smaller eval split than the demo's keep each run to seconds on a busy 2-core machine.
common=(--config configs/demo.json --set max_steps=12 --set logging_steps=1 --set save_steps=2
        --set save_total_limit=3 --set eval_steps=4 --set log_level=warn --set per_device_train_batch_size=2
        --set source_max_len=96 --set target_max_len=48 --set eval_dataset_size=16 --set max_eval_samples=16)

# The (event, step, loss) sequence of a run's metrics.jsonl, one per line, losses printed exactly (repr).
sequence() {
  python3 - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["event"] == "train":
        print("train", r["step"], repr(r["loss"]), repr(r["grad_norm"]), repr(r["lr"]))
    elif r["event"] == "eval":
        print("eval", r["step"], repr(r["eval_loss"]))
PY
}

wait_for_step() {  # wait until metrics.jsonl has a train record of step $2 (or the process $3 ended)
  while ! grep -q "\"event\":\"train\".*\"step\":$2[,}]" "$1/metrics.jsonl" 2>/dev/null; do
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.05
  done
}

fail() { echo "FAIL: $*"; exit 1; }

echo "== reference run"
"$train" "${common[@]}" --set output_dir="$work/ref" > "$work/ref.log" 2>&1 || { cat "$work/ref.log"; fail "reference run"; }
sequence "$work/ref/metrics.jsonl" > "$work/ref.seq"
[ "$(grep -c '^train' "$work/ref.seq")" = 12 ] || fail "reference run logged $(grep -c '^train' "$work/ref.seq") train steps, expected 12"

echo "== SIGKILL at a random step"
kill_step=$(( (RANDOM % 8) + 3 ))  # 3..10: after the first checkpoint, before the end
echo "   killing at step $kill_step (RANDOM; rerun to draw another)"
"$train" "${common[@]}" --set output_dir="$work/kill" > "$work/kill.log" 2>&1 &
pid=$!
wait_for_step "$work/kill" "$kill_step" "$pid" || fail "run ended before step $kill_step"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
"$train" "${common[@]}" --set output_dir="$work/kill" --resume > "$work/kill_resume.log" 2>&1 \
  || { cat "$work/kill_resume.log"; fail "resume after SIGKILL"; }
sequence "$work/kill/metrics.jsonl" > "$work/kill.seq"
diff "$work/ref.seq" "$work/kill.seq" || fail "resumed run after SIGKILL at step $kill_step differs from the reference"
cmp "$work/ref/adapter_model.safetensors" "$work/kill/adapter_model.safetensors" \
  || fail "final adapter after SIGKILL + resume differs from the reference"

for point in after-adapter before-rename; do
  echo "== SIGKILL inside the save of step 6 ($point)"
  out="$work/save_$point"
  rc=0
  QLORA_FAULT_INJECT="$point@6" "$train" "${common[@]}" --set output_dir="$out" > "$out.log" 2>&1 &
  wait $! 2>/dev/null || rc=$?
  [ "$rc" = 137 ] || { cat "$out.log"; fail "expected death by SIGKILL (137), got $rc"; }
  [ ! -e "$out/checkpoint-6" ] || fail "checkpoint-6 exists after a save killed at $point"
  ls -a "$out" | grep -q '^\.tmp-checkpoint-6-' || fail "no temp directory of the killed save (was the kill inside it?)"
  "$train" "${common[@]}" --set output_dir="$out" --set log_level=info --resume > "$out.resume.log" 2>&1 \
    || { cat "$out.resume.log"; fail "resume after a kill inside the save ($point)"; }
  grep -q "resuming from $out/checkpoint-4" "$out.resume.log" || { cat "$out.resume.log"; fail "did not resume from checkpoint-4"; }
  ! ls -a "$out" | grep -q '^\.tmp-checkpoint-' || fail "the killed save's temp directory was not cleaned up"
  sequence "$out/metrics.jsonl" > "$out.seq"
  diff "$work/ref.seq" "$out.seq" || fail "resumed run after a kill inside the save ($point) differs"
done

echo "== SIGINT"
out="$work/sigint"
"$train" "${common[@]}" --set output_dir="$out" > "$out.log" 2>&1 &
pid=$!
wait_for_step "$out" 5 "$pid" || fail "run ended before step 5"
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" = 130 ] || { cat "$out.log"; fail "SIGINT: expected exit code 130, got $rc"; }
stopped=$(python3 -c "import json,sys; print([json.loads(l) for l in open('$out/metrics.jsonl')][-1]['step'])")
[ -d "$out/checkpoint-$stopped" ] || fail "SIGINT at step $stopped left no checkpoint-$stopped"
"$train" "${common[@]}" --set output_dir="$out" --resume > "$out.resume.log" 2>&1 || fail "resume after SIGINT"
sequence "$out/metrics.jsonl" > "$out.seq"
diff "$work/ref.seq" "$out.seq" || fail "resumed run after SIGINT differs"

echo "== save_total_limit"
n=$(ls -d "$work/ref"/checkpoint-* | wc -l)
[ "$n" = 3 ] || fail "expected 3 checkpoints (save_total_limit 3), found $n"
[ -d "$work/ref/checkpoint-12" ] && [ -d "$work/ref/checkpoint-8" ] || fail "the newest checkpoints were not kept"

echo "PASS"
