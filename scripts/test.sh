#!/usr/bin/env bash
# The test command of the README and of CI: set up if needed, build, run every test (ctest).
# Tests labelled gpu skip cleanly without a device; parity tests run live against the venv's
# transformers/peft/bitsandbytes.   Extra arguments go to ctest (e.g. -L cpu, -R nf4).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh"
# ctest runs tests in parallel (one per core); each test's torch then takes one thread. On 2 busy cores,
# two torch threads per process were measured 10-50x slower than one (OpenMP threads spinning on a shared core).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ctest --test-dir "${BUILD_DIR:-$root/build}" --output-on-failure -j "${QLORA_TEST_JOBS:-2}" "$@"
