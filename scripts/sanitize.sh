#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer (gcc): builds everything into
# build-asan/ (RelWithDebInfo, CPU only) and runs ctest there. Any sanitizer report fails its test.
#   scripts/sanitize.sh [ctest args]          e.g. scripts/sanitize.sh -R 'Data|fuzz'
#   BUILD_DIR=... BUILD_TARGETS=... JOBS=... scripts/sanitize.sh;  SANITIZE_BUILD_ONLY=1: build, run nothing
# Only our code is instrumented: libtorch and the Python reference libraries are not (the Python parity
# tests run our instrumented binaries from an uninstrumented python). Runtime options, each with its reason:
# scripts/sanitize/env.sh; leak suppressions: scripts/sanitize/lsan.supp.
# Not in CI: the instrumented build of everything took 80 min of wall time on this project's busy 2-core
# machine (106 steps), far over what CI should spend. Measured so far (2026-12-05): the torch-free part,
# BUILD_TARGETS="test_base fuzz_readers" (30 steps, ~5 min): test_base 140 passed, 1 skipped, 16 s;
# fuzz_readers 500,000 mutants in 2 min 25 s; no sanitizer report. The torch suites under it: not yet run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=sanitize/env.sh
source "$root/scripts/sanitize/env.sh"
export BUILD_DIR=${BUILD_DIR:-$root/build-asan}
BUILD_TYPE=RelWithDebInfo QLORA_CUDA=OFF bash "$root/scripts/build.sh" \
  -DCMAKE_C_FLAGS="$QLORA_SAN_FLAGS" -DCMAKE_CXX_FLAGS="$QLORA_SAN_FLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="$QLORA_SAN_LINK" -DCMAKE_SHARED_LINKER_FLAGS="$QLORA_SAN_LINK"
[ "${SANITIZE_BUILD_ONLY:-0}" = 1 ] && exit 0
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
start=$(date +%s)
status=0
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${JOBS:-$(nproc)}" "$@" || status=$?
echo "sanitize.sh: ctest exit $status after $(( $(date +%s) - start )) s"
exit $status
