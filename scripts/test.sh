#!/usr/bin/env bash
# The test command of the README and of CI: set up if needed, build, run every test (ctest).
# Tests labelled gpu skip cleanly without a device; parity tests run live against the venv's
# transformers/peft/bitsandbytes.   Extra arguments go to ctest (e.g. -L cpu, -R nf4).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh"
# ctest runs tests in parallel (one per core); each test's torch then takes one thread. The programs choose
# their own default (README "Threads"), but the gtest suites call torch directly, and on 2 busy cores two torch
# threads per process were measured 10-50x slower than one (OpenMP threads spinning on a shared core).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ "${CI:-}" != true ]; then
  exec ctest --test-dir "${BUILD_DIR:-$root/build}" --output-on-failure -j "${QLORA_TEST_JOBS:-2}" "$@"
fi
# In CI (CI=true) a skipped parity test fails the run: CI must not be green with the reference comparisons
# skipped (tests/python's require() already exits 1 there; this also catches any other way of skipping).
source "$root/scripts/lib/ci.sh"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
ctest --test-dir "${BUILD_DIR:-$root/build}" --output-on-failure -j "${QLORA_TEST_JOBS:-2}" "$@" | tee "$log" \
  || rc=$?
qlora_fail_on_parity_skips "$log" || rc=1
exit "$rc"
