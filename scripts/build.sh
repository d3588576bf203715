#!/usr/bin/env bash
# Configure and build into build/ (Release by default; binaries in build/bin/).
#   BUILD_DIR=build BUILD_TYPE=Release QLORA_CUDA=AUTO [BUILD_TARGETS="a b"] scripts/build.sh [extra cmake -D args]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${QLORA_VENV:-$HOME/.cache/qlora/venv}
BUILD_DIR=${BUILD_DIR:-$root/build}
args=(-S "$root" -B "$BUILD_DIR" -G Ninja
      -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}"
      -DQLORA_CUDA="${QLORA_CUDA:-AUTO}")
[ -x "$VENV/bin/python" ] && args+=(-DQLORA_PYTHON="$VENV/bin/python")
cmake "${args[@]}" "$@"
# BUILD_TARGETS="qlora-train qlora-eval" builds only those targets (default: everything).
targets=()
for t in ${BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$BUILD_DIR" -j "${JOBS:-$(nproc)}" "${targets[@]}"
