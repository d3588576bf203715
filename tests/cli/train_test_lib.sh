# Shared setup of the CLI tests that run the programs on the bundled model (sourced; not a test itself: ctest
# runs tests/cli/test_*.sh only).
#
#   cli_test_init TAG BIN_DIR SOURCE_DIR [PROGRAM...]   skip (exit 77) unless every PROGRAM is built; sets bin,
#       src, train (qlora-train), work (a temp dir removed on exit); cd's to src; one torch thread.
#   fail MESSAGE       count a failure and go on;   finish   exit 1 after any failure, else print PASS
#   expect_error LABEL RC STDERR_FILE PATTERN...   RC is 2 and the file holds exactly one ": error: " line, which
#       contains every PATTERN (grep -F): one clear message, exit code 2.
#   quick_run          qlora-train flags of a run of seconds: the demo config with short sequences, micro-batches
#       of 2, a train record every step and no evaluation.

cli_test_init() {
  local tag=$1 p
  bin=$(cd "$2" && pwd)
  src=$(cd "$3" && pwd)
  shift 3
  for p in "$@"; do [ -x "$bin/$p" ] || { echo "SKIP: $bin/$p not built"; exit 77; }; done
  train=$bin/qlora-train
  work=$(mktemp -d "/tmp/qlora_${tag}_XXXXXX")
  trap 'rm -rf "$work"' EXIT
  cd "$src" || exit 1
  export OMP_NUM_THREADS=1
  fails=0
}

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

finish() {
  [ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
  echo "PASS"
}

expect_error() {
  local label=$1 rc=$2 err=$3 p
  shift 3
  [ "$rc" = 2 ] || { fail "$label: exit $rc, expected 2; stderr: $(tail -3 "$err")"; return; }
  [ "$(grep -c ': error: ' "$err")" = 1 ] || fail "$label: expected one error line, got: $(cat "$err")"
  for p in "$@"; do
    grep -qF -- "$p" "$err" || fail "$label: the message lacks '$p': $(grep ': error: ' "$err")"
  done
}

quick_run=(--config configs/demo.json --set do_eval=false --set evaluation_strategy=no --set logging_steps=1
           --set per_device_train_batch_size=2 --set source_max_len=64 --set target_max_len=32)
