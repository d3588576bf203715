#!/usr/bin/env bash
# libFuzzer run of the readers' fuzz target (tests/fuzz/fuzz_readers.cpp: safetensors headers, JSON/YAML
# configs, dataset files) with ASan + UBSan, built by clang into build-fuzz/. CI runs the same target as a
# bounded random mutator instead (ctest fuzz.readers, in the normal gcc build); this is for longer runs.
#   scripts/fuzz.sh [SECONDS] [libFuzzer flags]      default 60 s; findings go to build-fuzz/findings/
# Needs clang with libFuzzer (Debian: apt-get install clang-14 libclang-rt-14-dev).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-60}
shift || true
CC=${CC:-clang} CXX=${CXX:-clang++}
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found (apt-get install clang-14 libclang-rt-14-dev)"; exit 2; }
out=${BUILD_DIR:-$root/build-fuzz}
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
CC=$CC CXX=$CXX BUILD_DIR=$out BUILD_TYPE=RelWithDebInfo QLORA_CUDA=OFF BUILD_TARGETS=fuzz_readers \
  bash "$root/scripts/build.sh" -DQLORA_LIBFUZZER=ON -DQLORA_PCH=OFF \
  -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined"
# The seed corpus (each file prefixed with its reader byte) comes from the plain mutator build.
BUILD_TARGETS=fuzz_readers bash "$root/scripts/build.sh" >/dev/null
rm -rf "$out/corpus"
"$root/build/bin/fuzz_readers" --seed-list "$root/tests/fuzz/seeds.txt" --root "$root" --write-corpus "$out/seeds"
mkdir -p "$out/corpus" "$out/findings"
cd "$out/findings"
# -max_len: the seeds are up to ~27 KB; 64 KB leaves room to grow. -rss_limit_mb: libFuzzer's default 2 GB.
"$out/bin/fuzz_readers" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
  "$@" "$out/corpus" "$out/seeds"
