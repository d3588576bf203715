# CI helpers of scripts/test.sh (sourced).

# qlora_fail_on_parity_skips CTEST_LOG: exit status 1, naming them, when ctest's output lists a parity test
# (py.*, label parity) among the tests that did not run ("NN - py.test_x (Skipped)").
qlora_fail_on_parity_skips() {
  local skipped
  skipped=$(grep -E '^[[:space:]]*[0-9]+ - py\.[^ ]+ \(Skipped\)' "$1" | sed -E 's/^[[:space:]]*[0-9]+ - ([^ ]+).*/\1/')
  [ -z "$skipped" ] && return 0
  echo "CI=true: parity tests skipped (a reference library is missing from the venv; run scripts/setup.sh):" \
    $skipped >&2
  return 1
}
