#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer (gcc): builds into build-asan/
# (RelWithDebInfo, CPU only) and runs the tests there. Any sanitizer report fails its test.
#   scripts/sanitize.sh [ctest args]          everything, e.g. scripts/sanitize.sh -R 'Data|fuzz'
#   SANITIZE_SCOPE=torch-free scripts/sanitize.sh
#                                             only test_base and fuzz_readers (FUZZ_ITERATIONS mutants, default
#                                             200,000): the part CI runs (.ci/run)
#   BUILD_DIR=... BUILD_TARGETS=... JOBS=... scripts/sanitize.sh;  SANITIZE_BUILD_ONLY=1: build, run nothing
# Only our code is instrumented: libtorch and the Python reference libraries are not (the Python parity
# tests run our instrumented binaries from an uninstrumented python). Runtime options, each with its reason:
# scripts/sanitize/env.sh; leak suppressions: scripts/sanitize/lsan.supp.
# Measured on this project's 2-core machine (2026-12-05, main at 0a1b7f7), the whole suite: 278 tests, 271
# passed, 7 skipped (the 6 gpu-labelled ones without a device; DataStreaming.TokenFileMemoryDoesNotGrowWithTheFile,
# which measures RSS and skips under ASan), no sanitizer report, ctest 576 s; the build, 70 steps, 19 min with
# the objects of an earlier attempt in ccache, about 80 min cold. (Nf4Cuda.* are not built: QLORA_CUDA=OFF.)
# So CI runs only the torch-free scope: about 30 steps (~5 min cold, seconds from ccache), test_base (140
# passed, 1 skipped, 16 s) and 200,000 fuzz mutants (~60 s).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=sanitize/env.sh
source "$root/scripts/sanitize/env.sh"
export BUILD_DIR=${BUILD_DIR:-$root/build-asan}
scope=${SANITIZE_SCOPE:-all}
case "$scope" in
  all) ;;
  torch-free) export BUILD_TARGETS="test_base fuzz_readers" ;;
  *) echo "sanitize.sh: SANITIZE_SCOPE \"$scope\": expected all or torch-free" >&2; exit 2 ;;
esac
# -fdebug-prefix-map: with -g, ccache hashes the working directory unless the debug paths are mapped, so a
# fresh clone (CI) would rebuild everything instead of hitting the cache (ccache manual, hash_dir).
flags="$QLORA_SAN_FLAGS -fdebug-prefix-map=$root=."
BUILD_TYPE=RelWithDebInfo QLORA_CUDA=OFF bash "$root/scripts/build.sh" \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$QLORA_SAN_LINK" -DCMAKE_SHARED_LINKER_FLAGS="$QLORA_SAN_LINK"
[ "${SANITIZE_BUILD_ONLY:-0}" = 1 ] && exit 0
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
start=$(date +%s)
status=0
if [ "$scope" = torch-free ]; then
  "$BUILD_DIR/bin/test_base" --gtest_brief=1 || status=$?
  if [ "$status" = 0 ]; then
    (cd "$BUILD_DIR" && ./bin/fuzz_readers --seed-list "$root/tests/fuzz/seeds.txt" --root "$root" \
       --iterations "${FUZZ_ITERATIONS:-200000}") || status=$?
  fi
else
  ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${JOBS:-$(nproc)}" "$@" || status=$?
fi
echo "sanitize.sh ($scope): exit $status after $(( $(date +%s) - start )) s"
exit $status
