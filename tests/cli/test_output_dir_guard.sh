#!/usr/bin/env bash
# qlora-train into an output_dir that already holds another run's checkpoints (issue 10 item 1):
#   1. a fresh run (no --resume) is refused with exit code 2 and one message naming the checkpoints and the
#      ways out, and the old checkpoints stay untouched (before: a warning, then rotation kept the old run's
#      higher step numbers and deleted the new run's checkpoints, and a later --resume continued the old run);
#   2. overwrite_output_dir true deletes them (logged) and the new run's checkpoints are the only ones left;
#   3. --resume then continues the new run.
# Usage: test_output_dir_guard.sh BIN_DIR SOURCE_DIR
set -uo pipefail
source "$(dirname "$0")/train_test_lib.sh"
cli_test_init outdir "${1:?BIN_DIR}" "${2:?SOURCE_DIR}" qlora-train

out=$work/out
common=("${quick_run[@]}" --set log_level=info --set output_dir="$out")

echo "== the earlier run: checkpoints 3 and 6"
"$train" "${common[@]}" --set max_steps=6 --set save_steps=3 > "$work/old.log" 2>&1 || fail "earlier run: $(tail -3 "$work/old.log")"
[ -d "$out/checkpoint-6" ] || fail "the earlier run left no checkpoint-6"
cp "$out/checkpoint-6/trainer_state.json" "$work/old_state.json"

echo "== a fresh run into it is refused"
rc=0
"$train" "${common[@]}" --set max_steps=2 --set save_steps=1 > "$work/fresh.out" 2> "$work/fresh.err" || rc=$?
expect_error "fresh run into a used output_dir" "$rc" "$work/fresh.err" \
  "output_dir = \"$out\" (--set output_dir=$out) holds checkpoints of an earlier run (checkpoint-3, checkpoint-6)" \
  "--resume" "overwrite_output_dir"
cmp -s "$out/checkpoint-6/trainer_state.json" "$work/old_state.json" || fail "the refused run changed checkpoint-6"
[ -d "$out/checkpoint-3" ] || fail "the refused run deleted checkpoint-3"

echo "== overwrite_output_dir true: the old checkpoints go, the new run's stay"
"$train" "${common[@]}" --set max_steps=2 --set save_steps=1 --set save_total_limit=2 --set overwrite_output_dir=true \
  > "$work/over.log" 2>&1 || fail "overwrite run: $(tail -3 "$work/over.log")"
grep -qF "overwrite_output_dir: deleting $out/checkpoint-6" "$work/over.log" || fail "no log line for the deletion"
got=$(cd "$out" && ls -d checkpoint-* | sort | tr '\n' ' ')
[ "$got" = "checkpoint-1 checkpoint-2 " ] || fail "checkpoints after the overwrite run: '$got', expected checkpoint-1 checkpoint-2"

echo "== --resume continues the new run"
"$train" "${common[@]}" --set max_steps=3 --set save_steps=1 --set save_total_limit=2 --resume > "$work/resume.log" 2>&1 \
  || fail "resume: $(tail -3 "$work/resume.log")"
grep -qF "resuming from $out/checkpoint-2" "$work/resume.log" || fail "did not resume from the new run's checkpoint-2"
finish
